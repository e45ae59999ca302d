//! `leitwerk-trainer index` as the RagIndex Job runs it: the example corpus mounted the way the
//! kubelet mounts a ConfigMap, a file artifact store, the labelled set, an incremental second
//! build, and refusals that name what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use leitwerk_crds::rag_index::{MINILM, SearchMode};
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

const SPEC: &str = r#"{"sources": [{"name": "product-docs", "configMapRef": {"name": "product-docs"}}],
        "chunking": {"strategy": "Markdown", "maxTokens": 200, "overlapTokens": 30}}"#;

/// The arguments of `leitwerk-trainer index` over the docs mounted under `base`.
fn index_args(base: &Path, extra: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = [
        "index",
        "--spec",
        SPEC,
        "--namespace",
        "marketing",
        "--name",
        "product-docs",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--artifact-store".into(),
        format!("file://{}", base.join("store").display()),
        "--termination-log".into(),
        base.join("termination-log").display().to_string(),
        "--model-dir".into(),
        provided("minilm.sh")?.display().to_string(),
        "--source".into(),
        format!("product-docs={}", base.join("docs").display()),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Ok(args)
}

fn index(base: &Path, extra: &[&str]) -> anyhow::Result<Run> {
    let termination = base.join("termination-log");
    let out = Command::new(BIN).args(index_args(base, extra)?).output()?;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        termination: std::fs::read_to_string(&termination).unwrap_or_default(),
    })
}

#[test]
fn progress_is_report_lines_in_a_pod_and_a_bar_on_a_terminal() -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("leitwerk-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    mount(&base.join("docs"), &example("docs-configmap.yaml")?)?;
    // As in a pod: stderr is no terminal, so the stage prints report lines the operator reads.
    let piped = index(&base, &[])?;
    assert_eq!(piped.code, Some(0), "{}", piped.stderr);
    let last = leitwerk_crds::progress::Report::last_in(&piped.stderr)
        .ok_or_else(|| anyhow::anyhow!("no progress report in:\n{}", piped.stderr))?;
    assert_eq!(
        (last.stage.as_str(), last.unit.as_str()),
        ("embedding", "documents")
    );
    assert!(
        last.total.is_some_and(|t| t > 0) && Some(last.done) == last.total,
        "{last:?}"
    );
    assert!(
        !piped.stderr.contains('\u{1b}'),
        "no terminal codes in a pod's log"
    );
    // On a terminal (util-linux `script` gives it a pseudo-terminal): a bar, no report lines.
    let _ = std::fs::remove_dir_all(base.join("store"));
    let line = std::iter::once(BIN.to_string())
        .chain(index_args(&base, &[])?)
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()?;
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("embedding") && shown.contains("documents") && shown.contains('['),
        "{shown}"
    );
    assert!(!shown.contains(leitwerk_crds::progress::MARKER), "{shown}");
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// `leitwerk-trainer index` of RagIndex `marketing/<name>` with `spec`, one source, a file
/// store and a termination log under `base`.
fn index_command(base: &Path, spec: &str, name: &str, source: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(BIN);
    command
        .args([
            "index",
            "--spec",
            spec,
            "--namespace",
            "marketing",
            "--name",
            name,
        ])
        .arg("--artifact-store")
        .arg(format!("file://{}", base.join("store").display()))
        .arg("--termination-log")
        .arg(base.join("termination-log"))
        .arg("--model-dir")
        .arg(provided("minilm.sh")?)
        .args(["--source", source]);
    Ok(command)
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
        (MINILM.name, MINILM.dimension as i64)
    );
    let quality = summary
        .quality
        .ok_or_else(|| anyhow::anyhow!("no quality"))?;
    assert!(
        quality.recall_at_k >= 0.85 && quality.queries >= 40,
        "{quality:?}"
    );
    // The example leaves the search mode open: both modes are measured, and the version
    // serves in the better one, whose figure is its quality.
    let modes: Vec<SearchMode> = summary.quality_by_mode.keys().copied().collect();
    assert_eq!(modes, [SearchMode::Dense, SearchMode::Hybrid]);
    assert_eq!(summary.quality_by_mode[&summary.search_mode], quality);
    assert_eq!(
        summary.search_mode,
        leitwerk_trainer::index::better_mode(&summary.quality_by_mode)
    );
    assert_eq!(summary.serving_quality, None);
    // Measured again as the serving version, in each mode, the same file on the same set
    // gives the same figures.
    for mode in [SearchMode::Dense, SearchMode::Hybrid] {
        let again = index(
            &base,
            &[
                "--labelled",
                &labelled_arg,
                "--serving",
                &summary.url,
                "--serving-mode",
                mode.as_str(),
            ],
        )?;
        assert_eq!(again.code, Some(0), "{}", again.stderr);
        let again: IndexSummary = serde_json::from_str(again.stdout.trim())?;
        assert_eq!(again.digest, summary.digest);
        assert_eq!(
            again.serving_quality.as_ref(),
            Some(&summary.quality_by_mode[&mode]),
            "{mode}"
        );
    }
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
    let versions = base.join("store/indexes/marketing/product-docs");
    let files = |dir: &Path| -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names)
    };
    assert_eq!(files(&versions)?.len(), 2, "both versions are kept");

    // Pruning keeps the new file and those named with --keep; a third build after another
    // edit, keeping only the second version, removes the first.
    docs.entry("billing-faq.md".into())
        .or_default()
        .push_str("\n## Do you bill in yen?\nNo.\n");
    mount(&base.join("docs"), &docs)?;
    let third = index(
        &base,
        &["--previous", &next.url, "--prune", "--keep", &next.url],
    )?;
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    let last: IndexSummary = serde_json::from_str(third.stdout.trim())?;
    let name = |s: &IndexSummary| format!("{}.lwrag", s.digest.trim_start_matches("sha256:"));
    let mut expected = vec![name(&next), name(&last)];
    expected.sort();
    assert_eq!(files(&versions)?, expected);

    // delete-index removes every file of the RagIndex, and only of it.
    let other = base.join("store/indexes/marketing/other");
    std::fs::create_dir_all(&other)?;
    std::fs::write(other.join("keep.lwrag"), b"x")?;
    let out = Command::new(BIN)
        .args(["delete-index", "--spec", "{}", "--namespace", "marketing"])
        .args(["--name", "product-docs", "--artifact-store"])
        .arg(format!("file://{}", base.join("store").display()))
        .arg("--termination-log")
        .arg(base.join("termination-delete"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"deleted":2}"#
    );
    assert!(files(&versions).map_or(true, |f| f.is_empty()));
    assert_eq!(files(&other)?, vec!["keep.lwrag"]);
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

#[test]
fn objects_under_a_prefix_are_documents_with_their_url_and_other_objects_are_skipped()
-> anyhow::Result<()> {
    let base = scratch().with_extension("s3");
    let s3 = leitwerk_testkit::s3::S3Server::start(&base.join("s3"))?;
    s3.put(
        "docs",
        "product/pricing.md",
        b"# Pricing\nPro costs 49 EUR a month.",
    )?;
    s3.put(
        "docs",
        "product/guide/setup.html",
        b"<html><nav>Menu</nav><main><h1>Setup</h1><p>Add the DNS records.</p></main></html>",
    )?;
    s3.put("docs", "product/logo.png", b"\x89PNG")?;
    s3.put("docs", "other/outside.md", b"# Outside the prefix")?;
    let spec = r#"{"sources": [{"name": "site", "objectStore": {"url": "s3://docs/product/"}}]}"#;
    let out = index_command(&base, spec, "site", "site=s3://docs/product/")?
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("AWS_ENDPOINT", &s3.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: IndexSummary = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    assert_eq!(summary.documents, 2, "{summary:?}");
    assert!(stderr.contains("skipped 1 objects"), "{stderr}");
    let file = summary.url.trim_start_matches("file://");
    let index = leitwerk_rag::index::Index::from_bytes(&std::fs::read(file)?)?;
    let mut ids: Vec<(String, Option<String>)> = index
        .documents
        .values()
        .map(|d| (d.id.clone(), d.url.clone()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            (
                "site/guide/setup.html".to_string(),
                Some("s3://docs/product/guide/setup.html".to_string())
            ),
            (
                "site/pricing.md".to_string(),
                Some("s3://docs/product/pricing.md".to_string())
            ),
        ]
    );
    Ok(())
}

#[test]
fn a_product_feed_becomes_a_document_a_row_with_its_fields_as_metadata() -> anyhow::Result<()> {
    let base = scratch().with_extension("feed");
    let csv = "sku,name,price,colour\nLM-TOTE-BLK,Tote bag,12.50,black\nLM-BTL-RED,Water bottle,19.00,red\n";
    mount(
        &base.join("docs"),
        &BTreeMap::from([("catalogue.csv".to_string(), csv.to_string())]),
    )?;
    let spec = r##"{"sources": [{"name": "product-docs", "configMapRef": {"name": "shop"},
        "feed": {"format": "Csv", "idField": "sku", "titleField": "name",
                 "template": "# {{ name }}\n\nSKU {{ sku }} in {{ colour }}: {{ price }} EUR."}}]}"##;
    let source = format!("product-docs={}", base.join("docs").display());
    let out = index_command(&base, spec, "shop", &source)?.output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: IndexSummary = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    assert_eq!(summary.documents, 2);
    let index = leitwerk_rag::index::Index::from_bytes(&std::fs::read(
        summary.url.trim_start_matches("file://"),
    )?)?;
    let tote = &index.documents["product-docs/LM-TOTE-BLK"];
    assert_eq!(tote.title, "Tote bag");
    assert_eq!(
        tote.metadata.get("colour").map(String::as_str),
        Some("black")
    );
    assert!(
        tote.chunks[0]
            .text
            .contains("SKU LM-TOTE-BLK in black: 12.50 EUR.")
    );

    // A row without its id names the feed and the row.
    mount(
        &base.join("docs"),
        &BTreeMap::from([(
            "catalogue.csv".to_string(),
            "sku,name,price,colour\n,Cap,5,blue\n".to_string(),
        )]),
    )?;
    let source = format!("product-docs={}", base.join("docs").display());
    let out = index_command(&base, spec, "shop", &source)?.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("feed product-docs/catalogue.csv, row 1: no sku"),
        "{stderr}"
    );
    Ok(())
}
