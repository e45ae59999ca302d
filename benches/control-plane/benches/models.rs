//! The operator at scale against the local control plane: N Models (bring-your-own ONNX, so no
//! training), each with a FeatureSet and an Experiment beside it, for N = 1,000 and 5,000 (or
//! the sizes given as arguments).
//!
//! Figures per size: the time from the first create to every Model Ready; API requests per
//! reconcile (the operator's own `leitwerk_api_requests_total` over `leitwerk_reconcile_total`);
//! the operator's CPU and resident memory; the requests it sends in a settled minute (lease
//! renewals apart); and its memory through a forced relist, when the API server restarts and
//! every watch resumes from a resourceVersion the new server no longer has (410 Gone).
//!
//! The control plane is etcd and kube-apiserver only (`up.sh --minimal`). There is no
//! kube-controller-manager, scheduler or node: an availability stand-in in this process (see
//! [`stand_in_available`]) does what the Deployment controller and a kubelet would report for a
//! healthy serving Deployment, its status `availableReplicas`, so that a Model can be Ready
//! without 5,000 inference servers on two cores. Serving itself is tested with real servers in
//! `operator/tests/cluster/`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use leitwerk_control_plane_benches::counts::Counts;
use leitwerk_control_plane_benches::stand_in::{
    applied, restart_apiserver, sockets, stand_in_available, stand_in_jobs,
};
use leitwerk_control_plane_benches::{control_plane_cpu, cpu_seconds, memory_mib, operator_binary};
use leitwerk_crds::{Experiment, FeatureSet, Model};
use leitwerk_testkit::{Cluster, TestNamespace, free_port, wait_for};

/// Creates in flight at once, as `kubectl apply --server-side` of a large kustomization would
/// send them (kubectl sends one at a time; 16 is kinder to the bench than to the operator).
const CREATE_CONCURRENCY: usize = 16;

fn feature_set(i: usize) -> anyhow::Result<FeatureSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "leitwerk.dev/v1alpha1", "kind": "FeatureSet",
        "metadata": {"name": format!("fs-{i:05}")},
        "spec": {
            "sources": [
                {"name": "customers", "format": "Csv", "file": {"path": "/data/customers.csv", "claimName": "leitwerk-data"}},
                {"name": "cancellations", "format": "Csv", "file": {"path": "/data/cancellations.csv", "claimName": "leitwerk-data"}}
            ],
            "entityKey": "customer_id",
            "eventTimestamp": "ts",
            "label": {"name": "churned_60d", "source": "cancellations", "kind": "EventOccurs", "horizon": "60d"},
            "features": [
                {"name": "tenure", "source": "customers", "aggregation": "Static", "column": "tenure"},
                {"name": "monthly_charges", "source": "customers", "aggregation": "Static", "column": "monthly_charges"}
            ],
            "cutoffs": {"dates": ["2025-07-01", "2025-10-01"]}
        }
    }))?)
}

fn model(i: usize) -> anyhow::Result<Model> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "leitwerk.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": format!("m-{i:05}")},
        "spec": {
            "task": "BinaryClassification",
            "onnx": {"url": format!("file:///models/m-{i:05}.onnx")},
            "serving": {"replicas": 1}
        }
    }))?)
}

fn experiment(i: usize) -> anyhow::Result<Experiment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "leitwerk.dev/v1alpha1", "kind": "Experiment",
        "metadata": {"name": format!("e-{i:05}")},
        "spec": {
            "variants": [
                {"name": "stable", "modelRef": {"name": format!("m-{i:05}")}, "role": "Stable"},
                {"name": "canary", "modelRef": {"name": format!("m-{i:05}")}, "role": "Candidate"}
            ],
            "strategy": {"type": "Canary", "canary": {"steps": [10, 50, 100]}},
            "kpis": [{"name": "conversion-rate", "query": "vector(1)", "min": 0.5}],
            "interval": "1m"
        }
    }))?)
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits (at most `limit`) until `n` objects of `K` in the namespace are `done`.
async fn all_done<K>(
    client: &Client,
    ns: &str,
    n: usize,
    done: fn(&K) -> bool,
) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let limit = Duration::from_secs(1800);
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut states: HashMap<String, bool> = HashMap::new();
    let mut events = applied(api);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} of {n} {} done after {limit:?}",
                    states.values().filter(|r| **r).count(),
                    K::kind(&())
                )
            })?;
        let Some(o) = next else {
            anyhow::bail!("the {} watch ended", K::kind(&()));
        };
        states.insert(o.name_any(), done(&o));
        if states.len() == n && states.values().all(|r| *r) {
            return Ok(());
        }
    }
}

struct Operator {
    child: tokio::process::Child,
    metrics_url: String,
}

impl Operator {
    async fn start(cluster: &Cluster, ns: &str) -> anyhow::Result<Operator> {
        leitwerk_testkit::grant_leader_election(cluster, ns)?;
        let port = free_port()?;
        let log = std::fs::File::create(cluster.dir.join("operator.log"))?;
        let child = tokio::process::Command::new(operator_binary()?)
            .args([
                "--namespace",
                ns,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", &cluster.operator_kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let op = Operator {
            child,
            metrics_url: format!("http://127.0.0.1:{port}"),
        };
        wait_for(
            "the operator to be ready",
            Duration::from_secs(60),
            || async {
                let ok = reqwest::get(format!("{}/readyz", op.metrics_url))
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok((ok.then_some(()), "not ready".to_string()))
            },
        )
        .await?;
        Ok(op)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the operator exited"))
    }

    async fn counts(&self) -> anyhow::Result<Counts> {
        let text = reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?;
        Ok(Counts::from_metrics(&text))
    }

    /// Waits until no reconcile has run for `quiet` (at most `limit`).
    async fn settle(&self, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = self.counts().await?.reconciles;
        let mut since = Instant::now();
        while start.elapsed() < limit {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.counts().await?.reconciles;
            if (now - last).abs() > f64::EPSILON {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
        }
        anyhow::bail!("the operator did not settle in {limit:?}")
    }
}

async fn create_all(client: &Client, ns: &str, n: usize) -> anyhow::Result<()> {
    let fs: Api<FeatureSet> = Api::namespaced(client.clone(), ns);
    let models: Api<Model> = Api::namespaced(client.clone(), ns);
    let exps: Api<Experiment> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    futures::stream::iter(0..n)
        .map(|i| {
            let (fs, models, exps, pp) = (&fs, &models, &exps, &pp);
            async move {
                fs.create(pp, &feature_set(i)?).await?;
                models.create(pp, &model(i)?).await?;
                exps.create(pp, &experiment(i)?).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn run(n: usize) -> anyhow::Result<serde_json::Value> {
    let dir =
        std::env::temp_dir().join(format!("leitwerk-bench-models-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&dir.join("cluster"), true)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    let client = cluster.client().await?;
    let ns = TestNamespace::create(&cluster, "scale").await?;
    let stand_in = tokio::spawn(stand_in_available(client.clone(), ns.name.clone()));
    let stand_in_jobs = tokio::spawn(stand_in_jobs(client.clone(), ns.name.clone()));
    let op = Operator::start(&cluster, &ns.name).await?;
    let pid = op.pid()?;
    let (rss_idle, _) = memory_mib(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let others_before = control_plane_cpu(&cluster.dir);
    let before = op.counts().await?;

    let start = Instant::now();
    let (created, ready, fs_ready) = tokio::join!(
        async {
            create_all(&client, &ns.name, n).await?;
            anyhow::Ok(start.elapsed())
        },
        async {
            all_done::<Model>(&client, &ns.name, n, |m| {
                m.status.as_ref().is_some_and(|s| ready(&s.conditions))
            })
            .await?;
            anyhow::Ok(start.elapsed())
        },
        async {
            all_done::<FeatureSet>(&client, &ns.name, n, |f| {
                f.status.as_ref().is_some_and(|s| ready(&s.conditions))
            })
            .await?;
            anyhow::Ok(start.elapsed())
        }
    );
    let (created, ready, fs_ready) = (created?, ready?, fs_ready?);
    op.settle(Duration::from_secs(10), Duration::from_secs(600))
        .await?;
    let settled = start.elapsed().saturating_sub(Duration::from_secs(10));
    let cpu_apply = cpu_seconds(pid)? - cpu_before;
    let others_used: BTreeMap<String, f64> = control_plane_cpu(&cluster.dir)
        .into_iter()
        .map(|(name, cpu)| {
            let used = cpu - others_before.get(&name).copied().unwrap_or(0.0);
            (name, used)
        })
        .collect();
    let others: Vec<String> = others_used
        .iter()
        .map(|(name, used)| format!("{name} {used:.1} s"))
        .collect();
    let after = op.counts().await?;
    let apply = after.minus(&before);
    let (rss_loaded, peak_loaded) = memory_mib(pid)?;
    let sockets_loaded = sockets(pid);

    // A settled minute: what does the operator send?
    let steady_window = Duration::from_secs(60);
    let cpu0 = cpu_seconds(pid)?;
    tokio::time::sleep(steady_window).await;
    let steady = op.counts().await?.minus(&after);
    let cpu_steady = (cpu_seconds(pid)? - cpu0) / steady_window.as_secs_f64();
    let (rss_steady, _) = memory_mib(pid)?;

    // A forced relist.
    let relist_before = op.counts().await?;
    restart_apiserver(&cluster).await?;
    op.settle(Duration::from_secs(10), Duration::from_secs(600))
        .await?;
    let relist = op.counts().await?.minus(&relist_before);
    let (rss_relist, peak_relist) = memory_mib(pid)?;
    stand_in.abort();
    stand_in_jobs.abort();

    println!("\n== {n} Models (bring-your-own ONNX), {n} FeatureSets, {n} Experiments ==");
    println!(
        "created {} objects in {:.1} s ({CREATE_CONCURRENCY} creates in flight); every Model Ready after {:.1} s, every FeatureSet Ready (snapshot published) after {:.1} s; operator settled after {:.1} s",
        3 * n,
        created.as_secs_f64(),
        ready.as_secs_f64(),
        fs_ready.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "reconciles: {:.0} ({:.2} per object); API requests (watches apart): {:.0}, {:.2} per reconcile; by verb: {}",
        apply.reconciles,
        apply.reconciles / (3 * n) as f64,
        apply.non_watch(),
        apply.non_watch() / apply.reconciles.max(1.0),
        apply.verbs()
    );
    let mut top: Vec<(&String, &f64)> = apply
        .by_resource
        .iter()
        .filter(|(k, _)| !k.starts_with("watch "))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    println!(
        "most requested: {}",
        top.iter()
            .take(12)
            .map(|(k, n)| format!("{k} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "operator CPU: {cpu_apply:.1} s from the first create until settled; {:.2} % of a core in the settled minute",
        cpu_steady * 100.0
    );
    println!(
        "beside it, until settled ({:.1} s on {} CPUs): {}",
        settled.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        others.join(", ")
    );
    println!(
        "operator memory: RSS {rss_idle:.1} MiB before, {rss_loaded:.1} MiB loaded (peak {peak_loaded:.1}), {rss_steady:.1} MiB after a settled minute; {sockets_loaded} sockets open when settled"
    );
    println!(
        "settled minute: {:.0} requests besides lease renewals ({}), {:.0} lease requests, {:.0} reconciles",
        steady.non_watch(),
        steady.verbs(),
        steady.leases,
        steady.reconciles
    );
    println!(
        "forced relist (API server restarted): {:.0} lists, {:.0} watches, {:.0} reconciles, {:.0} other requests; RSS {rss_relist:.1} MiB after, peak {peak_relist:.1} MiB",
        relist.requests.get("list").copied().unwrap_or(0.0),
        relist.requests.get("watch").copied().unwrap_or(0.0),
        relist.reconciles,
        relist.non_watch() - relist.requests.get("list").copied().unwrap_or(0.0)
    );
    let figures = serde_json::json!({
        "objects": 3 * n,
        "created_s": created.as_secs_f64(),
        "models_ready_s": ready.as_secs_f64(),
        "feature_sets_ready_s": fs_ready.as_secs_f64(),
        "settled_s": settled.as_secs_f64(),
        "reconciles": apply.reconciles,
        "requests": apply.non_watch(),
        "requests_by_verb": apply.requests,
        "most_requested": top.iter().take(12).map(|(k, n)| (k.to_string(), **n)).collect::<BTreeMap<_, _>>(),
        "operator_cpu_s": cpu_apply,
        "cpu_beside_s": others_used,
        "rss_idle_mib": rss_idle,
        "rss_loaded_mib": rss_loaded,
        "rss_settled_mib": rss_steady,
        "settled_minute_requests": steady.non_watch(),
        "settled_minute_leases": steady.leases,
        "relist_lists": relist.requests.get("list").copied().unwrap_or(0.0),
        "relist_reconciles": relist.reconciles,
        "rss_after_relist_mib": rss_relist,
        "rss_relist_peak_mib": peak_relist,
    });
    drop(op);
    drop(ns);
    Ok(figures)
}

/// The directory under `benches/results/` this bench writes.
const RESULTS: &str = "operator-scale";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1000, 5000];
    }
    // Sizes run before are kept in results.json unless this run measures them again.
    let mut results = leitwerk_testkit::read_bench_results(RESULTS)
        .and_then(|r| r["sizes"].as_object().cloned())
        .unwrap_or_default();
    for n in sizes {
        results.insert(n.to_string(), run(n).await?);
        let path = leitwerk_testkit::write_bench_results(
            RESULTS,
            &serde_json::json!({
                "what": "bring-your-own ONNX Models with their FeatureSets and Experiments; etcd, kube-apiserver and the release operator on this machine",
                "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
                "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
                "goals": {"models_ready_s_at_1000": 30, "rss_mib_at_5000_objects": 64, "settled_minute_requests": 0},
                "sizes": results,
            }),
        )?;
        println!(
            "figures: {} (chart: bash benches/charts.sh {RESULTS})",
            path.display()
        );
    }
    Ok(())
}
