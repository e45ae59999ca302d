//! The API: CRDs, examples and the corpus of invalid manifests against the real API server.

use anyhow::Context as _;
use leitwerk_testkit::{Cluster, TestNamespace, repo_root};

use crate::*;

#[tokio::test]
async fn crds_are_established_listed_by_category_and_explained() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "crds").await?;
    let out = cluster.kubectl(&["get", "leitwerk", "-n", &ns.name], None)?;
    assert!(
        out.status.success(),
        "kubectl get leitwerk failed: {}",
        stderr(&out)
    );
    for short in ["fs", "mdl", "exp", "rag", "cp"] {
        let out = cluster.kubectl(&["get", short, "-n", &ns.name], None)?;
        assert!(out.status.success(), "short name {short}: {}", stderr(&out));
    }
    let out = cluster.kubectl(
        &["explain", "model.spec.training.resources.gpu.count"],
        None,
    )?;
    let text = stderr(&out);
    assert!(
        out.status.success() && text.contains("Number of GPUs"),
        "kubectl explain: {text}"
    );
    let out = cluster.kubectl(&["explain", "experiment.spec.strategy.canary.steps"], None)?;
    assert!(
        stderr(&out).contains("strictly ascending"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test]
async fn every_example_passes_server_side_dry_run() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "dryrun").await?;
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("examples"))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let rel = format!(
            "examples/{}/",
            path.file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        let out = cluster.kubectl(
            &["apply", "--dry-run=server", "-n", &ns.name, "-f", &rel],
            None,
        )?;
        assert!(out.status.success(), "{rel} was rejected: {}", stderr(&out));
        checked += 1;
    }
    assert_eq!(
        checked,
        EXAMPLES.len(),
        "every example directory is listed in EXAMPLES"
    );
    let out = cluster.kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-n",
            &ns.name,
            "-k",
            "config/samples",
        ],
        None,
    )?;
    assert!(
        out.status.success(),
        "config/samples was rejected: {}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test]
async fn invalid_manifests_are_rejected_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "invalid").await?;
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/invalid"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    // Each file is one case, numbered from 01 without gaps: a case that disappears is noticed.
    let numbers: Vec<usize> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str()?.split('-').next()?.parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (1..=files.len()).collect::<Vec<_>>(),
        "tests/invalid: every manifest is named NN-what-is-wrong.yaml, numbered 01..{}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .with_context(|| format!("{} has no '# expect:' line", file.display()))?;
        let out = cluster.kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                &ns.name,
                "-f",
                &file.to_string_lossy(),
            ],
            None,
        )?;
        let message = stderr(&out);
        if out.status.success() {
            failures.push(format!("{}: accepted, but it is a mistake", file.display()));
        } else if !message.contains(expect) {
            failures.push(format!(
                "{}: rejected without naming {expect:?}: {message}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} invalid manifests of tests/invalid were rejected, each naming its field",
        files.len()
    );
    Ok(())
}
