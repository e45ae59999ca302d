//! Pod Security "restricted" on the real API server: every pod template the operator builds,
//! for every kind (materialization Job and CronJob, training Job, serving Deployments of
//! Models, Experiment variants and RagIndexes, index build and clean-up Jobs, content draft
//! Jobs with and without the generator sidecar, publish Jobs), is created as a Pod (server-side dry run,
//! so admission runs in full and nothing is stored) in a namespace that enforces `restricted`.
//! A template with its security context taken away is refused there, so the namespace does
//! enforce and the test fails when a template breaks the profile.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource};
use leitwerk_crds::{ContentPipeline, Experiment, FeatureSet, Model, RagIndex};
use leitwerk_operator::config::OperatorConfig;
use leitwerk_operator::controllers::{content_pipeline, experiment, feature_set, model, rag_index};
use leitwerk_testkit::{Cluster, TestNamespace, repo_root};
use serde_json::json;

/// The object of kind `K` in `examples/<file>`, placed in `ns` as if stored (a UID to own
/// children).
fn example<K: Resource + serde::de::DeserializeOwned>(file: &str, ns: &str) -> anyhow::Result<K>
where
    K::DynamicType: Default,
{
    let text = std::fs::read_to_string(repo_root().join("examples").join(file))?;
    let kind = K::kind(&K::DynamicType::default()).to_string();
    for doc in text.split("\n---") {
        let value: serde_json::Value = yaml_serde::from_str(doc)?;
        if value["kind"] == kind.as_str() {
            let mut object: K = serde_json::from_value(value)?;
            object.meta_mut().namespace = Some(ns.into());
            object.meta_mut().uid = Some(format!("uid-{file}"));
            return Ok(object);
        }
    }
    anyhow::bail!("no {kind} in examples/{file}")
}

fn template_of<T: serde::Serialize>(
    what: &str,
    object: &T,
    path: &[&str],
) -> (String, PodTemplateSpec) {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    for key in path {
        value = value[*key].take();
    }
    (
        what.to_string(),
        serde_json::from_value(value).unwrap_or_default(),
    )
}

/// Every pod template the operator builds from the examples, named by what it runs.
fn templates(ns: &str) -> anyhow::Result<Vec<(String, PodTemplateSpec)>> {
    let config = OperatorConfig::default();
    let job = ["spec", "template"];
    let fs: FeatureSet = example("lead-scoring/featureset.yaml", ns)?;
    let lead: Model = example("lead-scoring/model.yaml", ns)?;
    let version: leitwerk_crds::model::ModelVersion = serde_json::from_value(json!({
        "version": "v1",
        "state": "Serving",
        "artifactUrl": "file:///var/lib/leitwerk/artifacts/models/lead-scoring/v1/model.onnx",
        "artifactDigest": format!("sha256:{}", "0".repeat(64)),
    }))?;
    let exp: Experiment = example("canary-rollout/experiment.yaml", ns)?;
    let status: leitwerk_crds::experiment::ExperimentStatus = serde_json::from_value(json!({
        "variants": exp.spec.variants.iter().map(|v| json!({
            "name": v.name, "model": "lead-scoring", "version": "v1",
            "artifactUrl": "file:///var/lib/leitwerk/artifacts/models/lead-scoring/v1/model.onnx",
        })).collect::<Vec<_>>(),
        "weights": exp.spec.variants.iter().map(|v| (v.name.clone(), 50)).collect::<BTreeMap<_, _>>(),
    }))?;
    let index: RagIndex = example("product-docs-rag/ragindex.yaml", ns)?;
    let index_version: leitwerk_crds::rag_index::IndexVersion = serde_json::from_value(json!({
        "version": "v1", "state": "Serving", "digest": "sha256:0", "build": 1, "documents": 3, "chunks": 9,
        "url": "file:///var/lib/leitwerk/artifacts/rag/product-docs/v1.lwrag",
    }))?;
    let pipeline: ContentPipeline = example("seo-article/contentpipeline.yaml", ns)?;
    let empty = BTreeMap::new();
    let run = content_pipeline::RunJob {
        run: "r1",
        attempt: 1,
        index_url: "file:///var/lib/leitwerk/artifacts/rag/product-docs/v1.lwrag",
        link_map: &empty,
        templates: &empty,
        budget: (20_000, Some(1.0)),
    };
    let mut out = vec![
        template_of(
            "materialization Job",
            &feature_set::build_job(&fs, &config, "fs-1"),
            &job,
        ),
        template_of(
            "materialization CronJob",
            &feature_set::build_cron_job(&fs, &config, "0 * * * *"),
            &["spec", "jobTemplate", "spec", "template"],
        ),
        template_of(
            "training Job",
            &model::build_training_job(&lead, &config, "v2", "snap", "data"),
            &job,
        ),
        template_of(
            "Model serving Deployment",
            &model::build_serving(&lead, &config, &version).0,
            &job,
        ),
        template_of(
            "index build Job",
            &rag_index::build_index_job(
                &index,
                &config,
                &rag_index::BuildInputs {
                    number: 2,
                    sources_digest: "d".into(),
                    previous: None,
                    serving: None,
                    keep: Vec::new(),
                    scheduled_for: None,
                },
            ),
            &job,
        ),
        template_of(
            "index clean-up Job",
            &rag_index::build_delete_job(&index, &config),
            &job,
        ),
        template_of(
            "retrieval serving Deployment",
            &rag_index::build_serving(&index, &config, &index_version).0,
            &job,
        ),
        template_of(
            "content draft Job",
            &content_pipeline::build_content_job(&pipeline, &config, &run),
            &job,
        ),
        template_of(
            "content publish Job",
            &content_pipeline::build_publish_job(
                &pipeline,
                &config,
                "r1",
                "file:///p.json",
                "sha256:0",
            ),
            &job,
        ),
    ];
    // The same pipeline with Leitwerk's own generator, which runs as a sidecar of the run's pod.
    let mut local = serde_json::to_value(&pipeline)?;
    local["spec"]["generators"][0] = json!({
        "name": "local",
        "inferenceServer": {"model": "file:///var/lib/leitwerk/artifacts/models/smollm2.gguf"},
    });
    let local: ContentPipeline = serde_json::from_value(local)?;
    let with_sidecar = template_of(
        "content draft Job with the generator sidecar",
        &content_pipeline::build_content_job(&local, &config, &run),
        &job,
    );
    anyhow::ensure!(
        with_sidecar
            .1
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|c| !c.is_empty()),
        "the local generator runs as a sidecar"
    );
    out.push(with_sidecar);
    let models = vec![Some(lead.clone()); exp.spec.variants.len()];
    for (deployment, _) in experiment::variant_workloads(&exp, &models, &status, &config) {
        out.push(template_of(
            "Experiment variant Deployment",
            &deployment,
            &job,
        ));
    }
    Ok(out)
}

#[tokio::test]
async fn every_pod_template_the_operator_builds_is_admitted_under_pod_security_restricted()
-> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "restricted").await?;
    let out = cluster.kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
        None,
    )?;
    anyhow::ensure!(out.status.success(), "{}", crate::stderr(&out));
    let client = cluster.client().await?;
    let templates = templates(&ns.name)?;
    let kinds: BTreeSet<&str> = templates.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(kinds.len(), 11, "every kind of template is here: {kinds:?}");
    // The pods' ServiceAccounts exist, as the operator makes them before its workloads.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    let names: BTreeSet<String> = templates
        .iter()
        .filter_map(|(_, t)| t.spec.as_ref()?.service_account_name.clone())
        .collect();
    for name in names {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pod = |i: usize, t: &PodTemplateSpec| Pod {
        metadata: ObjectMeta {
            name: Some(format!("template-{i}")),
            labels: t.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: t.spec.clone(),
        ..Pod::default()
    };
    let mut refused = Vec::new();
    for (i, (what, template)) in templates.iter().enumerate() {
        if let Err(e) = pods.create(&dry_run, &pod(i, template)).await {
            refused.push(format!("{what}: {e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "refused under restricted:\n{}",
        refused.join("\n")
    );
    // The control: the training pod without its security context is refused, naming what
    // the profile wants, so the namespace does enforce.
    let (_, training) = templates
        .iter()
        .find(|(w, _)| w == "training Job")
        .cloned()
        .unwrap_or_default();
    let mut bare = training.clone();
    if let Some(spec) = bare.spec.as_mut() {
        spec.security_context = None;
        for c in &mut spec.containers {
            c.security_context = None;
        }
    }
    let error = pods
        .create(&dry_run, &pod(99, &bare))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("violates PodSecurity \"restricted:latest\""),
        "a bare pod is refused: {error:?}"
    );
    Ok(())
}

/// What the probe container reports in its termination message: its user and groups, and
/// whether it could write outside its volumes (`/var/tmp`, open to all users on the host),
/// inside its `/tmp` emptyDir, and read root's home.
const PROBE: &str = r#"m="uid=$(id -u) groups=$(id -G | tr ' ' ,)"
if e=$(touch "/var/tmp/leitwerk-probe-$1" 2>&1); then m="$m var-tmp=written"; else m="$m var-tmp=${e##*: }"; fi
if e=$(touch /tmp/probe 2>&1); then m="$m tmp=written"; else m="$m tmp=${e##*: }"; fi
if ls /root >/dev/null 2>&1; then m="$m root-home=read"; else m="$m root-home=refused"; fi
printf '%s' "$m" >/dev/termination-log"#;

/// The node stand-in runs a container as the user, groups and root file system its security
/// context names, as a runtime would: the training pod's template (the operator's restricted
/// context), with a shell as its image, runs as user 65532 with group 65532, cannot write
/// outside its volumes or read root's home, and writes to its emptyDir. The same pod with a
/// writable root writes where the read-only one could not, and one that must not run as root
/// but names no user is refused as a kubelet refuses it.
#[tokio::test]
async fn the_node_stand_in_runs_each_container_as_its_user_with_a_read_only_root()
-> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use leitwerk_testkit::node::{Image, NodeStandIn};
    use std::time::Duration;

    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "standin-user").await?;
    let out = cluster.kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    )?;
    anyhow::ensure!(out.status.success(), "{}", crate::stderr(&out));
    let client = cluster.client().await?;
    // The node exists, tainted, before the stand-in takes it: the shared control plane's
    // scheduler must not send other tests' pods here; these pods name it themselves.
    let node_name = format!("{}-node", ns.name);
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": node_name},
                "spec": {"taints": [{"key": "leitwerk.dev/test-only", "effect": "NoSchedule"}]},
            }))?,
        )
        .await?;
    let dir = std::env::temp_dir().join(format!("leitwerk-{}", ns.name));
    let shell = "localhost/probe-shell:1";
    let images = std::collections::HashMap::from([(
        shell.to_string(),
        Image {
            binary: "/bin/sh".into(),
            env: Vec::new(),
        },
    )]);
    let node = NodeStandIn::start(client.clone(), &node_name, 0, &dir, images).await?;

    let (_, training) = templates(&ns.name)?
        .into_iter()
        .find(|(w, _)| w == "training Job")
        .ok_or(anyhow::anyhow!("no training template"))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    if let Some(account) = training
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
    {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}}))?;
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let probe = |name: &str, change: &dyn Fn(&mut k8s_openapi::api::core::v1::PodSpec)| {
        let mut spec = training.spec.clone().unwrap_or_default();
        spec.node_name = Some(node_name.clone());
        spec.restart_policy = Some("Never".into());
        // Only the emptyDirs: the data and artifact claims have no volume here.
        let empty: BTreeSet<String> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.empty_dir.is_some())
            .map(|v| v.name.clone())
            .collect();
        spec.volumes = Some(
            spec.volumes
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| empty.contains(&v.name))
                .collect(),
        );
        for c in &mut spec.containers {
            c.image = Some(shell.into());
            c.command = Some(vec!["/bin/sh".into(), "-c".into(), PROBE.into()]);
            c.args = Some(vec!["probe".into(), name.to_string()]);
            c.env = None;
            c.env_from = None;
            c.termination_message_path = Some("/dev/termination-log".into());
            if let Some(mounts) = c.volume_mounts.as_mut() {
                mounts.retain(|m| empty.contains(&m.name));
            }
        }
        change(&mut spec);
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            ..Pod::default()
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let finished = |name: &'static str| {
        let pods = pods.clone();
        async move {
            leitwerk_testkit::wait_for(name, Duration::from_secs(60), || {
                let pods = pods.clone();
                async move {
                    let pod = pods.get(name).await?;
                    let status = pod.status.unwrap_or_default();
                    let phase = status.phase.clone().unwrap_or_default();
                    let message = status
                        .container_statuses
                        .iter()
                        .flatten()
                        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
                        .or(status.message.clone())
                        .unwrap_or_default();
                    let done = phase == "Succeeded" || phase == "Failed";
                    Ok((done.then(|| (phase.clone(), message)), phase))
                }
            })
            .await
        }
    };

    pods.create(&PostParams::default(), &probe("read-only", &|_| {}))
        .await?;
    let (phase, message) = finished("read-only").await?;
    assert_eq!(phase, "Succeeded", "{message}");
    assert!(
        message.starts_with("uid=65532 groups=0,65532 "),
        "{message}"
    );
    assert!(
        message.contains("var-tmp=Read-only file system"),
        "{message}"
    );
    assert!(message.contains("tmp=written"), "{message}");
    assert!(message.contains("root-home=refused"), "{message}");
    assert!(!std::path::Path::new("/var/tmp/leitwerk-probe-read-only").exists());

    // The control: with a writable root the same write lands (the check can fail).
    pods.create(
        &PostParams::default(),
        &probe("writable", &|spec| {
            for c in &mut spec.containers {
                if let Some(ctx) = c.security_context.as_mut() {
                    ctx.read_only_root_filesystem = Some(false);
                }
            }
        }),
    )
    .await?;
    let (phase, message) = finished("writable").await?;
    assert_eq!(phase, "Succeeded", "{message}");
    assert!(message.contains("var-tmp=written"), "{message}");
    let written = std::path::Path::new("/var/tmp/leitwerk-probe-writable");
    let owner = std::fs::metadata(written).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let _ = std::fs::remove_file(written);
    assert_eq!(owner.ok(), Some(65_532), "the file is the pod user's");

    // runAsNonRoot with no user: the image's user is root, so the container never starts.
    pods.create(
        &PostParams::default(),
        &probe("no-user", &|spec| {
            if let Some(ctx) = spec.security_context.as_mut() {
                ctx.run_as_user = None;
            }
        }),
    )
    .await?;
    let (phase, message) = finished("no-user").await?;
    assert_eq!(phase, "Failed", "{message}");
    assert!(
        message.contains("runAsNonRoot and image will run as root"),
        "{message}"
    );

    drop(node);
    nodes.delete(&node_name, &Default::default()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
