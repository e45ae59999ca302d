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

/// A test that removes its scratch directory at the end removes the control plane's pids file
/// with it, while the control plane still runs; up.sh's watcher must still stop every server
/// once the watched process exits (a policy test's kube-apiserver, controller-manager and
/// scheduler ran on for an hour after the suite had ended).
#[test]
fn the_watcher_stops_a_control_plane_whose_directory_was_removed() {
    let dir = std::env::temp_dir().join(format!("leitwerk-orphan-{}", std::process::id()));
    let mut watched = match Command::new("sleep").arg("600").spawn() {
        Ok(child) => child,
        Err(err) => panic!("failed to start sleep: {err}"),
    };
    let up = Command::new("bash")
        .arg(repo_root().join("tests/cluster/up.sh"))
        .args(["--dir", &dir.to_string_lossy(), "--minimal"])
        .args(["--watch-pid", &watched.id().to_string()])
        .output();
    let pids: Vec<String> = std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let running = |pids: &[String]| {
        pids.iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|stat| !stat.contains(") Z "))
            })
            .count()
    };
    let _ = std::fs::remove_dir_all(&dir);
    let _ = watched.kill();
    let _ = watched.wait();
    // The watcher looks every second and gives each server up to 5 s to exit.
    let mut left = running(&pids);
    for _ in 0..300 {
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = running(&pids);
    }
    for pid in &pids {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    match up {
        Ok(out) => assert!(
            out.status.success(),
            "up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => panic!("failed to run up.sh: {err}"),
    }
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver: {pids:?}");
    assert_eq!(left, 0, "servers still running after 30 s: {pids:?}");
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
