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
        "CHANGELOG.md",
        "Cargo.lock",
        "Cargo.toml",
        "README.md",
        "benches",
        "charts",
        "config",
        // The checks, generators, runs and publishing of content pipelines, documented in the
        // README's Architecture.
        "content",
        "crds",
        "examples",
        // Feature attributions shared by the trainer, the batch scorer and the inference
        // server, documented in the README's Architecture.
        "explain",
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

/// The Rust files below `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_leitwerk_label_and_annotation_is_written_once_in_crds() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in [
        "operator/src",
        "trainer/src",
        "inference-server/src",
        "rag/src",
        "tests/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    rust_files(&root.join("crds/src"), &mut files);
    let mut copies = Vec::new();
    for file in &files {
        // Below the crate's own folder (tests/src is the test kit's code, not a test).
        let inside: Vec<_> = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .components()
            .skip(1)
            .collect();
        let test_module = inside
            .iter()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs");
        if file.ends_with("crds/src/labels.rs") || test_module {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Unit tests may spell a label out to check the value the operator writes.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for name in leitwerk_crds::labels::ALL {
            if code.contains(&format!("\"{name}\"")) {
                copies.push(format!("{} spells {name:?}", file.display()));
            }
        }
    }
    assert!(
        copies.is_empty(),
        "use leitwerk_crds::labels instead: {copies:#?}"
    );
    assert!(files.len() > 50, "found only {} files", files.len());
}

#[test]
fn the_changelog_keeps_a_changelog_and_names_the_workspace_version() {
    let text = std::fs::read_to_string(repo_root().join("CHANGELOG.md")).expect("CHANGELOG.md");
    assert!(text.starts_with("# Changelog\n"), "the title");
    let sections = [
        "Added",
        "Changed",
        "Deprecated",
        "Removed",
        "Fixed",
        "Security",
    ];
    let mut versions = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            if heading == "[Unreleased]" {
                versions.push("Unreleased".to_string());
                continue;
            }
            let (version, date) = heading
                .split_once("] - ")
                .unwrap_or_else(|| panic!("{line:?} is not `## [x.y.z] - YYYY-MM-DD`"));
            let version = version.trim_start_matches('[');
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{line:?}: not a semantic version"
            );
            assert!(
                chrono_like_date(date),
                "{line:?}: the date is not YYYY-MM-DD"
            );
            versions.push(version.to_string());
        } else if let Some(section) = line.strip_prefix("### ") {
            assert!(
                sections.contains(&section),
                "{line:?}: Keep a Changelog's sections are {sections:?}"
            );
        }
    }
    assert_eq!(versions.first().map(String::as_str), Some("Unreleased"));
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let workspace_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .map(|v| v.trim_end_matches('"'))
        .expect("the workspace version");
    assert_eq!(
        versions.get(1).map(String::as_str),
        Some(workspace_version),
        "the newest release in CHANGELOG.md is the workspace's version"
    );
}

fn chrono_like_date(date: &str) -> bool {
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.parse::<u32>().is_ok())
}
