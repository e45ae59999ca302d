//! Hyper-parameters of gradient-boosted trees (`spec.algorithm.gradientBoosting`), named as a
//! marketing data scientist reads them and passed to LightGBM under its own names (given beside
//! each field).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Gradient-boosted decision trees, grown by LightGBM. Every field has LightGBM's default
/// except `rounds` and `learningRate`.
// The API server compares a whole-number value with a fractional `minimum` truncated (0 passes
// `minimum: 0.0001`), so the positive floats are also checked here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.learningRate > 0.0").message("gradientBoosting.learningRate must be above 0: a rate of 0 grows trees that change nothing"))]
#[x_kube(validation = Rule::new("self.rowSubsample > 0.0 && self.columnSubsample > 0.0").message("gradientBoosting.rowSubsample and columnSubsample must be above 0 (1 uses every row and column)"))]
pub struct GradientBoosting {
    /// Boosting rounds (trees); with `earlyStopping` the most that are grown
    /// (`num_iterations`).
    #[serde(default = "default_rounds")]
    #[schemars(range(min = 1, max = 20000))]
    pub rounds: i32,
    /// Shrinkage of each tree's contribution (`learning_rate`).
    #[serde(default = "default_learning_rate")]
    #[schemars(range(min = 0.0001, max = 1.0))]
    pub learning_rate: f64,
    /// Most leaves per tree (`num_leaves`).
    #[serde(default = "default_leaves")]
    #[schemars(range(min = 2, max = 131072))]
    pub num_leaves: i32,
    /// Most depth per tree; unlimited when left out (`max_depth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_depth: Option<i32>,
    /// Fewest training rows in a leaf (`min_data_in_leaf`).
    #[serde(default = "default_min_rows")]
    #[schemars(range(min = 1, max = 1000000))]
    pub min_rows_per_leaf: i32,
    /// L1 penalty on leaf values (`lambda_l1`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 10000.0))]
    pub l1: f64,
    /// L2 penalty on leaf values (`lambda_l2`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 10000.0))]
    pub l2: f64,
    /// Share of rows drawn (without replacement) for each tree, 0–1 (`bagging_fraction`,
    /// with `bagging_freq` 1 below 1).
    #[serde(default = "default_share")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub row_subsample: f64,
    /// Share of columns drawn for each tree, 0–1 (`feature_fraction`).
    #[serde(default = "default_share")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub column_subsample: f64,
    /// Stop adding trees when the score on the newest training rows stops improving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Seed of the row and column draws (`seed`).
    #[serde(default)]
    #[schemars(range(min = 0, max = 2147483647))]
    pub seed: i64,
}

/// Early stopping on a time-ordered split of the training rows: the newest `validationFraction`
/// of them (never the rows the version's metrics are measured on) judge each round by AUC
/// (classification) or squared error (regression); training stops after `rounds` rounds
/// without improvement and keeps the best round.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.validationFraction > 0.0").message("earlyStopping.validationFraction must be above 0: some training rows must judge the rounds"))]
pub struct EarlyStopping {
    /// Rounds without improvement before stopping (`early_stopping_round`).
    #[serde(default = "default_patience")]
    #[schemars(range(min = 1, max = 10000))]
    pub rounds: i32,
    /// Share of the training rows, newest first, held out to judge the rounds.
    #[serde(default = "default_fraction")]
    #[schemars(range(min = 0.01, max = 0.5))]
    pub validation_fraction: f64,
}

fn default_rounds() -> i32 {
    300
}
fn default_learning_rate() -> f64 {
    0.05
}
fn default_leaves() -> i32 {
    31
}
fn default_min_rows() -> i32 {
    20
}
fn default_share() -> f64 {
    1.0
}
fn default_patience() -> i32 {
    30
}
fn default_fraction() -> f64 {
    0.1
}
