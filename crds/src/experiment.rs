//! `Experiment`: how traffic moves between model versions and what evidence decides.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::LocalObjectReference;

/// An Experiment splits a Model's traffic between variants, reads KPIs from Prometheus each
/// interval, and promotes, pauses or rolls back on evidence, recording every decision.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    status = "ExperimentStatus",
    shortname = "exp",
    category = "leitwerk",
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.strategy.type"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.step"}"#,
    printcolumn = r#"{"name":"Weights","type":"string","jsonPath":".status.weightsSummary"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".status.lastDecision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.variants.all(v, self.variants.filter(w, w.name == v.name).size() == 1)").message("variants[].name must be unique"))]
#[x_kube(validation = Rule::new("self.variants.filter(v, v.role == 'Stable').size() == 1").message("variants must contain exactly one variant with role Stable"))]
#[x_kube(validation = Rule::new("self.strategy.type != 'Bandit' || (has(self.kpis) && self.kpis.exists(k, k.name == self.strategy.bandit.rewardKpi))").message("strategy.bandit.rewardKpi must name an entry of spec.kpis"))]
#[x_kube(validation = Rule::new("self.strategy.type != 'Holdout' || self.variants.exists(v, v.name == self.strategy.holdout.controlVariant && v.role == 'Control')").message("strategy.holdout.controlVariant must name a variant with role Control"))]
#[x_kube(validation = Rule::new("self.strategy.type != 'FixedSplit' || self.strategy.fixedSplit.weights.all(k, self.variants.exists(v, v.name == k))").message("strategy.fixedSplit.weights may only name variants of spec.variants"))]
#[x_kube(validation = Rule::new("self.strategy.type != 'Canary' || self.variants.exists(v, v.role == 'Candidate')").message("a Canary strategy needs a variant with role Candidate"))]
#[x_kube(validation = Rule::new("self.strategy.type != 'Shadow' || self.variants.filter(v, v.role == 'Candidate').size() == 1").message("a Shadow strategy mirrors traffic to exactly one variant with role Candidate"))]
#[x_kube(validation = Rule::new("!has(self.kpis) || self.kpis.all(k, self.kpis.filter(j, j.name == k.name).size() == 1)").message("kpis[].name must be unique"))]
pub struct ExperimentSpec {
    /// The competing variants: versions of one Model, or several Models.
    #[schemars(length(min = 2, max = 8))]
    pub variants: Vec<Variant>,
    /// How traffic is allocated and when a winner is declared.
    pub strategy: Strategy,
    /// KPI gates read from Prometheus each interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub kpis: Vec<KpiGate>,
    /// Input drift gates; a breach rolls the candidate back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_gate: Option<DriftGate>,
    /// Time between two analyses, e.g. `1m`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"), length(max = 16))]
    pub interval: String,
    /// Failed analyses tolerated before rolling back; 0 (the default) rolls back on the
    /// first breached gate.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
    /// Inconclusive analyses (no data, too few samples) tolerated before pausing.
    #[serde(default = "default_inconclusive_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub inconclusive_limit: i32,
    /// Consecutive query errors (Prometheus unreachable) tolerated before pausing.
    #[serde(default = "default_error_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub consecutive_error_limit: i32,
    /// How weights reach the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficRouting>,
    /// Prometheus URL; the operator's configured Prometheus when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^https?://.+"))]
    pub prometheus_url: Option<String>,
}

fn default_interval() -> String {
    "1m".to_string()
}

fn default_failure_limit() -> i32 {
    0
}

fn default_inconclusive_limit() -> i32 {
    3
}

fn default_error_limit() -> i32 {
    3
}

/// One variant of an Experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Variant name, used in weights, KPI queries (`{{variant}}`) and status.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The Model that serves this variant.
    pub model_ref: LocalObjectReference,
    /// Model version (e.g. `v3`); the Model's newest version when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub version: Option<String>,
    /// Role of the variant.
    #[serde(default)]
    pub role: VariantRole,
}

/// Role of a variant.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum VariantRole {
    /// What serves today; rollbacks return here.
    Stable,
    /// A new version under test.
    #[default]
    Candidate,
    /// A holdout control arm (previous version or a rules baseline).
    Control,
}

/// Traffic allocation. `type` selects the strategy, and exactly its block is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'Canary') == has(self.canary)").message("strategy.canary is required with type Canary and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'Bandit') == has(self.bandit)").message("strategy.bandit is required with type Bandit and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'FixedSplit') == has(self.fixedSplit)").message("strategy.fixedSplit is required with type FixedSplit and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'Holdout') == has(self.holdout)").message("strategy.holdout is required with type Holdout and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'Shadow') == has(self.shadow)").message("strategy.shadow is required with type Shadow and not allowed otherwise"))]
pub struct Strategy {
    /// The strategy.
    #[serde(rename = "type")]
    pub type_: StrategyType,
    /// Canary steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Thompson-sampling bandit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit: Option<BanditStrategy>,
    /// A fixed split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_split: Option<FixedSplitStrategy>,
    /// A holdout control arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutStrategy>,
    /// A shadow run on mirrored traffic, then a canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStrategy>,
}

/// Strategy types.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyType {
    /// Step the candidate's weight up while the KPI gates hold.
    Canary,
    /// Allocate by Thompson sampling; promote the arm that is best with high probability.
    Bandit,
    /// Keep fixed weights (A/B test).
    FixedSplit,
    /// Keep a fixed share on a control arm and report the lift.
    Holdout,
    /// Mirror live traffic to the candidate, compare its answers with stable's, then run a
    /// canary or retire it.
    Shadow,
}

/// Canary steps.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.steps.isSorted() && self.steps.all(s, self.steps.filter(t, t == s).size() == 1)").message("strategy.canary.steps must be strictly ascending, e.g. [5, 10, 25, 50, 100]"))]
pub struct CanaryStrategy {
    /// Candidate weights in percent, strictly ascending, each 1–100.
    #[schemars(length(min = 1, max = 20), inner(range(min = 1, max = 100)))]
    pub steps: Vec<i32>,
}

/// Thompson-sampling bandit.
// The API server compares a whole-number value with a fractional `minimum` truncated (0 passes
// `minimum: 0.5`): the rule below holds the bound for every value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.probabilityToWin >= 0.5").message("bandit.probabilityToWin must be at least 0.5: a lower bar would promote an arm that is more likely not best"))]
pub struct BanditStrategy {
    /// Name of the KPI (in `spec.kpis`) that is the reward: its `query` is a rate (e.g.
    /// conversions per prediction) and its `sampleQuery` counts the trials behind it.
    #[schemars(length(min = 1, max = 63))]
    pub reward_kpi: String,
    /// Smallest weight any arm keeps, in percent.
    #[serde(default = "default_floor")]
    #[schemars(range(min = 0, max = 25))]
    pub floor_weight: i32,
    /// Probability of being best at which the winner is promoted.
    #[serde(default = "default_p_best")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub probability_to_win: f64,
    /// Trials each arm needs before a winner may be declared.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 1))]
    pub min_samples: i64,
    /// Seed of the Monte Carlo estimate, for reproducible decisions.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub seed: i64,
}

fn default_floor() -> i32 {
    5
}

fn default_p_best() -> f64 {
    0.95
}

fn default_min_samples() -> i64 {
    1000
}

/// A fixed split.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.weights.all(k, self.weights[k] >= 0 && self.weights[k] <= 100)").message("strategy.fixedSplit.weights must each lie in 0–100"))]
#[x_kube(validation = Rule::new("self.weights.map(k, self.weights[k]).sum() == 100").message("strategy.fixedSplit.weights must add up to 100"))]
pub struct FixedSplitStrategy {
    /// Weight per variant name in percent; they must add up to 100.
    #[schemars(extend("minProperties" = 2, "maxProperties" = 8))]
    pub weights: BTreeMap<String, i32>,
}

/// A holdout control arm.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HoldoutStrategy {
    /// Share of traffic for the control arm, in percent.
    #[schemars(range(min = 1, max = 50))]
    pub percent: i32,
    /// The variant (role Control) that receives the holdout share.
    #[schemars(length(min = 1, max = 32))]
    pub control_variant: String,
    /// KPI (in `spec.kpis`, with a `sampleQuery`) whose lift over control is reported; the
    /// first KPI when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub kpi: Option<String>,
}

/// A KPI gate: a PromQL template and the thresholds it must meet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("a KPI gate sets min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("kpis[].min must not exceed kpis[].max"))]
pub struct KpiGate {
    /// KPI name, e.g. `conversion-rate`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// PromQL with placeholders `{{namespace}}`, `{{model}}`, `{{variant}}`, `{{interval}}`.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Query for the sample size (e.g. predictions) behind the KPI; required with `minSamples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub sample_query: Option<String>,
    /// Lower bound the variant's value must meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound the variant's value must meet (e.g. CPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Whether `min`/`max` are ratios to the stable variant's value (0.95 = 95 % of stable).
    #[serde(default)]
    pub relative_to_stable: bool,
    /// Samples a variant needs before the gate is judged; fewer is inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_samples: Option<i64>,
}

/// Input drift gate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftGate {
    /// Largest PSI any numeric feature may reach.
    #[serde(default = "default_psi")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub max_psi: f64,
    /// Largest Jensen–Shannon divergence any categorical feature may reach.
    #[serde(default = "default_js")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_js_divergence: f64,
    /// Features checked; all features of the model card when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub features: Vec<String>,
    /// Serving rows of a variant the window needs before the gate judges it: with fewer, the
    /// divergence is mostly sampling noise and the check is inconclusive.
    #[serde(default = "default_min_rows")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_rows: i64,
    /// How far back the drift of a variant is measured (`30s`, `10m`, …); the analysis
    /// interval when unset. A distribution needs more rows than a rate: a longer window gives
    /// low-traffic variants enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+[smhd]$"))]
    pub window: Option<String>,
}

fn default_min_rows() -> i64 {
    100
}

fn default_psi() -> f64 {
    0.25
}

fn default_js() -> f64 {
    0.1
}

/// How weights reach the traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Gateway API parent (a Gateway) for the HTTPRoute the operator owns; replica ratio is
    /// used when the Gateway API is not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<LocalObjectReference>,
    /// Host names the HTTPRoute matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub hostnames: Vec<String>,
}

mod shadow;
mod status;

pub use shadow::*;
pub use status::*;
