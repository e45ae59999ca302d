//! `RagIndex`: documents, chunking, embeddings and the vector store that serves retrieval.

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
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.servingVersion"}"#,
    printcolumn = r#"{"name":"Docs","type":"integer","jsonPath":".status.documents"}"#,
    printcolumn = r#"{"name":"Chunks","type":"integer","jsonPath":".status.chunks"}"#,
    printcolumn = r#"{"name":"Recall","type":"number","format":"float","jsonPath":".status.recallAtK"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sources.all(s, self.sources.filter(t, t.name == s.name).size() == 1)").message("sources[].name must be unique"))]
pub struct RagIndexSpec {
    /// Where the documents come from (at most 16 sources). A document (a file, an object, a
    /// ConfigMap key or a rendered feed row) may have at most 1 MiB; a larger one fails the
    /// build naming it, and the serving version stays.
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
    /// How queries rank chunks unless they say otherwise. A query to the retrieval server
    /// may have at most 32 KiB of text and ask for at most 100 results (`topK`); larger ones
    /// get a 400 naming the limit.
    #[serde(default)]
    pub search: Search,
    /// What indexing does with personal data and prompt-injection text in the documents.
    #[serde(default)]
    pub safety: IngestSafety,
    /// Index versions kept (their files too), 10 when left out as for a Model; the serving
    /// version is always kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 1, max = 50))]
    pub version_history_limit: i32,
}

fn default_history() -> i32 {
    crate::versions::DEFAULT_HISTORY
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
    i32::try_from(MINILM.max_chunk_tokens()).unwrap_or(254)
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
    MINILM.name.to_string()
}

/// An embedding model that ships with Leitwerk: what the operator validates a spec against,
/// and what the trainer and the retrieval server load (their own test checks that the loaded
/// model agrees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedEmbeddingModel {
    /// The name a spec uses.
    pub name: &'static str,
    /// Dimensions of its vectors.
    pub dimension: usize,
    /// Word pieces it reads, `[CLS]` and `[SEP]` included; longer inputs are truncated.
    pub max_word_pieces: usize,
}

impl ShippedEmbeddingModel {
    /// The longest chunk in word pieces that the model reads whole (without `[CLS]` and
    /// `[SEP]`): the ceiling and default of `chunking.maxTokens`.
    pub const fn max_chunk_tokens(&self) -> usize {
        self.max_word_pieces - 2
    }
}

/// all-MiniLM-L6-v2, the default embedding model.
pub const MINILM: ShippedEmbeddingModel = ShippedEmbeddingModel {
    name: "all-MiniLM-L6-v2",
    dimension: 384,
    max_word_pieces: 256,
};

/// Every embedding model Leitwerk ships.
pub const EMBEDDING_MODELS: [ShippedEmbeddingModel; 1] = [MINILM];

/// The shipped embedding model called `name`.
pub fn embedding_model(name: &str) -> Option<ShippedEmbeddingModel> {
    EMBEDDING_MODELS.iter().copied().find(|m| m.name == name)
}

fn default_batch() -> i32 {
    32
}

/// How the retrieval server ranks chunks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Search {
    /// The mode of queries that name none, and the mode the evaluation gate measures. Left
    /// out, each build measures both modes on the labelled set and serves the better one
    /// (higher recall@k, then MRR; Dense on a tie or without a labelled set), with both
    /// figures in the version's status: product names and rare terms make Hybrid the better
    /// mode on many corpora, and the labelled set decides, not a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SearchMode>,
}

crate::common::named_enum! {
    /// How chunks are ranked.
    #[derive(Default, PartialOrd, Ord)]
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

mod status;

pub use status::*;
