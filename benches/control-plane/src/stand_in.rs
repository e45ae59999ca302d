//! Stand-ins of the control-plane benchmarks for what runs beside the API server in a real
//! cluster (the Deployment and Job controllers, a kubelet), and control of the API server
//! itself. Each says what it stands for; none replaces what a benchmark measures.

use std::time::Duration;

use std::fmt::Debug;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use leitwerk_crds::summary::{self, MaterializeSummary};
use leitwerk_testkit::{Cluster, wait_for};

/// The objects a watch of `api` applies, for as long as the API server lets it watch: an error
/// (a 410 Gone when the watch cache is younger than the list, an API server restarting) is
/// printed and the watch resumes with backoff, relisting where it must.
pub fn applied<K>(api: Api<K>) -> BoxStream<'static, K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|event| async move {
            match event {
                Ok(object) => Some(object),
                Err(error) => {
                    eprintln!("{} watch: {error}; resuming", K::kind(&()));
                    None
                }
            }
        })
        .boxed()
}

/// What the Deployment controller and a kubelet would report for a healthy Deployment: every
/// replica updated, ready and available, for the generation asked for. Runs until dropped.
pub async fn stand_in_available(client: Client, ns: String) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client, &ns);
    let mut events = applied(api.clone());
    while let Some(d) = events.next().await {
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let status = d.status.clone().unwrap_or_default();
        if status.available_replicas == Some(wanted)
            && status.observed_generation == Some(generation)
        {
            continue;
        }
        let patch = serde_json::json!({"status": {
            "observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted,
            "readyReplicas": wanted, "availableReplicas": wanted
        }});
        api.patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

/// What the Job controller and a kubelet would leave behind for a materialization Job that ran:
/// its pod, terminated with the summary `leitwerk-trainer materialize` writes as its
/// termination message (a published snapshot), and the Job `Complete`. The bench measures the
/// operator; the materialization itself is measured by `benches/benches/trainer.rs`.
pub async fn stand_in_jobs(client: Client, ns: String) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut events = applied(jobs.clone());
    while let Some(job) = events.next().await {
        if job
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .is_some()
        {
            continue;
        }
        let name = job.name_any();
        let Some(template) = job.spec.as_ref().map(|s| s.template.clone()) else {
            continue;
        };
        let mut pod_spec = template.spec.unwrap_or_default();
        pod_spec.restart_policy = Some("Never".into());
        let containers = pod_spec.containers.clone();
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{name}-done")),
                // The Job controller's labels: the template's, and the Job's name and uid.
                labels: Some({
                    let mut labels = template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.clone())
                        .unwrap_or_default();
                    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
                    labels.insert(
                        "batch.kubernetes.io/controller-uid".into(),
                        job.metadata.uid.clone().unwrap_or_default(),
                    );
                    labels
                }),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: name.clone(),
                    uid: job.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..Default::default()
            },
            spec: Some(pod_spec),
            status: None,
        };
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let digest = format!("{:0>64}", format!("{:x}", name.len() * 7919));
        let summary = MaterializeSummary {
            published: true,
            version: Some(digest[..12].to_string()),
            digest: Some(format!("sha256:{digest}")),
            location: Some(format!("file:///artifacts/{ns}/{name}")),
            rows: 1000,
            data_until: Some("2026-01-01T00:00:00Z".into()),
            quality: Vec::new(),
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let statuses: Vec<serde_json::Value> = containers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                        "message": summary::encode_materialize(&summary),
                        "startedAt": now, "finishedAt": now}}
                })
            })
            .collect();
        pods.patch_status(
            &format!("{name}-done"),
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": {
                "phase": "Succeeded", "containerStatuses": statuses, "startTime": now
            }})),
        )
        .await?;
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": {
                "startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now}
                ]
            }})),
        )
        .await?;
    }
    Ok(())
}

/// Kills kube-apiserver (SIGKILL, as a crashed or evicted server) and starts it again with the
/// command line it ran with: every watch breaks, and resumes
/// from a resourceVersion older than the new server's watch cache (410 Gone, a relist).
pub async fn restart_apiserver(cluster: &Cluster) -> anyhow::Result<()> {
    let pids_path = cluster.dir.join("pids");
    let pids = std::fs::read_to_string(&pids_path)?;
    let pid: u32 = pids
        .lines()
        .find_map(|l| l.strip_prefix("kube-apiserver "))
        .ok_or_else(|| anyhow::anyhow!("no kube-apiserver in {}", pids_path.display()))?
        .trim()
        .parse()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let (program, args) = words
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command line of kube-apiserver"))?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    for _ in 0..300 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.dir.join("logs/kube-apiserver.log"))?;
    let child = std::process::Command::new(program)
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let new = pids.replace(
        &format!("kube-apiserver {pid}"),
        &format!("kube-apiserver {}", child.id()),
    );
    std::fs::write(&pids_path, new)?;
    wait_for(
        "the API server to be back",
        Duration::from_secs(120),
        || async {
            let out = cluster.kubectl(&["get", "--raw", "/readyz"], None)?;
            Ok((out.status.success().then_some(()), "not ready".into()))
        },
    )
    .await
}

/// Sockets the process holds open (its API connections, and its metrics listener).
pub fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}
