//! `publish-content` to an object-store target (a `file://` store here): the approved payload
//! is written as JSON, Markdown and sanitised HTML under `<namespace>/<name>/<run id>`, and a
//! payload changed after its run reported its digest is refused, naming both digests.

use leitwerk_content::publish::{Payload, SourceRef};
use leitwerk_content::seo::Page;
use leitwerk_crds::ContentPipeline;
use leitwerk_trainer::content::{PublishJob, run_publish};
use leitwerk_trainer::store::digest;

fn spec(target: &str) -> leitwerk_crds::ContentPipelineSpec {
    let mut p: ContentPipeline = yaml_serde::from_str(include_str!(
        "../../examples/seo-article/contentpipeline.yaml"
    ))
    .unwrap_or_else(|e| unreachable!("the example parses: {e}"));
    let publish = p.spec.publish.as_mut().unwrap_or_else(|| unreachable!());
    publish.webhook = None;
    publish.artifact_store = Some(target.to_string());
    p.spec
}

#[tokio::test]
async fn an_approved_payload_lands_in_the_object_store_and_a_changed_one_is_refused()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("leitwerk-publish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("run"))?;
    let page = Page {
        title: "A/B tests in Lumen Mail".into(),
        description: "How Lumen Mail picks a winner.".into(),
        markdown: "# A/B tests\n\nThe winner is chosen by open rate. <script>x()</script>\n".into(),
    };
    let payload = Payload::new(
        "r1",
        Some("newsletter-cta"),
        &page,
        serde_json::json!({"@type": "Article"}),
        vec![SourceRef {
            chunk: "product-docs/ab-testing.md#0".into(),
            document: "product-docs/ab-testing.md".into(),
        }],
    );
    let bytes = serde_json::to_vec(&payload)?;
    let file = dir.join("run/payload.json");
    std::fs::write(&file, &bytes)?;
    let target = format!("file://{}/site", dir.display());
    let job = PublishJob {
        namespace: "marketing".into(),
        name: "ab".into(),
        run_id: "r1".into(),
        payload: format!("file://{}", file.display()),
        digest: digest(&bytes),
    };
    let to = run_publish(&spec(&target), &job).await?;
    assert_eq!(to, format!("{target}/marketing/ab/r1.html"));
    let html = std::fs::read_to_string(dir.join("site/marketing/ab/r1.html"))?;
    assert!(
        html.contains("<h1>A/B tests</h1>") && !html.contains("<script"),
        "{html}"
    );
    let md = std::fs::read_to_string(dir.join("site/marketing/ab/r1.md"))?;
    assert_eq!(md, page.markdown);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("site/marketing/ab/r1.json"))?)?;
    assert_eq!(json["experimentId"], "newsletter-cta");

    // Changed after the run: refused, and nothing new is written.
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({"runId": "r1"}))?,
    )?;
    std::fs::remove_dir_all(dir.join("site"))?;
    let refused = run_publish(&spec(&target), &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("changed after the run") && refused.contains(&job.digest),
        "{refused}"
    );
    assert!(!dir.join("site").exists());
    Ok(())
}
