//! A node stand-in: what a kubelet would do for the pods bound to one Node, with the project's
//! real binaries as the "containers".
//!
//! There is no kubelet or container runtime on the test machines, so this stand-in
//! - registers a Node that advertises CPU, memory and (optionally) `nvidia.com/gpu`, and keeps
//!   its Ready condition fresh;
//! - watches the pods the real kube-scheduler binds to it, and runs each container's image as a
//!   local binary (an image table maps image → binary + the environment the image would bake
//!   in, such as `ORT_DYLIB_PATH`), with the pod's arguments and environment (values from
//!   `envFrom` and `valueFrom` Secrets and ConfigMaps read from the API like a kubelet; a
//!   missing one fails the pod as `CreateContainerConfigError` would);
//! - provides the pod's volumes like a kubelet: each process runs in a private mount namespace
//!   (`unshare --mount`) with PersistentVolumeClaims (through their bound hostPath
//!   PersistentVolume), emptyDirs and ConfigMaps (their keys written as files when the pod
//!   starts; a later change of the ConfigMap is not projected) bind-mounted at their mount
//!   paths, and a termination-log
//!   file bind-mounted at the container's `terminationMessagePath`; empty mount-point
//!   directories are created on the host when missing;
//! - gives serving containers their own ports: containers that declare ports `http` and `grpc`
//!   get `--http-addr` / `--grpc-addr` on free 127.0.0.1 ports (what a pod network would
//!   isolate), reported through [`NodeStandIn::ports`];
//! - projects ServiceAccount tokens like a kubelet (`projected` volumes: a token from the
//!   TokenRequest API bound to the pod, the cluster CA from `kube-root-ca.crt`, the
//!   namespace) and sets `KUBERNETES_SERVICE_HOST`/`_PORT` to the API server's address, which
//!   is where a kube-proxy would route the `kubernetes` Service;
//! - runs sidecars (init containers with `restartPolicy: Always`) before the main container,
//!   starting it once each sidecar's startup probe passes, and stops them when it exits;
//! - reports pod status back: Running, readiness from the readiness probe, and for finished
//!   containers the exit code and termination message (falling back to the log tail on error).
//!
//! A container of a pod whose `restartPolicy` is Always (a Deployment's) is restarted in place
//! after a back-off, its status waiting in `CrashLoopBackOff` meanwhile, as with a kubelet.
//! Each container runs as the user and groups its security context names (`runAsUser`,
//! `runAsGroup`, `fsGroup`, `supplementalGroups`, through `setpriv`), without privilege
//! escalation or capabilities where it drops them, and with every host mount read-only under
//! its volumes when it asks for `readOnlyRootFilesystem`; `runAsNonRoot` without a user is
//! refused as a kubelet refuses it. The image's files (binary, libraries, models) are bound
//! read-only under `/run/leitwerk-node/image` in the container's mount namespace, so any user
//! can read them wherever the tests keep them (see [`crate::node_security`]).
//! It does not apply seccomp profiles, enforce resources or restart failed Job pods (Jobs
//! create new pods, as with a real kubelet and `restartPolicy: Never`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// What an image contains: the binary to run and the environment it bakes in.
#[derive(Debug, Clone)]
pub struct Image {
    /// The binary (the image's entrypoint).
    pub binary: PathBuf,
    /// Environment the image sets.
    pub env: Vec<(String, String)>,
}

/// A running stand-in; stops (and kills its processes) when dropped.
#[derive(Debug)]
pub struct NodeStandIn {
    /// The Node's name.
    pub name: String,
    ports: Arc<Mutex<HashMap<String, (u16, u16)>>>,
    task: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    logs: tokio::task::JoinHandle<()>,
}

impl Drop for NodeStandIn {
    fn drop(&mut self) {
        self.task.abort();
        self.heartbeat.abort();
        self.logs.abort();
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Waits until a sidecar's startup probe (an HTTP GET on the pod's loopback) passes, within
/// its failure threshold; at once when it has none.
async fn started_up(
    container: &k8s_openapi::api::core::v1::Container,
    child: &mut tokio::process::Child,
) -> Result<(), String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let Some(probe) = &container.startup_probe else {
        return Ok(());
    };
    let get = probe
        .http_get
        .as_ref()
        .ok_or("the stand-in runs httpGet startup probes only")?;
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .ok_or(format!("startup probe port {name:?} is not declared"))?,
    };
    let url = format!(
        "http://127.0.0.1:{port}{}",
        get.path.as_deref().unwrap_or("/")
    );
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).clamp(1, 10) as u64);
    let tries = probe.failure_threshold.unwrap_or(3).clamp(1, 600);
    for _ in 0..tries {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}) before its startup probe passed"));
        }
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(period).await;
    }
    Err(format!("startup probe {url} failed {tries} times"))
}

/// Sets a file's or directory's mode (the stand-in runs as root; the pods may not).
fn open_to(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl NodeStandIn {
    /// Registers Node `name` with `gpus` GPUs and starts running the pods bound to it.
    /// `root` holds per-pod files (logs, termination messages, emptyDirs).
    /// Long because it is the registration and the watch loop of a node, in order.
    pub async fn start(
        client: Client,
        name: &str,
        gpus: u32,
        root: &Path,
        images: HashMap<String, Image>,
    ) -> anyhow::Result<NodeStandIn> {
        let nodes: Api<Node> = Api::all(client.clone());
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        if gpus > 0 {
            labels.insert("nvidia.com/gpu.present".into(), "true".into());
        }
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
        let _ = nodes.create(&PostParams::default(), &node).await;
        let log_files = crate::node_logs::LogFiles::default();
        let (log_port, logs) = crate::node_logs::serve(log_files.clone()).await?;
        let status = node_status(gpus, log_port);
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        let heartbeat = {
            let nodes = nodes.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                for _ in 0..100_000 {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let _ = nodes
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(&node_status(gpus, log_port)),
                        )
                        .await;
                }
            })
        };
        let ports = Arc::new(Mutex::new(HashMap::new()));
        let runner = Runner {
            client: client.clone(),
            root: root.to_path_buf(),
            images: Arc::new(images),
            ports: ports.clone(),
            logs: log_files,
        };
        let node_name = name.to_string();
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(runner.client.clone());
            let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
            let mut started: HashMap<String, Running> = HashMap::new();
            let mut stream = watcher::watcher(pods, config).boxed();
            while let Some(event) = stream.next().await {
                let pods = match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                    Ok(watcher::Event::Delete(p)) => {
                        if let Some(r) = started.remove(&p.uid().unwrap_or_default()) {
                            r.task.abort();
                        }
                        continue;
                    }
                    _ => continue,
                };
                for pod in pods {
                    let uid = pod.uid().unwrap_or_default();
                    if pod.metadata.deletion_timestamp.is_some() {
                        // As a kubelet: SIGTERM, up to the grace period for the process to
                        // exit (SIGKILL after it), then the pod object goes.
                        let grace = pod
                            .metadata
                            .deletion_grace_period_seconds
                            .or_else(|| {
                                pod.spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                            })
                            .unwrap_or(30)
                            .clamp(0, 120) as u64;
                        let running = started.remove(&uid);
                        let api: Api<Pod> = Api::namespaced(
                            runner.client.clone(),
                            &pod.namespace().unwrap_or_default(),
                        );
                        let name = pod.name_any();
                        tokio::spawn(async move {
                            if let Some(r) = running {
                                r.terminate.notify_one();
                                let mut task = r.task;
                                let waited =
                                    tokio::time::timeout(Duration::from_secs(grace + 2), &mut task)
                                        .await;
                                if waited.is_err() {
                                    task.abort();
                                }
                            }
                            let _ = api
                                .delete(&name, &DeleteParams::default().grace_period(0))
                                .await;
                        });
                        continue;
                    }
                    let phase = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default();
                    if started.contains_key(&uid) || phase == "Succeeded" || phase == "Failed" {
                        continue;
                    }
                    let r = runner.clone();
                    let terminate = Arc::new(tokio::sync::Notify::new());
                    let signal = terminate.clone();
                    started.insert(
                        uid,
                        Running {
                            task: tokio::spawn(async move { r.run_pod(pod, signal).await }),
                            terminate,
                        },
                    );
                }
            }
        });
        Ok(NodeStandIn {
            name: name.to_string(),
            ports,
            task,
            heartbeat,
            logs,
        })
    }

    /// The (REST, gRPC) ports of a serving pod (`namespace/name`), once it runs.
    pub fn ports(&self, namespace: &str, pod: &str) -> Option<(u16, u16)> {
        self.ports
            .lock()
            .ok()?
            .get(&format!("{namespace}/{pod}"))
            .copied()
    }

    /// Every serving pod with its ports.
    pub fn all_ports(&self) -> Vec<(String, (u16, u16))> {
        self.ports
            .lock()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// The Node's status; `log_port` is where the API server reads container logs (see
/// [`crate::node_logs`]).
fn node_status(gpus: u32, log_port: u16) -> serde_json::Value {
    let mut capacity =
        json!({"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    if gpus > 0 {
        capacity["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [{"type": "Ready", "status": "True", "reason": "StandInReady", "message": "tests/src/node.rs runs this node's pods", "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.34.4-standin", "kubeProxyVersion": "", "bootID": "", "containerRuntimeVersion": "standin://1", "kernelVersion": "", "machineID": "", "osImage": "", "systemUUID": ""}
    }})
}

/// A pod's process as the stand-in tracks it: its task, and how to ask it to stop.
struct Running {
    task: tokio::task::JoinHandle<()>,
    terminate: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
struct Runner {
    client: Client,
    root: PathBuf,
    images: Arc<HashMap<String, Image>>,
    ports: Arc<Mutex<HashMap<String, (u16, u16)>>>,
    logs: crate::node_logs::LogFiles,
}

impl Runner {
    async fn patch_status(&self, pod: &Pod, status: serde_json::Value) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let _ = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await;
    }

    async fn fail(&self, pod: &Pod, message: String) {
        self.patch_status(
            pod,
            json!({"phase": "Failed", "reason": "StandInError", "message": message}),
        )
        .await;
    }

    /// The container's environment as a kubelet builds it: `envFrom` Secrets and ConfigMaps
    /// first, then `env` (plain values and `valueFrom` Secret or ConfigMap keys), later
    /// entries winning. A missing Secret or key fails the pod the way a kubelet reports
    /// `CreateContainerConfigError`.
    async fn environment(
        &self,
        pod: &Pod,
        container: &k8s_openapi::api::core::v1::Container,
    ) -> Result<Vec<(String, String)>, String> {
        use k8s_openapi::api::core::v1::Secret;
        let ns = pod.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let secret = |name: String| {
            let secrets = secrets.clone();
            async move {
                let s = secrets
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("secret {name:?}: {e}"))?
                    .ok_or(format!(
                        "CreateContainerConfigError: secret {name:?} not found"
                    ))?;
                Ok::<_, String>(
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )
            }
        };
        let map = |name: String| {
            let maps = maps.clone();
            async move {
                let m = maps
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("configmap {name:?}: {e}"))?
                    .ok_or(format!(
                        "CreateContainerConfigError: configmap {name:?} not found"
                    ))?;
                Ok::<_, String>(m.data.unwrap_or_default())
            }
        };
        let mut env = Vec::new();
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let values = match (&from.secret_ref, &from.config_map_ref) {
                (Some(s), _) => secret(s.name.clone()).await?,
                (None, Some(c)) => map(c.name.clone()).await?,
                (None, None) => continue,
            };
            env.extend(values.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
        }
        for e in container.env.iter().flatten() {
            let value = match e.value_from.as_ref() {
                None => e.value.clone().unwrap_or_default(),
                Some(from) => match (&from.secret_key_ref, &from.config_map_key_ref) {
                    (Some(k), _) => secret(k.name.clone()).await?.remove(&k.key).ok_or(format!(
                        "CreateContainerConfigError: key {:?} not in secret {:?}",
                        k.key, k.name
                    ))?,
                    (None, Some(k)) => map(k.name.clone()).await?.remove(&k.key).ok_or(format!(
                        "CreateContainerConfigError: key {:?} not in configmap {:?}",
                        k.key, k.name
                    ))?,
                    _ => continue,
                },
            };
            env.push((e.name.clone(), value));
        }
        Ok(env)
    }

    /// The host directory behind a volume.
    async fn volume_path(
        &self,
        pod: &Pod,
        volume: &str,
        pod_dir: &Path,
    ) -> Result<PathBuf, String> {
        let spec = pod.spec.as_ref().ok_or("no spec")?;
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .ok_or(format!("volume {volume} is not declared"))?;
        if v.empty_dir.is_some() {
            // World-writable, as a kubelet makes an emptyDir for whatever user the pod runs as.
            let dir = pod_dir.join("volumes").join(volume);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            open_to(&dir, 0o777)?;
            return Ok(dir);
        }
        if let Some(source) = &v.config_map {
            // As the kubelet projects a ConfigMap: each key (or each listed item) a file.
            let ns = pod.namespace().unwrap_or_default();
            let cm = Api::<ConfigMap>::namespaced(self.client.clone(), &ns)
                .get(&source.name)
                .await
                .map_err(|e| format!("FailedMount: configmap {:?}: {e}", source.name))?;
            let data = cm.data.unwrap_or_default();
            let dir = pod_dir.join("volumes").join(volume);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let items: Vec<(String, String)> = match &source.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                let text = data.get(&key).ok_or(format!(
                    "FailedMount: key {key:?} not in configmap {:?}",
                    source.name
                ))?;
                std::fs::write(dir.join(path), text).map_err(|e| e.to_string())?;
            }
            return Ok(dir);
        }
        if let Some(pvc) = &v.persistent_volume_claim {
            let ns = pod.namespace().unwrap_or_default();
            let claim = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns)
                .get(&pvc.claim_name)
                .await
                .map_err(|e| format!("claim {}: {e}", pvc.claim_name))?;
            let pv_name = claim
                .spec
                .and_then(|s| s.volume_name)
                .ok_or(format!("claim {} is not bound", pvc.claim_name))?;
            let pv = Api::<PersistentVolume>::all(self.client.clone())
                .get(&pv_name)
                .await
                .map_err(|e| e.to_string())?;
            let path = pv
                .spec
                .and_then(|s| s.host_path)
                .map(|h| h.path)
                .ok_or(format!("volume {pv_name} is not a hostPath volume"))?;
            return Ok(PathBuf::from(path));
        }
        if let Some(projected) = &v.projected {
            let dir = pod_dir.join("volumes").join(volume);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            self.project(pod, projected, &dir).await?;
            return Ok(dir);
        }
        Err(format!(
            "volume {volume}: only emptyDir, configMap, projected and persistentVolumeClaim are supported by the stand-in"
        ))
    }

    /// Writes a projected volume as a kubelet does when the pod starts: a ServiceAccount
    /// token from the TokenRequest API, bound to this pod and expiring as asked (the kubelet
    /// would also refresh it; the stand-in's pods are short-lived), ConfigMap items (the
    /// cluster's CA from `kube-root-ca.crt`) and the pod's namespace and name.
    async fn project(
        &self,
        pod: &Pod,
        projected: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
        dir: &Path,
    ) -> Result<(), String> {
        use k8s_openapi::api::authentication::v1::{
            BoundObjectReference, TokenRequest, TokenRequestSpec,
        };
        let ns = pod.namespace().unwrap_or_default();
        let write = |path: &str, text: &str| {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(file, text).map_err(|e| e.to_string())
        };
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let request = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: token.audience.iter().cloned().collect(),
                        expiration_seconds: Some(token.expiration_seconds.unwrap_or(3600)),
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: Some(pod.name_any()),
                            uid: pod.uid(),
                        }),
                    },
                    ..TokenRequest::default()
                };
                let issued = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                    self.client.clone(),
                    &ns,
                )
                .create_token_request(&account, &PostParams::default(), &request)
                .await
                .map_err(|e| format!("FailedMount: a token for ServiceAccount {account}: {e}"))?;
                let text = issued.status.map(|s| s.token).unwrap_or_default();
                write(&token.path, &text)?;
            }
            if let Some(source) = &source.config_map {
                let cm = Api::<ConfigMap>::namespaced(self.client.clone(), &ns)
                    .get(&source.name)
                    .await
                    .map_err(|e| format!("FailedMount: configmap {:?}: {e}", source.name))?;
                let data = cm.data.unwrap_or_default();
                for item in source.items.iter().flatten() {
                    let text = data.get(&item.key).ok_or(format!(
                        "FailedMount: key {:?} not in configmap {:?}",
                        item.key, source.name
                    ))?;
                    write(&item.path, text)?;
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let field = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                    let value = match field {
                        Some("metadata.namespace") => ns.clone(),
                        Some("metadata.name") => pod.name_any(),
                        other => {
                            return Err(format!(
                                "FailedMount: the stand-in projects metadata.namespace and metadata.name, not {other:?}"
                            ));
                        }
                    };
                    write(&item.path, &value)?;
                }
            }
        }
        Ok(())
    }

    /// Where the `kubernetes` Service leads: the API server's advertised address (from its
    /// discovery document), which a kube-proxy would route the Service's cluster IP to (there
    /// is none here).
    async fn api_server(&self) -> Option<(String, String)> {
        let versions = self.client.list_core_api_versions().await.ok()?;
        let address = versions
            .server_address_by_client_cidrs
            .first()?
            .server_address
            .clone();
        let (host, port) = address.rsplit_once(':')?;
        Some((host.to_string(), port.to_string()))
    }

    /// The process of one container, as a kubelet would start it: its image's binary under
    /// `unshare --mount` with the pod's volumes bind-mounted at their mount paths (and the
    /// termination-log file at its path), its command's arguments, `args` and `extra`, the
    /// image's and the pod's environment, output to `log`.
    async fn command(
        &self,
        pod: &Pod,
        container: &k8s_openapi::api::core::v1::Container,
        pod_dir: &Path,
        extra: Vec<String>,
        termination: Option<(PathBuf, String)>,
        log: &Path,
    ) -> Result<tokio::process::Command, String> {
        let image_name = container.image.clone().unwrap_or_default();
        let image = self.images.get(&image_name).cloned().ok_or(format!(
            "image {image_name} is not in the stand-in's image table"
        ))?;
        // (source, target, read-only). A mount whose target hides another source (an
        // emptyDir at /tmp while the sources live under /tmp) goes last.
        let mut binds: Vec<(String, String, bool)> = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let source = self.volume_path(pod, &m.name, pod_dir).await?;
            binds.push((
                source.to_string_lossy().to_string(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            ));
        }
        if let Some((file, path)) = &termination {
            binds.push((file.to_string_lossy().to_string(), path.clone(), false));
        }
        let sources: Vec<String> = binds.iter().map(|b| b.0.clone()).collect();
        binds.sort_by_key(|(_, target, _)| {
            sources
                .iter()
                .any(|s| s.starts_with(&format!("{}/", target.trim_end_matches('/'))))
        });
        let security = crate::node_security::Security::of(pod, container)?;
        let (image_script, entrypoint, image_env) =
            crate::node_security::image_binds(&image.binary, &image.env, shell_quote);
        std::fs::create_dir_all(crate::node_security::IMAGE_ROOT).map_err(|e| e.to_string())?;
        let mut script = String::from("set -e\n");
        script.push_str(&image_script);
        let is_termination =
            |target: &String| termination.as_ref().is_some_and(|(_, p)| p == target);
        let make_point = |target: &String| {
            let t = shell_quote(target);
            if is_termination(target) {
                format!("[ -e {t} ] || touch {t}\n")
            } else {
                format!("mkdir -p {t}\n")
            }
        };
        // A read-only root: the mount points made on the host first, then the host's mounts
        // read-only (by path, before any volume covers one), as a runtime mounts a read-only
        // root under the volumes.
        if security.read_only_root {
            binds
                .iter()
                .for_each(|(_, t, _)| script.push_str(&make_point(t)));
            // A mount gone since the list was read (another test's container) is skipped; in
            // this private namespace the others stay until the container ends.
            for point in crate::node_security::writable_mounts() {
                let p = shell_quote(&point);
                script.push_str(&format!(
                    "if mountpoint -q {p}; then mount -o remount,bind,ro {p}; fi\n"
                ));
            }
        }
        // Each volume a mount of its own with its own flags (a bind takes its source mount's
        // flags, so a writable one is made writable again over a read-only root).
        for (source, target, read_only) in &binds {
            let t = shell_quote(target);
            script.push_str(&make_point(target));
            script.push_str(&format!("mount --bind {} {t}\n", shell_quote(source)));
            let flag = if *read_only { "ro" } else { "rw" };
            script.push_str(&format!("mount -o remount,bind,{flag} {t}\n"));
        }
        script.push_str("exec \"$@\"\n");
        let mut args: Vec<String> = container
            .command
            .clone()
            .unwrap_or_default()
            .into_iter()
            .skip(1)
            .collect();
        args.extend(container.args.clone().unwrap_or_default());
        args.extend(extra);
        let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(security.setpriv())
        .arg(&entrypoint)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/tmp")
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
        for (k, v) in &image_env {
            cmd.env(k, v);
        }
        if let Some((host, port)) = self.api_server().await {
            cmd.env("KUBERNETES_SERVICE_HOST", host)
                .env("KUBERNETES_SERVICE_PORT", port);
        }
        for (k, v) in self.environment(pod, container).await? {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Runs one pod as a kubelet would: resolves its env and volumes, starts each container as
    /// a process, reports Running and then the termination state. Long because it is that
    /// sequence, with a status report at each step.
    async fn run_pod(&self, pod: Pod, terminate: Arc<tokio::sync::Notify>) {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let pod_dir = self.root.join("pods").join(pod.uid().unwrap_or_default());
        if let Err(e) = std::fs::create_dir_all(&pod_dir) {
            return self.fail(&pod, e.to_string()).await;
        }
        let Some(spec) = pod.spec.clone() else { return };
        let Some(container) = spec.containers.first().cloned() else {
            return;
        };
        if let Ok(mut logs) = self.logs.lock() {
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            logs.insert(
                crate::node_logs::key(&ns, &name, &container.name),
                pod_dir.join("container.log"),
            );
            for sidecar in spec.init_containers.iter().flatten() {
                logs.insert(
                    crate::node_logs::key(&ns, &name, &sidecar.name),
                    pod_dir.join(format!("{}.log", sidecar.name)),
                );
            }
        }
        let image_name = container.image.clone().unwrap_or_default();
        let termination_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let termination_file = pod_dir.join("termination-log");
        let _ = std::fs::write(&termination_file, b"");
        // Writable by any user, as a kubelet makes it.
        let _ = open_to(&termination_file, 0o666);
        let mut args: Vec<String> = Vec::new();
        let declared: Vec<String> = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        let mut ports = None;
        if declared.iter().any(|p| p == "http") && declared.iter().any(|p| p == "grpc") {
            let (Ok(http), Ok(grpc)) = (crate::free_port(), crate::free_port()) else {
                return self.fail(&pod, "no free port".into()).await;
            };
            args.extend([
                "--http-addr".into(),
                format!("127.0.0.1:{http}"),
                "--grpc-addr".into(),
                format!("127.0.0.1:{grpc}"),
            ]);
            ports = Some((http, grpc));
            if let Ok(mut p) = self.ports.lock() {
                p.insert(key.clone(), (http, grpc));
            }
        }
        // Sidecars (init containers with `restartPolicy: Always`) start first; the main
        // container starts once each one's startup probe passes, as with a kubelet.
        let mut sidecars = Vec::new();
        for sidecar in spec.init_containers.iter().flatten() {
            if sidecar.restart_policy.as_deref() != Some("Always") {
                return self
                    .fail(&pod, format!("init container {}: the stand-in runs sidecars (restartPolicy: Always) only", sidecar.name))
                    .await;
            }
            let log = pod_dir.join(format!("{}.log", sidecar.name));
            let started = match self
                .command(&pod, sidecar, &pod_dir, Vec::new(), None, &log)
                .await
            {
                Ok(mut cmd) => cmd.spawn().map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let mut child = match started {
                Ok(c) => c,
                Err(e) => {
                    return self
                        .fail(&pod, format!("sidecar {}: {e}", sidecar.name))
                        .await;
                }
            };
            if let Err(e) = started_up(sidecar, &mut child).await {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return self
                    .fail(&pod, format!("sidecar {}: {e}: {tail}", sidecar.name))
                    .await;
            }
            sidecars.push(child);
        }
        let log_path = pod_dir.join("container.log");
        // A pod whose restartPolicy is Always (a Deployment's) gets its container restarted
        // in place after a back-off, as a kubelet does (CrashLoopBackOff); a Job's pod ends.
        let always = spec.restart_policy.as_deref().unwrap_or("Always") == "Always";
        let mut restarts = 0_u32;
        loop {
            let _ = std::fs::write(&termination_file, b"");
            let mut cmd = match self
                .command(
                    &pod,
                    &container,
                    &pod_dir,
                    args.clone(),
                    Some((termination_file.clone(), termination_path.clone())),
                    &log_path,
                )
                .await
            {
                Ok(cmd) => cmd,
                Err(e) => return self.fail(&pod, e).await,
            };
            let image = self.images.get(&image_name).cloned().unwrap_or(Image {
                binary: PathBuf::new(),
                env: Vec::new(),
            });
            let started_at = now();
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    return self
                        .fail(
                            &pod,
                            format!("cannot start {}: {e}", image.binary.display()),
                        )
                        .await;
                }
            };
            let running = |ready: bool| {
                json!({
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "startTime": started_at,
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": started_at},
                        {"type": "ContainersReady", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now()},
                        {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now()},
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started_at}
                    ],
                    "containerStatuses": [{"name": container.name, "image": image_name, "imageID": "", "ready": ready, "restartCount": restarts, "started": true, "state": {"running": {"startedAt": started_at}}}]
                })
            };
            let probe_path = container
                .readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone());
            self.patch_status(&pod, running(probe_path.is_none())).await;
            if let (Some(path), Some((http, _))) = (probe_path, ports) {
                let url = format!("http://127.0.0.1:{http}{path}");
                for _ in 0..600 {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    if tokio::time::timeout(Duration::ZERO, terminate.notified())
                        .await
                        .is_ok()
                    {
                        // Deleted before it was ready: stop at once.
                        terminate.notify_one();
                        break;
                    }
                    if reqwest::get(&url)
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                    {
                        self.patch_status(&pod, running(true)).await;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let mut terminated = false;
            let status = tokio::select! {
                status = child.wait() => status,
                _ = terminate.notified() => {
                    terminated = true;
                    // SIGTERM, as a kubelet sends it; the deletion task above bounds the wait by
                    // the pod's grace period.
                    if let Some(pid) = child.id() {
                        let _ = tokio::process::Command::new("kill")
                            .args(["-TERM", &pid.to_string()])
                            .status()
                            .await;
                    }
                    child.wait().await
                }
            };
            let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
            let mut message = std::fs::read_to_string(&termination_file).unwrap_or_default();
            if message.is_empty() && code != 0 {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                message = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            message.truncate(4096);
            if always && !terminated {
                restarts += 1;
                let backoff = Duration::from_secs((10_u64 << restarts.min(5)).min(300));
                self.patch_status(
                    &pod,
                    json!({
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now()},
                            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now()}
                        ],
                        "containerStatuses": [{"name": container.name, "image": image_name, "imageID": "", "ready": false, "restartCount": restarts, "started": false,
                            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {}s restarting failed container", backoff.as_secs())}},
                            "lastState": {"terminated": {"exitCode": code, "reason": "Error", "message": message, "startedAt": started_at, "finishedAt": now()}}}]
                    }),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = terminate.notified() => break,
                }
            }
            for mut sidecar in sidecars {
                let _ = sidecar.kill().await;
            }
            if let Ok(mut p) = self.ports.lock() {
                p.remove(&key);
            }
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            self.patch_status(
                &pod,
                json!({
                    "phase": phase,
                    "conditions": [
                        {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()},
                        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()}
                    ],
                    "containerStatuses": [{"name": container.name, "image": image_name, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                        "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}, "message": message, "startedAt": started_at, "finishedAt": now()}}}]
                }),
            )
            .await;
            return;
        }
        // Deleted while backing off: the pod object goes; its port is free again.
        if let Ok(mut p) = self.ports.lock() {
            p.remove(&key);
        }
    }
}
