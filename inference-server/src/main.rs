//! `leitwerk-inference-server`: serves ONNX models over the Open Inference Protocol v2.
//!
//! This release declares its command line, which is the contract with the Deployments the
//! operator will create; serving itself (ONNX Runtime through `ort`, REST and gRPC, per-version
//! metrics and feature histograms) arrives in the next release. Until then it refuses to start
//! instead of pretending to serve.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;

/// Exit status while serving is not implemented.
const NOT_IMPLEMENTED: u8 = 3;

/// Serves Leitwerk models (ONNX, with preprocessing inside the graph) over the Open Inference
/// Protocol v2, REST and gRPC, and exports per-version Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "leitwerk-inference-server", version)]
struct Args {
    /// Model to serve as NAME=VERSION=URL (repeat for several models and versions).
    #[arg(long = "model", value_name = "NAME=VERSION=URL", required = true)]
    models: Vec<String>,
    /// Address of the REST endpoint (and /metrics).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Address of the gRPC endpoint.
    #[arg(long, default_value = "0.0.0.0:8081")]
    grpc_addr: SocketAddr,
    /// Path of ONNX Runtime's shared library (libonnxruntime.so).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// Largest dynamic batch; 1 disables batching.
    #[arg(long, default_value_t = 1)]
    max_batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 0)]
    max_batch_delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!(
        "leitwerk-inference-server: serving is not implemented in {} yet; refusing to start with {} model(s)",
        env!("CARGO_PKG_VERSION"),
        args.models.len()
    );
    ExitCode::from(NOT_IMPLEMENTED)
}
