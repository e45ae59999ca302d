//! A CMS webhook receiver on 127.0.0.1, as a CMS that takes Leitwerk's content would run one:
//! it verifies the `x-leitwerk-signature` header (`sha256=` HMAC-SHA256 of the exact body
//! under the shared key) with its own HMAC, refuses unsigned or wrongly signed deliveries
//! with 401, and records every request (idempotency key, bearer token, body). Answers to give
//! before 200 (e.g. 503) can be queued to exercise retries.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `idempotency-key` header.
    pub idempotency_key: String,
    /// Whether the signature verified.
    pub signed: bool,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Seen {
    deliveries: Vec<Delivery>,
    failures: Vec<u16>,
}

struct Shared {
    key: Vec<u8>,
    seen: Mutex<Seen>,
}

/// The running receiver (serving until the test process ends).
#[derive(Clone)]
pub struct CmsReceiver {
    /// Its URL, e.g. `http://127.0.0.1:PORT/cms`.
    pub url: String,
    shared: Arc<Shared>,
}

fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == hex
}

async fn receive(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let signed = verify(
        &s.key,
        &body,
        &header("x-leitwerk-signature").unwrap_or_default(),
    );
    let Ok(mut seen) = s.seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    seen.deliveries.push(Delivery {
        idempotency_key: header("idempotency-key").unwrap_or_default(),
        signed,
        authorization: header("authorization"),
        body: body.to_vec(),
    });
    if !signed {
        return StatusCode::UNAUTHORIZED;
    }
    let answer = if seen.failures.is_empty() {
        200
    } else {
        seen.failures.remove(0)
    };
    StatusCode::from_u16(answer).unwrap_or(StatusCode::OK)
}

impl CmsReceiver {
    /// Starts a receiver that verifies with `key` and first answers `failures` (in order).
    pub async fn start(key: &[u8], failures: Vec<u16>) -> anyhow::Result<CmsReceiver> {
        let shared = Arc::new(Shared {
            key: key.to_vec(),
            seen: Mutex::new(Seen {
                deliveries: Vec::new(),
                failures,
            }),
        });
        let app = Router::new()
            .route("/cms", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/cms", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(CmsReceiver { url, shared })
    }

    /// Every request so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .seen
            .lock()
            .map(|s| s.deliveries.clone())
            .unwrap_or_default()
    }
}
