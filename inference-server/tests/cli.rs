//! The inference server states its usage and refuses to start rather than fake serving.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-inference-server");

#[test]
fn help_states_the_usage() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run leitwerk-inference-server");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Open Inference Protocol")
            && text.contains("--model")
            && text.contains("--grpc-addr"),
        "{text}"
    );
}

#[test]
fn starting_fails_and_says_serving_is_not_implemented() {
    let out = Command::new(BIN)
        .args([
            "--model",
            "lead-scoring=v1=file:///m.onnx",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not implemented"));
}

#[test]
fn a_model_is_required() {
    let out = Command::new(BIN).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}
