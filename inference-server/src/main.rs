//! `leitwerk-inference-server`: serves ONNX models over the Open Inference Protocol v2.
//!
//! This release declares its command line, which is the contract with the Deployments the
//! operator will create, and loads ONNX Runtime's shared library (`ort`, load-dynamic) so that
//! a missing or incompatible library is a clear start-up error. Serving itself (OIP v2 over
//! REST and gRPC, per-version metrics and feature histograms) arrives in the next release;
//! until then it refuses to start instead of pretending to serve.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;

/// Exit status while serving is not implemented.
const NOT_IMPLEMENTED: u8 = 3;
/// Exit status of a configuration error (for example no usable ONNX Runtime library).
const CONFIG_ERROR: u8 = 1;

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
    /// Path of ONNX Runtime's shared library (libonnxruntime.so, e.g. from the onnxruntime
    /// wheel: `tests/onnxruntime.sh` provides one).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// Largest dynamic batch; 1 disables batching.
    #[arg(long, default_value_t = 1)]
    max_batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 0)]
    max_batch_delay_ms: u64,
}

/// Loads ONNX Runtime from `path` and returns its build information.
fn load_onnxruntime(path: Option<&PathBuf>) -> Result<&'static str, String> {
    let path = path.ok_or("no ONNX Runtime library configured: pass --onnxruntime PATH or set ORT_DYLIB_PATH to libonnxruntime.so (for example from the onnxruntime wheel)")?;
    if !path.is_file() {
        return Err(format!(
            "ONNX Runtime library {} does not exist: fix --onnxruntime / ORT_DYLIB_PATH",
            path.display()
        ));
    }
    let builder = ort::init_from(path).map_err(|e| {
        format!(
            "failed to load ONNX Runtime from {} (is it libonnxruntime.so 1.31 or newer?): {e}",
            path.display()
        )
    })?;
    builder
        .with_name("leitwerk-inference-server")
        .build()
        .map_err(|e| {
            format!(
                "failed to create the ONNX Runtime environment from {}: {e}",
                path.display()
            )
        })?;
    Ok(ort::info())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match load_onnxruntime(args.onnxruntime.as_ref()) {
        Ok(info) => eprintln!("leitwerk-inference-server: loaded ONNX Runtime ({info})"),
        Err(problem) => {
            eprintln!("leitwerk-inference-server: {problem}");
            return ExitCode::from(CONFIG_ERROR);
        }
    }
    eprintln!(
        "leitwerk-inference-server: serving is not implemented in {} yet; refusing to start with {} model(s)",
        env!("CARGO_PKG_VERSION"),
        args.models.len()
    );
    ExitCode::from(NOT_IMPLEMENTED)
}
