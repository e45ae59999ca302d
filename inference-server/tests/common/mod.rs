//! What the inference server's test files share.

#![allow(clippy::unwrap_used, dead_code)] // test fixtures: a failed setup step fails the test

use std::net::SocketAddr;

use leitwerk_inference_server::{Server, load_onnxruntime, serve};
use ort::environment::Environment;

/// ONNX Runtime allows one environment per process: the tests share it.
pub fn environment() -> Environment {
    static ENV: std::sync::OnceLock<Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(load).clone()
}

fn load() -> Environment {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/onnxruntime.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    load_onnxruntime(Some(std::path::Path::new(&path))).unwrap()
}

/// A server running in this process on 127.0.0.1 (ports chosen by the system).
pub struct Running {
    /// The REST address.
    pub http: SocketAddr,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// Sends the shutdown.
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's task.
    pub done: tokio::task::JoinHandle<Result<(), String>>,
}

/// Serves `server` on 127.0.0.1 until `stop` is sent.
pub async fn serve_in_process(server: std::sync::Arc<Server>) -> Running {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let done = tokio::spawn(serve(
        server,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        async move {
            let _ = rx.await;
        },
        move |h, g| {
            let _ = addr_tx.send((h, g));
        },
    ));
    let (http, grpc) = addr_rx.await.unwrap();
    Running {
        http,
        grpc,
        stop: Some(tx),
        done,
    }
}
