//! Retrieval: the server loads RagIndex versions (index files written by `leitwerk-trainer
//! index`, or a Qdrant alias the operator moves) and the embedding model they were built
//! with, and answers
//! `POST /v1/indexes/{name}/query` and OpenAI-compatible `POST /v1/embeddings`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::Index;
use leitwerk_rag::search::{ExactStore, Filter, HybridStore, VectorStore};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::metrics::IndexLabels;
use crate::server::{Batcher, Server};

mod embeddings;

/// Most texts one embeddings request may carry.
pub const MAX_INPUTS: usize = 256;
/// Longest text accepted, in bytes (longer text would be truncated by the model anyway).
pub const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Most results one query may ask for.
pub const MAX_TOP_K: usize = 100;

/// A RagIndex version to serve (`--index NAME=URL`): the operator's and the server's one type.
pub use leitwerk_crds::command::{IndexArg, QdrantTarget};

/// A served index: a version loaded from its index file, or a Qdrant alias whose version
/// moves when the operator promotes another.
#[derive(Debug)]
enum Served {
    /// An index file, searched in memory.
    File {
        /// Its version.
        version: String,
        /// Its chunks.
        store: Box<HybridStore>,
    },
    /// A Qdrant server, queried through the alias.
    Qdrant {
        /// The server.
        store: leitwerk_rag::qdrant::Store,
        /// The alias.
        alias: String,
    },
}

impl Served {
    /// Opens the Qdrant location `target`, whose alias must name a collection.
    async fn qdrant(name: &str, target: &QdrantTarget) -> Result<Served, String> {
        let api_key = std::env::var(leitwerk_crds::contract::QDRANT_API_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty());
        let store = leitwerk_rag::qdrant::Store::connect(&target.url, api_key)
            .map_err(|e| format!("index {name}: {e}"))?;
        match store.alias_target(&target.collection).await {
            Ok(Some(_)) => Ok(Served::Qdrant {
                store,
                alias: target.collection.clone(),
            }),
            Ok(None) => Err(format!(
                "index {name}: the Qdrant alias {} at {} names no collection yet",
                target.collection, target.url
            )),
            Err(e) => Err(format!("index {name}: {e}")),
        }
    }
}

/// How a query ranks chunks.
pub use leitwerk_crds::rag_index::SearchMode;

/// The embedding model and the indexes served with it.
#[derive(Debug)]
pub struct Retrieval {
    embedder: Arc<Embedder>,
    /// Batches concurrent texts into one run of the encoder ([`Retrieval::batched`]).
    batcher: Option<Arc<Batcher<Embedder>>>,
    indexes: BTreeMap<String, Served>,
    mode: SearchMode,
}

impl Retrieval {
    /// Loads the model in `model_dir` and every index; an index built with another model is
    /// refused, because its vectors are not comparable with this model's queries.
    /// Queries that name no mode are answered in `mode`.
    ///
    /// The encoder runs on ONNX Runtime in `environment` when given (a graph of fused
    /// operators written from the weights), on candle otherwise or when ONNX Runtime refuses
    /// the graph (stderr says why).
    pub async fn load(
        model_dir: &Path,
        indexes: &[IndexArg],
        mode: SearchMode,
        environment: Option<&ort::environment::Environment>,
        gpu: bool,
    ) -> Result<Retrieval, String> {
        let name = leitwerk_crds::rag_index::MINILM.name;
        let device = if gpu {
            leitwerk_rag::embed::OnnxDevice::Cuda
        } else {
            leitwerk_rag::embed::OnnxDevice::Cpu
        };
        let onnx = environment.map(|env| Embedder::load_onnx(model_dir, name, env, None, device));
        let embedder = match onnx {
            Some(Ok(embedder)) => embedder,
            Some(Err(why)) => {
                eprintln!("leitwerk-inference-server: embedding on candle: ONNX Runtime: {why}");
                Embedder::load(model_dir, name).map_err(|e| format!("embedding model: {e}"))?
            }
            None => Embedder::load(model_dir, name).map_err(|e| format!("embedding model: {e}"))?,
        };
        let mut served = BTreeMap::new();
        for arg in indexes {
            if arg.url.starts_with(QdrantTarget::SCHEME) {
                let target: QdrantTarget = arg.url.parse()?;
                served.insert(arg.name.clone(), Served::qdrant(&arg.name, &target).await?);
                continue;
            }
            let bytes = crate::read_url(&arg.url)
                .await?
                .ok_or_else(|| format!("index {} at {} does not exist", arg.name, arg.url))?;
            let version = leitwerk_rag::documents::digest(&bytes)
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            let index =
                Index::from_bytes(&bytes).map_err(|e| format!("index {}: {e}", arg.name))?;
            if index.model.weights_digest != embedder.identity().weights_digest
                || index.model.tokenizer_digest != embedder.identity().tokenizer_digest
            {
                return Err(format!(
                    "index {} was embedded with {} (weights {}), not with this server's model (weights {}): serve it with the model it was built with",
                    arg.name,
                    index.model.name,
                    index.model.weights_digest,
                    embedder.identity().weights_digest
                ));
            }
            served.insert(
                arg.name.clone(),
                Served::File {
                    version,
                    store: Box::new(HybridStore::new(ExactStore::new(index))),
                },
            );
        }
        Ok(Retrieval {
            embedder: Arc::new(embedder),
            batcher: None,
            indexes: served,
            mode,
        })
    }

    /// The engine the encoder runs on (`onnxruntime` or `candle`).
    pub fn engine(&self) -> &'static str {
        self.embedder.engine()
    }

    /// Whether the encoder runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.embedder.on_gpu()
    }

    /// Why the encoder runs on the CPU although a GPU was asked for.
    pub fn gpu_fallback(&self) -> Option<&str> {
        self.embedder.fallback()
    }

    /// `(name, version, chunks)` of every index served from a file; `(name, "qdrant:ALIAS",
    /// 0)` of one served by Qdrant (its version moves with the alias).
    pub fn served(&self) -> Vec<(String, String, usize)> {
        self.indexes
            .iter()
            .map(|(n, s)| match s {
                Served::File { version, store } => {
                    (n.clone(), version.clone(), store.dense().len())
                }
                Served::Qdrant { alias, .. } => (n.clone(), format!("qdrant:{alias}"), 0),
            })
            .collect()
    }
}

/// A refusal answered as `{"error": …}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

/// The routes, when the server has retrieval.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/indexes/{name}/query", post(query))
        .with_state(server)
}

fn retrieval_of(server: &Server) -> Result<Arc<Retrieval>, Refusal> {
    server.retrieval.get().cloned().ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            "this server serves no embedding model (start it with --embedding-model-dir)".into(),
        )
    })
}

/// A retrieval query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryRequest {
    /// The question.
    pub query: String,
    /// How many chunks to return.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Metadata every chunk must match.
    #[serde(default)]
    pub filter: Filter,
    /// `Dense` or `Hybrid`; the server's mode when left out.
    #[serde(default)]
    pub mode: Option<String>,
}

fn default_top_k() -> usize {
    5
}

async fn query(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    match run_query(&server, &name, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

/// The retrieval query over gRPC (`leitwerk.retrieval.v1.Retrieval/Query`): the request is
/// put in the REST body's shape and answered by the same code, so that both APIs agree.
#[derive(Debug, Clone)]
pub struct GrpcRetrieval(pub Arc<Server>);

#[tonic::async_trait]
impl pb::retrieval_server::Retrieval for GrpcRetrieval {
    async fn query(
        &self,
        request: tonic::Request<pb::QueryRequest>,
    ) -> Result<tonic::Response<pb::QueryResponse>, tonic::Status> {
        let r = request.into_inner();
        let mut body = json!({"query": r.query, "filter": r.filter});
        if r.top_k > 0 {
            body["topK"] = json!(r.top_k);
        }
        if !r.mode.is_empty() {
            body["mode"] = json!(r.mode);
        }
        let answer = run_query(&self.0, &r.index, body.to_string().as_bytes())
            .await
            .map_err(|Refusal(code, message)| match code {
                StatusCode::NOT_FOUND => tonic::Status::not_found(message),
                StatusCode::BAD_REQUEST => tonic::Status::invalid_argument(message),
                _ => tonic::Status::internal(message),
            })?;
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        let results = answer["results"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .map(|h| pb::Chunk {
                        text: text(h, "text"),
                        score: h["score"].as_f64().unwrap_or(0.0) as f32,
                        document: text(h, "document"),
                        title: text(h, "title"),
                        url: text(h, "url"),
                        section: text(h, "section"),
                        version: text(h, "version"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(tonic::Response::new(pb::QueryResponse {
            index: text(&answer, "index"),
            version: text(&answer, "version"),
            results,
        }))
    }
}

/// Code generated from `proto/retrieval.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("leitwerk.retrieval.v1");
}

/// A retrieval query body, checked, with the search mode it asks for (`default` when none);
/// or why it is refused (400).
pub fn parse_query(body: &[u8], default: SearchMode) -> Result<(QueryRequest, SearchMode), String> {
    let request: QueryRequest = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not {{\"query\": \"…\", \"topK\": 5, \"filter\": {{\"field\": \"value\"}}, \"mode\": \"Dense\"}}: {e}"
        )
    })?;
    if request.query.trim().is_empty() || request.query.len() > MAX_TEXT_BYTES {
        return Err(format!("query must be 1 to {MAX_TEXT_BYTES} bytes of text"));
    }
    if !(1..=MAX_TOP_K).contains(&request.top_k) {
        return Err(format!("topK must be 1 to {MAX_TOP_K}"));
    }
    let mode = match request.mode.as_deref() {
        None => default,
        Some("Dense") => SearchMode::Dense,
        Some("Hybrid") => SearchMode::Hybrid,
        Some(other) => return Err(format!("mode {other:?} is not Dense or Hybrid")),
    };
    Ok((request, mode))
}

async fn run_query(server: &Server, name: &str, body: &[u8]) -> Result<Value, Refusal> {
    let started = Instant::now();
    let retrieval = retrieval_of(server)?;
    let Some(served) = retrieval.indexes.get(name) else {
        let names: Vec<&str> = retrieval.indexes.keys().map(String::as_str).collect();
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!(
                "index {name:?} is not served here; served: {}",
                names.join(", ")
            ),
        ));
    };
    let (request, mode) =
        parse_query(body, retrieval.mode).map_err(|m| Refusal(StatusCode::BAD_REQUEST, m))?;
    let query = embeddings::Texts::new(&retrieval.embedder, vec![request.query.clone()]);
    let vector = retrieval.embed(query).await?;
    let query_vector = vector.first().map(Vec::as_slice).unwrap_or_default();
    let (hits, version) = match served {
        Served::File { version, store } => {
            let hits = match mode {
                SearchMode::Dense => {
                    store
                        .dense()
                        .search(query_vector, request.top_k, &request.filter)
                }
                SearchMode::Hybrid => {
                    store.search(query_vector, &request.query, request.top_k, &request.filter)
                }
            }
            .map_err(|e| bad(e.to_string()))?;
            (hits, version.clone())
        }
        Served::Qdrant { store, alias } => {
            let text = (mode == SearchMode::Hybrid).then_some(request.query.as_str());
            let (hits, version) = store
                .search(alias, query_vector, text, request.top_k, &request.filter)
                .await
                .map_err(|e| match e {
                    leitwerk_rag::qdrant::StoreError::UnknownField(unknown) => {
                        bad(unknown.to_string())
                    }
                    other => Refusal(StatusCode::BAD_GATEWAY, other.to_string()),
                })?;
            let version = match version {
                Some(v) => v,
                // No hit names its version: the alias does.
                None => store
                    .alias_target(alias)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.rsplit('-').next().map(str::to_string))
                    .unwrap_or_default(),
            };
            (hits, version)
        }
    };
    let labels = IndexLabels {
        index: name.to_string(),
        version: version.clone(),
    };
    let m = &server.metrics;
    m.index_queries.get_or_create(&labels).inc();
    if hits.is_empty() {
        m.index_empty.get_or_create(&labels).inc();
    }
    m.index_latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let results: Vec<Value> = hits
        .into_iter()
        .map(|h| {
            json!({
                "text": h.text,
                "score": h.score,
                "document": h.document,
                "title": h.title,
                "url": h.url,
                "section": h.section,
                "version": version,
            })
        })
        .collect();
    Ok(json!({"index": name, "version": version, "results": results}))
}
