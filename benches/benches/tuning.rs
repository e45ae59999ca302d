//! Hyper-parameter search against Optuna's TPE with the same budget on the same data: the
//! lead-scoring training rows (the trainer's encoding), three time-ordered folds, one space,
//! 30 trials per search, three seeds per side. Reports each side's best mean fold AUC and the
//! held-out AUC of the best parameters trained on all training rows.
//!
//! `LEITWERK_PYTHON=venv/bin/python cargo bench --workspace --profile dev --bench tuning`
//! (the venv: `pip install optuna scikit-learn lightgbm==4.7.0`)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::io::Write;
use std::time::Instant;

use leitwerk_benches::scratch;
use leitwerk_crds::ModelSpec;
use leitwerk_crds::model::Tuning;
use leitwerk_trainer::boosting::{self, Objective};
use leitwerk_trainer::metrics::roc_auc;
use leitwerk_trainer::pipeline;
use ndarray::Array2;

const TRIALS: i32 = 30;
const SEEDS: [i64; 3] = [1, 2, 3];
const SPEC: &str = "task: BinaryClassification
featureSetRef: {name: leads}
algorithm:
  gradientBoosting: {rounds: 100, learningRate: 0.1, numLeaves: 31, seed: 7}
";
const SPACE: &str = "
  - {parameter: learningRate, min: 0.01, max: 0.3, scale: Log}
  - {parameter: numLeaves, min: 4, max: 63}
  - {parameter: minRowsPerLeaf, choices: [10, 20, 50, 100]}
  - {parameter: l2, min: 0.001, max: 10, scale: Log}
  - {parameter: columnSubsample, min: 0.5, max: 1.0}
";

fn write_matrix(path: &std::path::Path, x: &Array2<f64>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for row in x.rows() {
        let line: Vec<String> = row.iter().map(|v| (*v as f32).to_string()).collect();
        writeln!(out, "{}", line.join(",")).unwrap();
    }
}

fn write_labels(path: &std::path::Path, y: &[f64]) {
    let text: Vec<String> = y.iter().map(|v| v.to_string()).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

fn main() {
    let dir = scratch("tuning");
    let m = leitwerk_benches::lead_matrices(&dir, 5000);
    let (x_train, x_valid, y_train, y_valid, cutoffs) =
        (m.x_train, m.x_valid, m.y_train, m.y_valid, m.cutoffs);
    let spec: ModelSpec = yaml_serde::from_str(SPEC).unwrap();
    let folds = pipeline::folds(&cutoffs, 3).unwrap();
    println!(
        "train {} rows in {} folds, validation {} rows, {} encoded columns, {TRIALS} trials a search",
        x_train.nrows(),
        folds.len(),
        x_valid.nrows(),
        x_train.ncols()
    );

    // The same matrices, folds and space for Optuna.
    write_matrix(&dir.join("x_train.csv"), &x_train);
    write_matrix(&dir.join("x_valid.csv"), &x_valid);
    write_labels(&dir.join("y_train.csv"), &y_train);
    write_labels(&dir.join("y_valid.csv"), &y_valid);
    std::fs::write(dir.join("folds.json"), serde_json::to_vec(&folds).unwrap()).unwrap();
    let base = spec
        .algorithm
        .as_ref()
        .and_then(|a| a.gradient_boosting.clone())
        .unwrap();
    let space: serde_json::Value = yaml_serde::from_str(SPACE).unwrap();
    let search = serde_json::json!({
        "trials": TRIALS,
        "base": boosting::parameters(&base, Objective::Binary),
        "space": space,
    });
    std::fs::write(
        dir.join("search.json"),
        serde_json::to_vec(&search).unwrap(),
    )
    .unwrap();

    let labels: Vec<bool> = y_valid.iter().map(|&v| v > 0.0).collect();
    let mut ours = Vec::new();
    for method in ["TPE", "Random"] {
        for seed in SEEDS {
            let tuning: Tuning = yaml_serde::from_str(&format!(
                "method: {method}\ntrials: {TRIALS}\nfolds: 3\npruneAfter: 0\nseed: {seed}\nspace:{SPACE}"
            ))
            .unwrap();
            let t = Instant::now();
            let (tuned, report, _) =
                pipeline::tune(&spec, &tuning, &x_train, &y_train, &cutoffs).unwrap();
            let seconds = t.elapsed().as_secs_f64();
            let (model, _) = pipeline::fit(&tuned, &x_train, &y_train, None).unwrap();
            let held_out = roc_auc(&model.predict(&x_valid), &labels).unwrap();
            let best = report.best.score.unwrap();
            println!(
                "leitwerk {method:<6} seed {seed}: best fold AUC {best:.4}, held-out AUC {held_out:.4} ({seconds:.1} s) {:?}",
                report.best.parameters
            );
            if method == "TPE" {
                ours.push((best, held_out));
            }
        }
    }

    let python = std::env::var("LEITWERK_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("optuna_reference.py");
    let t = Instant::now();
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&dir)
        .args(SEEDS.iter().map(ToString::to_string))
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "optuna unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return;
    }
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for r in &theirs {
        println!(
            "optuna   TPE    seed {}: best fold AUC {:.4}, held-out AUC {:.4} {}",
            r["seed"],
            r["best"].as_f64().unwrap(),
            r["heldOut"].as_f64().unwrap(),
            r["params"]
        );
    }
    println!(
        "optuna: {:.1} s for {} searches",
        t.elapsed().as_secs_f64(),
        theirs.len()
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ours_best, ours_held): (Vec<f64>, Vec<f64>) = ours.iter().copied().unzip();
    let theirs_best: Vec<f64> = theirs.iter().map(|r| r["best"].as_f64().unwrap()).collect();
    let theirs_held: Vec<f64> = theirs
        .iter()
        .map(|r| r["heldOut"].as_f64().unwrap())
        .collect();
    println!(
        "mean over seeds: best fold AUC leitwerk {:.4} vs optuna {:.4} (Δ {:+.4}); held-out AUC {:.4} vs {:.4} (Δ {:+.4})",
        mean(&ours_best),
        mean(&theirs_best),
        mean(&ours_best) - mean(&theirs_best),
        mean(&ours_held),
        mean(&theirs_held),
        mean(&ours_held) - mean(&theirs_held)
    );
}
