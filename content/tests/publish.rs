//! A signed, idempotent delivery to a CMS webhook on 127.0.0.1: the receiver verifies the
//! HMAC-SHA256 signature over the exact body, a 503 is retried with the same idempotency key,
//! and a receiver that does not know the key refuses the content (no retry).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use leitwerk_content::publish::{
    Error, IDEMPOTENCY_HEADER, Payload, SIGNATURE_HEADER, SourceRef, deliver, verify,
};
use leitwerk_content::seo::Page;

#[derive(Default)]
struct Seen {
    /// (idempotency key, signature valid, body) per request.
    requests: Vec<(String, bool, Vec<u8>)>,
    /// Answers still to give before 200.
    failures: Vec<StatusCode>,
}

struct Receiver {
    key: Vec<u8>,
    seen: Mutex<Seen>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let valid = verify(&r.key, &body, &header(SIGNATURE_HEADER));
    let Ok(mut seen) = r.seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    seen.requests
        .push((header(IDEMPOTENCY_HEADER), valid, body.to_vec()));
    if !valid {
        return StatusCode::UNAUTHORIZED;
    }
    seen.failures.pop().unwrap_or(StatusCode::OK)
}

async fn receiver(
    key: &[u8],
    failures: Vec<StatusCode>,
) -> anyhow::Result<(Arc<Receiver>, String)> {
    let r = Arc::new(Receiver {
        key: key.to_vec(),
        seen: Mutex::new(Seen {
            requests: Vec::new(),
            failures,
        }),
    });
    let app = Router::new()
        .route("/cms", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/cms", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((r, url))
}

fn payload() -> Payload {
    let page = Page {
        title: "Lead scoring with Leitwerk".into(),
        description: "How it works.".into(),
        markdown: "# Lead scoring\n\nIt works. <script>alert(1)</script>\n".into(),
    };
    Payload::new(
        "run-7f3a",
        Some("exp-cta"),
        &page,
        serde_json::json!({"@type": "Article"}),
        vec![SourceRef {
            chunk: "docs/pricing.md#0".into(),
            document: "docs/pricing.md".into(),
        }],
    )
}

#[tokio::test]
async fn a_signed_delivery_is_retried_with_the_same_idempotency_key() -> anyhow::Result<()> {
    let (r, url) = receiver(b"cms-key", vec![StatusCode::SERVICE_UNAVAILABLE]).await?;
    let tries = deliver(
        &url,
        b"cms-key",
        None,
        &payload(),
        3,
        Duration::from_millis(10),
    )
    .await?;
    assert_eq!(tries, 2);
    let seen = r.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let keys: Vec<(&str, bool)> = seen
        .requests
        .iter()
        .map(|(k, v, _)| (k.as_str(), *v))
        .collect();
    assert_eq!(keys, [("run-7f3a", true), ("run-7f3a", true)]);
    let body: serde_json::Value = serde_json::from_slice(&seen.requests[1].2)?;
    assert_eq!(body["runId"], "run-7f3a");
    assert_eq!(body["experimentId"], "exp-cta");
    assert_eq!(body["sources"][0]["document"], "docs/pricing.md");
    let html = body["html"].as_str().unwrap_or_default();
    assert!(
        html.contains("<h1>Lead scoring</h1>") && !html.contains("<script"),
        "{html}"
    );
    Ok(())
}

#[tokio::test]
async fn a_receiver_with_another_key_refuses_and_is_not_retried() -> anyhow::Result<()> {
    let (r, url) = receiver(b"cms-key", Vec::new()).await?;
    let refused = deliver(
        &url,
        b"stale-key",
        None,
        &payload(),
        3,
        Duration::from_millis(10),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::Refused { status: 401, .. })),
        "{refused:?}"
    );
    assert_eq!(r.seen.lock().map(|s| s.requests.len()).unwrap_or(0), 1);
    Ok(())
}
