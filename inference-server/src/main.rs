//! `leitwerk-inference-server`: serves ONNX models over the Open Inference Protocol v2.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use leitwerk_inference_server::retrieval::{IndexArg, Retrieval, SearchMode};
use leitwerk_inference_server::{Batching, ModelArg, Server, load_models, load_onnxruntime, serve};

/// Exit status of a configuration error (no usable ONNX Runtime library, a model that does
/// not load, an address in use).
const CONFIG_ERROR: u8 = 1;

/// Serves Leitwerk models (ONNX, with preprocessing inside the graph) over the Open Inference
/// Protocol v2, REST and gRPC, and exports per-version Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "leitwerk-inference-server", version)]
struct Args {
    /// Model to serve as NAME=VERSION=URL[#sha256:HEX] (repeat for several models and
    /// versions; the first version of a name is its default).
    #[arg(
        long = "model",
        value_name = "NAME=VERSION=URL",
        required_unless_present = "embedding_model_dir"
    )]
    models: Vec<ModelArg>,
    /// RagIndex version to serve as NAME=URL of its index file (repeatable); needs
    /// --embedding-model-dir, the model it was built with.
    #[arg(
        long = "index",
        value_name = "NAME=URL",
        requires = "embedding_model_dir"
    )]
    indexes: Vec<IndexArg>,
    /// Directory of the embedding model (`config.json`, `tokenizer.json`,
    /// `model.safetensors`; `tests/minilm.sh` provides all-MiniLM-L6-v2): serves
    /// `/v1/embeddings` and the indexes' `/v1/indexes/{name}/query`.
    #[arg(long, env = "LEITWERK_EMBEDDING_MODEL_DIR")]
    embedding_model_dir: Option<PathBuf>,
    /// How index queries that name no `mode` rank chunks.
    #[arg(long, value_enum, default_value = "Dense")]
    search_mode: SearchMode,
    /// Address of the REST endpoint (and /metrics).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Address of the gRPC endpoint.
    #[arg(long, default_value = "0.0.0.0:8081")]
    grpc_addr: SocketAddr,
    /// Path of ONNX Runtime's shared library (libonnxruntime.so, e.g. from the onnxruntime
    /// wheel: `tests/onnxruntime.sh` provides one).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// Largest dynamic batch in rows; 1 disables batching.
    #[arg(long, default_value_t = 1)]
    max_batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 0)]
    max_batch_delay_ms: u64,
    /// Predictions remembered for the feedback endpoint (oldest forgotten first).
    #[arg(long, default_value_t = 100_000)]
    feedback_capacity: usize,
    /// Constant label on every metric as KEY=VALUE (repeatable), e.g. `variant=canary`; the
    /// operator sets namespace, experiment and variant.
    #[arg(long = "metric-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    metric_labels: Vec<(String, String)>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("--metric-label {text:?} is not KEY=VALUE"))?;
    let valid_key = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key || k.starts_with("__") {
        return Err(format!(
            "--metric-label key {k:?} is not a Prometheus label name: use letters, digits and _, e.g. variant=canary"
        ));
    }
    if [
        "model", "version", "feature", "bucket", "kind", "outcome", "code", "protocol",
    ]
    .contains(&k)
    {
        return Err(format!(
            "--metric-label key {k:?} is a label the server sets itself; pick another"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    eprintln!("leitwerk-inference-server: shutting down; finishing in-flight requests");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let models = if args.models.is_empty() {
        Vec::new()
    } else {
        let environment = match load_onnxruntime(args.onnxruntime.as_deref()) {
            Ok(env) => env,
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        };
        eprintln!(
            "leitwerk-inference-server: loaded ONNX Runtime ({})",
            ort::info()
        );
        match load_models(&environment, &args.models).await {
            Ok(m) => m,
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    };
    let retrieval = match &args.embedding_model_dir {
        Some(dir) => match Retrieval::load(dir, &args.indexes, args.search_mode).await {
            Ok(r) => Some(r),
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        },
        None => None,
    };
    let batching = (args.max_batch_size > 1).then(|| Batching {
        max_batch_size: args.max_batch_size,
        max_delay: Duration::from_millis(args.max_batch_delay_ms),
    });
    let mut names: Vec<String> = models
        .iter()
        .map(|m| format!("{} {}", m.name, m.version))
        .collect();
    if let Some(r) = &retrieval {
        names.push("embeddings".into());
        names.extend(
            r.served()
                .into_iter()
                .map(|(n, v, chunks)| format!("index {n} {v} ({chunks} chunks)")),
        );
    }
    let server = Server::with_labels(
        models,
        batching,
        args.feedback_capacity,
        &args.metric_labels,
    );
    if let Some(r) = retrieval {
        let _ = server.retrieval.set(std::sync::Arc::new(r));
    }
    let result = serve(server, args.http_addr, args.grpc_addr, shutdown_signal(), |http, grpc| {
        eprintln!("leitwerk-inference-server: serving {} on http://{http} (REST, /metrics) and {grpc} (gRPC)", names.join(", "));
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("leitwerk-inference-server: {problem}");
            ExitCode::from(CONFIG_ERROR)
        }
    }
}
