//! Shared helpers of the benchmarks: timing summaries and the ONNX Runtime library.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::time::Duration;

pub mod embedding;
pub mod fuzz_targets;
pub mod mutate;

/// p50, p99 and mean of a set of durations, in microseconds.
pub fn summary(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (at(0.5), at(0.99), mean)
}

/// What a project script under `tests/` provides (it prints the path).
pub fn provided(script: &str) -> std::path::PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .expect("run the script");
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// ONNX Runtime's library, as `tests/onnxruntime.sh` provides it.
pub fn onnxruntime() -> std::path::PathBuf {
    provided("onnxruntime.sh")
}

/// A scratch directory for one benchmark run.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leitwerk-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Generated leads (seed 42, 240 days from 2026-01-01) in `dir`, and the example lead-scoring
/// FeatureSet spec pointed at them.
pub fn lead_data(dir: &std::path::Path, leads: usize) -> leitwerk_crds::FeatureSetSpec {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
    let spec = leitwerk_trainer::datagen::leads::LeadsSpec {
        seed: 42,
        leads,
        start,
        days: 240,
    };
    leitwerk_trainer::datagen::leads::write(&spec, dir).expect("write generated leads");
    let text = include_str!("../../examples/lead-scoring/featureset.yaml")
        .replace("/data/leads", &dir.display().to_string());
    let fs: leitwerk_crds::FeatureSet =
        yaml_serde::from_str(&text).expect("the example FeatureSet parses");
    fs.spec
}
