//! What the inference server's test files share.

#![allow(clippy::unwrap_used, dead_code)] // test fixtures: a failed setup step fails the test

use leitwerk_inference_server::load_onnxruntime;
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
