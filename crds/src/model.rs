//! `Model`: what to learn, from which FeatureSet, with which resources, and how to serve it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, Scheduling, WorkloadResources};
pub use crate::versions::{VersionState, Versions};

/// A Model trains versions from a FeatureSet (or takes a ready ONNX file), records each version
/// with its metrics, serves the promoted one and hands new ones to an Experiment.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "Model",
    namespaced,
    status = "ModelStatus",
    shortname = "mdl",
    category = "leitwerk",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".status.algorithm"}"#,
    printcolumn = r#"{"name":"Serving","type":"string","jsonPath":".status.servingVersion"}"#,
    printcolumn = r#"{"name":"Latest","type":"string","jsonPath":".status.latestVersion"}"#,
    printcolumn = r#"{"name":"AUC","type":"number","format":"float","jsonPath":".status.latestAuc"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 50").message("metadata.name: a Model name must be at most 50 characters (it prefixes Job and Deployment names)"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.task == 'CustomerLifetimeValue' || has(self.featureSetRef) != has(self.onnx)").message("a Model sets exactly one of featureSetRef (train it) or onnx (bring your own model)"))]
#[x_kube(validation = Rule::new("(self.task == 'CustomerLifetimeValue') == has(self.lifetimeValue)").message("lifetimeValue goes with task CustomerLifetimeValue, and that task needs it (where the transactions are)"))]
#[x_kube(validation = Rule::new("self.task != 'CustomerLifetimeValue' || (has(self.batchScoring) && !has(self.batchScoring.source) && !has(self.featureSetRef) && !has(self.onnx) && !has(self.algorithm) && !has(self.evaluation) && !has(self.minMetrics) && !has(self.drift))").message("a CustomerLifetimeValue Model is fitted on lifetimeValue.transactions and scored by batchScoring (schedule, output; no source): it takes no featureSetRef, onnx, algorithm, evaluation, minMetrics or drift"))]
#[x_kube(validation = Rule::new("!has(self.onnx) || !has(self.training)").message("training is not allowed with onnx: a bring-your-own model is not trained"))]
#[x_kube(validation = Rule::new("!has(self.featureSetRef) || has(self.algorithm)").message("algorithm is required with featureSetRef"))]
#[x_kube(validation = Rule::new("!has(self.batchScoring) || !has(self.onnx)").message("batchScoring needs a Model the trainer trains (featureSetRef): a bring-your-own ONNX file carries no explainer and no input description to score a table with"))]
#[x_kube(validation = Rule::new("!has(self.tuning) || (has(self.algorithm) && has(self.algorithm.gradientBoosting))").message("tuning searches the hyper-parameters of algorithm.gradientBoosting: set it (its values are the defaults of the parameters not searched)"))]
#[x_kube(validation = Rule::new("!has(self.evaluation) || !has(self.onnx)").message("evaluation is not allowed with onnx: a bring-your-own model is not evaluated by the trainer"))]
#[x_kube(validation = Rule::new("self.task == 'BinaryClassification' || !has(self.minMetrics) || self.minMetrics.all(k, k in ['mae', 'rmse', 'r2'])").message("minMetrics for a Regression task may only use mae, rmse and r2"))]
#[x_kube(validation = Rule::new("self.task == 'Regression' || !has(self.minMetrics) || self.minMetrics.all(k, k in ['auc', 'prAuc', 'logLoss', 'brier', 'precision', 'recall', 'f1', 'ece', 'maxSegmentAucGap', 'maxSegmentScoreGap'])").message("minMetrics for a BinaryClassification task may only use auc, prAuc, logLoss, brier, precision, recall, f1, ece, maxSegmentAucGap and maxSegmentScoreGap"))]
pub struct ModelSpec {
    /// The learning task.
    pub task: Task,
    /// The FeatureSet whose snapshots train this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_set_ref: Option<LocalObjectReference>,
    /// Bring your own model: an ONNX file (for example exported from scikit-learn) that is
    /// served as it is, without training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<OnnxSource>,
    /// The algorithm and its hyper-parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// How training runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSpec>,
    /// A hyper-parameter search (gradient boosting) before each version is trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// Gates a version must pass to be promoted, e.g. `{auc: 0.7}` (a minimum) or
    /// `{logLoss: 0.5}` (a maximum for loss-like metrics: logLoss, brier, mae, rmse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 12))]
    pub min_metrics: Option<BTreeMap<String, f64>>,
    /// Offline checks of each version beyond the metrics: segments to compare (fairness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationSpec>,
    /// How the serving version is served.
    #[serde(default)]
    pub serving: ServingSpec,
    /// Input drift monitoring and the action on drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftPolicy>,
    /// Scoring a table on a schedule with the serving version (CRM and ad-platform uploads);
    /// for a CustomerLifetimeValue Model, when to fit and score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_scoring: Option<BatchScoring>,
    /// Customer lifetime value (task CustomerLifetimeValue): the transactions to fit on and
    /// the horizon to score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_value: Option<LifetimeValue>,
    /// Number of versions kept in status (oldest dropped first; the serving one is kept).
    #[serde(default = "default_history")]
    #[schemars(range(min = 1, max = 50))]
    pub version_history_limit: i32,
}

impl ModelSpec {
    /// The algorithm's name as `kubectl get models` shows it (`ONNX` for a brought model).
    pub fn algorithm_name(&self) -> &'static str {
        if self.task == Task::CustomerLifetimeValue {
            return "BG/NBD+GammaGamma";
        }
        let Some(a) = &self.algorithm else {
            return if self.onnx.is_some() { "ONNX" } else { "" };
        };
        if a.gradient_boosting.is_some() {
            "GradientBoosting"
        } else if a.random_forest.is_some() {
            "RandomForest"
        } else if a.decision_tree.is_some() {
            "DecisionTree"
        } else if a.linear_regression.is_some() {
            "LinearRegression"
        } else {
            "LogisticRegression"
        }
    }
}

fn default_history() -> i32 {
    crate::versions::DEFAULT_HISTORY
}

/// The learning task.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Predict a probability of a yes/no outcome (lead converts, customer churns).
    BinaryClassification,
    /// Predict a number (lifetime value, order value).
    Regression,
    /// Customer lifetime value from transactions: BG/NBD for purchase frequency and
    /// Gamma-Gamma for spend, fitted and scored in batch (`lifetimeValue`, `batchScoring`);
    /// nothing is served.
    CustomerLifetimeValue,
}

/// A ready ONNX model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OnnxSource {
    /// URL of the `.onnx` file (`s3://`, `gs://`, `az://`, or `file://` inside the operator's
    /// artifact store, which serving pods mount read-only). Inputs must be `float` or `string`
    /// tensors; the first float output is served (column 1 of a two-column output).
    #[schemars(
        length(min = 8, max = 1024),
        regex(pattern = r"^(file|s3|gs|az)://.+\.onnx$")
    )]
    pub url: String,
    /// Expected SHA-256 of the file (hex); the model is refused when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"), length(max = 64))]
    pub sha256: Option<String>,
}

/// The algorithm. Exactly one block is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.logisticRegression), has(self.decisionTree), has(self.randomForest), has(self.linearRegression), has(self.gradientBoosting)].filter(x, x).size() == 1").message("algorithm sets exactly one of logisticRegression, decisionTree, randomForest, gradientBoosting or linearRegression"))]
pub struct Algorithm {
    /// Regularized logistic regression (binary classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logistic_regression: Option<LogisticRegression>,
    /// A single decision tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_tree: Option<DecisionTree>,
    /// A random forest of decision trees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_forest: Option<RandomForest>,
    /// Ridge-regularized linear regression (regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_regression: Option<LinearRegression>,
    /// Gradient-boosted trees (LightGBM), for classification and regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_boosting: Option<GradientBoosting>,
}

/// Offline checks of each version before it may serve.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.segments.all(s, self.segments.exists_one(t, t == s))").message("evaluation.segments lists a column twice"))]
pub struct EvaluationSpec {
    /// Columns of the FeatureSet to compare segments of (e.g. `industry`, `country`): per
    /// value, rows, AUC, positive rate and mean score on the validation rows, and the largest
    /// gaps (`maxSegmentAucGap`, `maxSegmentScoreGap`, which `minMetrics` can bound). A
    /// numeric column is cut at its quartiles.
    #[serde(default)]
    #[schemars(length(max = 8), inner(length(min = 1, max = 128)))]
    pub segments: Vec<String>,
    /// Segments with fewer validation rows (or without both labels) are listed but not
    /// compared.
    #[serde(default = "default_segment_rows")]
    #[schemars(range(min = 1, max = 1000000))]
    pub min_segment_rows: i32,
}

fn default_segment_rows() -> i32 {
    50
}

/// Hyper-parameters of logistic regression.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogisticRegression {
    /// L2 penalty strength.
    #[serde(default = "default_l2")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub l2: f64,
    /// Maximum optimizer iterations.
    #[serde(default = "default_iterations")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_iterations: i32,
}

fn default_l2() -> f64 {
    1.0
}

fn default_iterations() -> i32 {
    200
}

/// Hyper-parameters of a decision tree.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionTree {
    /// Maximum depth.
    #[serde(default = "default_depth")]
    #[schemars(range(min = 1, max = 64))]
    pub max_depth: i32,
    /// Minimum samples in a leaf.
    #[serde(default = "default_leaf")]
    #[schemars(range(min = 1, max = 100000))]
    pub min_samples_leaf: i32,
}

fn default_depth() -> i32 {
    8
}

fn default_leaf() -> i32 {
    5
}

/// Hyper-parameters of a random forest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sampleRatio > 0.0").message("randomForest.sampleRatio must be above 0: each tree needs rows"))]
pub struct RandomForest {
    /// Number of trees.
    #[serde(default = "default_trees")]
    #[schemars(range(min = 1, max = 1000))]
    pub trees: i32,
    /// Maximum depth of each tree.
    #[serde(default = "default_depth")]
    #[schemars(range(min = 1, max = 64))]
    pub max_depth: i32,
    /// Share of rows each tree sees, 0–1.
    #[serde(default = "default_sample")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub sample_ratio: f64,
    /// Seed for reproducible forests.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub seed: i64,
}

fn default_trees() -> i32 {
    100
}

fn default_sample() -> f64 {
    0.8
}

/// Hyper-parameters of linear regression.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinearRegression {
    /// L2 (ridge) penalty strength.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub l2: f64,
}

/// How a training Job runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.validationFraction) || (self.validationFraction > 0.0 && self.validationFraction < 1.0)").message("training.validationFraction must lie strictly between 0 and 1"))]
#[x_kube(validation = Rule::new("!has(self.scheduling) || !has(self.scheduling.nodeSelector) || !self.scheduling.nodeSelector.exists(k, k.startsWith('nvidia.com/gpu')) || (has(self.resources) && has(self.resources.gpu))").message("training.scheduling.nodeSelector selects GPU nodes but training.resources.gpu is not set: add resources.gpu.count"))]
pub struct TrainingSpec {
    /// Trainer image; the operator's default when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// CPU, memory and GPUs of the trainer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkloadResources>,
    /// Node selector, tolerations and service account of the trainer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// Retries of a failed training Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,
    /// Hard time limit of a training Job in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 604800))]
    pub active_deadline_seconds: Option<i64>,
    /// Share of the newest rows (time-ordered) held out for validation; default 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// When to retrain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RetrainPolicy>,
}

/// When a Model is retrained.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetrainPolicy {
    /// Retrain whenever the FeatureSet publishes a new snapshot.
    #[serde(default)]
    pub on_new_data: bool,
    /// Retrain on this five-field cron schedule in UTC, e.g. `0 4 * * 1` (Mondays 04:00). Each
    /// due time starts one training, also one missed while the operator was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub schedule: Option<String>,
}

/// How the serving version is served by `leitwerk-inference-server`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServingSpec {
    /// Replicas of the serving Deployment.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Inference server image; the operator's default when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// CPU, memory and GPUs of each serving pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkloadResources>,
    /// Score at or above which a prediction counts as positive.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
    /// Dynamic batching of concurrent requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
}

impl Default for ServingSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            image: None,
            resources: None,
            threshold: default_threshold(),
            batching: None,
        }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_threshold() -> f64 {
    0.5
}

/// Dynamic batching settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Largest batch.
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch_size: i32,
    /// Extra wait for a batch to fill, in milliseconds. 0 (recommended) never waits: a
    /// request that finds the model idle runs at once, and a batch is what queued while the
    /// model ran, so batches follow the load.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub max_delay_ms: i32,
}

/// Input drift monitoring.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.psiWarn <= self.psiAct").message("drift.psiWarn must not exceed drift.psiAct"))]
#[x_kube(validation = Rule::new("self.jsWarn <= self.jsAct").message("drift.jsWarn must not exceed drift.jsAct"))]
pub struct DriftPolicy {
    /// PSI at which a warning is raised.
    #[serde(default = "default_psi_warn")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub psi_warn: f64,
    /// PSI at which the action is taken.
    #[serde(default = "default_psi_act")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub psi_act: f64,
    /// Jensen–Shannon divergence (bits) of a categorical feature at which a warning is raised.
    #[serde(default = "default_js_warn")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub js_warn: f64,
    /// Jensen–Shannon divergence (bits) of a categorical feature at which the action is taken.
    #[serde(default = "default_js_act")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub js_act: f64,
    /// What happens at `psiAct` (or `jsAct`).
    #[serde(default)]
    pub action: DriftAction,
    /// Window of serving traffic compared with the training distribution, e.g. `1h`.
    #[serde(default = "default_drift_window")]
    #[schemars(regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"), length(max = 16))]
    pub window: String,
    /// Serving rows the window needs before drift is judged: with fewer, the divergence is
    /// mostly sampling noise and the check reports no data (as `driftGate.minRows` does).
    #[serde(default = "default_drift_min_rows")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_rows: i64,
}

fn default_drift_min_rows() -> i64 {
    100
}

fn default_psi_warn() -> f64 {
    0.1
}

fn default_psi_act() -> f64 {
    0.25
}

fn default_js_warn() -> f64 {
    0.05
}

fn default_js_act() -> f64 {
    0.1
}

fn default_drift_window() -> String {
    "1h".to_string()
}

/// The action taken on drift.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum DriftAction {
    /// Only a condition and an Event.
    #[default]
    Warn,
    /// Serve the previous version again.
    Rollback,
    /// Train a new version on fresh data.
    Retrain,
}

mod batch;
mod boosting;
mod status;
mod tuning;

pub use batch::*;
pub use boosting::*;
pub use status::*;
pub use tuning::*;
