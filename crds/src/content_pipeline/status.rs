//! What the operator shows of a ContentPipeline: its phase, the current run (what it was
//! asked, each stage, where it went) and the day's spend, and what the content Job reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed of a ContentPipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContentPipelineStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ContentPipelinePhase>,
    /// Standard conditions (`Ready`, `Grounded`, `WithinBudget`, `Approved`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The progress of the Job at work now, from its newest report; absent when none runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
    /// The stage running or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Tokens used by the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<i64>,
    /// Cost of the current run, e.g. `0.42 EUR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// Digest of the newest draft in the artifact store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    /// Grounded claims / claims of the current run, e.g. `7/7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounded: Option<String>,
    /// The current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<ContentRun>,
    /// What this pipeline's runs spent on one day (UTC): the namespace's daily budget counts
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<DailySpend>,
}

/// Spend on one day.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DailySpend {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// Tokens.
    pub tokens: i64,
    /// Cost.
    pub cost: f64,
    /// Run ids counted, so that none counts twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
}

/// One run: what it was asked, what each stage did, and where it went.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContentRun {
    /// The run id: a digest of everything that decides the content (briefing, generators,
    /// guardrails, budget, link map, prompt templates). A change of any starts a new run.
    pub id: String,
    /// The attempt: 0 for the first, one more for each rerun a `leitwerk.dev/rerun` asked
    /// for after a failure.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: i32,
    /// The `leitwerk.dev/rerun` value this attempt answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_token: Option<String>,
    /// When the run's Job was started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The RagIndex version it was grounded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_version: Option<String>,
    /// Digest of the prompt templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
    /// The token budget the run was started with (the spec's, or less when the namespace's
    /// daily budget had less left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_tokens: Option<i64>,
    /// The cost budget the run was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_cost: Option<f64>,
    /// What the run's Job reported, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ContentSummary>,
    /// Who approved (from `leitwerk.dev/approved-by`), or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Where the content went, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_to: Option<String>,
}

/// What `leitwerk-trainer content` reports: the run's stages and figures.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContentSummary {
    /// The run id it ran for.
    pub run_id: String,
    /// Whether every check passed (the content may go to approval).
    pub passed: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stages in order (a revision repeats Draft and the checks); the newest when many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageSummary>,
    /// Claims in the last draft.
    pub claims: i64,
    /// Claims a retrieved chunk supports.
    pub grounded_claims: i64,
    /// Supported claims / claims.
    pub faithfulness: f64,
    /// Readability of the last draft (Flesch or Amstad by language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readability: Option<f64>,
    /// On-page findings of the last draft.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seo_findings: Vec<String>,
    /// Tokens used, every call counted (retries, fallbacks, revisions).
    pub tokens: i64,
    /// Their cost in the budget's currency.
    pub cost: f64,
    /// Answers served from the response cache.
    pub cache_hits: i64,
    /// Tokens those answers would have cost.
    pub saved_tokens: i64,
    /// The generator that wrote the last draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Fallbacks and escalations, e.g. `gateway → in-cluster: HTTP 500`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Whether the run stopped because the next call could exceed the budget.
    #[serde(default)]
    pub budget_exceeded: bool,
    /// URL of the run's artifacts (the claim ledger, the draft, the payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<String>,
    /// `sha256:<hex>` of the payload to publish, when the run passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
}

/// What `leitwerk-trainer publish-content` reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PublishSummary {
    /// Where the content went (the webhook URL and the tries, or the object's URL).
    pub published_to: String,
}

/// One stage of a run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageSummary {
    /// `Retrieve`, `Outline`, `Draft`, `FactCheck`, `StyleCheck`, `OnPageCheck`.
    pub stage: String,
    /// Whether it passed.
    pub passed: bool,
    /// Milliseconds it took.
    pub duration_ms: i64,
    /// Tokens its calls used.
    #[serde(default)]
    pub tokens: i64,
    /// Their cost.
    #[serde(default)]
    pub cost: f64,
    /// The generator that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// What it found, failures first (the first few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

crate::common::named_enum! {
    /// The phase of a ContentPipeline.
    pub enum ContentPipelinePhase {
        /// Waiting for a reference or a Secret.
        Pending,
        /// The referenced RagIndex has no ready version yet.
        WaitingForIndex,
        /// A run is generating content.
        Running,
        /// Generated content waits for a human approval.
        AwaitingApproval,
        /// The last run's content was published.
        Published,
        /// An editor rejected the last run's content; it is not published.
        Rejected,
        /// The last run failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(ContentPipelineStatus, ContentPipelinePhase);

fn is_zero(n: &i32) -> bool {
    *n == 0
}
