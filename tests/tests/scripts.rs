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

#[test]
fn setup_stops_at_once_naming_the_command_that_installs_what_is_missing() {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/setup.sh"))
        .env("LEITWERK_SETUP_NO_INSTALL", "1")
        .env("PROTOC", "/nonexistent/protoc")
        .env("PROMETHEUS", "/nonexistent/prometheus")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(err) => panic!("failed to run setup.sh: {err}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup.sh passed without protoc");
    assert!(
        stderr.contains("apt-get install -y --no-install-recommends")
            && stderr.contains("protobuf-compiler")
            && stderr.contains("libprotobuf-dev")
            && stderr.contains("prometheus"),
        "{stderr}"
    );
    // It checks before it downloads anything: a newcomer learns it at once, not after a
    // build or a download.
    assert!(
        !stderr.contains("[onnxruntime]") && !stderr.contains("[minilm]"),
        "{stderr}"
    );
}

#[test]
fn both_readme_commands_and_ci_run_the_same_setup() {
    let read = |p: &str| std::fs::read_to_string(repo_root().join(p)).unwrap_or_default();
    for script in ["tests/run.sh", "tests/cluster/quickstart.sh", ".ci/run"] {
        assert!(
            read(script).contains("tests/setup.sh"),
            "{script} does not run tests/setup.sh"
        );
    }
    assert!(read(".ci/run").contains("bash tests/run.sh"));
    let readme = read("README.md");
    assert!(readme.contains("\ntests/run.sh\n"), "README's test command");
    assert!(readme.contains("\ntests/cluster/quickstart.sh\n"));
}
