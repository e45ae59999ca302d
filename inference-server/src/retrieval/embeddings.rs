//! OpenAI-compatible `POST /v1/embeddings`, and the encoder's adaptive batching: texts that
//! arrive while the encoder runs (from embeddings requests and from index queries alike) are
//! embedded together in its next run.

use super::*;
use crate::model::InferError;
use crate::server::{Batchable, Batching};
use prometheus_client::metrics::histogram::Histogram;

/// Texts to embed, with their word pieces (what bounds a batch).
pub(crate) struct Texts {
    texts: Vec<String>,
    pieces: usize,
}

impl Texts {
    /// `texts`, counted with `embedder`'s tokenizer.
    pub(super) fn new(embedder: &Embedder, texts: Vec<String>) -> Texts {
        let pieces = texts.iter().map(|t| embedder.pieces().count(t) + 2).sum();
        Texts { texts, pieces }
    }

    /// Word pieces, `[CLS]` and `[SEP]` included (what OpenAI's `usage` calls tokens).
    pub(super) fn pieces(&self) -> usize {
        self.pieces
    }
}

/// Word pieces per run of the encoder and per CPU it runs on, at most (a batch stops growing
/// once it has them). On one CPU a run of one 11-piece query took 3.0 ms and a run of 16 of
/// them 2.1 ms a query; 4 of them (44 pieces) already gained as much as 16 did, and a
/// paragraph of 46 pieces gained 3 % from batching. A larger batch only makes every text in it
/// wait for the others: with 256 pieces, 4 connections sending paragraphs got no more
/// throughput and a p99 of 60 ms against 40 ms unbatched (benches/README.md).
pub const BATCH_WORD_PIECES: usize = 64;

impl Batchable for Embedder {
    type Input = Texts;
    type Output = Vec<f32>;
    fn items(input: &Texts) -> usize {
        input.texts.len()
    }
    fn append(input: &mut Texts, more: Texts) {
        input.texts.extend(more.texts);
        input.pieces += more.pieces;
    }
    fn run(&self, input: &Texts) -> Result<Vec<Vec<f32>>, InferError> {
        let refs: Vec<&str> = input.texts.iter().map(String::as_str).collect();
        self.embed(&refs)
            .map_err(|e| InferError::Internal(format!("embedding model: {e}")))
    }
    /// One: a run already uses every CPU the process may use (ONNX Runtime's intra-op
    /// threads, or candle's), and the ONNX Runtime session runs one batch at a time.
    fn runners(&self) -> usize {
        1
    }
    fn cost(input: &Texts) -> usize {
        input.pieces
    }
    fn budget(&self) -> usize {
        BATCH_WORD_PIECES * leitwerk_rag::embed::usable_cpus()
    }
}

impl Retrieval {
    /// The same, with the encoder's runs batched by `batching` (texts for rows; none when its
    /// largest batch is one text); `texts` observes the texts of every run.
    pub fn batched(mut self, batching: Option<Batching>, texts: Histogram) -> Retrieval {
        self.batcher = batching
            .filter(|b| b.max_batch_size > 1)
            .map(|b| Arc::new(Batcher::new(self.embedder.clone(), b, texts)));
        self
    }

    /// The unit-length embeddings of `texts`, in order, off the async threads.
    pub(super) async fn embed(&self, texts: Texts) -> Result<Vec<Vec<f32>>, Refusal> {
        let failed = |e: String| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e);
        match &self.batcher {
            Some(batcher) => batcher
                .score(texts)
                .await
                .map_err(|e| failed(e.to_string())),
            None => {
                let embedder = self.embedder.clone();
                tokio::task::spawn_blocking(move || embedder.run(&texts))
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
}

pub(super) async fn embeddings(
    State(server): State<Arc<Server>>,
    body: axum::body::Bytes,
) -> Response {
    match embed_request(&server, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn embed_request(server: &Server, body: &[u8]) -> Result<Value, Refusal> {
    let retrieval = retrieval_of(server)?;
    let request: EmbeddingsRequest = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body is not {{\"input\": \"text\" | [\"text\", …], \"model\": \"…\"}}: {e}"
        ))
    })?;
    let name = retrieval.embedder.identity().name.clone();
    if let Some(m) = request.model.as_deref()
        && m != name
    {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("model {m:?} is not served here; this server embeds with {name}"),
        ));
    }
    let inputs = match request.input {
        Input::One(t) => vec![t],
        Input::Many(list) => list,
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(bad(format!(
            "input has {} texts; send 1 to {MAX_INPUTS}",
            inputs.len()
        )));
    }
    if let Some(i) = inputs.iter().position(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(bad(format!(
            "input[{i}] is longer than {MAX_TEXT_BYTES} bytes; split it"
        )));
    }
    let texts = Texts::new(&retrieval.embedder, inputs);
    let tokens = texts.pieces();
    let vectors = retrieval.embed(texts).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}
