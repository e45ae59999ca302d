//! The README's quick start, run as a user would: twice, the second time on what the first
//! left running. Each state of the story is checked in what it prints.

use std::path::Path;
use std::process::{Command, Output};

use leitwerk_testkit::{free_port, repo_root};

use crate::*;

fn quick_start(state: &Path, args: &[&str]) -> Output {
    let bin = Path::new(OPERATOR).parent().unwrap_or(Path::new("."));
    let port = free_port().unwrap_or(18081).to_string();
    Command::new("bash")
        .arg(repo_root().join("tests/cluster/quickstart.sh"))
        .args(args)
        .env("LEITWERK_QUICKSTART_DIR", state)
        .env("LEITWERK_BIN_DIR", bin)
        .env("LEITWERK_METRICS_PORT", &port)
        .output()
        .unwrap_or_else(|e| panic!("failed to run the quick start: {e}"))
}

/// The row of `kubectl get leitwerk` for `kind/name`, split into columns.
fn row<'a>(text: &'a str, kind: &str, name: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{kind}.leitwerk.dev/{name} ")))
        .unwrap_or_else(|| panic!("{kind} {name} missing from the quick start's table:\n{text}"))
        .split_whitespace()
        .collect()
}

/// The panels of the chart's Experiments, Models, RagIndexes and ContentPipelines dashboards whose query finds no data in
/// the quick start's Prometheus (which scraped the real inference servers).
fn dashboards_show_data(state: &Path) -> Vec<String> {
    let port = std::fs::read_to_string(state.join("prometheus.port")).unwrap_or_default();
    let mut empty = Vec::new();
    for (file, variable) in [
        ("experiments", "$experiment"),
        ("models", "$model"),
        ("ragindexes", "$index"),
        ("content", "$pipeline"),
    ] {
        let path = repo_root().join(format!("charts/leitwerk/dashboards/{file}.json"));
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
                .unwrap_or_default();
        for panel in dashboard["panels"].as_array().cloned().unwrap_or_default() {
            let expr = panel["targets"][0]["expr"].as_str().unwrap_or_default();
            let query = expr
                .replace("$namespace", "leitwerk-demo")
                .replace(variable, ".*")
                .replace("$__rate_interval", "1m");
            let answer = Command::new("curl")
                .args([
                    "-sf",
                    "--get",
                    &format!("http://127.0.0.1:{}/api/v1/query", port.trim()),
                ])
                .args(["--data-urlencode", &format!("query={query}")])
                .output();
            let found = answer
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
            let series = found
                .as_ref()
                .and_then(|v| v["data"]["result"].as_array())
                .map_or(0, Vec::len);
            if series == 0 {
                empty.push(format!("{file}: {}: {query} → {found:?}", panel["title"]));
            }
        }
    }
    empty
}

/// Seconds the quick start says the whole story took.
fn took(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("The whole story took "))
        .and_then(|l| l.trim_end_matches(" s.").parse().ok())
        .unwrap_or_else(|| panic!("no total time:\n{text}"))
}

/// Long because it is the story the quick start tells, checked line by line.
#[test]
fn quick_start_trains_serves_canaries_and_retrieves_and_runs_again_on_what_it_left() {
    let _node = REAL_NODE.blocking_lock();
    let state = std::env::temp_dir().join(format!("leitwerk-quickstart-{}", std::process::id()));
    let first = quick_start(&state, &[]);
    let second = quick_start(&state, &[]);
    // The dashboards are read while the story's Prometheus still runs.
    let empty_panels = dashboards_show_data(&state);
    let down = quick_start(&state, &["--down"]);
    let text = stderr(&first);
    assert!(first.status.success(), "the quick start failed:\n{text}");

    // Every step says how long it took.
    let steps = text.lines().filter(|l| l.starts_with("== ")).count();
    let timed = text
        .lines()
        .filter(|l| l.starts_with("   done in "))
        .count();
    assert!(
        steps >= 10 && timed == steps,
        "{steps} steps, {timed} timed:\n{text}"
    );
    // The pods ran on a real kubelet, in the project's images, reached at their pod
    // addresses; only where this machine cannot host a node did the stand-in run them, and
    // the quick start said why.
    if text.contains("The pods ran on a real kubelet (node/localhost)") {
        assert!(
            text.contains("   POST http://10.244.0."),
            "the prediction went to a pod address:\n{text}"
        );
    } else {
        assert!(
            text.contains("!!! this machine cannot host a real node: ")
                && text.contains("The pods ran on the node stand-in (leitwerk-dev)"),
            "{text}"
        );
        eprintln!(
            "\n!!! THE QUICK START RAN ON THE NODE STAND-IN, NOT A REAL KUBELET (see its output)\n"
        );
    }
    // The FeatureSet was published with its quality rules passed.
    assert!(text.contains("rows, quality 3/3 passed"), "{text}");
    // The Model trained, passed its gate and serves; a prediction came back with a score.
    assert!(text.contains("   v1 AUC 0.8"), "{text}");
    let score: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("score: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score printed:\n{text}"));
    assert!((0.0..=1.0).contains(&score), "{score}");
    assert!(text.contains("\"model_version\":\"v1\""), "{text}");
    // The RagIndex serves and answers with the right document first.
    assert_eq!(row(&text, "ragindex", "product-docs")[1], "Ready", "{text}");
    let first_hit = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("query: "))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_hit.contains("product-docs/nonprofit-discount.md"),
        "the charity question finds the non-profit page first: {first_hit}\n{text}"
    );
    assert_eq!(row(&text, "featureset", "lead-features")[1], "Ready");
    // With traffic and Prometheus, a better version was canaried step by step by its
    // conversion rate and promoted; a worse one was rolled back at its first analysis and v2
    // still serves.
    for decision in [
        "   Start: Canary over stable=lead-scoring/v1, canary=lead-scoring/v2",
        "   Advance: step 1/3 passed (conversion-rate/canary",
        "   Promote: ",
        // The drift gate measured the canary's served inputs, drawn from the training rows.
        "drift/canary: largest ",
        // Retrained and canaried again by hand, through `kubectl leitwerk`.
        "model/lead-scoring: Retrain: retraining asked by quickstart: Job",
        "experiment/lead-scoring-canary: Retry: retried by quickstart after Promoted",
        "   RollBack: conversion-rate/canary",
    ] {
        assert!(text.contains(decision), "no {decision:?}:\n{text}");
    }
    assert_eq!(
        row(&text, "model", "lead-scoring")[1..5],
        ["Serving", "LogisticRegression", "v2", "v3"],
        "{text}"
    );
    assert_eq!(
        row(&text, "experiment", "lead-scoring-canary")[2],
        "RolledBack",
        "{text}"
    );
    // A grounded article waited for an editor, was approved through `kubectl leitwerk` and
    // published into its ConfigMap, which the quick start prints from.
    assert!(text.contains("claims grounded"), "{text}");
    assert!(
        text.contains("contentpipeline/ab-testing-article: run ")
            && text.contains("approved by editors@example.com"),
        "{text}"
    );
    assert!(text.contains("     | # "), "the article's title: {text}");
    assert_eq!(
        row(&text, "contentpipeline", "ab-testing-article")[1],
        "Published",
        "{text}"
    );
    // `kubectl leitwerk status` draws the Model's tree.
    assert!(
        text.contains("model/lead-scoring  Serving  serving v2  latest v3"),
        "{text}"
    );

    // The second run reuses the running control plane and what it made: nothing is trained
    // again.
    let again = stderr(&second);
    assert!(
        second.status.success(),
        "the second quick start failed:\n{again}"
    );
    assert!(again.contains("already running"), "{again}");
    if again.contains("The pods ran on a real kubelet") {
        // The control plane and the node, with the images the first run imported.
        assert_eq!(again.matches("   already running").count(), 2, "{again}");
    }
    assert!(
        again.contains("the canary ran before: RolledBack, serving v2"),
        "{again}"
    );
    assert!(
        again.contains("the article ran before: Published"),
        "{again}"
    );
    assert_eq!(
        row(&again, "model", "lead-scoring")[1..5],
        ["Serving", "LogisticRegression", "v2", "v3"]
    );
    eprintln!(
        "quick start: first run {} s, second run {} s",
        took(&text),
        took(&again)
    );

    // Every panel of the Experiments, Models, RagIndexes and ContentPipelines dashboards shows data from
    // the real servers and the operator.
    assert!(empty_panels.is_empty(), "{empty_panels:#?}");

    assert!(
        down.status.success() && !state.exists(),
        "the quick start did not stop cleanly: {}",
        stderr(&down)
    );
}
