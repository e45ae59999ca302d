//! What the operator observed of an Experiment: its decisions, the analysis state, evidence
//! per arm, the holdout's lift and input drift.

use super::*;

crate::common::named_enum! {
    /// What one analysis of an Experiment did.
    #[derive(Default)]
    pub enum DecisionAction {
        /// The Experiment started: variants resolved, first weights set.
        Start,
        /// A canary step passed: the candidate gets the next step's weight.
        Advance,
        /// The candidate (or a bandit arm) won and serves the Model.
        Promote,
        /// A gate was breached: all traffic back to the stable variant.
        RollBack,
        /// No verdict yet (too few samples, no data, a query error): the weights stay.
        #[default]
        Hold,
        /// Holds went past their limit: the analysis is paused until evidence returns.
        Pause,
        /// A bandit moved weights towards the arms more likely to be best.
        Reweight,
        /// A fixed split or holdout recorded its KPIs.
        Measure,
        /// A bandit's best arm is the stable one: the Experiment ends without a promotion.
        Conclude,
        /// Someone resumed an analysis they had paused (`leitwerk.dev/control: resume`).
        Resume,
        /// Someone started the Experiment again after it ended (`leitwerk.dev/control:
        /// retry`): the variants are resolved anew, e.g. to a newer candidate.
        Retry,
    }
}

crate::common::named_enum! {
    /// Why an analysis is paused.
    pub enum PauseReason {
        /// Prometheus queries failed more than `consecutiveErrorLimit` times in a row.
        PrometheusUnavailable,
        /// More than `inconclusiveLimit` analyses in a row had no verdict (no data, too few
        /// samples).
        InsufficientData,
        /// Someone paused it (`leitwerk.dev/control: pause`); only `resume` continues it.
        Requested,
    }
}

/// One decision of the analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When (RFC 3339).
    pub time: String,
    /// What the analysis did.
    pub action: DecisionAction,
    /// Why, with the numbers.
    pub message: String,
    /// Canary step (`index/total`) or analysis number the decision was taken at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Measured values per `<kpi>/<variant>` (and `drift/<variant>/<feature>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// Thresholds in force per `<kpi>/<variant>/min|max` (relative ones already scaled).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, f64>,
    /// Weights after the decision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, i32>,
    /// Who asked for it, for a decision taken by hand (`leitwerk.dev/control`), as
    /// `leitwerk.dev/requested-by` named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// The last `leitwerk.dev/control` request the operator handled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ControlStatus {
    /// The annotation's value, e.g. `promote:1765000000`; a request is handled once.
    pub request: String,
    /// Who asked (`leitwerk.dev/requested-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When it was handled (RFC 3339).
    pub time: String,
    /// What came of it: the action taken, or why it was refused.
    pub result: String,
}

/// A variant as resolved when the Experiment started; kept so that a promotion (which changes
/// the Model's serving version) or a restart does not change what is compared.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VariantStatus {
    /// Variant name.
    pub name: String,
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Artifact URL of the version (digest-pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// Deployment and Service serving the variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Replicas asked for.
    #[serde(default)]
    pub replicas: i32,
    /// Ready replicas seen.
    #[serde(default)]
    pub ready_replicas: i32,
}

/// Where the analysis stands; enough for a restarted operator to continue.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisState {
    /// Canary step index (0-based) in force.
    #[serde(default)]
    pub step_index: i32,
    /// Analyses run so far (the bandit's seed offset).
    #[serde(default)]
    pub analyses: i64,
    /// Failed analyses so far.
    #[serde(default)]
    pub failures: i32,
    /// Inconclusive analyses since the last conclusive one.
    #[serde(default)]
    pub inconclusive: i32,
    /// Query errors in a row.
    #[serde(default)]
    pub consecutive_errors: i32,
    /// When the weights last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_since: Option<String>,
    /// When the next analysis is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_analysis: Option<String>,
    /// Why the analysis is paused, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
}

/// One arm's evidence (bandit posteriors, holdout counts), accumulated over analyses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmStatus {
    /// Variant name.
    pub variant: String,
    /// Successes counted (rate × trials per interval).
    pub successes: f64,
    /// Trials counted.
    pub trials: f64,
    /// Beta posterior α (1 + successes).
    pub alpha: f64,
    /// Beta posterior β (1 + failures).
    pub beta: f64,
    /// Probability of being the best arm (bandit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability_best: Option<f64>,
}

/// Lift of the model over the holdout control arm.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldoutStatus {
    /// KPI the lift is measured on.
    pub kpi: String,
    /// Rate of the model arms.
    pub model_rate: f64,
    /// Rate of the control arm.
    pub control_rate: f64,
    /// Model rate minus control rate.
    pub lift: f64,
    /// Lower end of the 95 % interval of the lift.
    pub lift_lower: f64,
    /// Upper end of the 95 % interval of the lift.
    pub lift_upper: f64,
    /// Lift relative to the control rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_lift: Option<f64>,
    /// Trials of the model arms.
    pub model_trials: f64,
    /// Trials of the control arm.
    pub control_trials: f64,
}

/// Drift of one feature of one variant in the last analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// Variant name.
    pub variant: String,
    /// Feature name.
    pub feature: String,
    /// How it is measured.
    pub metric: crate::model::DriftMetric,
    /// The measure.
    pub value: f64,
    /// Serving rows in the window.
    pub rows: f64,
}

/// What the operator observed of an Experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ExperimentPhase>,
    /// Standard conditions (`Ready`, `Progressing`, `Paused`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Current canary step as `index/total`, e.g. `2/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Weights in force, per variant, in percent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, i32>,
    /// Weights as one line for `kubectl get`, e.g. `stable=95,canary=5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_summary: Option<String>,
    /// The newest decision in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// Recent decisions, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    /// How weights reach traffic: `HTTPRoute` or `ReplicaRatio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    /// The variants as resolved at the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantStatus>,
    /// Where the analysis stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisState>,
    /// Accumulated evidence per arm (Bandit, Holdout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<ArmStatus>,
    /// Lift over the control arm (Holdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutStatus>,
    /// Drift per variant and feature in the last analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftStatus>,
    /// The shadow comparison (Shadow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// The variant that won (Promoted) or the stable one after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// The last control request handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_control: Option<ControlStatus>,
    /// Whether the Model was seen serving the promoted version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promotion_confirmed: bool,
}

crate::common::named_enum! {
    /// The phase of an Experiment.
    pub enum ExperimentPhase {
        /// Waiting for a referenced Model.
        Pending,
        /// A variant's Model has no usable version yet.
        WaitingForVersions,
        /// The candidate scores a copy of live traffic; only stable answers callers.
        Shadowing,
        /// A canary or bandit is shifting traffic.
        Progressing,
        /// A fixed split or holdout is measuring.
        Running,
        /// The analysis is paused (`analysis.pauseReason` says why); the weights stay.
        Paused,
        /// The candidate won and serves the Model.
        Promoted,
        /// A bandit's best arm is the stable one; nothing was promoted.
        Concluded,
        /// A gate was breached; all traffic is back on the stable variant.
        RolledBack,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(ExperimentStatus, ExperimentPhase);
