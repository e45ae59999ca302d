//! The trainer binary states its usage and names what is missing.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-trainer");

#[test]
fn help_states_the_usage() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run leitwerk-trainer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Usage: leitwerk-trainer")
            && text.contains("materialize")
            && text.contains("train")
            && text.contains("index"),
        "{text}"
    );
}

#[test]
fn a_missing_argument_names_it() {
    let out = Command::new(BIN)
        .args(["materialize", "--spec", "fs.json"])
        .output()
        .expect("run leitwerk-trainer");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--artifact-store"));
}

#[test]
fn generate_writes_the_same_files_for_the_same_seed() {
    let base = std::env::temp_dir().join(format!("leitwerk-gen-{}", std::process::id()));
    let run = |dir: &str, seed: &str| {
        let out = Command::new(BIN)
            .args([
                "generate", "leads", "--seed", seed, "--count", "300", "--out",
            ])
            .arg(base.join(dir))
            .output()
            .expect("run leitwerk-trainer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: String = String::from_utf8_lossy(&out.stdout).into();
        assert!(summary.contains("\"leads\":300"), "{summary}");
        std::fs::read(base.join(dir).join("events.csv")).expect("events.csv")
    };
    let (a, b, c) = (run("a", "1"), run("b", "1"), run("c", "2"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let header = std::fs::read_to_string(base.join("a/leads.csv")).expect("leads.csv");
    assert!(
        header.starts_with("lead_id,ts,employees,industry,country,source\n"),
        "{header}"
    );
    let out = Command::new(BIN)
        .args([
            "generate", "churn", "--count", "50", "--months", "1", "--out",
        ])
        .arg(base.join("d"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--months"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// `generate transactions` then `clv`: one row per customer with its scores, the fitted
/// parameters as JSON; a negative value is refused naming its line.
#[test]
fn clv_scores_generated_transactions_and_names_a_bad_line() {
    let dir = std::env::temp_dir().join(format!("leitwerk-clv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(BIN)
        .args(["generate", "transactions", "--count", "800", "--out"])
        .arg(&dir)
        .output()
        .expect("run leitwerk-trainer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores = dir.join("clv.csv");
    let out = Command::new(BIN)
        .args(["clv", "--horizon", "26", "--transactions"])
        .arg(dir.join("transactions.csv"))
        .arg("--out")
        .arg(&scores)
        .output()
        .expect("run leitwerk-trainer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["customers"], 800);
    assert!(
        summary["bgNbd"]["r"].as_f64().expect("r") > 0.0,
        "{summary}"
    );
    let text = std::fs::read_to_string(&scores).expect("scores");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "customer_id,frequency,recency,age,monetary,probability_alive,expected_purchases,expected_value,clv"
        )
    );
    assert_eq!(lines.count(), 800);

    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "customer_id,date,value\nK1,2026-01-01,10\nK1,2026-02-01,-5\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["clv", "--transactions"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("x.csv"))
        .output()
        .expect("run leitwerk-trainer");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv: line 3: value -5 is not 0 or more"),
        "{err}"
    );
}
