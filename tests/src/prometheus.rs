//! A real Prometheus (Debian's `prometheus` package) on 127.0.0.1 for the tests: it scrapes
//! the targets a test names through a `file_sd` file, once a second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::{free_port, wait_for};

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct PrometheusProcess {
    /// Port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The binary: `$LEITWERK_PROMETHEUS` or `prometheus` on the PATH.
fn binary() -> String {
    std::env::var("LEITWERK_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

/// Replaces the scrape targets of the Prometheus started in `dir`, atomically; they carry no
/// label of their own, so a target's series keep the labels it exports.
pub fn write_targets(dir: &Path, targets: &[String]) -> anyhow::Result<()> {
    let body = serde_json::json!([{"targets": targets, "labels": {}}]);
    replace(dir, &body)
}

/// Replaces the scrape targets with `(host:port, namespace)` pairs. Each target's series get
/// `namespace` from the pod's real namespace, as the chart's PodMonitor relabels it from
/// Kubernetes metadata: with `honor_labels` off, a `namespace` the pod exports itself becomes
/// `exported_namespace` and can never pass for another namespace's series.
pub fn write_namespaced_targets(dir: &Path, targets: &[(String, String)]) -> anyhow::Result<()> {
    replace(dir, &namespaced_groups(targets))
}

/// The file_sd groups of `(host:port, namespace)` pairs: one group per namespace.
pub fn namespaced_groups(targets: &[(String, String)]) -> serde_json::Value {
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (address, namespace) in targets {
        groups
            .entry(namespace.as_str())
            .or_default()
            .push(address.as_str());
    }
    serde_json::Value::Array(
        groups
            .into_iter()
            .map(|(ns, t)| serde_json::json!({"targets": t, "labels": {"namespace": ns}}))
            .collect(),
    )
}

fn replace(dir: &Path, body: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = dir.join("targets.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(body)?)?;
    std::fs::rename(&tmp, dir.join("targets.json"))?;
    Ok(())
}

impl PrometheusProcess {
    /// Starts Prometheus with its data and targets under `dir` (created if missing).
    pub async fn start(dir: &Path) -> anyhow::Result<PrometheusProcess> {
        std::fs::create_dir_all(dir.join("data"))?;
        let mut p = PrometheusProcess {
            port: free_port()?,
            dir: dir.to_path_buf(),
            child: None,
        };
        p.set_targets(&[])?;
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: leitwerk\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                dir.join("targets.json").display()
            ),
        )?;
        p.resume().await?;
        Ok(p)
    }

    /// The URL the operator queries.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the scrape targets (`host:port` of /metrics endpoints).
    pub fn set_targets(&self, targets: &[String]) -> anyhow::Result<()> {
        write_targets(&self.dir, targets)
    }

    /// The directory given to `start` (for [`write_namespaced_targets`] from another task).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the process (the data stays for `resume`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port and data, and waits until it is ready.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("prometheus.log"))?;
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--storage.tsdb.retention.time=1d")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (Debian: apt-get install -y prometheus)",
                    binary()
                )
            })?;
        self.child = Some(child);
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", self.url());
        wait_for(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                let ok = http
                    .get(&ready)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                Ok((ok.then_some(()), self.log()))
            },
        )
        .await
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query and returns the first value (None: no data).
    pub async fn query(&self, query: &str) -> anyhow::Result<Option<f64>> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await?
            .json()
            .await?;
        Ok(body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok()))
    }
}
