//! A real node: the lead-scoring example on a real kubelet (built from its Go module by
//! `tests/kubelet/build.sh`) with Debian's containerd and runc and the CNI bridge, joined by
//! `tests/kubelet/up.sh`, advertising one `nvidia.com/gpu`. The FeatureSet materializes and the
//! Model trains (asking for that GPU) in the project's own
//! trainer image, and the Model is served by its inference-server image behind a real
//! readiness probe; the pods run with the restricted security context and a read-only root
//! file system, read the data from a hostPath volume, and report through termination messages
//! and logs that the real kubelet serves. Where the machine cannot host a node (root,
//! containerd, runc or the CNI plugins missing, or the node never Ready), the test says so
//! loudly, with `up.sh`'s reason, and does not run; a failure once the node is Ready fails it.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use leitwerk_crds::model::ModelPhase;
use leitwerk_crds::{FeatureSet, Model};
use leitwerk_testkit::{Cluster, TestNamespace, kubectl_apply, repo_root, wait_for};

use crate::predictive::{claim_host_path, operator_with_images, sibling};

const TRAINER: &str = "localhost/leitwerk-trainer:dev";
const SERVER: &str = "localhost/leitwerk-inference-server:dev";

/// Stops the real node when the test ends, however it ends.
struct RealNode(std::path::PathBuf);

impl Drop for RealNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("tests/kubelet/down.sh"))
            .arg(&self.0)
            .output();
    }
}

fn run(what: &str, command: &mut Command) -> anyhow::Result<std::process::Output> {
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lead_scoring_example_runs_in_the_projects_images_on_a_real_kubelet()
-> anyhow::Result<()> {
    let _one_node = crate::REAL_NODE.lock().await;
    let dir = std::env::temp_dir().join(format!("leitwerk-kubelet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&dir.join("cluster"), false)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;

    // The images of this build, then the node with them imported.
    run(
        "tests/images.sh",
        Command::new("bash")
            .arg(repo_root().join("tests/images.sh"))
            .args(["--profile", "debug", "trainer", "inference-server"]),
    )?;
    let node_dir = dir.join("node");
    let _node = RealNode(node_dir.clone());
    let up = Command::new("bash")
        .arg(repo_root().join("tests/kubelet/up.sh"))
        .arg("--dir")
        .arg(&node_dir)
        .args(["--gpus", "1", "--image", TRAINER, "--image", SERVER])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("KUBECTL", cluster.bin.join("kubectl"))
        .output()?;
    if up.status.code() == Some(3) {
        eprintln!(
            "\n!!! THE REAL-KUBELET TEST DID NOT RUN: {}!!! The node stand-in tests ran; install what is named above to run this one.\n",
            String::from_utf8_lossy(&up.stderr)
        );
        return Ok(());
    }
    anyhow::ensure!(
        up.status.success(),
        "tests/kubelet/up.sh: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    let client = cluster.client().await?;
    let ns = TestNamespace::create(&cluster, "kubelet").await?;
    let data = dir.join("volumes/leitwerk-data");
    let artifacts = dir.join("volumes/leitwerk-artifacts");
    run(
        "leitwerk-trainer generate",
        Command::new(sibling("leitwerk-trainer")?)
            .args([
                "generate", "leads", "--seed", "11", "--count", "4000", "--out",
            ])
            .arg(&data),
    )?;
    for (claim, path) in [("leitwerk-data", &data), ("leitwerk-artifacts", &artifacts)] {
        claim_host_path(&cluster, &ns.name, claim, path)?;
    }
    let operator = operator_with_images(&cluster, &dir, &ns.name, TRAINER, SERVER).await?;
    kubectl_apply(
        &cluster,
        &ns.name,
        "examples/lead-scoring/featureset.yaml",
        None,
    )?;
    // The example as it is, but for its training CPUs: this node has two, and the serving
    // pods ask for one of them. Its GPU request, node selector and toleration stay: the node
    // advertises one `nvidia.com/gpu` (`up.sh --gpus 1`).
    let model = std::fs::read_to_string(repo_root().join("examples/lead-scoring/model.yaml"))?
        .replace("cpu: \"2\"", "cpu: 500m");
    cluster.apply(Some(&ns.name), "-", Some(&model))?;

    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    let feature_sets: Api<FeatureSet> = Api::namespaced(client.clone(), &ns.name);
    wait_for(
        "the Model to serve from the real node",
        Duration::from_secs(420),
        || async {
            let m = models.get("lead-scoring").await?.status.unwrap_or_default();
            let fs = feature_sets
                .get("lead-features")
                .await?
                .status
                .unwrap_or_default();
            let why = format!(
                "Model {:?} {:?}; FeatureSet {:?} {:?}",
                m.phase, m.conditions, fs.phase, fs.conditions
            );
            Ok(((m.phase == Some(ModelPhase::Serving)).then_some(()), why))
        },
    )
    .await
    .map_err(|e| {
        let node_log = std::fs::read_to_string(node_dir.join("kubelet.log")).unwrap_or_default();
        let errors: Vec<&str> = node_log.lines().filter(|l| l.starts_with('E')).collect();
        anyhow::anyhow!(
            "{e}\noperator log:\n{}\nkubelet errors:\n{}",
            operator.log_text(),
            errors[errors.len().saturating_sub(20)..].join("\n")
        )
    })?;
    let fs = feature_sets
        .get("lead-features")
        .await?
        .status
        .unwrap_or_default();
    assert!(fs.rows.unwrap_or(0) > 10_000, "{fs:?}");

    // The training pod ran on the real node, in the trainer image, restricted, and its summary
    // came back as the termination message the real kubelet wrote.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let train = pods
        .list(
            &ListParams::default()
                .labels("leitwerk.dev/model=lead-scoring,leitwerk.dev/version=v1"),
        )
        .await?;
    let train = train
        .items
        .first()
        .ok_or_else(|| anyhow::anyhow!("no training pod"))?;
    let spec = train.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("localhost"));
    assert_eq!(spec.containers[0].image.as_deref(), Some(TRAINER));
    // It asked for the GPU the node advertises, and the real kubelet admitted it.
    let limits = spec.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1"),
        "{limits:?}"
    );
    let context = spec.containers[0]
        .security_context
        .clone()
        .unwrap_or_default();
    assert_eq!(context.read_only_root_filesystem, Some(true));
    let terminated = train
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .ok_or_else(|| anyhow::anyhow!("the training container did not terminate"))?;
    assert_eq!(terminated.exit_code, 0);
    let summary: serde_json::Value =
        serde_json::from_str(terminated.message.as_deref().unwrap_or_default())?;
    assert_eq!(summary["version"], "v1", "{summary}");

    // Its log, through the API server from the real kubelet, carries the progress reports.
    let name = train.metadata.name.clone().unwrap_or_default();
    let logs = cluster.kubectl(&["logs", "-n", &ns.name, &name], None)?;
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains(r#"leitwerk.progress {"stage":"checking parity""#),
        "kubectl logs {name}:\n{logs}"
    );

    // The serving pod is Ready because its readiness probe passed on the real kubelet.
    let serving = pods
        .list(&ListParams::default().labels("leitwerk.dev/model=lead-scoring"))
        .await?;
    let ready = serving.items.iter().find(|p| {
        p.spec
            .as_ref()
            .is_some_and(|s| s.containers[0].image.as_deref() == Some(SERVER))
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    assert!(
        ready.is_some_and(|p| p
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].readiness_probe.as_ref())
            .is_some()),
        "a Ready serving pod with a readiness probe"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
