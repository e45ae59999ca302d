//! What the operator observed of a Model: its versions, the schedule and input drift.

use super::*;

/// One trained (or imported) version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersion {
    /// Version name, e.g. `v3`.
    pub version: String,
    /// Where the version is in its lifecycle.
    pub state: VersionState,
    /// Digest of the ONNX artifact (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_digest: Option<String>,
    /// FeatureSet snapshot the version was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<String>,
    /// Validation metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The five most important features of the version: mean |SHAP value| on its
    /// validation rows (log-odds for classification).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub importance: BTreeMap<String, f64>,
    /// The fairness scan of `spec.evaluation.segments` in short: for each column (at most
    /// four), the segments with the lowest and the highest AUC among those compared. The
    /// model card lists every segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentStatus>,
    /// When training finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_at: Option<String>,
    /// URL of the ONNX file (its model card `card.json` lies beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// The Model's `metadata.generation` the version was trained for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Why the version is in its state (a failed Job's error, an unmet minimum metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the operator observed of a Model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ModelPhase>,
    /// Standard conditions (`Ready`, `Trained`, `Serving`, `Drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The progress of the Job at work now, from its newest report; absent when none runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
    /// The version that takes traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<String>,
    /// The newest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// The algorithm of the spec (`GradientBoosting`, `LogisticRegression`, …, `ONNX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Validation ROC-AUC of the newest version (binary classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_auc: Option<f64>,
    /// Recorded versions, newest last (bounded by `versionHistoryLimit`).
    #[serde(default, skip_serializing_if = "Versions::is_empty")]
    pub versions: Versions,
    /// The training Job in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job: Option<String>,
    /// In-cluster URL of the OIP v2 REST endpoint of the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The last input drift check of the serving version (`spec.drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<ModelDriftStatus>,
    /// Scheduled retraining (`spec.training.retrain.schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleStatus>,
    /// The newest tuned version's search (`spec.tuning`): the best trials and the counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<super::TuningReport>,
    /// Batch scoring (`spec.batchScoring`): the schedule and the newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_scoring: Option<super::BatchScoringStatus>,
    /// The version `leitwerk.dev/pin` holds serving, while the pin holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_version: Option<String>,
    /// The last `leitwerk.dev/control` request handled (`retrain`), or the last pin applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_control: Option<crate::experiment::ControlStatus>,
}

/// Where a Model's retraining schedule stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The due time (RFC 3339) of the newest scheduled training that was started. Due times
    /// up to it are done; a due time after it that has passed starts one training, also when
    /// the operator was down at that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// The next due time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The training Job started for `lastRun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
}

crate::common::named_enum! {
    /// What a drift check of a Model's serving version found.
    #[derive(Default)]
    pub enum DriftLevel {
        /// Too few serving rows in the window to judge.
        #[default]
        NoData,
        /// Every feature below its warning level.
        Ok,
        /// Some feature at or above `psiWarn` / `jsWarn`: a Warning condition.
        Warn,
        /// Some feature at or above `psiAct` / `jsAct`: the policy's action runs (once per version).
        Act,
    }
}

/// The last drift check of a Model's serving version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelDriftStatus {
    /// When (RFC 3339).
    pub checked_at: String,
    /// The version checked.
    pub version: String,
    /// What the check found.
    pub level: DriftLevel,
    /// The feature that drifted most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_feature: Option<String>,
    /// Its measure (PSI for numeric features, Jensen–Shannon divergence in bits for
    /// categorical ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_value: Option<f64>,
    /// Serving rows in the window.
    #[serde(default)]
    pub rows: f64,
    /// Per feature: `psi` or `js` and the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureDriftValue>,
    /// The version the drift action was taken on (once per version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_on: Option<String>,
    /// A retraining the drift asked for and no Job has started yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retrain_requested: bool,
}

crate::common::named_enum! {
    /// How the drift of a feature is measured.
    #[derive(Default)]
    pub enum DriftMetric {
        #[default]
        /// Population stability index over the model card's decile buckets (numeric features).
        Psi = "psi",
        /// Jensen–Shannon divergence in bits over the categories (categorical features).
        Js = "js",
    }
}

/// Drift of one feature.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDriftValue {
    /// Feature name.
    pub feature: String,
    /// How it is measured.
    pub metric: DriftMetric,
    /// The measure.
    pub value: f64,
}

crate::common::named_enum! {
    /// The phase of a Model.
    pub enum ModelPhase {
        /// Waiting for a reference, a Secret or a schedulable node.
        Pending,
        /// The FeatureSet has no usable snapshot yet.
        WaitingForData,
        /// A training Job is running.
        Training,
        /// A version is being rolled out; no replica is available yet.
        Deploying,
        /// A version serves.
        Serving,
        /// The last trained version is below `minMetrics`.
        Rejected,
        /// The last training failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
        /// Fits and scores in batch on its schedule and serves nothing (a
        /// CustomerLifetimeValue Model).
        Scheduled,
    }
}

crate::common::impl_resource_status!(ModelStatus, ModelPhase);

/// One segment of a declared segment column on a version's validation rows.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SegmentStatus {
    /// The column.
    pub column: String,
    /// The value (for a numeric column, its quartile range such as `(12.5, 40]`).
    pub value: String,
    /// Validation rows in the segment.
    pub rows: i64,
    /// ROC AUC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Share of positive labels.
    pub positive_rate: f64,
    /// Mean score.
    pub mean_score: f64,
}
