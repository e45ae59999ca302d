//! Test support for Leitwerk's integration tests: a real local control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, built and started by
//! `tests/cluster/*.sh`), one namespace per test, the operator binary as a process, and
//! wait-for-condition helpers with timeouts instead of bare sleeps.
//!
//! Set `LEITWERK_CLUSTER_DIR` to the `--dir` of a control plane started with
//! `tests/cluster/up.sh` to reuse it; otherwise the first test starts one that stops when the
//! test process exits.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::de::DeserializeOwned;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Kubernetes version pinned in `tests/cluster/versions.env`, e.g. `v1.34.4`.
pub fn kubernetes_version() -> String {
    let pins =
        std::fs::read_to_string(repo_root().join("tests/cluster/versions.env")).unwrap_or_default();
    pins.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A running control plane.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Directory given to `up.sh --dir`.
    pub dir: PathBuf,
    /// Admin kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    /// Kubeconfig of the user `leitwerk-operator` (no groups; RBAC decides).
    pub operator_kubeconfig: PathBuf,
    /// Kubeconfig of the user `leitwerk-restricted`, which has no rights until a test grants some.
    pub restricted_kubeconfig: PathBuf,
    /// The API server's audit log of write requests.
    pub audit_log: PathBuf,
    /// Directory with kubectl and helm.
    pub bin: PathBuf,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

impl Cluster {
    /// The control plane shared by every test of this process, started on first use.
    pub fn shared() -> anyhow::Result<Cluster> {
        SHARED
            .get_or_init(|| {
                let result = match std::env::var_os("LEITWERK_CLUSTER_DIR") {
                    Some(dir) => Cluster::from_dir(Path::new(&dir)),
                    None => {
                        let dir = std::env::temp_dir()
                            .join(format!("leitwerk-cluster-{}", std::process::id()));
                        Cluster::start(&dir, false)
                    }
                };
                result
                    .and_then(|c| {
                        c.install_crds()?;
                        c.install_operator_rbac()?;
                        Ok(c)
                    })
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Starts a control plane in `dir` that stops when this process exits.
    pub fn start(dir: &Path, minimal: bool) -> anyhow::Result<Cluster> {
        let script = repo_root().join("tests/cluster/up.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg("--dir")
            .arg(dir)
            .arg("--watch-pid")
            .arg(std::process::id().to_string());
        if minimal {
            cmd.arg("--minimal");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "tests/cluster/up.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Cluster::from_dir(dir)
    }

    /// A control plane started earlier by `up.sh --dir DIR`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Cluster> {
        let env = std::fs::read_to_string(dir.join("env")).with_context(|| {
            format!(
                "no control plane in {} (run tests/cluster/up.sh --dir {})",
                dir.display(),
                dir.display()
            )
        })?;
        let get = |key: &str| -> anyhow::Result<PathBuf> {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .with_context(|| format!("{key} missing in {}/env", dir.display()))
        };
        Ok(Cluster {
            dir: dir.to_path_buf(),
            kubeconfig: get("KUBECONFIG")?,
            operator_kubeconfig: get("LEITWERK_OPERATOR_KUBECONFIG")?,
            restricted_kubeconfig: get("LEITWERK_RESTRICTED_KUBECONFIG")?,
            audit_log: get("LEITWERK_AUDIT_LOG")?,
            bin: get("LEITWERK_K8S_BIN")?,
        })
    }

    /// An admin client (create one per test: clients are bound to their runtime).
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        self.tool("kubectl", args, stdin)
    }

    /// Runs helm with the admin kubeconfig.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.tool("helm", args, None)
    }

    fn tool(&self, name: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        use std::io::Write as _;
        let mut child = Command::new(self.bin.join(name))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.join("kube-cache"))
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .current_dir(repo_root())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to run {name}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Installs the CRDs by server-side apply (as `crdgen` renders them) and waits until
    /// every one is Established.
    pub fn install_crds(&self) -> anyhow::Result<()> {
        let yaml = leitwerk_crds::crd::render_yaml()?;
        let out = self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=leitwerk-tests",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&yaml),
        )?;
        if !out.status.success() {
            bail!(
                "installing the CRDs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = self.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/featuresets.leitwerk.dev",
                "crd/models.leitwerk.dev",
                "crd/experiments.leitwerk.dev",
                "crd/ragindexes.leitwerk.dev",
                "crd/contentpipelines.leitwerk.dev",
            ],
            None,
        )?;
        if !out.status.success() {
            bail!(
                "the CRDs did not become Established: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Established comes a moment before discovery lists the kinds (and `kubectl get
        // leitwerk` resolves the category through discovery): wait for discovery too.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.kubectl(
                &[
                    "api-resources",
                    "--api-group=leitwerk.dev",
                    "--cached=false",
                    "-o",
                    "name",
                ],
                None,
            )?;
            let listed = String::from_utf8_lossy(&out.stdout).lines().count();
            if listed == leitwerk_crds::crd::all().len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "discovery lists {listed} leitwerk.dev resources after 60 s: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Applies the operator's ClusterRole from `config/rbac/` and binds it to the user
    /// `leitwerk-operator`, so operator processes in tests run with exactly the chart's rights.
    pub fn install_operator_rbac(&self) -> anyhow::Result<()> {
        let out = self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=leitwerk-tests",
                "--force-conflicts",
                "-f",
                "config/rbac/role.yaml",
            ],
            None,
        )?;
        if !out.status.success() {
            bail!(
                "applying config/rbac/role.yaml failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let binding = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: leitwerk-operator-test-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leitwerk-operator}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}
"#;
        let out = self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=leitwerk-tests",
                "-f",
                "-",
            ],
            Some(binding),
        )?;
        if !out.status.success() {
            bail!(
                "binding the operator role failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Write requests (create, update, patch, delete) that `user` made in `namespace`, from the
    /// audit log, as `(verb, resource, name)`, skipping the first `skip` lines of the log.
    pub fn audited_writes(
        &self,
        user: &str,
        namespace: &str,
        skip: usize,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        let mut writes = Vec::new();
        for line in text.lines().skip(skip) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let verb = event["verb"].as_str().unwrap_or_default();
            if !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) {
                continue;
            }
            if event["user"]["username"].as_str() != Some(user)
                || event["objectRef"]["namespace"].as_str() != Some(namespace)
            {
                continue;
            }
            let resource = event["objectRef"]["resource"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let sub = event["objectRef"]["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            writes.push((
                verb.to_string(),
                format!("{resource}{sub}"),
                event["objectRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        Ok(writes)
    }

    /// Number of lines in the audit log now.
    pub fn audit_lines(&self) -> usize {
        std::fs::read_to_string(&self.audit_log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A namespace for one test, deleted (without waiting) when dropped.
#[derive(Debug)]
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
    cluster: Cluster,
}

impl TestNamespace {
    /// Creates `lw-<prefix>-<random>`.
    pub async fn create(cluster: &Cluster, prefix: &str) -> anyhow::Result<TestNamespace> {
        let client = cluster.client().await?;
        let suffix: String = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
                ^ u128::from(std::process::id())
        );
        let name = format!("lw-{prefix}-{}", &suffix[suffix.len().saturating_sub(6)..]);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("failed to create namespace {name}"))?;
        Ok(TestNamespace {
            name,
            cluster: cluster.clone(),
        })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new(self.cluster.bin.join("kubectl"))
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout` with the last state seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<(Option<T>, String)>>,
{
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match check().await {
            Ok((Some(value), _)) => return Ok(value),
            Ok((None, state)) => last = state,
            Err(err) => last = format!("error: {err:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `Ready` condition of an object as `(status, reason, message)`.
pub fn ready_of(obj: &serde_json::Value) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Waits until the object's Ready condition has `reason` and describes its current generation;
/// returns the object.
pub async fn wait_for_ready_reason<K>(
    api: &Api<K>,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    wait_for(
        &format!("{name} to have Ready reason {reason}"),
        timeout,
        || async {
            let obj = api.get(name).await?;
            let generation = obj.meta().generation;
            let value = serde_json::to_value(&obj)?;
            let ready = ready_of(&value);
            let observed = value["status"]["observedGeneration"].as_i64();
            let done =
                ready.as_ref().is_some_and(|(_, r, _)| r == reason) && observed == generation;
            Ok((
                done.then(|| value.clone()),
                format!(
                    "ready={ready:?} observedGeneration={observed:?} generation={generation:?}"
                ),
            ))
        },
    )
    .await
}

/// A `leitwerk-operator` process for one test, killed when dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    child: tokio::process::Child,
    /// Address of its /metrics, /healthz and /readyz.
    pub metrics_url: String,
    /// Its log file.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `binary` as the user `leitwerk-operator`, watching `namespace` only.
    pub async fn start(
        cluster: &Cluster,
        binary: &str,
        namespace: &str,
        extra: &[&str],
    ) -> anyhow::Result<OperatorProcess> {
        grant_leader_election(cluster, namespace)?;
        Self::start_as(
            cluster,
            &cluster.operator_kubeconfig,
            binary,
            namespace,
            extra,
        )
        .await
    }

    /// Starts `binary` with the identity of `kubeconfig`, watching `namespace` only.
    pub async fn start_as(
        cluster: &Cluster,
        kubeconfig: &Path,
        binary: &str,
        namespace: &str,
        extra: &[&str],
    ) -> anyhow::Result<OperatorProcess> {
        let port = free_port()?;
        let log = cluster.dir.join(format!("operator-{namespace}-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .args([
                "--namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,leitwerk_operator=debug")
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {binary}"))?;
        let process = OperatorProcess {
            child,
            metrics_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let url = format!("{}/readyz", process.metrics_url);
        wait_for(
            "the operator to report ready",
            Duration::from_secs(30),
            || async {
                let ok = reqwest::get(&url)
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                Ok((ok.then_some(()), "not ready".to_string()))
            },
        )
        .await
        .with_context(|| {
            format!(
                "operator log:\n{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            )
        })?;
        Ok(process)
    }

    /// The operator's metrics in text form.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?)
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        Ok(metric_sum(&text, name, labels))
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Grants the user `leitwerk-operator` the leader-election Role from `config/rbac/` in
/// `namespace`, where test operators keep their Lease.
pub fn grant_leader_election(cluster: &Cluster, namespace: &str) -> anyhow::Result<()> {
    kubectl_apply(
        cluster,
        namespace,
        "config/rbac/leader_election_role.yaml",
        None,
    )?;
    let binding = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leitwerk-leader-election-test-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leitwerk-leader-election}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}
"#;
    kubectl_apply(cluster, namespace, "-", Some(binding))
}

/// Sum of every sample of metric `name` in a text exposition whose labels include `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name && labels.iter().all(|lab| series.contains(lab)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads a typed object from YAML.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    Ok(yaml_serde::from_str(text)?)
}

/// Applies YAML with kubectl (server-side) in a namespace.
pub fn kubectl_apply(
    cluster: &Cluster,
    namespace: &str,
    path_or_dash: &str,
    stdin: Option<&str>,
) -> anyhow::Result<()> {
    let out = cluster.kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=leitwerk-tests",
            "-n",
            namespace,
            "-f",
            path_or_dash,
        ],
        stdin,
    )?;
    if !out.status.success() {
        bail!(
            "kubectl apply -f {path_or_dash} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Deletes an object and ignores NotFound.
pub async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side applies a CRD (used to simulate schema changes).
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            &crd.name_any(),
            &PatchParams::apply("leitwerk-tests").force(),
            &Patch::Apply(crd),
        )
        .await?;
    Ok(())
}
