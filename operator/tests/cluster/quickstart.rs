//! The README's quick start, run as a user would.

use std::process::Command;

use leitwerk_testkit::{free_port, repo_root};

use crate::*;

#[test]
fn quick_start_shows_every_example_with_its_phase() {
    let state = std::env::temp_dir().join(format!("leitwerk-quickstart-{}", std::process::id()));
    let script = repo_root().join("tests/cluster/quickstart.sh");
    let port = free_port().unwrap_or(18081).to_string();
    let out = Command::new("bash")
        .arg(&script)
        .env("LEITWERK_QUICKSTART_DIR", &state)
        .env("LEITWERK_OPERATOR_BIN", OPERATOR)
        .env("LEITWERK_METRICS_PORT", &port)
        .output();
    let down = Command::new("bash")
        .arg(&script)
        .arg("--down")
        .env("LEITWERK_QUICKSTART_DIR", &state)
        .output();
    let out = out.unwrap_or_else(|e| panic!("failed to run the quick start: {e}"));
    let text = stderr(&out);
    assert!(out.status.success(), "the quick start failed:\n{text}");
    for (kind, name, _, _) in expected_conditions() {
        let row = text
            .lines()
            .find(|l| l.contains(&format!("{}.leitwerk.dev/{name} ", kind.to_lowercase())));
        let row = row.unwrap_or_else(|| {
            panic!("{kind} {name} missing from the quick start's table:\n{text}")
        });
        let phase = row
            .split_whitespace()
            .nth(if kind == "Experiment" { 2 } else { 1 })
            .unwrap_or_default();
        assert!(
            [
                "Pending",
                "Materializing",
                "Indexing",
                "Deploying",
                "WaitingForData",
                "WaitingForVersions",
                "WaitingForIndex"
            ]
            .contains(&phase),
            "{kind} {name} shows phase {phase:?}:\n{text}"
        );
    }
    let down = down.unwrap_or_else(|e| panic!("failed to stop the quick start: {e}"));
    assert!(
        down.status.success() && !state.exists(),
        "the quick start did not stop cleanly: {}",
        stderr(&down)
    );
}
