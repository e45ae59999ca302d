//! Test support for Leitwerk's integration tests: a real local control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, built and started by
//! `tests/cluster/*.sh`), one namespace per test, the operator binary as a process, and
//! wait-for-condition helpers with timeouts instead of bare sleeps.
//!
//! Set `LEITWERK_CLUSTER_DIR` to the `--dir` of a control plane started with
//! `tests/cluster/up.sh` to reuse it; otherwise the first test starts one that stops when the
//! test process exits.

mod cluster;
pub mod cms;
pub mod llama;
pub mod loadgen;
pub mod node;
pub mod node_logs;
mod node_security;
mod operator;
pub mod prometheus;
pub mod qdrant;
pub mod s3;
pub mod standin;

pub use cluster::{Cluster, TestNamespace, client_from};
pub use operator::{OperatorProcess, grant_leader_election};

use std::{
    future::Future,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::bail;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde::de::DeserializeOwned;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a provider script under `tests/` (e.g. `minilm.sh`, `numpy-python.sh`) provides: it
/// fetches into the cache when needed and prints a path, which this returns.
pub fn provided(script: &str) -> anyhow::Result<PathBuf> {
    let path = repo_root().join("tests").join(script);
    let out = std::process::Command::new("bash").arg(&path).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Where a benchmark's figures are kept: `benches/results/<name>/`, beside the chart that
/// `benches/charts.sh <name>` draws from them.
pub fn bench_results_dir(name: &str) -> PathBuf {
    repo_root().join("benches/results").join(name)
}

/// The figures a benchmark wrote last (`results.json`), if any.
pub fn read_bench_results(name: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(bench_results_dir(name).join("results.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes a benchmark's figures to `benches/results/<name>/results.json` and returns the path.
pub fn write_bench_results(name: &str, results: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let dir = bench_results_dir(name);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(results)? + "\n")?;
    Ok(path)
}

/// The `data` of a ConfigMap manifest under `examples/` (e.g.
/// `product-docs-rag/docs-configmap.yaml`).
pub fn example_config_map(
    path: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct ConfigMap {
        data: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(repo_root().join("examples").join(path))?;
    Ok(yaml_serde::from_str::<ConfigMap>(&text)?.data)
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

/// A free TCP port on 127.0.0.1 for a server a test starts, below the kernel's ephemeral range
/// (`ip_local_port_range`). A port the kernel picks (bind to port 0) comes from that range, and
/// between the pick and the server's bind any outgoing connection may take it: a test's
/// `address already in use`. A port is handed out once per process.
pub fn free_port() -> anyhow::Result<u16> {
    use rand::{RngExt, SeedableRng};
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let low = ephemeral_low().unwrap_or(32768);
    let (from, to) = if low > 20000 {
        (10000, low)
    } else {
        (low, 65535)
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()))
        .unwrap_or_default()
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut handed_out = HANDED_OUT
        .lock()
        .map_err(|_| anyhow::anyhow!("free_port: the set of handed-out ports is poisoned"))?;
    for _ in 0..1000 {
        let port = rng.random_range(from..to);
        if handed_out.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.insert(port);
        return Ok(port);
    }
    anyhow::bail!("no free port on 127.0.0.1 in {from}..{to} after 1000 tries")
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    cluster.apply(Some(namespace), path_or_dash, stdin)
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

#[cfg(test)]
mod port_tests {
    /// Ports come from below the ephemeral range, each once, and are free when handed out.
    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let low = super::ephemeral_low().unwrap_or(32768);
        let ports: Vec<u16> = (0..50).map(|_| super::free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            if low > 20000 {
                assert!(
                    (10000..low).contains(&port),
                    "{port} is in the ephemeral range"
                );
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
