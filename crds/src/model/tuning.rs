//! `spec.tuning`: hyper-parameter search for gradient boosting inside the training Job, on
//! time-ordered cross-validation folds of the training rows.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A hyper-parameter search: the space, the method, the budget and the objective. The best
/// trial's parameters train the version on all training rows; the version's metrics are then
/// measured on the validation rows, which no trial saw.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.space.all(d, self.space.exists_one(e, e.parameter == d.parameter))").message("tuning.space names each parameter once"))]
pub struct Tuning {
    /// How the next trial's parameters are chosen.
    #[serde(default)]
    pub method: TuningMethod,
    /// The objective: a validation metric of the task (default `auc` for classification,
    /// `rmse` for regression), maximised or minimised as the metric asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<crate::metrics::Metric>,
    /// How many trials to run (the budget).
    #[schemars(range(min = 1, max = 500))]
    pub trials: i32,
    /// The most wall time for all trials, in seconds; no trial starts after it.
    #[serde(default = "default_max_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub max_seconds: i32,
    /// Trials run at once (threads in the training Job).
    #[serde(default = "default_parallel")]
    #[schemars(range(min = 1, max = 16))]
    pub parallel_trials: i32,
    /// Time-ordered cross-validation folds: the training cutoffs are cut into `folds + 1`
    /// blocks, and fold k trains on blocks up to k and scores block k + 1.
    #[serde(default = "default_folds")]
    #[schemars(range(min = 2, max = 10))]
    pub folds: i32,
    /// Stop a trial after its first fold when that fold scores worse than the median first
    /// fold of the trials completed so far, once this many have completed (0: never).
    #[serde(default = "default_prune_after")]
    #[schemars(range(min = 0, max = 500))]
    pub prune_after: i32,
    /// Seed of the search.
    #[serde(default)]
    pub seed: i64,
    /// The parameters searched and their ranges or choices.
    #[schemars(length(min = 1, max = 10))]
    pub space: Vec<SearchDimension>,
}

impl Tuning {
    /// The metric the search optimises: `objective`, or AUC (classification) / RMSE. `Err`
    /// says why the objective cannot be optimised for `task` (the operator's validation and
    /// the trainer give the same reason).
    pub fn objective_for(&self, task: super::Task) -> Result<crate::metrics::Metric, String> {
        use crate::metrics::Metric;
        let classification = task == super::Task::BinaryClassification;
        let metric = self.objective.unwrap_or(if classification {
            Metric::Auc
        } else {
            Metric::Rmse
        });
        let allowed: &[Metric] = if classification {
            &[Metric::Auc, Metric::PrAuc, Metric::LogLoss, Metric::Brier]
        } else {
            &[Metric::Rmse, Metric::Mae, Metric::R2]
        };
        if allowed.contains(&metric) {
            return Ok(metric);
        }
        Err(format!(
            "{metric} cannot be optimised for task {task:?}; use one of {}",
            allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn default_max_seconds() -> i32 {
    3600
}
fn default_parallel() -> i32 {
    1
}
fn default_folds() -> i32 {
    3
}
fn default_prune_after() -> i32 {
    5
}

crate::common::named_enum! {
    /// How trials are chosen.
    #[derive(Default)]
    pub enum TuningMethod {
        /// Tree-structured Parzen estimators (Bergstra et al. 2011), as Optuna's default
        /// sampler: after ten random trials, each parameter is drawn where good trials were
        /// dense and bad ones sparse.
        #[default]
        Tpe = "TPE",
        /// Independent uniform draws (on the log scale where the dimension asks).
        Random,
    }
}

crate::common::named_enum! {
    /// A hyper-parameter of `algorithm.gradientBoosting` that tuning can set.
    pub enum TunableParameter {
        /// `rounds` (whole).
        Rounds = "rounds",
        /// `learningRate`.
        LearningRate = "learningRate",
        /// `numLeaves` (whole).
        NumLeaves = "numLeaves",
        /// `maxDepth` (whole).
        MaxDepth = "maxDepth",
        /// `minRowsPerLeaf` (whole).
        MinRowsPerLeaf = "minRowsPerLeaf",
        /// `l1`.
        L1 = "l1",
        /// `l2`.
        L2 = "l2",
        /// `rowSubsample`.
        RowSubsample = "rowSubsample",
        /// `columnSubsample`.
        ColumnSubsample = "columnSubsample",
    }
}

impl TunableParameter {
    /// Whether the parameter takes whole numbers.
    pub fn whole(self) -> bool {
        matches!(
            self,
            TunableParameter::Rounds
                | TunableParameter::NumLeaves
                | TunableParameter::MaxDepth
                | TunableParameter::MinRowsPerLeaf
        )
    }
}

/// One searched parameter: a range (`min`, `max`, `scale`) or `choices`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.choices) != (has(self.min) && has(self.max))").message("a tuning.space entry has either min and max, or choices"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min < self.max").message("a tuning.space range needs min below max"))]
#[x_kube(validation = Rule::new("self.scale != 'Log' || (has(self.min) && self.min > 0.0)").message("a tuning.space range on the Log scale needs min above 0"))]
pub struct SearchDimension {
    /// The parameter.
    pub parameter: TunableParameter,
    /// The smallest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How a range is searched.
    #[serde(default)]
    pub scale: Scale,
    /// The values to choose from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    pub choices: Option<Vec<f64>>,
}

crate::common::named_enum! {
    /// How a range is searched.
    #[derive(Default)]
    pub enum Scale {
        /// Evenly.
        #[default]
        Linear,
        /// Evenly in the logarithm (learning rates, penalties).
        Log,
    }
}

/// One trial of a search.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// Its number, from 0.
    pub number: i32,
    /// `Complete`, `Pruned` or `Failed`.
    pub state: String,
    /// The parameters tried.
    pub parameters: BTreeMap<String, f64>,
    /// The objective on each fold run.
    #[serde(default)]
    pub fold_scores: Vec<f64>,
    /// The mean over the folds (complete trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// What a search found, as the trainer reports it and the status shows it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TuningReport {
    /// The version it trained.
    #[serde(default)]
    pub version: String,
    /// `TPE` or `Random`.
    pub method: String,
    /// The metric optimised.
    pub objective: String,
    /// Trials run, and how many were pruned and failed.
    pub trials_run: i32,
    /// Trials stopped after their first fold.
    pub pruned: i32,
    /// Trials whose fit failed.
    pub failed: i32,
    /// The best trial (its parameters trained the version).
    pub best: Trial,
    /// The best trials, best first (at most five).
    #[serde(default)]
    pub top: Vec<Trial>,
}
