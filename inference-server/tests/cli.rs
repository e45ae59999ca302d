//! The inference server states its usage and fails clearly at start-up on bad configuration.

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

/// ONNX Runtime's library from the onnxruntime wheel, as `tests/onnxruntime.sh` provides it.
fn onnxruntime() -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/onnxruntime.sh");
    #[allow(clippy::expect_used)] // a test helper: failing to run the script fails the test
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run tests/onnxruntime.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn with_the_real_library_a_missing_model_file_is_a_clear_start_up_error() {
    let out = Command::new(BIN)
        .args([
            "--model",
            "lead-scoring=v1=file:///m.onnx",
            "--onnxruntime",
            &onnxruntime(),
        ])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loaded ONNX Runtime") && stderr.contains("ORT Build Info"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model lead-scoring v1: file:///m.onnx does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_missing_library_is_a_clear_start_up_error() {
    let out = Command::new(BIN)
        .args(["--model", "m=v1=file:///m.onnx"])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--onnxruntime"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args([
            "--model",
            "m=v1=file:///m.onnx",
            "--onnxruntime",
            "/nonexistent/libonnxruntime.so",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/libonnxruntime.so does not exist")
    );
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused_naming_it() {
    let bogus = std::env::temp_dir().join(format!("not-onnxruntime-{}.so", std::process::id()));
    std::fs::write(&bogus, b"not a shared library").expect("write");
    let out = Command::new(BIN)
        .args(["--model", "m=v1=file:///m.onnx"])
        .env("ORT_DYLIB_PATH", &bogus)
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&bogus);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed to load ONNX Runtime from") && stderr.contains("not-onnxruntime"),
        "{stderr}"
    );
}

#[test]
fn a_model_is_required() {
    let out = Command::new(BIN).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}

/// A model the server must not serve is refused at load, naming the file and what is wrong:
/// a digest that does not match, a model card that is not one, bytes that are not ONNX.
#[test]
fn corrupt_models_digest_mismatches_and_malformed_cards_are_refused_at_load() {
    let dir = std::env::temp_dir().join(format!("lw-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["digest", "card", "corrupt"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        std::fs::write(
            dir.join(sub).join("model.onnx"),
            b"\x08\x07garbage, not a graph",
        )
        .expect("write");
    }
    std::fs::write(dir.join("card/card.json"), b"{\"task\": 12").expect("write");
    let url = |sub: &str| format!("file://{}/{sub}/model.onnx", dir.display());
    let cases = [
        (
            format!("m=v1={}#sha256:{}", url("digest"), "0".repeat(64)),
            format!("expected sha256:{}", "0".repeat(64)),
        ),
        (
            format!("m=v1={}", url("card")),
            "is not a model card".to_string(),
        ),
        (
            format!("m=v1={}", url("corrupt")),
            "cannot load model m v1".to_string(),
        ),
    ];
    for (arg, expected) in cases {
        let out = Command::new(BIN)
            .args(["--model", &arg, "--onnxruntime", &onnxruntime()])
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{arg}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{arg}: {expected:?} missing from {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
