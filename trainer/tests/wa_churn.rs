#![allow(clippy::expect_used, clippy::panic)] // test code: a failed expectation fails the test

//! Churn on real public data (IBM Telco, `tests/data/wa_churn.csv`) with the protocol of the
//! scikit-learn reference in `tests/data/README.md`: the 7,032 complete rows, one-hot (drop
//! first) for categorical and standardized numeric columns, L2 logistic regression (C = 1),
//! stratified 5-fold cross-validation. Reference ROC AUC 0.8452 ± 0.0071; ours must lie
//! within 0.01 of it.

use leitwerk_trainer::{
    datagen::wa_churn,
    logistic::Logistic,
    metrics::{brier, calibration, log_loss, pr_auc, roc_auc},
    preprocess::{Columns, Encoder},
    split::stratified_folds,
};

const REFERENCE_AUC: f64 = 0.8452;

fn load() -> (Columns, Vec<bool>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/wa_churn.csv");
    wa_churn::load(&path).expect("the wa_churn table")
}

#[test]
fn churn_auc_on_wa_churn_is_within_0_01_of_scikit_learn() {
    let (columns, labels) = load();
    assert_eq!(labels.len(), 7032, "complete rows");
    assert_eq!(labels.iter().filter(|&&y| y).count(), 1869);
    let folds = stratified_folds(&labels, 5, 0);
    let mut aucs = Vec::new();
    let (mut all_scores, mut all_labels) = (Vec::new(), Vec::new());
    for fold in 0..5 {
        let train: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] != fold).collect();
        let test: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] == fold).collect();
        let encoder = Encoder::fit(&columns.take(&train));
        let y_train: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let model = Logistic::fit(
            &encoder.transform(&columns.take(&train)),
            &y_train,
            1.0,
            2000,
        )
        .expect("fit");
        let scores = model.predict(&encoder.transform(&columns.take(&test)));
        let y_test: Vec<bool> = test.iter().map(|&i| labels[i]).collect();
        aucs.push(roc_auc(&scores, &y_test).expect("both classes in every fold"));
        all_scores.extend(scores);
        all_labels.extend(y_test);
    }
    let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
    println!("wa_churn ROC AUC per fold {aucs:?}, mean {mean:.4} (scikit-learn {REFERENCE_AUC})");
    assert!(
        (mean - REFERENCE_AUC).abs() <= 0.01,
        "mean AUC {mean:.4} is not within 0.01 of {REFERENCE_AUC}"
    );
    // Out-of-fold probabilities are calibrated and informative, as a logistic regression's are.
    let (ll, bs, ap) = (
        log_loss(&all_scores, &all_labels),
        brier(&all_scores, &all_labels),
        pr_auc(&all_scores, &all_labels).unwrap_or_default(),
    );
    println!("out of fold: log loss {ll:.4}, Brier {bs:.4}, PR-AUC {ap:.4}");
    assert!(
        ll < 0.45 && bs < 0.15 && ap > 0.6,
        "log loss {ll}, Brier {bs}, PR-AUC {ap}"
    );
    for bin in calibration(&all_scores, &all_labels, 10)
        .iter()
        .filter(|b| b.count >= 200)
    {
        assert!(
            (bin.predicted - bin.observed).abs() < 0.1,
            "miscalibrated bin {bin:?}"
        );
    }
}

/// LightGBM 4.7 (Python) with the same parameters, rows (`f32`) and folds: 5-fold mean ROC AUC
/// 0.8331 (`cargo bench --bench trainer`, `benches/README.md`).
const LIGHTGBM_AUC: f64 = 0.8331;

#[test]
fn gradient_boosting_on_wa_churn_is_within_0_005_of_lightgbm() {
    use leitwerk_trainer::boosting::{self, Objective};
    let (columns, labels) = load();
    let folds = stratified_folds(&labels, 5, 0);
    let params: leitwerk_crds::model::GradientBoosting = serde_json::from_value(
        serde_json::json!({"rounds": 300, "learningRate": 0.05, "numLeaves": 31, "minRowsPerLeaf": 20}),
    )
    .expect("parameters");
    let mut aucs = Vec::new();
    for fold in 0..5 {
        let train: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] != fold).collect();
        let test: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] == fold).collect();
        let encoder = Encoder::fit(&columns.take(&train));
        let y: Vec<f64> = train
            .iter()
            .map(|&i| f64::from(u8::from(labels[i])))
            .collect();
        let model = boosting::fit(
            &encoder.transform(&columns.take(&train)),
            &y,
            None,
            &params,
            Objective::Binary,
        )
        .expect("fit");
        let scores = model.predict(&encoder.transform(&columns.take(&test)));
        let y_test: Vec<bool> = test.iter().map(|&i| labels[i]).collect();
        aucs.push(roc_auc(&scores, &y_test).expect("both classes in every fold"));
    }
    let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
    println!(
        "gradient boosting on wa_churn: AUC per fold {aucs:?}, mean {mean:.4} (LightGBM {LIGHTGBM_AUC})"
    );
    assert!(
        (mean - LIGHTGBM_AUC).abs() <= 0.005,
        "mean AUC {mean:.4} is not within 0.005 of LightGBM's {LIGHTGBM_AUC}"
    );
}
