//! `FeatureSet`: where the raw data is, what the label is and which features to compute.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{SecretReference, TableFormat, WorkloadResources};

/// A FeatureSet describes raw event tables, an entity, a label and features as aggregations
/// over time windows; the operator materializes it into versioned, point-in-time-correct
/// snapshots and refuses to publish one that breaks a quality rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "FeatureSet",
    namespaced,
    status = "FeatureSetStatus",
    shortname = "fs",
    category = "leitwerk",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Rows","type":"integer","jsonPath":".status.rows"}"#,
    printcolumn = r#"{"name":"Quality","type":"string","jsonPath":".status.quality"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name: a FeatureSet name must be at most 63 characters (it names Jobs and labels)"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.features.all(f, self.sources.exists(s, s.name == f.source))").message("features[].source must name an entry of spec.sources"))]
#[x_kube(validation = Rule::new("self.sources.exists(s, s.name == self.label.source)").message("label.source must name an entry of spec.sources"))]
#[x_kube(validation = Rule::new("self.features.all(f, self.features.filter(g, g.name == f.name).size() == 1)").message("features[].name must be unique"))]
#[x_kube(validation = Rule::new("self.sources.all(s, self.sources.filter(t, t.name == s.name).size() == 1)").message("sources[].name must be unique"))]
pub struct FeatureSetSpec {
    /// The raw tables (events, CRM exports, ...) that features and the label are computed from.
    #[schemars(length(min = 1, max = 8))]
    pub sources: Vec<DataSource>,
    /// Column that identifies the entity (lead, customer, account) in every source.
    #[schemars(length(min = 1, max = 128))]
    pub entity_key: String,
    /// Column with the event time in every source; features for a cutoff use only rows strictly
    /// before it.
    #[schemars(length(min = 1, max = 128))]
    pub event_timestamp: String,
    /// How the label is computed for each entity and cutoff.
    pub label: LabelDefinition,
    /// The features: aggregations over time windows per entity, or static columns.
    #[schemars(length(min = 1, max = 256))]
    pub features: Vec<FeatureDefinition>,
    /// When snapshots are cut.
    pub cutoffs: Cutoffs,
    /// Rules a snapshot must pass before it is published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub quality_rules: Vec<QualityRule>,
    /// Artifact store URL for snapshots (`file:///...`, `s3://...`, `gs://...`); the
    /// operator's configured store when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^(file|s3|gs|az)://.+"))]
    pub artifact_store: Option<String>,
    /// Resources of the materialization Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkloadResources>,
}

/// One raw table. Exactly one of `file` and `objectStore` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.file), has(self.objectStore)].filter(x, x).size() == 1").message("a source sets exactly one of file or objectStore"))]
pub struct DataSource {
    /// Name of the source, used by features and the label.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
    )]
    pub name: String,
    /// File format.
    #[serde(default)]
    pub format: TableFormat,
    /// A file on a mounted volume (a PersistentVolume in small set-ups and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    /// An object in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSource>,
}

/// A file, or a glob of files, on a mounted path.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// Absolute path or glob, e.g. `/data/events/*.parquet`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// Name of the PersistentVolumeClaim that holds the path, mounted read-only at the
    /// directory of `path` (so `/data/leads/leads.csv` is `leads.csv` at the claim's root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub claim_name: Option<String>,
}

/// An object, or a prefix of objects, in object storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSource {
    /// URL such as `s3://bucket/events/2026/` or `gs://bucket/crm.parquet`.
    #[schemars(
        length(min = 6, max = 1024),
        regex(pattern = r"^(s3|gs|az)://[^/]+/.*")
    )]
    pub url: String,
    /// Secret with the credentials (keys as the object store expects, e.g.
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// The label: whether (or how much of) an outcome happens in a horizon after each cutoff.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'EventOccurs' || has(self.column)").message("label.column is required unless label.kind is EventOccurs"))]
pub struct LabelDefinition {
    /// Name of the label column in the snapshot.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Source the outcome events come from.
    #[schemars(length(min = 1, max = 63))]
    pub source: String,
    /// How the label is computed.
    #[serde(default)]
    pub kind: LabelKind,
    /// Column summed for `SumOfColumn` (e.g. revenue for lifetime value) or taken for `LastValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub column: Option<String>,
    /// Row filter selecting the outcome events, e.g. `event_type == 'conversion'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub filter: Option<String>,
    /// How long after the cutoff an outcome counts, e.g. `30d`.
    #[schemars(regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"), length(max = 16))]
    pub horizon: String,
}

/// How a label is computed.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum LabelKind {
    /// 1 when at least one matching event falls in the horizon, else 0 (binary classification).
    #[default]
    EventOccurs,
    /// Sum of `column` over matching events in the horizon (regression, e.g. value).
    SumOfColumn,
    /// The last value of `column` in the horizon.
    LastValue,
}

/// One feature: an aggregation of a column over time windows, or a static column.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.aggregation == 'Count' || has(self.column)").message("features[].column is required for every aggregation except Count"))]
#[x_kube(validation = Rule::new("self.aggregation == 'Static' ? !has(self.windows) || self.windows.size() == 0 : has(self.windows) && self.windows.size() > 0").message("features[].windows is required for aggregations and not allowed for Static"))]
pub struct FeatureDefinition {
    /// Feature name; one snapshot column per window, named `<name>_<window>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub name: String,
    /// Source the feature is computed from.
    #[schemars(length(min = 1, max = 63))]
    pub source: String,
    /// The aggregation.
    pub aggregation: Aggregation,
    /// Column aggregated (not needed for Count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub column: Option<String>,
    /// Windows before the cutoff, e.g. `["7d", "30d", "90d"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        inner(regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"), length(max = 16))
    )]
    pub windows: Vec<String>,
    /// Row filter applied before aggregating, e.g. `event_type == 'email_open'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub filter: Option<String>,
    /// Whether the feature is categorical (one-hot encoded by the trainer) or numeric.
    #[serde(default)]
    pub kind: FeatureKind,
}

/// Aggregations over a window.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Number of rows.
    Count,
    /// Sum of the column.
    Sum,
    /// Mean of the column.
    Mean,
    /// Minimum of the column.
    Min,
    /// Maximum of the column.
    Max,
    /// The most recent value before the cutoff.
    Last,
    /// Number of distinct values.
    DistinctCount,
    /// A column that does not change over time (firmographics, plan); the latest value before
    /// the cutoff is used.
    Static,
}

/// Whether a feature is numeric or categorical.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum FeatureKind {
    /// A number.
    #[default]
    Numeric,
    /// A category (string); one-hot encoded with an unknown bucket.
    Categorical,
}

/// Cutoff dates: each produces one row per entity in a snapshot. Exactly one of `dates` and
/// `every` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.dates) != has(self.every)").message("cutoffs sets exactly one of dates or every"))]
#[x_kube(validation = Rule::new("!has(self.every) || has(self.count)").message("cutoffs.count is required with cutoffs.every"))]
pub struct Cutoffs {
    /// Fixed cutoff dates (RFC 3339 dates such as `2026-06-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), length(max = 10))
    )]
    pub dates: Option<Vec<String>>,
    /// Rolling cutoffs: one every such duration, counted back from the newest data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"), length(max = 16))]
    pub every: Option<String>,
    /// Number of rolling cutoffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 365))]
    pub count: Option<i32>,
    /// Re-materialize on this cron schedule (e.g. `0 3 * * *`); only on spec changes when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub schedule: Option<String>,
}

/// A data quality rule. A snapshot that fails any rule is not published.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.type) || has(self.maxNullRatio) || has(self.min) || has(self.max) || has(self.maxZScore)").message("a quality rule sets at least one of type, maxNullRatio, min, max or maxZScore"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("qualityRules[].min must not exceed max"))]
pub struct QualityRule {
    /// Name shown in conditions when the rule fails.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Column (a source column, a feature column or the label) the rule checks; it is required.
    #[schemars(length(min = 1, max = 128))]
    pub column: String,
    /// Required type of the column.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<ColumnType>,
    /// Largest allowed share of nulls, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_null_ratio: Option<f64>,
    /// Smallest allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Largest allowed share of rows whose |z-score| exceeds `maxZScore` is `maxOutlierRatio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_z_score: Option<f64>,
    /// Largest allowed share of z-score outliers, 0–1 (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_outlier_ratio: Option<f64>,
}

/// Column types a quality rule can require.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Integer.
    Integer,
    /// Floating-point or integer number.
    Number,
    /// Text.
    String,
    /// Boolean.
    Boolean,
    /// Date or timestamp.
    Timestamp,
}

/// What the operator observed of a FeatureSet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSetStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FeatureSetPhase>,
    /// Standard conditions (`Ready`, `Materialized`, `QualityPassed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The progress of the Job at work now, from its newest report; absent when none runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
    /// Version (content digest) of the newest published snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Rows in the newest published snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Time the newest snapshot was published (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// Summary of the quality rules of the newest run, e.g. `5/5 passed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// URL of the published snapshot's directory in the artifact store (`manifest.json`,
    /// `features.parquet`, `stats.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Newest event in the label source of the published snapshot (RFC 3339): its freshness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_until: Option<String>,
    /// Results of the quality rules of the newest run, failed rules first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality_results: Vec<QualityRuleStatus>,
    /// The newest finished materialization Job the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// Why the newest materialization Job failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The outcome of one quality rule in status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualityRuleStatus {
    /// The rule's name.
    pub rule: String,
    /// Whether the data passed.
    pub passed: bool,
    /// The measured figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<f64>,
    /// The limit it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// What was found.
    pub message: String,
}

crate::common::named_enum! {
    /// The phase of a FeatureSet.
    pub enum FeatureSetPhase {
        /// Waiting for a referenced Secret or for its first materialization to be started.
        Pending,
        /// A materialization Job is running.
        Materializing,
        /// A snapshot passed its quality checks and is the current one.
        Ready,
        /// The last materialization failed its quality checks; the previous snapshot stays.
        QualityFailed,
        /// The last materialization failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(FeatureSetStatus, FeatureSetPhase);
