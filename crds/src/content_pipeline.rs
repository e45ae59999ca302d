//! `ContentPipeline`: a briefing, grounded in a RagIndex, run through guarded stages.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, SecretKeyReference};

/// A ContentPipeline turns a briefing into content grounded in a RagIndex: outline → draft →
/// fact check → style check → on-page check, with PII redaction, budgets, optional editor
/// approval and a publish target.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "ContentPipeline",
    namespaced,
    status = "ContentPipelineStatus",
    shortname = "cp",
    category = "leitwerk",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.stage"}"#,
    printcolumn = r#"{"name":"Grounded","type":"string","jsonPath":".status.grounded"}"#,
    printcolumn = r#"{"name":"Tokens","type":"integer","jsonPath":".status.tokensUsed"}"#,
    printcolumn = r#"{"name":"Cost","type":"string","jsonPath":".status.cost"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.generators.all(g, self.generators.filter(h, h.name == g.name).size() == 1)").message("generators[].name must be unique"))]
#[x_kube(validation = Rule::new("self.stages.all(s, self.stages.filter(t, t == s).size() == 1)").message("stages must not repeat a stage"))]
#[x_kube(validation = Rule::new("!self.stages.exists(s, s == 'FactCheck') || self.stages.exists(s, s == 'Draft')").message("stages: FactCheck needs a Draft stage before it"))]
pub struct ContentPipelineSpec {
    /// What to write.
    pub briefing: Briefing,
    /// The RagIndex every claim must be grounded in.
    pub rag_index_ref: LocalObjectReference,
    /// Generator backends, tried in order (the next one on failure).
    #[schemars(length(min = 1, max = 5))]
    pub generators: Vec<Generator>,
    /// Stages run in order; all of them when left out.
    #[serde(default = "default_stages")]
    #[schemars(length(min = 1, max = 5))]
    pub stages: Vec<Stage>,
    /// Guardrails.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Token and cost budgets per run.
    pub budget: Budget,
    /// Wait for an editor's approval before publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Where approved content goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishTarget>,
    /// Revisions of a draft that failed a check, per generator, before the next generator
    /// writes it again.
    #[serde(default = "default_revisions")]
    #[schemars(range(min = 0, max = 5))]
    pub max_revisions: i32,
    /// A ConfigMap of prompt templates (minijinja), one key per template: `system`, `outline`,
    /// `section`, `revision`; absent keys use the built-in ones. A change starts a new run; the
    /// templates' digest is recorded with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates_ref: Option<LocalObjectReference>,
    /// A ConfigMap whose keys are anchor texts and values URLs: the internal links inserted
    /// into the draft and checked by the on-page stage. A change starts a new run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_map_ref: Option<LocalObjectReference>,
}

fn default_revisions() -> i32 {
    2
}

fn default_stages() -> Vec<Stage> {
    vec![
        Stage::Outline,
        Stage::Draft,
        Stage::FactCheck,
        Stage::StyleCheck,
        Stage::OnPageCheck,
    ]
}

/// The briefing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Briefing {
    /// Goal of the piece, e.g. "rank for 'lead scoring for B2B SaaS'".
    #[schemars(length(min = 1, max = 2048))]
    pub goal: String,
    /// Target reader.
    #[schemars(length(min = 1, max = 1024))]
    pub persona: String,
    /// Content type.
    #[serde(default)]
    pub format: ContentFormat,
    /// Entities (products, features, competitors) the piece must cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub entities: Vec<String>,
    /// Required section headings, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub structure: Vec<String>,
    /// Target keywords for the on-page check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 128)))]
    pub keywords: Vec<String>,
    /// Language as a BCP 47 tag, e.g. `en` or `de-DE`.
    #[serde(default = "default_language")]
    #[schemars(
        length(min = 2, max = 16),
        regex(pattern = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    )]
    pub language: String,
    /// Target length in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 20000))]
    pub target_words: Option<i32>,
}

fn default_language() -> String {
    "en".to_string()
}

/// Content types.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ContentFormat {
    /// A long-form article.
    #[default]
    Article,
    /// A landing page.
    LandingPage,
    /// A marketing e-mail.
    Email,
    /// A short ad text.
    AdCopy,
}

/// One generator backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.openAiCompatible), has(self.inferenceServer)].filter(x, x).size() == 1").message("a generator sets exactly one of openAiCompatible or inferenceServer"))]
pub struct Generator {
    /// Name of the backend, used in status and metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// An OpenAI-compatible chat-completions endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ai_compatible: Option<OpenAiCompatible>,
    /// The generator endpoint of a `leitwerk-inference-server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_server: Option<InferenceServerGenerator>,
    /// Price per 1,000 tokens in the budget's currency, for cost accounting: prompt and
    /// completion tokens alike unless the two prices below say otherwise.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub price_per_1k_tokens: f64,
    /// Price per 1,000 prompt tokens (overrides `pricePer1kTokens` for prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub input_price_per_1k_tokens: Option<f64>,
    /// Price per 1,000 completion tokens (overrides `pricePer1kTokens` for completions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub output_price_per_1k_tokens: Option<f64>,
    /// Sampling of this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Most requests per minute sent to this backend (a token bucket); unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_minute: Option<i32>,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
    /// Retries of a request that failed with 429, 5xx or a network error (backing off and
    /// honouring `Retry-After`) before the next generator is tried.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
}

fn default_timeout() -> i32 {
    60
}

fn default_retries() -> i32 {
    2
}

/// Sampling of one backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sampling {
    /// Temperature; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    /// Most completion tokens per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 32768))]
    pub max_tokens: Option<i32>,
    /// Seed, for backends that honour one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

/// An OpenAI-compatible endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OpenAiCompatible {
    /// Base URL, e.g. `https://llm.internal/v1`.
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://.+"))]
    pub url: String,
    /// Model name.
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyReference>,
}

/// Leitwerk's own generator, `leitwerk-inference-server --generator-model`: one that runs
/// already (`url`), or one the operator runs for each content run as a sidecar of the run's
/// pod (`model`), on a GPU node when `resources.gpu` asks for one. The sidecar holds its
/// resources only while the run lasts, and the run's stages start once it has loaded the
/// model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.model)").message("inferenceServer sets exactly one of url (a running server) or model (a GGUF file the operator serves beside each run)"))]
#[x_kube(validation = Rule::new("!has(self.resources) || has(self.model)").message("inferenceServer.resources applies to model only: a server at url was scheduled by whoever runs it"))]
pub struct InferenceServerGenerator {
    /// Base URL of a running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://.+"))]
    pub url: Option<String>,
    /// A quantized model (GGUF) the operator serves beside each run: a `file://` URL inside
    /// the artifact store (mounted read-only into the run's pod) or an absolute path inside
    /// the inference server image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^(file://)?/.+\.gguf$"))]
    pub model: Option<String>,
    /// CPU, memory and GPUs of that sidecar; with `gpu` the run's pod is scheduled on a node
    /// that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::common::WorkloadResources>,
}

/// Pipeline stages.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Plan the sections from the briefing and retrieved sources.
    Outline,
    /// Write the draft.
    Draft,
    /// Map every claim to a retrieved source; unmapped claims fail the draft.
    FactCheck,
    /// Check tone, banned phrases and readability.
    StyleCheck,
    /// Check keywords, headings, length and metadata.
    OnPageCheck,
}

/// Guardrails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Guardrails {
    /// Redact PII (e-mail addresses, phone numbers, names from CRM) before any prompt.
    #[serde(default = "default_true")]
    pub redact_pii: bool,
    /// Share of claims that must map to a retrieved source, 0–1.
    #[serde(default = "default_coverage")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_grounded_claims: f64,
    /// Phrases the content must not contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub banned_phrases: Vec<String>,
    /// Phrases the content must contain at least once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub required_phrases: Vec<String>,
    /// The brand glossary: spellings the content must not use, and the brand's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub glossary: Vec<GlossaryEntry>,
    /// Most words in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 200))]
    pub max_sentence_words: Option<i32>,
    /// Lowest readability score accepted (Flesch reading ease for English, Amstad for
    /// German); reported only when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_readability: Option<f64>,
    /// Lowest embedding similarity between a claim and its chunk, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_similarity: Option<f64>,
    /// Kinds of personal data whose raw values the published text gets back where the model
    /// kept their placeholders (every other placeholder is published as its bare label, e.g.
    /// `[EMAIL]`). Models never see raw values; `redactPii: false` restores every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    pub restore_personal_data: Vec<PersonalDataKind>,
    /// The HMAC key that salts the placeholders of redacted personal data. Without one each
    /// run draws a random key, and placeholders differ between runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction_key_secret_ref: Option<SecretKeyReference>,
}

/// Kinds of personal data the redaction recognises.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonalDataKind {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// IBANs (MOD-97 checked).
    Iban,
    /// Card numbers (Luhn checked).
    Card,
    /// IPv4 addresses.
    Ip,
    /// German tax identification numbers.
    TaxId,
}

/// One glossary entry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GlossaryEntry {
    /// The spelling to flag, e.g. `Hubspot`; the preferred spelling itself flags every other
    /// capitalisation of it.
    #[schemars(length(min = 1, max = 128))]
    pub variant: String,
    /// The brand's spelling, e.g. `HubSpot`.
    #[schemars(length(min = 1, max = 128))]
    pub preferred: String,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            redact_pii: true,
            min_grounded_claims: default_coverage(),
            banned_phrases: Vec::new(),
            required_phrases: Vec::new(),
            glossary: Vec::new(),
            max_sentence_words: None,
            min_readability: None,
            min_similarity: None,
            redaction_key_secret_ref: None,
            restore_personal_data: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_coverage() -> f64 {
    1.0
}

/// Budgets of one run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Most tokens (prompt and completion) one run may use.
    #[schemars(range(min = 100, max = 10000000))]
    pub max_tokens: i64,
    /// Most money one run may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub max_cost: Option<f64>,
    /// Most tokens all ContentPipelines of the namespace may use per day (UTC), counted over
    /// every run that started that day. A run starts only when the day's spend plus what the
    /// runs still going may spend leaves room for it, and gets what is left as its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 1000000000))]
    pub max_tokens_per_day: Option<i64>,
    /// Most money all ContentPipelines of the namespace may spend per day (UTC); as
    /// `maxTokensPerDay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1000000.0))]
    pub max_cost_per_day: Option<f64>,
    /// ISO 4217 currency of `maxCost` and the prices.
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"), length(max = 3))]
    pub currency: String,
}

fn default_currency() -> String {
    "EUR".to_string()
}

/// Editor approval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Whether publishing waits for approval (the `leitwerk.dev/approved-by` annotation).
    #[serde(default = "default_true")]
    pub required: bool,
    /// Users or groups allowed to approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub approvers: Vec<String>,
}

/// Where content is published. Exactly one target is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.configMap), has(self.artifactStore), has(self.webhook)].filter(x, x).size() == 1").message("publish sets exactly one of configMap, artifactStore or webhook"))]
pub struct PublishTarget {
    /// A ConfigMap in the same namespace that the operator owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<LocalObjectReference>,
    /// An artifact store URL prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^(file|s3|gs|az)://.+"))]
    pub artifact_store: Option<String>,
    /// A CMS webhook that receives the content as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// The organisation named as author and publisher in the `Article` JSON-LD; the
    /// namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub organization: Option<String>,
    /// The URL the content will live at (the JSON-LD's `mainEntityOfPage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^https?://.+"))]
    pub canonical_url: Option<String>,
    /// The experiment the content is tested in, carried in the payload for tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub experiment_id: Option<String>,
}

/// A webhook target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// URL the content is POSTed to.
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://.+"))]
    pub url: String,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyReference>,
    /// Key of the `X-Leitwerk-Signature` header (`sha256=` HMAC-SHA256 of the body), so the
    /// receiver can verify that the content came from this pipeline unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyReference>,
}

mod status;

pub use status::*;
