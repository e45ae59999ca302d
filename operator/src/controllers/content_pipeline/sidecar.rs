//! Leitwerk's own generator beside a content run: for each generator with
//! `inferenceServer.model`, a sidecar of the run's pod (an init container with
//! `restartPolicy: Always`) runs `leitwerk-inference-server --generator-model` on the pod's
//! loopback at the contract port, with the sidecar's own resources (a GPU when asked, which
//! the scheduler then finds a node for). The kubelet starts the run's stages once the
//! sidecar's startup probe sees the model loaded, and stops the sidecar when they end, so
//! the GPU is held only while the run lasts.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, Probe, Toleration, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use leitwerk_crds::ContentPipeline;
use leitwerk_crds::contract::local_generator_port;

use crate::config::OperatorConfig;
use crate::workloads::{resources, restricted_container, store_mount};

/// Seconds a sidecar may take to load its model before the run fails.
const LOAD_SECONDS: i32 = 600;

/// The sidecars of the pipeline's `inferenceServer.model` generators.
pub fn sidecars(pipeline: &ContentPipeline, config: &OperatorConfig) -> Vec<Container> {
    let store = store_mount(&config.artifact_store, &config.artifact_claim_name, true);
    pipeline
        .spec
        .generators
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let server = g.inference_server.as_ref()?;
            let model = server.model.as_deref()?;
            let port = local_generator_port(i);
            let path = model.strip_prefix("file://").unwrap_or(model);
            // The artifact store is mounted read-only when the model lives in it.
            let mounts: Vec<VolumeMount> = store
                .iter()
                .filter(|m| path.starts_with(&m.mount.mount_path))
                .map(|m| m.mount.clone())
                .collect();
            Some(Container {
                name: format!("generator-{}", g.name),
                image: Some(config.inference_server_image.clone()),
                args: Some(vec![
                    "--generator-model".into(),
                    path.into(),
                    "--http-addr".into(),
                    format!("127.0.0.1:{port}"),
                    "--grpc-addr".into(),
                    format!("127.0.0.1:{}", port + 1),
                ]),
                ports: Some(vec![ContainerPort {
                    name: Some("generator".into()),
                    container_port: i32::from(port),
                    ..ContainerPort::default()
                }]),
                restart_policy: Some("Always".into()),
                startup_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some("/v1/models".into()),
                        port: IntOrString::Int(i32::from(port)),
                        ..HTTPGetAction::default()
                    }),
                    period_seconds: Some(1),
                    failure_threshold: Some(LOAD_SECONDS),
                    ..Probe::default()
                }),
                resources: resources(server.resources.as_ref()),
                security_context: Some(restricted_container()),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Container::default()
            })
        })
        .collect()
}

/// Adds the pipeline's generator sidecars to a content Job, with a toleration of each GPU
/// resource they ask for (GPU nodes are commonly tainted with it).
pub fn add_sidecars(job: &mut Job, pipeline: &ContentPipeline, config: &OperatorConfig) {
    let sidecars = sidecars(pipeline, config);
    if sidecars.is_empty() {
        return;
    }
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    for g in &pipeline.spec.generators {
        let Some(gpu) = g
            .inference_server
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.gpu.as_ref())
        else {
            continue;
        };
        let tolerations = pod.tolerations.get_or_insert_default();
        if !tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(&gpu.resource_name))
        {
            tolerations.push(Toleration {
                key: Some(gpu.resource_name.clone()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            });
        }
    }
    let volumes = pod.volumes.get_or_insert_default();
    if let Some(m) = store_mount(&config.artifact_store, &config.artifact_claim_name, true)
        && !volumes.iter().any(|v| v.name == m.volume.name)
    {
        volumes.push(m.volume);
    }
    pod.init_containers = Some(sidecars);
}
