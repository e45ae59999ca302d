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

/// The lead-scoring snapshot encoded as the trainer encodes it: the time-ordered split's
/// training and validation matrices, their labels (0/1) and the training rows' cutoffs.
pub struct LeadMatrices {
    /// Training rows.
    pub x_train: ndarray::Array2<f64>,
    /// Validation rows (the newest 20 % of the cutoffs).
    pub x_valid: ndarray::Array2<f64>,
    /// Training labels.
    pub y_train: Vec<f64>,
    /// Validation labels.
    pub y_valid: Vec<f64>,
    /// Each training row's cutoff (ms).
    pub cutoffs: Vec<i64>,
}

/// Generates `leads` leads in `dir`, materializes the example FeatureSet and encodes the
/// time-ordered split.
pub fn lead_matrices(dir: &std::path::Path, leads: usize) -> LeadMatrices {
    use leitwerk_trainer::{materialize, pipeline, store::Store};
    let fs_spec = lead_data(dir, leads);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let store = format!("file://{}/store", dir.display());
    let t = std::time::Instant::now();
    let snap = runtime
        .block_on(pipeline::run_materialize(
            &fs_spec, "bench", "leads", &store, dir,
        ))
        .expect("materialize");
    println!(
        "materialize (polars, {} rows): {:.2} s",
        snap.rows,
        t.elapsed().as_secs_f64()
    );
    let snapshot = Store::open(&snap.location.expect("published")).expect("the store");
    let manifest: materialize::Manifest = serde_json::from_slice(
        &runtime
            .block_on(snapshot.get("manifest.json"))
            .expect("the manifest"),
    )
    .expect("a manifest");
    let frame = materialize::from_parquet(
        runtime
            .block_on(snapshot.get("features.parquet"))
            .expect("the snapshot"),
    )
    .expect("Parquet");
    let table = pipeline::table(&frame, &manifest).expect("a table");
    let (train_idx, valid_idx) = pipeline::time_split(&table.cutoff, 0.2).expect("a split");
    let (train, valid) = (
        table.columns.take(&train_idx),
        table.columns.take(&valid_idx),
    );
    let encoder = leitwerk_trainer::preprocess::Encoder::fit(&train);
    LeadMatrices {
        x_train: encoder.transform(&train),
        x_valid: encoder.transform(&valid),
        y_train: train_idx.iter().map(|&i| table.label[i]).collect(),
        y_valid: valid_idx.iter().map(|&i| table.label[i]).collect(),
        cutoffs: train_idx.iter().map(|&i| table.cutoff[i]).collect(),
    }
}

/// Trains the lead-scoring example Model (with `algorithm` in place of its own, when given) on
/// `leads` generated leads with the trainer's own pipeline; returns the ONNX bytes and the
/// model card. The trainer's parity check creates ONNX Runtime's one environment of the
/// process: a benchmark that serves in-process trains in a child process.
pub fn train_lead_model(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    leads: usize,
    algorithm: Option<serde_json::Value>,
) -> (Vec<u8>, serde_json::Value) {
    use leitwerk_trainer::pipeline::{self, TrainJob};
    let dir = scratch(name);
    let fs_spec = lead_data(&dir, leads);
    let store = format!("file://{}/store", dir.display());
    let snap = runtime
        .block_on(pipeline::run_materialize(
            &fs_spec, "bench", "leads", &store, &dir,
        ))
        .unwrap();
    let mut model: leitwerk_crds::Model =
        yaml_serde::from_str(include_str!("../../examples/lead-scoring/model.yaml")).unwrap();
    if let Some(algorithm) = algorithm {
        model.spec.algorithm = serde_json::from_value(algorithm).unwrap();
    }
    let job = TrainJob {
        namespace: "bench".into(),
        name: "lead-scoring".into(),
        version: "v1".into(),
        snapshot: snap.location.unwrap(),
        store,
        onnxruntime: onnxruntime(),
    };
    let summary = runtime
        .block_on(pipeline::run_train(&model.spec, &job))
        .unwrap();
    let path = summary.model_url.trim_start_matches("file://").to_string();
    let bytes = std::fs::read(&path).unwrap();
    let card = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(&path).with_file_name("card.json")).unwrap(),
    )
    .unwrap();
    (bytes, card)
}

/// A free TCP port on 127.0.0.1 (bound, then released for the process that will listen).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
