//! The workspace keeps the shape DESIGN.md and STYLE.md describe.

use std::process::Command;

use leitwerk_testkit::repo_root;

fn normal_dependencies(package: &str) -> String {
    #[allow(clippy::expect_used)] // a test helper: failing to run cargo fails the test
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn trainer_and_inference_server_do_not_depend_on_kube_runtime() {
    for package in [
        "leitwerk-trainer",
        "leitwerk-inference-server",
        "leitwerk-crds",
    ] {
        let tree = normal_dependencies(package);
        assert!(
            !tree.contains("kube-runtime"),
            "{package} depends on kube-runtime:\n{tree}"
        );
    }
    assert!(
        normal_dependencies("leitwerk-operator").contains("kube-runtime"),
        "the check can see kube-runtime"
    );
}

#[test]
fn top_level_entries_are_exactly_the_documented_ones() {
    let mut entries: Vec<String> = std::fs::read_dir(repo_root())
        .expect("read the repository root")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.') && n != "target")
        .collect();
    entries.sort();
    let expected = [
        "Cargo.lock",
        "Cargo.toml",
        "README.md",
        "benches",
        "charts",
        "config",
        "crds",
        "examples",
        "inference-server",
        "operator",
        // The retrieval library shared by the trainer (`index`) and the inference server
        // (queries, embeddings), documented in the README's Architecture.
        "rag",
        "rust-toolchain.toml",
        "rustfmt.toml",
        "tests",
        "trainer",
    ];
    assert_eq!(entries, expected);
}

#[test]
fn the_pinned_kubernetes_version_matches_the_k8s_openapi_feature() {
    let pin = leitwerk_testkit::kubernetes_version();
    let minor = pin
        .trim_start_matches("v1.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let manifest =
        std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("read Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("k8s-openapi"))
        .expect("k8s-openapi in [workspace.dependencies]");
    assert!(
        line.contains(&format!("\"v1_{minor}\"")),
        "tests/cluster/versions.env pins {pin} but Cargo.toml has: {line}"
    );
}
