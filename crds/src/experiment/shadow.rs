//! Shadow mode: the candidate scores a copy of live traffic while only the stable variant's
//! answers reach callers; gates on the comparison send it on into a canary or retire it.

use super::*;

/// A shadow run before a canary. While shadowing, stable takes all traffic and the candidate
/// gets a copy of every request (the HTTPRoute's `RequestMirror`, or the stable server's own
/// tee); its answers are compared with stable's and thrown away. When every gate holds the
/// candidate goes on to `canarySteps`; when one is breached (beyond `failureLimit`) it is
/// retired (its version marked RolledBack) without ever having answered a caller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.canarySteps.isSorted() && self.canarySteps.all(s, self.canarySteps.filter(t, t == s).size() == 1)").message("strategy.shadow.canarySteps must be strictly ascending, e.g. [10, 50, 100]"))]
#[x_kube(validation = Rule::new("!has(self.minAgreement) || self.minAgreement <= 1.0").message("strategy.shadow.minAgreement is a share of rows: at most 1"))]
pub struct ShadowStrategy {
    /// Score at which a row counts as positive: two scores agree when both lie on the same
    /// side of it.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
    /// Rows the candidate must score in an analysis window before the gates judge it; fewer
    /// is inconclusive.
    #[serde(default = "default_min_rows")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub min_rows: i64,
    /// Largest PSI of the candidate's scores against stable's on the same requests.
    #[serde(default = "default_score_psi")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub max_score_psi: f64,
    /// Smallest share of rows the two put on the same side of `threshold`. Agreement needs
    /// both answers to one request, so with this gate the stable server tees the requests even
    /// where a Gateway could mirror them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_agreement: Option<f64>,
    /// Largest p99 latency of the candidate as a multiple of stable's.
    #[serde(default = "default_p99_ratio")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_p99_ratio: f64,
    /// Largest share of mirrored requests the candidate failed.
    #[serde(default = "default_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// The canary after a passed shadow: candidate weights in percent, strictly ascending.
    /// `[100]` promotes straight away.
    #[serde(default = "default_canary_steps")]
    #[schemars(length(min = 1, max = 20), inner(range(min = 1, max = 100)))]
    pub canary_steps: Vec<i32>,
    /// Who copies the requests.
    #[serde(default)]
    pub mirror: MirrorMode,
}

fn default_threshold() -> f64 {
    0.5
}

fn default_min_rows() -> i64 {
    200
}

fn default_score_psi() -> f64 {
    0.2
}

fn default_p99_ratio() -> f64 {
    2.0
}

fn default_error_rate() -> f64 {
    0.01
}

fn default_canary_steps() -> Vec<i32> {
    vec![10, 25, 50, 100]
}

crate::common::named_enum! {
    /// Who copies live requests to the shadow candidate.
    #[derive(Default)]
    pub enum MirrorMode {
        /// The HTTPRoute's `RequestMirror` filter where the Gateway API routes the traffic
        /// (and no `minAgreement` gate asks for pairs of answers); the stable server's tee
        /// otherwise.
        #[default]
        Auto,
        /// The stable server tees every REST request to the candidate and compares the two
        /// answers row by row (agreement included), whatever routes the traffic.
        Server,
    }
}

/// What the shadow comparison found in the last analysis of the shadow stage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// Who copies the requests: `HTTPRoute` (the Gateway's `RequestMirror`) or
    /// `StableServer` (the stable server's tee).
    pub mirror: String,
    /// Where the shadow stands: `Mirroring`, `Passed` (the canary took over) or `Retired`.
    pub stage: String,
    /// Rows the candidate scored in the window.
    #[serde(default)]
    pub rows: f64,
    /// PSI of the candidate's scores against stable's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_psi: Option<f64>,
    /// Share of rows on the same side of the threshold (stable server's tee only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// Stable's median latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_p50_seconds: Option<f64>,
    /// Stable's p99 latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_p99_seconds: Option<f64>,
    /// The candidate's median latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_p50_seconds: Option<f64>,
    /// The candidate's p99 latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_p99_seconds: Option<f64>,
    /// Share of mirrored requests the candidate failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}
