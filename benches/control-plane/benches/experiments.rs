//! Experiments at scale against the local control plane: the time from a KPI breach to
//! restored stable traffic, and the operator's CPU and memory with 100 concurrent canaries.
//!
//! A private control plane (tests/cluster/up.sh) with the Gateway API CRDs, a real Prometheus
//! scraping a synthetic exporter (100 predictions per second per variant, a chosen conversion
//! rate each), and the release build of `leitwerk-operator`. Figures are reported against a
//! peer measured in the same run: CPU and memory with 100 Experiments against the same
//! operator with one, and the breach-to-stable time against the analysis interval.

use std::time::{Duration, Instant};

use kube::api::{DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use leitwerk_control_plane_benches::{Exporter, cpu_seconds, memory_mib, operator_binary};
use leitwerk_crds::Model;
use leitwerk_testkit::prometheus::PrometheusProcess;
use leitwerk_testkit::{Cluster, OperatorProcess, TestNamespace, wait_for};

const EXPERIMENTS: usize = 100;
const INTERVAL_SECS: u64 = 10;
const BREACHES: usize = 5;

fn experiment(name: &str) -> String {
    let q = |what: &str| {
        format!(
            r#"sum(increase(leitwerk_inference_{what}{{namespace="{{{{namespace}}}}",experiment="{{{{experiment}}}}",variant="{{{{variant}}}}"{}}}[{{{{interval}}}}]))"#,
            if what == "outcomes_total" {
                r#",outcome="converted""#
            } else {
                ""
            }
        )
    };
    format!(
        r#"apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  variants:
    - {{name: stable, modelRef: {{name: m}}, role: Stable}}
    - {{name: canary, modelRef: {{name: m}}, role: Candidate}}
  strategy: {{type: Canary, canary: {{steps: [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 100]}}}}
  kpis:
    - name: conversion-rate
      query: '{} / {}'
      sampleQuery: '{}'
      min: 0.5
      relativeToStable: true
      minSamples: 100
  interval: {INTERVAL_SECS}s
"#,
        q("outcomes_total"),
        q("predictions_total"),
        q("predictions_total")
    )
}

async fn canary_weight(client: &Client, ns: &str, name: &str) -> Option<i64> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let route = api.get_opt(name).await.ok()??;
    route.data["spec"]["rules"][0]["backendRefs"]
        .as_array()?
        .iter()
        .find(|b| b["name"].as_str().is_some_and(|n| n.ends_with("-canary")))
        .and_then(|b| b["weight"].as_i64())
}

/// Operator CPU (share of one core) over `window`, and its resident memory at the end.
async fn load_of(pid: u32, window: Duration) -> anyhow::Result<(f64, f64)> {
    let before = cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    let used = cpu_seconds(pid)? - before;
    Ok((used / window.as_secs_f64(), memory_mib(pid)?.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let operator = operator_binary()?;
    let dir =
        std::env::temp_dir().join(format!("leitwerk-bench-experiments-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&dir.join("cluster"), false)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    cluster.install_gateway_api()?;
    let client = cluster.client().await?;
    let ns = TestNamespace::create(&cluster, "bench").await?;
    let exporter = Exporter::start(&ns.name, 100.0).await?;
    let prometheus = PrometheusProcess::start(&dir.join("prometheus")).await?;
    prometheus.set_targets(&[format!("127.0.0.1:{}", exporter.port)])?;
    let config = dir.join("operator.yaml");
    std::fs::write(&config, format!("prometheusUrl: {}\n", prometheus.url()))?;
    let op = OperatorProcess::start(
        &cluster,
        &operator.to_string_lossy(),
        &ns.name,
        &["--config", &config.to_string_lossy()],
    )
    .await?;
    let pid = op
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the operator exited"))?;

    // One Model with a serving version (v1) and a candidate (v2), shared by every Experiment.
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    for (i, v) in ["v1", "v2"].iter().enumerate() {
        cluster.apply(
            Some(&ns.name),
            "-",
            Some(&format!(
                "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {{name: m}}\nspec:\n  task: BinaryClassification\n  onnx: {{url: \"file:///models/{v}.onnx\"}}\n  serving: {{replicas: 1}}\n"
            )),
        )?;
        wait_for("the Model version", Duration::from_secs(60), || async {
            let st = models.get("m").await?.status.unwrap_or_default();
            Ok((
                (st.versions.len() > i).then_some(()),
                format!("{:?}", st.versions),
            ))
        })
        .await?;
    }

    let names: Vec<String> = (0..EXPERIMENTS).map(|i| format!("exp-{i:03}")).collect();
    for n in &names {
        exporter.set_rate(n, "stable", 0.10);
        exporter.set_rate(n, "canary", 0.10);
    }
    // Peer: the operator with one Experiment.
    cluster.apply(Some(&ns.name), "-", Some(&experiment(&names[0])))?;
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL_SECS)).await;
    let (cpu_one, rss_one) = load_of(pid, Duration::from_secs(3 * INTERVAL_SECS)).await?;

    let created = Instant::now();
    let all: String = names[1..]
        .iter()
        .map(|n| experiment(n))
        .collect::<Vec<_>>()
        .join("---\n");
    cluster.apply(Some(&ns.name), "-", Some(&all))?;
    wait_for(
        "every Experiment to start",
        Duration::from_secs(300),
        || async {
            let mut started = 0;
            for n in &names {
                if canary_weight(&client, &ns.name, n).await.is_some() {
                    started += 1;
                }
            }
            Ok((
                (started == EXPERIMENTS).then_some(()),
                format!("{started} started"),
            ))
        },
    )
    .await?;
    let startup = created.elapsed();
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECS)).await;
    let (cpu_all, rss_all) = load_of(pid, Duration::from_secs(6 * INTERVAL_SECS)).await?;
    let (_, peak) = memory_mib(pid)?;

    // Breaches: the canary of a few Experiments stops converting; time until its weight is 0.
    let mut restore = Vec::new();
    for n in names.iter().skip(EXPERIMENTS - BREACHES) {
        let weight = canary_weight(&client, &ns.name, n).await.unwrap_or(0);
        let breach = Instant::now();
        exporter.set_rate(n, "canary", 0.0);
        wait_for(
            "the rollback",
            Duration::from_secs(10 * INTERVAL_SECS),
            || async {
                let w = canary_weight(&client, &ns.name, n).await;
                Ok(((w == Some(0)).then_some(()), format!("canary weight {w:?}")))
            },
        )
        .await?;
        let took = breach.elapsed();
        println!(
            "breach of {n} (canary at {weight}%) → stable only after {:.1} s",
            took.as_secs_f64()
        );
        restore.push(took.as_secs_f64());
    }
    restore.sort_by(f64::total_cmp);
    let median = restore[restore.len() / 2];
    let worst = restore[restore.len() - 1];

    println!(
        "operator (release), {EXPERIMENTS} canary Experiments, interval {INTERVAL_SECS} s, 2 KPI queries per variant and analysis"
    );
    println!(
        "CPU: {:.1} % of a core with {EXPERIMENTS} ({:.1} × the {:.1} % with one); per Experiment {:.2} % of a core",
        cpu_all * 100.0,
        cpu_all / cpu_one.max(1e-4),
        cpu_one * 100.0,
        cpu_all * 100.0 / EXPERIMENTS as f64
    );
    println!(
        "memory: RSS {rss_all:.1} MiB with {EXPERIMENTS} ({:.2} × the {rss_one:.1} MiB with one), peak {peak:.1} MiB",
        rss_all / rss_one.max(1e-3)
    );
    println!(
        "{} Experiments created and routed in {:.1} s",
        EXPERIMENTS - 1,
        startup.as_secs_f64()
    );
    println!(
        "KPI breach → stable traffic: median {median:.1} s, worst {worst:.1} s over {BREACHES} breaches ({:.2} × / {:.2} × the interval)",
        median / INTERVAL_SECS as f64,
        worst / INTERVAL_SECS as f64
    );
    op.stop().await?;
    drop(prometheus);
    Ok(())
}
