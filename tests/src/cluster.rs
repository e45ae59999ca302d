//! The control plane started by `tests/cluster/up.sh`, and namespaces for tests.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::*;

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

    /// Server-side applies a file (or `-` for `stdin`) as the test field manager, in
    /// `namespace` when given; the error carries kubectl's message.
    pub fn apply(
        &self,
        namespace: Option<&str>,
        path_or_dash: &str,
        stdin: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager=leitwerk-tests",
            "--force-conflicts",
        ];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        args.extend(["-f", path_or_dash]);
        let out = self.kubectl(&args, stdin)?;
        if !out.status.success() {
            bail!(
                "kubectl apply -f {path_or_dash} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Installs the Gateway API's standard CRDs (`tests/cluster/gateway-api.sh` fetches them
    /// as a Go module) and waits until HTTPRoute is Established.
    pub fn install_gateway_api(&self) -> anyhow::Result<()> {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/cluster/gateway-api.sh"))
            .output()
            .context("failed to run tests/cluster/gateway-api.sh")?;
        if !out.status.success() {
            bail!(
                "tests/cluster/gateway-api.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.apply(None, &dir, None)
            .context("failed to install the Gateway API CRDs")?;
        self.wait_established(&["crd/httproutes.gateway.networking.k8s.io"])
            .context("the HTTPRoute CRD did not become Established")
    }

    /// Waits until the CRDs are Established. A CRD read before the API server wrote its first
    /// status has no conditions, and `kubectl wait` then fails at once ("… <nil> is of the type
    /// <nil>") instead of waiting: it is asked again, at most 30 times.
    fn wait_established(&self, crds: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend_from_slice(crds);
        let mut last = String::new();
        for _ in 0..30 {
            let out = self.kubectl(&args, None)?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).to_string();
            std::thread::sleep(Duration::from_secs(1));
        }
        bail!("{last}")
    }

    /// Installs the CRDs by server-side apply (as `crdgen` renders them) and waits until
    /// every one is Established.
    pub fn install_crds(&self) -> anyhow::Result<()> {
        let yaml = leitwerk_crds::crd::render_yaml()?;
        self.apply(None, "-", Some(&yaml))
            .context("failed to install the CRDs")?;
        self.wait_established(&[
            "crd/featuresets.leitwerk.dev",
            "crd/models.leitwerk.dev",
            "crd/experiments.leitwerk.dev",
            "crd/ragindexes.leitwerk.dev",
            "crd/contentpipelines.leitwerk.dev",
            "crd/leitwerkpolicies.leitwerk.dev",
        ])
        .context("the CRDs did not become Established")?;
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
        self.apply(None, "config/rbac/role.yaml", None)?;
        let binding = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: leitwerk-operator-test-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leitwerk-operator}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}
"#;
        self.apply(None, "-", Some(binding))
            .context("failed to bind the operator role to the user leitwerk-operator")
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
