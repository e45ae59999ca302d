//! What the inference server's test files share.

#![allow(clippy::unwrap_used, dead_code)] // test fixtures: a failed setup step fails the test

use std::net::SocketAddr;

use leitwerk_inference_server::{Server, load_onnxruntime, serve};
use leitwerk_trainer::onnx::{Head, export};
use leitwerk_trainer::preprocess::{Columns, Encoder};
use ort::environment::Environment;

/// ONNX Runtime allows one environment per process: the tests share it.
pub fn environment() -> Environment {
    static ENV: std::sync::OnceLock<Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(load).clone()
}

/// What a project script under `tests/` provides (it prints the path).
pub fn provided(script: &str) -> std::path::PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn load() -> Environment {
    load_onnxruntime(Some(&provided("onnxruntime.sh"))).unwrap()
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

/// Training rows: `visits` (number) and `plan` (category).
pub fn columns() -> Columns {
    let visits: Vec<f64> = (0..40).map(|i| f64::from(i % 10)).collect();
    let plans: Vec<String> = (0..40)
        .map(|i| ["basic", "pro"][i % 2].to_string())
        .collect();
    Columns {
        numeric: vec![("visits".into(), visits)],
        categorical: vec![("plan".into(), plans)],
    }
}

/// A logistic model `sigmoid(w·x + b)` exported with its preprocessing, plus its encoder.
pub fn model_bytes(weight: f64) -> (Vec<u8>, Encoder, Vec<f64>) {
    let enc = Encoder::fit(&columns());
    let weights = vec![weight, 0.5, -0.5, 0.0];
    assert_eq!(enc.width(), weights.len(), "{:?}", enc.feature_names());
    let bytes = export(
        &enc,
        &Head::Logistic {
            weights: &weights,
            intercept: -0.2,
        },
        &[],
    );
    (bytes, enc, weights)
}

pub fn expected(enc: &Encoder, weights: &[f64], visits: &[f64], plans: &[&str]) -> Vec<f64> {
    let cols = Columns {
        numeric: vec![("visits".into(), visits.to_vec())],
        categorical: vec![("plan".into(), plans.iter().map(|s| s.to_string()).collect())],
    };
    let x = enc.transform(&cols);
    let model = leitwerk_trainer::logistic::Logistic {
        weights: ndarray::Array1::from(weights.to_vec()),
        intercept: -0.2,
    };
    model.predict(&x)
}

/// POSTs JSON; the status and the JSON answer (`null` when it is none).
pub async fn post(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}
