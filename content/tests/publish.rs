//! A signed, idempotent delivery to a CMS webhook on 127.0.0.1: the receiver verifies the
//! HMAC-SHA256 signature over the exact body, a 503 is retried with the same idempotency key,
//! and a receiver that does not know the key refuses the content (no retry).

use std::time::Duration;

use leitwerk_content::publish::{Error, Payload, SourceRef, deliver};
use leitwerk_content::seo::Page;
use leitwerk_testkit::cms::CmsReceiver;

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
    let cms = CmsReceiver::start(b"cms-key", vec![503]).await?;
    let tries = deliver(
        &cms.url,
        b"cms-key",
        Some("cms-token"),
        &payload(),
        3,
        Duration::from_millis(10),
    )
    .await?;
    assert_eq!(tries, 2);
    let seen = cms.deliveries();
    let keys: Vec<(&str, bool)> = seen
        .iter()
        .map(|d| (d.idempotency_key.as_str(), d.signed))
        .collect();
    assert_eq!(keys, [("run-7f3a", true), ("run-7f3a", true)]);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer cms-token"));
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body)?;
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
    let cms = CmsReceiver::start(b"cms-key", Vec::new()).await?;
    let refused = deliver(
        &cms.url,
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
    assert_eq!(cms.deliveries().len(), 1);
    Ok(())
}
