//! The operator against a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from the Kubernetes Go modules by `tests/cluster/build.sh`).
//! Each test has its own namespace and, where it needs one, its own operator process running
//! as the user `leitwerk-operator` with exactly the RBAC of `config/rbac/`.

#![allow(clippy::panic)] // test code: a failed step fails the test

use std::time::Duration;

use kube::Api;
use leitwerk_crds::{ContentPipeline, Experiment, FeatureSet, Model, RagIndex};
use leitwerk_testkit::{Cluster, kubectl_apply, wait_for_ready_reason};

mod api;
mod content;
mod controllers;
mod faults;
mod finalizers;
mod kubelet;
mod operations;
mod packaging;
mod pod_security;
mod policy;
mod predictive;
mod progressive;
mod quickstart;
mod retrieval;
mod retrieval_qdrant;

/// The operator binary of this build.
pub const OPERATOR: &str = env!("CARGO_BIN_EXE_leitwerk-operator");
/// How long a test waits for a condition.
pub const WAIT: Duration = Duration::from_secs(60);

/// Held by each test that joins a real node (`tests/kubelet/up.sh`): one runs on a machine at a
/// time (its bridge, its API port), and the tests of this binary run in parallel.
pub static REAL_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The example directories under `examples/`.
pub const EXAMPLES: [&str; 9] = [
    "lead-scoring",
    "lead-scoring-boosted",
    "customer-lifetime-value",
    "churn",
    "canary-rollout",
    "shadow-rollout",
    "creative-bandit",
    "product-docs-rag",
    "seo-article",
];

/// A command's standard error as text.
pub fn stderr(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Applies every example to namespace `ns`.
pub fn apply_examples(cluster: &Cluster, ns: &str) -> anyhow::Result<()> {
    for example in EXAMPLES {
        kubectl_apply(cluster, ns, &format!("examples/{example}/"), None)?;
    }
    Ok(())
}

/// The Ready reason each example object reaches without a node in this release, as
/// examples/README.md says, and the type of the Event that announces it.
pub fn expected_conditions() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        ("FeatureSet", "lead-features", "Unschedulable", "Warning"),
        ("Model", "lead-scoring", "WaitingForFeatureSet", "Normal"),
        (
            "Model",
            "lead-scoring-boosted",
            "WaitingForFeatureSet",
            "Normal",
        ),
        (
            "Model",
            "lead-scoring-tuned",
            "WaitingForFeatureSet",
            "Normal",
        ),
        ("Model", "shop-clv", "AwaitingFirstRun", "Normal"),
        ("FeatureSet", "churn-features", "Unschedulable", "Warning"),
        ("Model", "churn", "WaitingForFeatureSet", "Normal"),
        (
            "Experiment",
            "lead-scoring-canary",
            "WaitingForVersions",
            "Normal",
        ),
        (
            "Experiment",
            "lead-scoring-shadow",
            "WaitingForVersions",
            "Normal",
        ),
        ("Model", "creative-ranker", "AwaitingServing", "Normal"),
        (
            "Experiment",
            "creative-bandit",
            "WaitingForVersions",
            "Normal",
        ),
        ("RagIndex", "product-docs", "Indexing", "Normal"),
        (
            "ContentPipeline",
            "seo-ab-testing-article",
            "WaitingForRagIndex",
            "Normal",
        ),
    ]
}

/// Waits until the object `kind/name` has the Ready reason `reason`.
pub async fn wait_reason(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<serde_json::Value> {
    match kind {
        "FeatureSet" => {
            wait_for_ready_reason(
                &Api::<FeatureSet>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "Model" => {
            wait_for_ready_reason(
                &Api::<Model>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "Experiment" => {
            wait_for_ready_reason(
                &Api::<Experiment>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "RagIndex" => {
            wait_for_ready_reason(
                &Api::<RagIndex>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "ContentPipeline" => {
            wait_for_ready_reason(
                &Api::<ContentPipeline>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        other => anyhow::bail!("unknown kind {other}"),
    }
}

/// An operator watching `ns` and the example bring-your-own Model (`creative-ranker`) in it.
pub async fn operator_with_example_model(
    cluster: &Cluster,
    ns: &str,
) -> anyhow::Result<leitwerk_testkit::OperatorProcess> {
    let operator = leitwerk_testkit::OperatorProcess::start(cluster, OPERATOR, ns, &[]).await?;
    kubectl_apply(cluster, ns, "examples/creative-bandit/model.yaml", None)?;
    Ok(operator)
}
