//! Pure builders of the workloads the operator delegates to: trainer Jobs (and CronJobs), the
//! serving Deployment and its Service, and the reading of what finished Jobs report.
//!
//! Every pod runs with the restricted Pod Security profile, a read-only root file system, a
//! scratch `emptyDir` at `/tmp`, and no API token.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use leitwerk_crds::command::ServerArgs;
use leitwerk_crds::common::{Scheduling, WorkloadResources};

/// Label on every object the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "leitwerk");
/// REST port of the inference server.
pub const HTTP_PORT: i32 = 8080;
/// gRPC port of the inference server.
pub const GRPC_PORT: i32 = 8081;

/// A Kubernetes name of at most 63 characters: `base-suffix`, shortening `base` (with a
/// stable hash) when needed.
pub fn child_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}-{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = base.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let keep = 63 - suffix.len() - 10;
    format!(
        "{}-{:08x}-{suffix}",
        base[..keep].trim_end_matches('-'),
        hash as u32
    )
}

/// The restricted security context of every container.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65_532),
        fs_group: Some(65_532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests and limits from a spec; GPUs go to limits (and requests) under their resource name.
pub fn resources(spec: Option<&WorkloadResources>) -> Option<ResourceRequirements> {
    let spec = spec?;
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = &spec.cpu {
        amounts.insert("cpu".to_string(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &spec.memory {
        amounts.insert("memory".to_string(), Quantity(memory.clone()));
    }
    if let Some(gpu) = &spec.gpu {
        amounts.insert(gpu.resource_name.clone(), Quantity(gpu.count.to_string()));
    }
    if amounts.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..Default::default()
    })
}

/// A volume plus where it is mounted.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// The volume.
    pub volume: Volume,
    /// Its mount.
    pub mount: VolumeMount,
}

/// A PersistentVolumeClaim mounted at `path`.
pub fn claim_mount(volume: &str, claim: &str, path: &str, read_only: bool) -> Mount {
    Mount {
        volume: Volume {
            name: volume.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        },
        mount: VolumeMount {
            name: volume.into(),
            mount_path: path.into(),
            read_only: Some(read_only),
            ..Default::default()
        },
    }
}

/// The artifact store's mount: a `file://` store lives on `claim`, mounted at its path;
/// object stores need no volume.
pub fn store_mount(store_url: &str, claim: &str, read_only: bool) -> Option<Mount> {
    let path = store_url.strip_prefix("file://")?;
    Some(claim_mount(
        "artifacts",
        claim,
        path.trim_end_matches('/'),
        read_only,
    ))
}

/// What a pod of a workload needs besides its container arguments.
#[derive(Debug, Clone, Default)]
pub struct PodParts {
    /// Labels of the pod (and its owner object).
    pub labels: BTreeMap<String, String>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Environment.
    pub env: Vec<EnvVar>,
    /// Requests and limits.
    pub resources: Option<ResourceRequirements>,
    /// nodeSelector, tolerations, service account.
    pub scheduling: Option<Scheduling>,
    /// Service account when scheduling names none.
    pub service_account: String,
    /// Secrets whose keys become environment variables (object-store credentials).
    pub secret_env: Vec<String>,
}

fn pod_spec(container: Container, parts: &PodParts, restart: &str) -> PodSpec {
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    for m in &parts.mounts {
        if !volumes.iter().any(|v| v.name == m.volume.name) {
            volumes.push(m.volume.clone());
        }
        mounts.push(m.mount.clone());
    }
    let scheduling = parts.scheduling.clone().unwrap_or_default();
    PodSpec {
        containers: vec![Container {
            volume_mounts: Some(mounts),
            env: (!parts.env.is_empty()).then(|| parts.env.clone()),
            env_from: (!parts.secret_env.is_empty()).then(|| {
                parts
                    .secret_env
                    .iter()
                    .map(|name| EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: name.clone(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    })
                    .collect()
            }),
            resources: parts.resources.clone(),
            security_context: Some(restricted_container()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..container
        }],
        volumes: Some(volumes),
        restart_policy: Some(restart.into()),
        security_context: Some(restricted_pod()),
        service_account_name: Some(
            scheduling
                .service_account_name
                .clone()
                .unwrap_or_else(|| parts.service_account.clone()),
        ),
        automount_service_account_token: Some(false),
        node_selector: (!scheduling.node_selector.is_empty())
            .then(|| scheduling.node_selector.clone()),
        tolerations: (!scheduling.tolerations.is_empty()).then(|| scheduling.tolerations.clone()),
        ..Default::default()
    }
}

/// A trainer Job.
#[allow(clippy::too_many_arguments)]
pub fn trainer_job(
    name: &str,
    namespace: &str,
    owner: OwnerReference,
    image: &str,
    args: Vec<String>,
    parts: &PodParts,
    backoff_limit: Option<i32>,
    active_deadline_seconds: Option<i64>,
) -> Job {
    let container = Container {
        name: "trainer".into(),
        image: Some(image.into()),
        args: Some(args),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(parts.labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(backoff_limit.unwrap_or(2)),
            active_deadline_seconds,
            ttl_seconds_after_finished: Some(7 * 86_400),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parts.labels.clone()),
                    ..Default::default()
                }),
                spec: Some(pod_spec(container, parts, "Never")),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The one rule for whether a serving Deployment is up (Model, Experiment variant, RagIndex):
/// its available replicas, counted only once the Deployment as the API server has it
/// (`current`) has rolled out the pod template asked for (`wanted`: same image and
/// arguments, the controller has seen the generation, every replica updated). Until then the
/// available pods serve an older version and prove nothing about this one.
pub fn available_replicas(current: Option<&Deployment>, wanted: &Deployment) -> i32 {
    let container = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .map(|c| (c.image.clone(), c.args.clone()))
    };
    let Some(current) = current else {
        return 0;
    };
    let status = current.status.clone().unwrap_or_default();
    let rolled_out = container(current) == container(wanted)
        && status.observed_generation >= current.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= 1
        && status.replicas.unwrap_or(0) == status.updated_replicas.unwrap_or(0);
    if rolled_out {
        status.available_replicas.unwrap_or(0)
    } else {
        0
    }
}

/// The environment variable that carries a Job's resource spec (`leitwerk-trainer --spec`).
pub fn spec_env<T: serde::Serialize>(spec: &T) -> EnvVar {
    EnvVar {
        name: leitwerk_crds::contract::SPEC_ENV.into(),
        value: serde_json::to_string(spec).ok(),
        ..Default::default()
    }
}

/// Seconds a serving pod keeps answering after SIGTERM with its readiness failing
/// (`--drain-seconds`), while Service endpoints and load balancers drop it.
pub const DRAIN_SECONDS: i64 = 10;
/// The serving pod's grace period: the drain, then up to 20 s for in-flight requests (a
/// batch of long retrieval or generation requests) before the kubelet kills it.
pub const TERMINATION_GRACE_SECONDS: i64 = DRAIN_SECONDS + 20;

/// The serving Deployment: `leitwerk-inference-server` with the given `--model` arguments.
pub fn serving_deployment(
    name: &str,
    namespace: &str,
    owner: OwnerReference,
    image: &str,
    replicas: i32,
    args: ServerArgs,
    parts: &PodParts,
) -> Deployment {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(HTTP_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let args = ServerArgs {
        drain_seconds: DRAIN_SECONDS.unsigned_abs(),
        ..args
    };
    let container = Container {
        name: "inference-server".into(),
        image: Some(image.into()),
        args: Some(args.to_args()),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                ..Default::default()
            },
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                ..Default::default()
            },
        ]),
        // Two failed probes (10 s) leave the endpoints within the drain.
        readiness_probe: Some(Probe {
            failure_threshold: Some(2),
            ..probe("/v2/health/ready", 5)
        }),
        liveness_probe: Some(probe("/v2/health/live", 10)),
        ..Default::default()
    };
    let mut spec = pod_spec(container, parts, "Always");
    spec.termination_grace_period_seconds = Some(TERMINATION_GRACE_SECONDS);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(parts.labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(parts.labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parts.labels.clone()),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_string(), "true".to_string()),
                        ("prometheus.io/port".to_string(), HTTP_PORT.to_string()),
                        ("prometheus.io/path".to_string(), "/metrics".to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service in front of the serving pods.
pub fn serving_service(
    name: &str,
    namespace: &str,
    owner: OwnerReference,
    labels: &BTreeMap<String, String>,
) -> Service {
    let port = |n: &str, p: i32| ServicePort {
        name: Some(n.into()),
        port: p,
        target_port: Some(IntOrString::String(n.into())),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels.clone()),
            ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a Job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Still running (or waiting to be scheduled).
    Active,
    /// Finished successfully.
    Succeeded,
    /// Failed for good, with the reason Kubernetes gives.
    Failed(String),
}

/// The state of a Job from its conditions.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return JobState::Succeeded,
            "Failed" => {
                return JobState::Failed(format!(
                    "{}: {}",
                    c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    c.message.clone().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    JobState::Active
}

/// The newest termination message among a Job's pods (the trainer's JSON summary).
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    let mut found: Vec<(String, String)> = pods
        .iter()
        .flat_map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
        })
        .filter_map(|cs| {
            let t = cs.state?.terminated?;
            let at = t.finished_at.map(|f| f.0.to_string()).unwrap_or_default();
            Some((at, t.message?))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, m)| m)
}

/// Why a pod cannot be placed, as the scheduler says (e.g. `0/3 nodes are available:
/// 3 Insufficient nvidia.com/gpu`).
pub fn unschedulable(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|p| {
        let conditions = p.status.as_ref()?.conditions.as_ref()?;
        conditions
            .iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| {
                c.message
                    .clone()
                    .unwrap_or_else(|| "no node fits the pod".into())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_stably_within_63_characters() {
        assert_eq!(child_name("m", "train-3"), "m-train-3");
        let long = "a".repeat(60);
        let a = child_name(&long, "train-12");
        assert!(a.len() <= 63 && a.ends_with("-train-12"), "{a}");
        assert_eq!(a, child_name(&long, "train-12"));
        assert_ne!(
            child_name(&format!("{long}x"), "s"),
            child_name(&format!("{long}y"), "s")
        );
    }

    #[test]
    fn gpu_requests_use_the_extended_resource_name() {
        let r = resources(Some(&WorkloadResources {
            cpu: Some("2".into()),
            memory: None,
            gpu: Some(leitwerk_crds::common::GpuResources {
                count: 1,
                resource_name: "nvidia.com/gpu".into(),
            }),
        }))
        .unwrap();
        let limits = r.limits.unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("1".into()));
        assert_eq!(limits["cpu"], Quantity("2".into()));
        assert!(resources(None).is_none());
    }

    #[test]
    fn a_serving_pod_drains_within_its_grace_period_and_leaves_endpoints_first() {
        let d = serving_deployment(
            "docs-retrieval",
            "ns",
            OwnerReference::default(),
            "server:1",
            1,
            ServerArgs {
                indexes: vec!["docs=file:///x.lwrag".parse().unwrap()],
                ..ServerArgs::default()
            },
            &PodParts::default(),
        );
        let pod = d.spec.unwrap().template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        let at = args.iter().position(|a| a == "--drain-seconds").unwrap();
        let drain: i64 = args[at + 1].parse().unwrap();
        let grace = pod.termination_grace_period_seconds.unwrap();
        // The drain ends before the kubelet's SIGKILL, with time left for in-flight requests.
        assert!(
            drain > 0 && grace >= drain + 10,
            "drain {drain}, grace {grace}"
        );
        // Readiness is probed often enough that a pod that stops being ready leaves the
        // endpoints well within its drain even when the endpoint controller misses the
        // deletion (period × failures ≤ drain).
        let ready = pod.containers[0].readiness_probe.clone().unwrap();
        let window = ready.period_seconds.unwrap() * ready.failure_threshold.unwrap_or(3);
        assert!(
            i64::from(window) <= drain,
            "readiness notices in {window}s, drain {drain}s"
        );
    }

    #[test]
    fn a_serving_deployment_is_up_only_once_it_runs_the_template_asked_for() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let build = |url: &str| {
            serving_deployment(
                "docs-retrieval",
                "ns",
                OwnerReference::default(),
                "server:1",
                1,
                ServerArgs {
                    indexes: vec![format!("docs={url}").parse().unwrap()],
                    ..ServerArgs::default()
                },
                &PodParts::default(),
            )
        };
        let mut current = build("file:///v1.lwrag");
        current.metadata.generation = Some(2);
        current.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(1),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        });
        assert_eq!(available_replicas(None, &build("file:///v1.lwrag")), 0);
        assert_eq!(
            available_replicas(Some(&current), &build("file:///v1.lwrag")),
            1
        );
        // The old version's pod is available, but v2 was asked for: nothing serves v2 yet.
        assert_eq!(
            available_replicas(Some(&current), &build("file:///v2.lwrag")),
            0
        );
        // v2 applied, the rollout under way: a new and an old pod, not all updated.
        let mut rolling = build("file:///v2.lwrag");
        rolling.metadata.generation = Some(3);
        rolling.status = Some(DeploymentStatus {
            observed_generation: Some(3),
            replicas: Some(2),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        });
        assert_eq!(
            available_replicas(Some(&rolling), &build("file:///v2.lwrag")),
            0
        );
        // The controller has not seen the new generation yet.
        rolling.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(1),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        });
        assert_eq!(
            available_replicas(Some(&rolling), &build("file:///v2.lwrag")),
            0
        );
    }

    #[test]
    fn file_stores_are_mounted_from_their_claim_and_object_stores_need_none() {
        let m = store_mount("file:///var/lib/leitwerk/artifacts/", "arts", true).unwrap();
        assert_eq!(m.mount.mount_path, "/var/lib/leitwerk/artifacts");
        assert_eq!(m.volume.persistent_volume_claim.unwrap().claim_name, "arts");
        assert!(store_mount("s3://bucket/x", "arts", true).is_none());
    }
}
