//! The chart's Argo CD health check (`charts/leitwerk/health/leitwerk.lua`, run by Lua 5.1 as
//! Argo CD runs it) and cli-utils' kstatus (what Flux computes, built from its Go module by
//! `tests/kstatus.sh`) read every recorded status as it should be read.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use leitwerk_testkit::{provided, repo_root};

fn testdata() -> PathBuf {
    repo_root().join("charts/leitwerk/health/testdata")
}

/// Each recorded status: its Argo CD health and its kstatus.
const EXPECTED: [(&str, &str, &str); 18] = [
    ("featureset-ready", "Healthy", "Current"),
    ("featureset-materializing", "Progressing", "InProgress"),
    ("featureset-failed", "Degraded", "Failed"),
    ("model-serving", "Healthy", "Current"),
    ("model-training", "Progressing", "InProgress"),
    ("model-rejected", "Degraded", "Failed"),
    ("model-pending", "Degraded", "Failed"),
    ("experiment-progressing", "Progressing", "InProgress"),
    ("experiment-promoted", "Healthy", "Current"),
    ("experiment-rolledback", "Degraded", "Failed"),
    ("experiment-paused", "Suspended", "InProgress"),
    ("ragindex-indexing", "Progressing", "InProgress"),
    ("ragindex-ready", "Healthy", "Current"),
    ("contentpipeline-running", "Progressing", "InProgress"),
    ("contentpipeline-awaiting", "Suspended", "InProgress"),
    ("contentpipeline-published", "Healthy", "Current"),
    ("contentpipeline-failed", "Degraded", "Failed"),
    ("leitwerkpolicy-governing", "Healthy", "Current"),
];

/// A JSON value as a Lua 5.1 expression (strings with decimal escapes, so any byte is safe).
fn lua(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b" .,:;-_/()[]=%+<>@#".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\{b:03}"));
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What the Argo CD health check returns for `obj`: (status, message).
fn argocd_health(obj: &serde_json::Value) -> anyhow::Result<(String, String)> {
    let check = std::fs::read_to_string(repo_root().join("charts/leitwerk/health/leitwerk.lua"))?;
    let program = format!(
        "obj = {}\nlocal result = (function()\n{check}\nend)()\nprint(result.status)\nprint(result.message)\n",
        lua(obj)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("lua5.1 (tests/setup.sh installs it): {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(program.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    Ok((
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
    ))
}

#[test]
fn argo_cd_reads_every_recorded_status_as_healthy_progressing_degraded_or_suspended() {
    for (name, health, _) in EXPECTED {
        let obj: serde_json::Value = serde_json::from_slice(
            &std::fs::read(testdata().join(format!("{name}.json"))).expect("a recorded status"),
        )
        .expect("JSON");
        let (status, message) = argocd_health(&obj).unwrap();
        assert_eq!(status, health, "{name}: {message}");
        if obj["kind"] == "LeitwerkPolicy" {
            assert!(
                message.starts_with("governs 1 namespaces; last denial: "),
                "{name}: {message}"
            );
            continue;
        }
        let phase = obj["status"]["phase"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(phase),
            "{name}: the message names the phase: {message}"
        );
    }
    // A generation the operator has not observed yet is progressing, whatever the phase says.
    let mut newer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata().join("model-serving.json")).unwrap())
            .unwrap();
    newer["metadata"]["generation"] = serde_json::json!(99);
    let (status, message) = argocd_health(&newer).unwrap();
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 99"), "{message}");
    // No status yet: progressing.
    let mut fresh = newer.clone();
    fresh.as_object_mut().unwrap().remove("status");
    assert_eq!(argocd_health(&fresh).unwrap().0, "Progressing");
}

#[test]
fn kstatus_reads_every_recorded_status_as_flux_should() {
    let kstatus = provided("kstatus.sh").expect("tests/kstatus.sh builds kstatus");
    let files: Vec<PathBuf> = EXPECTED
        .iter()
        .map(|(name, _, _)| testdata().join(format!("{name}.json")))
        .collect();
    let out = Command::new(&kstatus)
        .args(&files)
        .output()
        .expect("kstatus ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for (file, (name, _, expected)) in files.iter().zip(EXPECTED) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", file.display())))
            .unwrap_or_else(|| panic!("no kstatus line for {name}:\n{text}"));
        let status = line.split(' ').nth(1).unwrap_or_default();
        assert_eq!(status, expected, "{name}: {line}");
    }
}

#[test]
fn every_kind_has_recorded_statuses_for_each_health() {
    for kind in [
        "featureset",
        "model",
        "experiment",
        "ragindex",
        "contentpipeline",
    ] {
        let healths: Vec<&str> = EXPECTED
            .iter()
            .filter(|(n, _, _)| n.starts_with(&format!("{kind}-")))
            .map(|(_, h, _)| *h)
            .collect();
        assert!(
            healths.contains(&"Healthy") && healths.contains(&"Progressing"),
            "{kind}: {healths:?}"
        );
    }
    let files = std::fs::read_dir(testdata())
        .expect("testdata")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert_eq!(
        files,
        EXPECTED.len(),
        "every recorded status has its expectation"
    );
}
