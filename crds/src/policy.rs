//! `LeitwerkPolicy`: what a platform team allows the Leitwerk resources of selected namespaces
//! to ask for, enforced at admission by the operator's webhook.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A cluster-wide policy for the Leitwerk resources of the namespaces it selects. Several
/// policies may select one namespace: a resource must satisfy each of them, so the strictest
/// wins. A rule left out allows anything.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "LeitwerkPolicy",
    status = "LeitwerkPolicyStatus",
    shortname = "lwpolicy",
    category = "leitwerk",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".status.namespacesSummary"}"#,
    printcolumn = r#"{"name":"Denials","type":"integer","jsonPath":".status.deniedTotal"}"#,
    printcolumn = r#"{"name":"Last denial","type":"string","jsonPath":".status.lastDenial"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LeitwerkPolicySpec {
    /// The namespaces this policy governs, by their labels; every namespace when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Names of the Secrets that resources may reference (`...SecretRef.name`); any Secret
    /// when left out. Whatever this allows, the user who writes the resource must also be
    /// allowed to `get` each Secret it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub secret_names: Option<Vec<String>>,
    /// Secrets that resources may reference, by their labels (e.g. `leitwerk.dev/usable:
    /// "true"`). With `secretNames` too, a Secret either rule allows is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_selector: Option<LabelSelector>,
    /// Image prefixes that a resource's own images (`spec.training.image`,
    /// `spec.serving.image`) must start with, e.g. `registry.example.com/ml/`; any image when
    /// left out. The operator's default images are the platform's own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub image_prefixes: Option<Vec<String>>,
    /// URL prefixes that an Experiment's `spec.prometheusUrl` must start with, e.g.
    /// `http://prometheus-operated.monitoring:9090/`; any URL when left out. An Experiment
    /// without `prometheusUrl` uses the operator's, which is always allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub prometheus_urls: Option<Vec<String>>,
    /// Hosts (optionally `host:port`) that generator and vector-store endpoints may name
    /// (ContentPipeline `generators[].openAiCompatible.url` and `inferenceServer.url`,
    /// RagIndex `vectorStore.qdrant.url`); any host when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub endpoint_hosts: Option<Vec<String>>,
    /// Most `nvidia.com/gpu` that the Leitwerk resources of one namespace may ask for
    /// together, counted from their specs before any pod exists: training, serving (times
    /// its replicas), indexing and generator sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub gpu_quota: Option<i64>,
    /// Most money one content run may cost: a ContentPipeline's `spec.budget.maxCost` must be
    /// set and at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub max_run_cost: Option<f64>,
    /// ContentPipelines must redact personal data before any model sees it
    /// (`spec.guardrails.redactPii` may not be false).
    #[serde(default)]
    pub require_redaction: bool,
    /// Values filled in where a resource leaves them out, by the operator's mutating webhook
    /// when the resource is created (never over what its author wrote). Where several
    /// policies give one, the least cost and the first policy by name win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<PolicyDefaults>,
}

/// What a policy fills in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDefaults {
    /// The Prometheus of an Experiment without `spec.prometheusUrl`, e.g. the namespace's
    /// tenant of a shared Thanos or Mimir (it must still be one `prometheusUrls` allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^https?://"))]
    pub prometheus_url: Option<String>,
    /// The `spec.budget.maxCost` of a ContentPipeline that sets none. Without it, a policy
    /// with `maxRunCost` fills in that limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub max_run_cost: Option<f64>,
}

/// What the policy governs and what it refused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeitwerkPolicyStatus {
    /// The namespaces the policy selects now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The namespaces as one line for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces_summary: Option<String>,
    /// Requests refused since the policy was made.
    #[serde(default)]
    pub denied_total: i64,
    /// The last denial, as one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_denial: Option<String>,
    /// The last denials, newest last (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<Denial>,
}

/// One request the policy refused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    /// When (RFC 3339).
    pub time: String,
    /// The user who asked.
    pub user: String,
    /// `Kind namespace/name` of the resource.
    pub resource: String,
    /// The field at fault, e.g. `spec.prometheusUrl`.
    pub field: String,
    /// The rule, e.g. `prometheusUrls`.
    pub rule: String,
    /// Why, as the user was told.
    pub message: String,
}

/// Denials kept in status.
pub const MAX_DENIALS: usize = 20;
