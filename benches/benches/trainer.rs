//! Trainer fit time and validation AUC against scikit-learn on the same matrices: the
//! lead-scoring snapshot (generated data, the example FeatureSet), encoded once by the
//! trainer's own preprocessing, then logistic regression and a decision tree.
//!
//! `cargo bench -p leitwerk-benches --bench trainer` (scikit-learn: `pip install scikit-learn`)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::io::Write;
use std::time::{Duration, Instant};

use leitwerk_benches::scratch;
use leitwerk_trainer::logistic::Logistic;
use leitwerk_trainer::materialize;
use leitwerk_trainer::metrics::roc_auc;
use leitwerk_trainer::pipeline;
use leitwerk_trainer::preprocess::Encoder;
use leitwerk_trainer::store::Store;
use leitwerk_trainer::tree::{Forest, ForestParams};
use ndarray::Array2;

const L2: f64 = 0.5;
const MAX_ITER: u64 = 300;
const DEPTH: usize = 6;
const MIN_LEAF: usize = 20;

fn median_of_3<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[1], last.unwrap())
}

fn write_matrix(path: &std::path::Path, x: &Array2<f64>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for row in x.rows() {
        let line: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        writeln!(out, "{}", line.join(",")).unwrap();
    }
}

fn main() {
    let dir = scratch("trainer");
    let fs_spec = leitwerk_benches::lead_data(&dir, 5000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = format!("file://{}/store", dir.display());
    let t = Instant::now();
    let snap = runtime
        .block_on(pipeline::run_materialize(
            &fs_spec, "bench", "leads", &store, &dir,
        ))
        .unwrap();
    println!(
        "materialize (polars, {} rows): {:.2} s",
        snap.rows,
        t.elapsed().as_secs_f64()
    );
    let snapshot = Store::open(&snap.location.unwrap()).unwrap();
    let manifest: materialize::Manifest =
        serde_json::from_slice(&runtime.block_on(snapshot.get("manifest.json")).unwrap()).unwrap();
    let frame =
        materialize::from_parquet(runtime.block_on(snapshot.get("features.parquet")).unwrap())
            .unwrap();
    let table = pipeline::table(&frame, &manifest).unwrap();
    let (train_idx, valid_idx) = pipeline::time_split(&table.cutoff, 0.2).unwrap();
    let (train, valid) = (
        table.columns.take(&train_idx),
        table.columns.take(&valid_idx),
    );
    let y_train: Vec<bool> = train_idx.iter().map(|&i| table.label[i] > 0.0).collect();
    let y_valid: Vec<bool> = valid_idx.iter().map(|&i| table.label[i] > 0.0).collect();
    let encoder = Encoder::fit(&train);
    let (x_train, x_valid) = (encoder.transform(&train), encoder.transform(&valid));
    println!(
        "train {} rows, validation {} rows, {} encoded columns",
        x_train.nrows(),
        x_valid.nrows(),
        x_train.ncols()
    );

    let (lr_time, lr) = median_of_3(|| Logistic::fit(&x_train, &y_train, L2, MAX_ITER).unwrap());
    let lr_auc = roc_auc(&lr.predict(&x_valid), &y_valid).unwrap();
    let target: Vec<f64> = y_train.iter().map(|&b| f64::from(u8::from(b))).collect();
    let params = ForestParams {
        trees: 1,
        max_depth: DEPTH,
        min_samples_leaf: MIN_LEAF,
        sample_ratio: 1.0,
        seed: 0,
    };
    let (dt_time, dt) = median_of_3(|| Forest::fit(&x_train, &target, params).unwrap());
    let dt_auc = roc_auc(&dt.predict(&x_valid), &y_valid).unwrap();

    write_matrix(&dir.join("x_train.csv"), &x_train);
    write_matrix(&dir.join("x_valid.csv"), &x_valid);
    let labels = |y: &[bool]| {
        y.iter()
            .map(|&b| if b { "1" } else { "0" })
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(dir.join("y_train.csv"), labels(&y_train)).unwrap();
    std::fs::write(dir.join("y_valid.csv"), labels(&y_valid)).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sklearn_reference.py");
    let python = std::env::var("LEITWERK_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&dir)
        .args([
            L2.to_string(),
            MAX_ITER.to_string(),
            DEPTH.to_string(),
            MIN_LEAF.to_string(),
        ])
        .output()
        .unwrap();
    let reference: Option<serde_json::Value> = out
        .status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap());
    let row = |name: &str, secs: f64, auc: f64, key: &str| match &reference {
        Some(r) => {
            let (s, a) = (
                r[key]["seconds"].as_f64().unwrap(),
                r[key]["auc"].as_f64().unwrap(),
            );
            println!(
                "{name:<28} leitwerk {secs:>7.3} s AUC {auc:.4} | scikit-learn {s:>7.3} s AUC {a:.4} | time ratio {:.2}×, ΔAUC {:+.4}",
                secs / s,
                auc - a
            );
        }
        None => println!(
            "{name:<28} leitwerk {secs:>7.3} s AUC {auc:.4} | scikit-learn unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
    };
    row(
        "logistic regression (L2)",
        lr_time.as_secs_f64(),
        lr_auc,
        "logistic",
    );
    row(
        "decision tree (depth 6)",
        dt_time.as_secs_f64(),
        dt_auc,
        "tree",
    );
}
