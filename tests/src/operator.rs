//! The `leitwerk-operator` binary as a process of a test.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use crate::*;

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

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
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
