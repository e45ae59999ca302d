//! Predictive models end to end: `examples/lead-scoring` applied to a private control plane
//! with one GPU node (the stand-in in `tests/src/node.rs`, which runs the real trainer and
//! inference-server binaries for the pods the real kube-scheduler binds to it). The FeatureSet
//! materializes, the Model trains on the GPU node, reaches Serving above the example's AUC
//! threshold, and an OIP v2 request returns the scores the trainer computed for the same rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use leitwerk_crds::model::{ModelPhase, VersionState};
use leitwerk_crds::{FeatureSet, Model};
use leitwerk_testkit::node::{Image, NodeStandIn};
use leitwerk_testkit::{Cluster, OperatorProcess, TestNamespace, kubectl_apply, wait_for};
use sha2::Digest;

use crate::OPERATOR;

const TRAINER_IMAGE: &str = "leitwerk-trainer:e2e";
const SERVER_IMAGE: &str = "leitwerk-inference-server:e2e";

/// A sibling binary of the operator in the same target directory.
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(OPERATOR).with_file_name(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    Ok(path)
}

pub(crate) fn onnxruntime() -> anyhow::Result<String> {
    let out = std::process::Command::new("bash")
        .arg(leitwerk_testkit::repo_root().join("tests/onnxruntime.sh"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tests/onnxruntime.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The stand-in's image table: the trainer and the inference server of this build under the
/// given image names, with the environment their images bake in.
pub(crate) fn images(
    trainer: &str,
    server: &str,
    env: &[(String, String)],
) -> anyhow::Result<HashMap<String, Image>> {
    Ok(HashMap::from([
        (
            trainer.to_string(),
            Image {
                binary: sibling("leitwerk-trainer")?,
                env: env.to_vec(),
            },
        ),
        (
            server.to_string(),
            Image {
                binary: sibling("leitwerk-inference-server")?,
                env: env.to_vec(),
            },
        ),
    ]))
}

/// A hostPath PersistentVolume and a claim bound to it (the PV controller binds them).
/// A private control plane for one story: the CRDs and the operator's RBAC installed, a test
/// namespace, and the artifact store's volume (a hostPath PersistentVolume bound to the claim
/// `leitwerk-artifacts`), all under a fresh directory named after `story`.
pub(crate) struct Plant {
    /// The story's directory.
    pub dir: PathBuf,
    /// The control plane.
    pub cluster: Cluster,
    /// A client of it.
    pub client: kube::Client,
    /// The test namespace.
    pub ns: TestNamespace,
    /// The artifact store's directory on this machine.
    pub artifacts: PathBuf,
}

impl Plant {
    pub(crate) async fn start(story: &str, namespace_prefix: &str) -> anyhow::Result<Plant> {
        let dir = std::env::temp_dir().join(format!("leitwerk-{story}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cluster = Cluster::start(&dir.join("cluster"), false)?;
        cluster.install_crds()?;
        cluster.install_operator_rbac()?;
        let client = cluster.client().await?;
        let ns = TestNamespace::create(&cluster, namespace_prefix).await?;
        let artifacts = dir.join("volumes/leitwerk-artifacts");
        std::fs::create_dir_all(&artifacts)?;
        claim_host_path(&cluster, &ns.name, "leitwerk-artifacts", &artifacts)?;
        Ok(Plant {
            dir,
            cluster,
            client,
            ns,
            artifacts,
        })
    }
}

/// Starts the operator for `ns` with a config naming the trainer and inference-server images
/// (written under `dir`).
pub(crate) async fn operator_with_images(
    cluster: &Cluster,
    dir: &Path,
    ns: &str,
    trainer: &str,
    server: &str,
) -> anyhow::Result<OperatorProcess> {
    let config = dir.join("operator.yaml");
    std::fs::write(
        &config,
        format!("trainerImage: {trainer}\ninferenceServerImage: {server}\n"),
    )?;
    OperatorProcess::start(
        cluster,
        OPERATOR,
        ns,
        &["--config", &config.to_string_lossy()],
    )
    .await
}

/// Claims `path` as a hostPath volume for `ns`, open to every user as a local-path
/// provisioner makes its directories: the pods run as user 65532 (on the stand-in as on a real
/// kubelet), and a hostPath volume keeps the host's owners.
pub(crate) fn claim_host_path(
    cluster: &Cluster,
    ns: &str,
    claim: &str,
    path: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)?;
    let out = std::process::Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(path)
        .output()?;
    anyhow::ensure!(out.status.success(), "chmod {}: {out:?}", path.display());
    cluster.apply(None, "-", Some(&volume_yaml(ns, claim, path)))?;
    Ok(())
}

fn volume_yaml(ns: &str, claim: &str, path: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {ns}-{claim}}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteMany]\n  storageClassName: standin\n  claimRef: {{namespace: {ns}, name: {claim}}}\n  hostPath: {{path: {p}}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {claim}, namespace: {ns}}}\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: standin\n  resources: {{requests: {{storage: 1Gi}}}}\n",
        p = path.display()
    )
}

/// The example rows of a model card as one OIP v2 request's inputs, and the scores the
/// trainer computed for them.
fn card_examples(card: &serde_json::Value) -> (Vec<serde_json::Value>, Vec<f64>) {
    let examples = card["examples"].as_array().cloned().unwrap_or_default();
    let inputs = card["inputs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|input| {
            let name = input[0].as_str().unwrap_or_default();
            let datatype = input[1].as_str().unwrap_or_default();
            let data: Vec<serde_json::Value> =
                examples.iter().map(|e| e["inputs"][name].clone()).collect();
            serde_json::json!({"name": name, "datatype": datatype, "shape": [data.len(), 1], "data": data})
        })
        .collect();
    let scores = examples
        .iter()
        .map(|e| e["score"].as_f64().unwrap_or(f64::NAN))
        .collect();
    (inputs, scores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lead_scoring_trains_on_the_gpu_node_serves_and_answers_with_the_trainers_scores()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("leitwerk-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&dir.join("cluster"), false)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    let client = cluster.client().await?;
    let ns = TestNamespace::create(&cluster, "e2e").await?;

    // Data on the claim the example names, artifacts on the operator's claim.
    let data = dir.join("volumes/leitwerk-data");
    let artifacts = dir.join("volumes/leitwerk-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let trainer = sibling("leitwerk-trainer")?;
    let out = std::process::Command::new(&trainer)
        .args([
            "generate", "leads", "--seed", "11", "--count", "4000", "--out",
        ])
        .arg(&data)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (claim, path) in [("leitwerk-data", &data), ("leitwerk-artifacts", &artifacts)] {
        claim_host_path(&cluster, &ns.name, claim, path)?;
    }

    let env = vec![("ORT_DYLIB_PATH".to_string(), onnxruntime()?)];
    let images = images(TRAINER_IMAGE, SERVER_IMAGE, &env)?;
    let node = NodeStandIn::start(client.clone(), "gpu-node-1", 1, &dir, images).await?;

    let operator =
        operator_with_images(&cluster, &dir, &ns.name, TRAINER_IMAGE, SERVER_IMAGE).await?;
    kubectl_apply(&cluster, &ns.name, "examples/lead-scoring/", None)?;

    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    let feature_sets: Api<FeatureSet> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let model = wait_for("the Model to serve", Duration::from_secs(300), || async {
        let m = models.get("lead-scoring").await?;
        let phase = m.status.as_ref().and_then(|s| s.phase);
        let fs = feature_sets.get("lead-features").await?;
        let why = format!(
            "Model {phase:?} {:?}; FeatureSet {:?}",
            m.status.as_ref().map(|s| (&s.conditions, &s.versions)),
            fs.status.as_ref().map(|s| (&s.phase, &s.conditions))
        );
        Ok(((phase == Some(ModelPhase::Serving)).then_some(m), why))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;

    let status = model.status.clone().unwrap_or_default();
    let serving = status
        .versions
        .iter()
        .find(|v| v.state == VersionState::Serving)
        .expect("a serving version");
    let auc = serving.metrics["auc"];
    assert!(auc >= 0.75, "the example's minMetrics: AUC {auc}");
    assert_eq!(status.serving_version.as_deref(), Some("v1"));
    let fs = feature_sets
        .get("lead-features")
        .await?
        .status
        .unwrap_or_default();
    assert_eq!(
        serving.data_version, fs.current_version,
        "trained on the published snapshot"
    );
    assert!(
        fs.rows.unwrap_or(0) > 10_000 && fs.quality.as_deref() == Some("3/3 passed"),
        "{fs:?}"
    );

    // The training pod ran on the GPU node with its GPU request and the restricted context.
    let train_pods = pods
        .list(
            &ListParams::default()
                .labels("leitwerk.dev/model=lead-scoring,leitwerk.dev/version=v1"),
        )
        .await?;
    let train_pod = train_pods.items.first().expect("the training pod");
    let spec = train_pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("gpu-node-1"));
    let limits = spec.containers[0]
        .resources
        .clone()
        .unwrap_or_default()
        .limits
        .unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1")
    );
    assert_eq!(
        spec.containers[0]
            .security_context
            .as_ref()
            .and_then(|s| s.allow_privilege_escalation),
        Some(false)
    );

    // The card's examples are rows the trainer scored; the served model must agree.
    let url = serving.artifact_url.clone().unwrap_or_default();
    let card_path = PathBuf::from(
        url.trim_start_matches("file://")
            .replace("/var/lib/leitwerk/artifacts", &artifacts.to_string_lossy()),
    )
    .with_file_name("card.json");
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(&card_path)?)?;
    let serving_ports = wait_for("a ready serving pod", Duration::from_secs(60), || async {
        let ports = node.all_ports();
        Ok((
            ports
                .iter()
                .find(|(k, _)| k.contains("/lead-scoring-serving"))
                .map(|(_, p)| *p),
            format!("{ports:?}"),
        ))
    })
    .await?;
    let (inputs, expected) = card_examples(&card);
    assert_eq!(expected.len(), 5);
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v2/models/lead-scoring/infer",
            serving_ports.0
        ))
        .json(&serde_json::json!({"inputs": inputs}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(response["model_version"], "v1", "{response}");
    let served: Vec<f64> = response["outputs"][0]["data"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(served.len(), expected.len(), "{response}");
    for (s, e) in served.iter().zip(&expected) {
        assert!((s - e).abs() <= 1e-5, "served {s} vs trainer {e}");
    }

    // Batch scoring: the boosted example with a schedule due every minute. A Job scores each
    // entity's newest snapshot row with the serving version and writes scores, the version
    // and the top three attributions to the artifact claim; the status names rows and digest.
    let boosted = include_str!("../../../examples/lead-scoring-boosted/model.yaml")
        .replace("name: lead-scoring-boosted", "name: batch-scorer")
        .replace("schedule: \"0 5 * * *\"", "schedule: \"* * * * *\"")
        .replace("format: Parquet", "format: CSV");
    anyhow::ensure!(
        boosted.contains("* * * * *") && boosted.contains("format: CSV"),
        "the example schedules batch scoring"
    );
    cluster.apply(Some(&ns.name), "-", Some(&boosted))?;
    let batch = wait_for("a batch scoring run", Duration::from_secs(300), || async {
        let m = models.get("batch-scorer").await?;
        let st = m.status.clone().unwrap_or_default();
        let run = st.batch_scoring.clone().unwrap_or_default();
        Ok((
            (run.state.as_deref() == Some("Succeeded"))
                .then_some((run.clone(), st.serving_version.clone())),
            format!(
                "{:?} {:?} {run:?}",
                st.phase,
                st.versions
                    .iter()
                    .map(|v| (&v.version, v.state))
                    .collect::<Vec<_>>()
            ),
        ))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;
    let (run, serving_version) = batch;
    assert_eq!(run.version, serving_version, "the serving version scores");
    let output = run.output_url.clone().unwrap_or_default();
    anyhow::ensure!(
        output.starts_with("file:///var/lib/leitwerk/artifacts/scores/batch-scorer-v1-")
            && output.ends_with(".csv"),
        "{output}"
    );
    let bytes = std::fs::read(
        output
            .trim_start_matches("file://")
            .replace("/var/lib/leitwerk/artifacts", &artifacts.to_string_lossy()),
    )?;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        run.output_digest,
        Some(format!("sha256:{digest}")),
        "the status names the file's digest"
    );
    let text = String::from_utf8(bytes)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "entity_id,score,version,attribution_1_feature,attribution_1_value,attribution_2_feature,attribution_2_value,attribution_3_feature,attribution_3_value"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(Some(rows.len() as i64), run.rows);
    assert!(rows.len() >= 1_000, "one row per lead: {}", rows.len());
    for row in &rows {
        let score: f64 = row[1].parse()?;
        anyhow::ensure!((0.0..=1.0).contains(&score) && row[2] == "v1", "{row:?}");
    }
    let finished = run.finished_at.clone();
    anyhow::ensure!(finished.is_some(), "{run:?}");
    cluster.kubectl(
        &[
            "-n",
            &ns.name,
            "delete",
            "model",
            "batch-scorer",
            "--wait=false",
        ],
        None,
    )?;

    // Customer lifetime value: the example, due every minute, on generated purchases. The
    // Job fits BG/NBD and Gamma-Gamma and writes one row per customer; the Model turns Ready
    // with the fit in its status.
    let shop = artifacts.join("data/shop");
    let out = std::process::Command::new(&trainer)
        .args([
            "generate",
            "transactions",
            "--count",
            "600",
            "--start",
            "2025-06-01",
            "--out",
        ])
        .arg(&shop)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clv = include_str!("../../../examples/customer-lifetime-value/model.yaml")
        .replace("schedule: \"0 6 * * 1\"", "schedule: \"* * * * *\"");
    anyhow::ensure!(clv.contains("* * * * *"), "the example has a schedule");
    cluster.apply(Some(&ns.name), "-", Some(&clv))?;
    let fitted = wait_for("a lifetime value run", Duration::from_secs(240), || async {
        let m = models.get("shop-clv").await?;
        let st = m.status.clone().unwrap_or_default();
        let ready = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
        Ok((
            (ready.as_ref().is_some_and(|r| r.0 == "True"))
                .then(|| (st.batch_scoring.clone().unwrap_or_default(), ready.clone())),
            format!("{:?} {ready:?} {:?}", st.phase, st.batch_scoring),
        ))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;
    let (run, ready) = fitted;
    let fit = run.fitted.clone().expect("the fitted parameters");
    for x in [fit.r, fit.alpha, fit.a, fit.b, fit.p, fit.q, fit.v] {
        anyhow::ensure!(x.is_finite() && x > 0.0, "{fit:?}");
    }
    let ready = ready.unwrap_or_default();
    anyhow::ensure!(
        ready.1 == "Scheduled" && ready.2.contains("customers scored"),
        "{ready:?}"
    );
    let file = run.output_url.clone().unwrap_or_default();
    anyhow::ensure!(
        file.starts_with("file:///var/lib/leitwerk/artifacts/clv/shop-clv-")
            && file.ends_with(".csv"),
        "{file}"
    );
    let text = std::fs::read_to_string(
        file.trim_start_matches("file://")
            .replace("/var/lib/leitwerk/artifacts", &artifacts.to_string_lossy()),
    )?;
    assert!(
        text.starts_with("customer_id,"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert_eq!(
        Some(text.lines().count() as i64 - 1),
        run.rows,
        "one line per customer"
    );
    let phase = models.get("shop-clv").await?.status.and_then(|s| s.phase);
    assert_eq!(phase, Some(ModelPhase::Scheduled));
    cluster.kubectl(
        &[
            "-n",
            &ns.name,
            "delete",
            "model",
            "shop-clv",
            "--wait=false",
        ],
        None,
    )?;

    // Bring your own ONNX: the same file, declared by URL and digest, is served without training.
    let digest = serving.artifact_digest.clone().unwrap_or_default();
    let byo = format!(
        "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {{name: byo}}\nspec:\n  task: BinaryClassification\n  onnx: {{url: \"{url}\", sha256: \"{}\"}}\n  serving: {{replicas: 1}}\n",
        digest.trim_start_matches("sha256:")
    );
    cluster.apply(Some(&ns.name), "-", Some(&byo))?;
    wait_for(
        "the bring-your-own Model to serve",
        Duration::from_secs(90),
        || async {
            let m = models.get("byo").await?;
            let s = m.status.unwrap_or_default();
            Ok((
                (s.phase == Some(ModelPhase::Serving)).then_some(()),
                format!("{:?} {:?}", s.phase, s.conditions),
            ))
        },
    )
    .await?;
    let byo_port = wait_for(
        "the bring-your-own serving pod",
        Duration::from_secs(30),
        || async {
            let ports = node.all_ports();
            let found = ports
                .iter()
                .find(|(k, _)| k.contains("/byo-serving"))
                .map(|(_, p)| p.0);
            Ok((found, format!("{ports:?}")))
        },
    )
    .await?;
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{byo_port}/v2/models/byo/infer"))
        .json(&serde_json::json!({"inputs": inputs}))
        .send()
        .await?
        .json()
        .await?;
    let byo_scores: Vec<f64> = response["outputs"][0]["data"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(
        byo_scores, served,
        "the same ONNX file gives the same scores"
    );

    // Feedback is taken only with the Model's own token, from the Secret the operator made.
    feedback_needs_the_models_own_token(&client, &ns.name, serving_ports.0, &inputs).await?;

    // A Model that asks for more GPUs than any node has stays Pending and says why.
    let greedy = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/lead-scoring/model.yaml"),
    )?
    .replace("name: lead-scoring", "name: greedy")
    .replace("gpu: {count: 1}", "gpu: {count: 4}");
    cluster.apply(Some(&ns.name), "-", Some(&greedy))?;
    wait_for(
        "the greedy Model to report its unschedulable Job",
        Duration::from_secs(90),
        || async {
            let m = models.get("greedy").await?;
            let s = m.status.unwrap_or_default();
            let training = s.conditions.iter().find(|c| c.type_ == "Training").cloned();
            let ok = s.phase == Some(ModelPhase::Pending)
                && training.as_ref().is_some_and(|c| {
                    c.reason == "Unschedulable" && c.message.contains("nvidia.com/gpu")
                });
            Ok((ok.then_some(()), format!("{:?} {training:?}", s.phase)))
        },
    )
    .await?;

    // Progress: a forest of many trees reports as it grows. Its pod's log reaches the operator
    // (and `kubectl logs`) through the API server and the node's log endpoint; the operator
    // shows the newest report in status.progress and the PROGRESS column, and clears it after.
    let forest = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/lead-scoring/model.yaml"),
    )?
    .replace("name: lead-scoring", "name: forest")
    .replace(
        "logisticRegression: {l2: 0.5, maxIterations: 300}",
        "randomForest: {trees: 40, maxDepth: 12, seed: 1}",
    )
    .replace("minMetrics: {auc: 0.75}", "minMetrics: {auc: 0.5}")
    .replace("replicas: 2", "replicas: 1");
    cluster.apply(Some(&ns.name), "-", Some(&forest))?;
    let first = wait_for(
        "the forest's progress in trees",
        Duration::from_secs(180),
        || async {
            let s = models.get("forest").await?.status.unwrap_or_default();
            let p = s.progress.clone();
            let growing = p
                .clone()
                .filter(|p| p.unit == "trees" && p.done < p.total.unwrap_or(0));
            Ok((growing, format!("{:?} {p:?} {:?}", s.phase, s.conditions)))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;
    assert_eq!(first.total, Some(40), "{first:?}");
    assert!(first.job.starts_with("forest-"), "{first:?}");
    assert!(
        first
            .summary
            .starts_with(&format!("fitting {}/40 trees (", first.done)),
        "{first:?}"
    );
    let table = cluster.kubectl(&["get", "models", "-n", &ns.name], None)?;
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .contains("PROGRESS")
            && table
                .lines()
                .any(|l| l.starts_with("forest") && l.contains("trees")),
        "{table}"
    );
    // A newer report, or none once the Job finished (the trainer grows 40 trees in a few
    // seconds, so the last report can go between two looks).
    wait_for("the progress to move", Duration::from_secs(120), || async {
        let s = models.get("forest").await?.status.unwrap_or_default();
        let moved = match s.progress.as_ref() {
            Some(p) => (p.stage.as_str(), p.done) != (first.stage.as_str(), first.done),
            None => true,
        };
        Ok((moved.then_some(()), format!("{:?}", s.progress)))
    })
    .await?;
    // The training Job's pod (the serving pod carries the Model's label too, and may be up
    // already).
    let forest_pods = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={}", first.job)))
        .await?;
    let forest_pod = forest_pods
        .items
        .first()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .unwrap_or_default();
    let logs = cluster.kubectl(&["logs", "-n", &ns.name, &forest_pod], None)?;
    let logs = String::from_utf8_lossy(&logs.stdout).to_string();
    let reported = leitwerk_crds::progress::Report::last_in(&logs);
    assert!(
        reported.is_some() && logs.contains(r#""stage":"loading snapshot""#),
        "kubectl logs {forest_pod}: {logs}"
    );
    let done = wait_for("the forest to train", Duration::from_secs(300), || async {
        let s = models.get("forest").await?.status.unwrap_or_default();
        let trained = s.versions.iter().any(|v| v.version == "v1");
        Ok((
            (trained && s.training_job.is_none()).then_some(s.clone()),
            format!("{:?} {:?}", s.phase, s.progress),
        ))
    })
    .await?;
    assert_eq!(done.progress, None, "no Job runs, so no progress shows");

    // Object storage: the same data in an S3-compatible server (versitygw, `tests/s3.sh`), the
    // credentials in a Secret the materialization Job takes as environment (the node stand-in
    // resolves `envFrom` like a kubelet). The snapshot it publishes equals the one from files;
    // a wrong secret key fails with a condition that names the Secret.
    let s3 = leitwerk_testkit::s3::S3Server::start(&dir.join("s3"))?;
    for file in ["leads.csv", "events.csv"] {
        s3.put("raw", file, &std::fs::read(data.join(file))?)?;
    }
    cluster.apply(
        Some(&ns.name),
        "-",
        Some(&s3.credentials_secret("s3-credentials", &s3.secret_key)),
    )?;
    cluster.apply(
        Some(&ns.name),
        "-",
        Some(&s3.credentials_secret("s3-wrong", "not-the-secret-key")),
    )?;
    let from_files = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/lead-scoring/featureset.yaml"),
    )?;
    let from_s3 = |name: &str, secret: &str| {
        from_files
            .replace("name: lead-features", &format!("name: {name}"))
            .replace(
                "file: {path: /data/leads/leads.csv, claimName: leitwerk-data}",
                &format!("objectStore: {{url: \"s3://raw/leads.csv\", credentialsSecretRef: {{name: {secret}}}}}"),
            )
            .replace(
                "file: {path: /data/leads/events.csv, claimName: leitwerk-data}",
                &format!("objectStore: {{url: \"s3://raw/events.csv\", credentialsSecretRef: {{name: {secret}}}}}"),
            )
    };
    let s3_yaml = from_s3("s3-features", "s3-credentials");
    anyhow::ensure!(s3_yaml.contains("s3://raw/events.csv"), "{s3_yaml}");
    cluster.apply(Some(&ns.name), "-", Some(&s3_yaml))?;
    cluster.apply(
        Some(&ns.name),
        "-",
        Some(&from_s3("s3-wrong-key", "s3-wrong")),
    )?;
    let published = wait_for(
        "the S3 FeatureSet to publish",
        Duration::from_secs(180),
        || async {
            let st = feature_sets
                .get("s3-features")
                .await?
                .status
                .unwrap_or_default();
            Ok((
                st.current_version.clone().map(|v| (v, st.rows)),
                format!("{:?} {:?}", st.phase, st.conditions),
            ))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;
    assert_eq!(
        (Some(published.0), published.1),
        (fs.current_version.clone(), fs.rows),
        "the same rows give the same digest-named snapshot"
    );
    let refused = wait_for(
        "the wrong key reported",
        Duration::from_secs(180),
        || async {
            let st = feature_sets
                .get("s3-wrong-key")
                .await?
                .status
                .unwrap_or_default();
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready").cloned();
            Ok((
                ready
                    .clone()
                    .filter(|c| c.reason == "MaterializationFailed"),
                format!("{ready:?}"),
            ))
        },
    )
    .await?;
    assert!(
        refused.message.contains(r#"Secret "s3-wrong""#)
            && refused.message.contains("source leads"),
        "{}",
        refused.message
    );

    // The artifact store on S3 too: an operator whose config names `s3://artifacts` and the
    // Secret with its credentials (`artifactStoreSecret`, passed to every Job and serving pod).
    // The snapshot, the model and its card land in the bucket, and the serving pod loads the
    // model from there and answers with the trainer's scores.
    let ns3 = TestNamespace::create(&cluster, "s3store").await?;
    cluster.apply(
        Some(&ns3.name),
        "-",
        Some(&s3.credentials_secret("s3-credentials", &s3.secret_key)),
    )?;
    let config3 = dir.join("operator-s3.yaml");
    std::fs::write(
        &config3,
        format!(
            "trainerImage: {TRAINER_IMAGE}\ninferenceServerImage: {SERVER_IMAGE}\nartifactStore: s3://artifacts\nartifactStoreSecret: s3-credentials\n"
        ),
    )?;
    std::fs::create_dir_all(s3.root.join("artifacts"))?;
    let operator3 = OperatorProcess::start(
        &cluster,
        OPERATOR,
        &ns3.name,
        &["--config", &config3.to_string_lossy()],
    )
    .await?;
    cluster.apply(
        Some(&ns3.name),
        "-",
        Some(&from_s3("lead-features", "s3-credentials")),
    )?;
    let model_yaml = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/lead-scoring/model.yaml"),
    )?
    .replace("replicas: 2", "replicas: 1");
    cluster.apply(Some(&ns3.name), "-", Some(&model_yaml))?;
    let models3: Api<Model> = Api::namespaced(client.clone(), &ns3.name);
    let on_s3 = wait_for(
        "the Model trained and served from S3",
        Duration::from_secs(300),
        || async {
            let m = models3.get("lead-scoring").await?;
            let st = m.status.clone().unwrap_or_default();
            Ok((
                (st.phase == Some(ModelPhase::Serving)).then_some(st.clone()),
                format!("{:?} {:?}", st.phase, st.conditions),
            ))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator3.log_text()))?;
    let version = on_s3.versions.serving().cloned().unwrap_or_default();
    let model_url = version.artifact_url.clone().unwrap_or_default();
    assert!(
        model_url.starts_with("s3://artifacts/models/"),
        "{model_url}"
    );
    let card_file = s3
        .root
        .join(model_url.trim_start_matches("s3://"))
        .with_file_name("card.json");
    let card3: serde_json::Value = serde_json::from_slice(&std::fs::read(&card_file)?)?;
    let port3 = wait_for(
        "the S3-backed serving pod",
        Duration::from_secs(60),
        || async {
            let ports = node.all_ports();
            let found = ports
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{}/lead-scoring-serving", ns3.name)))
                .map(|(_, p)| p.0);
            Ok((found, format!("{ports:?}")))
        },
    )
    .await?;
    let (inputs3, expected3) = card_examples(&card3);
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port3}/v2/models/lead-scoring/infer"
        ))
        .json(&serde_json::json!({"inputs": inputs3}))
        .send()
        .await?
        .json()
        .await?;
    let scores3: Vec<f64> = response["outputs"][0]["data"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(scores3.len(), expected3.len(), "{response}");
    for (s, e) in scores3.iter().zip(&expected3) {
        assert!((s - e).abs() <= 1e-5, "served from S3 {s} vs trainer {e}");
    }
    drop(operator3);
    drop(s3);
    drop(node);
    Ok(())
}

/// The operator made a feedback Secret per Model (a random token, owned by the Model) and the
/// serving pod takes outcomes only with that token: none, or another Model's, is refused with
/// 401; a replay with 409; each refusal is counted by its reason.
async fn feedback_needs_the_models_own_token(
    client: &kube::Client,
    ns: &str,
    port: u16,
    inputs: &[serde_json::Value],
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let token = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get(name).await?;
            let owner = secret.metadata.owner_references.unwrap_or_default();
            anyhow::ensure!(
                owner
                    .iter()
                    .any(|o| o.kind == "Model" && o.controller == Some(true)),
                "{name} is not owned by its Model: {owner:?}"
            );
            let value = secret.data.unwrap_or_default().remove("token").map(|t| t.0);
            let value = String::from_utf8(value.unwrap_or_default())?;
            anyhow::ensure!(
                value.len() == 64,
                "{name}: a 256-bit token, got {} chars",
                value.len()
            );
            Ok(value)
        }
    };
    let own = token("lead-scoring-feedback").await?;
    let other = token("byo-feedback").await?;
    anyhow::ensure!(own != other, "each Model has its own token");
    let http = reqwest::Client::new();
    let reply: serde_json::Value = http
        .post(format!(
            "http://127.0.0.1:{port}/v2/models/lead-scoring/infer"
        ))
        .json(&serde_json::json!({ "inputs": inputs }))
        .send()
        .await?
        .json()
        .await?;
    let id = reply["parameters"]["prediction_ids"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let send = |token: Option<String>| {
        let mut r = http
            .post(format!("http://127.0.0.1:{port}/v2/feedback"))
            .json(&serde_json::json!({"prediction_id": id, "converted": true}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { Ok::<u16, anyhow::Error>(r.send().await?.status().as_u16()) }
    };
    assert_eq!(send(None).await?, 401, "no token");
    assert_eq!(send(Some(other)).await?, 401, "another Model's token");
    assert_eq!(send(Some(own.clone())).await?, 200, "the Model's own token");
    assert_eq!(send(Some(own)).await?, 409, "a replay");
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for (reason, n) in [("unauthenticated", 2), ("replayed", 1)] {
        assert!(
            metrics.lines().any(|l| {
                l.starts_with("leitwerk_inference_feedback_refused_total{")
                    && l.contains(&format!(r#"reason="{reason}""#))
                    && l.ends_with(&format!(" {n}"))
            }),
            "{reason} refusals counted: {metrics}"
        );
    }
    Ok(())
}
