//! `leitwerk-dev`: Leitwerk's local development node, the node stand-in of the end-to-end
//! tests (`tests/src/node.rs`) as a tool of its own.
//!
//! There is no kubelet or container runtime on a development machine without Docker, so this
//! registers a Node with the API server of `$KUBECONFIG` and runs the pods the real
//! kube-scheduler binds to it as local processes of the project's binaries (an image table
//! maps each image name to one). It is not a kubelet: see `tests/README.md` for what it does
//! and does not do. `leitwerk-dev traffic` stands in for a marketing site's visitors: it sends
//! scoring requests through an Experiment's routes and reports conversions drawn from a true
//! rate per variant. `leitwerk-dev generator` serves the tests' generator stand-in, which is
//! not a model. The quick start (`tests/cluster/quickstart.sh`) runs all three.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use leitwerk_testkit::loadgen::{Load, LoadGenerator, pod_network, ports_in_file};
use leitwerk_testkit::node::{Image, NodeStandIn};

/// Leitwerk's development tools.
#[derive(Parser, Debug)]
#[command(name = "leitwerk-dev", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a development node until interrupted.
    Node(NodeArgs),
    /// Sends scoring traffic through an Experiment and reports conversions until interrupted
    /// or `--max-requests`.
    Traffic(TrafficArgs),
    /// Serves the generator stand-in of the tests (`tests/src/standin.rs`) until interrupted:
    /// an OpenAI-compatible endpoint on 127.0.0.1 that is NOT a model. It composes every answer
    /// from the sources in its prompt, standing in for a large hosted model, so that a
    /// ContentPipeline can be followed to approval and publication on a laptop.
    /// Keeps a Prometheus `file_sd` file up to date with the metrics endpoint of every
    /// serving pod Leitwerk runs on a real node (its pod address and its port named `http`),
    /// each labelled with the pod's real namespace, until interrupted: what a
    /// `kubernetes_sd_configs` job does, for a Prometheus built without Kubernetes discovery
    /// (Debian's).
    Targets {
        /// The `file_sd` file to write.
        #[arg(long)]
        file: PathBuf,
        /// Only pods in this namespace (default: every namespace).
        #[arg(long)]
        namespace: Option<String>,
    },
    Generator {
        /// A file to write its base URL (`http://ADDRESS:PORT/v1`) to.
        #[arg(long)]
        url_file: PathBuf,
        /// The local address to listen on: loopback for pods of the node stand-in, the
        /// node bridge's address (e.g. 10.244.0.1) for pods on a real node.
        #[arg(long, default_value = "127.0.0.1")]
        listen: std::net::IpAddr,
    },
}

/// `leitwerk-dev node`.
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// The Node's name.
    #[arg(long, default_value = "leitwerk-dev-node")]
    name: String,
    /// GPUs the Node advertises as `nvidia.com/gpu` (scheduling only: the processes run on
    /// this machine's CPU).
    #[arg(long, default_value_t = 1)]
    gpus: u32,
    /// Directory for per-pod files (logs, termination messages, emptyDirs).
    #[arg(long)]
    root: PathBuf,
    /// An image and the binary it stands for, `IMAGE=BINARY`; repeat per image.
    #[arg(long = "image", value_parser = pair, required = true)]
    images: Vec<(String, String)>,
    /// Environment every container gets, as the images would bake it in (`KEY=VALUE`).
    #[arg(long = "env", value_parser = pair)]
    env: Vec<(String, String)>,
    /// A file kept up to date with the loopback ports of serving pods, as JSON
    /// (`{"namespace/pod": [http, grpc]}`): a pod network would give each pod its own address.
    #[arg(long)]
    ports_file: Option<PathBuf>,
    /// A Prometheus `file_sd` file kept up to date with every serving pod's metrics endpoint.
    #[arg(long)]
    prometheus_targets: Option<PathBuf>,
}

/// `leitwerk-dev traffic`.
#[derive(clap::Args, Debug)]
struct TrafficArgs {
    /// Namespace of the Experiment.
    #[arg(long)]
    namespace: String,
    /// The Experiment whose HTTPRoute (or Service) takes the traffic.
    #[arg(long)]
    experiment: String,
    /// The model name in the request path.
    #[arg(long)]
    model: String,
    /// A JSON array of OIP v2 inference requests, sent in turn.
    #[arg(long)]
    requests: PathBuf,
    /// The true conversion rate of a variant, `VARIANT=RATE`; repeat per variant.
    #[arg(long = "truth", value_parser = rate)]
    truth: Vec<(String, f64)>,
    /// Requests per second.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 100_000)]
    max_requests: u64,
    /// The node stand-in's `--ports-file`. Without it, pods are reached at their pod
    /// addresses, as on a real node with a pod network.
    #[arg(long)]
    ports_file: Option<PathBuf>,
    /// Seed of the routing and conversion draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn rate(s: &str) -> Result<(String, f64), String> {
    let (variant, value) = pair(s)?;
    let value: f64 = value
        .parse()
        .map_err(|e| format!("{s:?}: the rate is not a number: {e}"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{s:?}: a rate lies between 0 and 1"));
    }
    Ok((variant, value))
}

fn pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Node(args) => node(args).await,
        Command::Traffic(args) => traffic(args).await,
        Command::Targets { file, namespace } => targets(file, namespace).await,
        Command::Generator { url_file, listen } => {
            anyhow::ensure!(
                is_local(listen),
                "--listen {listen}: the generator stand-in serves this machine only (a loopback or private address)"
            );
            let generator =
                leitwerk_testkit::standin::GeneratorStandIn::start_on(&format!("{listen}:0"))
                    .await?;
            write_atomically(&url_file, &generator.base_url)?;
            eprintln!(
                "leitwerk-dev: the generator stand-in (not a model: it quotes the sources in its prompt) serves {}",
                generator.base_url
            );
            until_stopped(|| Ok(true)).await
        }
    }
}

/// Whether `ip` is an address that only this machine (or its pods) can reach.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Waits for SIGTERM or Ctrl-C, doing `tick` twice a second meanwhile.
async fn until_stopped(mut tick: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = every.tick() => if !tick()? { return Ok(()) },
        }
    }
}

fn write_atomically(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let part = file.with_extension("part");
    std::fs::write(&part, text)?;
    std::fs::rename(&part, file)?;
    Ok(())
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let mut images = HashMap::new();
    for (image, binary) in &args.images {
        let binary = PathBuf::from(binary);
        anyhow::ensure!(
            binary.is_file(),
            "--image {image}={}: no such binary; build it first (cargo build --workspace --bins)",
            binary.display()
        );
        images.insert(
            image.clone(),
            Image {
                binary,
                env: args.env.clone(),
            },
        );
    }
    std::fs::create_dir_all(&args.root)?;
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no cluster to join (set KUBECONFIG to the control plane's): {e}")
    })?;
    let node = NodeStandIn::start(client, &args.name, args.gpus, &args.root, images).await?;
    eprintln!(
        "leitwerk-dev: node {} ({} GPU) runs the pods bound to it; pod files under {}",
        args.name,
        args.gpus,
        args.root.display()
    );
    let mut last = String::new();
    until_stopped(|| {
        let ports: HashMap<String, (u16, u16)> = node.all_ports().into_iter().collect();
        let text = serde_json::to_string(&ports)?;
        if text != last {
            if let Some(file) = &args.ports_file {
                write_atomically(file, &text)?;
            }
            if let Some(file) = &args.prometheus_targets {
                // Each target labelled with its pod's namespace (the key is namespace/pod).
                let targets: Vec<(String, String)> = ports
                    .iter()
                    .map(|(key, (http, _))| {
                        let ns = key.split('/').next().unwrap_or_default().to_string();
                        (format!("127.0.0.1:{http}"), ns)
                    })
                    .collect();
                let sd = leitwerk_testkit::prometheus::namespaced_groups(&targets);
                write_atomically(file, &sd.to_string())?;
            }
            last = text;
        }
        Ok(true)
    })
    .await?;
    eprintln!("leitwerk-dev: stopping node {}", args.name);
    drop(node);
    Ok(())
}

async fn targets(file: PathBuf, namespace: Option<String>) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no cluster to find pods in (set KUBECONFIG to the control plane's): {e}")
    })?;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = match &namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let reach = pod_network();
    let selector = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=leitwerk");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last = String::new();
    eprintln!(
        "leitwerk-dev: keeping {} up to date with Leitwerk's serving pods",
        file.display()
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = every.tick() => {}
        }
        let Ok(list) = pods.list(&selector).await else {
            continue;
        };
        let targets: Vec<(String, String)> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| {
                // The namespace comes from the pod's metadata, never from what it exports.
                let ns = kube::ResourceExt::namespace(p)?;
                Some((reach(p)?.to_string(), ns))
            })
            .collect();
        let text = leitwerk_testkit::prometheus::namespaced_groups(&targets).to_string();
        if text != last {
            write_atomically(&file, &text)?;
            last = text;
        }
    }
}

async fn traffic(args: TrafficArgs) -> anyhow::Result<()> {
    let requests: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(&args.requests)
            .map_err(|e| anyhow::anyhow!("--requests {}: {e}", args.requests.display()))?,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "--requests {}: not a JSON array of requests: {e}",
            args.requests.display()
        )
    })?;
    anyhow::ensure!(
        !requests.is_empty(),
        "--requests {}: no requests",
        args.requests.display()
    );
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no cluster to read routes from (set KUBECONFIG to the control plane's): {e}"
        )
    })?;
    let truth = args.truth.iter().cloned().collect();
    let load = LoadGenerator::start(
        client,
        match &args.ports_file {
            Some(file) => ports_in_file(file.clone()),
            None => pod_network(),
        },
        Load {
            namespace: args.namespace.clone(),
            experiment: args.experiment.clone(),
            model: args.model.clone(),
            requests,
            drifted_requests: Vec::new(),
            drifted: Vec::new(),
            truth,
            rate: args.rate,
            max_requests: args.max_requests,
            seed: args.seed,
        },
    );
    eprintln!(
        "leitwerk-dev: traffic to {}/{} at {} requests/s, true conversion rates {:?}",
        args.namespace, args.experiment, args.rate, args.truth
    );
    let mut ticks = 0_u64;
    until_stopped(|| {
        ticks += 1;
        if ticks.is_multiple_of(20) {
            eprintln!(
                "leitwerk-dev: scored and converted per variant {:?}",
                load.tally()
            );
            if let Some(e) = load.errors().last() {
                eprintln!("leitwerk-dev: last error: {e}");
            }
        }
        let sent: u64 = load.tally().values().map(|(n, _)| n).sum();
        Ok(sent < args.max_requests)
    })
    .await
}
