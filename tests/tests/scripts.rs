//! The control-plane scripts report failures usefully.

#![allow(clippy::panic)] // test code: a failed step fails the test

use std::process::Command;

use leitwerk_testkit::repo_root;

#[test]
fn a_component_that_fails_to_start_is_named_with_its_log_tail() {
    let dir = std::env::temp_dir().join(format!("leitwerk-broken-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(repo_root().join("tests/cluster/up.sh"))
        .args(["--dir", &dir.to_string_lossy(), "--minimal"])
        .env("LEITWERK_APISERVER_FLAGS", "--no-such-flag=1")
        .output();
    let _ = Command::new("bash")
        .arg(repo_root().join("tests/cluster/down.sh"))
        .arg(&dir)
        .status();
    let out = match out {
        Ok(out) => out,
        Err(err) => panic!("failed to run up.sh: {err}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "up.sh succeeded with a broken kube-apiserver"
    );
    assert!(
        stderr.contains("FAILED to start kube-apiserver"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown flag: --no-such-flag"),
        "the log tail is missing: {stderr}"
    );
}
