//! `leitwerk-dev`: Leitwerk's local development node, the node stand-in of the end-to-end
//! tests (`tests/src/node.rs`) as a tool of its own.
//!
//! There is no kubelet or container runtime on a development machine without Docker, so this
//! registers a Node with the API server of `$KUBECONFIG` and runs the pods the real
//! kube-scheduler binds to it as local processes of the project's binaries (an image table
//! maps each image name to one). It is not a kubelet: see `tests/README.md` for what it does
//! and does not do. The quick start (`tests/cluster/quickstart.sh`) runs it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use leitwerk_testkit::node::{Image, NodeStandIn};

/// Runs a development node until interrupted.
#[derive(Parser, Debug)]
#[command(name = "leitwerk-dev", version, about)]
struct Args {
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
    let args = Args::parse();
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
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                if let Some(file) = &args.ports_file {
                    let ports: HashMap<String, (u16, u16)> = node.all_ports().into_iter().collect();
                    let text = serde_json::to_string(&ports)?;
                    if text != last {
                        let part = file.with_extension("part");
                        std::fs::write(&part, &text)?;
                        std::fs::rename(&part, file)?;
                        last = text;
                    }
                }
            }
        }
    }
    eprintln!("leitwerk-dev: stopping node {}", args.name);
    drop(node);
    Ok(())
}
