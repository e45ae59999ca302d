//! `RagIndex`: documents, chunking, embeddings and the vector store that serves retrieval.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, SecretKeyReference, SecretReference, WorkloadResources};
use crate::summary::{EmbeddingModelIdentity, RetrievalQuality};

/// A RagIndex chunks and embeds document sources into a vector store, keeps one index version
/// per source version, serves retrieval, and reports recall on a labelled set when given one.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leitwerk.dev",
    version = "v1alpha1",
    kind = "RagIndex",
    namespaced,
    status = "RagIndexStatus",
    shortname = "rag",
    category = "leitwerk",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.servingVersion"}"#,
    printcolumn = r#"{"name":"Docs","type":"integer","jsonPath":".status.documents"}"#,
    printcolumn = r#"{"name":"Chunks","type":"integer","jsonPath":".status.chunks"}"#,
    printcolumn = r#"{"name":"Recall","type":"number","format":"float","jsonPath":".status.recallAtK"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sources.all(s, self.sources.filter(t, t.name == s.name).size() == 1)").message("sources[].name must be unique"))]
pub struct RagIndexSpec {
    /// Where the documents come from.
    #[schemars(length(min = 1, max = 16))]
    pub sources: Vec<DocumentSource>,
    /// How documents are split into chunks.
    #[serde(default)]
    pub chunking: Chunking,
    /// The embedding model.
    #[serde(default)]
    pub embedding: Embedding,
    /// Where vectors are stored; the embedded store when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_store: Option<VectorStore>,
    /// A labelled set of queries and relevant documents to report recall@k on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// Re-index on this cron schedule (e.g. `0 * * * *`); only when sources change when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub refresh_schedule: Option<String>,
    /// Resources of the indexing Job (set `gpu` to embed on a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkloadResources>,
    /// How queries rank chunks unless they say otherwise.
    #[serde(default)]
    pub search: Search,
    /// What indexing does with personal data and prompt-injection text in the documents.
    #[serde(default)]
    pub safety: IngestSafety,
    /// Index versions kept (their files too); the serving version is always kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 1, max = 50))]
    pub version_history_limit: i32,
}

fn default_history() -> i32 {
    3
}

/// A document source. Exactly one of `file`, `objectStore` and `configMap` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.file), has(self.objectStore), has(self.configMapRef)].filter(x, x).size() == 1").message("a document source sets exactly one of file, objectStore or configMapRef"))]
pub struct DocumentSource {
    /// Source name, stored with every chunk as metadata.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Files on a mounted volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<DocumentFiles>,
    /// Objects under a prefix in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<DocumentObjects>,
    /// Documents stored as the keys of a ConfigMap in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
    /// Read the source's files as product feeds (CSV or JSON Lines), a document a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<DocumentFeed>,
}

/// A product feed: every row becomes one document, rendered by `template`, with the row's
/// fields as its metadata (filterable).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentFeed {
    /// How rows are written.
    pub format: FeedFormat,
    /// The field that identifies a row (its document id is `<source>/<value>`).
    #[schemars(length(min = 1, max = 128))]
    pub id_field: String,
    /// The field of the title; the id when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub title_field: Option<String>,
    /// The field of the URL a result links to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub url_field: Option<String>,
    /// A minijinja template over the row's fields, e.g.
    /// `"# {{ name }}\n\nSKU {{ sku }}: {{ description }} {{ price }} EUR."`; a field the
    /// template names and a row lacks fails the build naming the row.
    #[schemars(length(min = 1, max = 8192))]
    pub template: String,
}

crate::common::named_enum! {
    /// How a feed's rows are written.
    pub enum FeedFormat {
        /// Comma-separated, a header row first (files ending in `.csv`).
        Csv,
        /// One JSON object a line (files ending in `.jsonl`).
        JsonLines,
    }
}

/// Files on a mounted volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentFiles {
    /// Absolute path or glob, e.g. `/docs/**/*.md`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// PersistentVolumeClaim that holds the path, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub claim_name: Option<String>,
}

/// Objects in object storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentObjects {
    /// URL prefix, e.g. `s3://docs-bucket/product/`.
    #[schemars(
        length(min = 6, max = 1024),
        regex(pattern = r"^(s3|gs|az)://[^/]+/.*")
    )]
    pub url: String,
    /// Secret with the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// How documents are split into chunks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.overlapTokens < self.maxTokens").message("chunking.overlapTokens must be smaller than chunking.maxTokens"))]
pub struct Chunking {
    /// Splitting strategy.
    #[serde(default)]
    pub strategy: ChunkingStrategy,
    /// Largest chunk in word pieces of the embedding model: at most 254 for all-MiniLM-L6-v2
    /// (its 256-piece window less `[CLS]` and `[SEP]`), the default.
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 16, max = 8192))]
    pub max_tokens: i32,
    /// Tokens shared by neighbouring chunks.
    #[serde(default = "default_overlap")]
    #[schemars(range(min = 0, max = 4096))]
    pub overlap_tokens: i32,
}

impl Default for Chunking {
    fn default() -> Self {
        Self {
            strategy: ChunkingStrategy::default(),
            max_tokens: default_max_tokens(),
            overlap_tokens: default_overlap(),
        }
    }
}

fn default_max_tokens() -> i32 {
    254
}

fn default_overlap() -> i32 {
    32
}

/// Splitting strategies.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ChunkingStrategy {
    /// Split on Markdown structure (headings, paragraphs), then on sentences.
    #[default]
    Markdown,
    /// Split plain text on paragraphs, then sentences.
    Text,
}

/// The embedding model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Embedding {
    /// Model name; `all-MiniLM-L6-v2` (384 dimensions) ships with Leitwerk.
    #[serde(default = "default_embedding_model")]
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// Sentences embedded per batch.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 1024))]
    pub batch_size: i32,
}

impl Default for Embedding {
    fn default() -> Self {
        Self {
            model: default_embedding_model(),
            batch_size: default_batch(),
        }
    }
}

fn default_embedding_model() -> String {
    "all-MiniLM-L6-v2".to_string()
}

fn default_batch() -> i32 {
    32
}

/// How the retrieval server ranks chunks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Search {
    /// The mode of queries that name none.
    #[serde(default)]
    pub mode: SearchMode,
}

crate::common::named_enum! {
    /// How chunks are ranked.
    #[derive(Default)]
    pub enum SearchMode {
        /// Cosine similarity of the embeddings.
        #[default]
        Dense,
        /// Dense and BM25 keyword rankings fused by reciprocal rank: for product names, SKUs
        /// and codes that embeddings miss.
        Hybrid,
    }
}

/// Ingest safety (OWASP LLM01, LLM02, LLM08): every chunk is scanned before it is embedded.
/// Counts reach the status; the matched text never does, nor the logs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IngestSafety {
    /// E-mail addresses, phone numbers, IBANs (MOD-97), card numbers (Luhn), IP addresses.
    #[serde(default)]
    pub personal_data: PersonalDataPolicy,
    /// Instructions aimed at a model, hidden characters.
    #[serde(default)]
    pub injection: InjectionPolicy,
}

crate::common::named_enum! {
    /// What indexing does with personal data.
    #[derive(Default)]
    pub enum PersonalDataPolicy {
        /// Replace each finding with a placeholder (`[EMAIL]`) before embedding.
        #[default]
        Redact,
        /// Keep the text and count the chunk as flagged.
        Flag,
        /// Fail the build, naming the document and the kinds found.
        Reject,
    }
}

crate::common::named_enum! {
    /// What indexing does with prompt-injection text.
    #[derive(Default)]
    pub enum InjectionPolicy {
        /// Keep the chunk in the index, never serve it.
        #[default]
        Quarantine,
        /// Serve it, counted as flagged.
        Flag,
    }
}

/// Where vectors live. Exactly one of `embedded` and `qdrant` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.embedded) != has(self.qdrant)").message("vectorStore sets exactly one of embedded or qdrant"))]
pub struct VectorStore {
    /// The embedded store, kept in the artifact store next to the index metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStore>,
    /// A Qdrant server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdrant: Option<QdrantStore>,
}

/// The embedded vector store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStore {
    /// Artifact store URL for the index; the operator's configured store when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^(file|s3|gs|az)://.+"))]
    pub artifact_store: Option<String>,
}

/// A Qdrant server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QdrantStore {
    /// gRPC URL, e.g. `http://qdrant.vectors:6334`.
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://.+"))]
    pub url: String,
    /// Collection name; one collection per index version is derived from it.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub collection: String,
    /// API key, if the server needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyReference>,
}

/// The labelled set every new version is evaluated on before it serves. Exactly one of
/// `configMapRef` and `labelledSetUrl` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.labelledSetUrl)").message("evaluation sets exactly one of configMapRef or labelledSetUrl"))]
pub struct Evaluation {
    /// A key of a ConfigMap in the same namespace holding the JSON Lines set:
    /// `{"query": "…", "relevant": ["<source>/<key>", …]}` per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyReference>,
    /// URL of the JSON Lines set (`file://`, `s3://`, `gs://`, `az://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^(file|s3|gs|az)://.+"))]
    pub labelled_set_url: Option<String>,
    /// k of recall@k and nDCG@k.
    #[serde(default = "default_k")]
    #[schemars(range(min = 1, max = 100))]
    pub k: i32,
    /// The lowest recall@k a version may have to serve.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_recall: f64,
    /// How much lower than the serving version's recall@k a new version's may be and still
    /// replace it.
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: f64,
}

/// A reference to one key of a ConfigMap in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyReference {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_tolerance() -> f64 {
    0.02
}

fn default_k() -> i32 {
    5
}

/// What the operator observed of a RagIndex.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RagIndexStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RagIndexPhase>,
    /// Standard conditions: `Ready`, `Indexed` (the last build), `Evaluated` (the last
    /// version's quality against the gate), `Serving` (the retrieval Deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The index version that serves retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<String>,
    /// The newest version built (it may have been refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// The retrieval Service's URL (`POST <endpoint>/v1/indexes/<name>/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Documents in the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<i64>,
    /// Chunks in the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i64>,
    /// recall@k of the serving version on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    /// nDCG@k of the serving version on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndcg_at_k: Option<f64>,
    /// recall@k of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_recall_at_k: Option<f64>,
    /// nDCG@k of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ndcg_at_k: Option<f64>,
    /// The embedding model of the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<EmbeddingModelIdentity>,
    /// When the sources were last read into a version (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_indexed: Option<String>,
    /// Chunks of the serving version flagged for personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<i64>,
    /// Chunks of the serving version quarantined from serving (prompt-injection text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<i64>,
    /// Documents of the serving version whose HTML hid text from readers (left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_html: Option<i64>,
    /// The last indexing build: running, succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build: Option<IndexBuild>,
    /// Where `refreshSchedule` stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::model::ScheduleStatus>,
    /// Index versions, oldest first, at most `versionHistoryLimit` (the serving one is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<IndexVersion>,
}

/// One indexing build (a Job).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexBuild {
    /// Build number, counted per RagIndex.
    pub number: i64,
    /// The Job.
    pub job: String,
    /// Where it stands.
    pub state: BuildState,
    /// The spec generation it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Digest of the ConfigMap sources (and labelled set) it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_digest: Option<String>,
    /// The version it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Documents new in this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<i64>,
    /// Documents whose content changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<i64>,
    /// Documents no longer in the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<i64>,
    /// Documents kept with their vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<i64>,
    /// Chunks embedded by this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

crate::common::named_enum! {
    /// Where an indexing build stands.
    #[derive(Default)]
    pub enum BuildState {
        /// The Job runs (or waits to be scheduled).
        #[default]
        Running,
        /// The Job wrote a version.
        Succeeded,
        /// The Job failed; the serving version stays.
        Failed,
    }
}

/// One index version: an immutable, digest-named index file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexVersion {
    /// Version (first 12 hex digits of the index file's digest).
    pub version: String,
    /// Where it stands.
    pub state: IndexVersionState,
    /// `sha256:<hex>` of the index file.
    pub digest: String,
    /// URL of the index file.
    pub url: String,
    /// The build that produced it.
    pub build: i64,
    /// Documents.
    pub documents: i64,
    /// Chunks.
    pub chunks: i64,
    /// Quality on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<RetrievalQuality>,
    /// The embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<EmbeddingModelIdentity>,
    /// Chunks flagged for personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<i64>,
    /// Chunks quarantined from serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<i64>,
    /// Documents whose HTML hid text from readers (that text is never indexed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_html: Option<i64>,
    /// When it was built (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

crate::common::named_enum! {
    /// Where an index version stands.
    #[derive(Default)]
    pub enum IndexVersionState {
        /// It serves retrieval.
        #[default]
        Serving,
        /// It served before a newer version replaced it.
        Retired,
        /// It failed its evaluation; it never served.
        Refused,
    }
}

/// Whether a new version may replace the serving one: it must reach `minRecall` and be no
/// more than `tolerance` below the serving version's recall@k. The refusal names both
/// figures.
pub fn admit(
    candidate: &RetrievalQuality,
    serving: Option<&RetrievalQuality>,
    min_recall: f64,
    tolerance: f64,
) -> Result<(), String> {
    let k = candidate.k;
    if candidate.recall_at_k < min_recall {
        return Err(format!(
            "recall@{k} {:.3} is below evaluation.minRecall {min_recall:.3}",
            candidate.recall_at_k
        ));
    }
    if let Some(s) = serving
        && candidate.recall_at_k < s.recall_at_k - tolerance
    {
        return Err(format!(
            "recall@{k} {:.3} is more than evaluation.tolerance {tolerance:.3} below the serving version's {:.3}",
            candidate.recall_at_k, s.recall_at_k
        ));
    }
    Ok(())
}

crate::common::named_enum! {
    /// The phase of a RagIndex.
    pub enum RagIndexPhase {
        /// Waiting for a reference or a Secret.
        Pending,
        /// The first index version is being built.
        Indexing,
        /// A version passed its evaluation; its retrieval Deployment is rolling out.
        Deploying,
        /// An index version serves.
        Ready,
        /// The last build failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(RagIndexStatus, RagIndexPhase);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_serves_only_above_the_floor_and_within_the_tolerance() {
        let q = |recall: f64| RetrievalQuality {
            k: 5,
            recall_at_k: recall,
            mrr: 0.0,
            ndcg_at_k: 0.0,
            first_relevant: 0,
            queries: 44,
        };
        assert_eq!(admit(&q(0.9), None, 0.8, 0.02), Ok(()));
        let low = admit(&q(0.7), None, 0.8, 0.02).unwrap_err();
        assert!(
            low.contains("0.700") && low.contains("minRecall 0.800"),
            "{low}"
        );
        assert_eq!(admit(&q(0.95), Some(&q(0.966)), 0.8, 0.02), Ok(()));
        let worse = admit(&q(0.90), Some(&q(0.966)), 0.8, 0.02).unwrap_err();
        assert!(
            worse.contains("0.900") && worse.contains("0.966"),
            "{worse}"
        );
        assert_eq!(admit(&q(0.99), Some(&q(0.966)), 0.8, 0.0), Ok(()));
    }
}
