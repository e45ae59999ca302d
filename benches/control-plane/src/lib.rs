//! Helpers of the control-plane benchmarks: a synthetic KPI exporter and process figures.

pub mod counts;
pub mod stand_in;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters of one Experiment variant as an inference server would export them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Series {
    /// Predictions so far.
    pub predictions: f64,
    /// Conversions so far.
    pub conversions: f64,
    /// Conversion rate applied to new predictions.
    pub rate: f64,
}

type AllSeries = Arc<Mutex<BTreeMap<(String, String), Series>>>;

/// A `/metrics` endpoint on 127.0.0.1 exporting `leitwerk_inference_predictions_total` and
/// `leitwerk_inference_outcomes_total` per (experiment, variant), growing by `per_second`
/// predictions per series: it stands in for the inference servers' traffic so that 100
/// Experiments can be analysed without running 200 servers on two cores.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// Port of `/metrics`.
    pub port: u16,
    series: AllSeries,
}

impl Exporter {
    /// Starts the endpoint and the ticker (every 100 ms) for `namespace`.
    pub async fn start(namespace: &str, per_second: f64) -> anyhow::Result<Exporter> {
        let series: AllSeries = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let ns = namespace.to_string();
        let render = series.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                let ns = ns.clone();
                async move { text(&ns, &render) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let tick = series.clone();
        tokio::spawn(async move {
            // Bounded: at most a day of ticks.
            for _ in 0..864_000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(mut all) = tick.lock() {
                    for s in all.values_mut() {
                        let n = per_second / 10.0;
                        s.predictions += n;
                        s.conversions += n * s.rate;
                    }
                }
            }
        });
        Ok(Exporter { port, series })
    }

    /// Sets the conversion rate of a variant (creating its series).
    pub fn set_rate(&self, experiment: &str, variant: &str, rate: f64) {
        if let Ok(mut all) = self.series.lock() {
            all.entry((experiment.to_string(), variant.to_string()))
                .or_default()
                .rate = rate;
        }
    }
}

fn text(ns: &str, series: &Mutex<BTreeMap<(String, String), Series>>) -> String {
    let mut out = String::from(
        "# TYPE leitwerk_inference_predictions counter\n# TYPE leitwerk_inference_outcomes counter\n",
    );
    if let Ok(all) = series.lock() {
        for ((exp, variant), s) in all.iter() {
            let labels = format!(
                r#"namespace="{ns}",experiment="{exp}",variant="{variant}",model="m",version="v""#
            );
            out.push_str(&format!(
                "leitwerk_inference_predictions_total{{{labels}}} {}\n",
                s.predictions.floor()
            ));
            out.push_str(&format!(
                "leitwerk_inference_outcomes_total{{{labels},outcome=\"converted\"}} {}\n",
                s.conversions.floor()
            ));
        }
    }
    out
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) follow the last ')'; utime
    // and stime are fields 14 and 15 of stat, the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// The CPU seconds each control-plane process has used (`etcd`, `kube-apiserver`, … as the
/// cluster's `pids` file names them), and this process's own (`bench`, the stand-ins and the
/// creates). A process that is gone counts 0.
pub fn control_plane_cpu(cluster_dir: &std::path::Path) -> BTreeMap<String, f64> {
    let pids = std::fs::read_to_string(cluster_dir.join("pids")).unwrap_or_default();
    let mut cpu: BTreeMap<String, f64> = pids
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, pid)| Some((name.to_string(), pid.trim().parse::<u32>().ok()?)))
        .map(|(name, pid)| (name, cpu_seconds(pid).unwrap_or(0.0)))
        .collect();
    cpu.insert(
        "bench".into(),
        cpu_seconds(std::process::id()).unwrap_or(0.0),
    );
    cpu
}

/// Resident and peak resident memory in MiB, from `/proc/<pid>/status`.
pub fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
}

/// The build of `leitwerk-operator` its image ships (Cargo's `operator` profile) the
/// benchmarks run (build it first).
pub fn operator_binary() -> anyhow::Result<std::path::PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| leitwerk_testkit::repo_root().join("target"));
    let path = target.join("operator/leitwerk-operator");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run `cargo build --profile operator -p leitwerk-operator` first",
        path.display()
    );
    Ok(path)
}
