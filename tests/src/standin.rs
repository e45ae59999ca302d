//! A generator stand-in for the tests' happy path: an OpenAI-compatible server on 127.0.0.1
//! standing in for a large hosted model. It is not a model: it composes every answer from
//! what its prompt contains — an outline (JSON) from the goal and the required sections, and
//! a section from the source sentences (`[c1] …`) that share the most words with the
//! section's heading, quoted with their labels ([`GeneratorStandIn::start_misquoting`] makes
//! one that gets every digit of those sentences wrong, standing in for a model whose draft
//! fails the fact check). A real small model (SmolLM2 on the llama.cpp
//! server, `crate::llama`) does not write grounded articles; this stand-in lets a test follow
//! a run to approval and publication, and says so wherever it is used.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};

/// The stand-in, serving until the test process ends.
#[derive(Clone)]
pub struct GeneratorStandIn {
    /// Its base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    prompts: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Shared {
    prompts: Arc<Mutex<Vec<String>>>,
    misquote: bool,
}

impl GeneratorStandIn {
    /// Starts it on 127.0.0.1.
    pub async fn start() -> anyhow::Result<GeneratorStandIn> {
        Self::serve(false, "127.0.0.1:0").await
    }

    /// Starts one listening on `address` (e.g. a node bridge's own address, so that pods on
    /// a real node reach it).
    pub async fn start_on(address: &str) -> anyhow::Result<GeneratorStandIn> {
        Self::serve(false, address).await
    }

    /// Starts one that quotes its sources with every digit changed (`23%` → `34%`).
    pub async fn start_misquoting() -> anyhow::Result<GeneratorStandIn> {
        Self::serve(true, "127.0.0.1:0").await
    }

    async fn serve(misquote: bool, address: &str) -> anyhow::Result<GeneratorStandIn> {
        let prompts = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .with_state(Shared {
                prompts: prompts.clone(),
                misquote,
            });
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(GeneratorStandIn {
            base_url: format!("http://{address}/v1"),
            prompts,
        })
    }

    /// Every message it was sent, in order.
    pub fn prompts(&self) -> Vec<String> {
        self.prompts.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn line_after<'a>(prompt: &'a str, label: &str) -> &'a str {
    prompt
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_default()
        .trim()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 3)
        .map(str::to_lowercase)
        .collect()
}

async fn answer(State(shared): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    if let Ok(mut seen) = shared.prompts.lock() {
        for m in body["messages"].as_array().into_iter().flatten() {
            seen.push(m["content"].as_str().unwrap_or_default().to_string());
        }
    }
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let sources: Vec<(String, String)> = prompt
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("[c")?;
            let (n, text) = rest.split_once("] ")?;
            Some((format!("c{n}"), text.to_string()))
        })
        .collect();
    let content = if body.get("response_format").is_some() {
        let goal = line_after(&prompt, "Goal:");
        let keyword = line_after(&prompt, "Primary keyword:");
        let sections: Vec<&str> = line_after(&prompt, "Required sections, in order:")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let title: String = format!("{keyword}: {}", sections.first().copied().unwrap_or(goal))
            .chars()
            .take(60)
            .collect();
        let mut description = format!(
            "{goal} — {keyword} explained from the product documentation, section by section"
        );
        while description.chars().count() < 125 {
            description.push_str(", with sources");
        }
        let description: String = description.chars().take(158).collect();
        json!({"title": title, "description": description, "sections": sections}).to_string()
    } else {
        let heading = prompt.split('"').nth(1).unwrap_or_default().to_string();
        let wanted = words(&heading);
        let mut ranked: Vec<&(String, String)> = sources.iter().collect();
        ranked.sort_by_key(|(_, text)| {
            std::cmp::Reverse(words(text).iter().filter(|w| wanted.contains(w)).count())
        });
        ranked
            .iter()
            .take(1)
            .flat_map(|(label, text)| {
                text.split_inclusive(". ")
                    .take(2)
                    .map(move |s| format!("{} [{label}]", s.trim()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let content = if shared.misquote && body.get("response_format").is_none() {
        content
            .chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_digit((d + 1) % 10, 10).unwrap_or(c),
                None => c,
            })
            .collect()
    } else {
        content
    };
    let prompt_tokens = prompt.len() / 4;
    let completion_tokens = content.split_whitespace().count();
    Json(json!({
        "object": "chat.completion",
        "model": "generator-stand-in",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    }))
}
