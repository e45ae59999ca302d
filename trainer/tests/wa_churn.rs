#![allow(clippy::expect_used, clippy::panic)] // test code: a failed expectation fails the test

//! Churn on real public data (IBM Telco, `tests/data/wa_churn.csv`) with the protocol of the
//! scikit-learn reference in `tests/data/README.md`: the 7,032 complete rows, one-hot (drop
//! first) for categorical and standardized numeric columns, L2 logistic regression (C = 1),
//! stratified 5-fold cross-validation. Reference ROC AUC 0.8452 ± 0.0071; ours must lie
//! within 0.01 of it.

use leitwerk_trainer::{
    logistic::Logistic,
    metrics::{brier, calibration, log_loss, pr_auc, roc_auc},
    preprocess::{Columns, Encoder},
    split::stratified_folds,
};

const NUMERIC: [&str; 9] = [
    "female",
    "senior_citizen",
    "partner",
    "dependents",
    "tenure",
    "phone_service",
    "paperless_billing",
    "monthly_charges",
    "total_charges",
];
const CATEGORICAL: [&str; 10] = [
    "multiple_lines",
    "internet_service",
    "online_security",
    "online_backup",
    "device_protection",
    "tech_support",
    "streaming_tv",
    "streaming_movies",
    "contract",
    "payment_method",
];
const REFERENCE_AUC: f64 = 0.8452;

fn load() -> (Columns, Vec<bool>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/wa_churn.csv");
    let mut reader =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let headers = reader.headers().expect("header").clone();
    let index = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name} missing"))
    };
    let mut columns = Columns {
        numeric: NUMERIC
            .iter()
            .map(|n| (n.to_string(), Vec::new()))
            .collect(),
        categorical: CATEGORICAL
            .iter()
            .map(|n| (n.to_string(), Vec::new()))
            .collect(),
    };
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.expect("row");
        // Rows with a missing value are dropped, as in the reference (11 rows: total_charges "NA").
        let parsed: Option<Vec<f64>> = NUMERIC
            .iter()
            .map(|n| record[index(n)].parse::<f64>().ok())
            .collect();
        let Some(values) = parsed else { continue };
        for ((_, column), v) in columns.numeric.iter_mut().zip(values) {
            column.push(v);
        }
        for (name, column) in columns.categorical.iter_mut() {
            column.push(record[index(name)].to_string());
        }
        labels.push(&record[index("churn")] == "Yes");
    }
    (columns, labels)
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
