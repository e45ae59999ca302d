//! `RagIndex`: documents, chunking, embeddings and the vector store that serves retrieval.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectReference, SecretKeyReference, SecretReference, WorkloadResources};

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
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.currentVersion"}"#,
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
    /// Largest chunk in tokens of the embedding model.
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
    256
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
    /// Standard conditions (`Ready`, `Indexed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The index version that serves retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Documents in the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<i64>,
    /// Chunks in the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i64>,
    /// recall@k on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
}

crate::common::named_enum! {
    /// The phase of a RagIndex.
    pub enum RagIndexPhase {
        /// Waiting for a reference or a Secret.
        Pending,
        /// An index version is being built.
        Indexing,
        /// An index version serves.
        Ready,
        /// The last build failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(RagIndexStatus, RagIndexPhase);
