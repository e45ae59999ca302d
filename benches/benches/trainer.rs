//! Trainer fit time and validation AUC against the reference implementations on the same
//! matrices: the lead-scoring snapshot (generated data, the example FeatureSet), encoded once
//! by the trainer's own preprocessing, then logistic regression and a decision tree against
//! scikit-learn, and gradient boosting against LightGBM 4.7 (Python) on the lead-scoring
//! matrix and on `wa_churn` (5 stratified folds), with the same parameters and `f32` rows.
//!
//! `LEITWERK_PYTHON=venv/bin/python cargo bench --workspace --profile dev --bench trainer`
//! (the venv: `pip install scikit-learn lightgbm==4.7.0`)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::io::Write;
use std::time::{Duration, Instant};

use leitwerk_benches::scratch;
use leitwerk_trainer::boosting::{self, Objective};
use leitwerk_trainer::datagen::wa_churn;
use leitwerk_trainer::logistic::Logistic;
use leitwerk_trainer::metrics::roc_auc;
use leitwerk_trainer::preprocess::Encoder;
use leitwerk_trainer::split::stratified_folds;
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

fn write_labels(path: &std::path::Path, y: &[bool]) {
    let text: Vec<&str> = y.iter().map(|&b| if b { "1" } else { "0" }).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

/// One train/validation pair of encoded matrices.
struct Case {
    name: String,
    x_train: Array2<f64>,
    y_train: Vec<bool>,
    x_valid: Array2<f64>,
    y_valid: Vec<bool>,
}

fn python() -> String {
    std::env::var("LEITWERK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Gradient boosting: the trainer's LightGBM (Rust bindings, built without OpenMP) against
/// LightGBM 4.7 in Python (with its OpenMP threads), per case and parameter set.
fn gradient_boosting(dir: &std::path::Path, cases: &[Case]) {
    let configs = [
        (
            "300 rounds, 31 leaves",
            serde_json::json!({"rounds": 300, "learningRate": 0.05, "numLeaves": 31, "minRowsPerLeaf": 20}),
        ),
        (
            "500 rounds, 15 leaves, subsampled",
            serde_json::json!({"rounds": 500, "learningRate": 0.03, "numLeaves": 15, "minRowsPerLeaf": 20, "l2": 1.0, "rowSubsample": 0.8, "columnSubsample": 0.8, "seed": 7}),
        ),
    ];
    let mut ours = Vec::new();
    let mut reference_cases = Vec::new();
    let mut first = None;
    for (label, config) in &configs {
        let params: leitwerk_crds::model::GradientBoosting =
            serde_json::from_value(config.clone()).unwrap();
        for case in cases {
            let target: Vec<f64> = case
                .y_train
                .iter()
                .map(|&b| f64::from(u8::from(b)))
                .collect();
            let (time, model) = median_of_3(|| {
                boosting::fit(&case.x_train, &target, None, &params, Objective::Binary).unwrap()
            });
            let auc = roc_auc(&model.predict(&case.x_valid), &case.y_valid).unwrap();
            if first.is_none() {
                first = Some((model.clone(), case.x_valid.clone()));
            }
            let at = dir.join(format!("gb-{}-{}", ours.len(), case.name.replace(' ', "_")));
            std::fs::create_dir_all(&at).unwrap();
            write_matrix(
                &at.join("x_train.csv"),
                &case.x_train.mapv(|v| f64::from(v as f32)),
            );
            write_matrix(
                &at.join("x_valid.csv"),
                &case.x_valid.mapv(|v| f64::from(v as f32)),
            );
            write_labels(&at.join("y_train.csv"), &case.y_train);
            write_labels(&at.join("y_valid.csv"), &case.y_valid);
            reference_cases.push(serde_json::json!({
                "dir": at,
                "params": boosting::parameters(&params, Objective::Binary),
            }));
            ours.push((label, &case.name, time.as_secs_f64(), auc));
        }
    }
    if let Some((model, x)) = first {
        shap_check(dir, &model, &x);
    }
    let cases_file = dir.join("lightgbm-cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(&reference_cases).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lightgbm_reference.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(&cases_file)
        .output()
        .unwrap();
    let reference: Option<Vec<serde_json::Value>> = out
        .status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap());
    let Some(reference) = reference else {
        println!(
            "gradient boosting: LightGBM (Python) unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        for (label, case, secs, auc) in &ours {
            println!("gradient boosting ({label}) {case:<16} leitwerk {secs:>7.3} s AUC {auc:.4}");
        }
        return;
    };
    // Per parameter set: our fold AUCs, theirs, our seconds, theirs.
    type Folds = (Vec<f64>, Vec<f64>, f64, f64);
    let mut by_config: std::collections::BTreeMap<&str, Folds> = Default::default();
    for ((label, case, secs, auc), r) in ours.iter().zip(&reference) {
        let (s, a) = (r["seconds"].as_f64().unwrap(), r["auc"].as_f64().unwrap());
        println!(
            "gradient boosting ({label}) {case:<16} leitwerk {secs:>7.3} s AUC {auc:.4} | LightGBM 4.7 {s:>7.3} s AUC {a:.4} | time ratio {:.2}×, ΔAUC {:+.4}",
            secs / s,
            auc - a
        );
        if case.starts_with("wa_churn") {
            let entry = by_config.entry(label).or_default();
            entry.0.push(*auc);
            entry.1.push(a);
            entry.2 += secs;
            entry.3 += s;
        }
    }
    for (label, (ours, theirs, secs, s)) in by_config {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "gradient boosting ({label}) wa_churn 5-fold mean AUC leitwerk {:.4} | LightGBM 4.7 {:.4} | ΔAUC {:+.4}, time ratio {:.2}×",
            mean(&ours),
            mean(&theirs),
            mean(&ours) - mean(&theirs),
            secs / s
        );
    }
}

/// The trainer's attributions of a boosted model (LightGBM's contributions) against the shap
/// package's TreeExplainer on the same model and rows.
fn shap_check(dir: &std::path::Path, model: &boosting::Boosted, x: &Array2<f64>) {
    let rows = x.nrows().min(2000);
    let index: Vec<usize> = (0..rows).collect();
    let x = x
        .select(ndarray::Axis(0), &index)
        .mapv(|v| f64::from(v as f32));
    let (base, ours) = model.contributions(&x).unwrap();
    std::fs::write(dir.join("shap-model.txt"), &model.model_text).unwrap();
    write_matrix(&dir.join("shap-x.csv"), &x);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shap_reference.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(dir.join("shap-model.txt"))
        .arg(dir.join("shap-x.csv"))
        .arg(dir.join("shap-out.csv"))
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "SHAP check: the shap package is unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return;
    }
    let text = std::fs::read_to_string(dir.join("shap-out.csv")).unwrap();
    let mut worst = 0.0_f64;
    for (r, line) in text.lines().enumerate() {
        let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        for (c, theirs) in values[..values.len() - 1].iter().enumerate() {
            worst = worst.max((ours[[r, c]] - theirs).abs());
        }
        worst = worst.max((base - values[values.len() - 1]).abs());
    }
    println!(
        "SHAP check (gradient boosting, lead scoring, {rows} rows × {} columns): max |Leitwerk − shap {}| = {worst:.2e}",
        x.ncols(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// `wa_churn` in 5 stratified folds, each encoded by the trainer's preprocessing fitted on its
/// training rows.
fn wa_churn_folds() -> Vec<Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/wa_churn.csv");
    let (columns, labels) = wa_churn::load(&path).unwrap();
    let folds = stratified_folds(&labels, 5, 0);
    (0..5)
        .map(|fold| {
            let train: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] != fold).collect();
            let valid: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] == fold).collect();
            let encoder = Encoder::fit(&columns.take(&train));
            Case {
                name: format!("wa_churn fold {fold}"),
                x_train: encoder.transform(&columns.take(&train)),
                y_train: train.iter().map(|&i| labels[i]).collect(),
                x_valid: encoder.transform(&columns.take(&valid)),
                y_valid: valid.iter().map(|&i| labels[i]).collect(),
            }
        })
        .collect()
}

fn main() {
    let dir = scratch("trainer");
    let m = leitwerk_benches::lead_matrices(&dir, 5000);
    let (x_train, x_valid) = (m.x_train, m.x_valid);
    let y_train: Vec<bool> = m.y_train.iter().map(|&v| v > 0.0).collect();
    let y_valid: Vec<bool> = m.y_valid.iter().map(|&v| v > 0.0).collect();
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
    write_labels(&dir.join("y_train.csv"), &y_train);
    write_labels(&dir.join("y_valid.csv"), &y_valid);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sklearn_reference.py");
    let out = std::process::Command::new(python())
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
    let mut cases = vec![Case {
        name: "lead scoring".into(),
        x_train,
        y_train,
        x_valid,
        y_valid,
    }];
    cases.extend(wa_churn_folds());
    gradient_boosting(&dir, &cases);
}
