//! The generator's OpenAI-compatible endpoints: `POST /v1/chat/completions` (whole, or
//! streamed as server-sent events with `"stream": true`), `GET /v1/models`, and `POST
//! /tokenize` in the llama.cpp server's shape (for tokenizer parity checks). A malformed
//! request is answered 400 with a message naming the field; generation runs on a blocking
//! thread so the server keeps answering health checks meanwhile.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Error, Generator, Message, Params};
use crate::server::Server;

/// The routes, when the server has a generator.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .with_state(server)
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn no_generator() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "this server runs no generator (start it with --generator-model)",
    )
}

/// An OpenAI chat-completion request, as far as the generator takes it.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    messages: Vec<Message>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, alias = "max_completion_tokens")]
    max_tokens: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    response_format: Option<Value>,
}

/// The largest `max_tokens` one request may ask for.
const MAX_TOKENS: usize = 4096;

fn params(request: &ChatRequest) -> Result<Params, String> {
    let temperature = request.temperature.unwrap_or(0.8);
    let top_p = request.top_p.unwrap_or(1.0);
    let max_tokens = request.max_tokens.unwrap_or(256);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(format!(
            "temperature must be within 0 and 2, not {temperature}"
        ));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(format!("top_p must be above 0 and at most 1, not {top_p}"));
    }
    if max_tokens == 0 || max_tokens > MAX_TOKENS {
        return Err(format!(
            "max_tokens must be within 1 and {MAX_TOKENS}, not {max_tokens}"
        ));
    }
    if request.messages.is_empty() {
        return Err("messages must hold at least one message".into());
    }
    if let Some(m) = request
        .messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(format!(
            "messages[].role must be system, user or assistant, not {:?}",
            m.role
        ));
    }
    Ok(Params {
        temperature,
        top_p,
        max_tokens,
        seed: request.seed.unwrap_or(299_792_458),
    })
}

/// A chat-completion body, checked: the request, its sampling parameters and the JSON schema
/// its `response_format` asks for; or why it is refused (400).
pub fn parse_chat(body: &[u8]) -> Result<(ChatRequest, Params, Option<Value>), String> {
    let request: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| format!("the request is not a chat completion request: {e}"))?;
    let params = params(&request)?;
    let schema = match &request.response_format {
        None => None,
        Some(f) if f["type"] == "text" => None,
        Some(f) if f["type"] == "json_schema" && f["json_schema"]["schema"].is_object() => {
            Some(f["json_schema"]["schema"].clone())
        }
        Some(f) => {
            return Err(format!(
                "response_format must be {{\"type\": \"json_schema\", \"json_schema\": {{\"schema\": {{…}}}}}} or text, not {f}"
            ));
        }
    };
    if let Some(schema) = &schema {
        super::structured::Shape::of(schema).map_err(|e| format!("response_format: {e}"))?;
    }
    Ok((request, params, schema))
}

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Request(_) => StatusCode::BAD_REQUEST,
        Error::Model(_) | Error::Run(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn chat(State(server): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    let Some(generator) = server.generator.get().cloned() else {
        return no_generator();
    };
    let (request, params, schema) = match parse_chat(&body) {
        Ok(parsed) => parsed,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, m),
    };
    let prompt = match generator
        .prompt(&request.messages)
        .and_then(|p| generator.prompt_tokens(&p))
    {
        Ok(p) => p,
        Err(e) => return refuse(status_of(&e), e.to_string()),
    };
    let id = format!("chatcmpl-{:016x}", rand_id());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model = generator.name.clone();
    if request.stream {
        return stream(generator, prompt, params, schema, id, created, model);
    }
    let answer = tokio::task::spawn_blocking(move || {
        generator.generate(&prompt, params, schema.as_ref(), |_| {})
    })
    .await;
    match answer {
        Ok(Ok(g)) => Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": g.finish_reason,
                         "message": {"role": "assistant", "content": g.text}}],
            "usage": usage(g.prompt_tokens, g.tokens.len()),
            "timings": {"prompt_n": g.prompt_tokens, "prompt_ms": g.prompt_seconds * 1e3,
                        "predicted_n": g.tokens.len(), "predicted_ms": g.generation_seconds * 1e3},
        }))
        .into_response(),
        Ok(Err(e)) => refuse(status_of(&e), e.to_string()),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generation stopped: {e}"),
        ),
    }
}

/// The answer as server-sent events: a chunk per piece of text, the last with the finish
/// reason and the usage, then `[DONE]`.
fn stream(
    generator: Arc<Generator>,
    prompt: Vec<u32>,
    params: Params,
    schema: Option<Value>,
    id: String,
    created: u64,
    model: String,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let chunk = move |delta: Value, finish: Value, usage: Option<Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c
    };
    tokio::task::spawn_blocking(move || {
        let _ = tx.send(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            None,
        ));
        let result = generator.generate(&prompt, params, schema.as_ref(), |piece| {
            let _ = tx.send(chunk(json!({"content": piece}), Value::Null, None));
        });
        let last = match result {
            Ok(g) => chunk(
                json!({}),
                json!(g.finish_reason),
                Some(usage(g.prompt_tokens, g.tokens.len())),
            ),
            Err(e) => json!({"error": {"message": e.to_string()}}),
        };
        let _ = tx.send(last);
    });
    let events = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(v) => Some((
                Ok::<Event, Infallible>(Event::default().data(v.to_string())),
                (rx, false),
            )),
            None => Some((Ok(Event::default().data("[DONE]")), (rx, true))),
        }
    });
    Sse::new(events).into_response()
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

async fn models(State(server): State<Arc<Server>>) -> Response {
    match server.generator.get() {
        Some(g) => Json(json!({"object": "list", "data": [{"id": g.name, "object": "model", "owned_by": "leitwerk"}]})).into_response(),
        None => no_generator(),
    }
}

#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    content: String,
}

async fn tokenize(State(server): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    let Some(generator) = server.generator.get().cloned() else {
        return no_generator();
    };
    let request: TokenizeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"content\": \"…\"}}: {e}"),
            );
        }
    };
    match generator.encode(&request.content) {
        Ok(tokens) => Json(json!({ "tokens": tokens })).into_response(),
        Err(e) => refuse(status_of(&e), e.to_string()),
    }
}
