//! `leitwerk-trainer index` as the RagIndex Job runs it: the example corpus mounted the way the
//! kubelet mounts a ConfigMap, a file artifact store, the labelled set, an incremental second
//! build, and refusals that name what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use leitwerk_crds::summary::IndexSummary;
use leitwerk_testkit::{example_config_map, provided};

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-trainer");

fn example(file: &str) -> anyhow::Result<BTreeMap<String, String>> {
    example_config_map(&format!("product-docs-rag/{file}"))
}

/// Writes a ConfigMap's keys as the kubelet does: the files live in a timestamped directory,
/// `..data` points at it, and each key is a link through `..data`.
fn mount(dir: &Path, data: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let stamped = dir.join("..2026_12_02_05_00_00.1");
    std::fs::create_dir_all(&stamped)?;
    for (key, text) in data {
        std::fs::write(stamped.join(key), text)?;
    }
    std::os::unix::fs::symlink("..2026_12_02_05_00_00.1", dir.join("..data"))?;
    for key in data.keys() {
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key))?;
    }
    Ok(())
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    termination: String,
}

fn index(base: &Path, extra: &[&str]) -> anyhow::Result<Run> {
    let spec = r#"{"sources": [{"name": "product-docs", "configMapRef": {"name": "product-docs"}}],
        "chunking": {"strategy": "Markdown", "maxTokens": 200, "overlapTokens": 30}}"#;
    let termination = base.join("termination-log");
    let out = Command::new(BIN)
        .args([
            "index",
            "--spec",
            spec,
            "--namespace",
            "marketing",
            "--name",
            "product-docs",
        ])
        .arg("--artifact-store")
        .arg(format!("file://{}", base.join("store").display()))
        .arg("--termination-log")
        .arg(&termination)
        .arg("--model-dir")
        .arg(provided("minilm.sh")?)
        .arg("--source")
        .arg(format!("product-docs={}", base.join("docs").display()))
        .args(extra)
        .output()?;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        termination: std::fs::read_to_string(&termination).unwrap_or_default(),
    })
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leitwerk-index-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_index_job_builds_measures_and_rebuilds_only_what_changed() -> anyhow::Result<()> {
    let base = scratch();
    let mut docs = example("docs-configmap.yaml")?;
    mount(&base.join("docs"), &docs)?;
    let labelled = base.join("queries.jsonl");
    let queries = example("eval-configmap.yaml")?;
    std::fs::write(
        &labelled,
        queries.get("queries.jsonl").map_or("", String::as_str),
    )?;
    let labelled_arg = labelled.display().to_string();

    let first = index(&base, &["--labelled", &labelled_arg])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let summary: IndexSummary = serde_json::from_str(first.stdout.trim())?;
    assert_eq!(first.termination.trim(), first.stdout.trim());
    assert!(first.termination.len() <= leitwerk_crds::summary::TERMINATION_MESSAGE_LIMIT);
    assert_eq!(
        (summary.documents, summary.added),
        (docs.len() as i64, docs.len() as i64)
    );
    assert!(summary.from_scratch && summary.embedded == summary.chunks);
    assert_eq!(
        (summary.model.name.as_str(), summary.model.dimension),
        ("all-MiniLM-L6-v2", 384)
    );
    let quality = summary
        .quality
        .ok_or_else(|| anyhow::anyhow!("no quality"))?;
    assert!(
        quality.recall_at_k >= 0.85 && quality.queries >= 40,
        "{quality:?}"
    );
    let file = summary
        .url
        .strip_prefix("file://")
        .ok_or_else(|| anyhow::anyhow!("{}", summary.url))?;
    let bytes = std::fs::read(file)?;
    assert_eq!(leitwerk_rag::documents::digest(&bytes), summary.digest);
    assert!(summary.url.ends_with(&format!(
        "indexes/marketing/product-docs/{}.lwrag",
        summary.digest.trim_start_matches("sha256:")
    )));

    // One edited document: only its chunks are embedded again.
    let faq = docs
        .get_mut("billing-faq.md")
        .ok_or_else(|| anyhow::anyhow!("no FAQ"))?;
    faq.push_str("\n## Can I pay in Swiss francs?\nYes, invoices can be issued in CHF.\n");
    mount(&base.join("docs"), &docs)?;
    let second = index(&base, &["--previous", &summary.url])?;
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let next: IndexSummary = serde_json::from_str(second.stdout.trim())?;
    assert_eq!(
        (next.changed, next.unchanged, next.added),
        (1, docs.len() as i64 - 1, 0)
    );
    assert!(!next.from_scratch && next.embedded >= 1 && next.embedded < next.chunks / 4);
    assert_ne!(next.digest, summary.digest);
    Ok(())
}

#[test]
fn refusals_name_the_document_or_the_label_and_write_no_version() -> anyhow::Result<()> {
    let base = scratch().with_extension("bad");
    let docs = BTreeMap::from([("faq.md".to_string(), "# FAQ\nAnswers.".to_string())]);
    mount(&base.join("docs"), &docs)?;
    let labelled = base.join("queries.jsonl");
    std::fs::write(
        &labelled,
        "{\"query\": \"refunds\", \"relevant\": [\"product-docs/refunds.md\"]}\n",
    )?;
    let run = index(&base, &["--labelled", &labelled.display().to_string()])?;
    assert_eq!(run.code, Some(1));
    let error: serde_json::Value = serde_json::from_str(run.termination.trim())?;
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("product-docs/refunds.md") && message.contains("<source>/<key>"),
        "{message}"
    );
    assert!(
        !base.join("store").exists(),
        "a refused build wrote a version"
    );

    let binary = BTreeMap::from([("logo.md".to_string(), "\u{0}PNG".to_string())]);
    mount(&base.join("docs"), &binary)?;
    let run = index(&base, &[])?;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("product-docs/logo.md: not text"),
        "{}",
        run.stderr
    );

    mount(&base.join("docs"), &BTreeMap::new())?;
    let run = index(&base, &[])?;
    assert!(
        run.stderr.contains("the sources hold no documents"),
        "{}",
        run.stderr
    );
    Ok(())
}
