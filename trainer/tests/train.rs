//! Training end to end on generated leads: the example FeatureSet is materialized, then the
//! example Model (logistic regression) and tree models are trained, exported as one ONNX graph
//! with the preprocessing inside, checked against ONNX Runtime and published with a model card.

#![allow(clippy::unwrap_used)] // test fixtures: a failed setup step fails the test

use std::path::PathBuf;

use leitwerk_crds::{FeatureSet, FeatureSetSpec, Model};
use leitwerk_trainer::datagen::{self, leads::LeadsSpec};
use leitwerk_trainer::pipeline::{self, TrainJob};

fn onnxruntime() -> PathBuf {
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
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn example_feature_set(data: &std::path::Path) -> FeatureSetSpec {
    let text = include_str!("../../examples/lead-scoring/featureset.yaml")
        .replace("/data/leads", &data.display().to_string());
    let fs: FeatureSet = yaml_serde::from_str(&text).unwrap();
    fs.spec
}

struct Fixture {
    dir: PathBuf,
    snapshot: String,
    store: String,
    runtime: tokio::runtime::Runtime,
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("leitwerk-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    datagen::leads::write(
        &LeadsSpec {
            seed: 7,
            leads: 2000,
            start,
            days: 240,
        },
        &dir,
    )
    .unwrap();
    let store = format!("file://{}/store", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime
        .block_on(pipeline::run_materialize(
            &example_feature_set(&dir),
            "sales",
            "lead-features",
            &store,
            &dir,
        ))
        .unwrap();
    assert!(summary.published, "{:?}", summary.quality);
    assert!(summary.rows > 5_000, "{}", summary.rows);
    Fixture {
        snapshot: summary.location.unwrap(),
        dir,
        store,
        runtime,
    }
}

/// A training Job of the `lead-scoring` Model in `sales` on the fixture's snapshot.
fn lead_scoring_job(f: &Fixture, version: &str) -> TrainJob {
    TrainJob {
        namespace: "sales".into(),
        name: "lead-scoring".into(),
        version: version.into(),
        snapshot: f.snapshot.clone(),
        store: f.store.clone(),
        onnxruntime: onnxruntime(),
    }
}

/// The model card published beside a trained version's ONNX file.
fn card_of(summary: &leitwerk_crds::summary::TrainSummary) -> serde_json::Value {
    let path = summary
        .model_url
        .trim_start_matches("file://")
        .replace("model.onnx", "card.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn example_model() -> leitwerk_crds::ModelSpec {
    let m: Model =
        yaml_serde::from_str(include_str!("../../examples/lead-scoring/model.yaml")).unwrap();
    m.spec
}

#[test]
fn the_example_model_trains_exports_one_graph_that_onnx_runtime_agrees_with_and_publishes_a_card() {
    let f = fixture("logistic");
    let job = TrainJob {
        namespace: "sales".into(),
        name: "lead-scoring".into(),
        version: "v1".into(),
        snapshot: f.snapshot.clone(),
        store: f.store.clone(),
        onnxruntime: onnxruntime(),
    };
    let summary = f
        .runtime
        .block_on(pipeline::run_train(&example_model(), &job))
        .unwrap();
    let auc = summary.metrics["auc"];
    assert!(
        auc > 0.75,
        "the generator's effects are learnable: AUC {auc}"
    );
    for m in ["prAuc", "logLoss", "brier", "precision", "recall", "f1"] {
        assert!(
            summary.metrics.contains_key(m),
            "{m} missing: {:?}",
            summary.metrics
        );
    }
    assert!(
        summary.parity_max_abs_diff <= 1e-5,
        "{}",
        summary.parity_max_abs_diff
    );
    let dir = f.dir.join(format!(
        "store/models/sales/lead-scoring/{}",
        &summary.digest[7..19]
    ));
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    assert_eq!(leitwerk_trainer::store::digest(&onnx), summary.digest);
    assert_eq!(
        summary.model_url,
        format!(
            "{}/models/sales/lead-scoring/{}/model.onnx",
            f.store,
            &summary.digest[7..19]
        )
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("card.json")).unwrap()).unwrap();
    assert_eq!(
        card["data"]["version"].as_str(),
        Some(summary.data_version.as_str())
    );
    assert_eq!(card["parameters"]["logisticRegression"]["l2"], 0.5);
    let inputs: Vec<&str> = card["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0].as_str().unwrap())
        .collect();
    assert!(
        inputs.contains(&"pricing_views_7d") && inputs.contains(&"industry"),
        "{inputs:?}"
    );
    // The explainer travels inside the ONNX file, under the model's digest.
    use prost::Message;
    let proto = candle_onnx::onnx::ModelProto::decode(onnx.as_slice()).unwrap();
    let json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == leitwerk_explain::METADATA_KEY)
        .map(|p| p.value.clone())
        .expect("the ONNX file carries the explainer");
    let explainer = leitwerk_explain::Explainer::from_json(&json).unwrap();
    assert_eq!(
        explainer.names(),
        inputs,
        "one explained feature per input, in order"
    );
    assert_eq!(explainer.units, leitwerk_explain::Units::LogOdds);
    let reference = card["reference"].as_array().unwrap();
    assert_eq!(
        reference.len(),
        inputs.len(),
        "every feature has a reference distribution"
    );
    let industry = reference.iter().find(|r| r["name"] == "industry").unwrap();
    assert_eq!(
        industry["categories"].as_array().unwrap().last().unwrap(),
        "<unknown>"
    );
    let sum: f64 = industry["proportions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-9);
    let views = reference
        .iter()
        .find(|r| r["name"] == "page_views_30d")
        .unwrap();
    assert!(!views["edges"].as_array().unwrap().is_empty());
    assert!(card["calibration"].as_array().unwrap().len() >= 5);
    let examples = card["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 5);
    assert_eq!(
        examples[0]["inputs"].as_object().unwrap().len(),
        inputs.len()
    );
}

#[test]
fn tree_models_export_and_pass_the_parity_check() {
    let f = fixture("trees");
    for (algorithm, version) in [
        ("decisionTree: {maxDepth: 6, minSamplesLeaf: 20}", "v2"),
        (
            "randomForest: {trees: 15, maxDepth: 6, sampleRatio: 0.7, seed: 3}",
            "v3",
        ),
        (
            "gradientBoosting: {rounds: 400, learningRate: 0.05, numLeaves: 15, rowSubsample: 0.8, columnSubsample: 0.8, seed: 1, earlyStopping: {rounds: 20}}",
            "v4",
        ),
    ] {
        let mut spec = example_model();
        spec.algorithm = Some(yaml_serde::from_str(algorithm).unwrap());
        let job = lead_scoring_job(&f, version);
        let summary = f
            .runtime
            .block_on(pipeline::run_train(&spec, &job))
            .unwrap();
        // linfa's trees, which pruned subtrees that shared the majority label, reached 0.66
        // (0.81 with class-balanced weights) on this data; CART keeps those splits.
        assert!(
            summary.metrics["auc"] > 0.80,
            "{algorithm}: {:?}",
            summary.metrics
        );
        assert!(
            summary.parity_max_abs_diff <= 1e-5,
            "{algorithm}: {}",
            summary.parity_max_abs_diff
        );
        // Every algorithm explains itself: mean |SHAP| per raw feature, five in the summary.
        let importance = card_of(&summary)["importance"].as_array().unwrap().len();
        assert!(importance >= 10, "{algorithm}: {importance} features");
        assert_eq!(summary.importance.len(), 5, "{algorithm}");
        if version == "v4" {
            // Early stopping on the newest training cutoffs kept fewer rounds than allowed,
            // and the card says how many.
            let card = card_of(&summary);
            let kept = card["parameters"]["gradientBoosting"]["roundsKept"]
                .as_u64()
                .unwrap();
            assert!((1..400).contains(&kept), "rounds kept {kept}");
            assert_eq!(card["parameters"]["gradientBoosting"]["numLeaves"], 15);
            // LightGBM's TreeSHAP contributions, mean |value| per raw feature, largest first.
            // In the generated leads, latent intent (seen through session minutes and e-mail
            // opens) and pricing-page views in the last 7 days cause conversions.
            let importance = card["importance"].as_array().unwrap();
            assert!(importance.len() >= 10, "{importance:?}");
            let ranked: Vec<&str> = importance
                .iter()
                .map(|i| i["feature"].as_str().unwrap())
                .collect();
            assert!(ranked[..3].contains(&"pricing_views_7d"), "{importance:?}");
            let means: Vec<f64> = importance
                .iter()
                .map(|i| i["meanAbsShap"].as_f64().unwrap())
                .collect();
            assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
            assert_eq!(summary.importance.len(), 5);
            assert!(summary.importance.contains_key(ranked[0]));
        }
    }
}

#[test]
fn a_regression_task_reports_mae_rmse_and_r2() {
    let f = fixture("regression");
    for algorithm in [
        "decisionTree: {maxDepth: 5, minSamplesLeaf: 20}",
        "gradientBoosting: {rounds: 100, numLeaves: 8}",
    ] {
        let mut spec = example_model();
        spec.task = leitwerk_crds::model::Task::Regression;
        spec.algorithm = Some(yaml_serde::from_str(algorithm).unwrap());
        spec.min_metrics = None;
        let job = TrainJob {
            namespace: "sales".into(),
            name: "lead-value".into(),
            version: "v1".into(),
            snapshot: f.snapshot.clone(),
            store: f.store.clone(),
            onnxruntime: onnxruntime(),
        };
        let summary = f
            .runtime
            .block_on(pipeline::run_train(&spec, &job))
            .unwrap();
        let keys: Vec<&str> = summary.metrics.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["mae", "r2", "rmse"]);
        assert!(
            summary.metrics["rmse"] >= summary.metrics["mae"] && summary.metrics["rmse"] < 0.5,
            "{:?}",
            summary.metrics
        );
        assert!(summary.parity_max_abs_diff <= 1e-5, "{algorithm}");
    }
}

#[test]
fn a_missing_onnx_runtime_fails_before_publishing_anything() {
    let f = fixture("noort");
    let job = TrainJob {
        namespace: "sales".into(),
        name: "lead-scoring".into(),
        version: "v1".into(),
        snapshot: f.snapshot.clone(),
        store: f.store.clone(),
        onnxruntime: "/nonexistent/libonnxruntime.so".into(),
    };
    let err = f
        .runtime
        .block_on(pipeline::run_train(&example_model(), &job))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    assert!(!f.dir.join("store/models").exists());
}

/// A graph of one standardised column `x` with a logistic head, and what the trainer itself
/// predicts for its rows with the given weight.
fn one_column_graph(weight: f64) -> (leitwerk_trainer::preprocess::Columns, Vec<u8>, Vec<f64>) {
    use leitwerk_trainer::{
        onnx,
        preprocess::{Columns, Encoder},
    };
    let rows = Columns {
        numeric: vec![("x".into(), (0..50).map(f64::from).collect())],
        categorical: Vec::new(),
    };
    let encoder = Encoder::fit(&rows);
    let weights = [weight];
    let graph = onnx::export(
        &encoder,
        &onnx::Head::Logistic {
            weights: &weights,
            intercept: 0.25,
        },
        &[],
    );
    let trained = encoder
        .transform(&rows)
        .column(0)
        .iter()
        .map(|z| leitwerk_trainer::datagen::sigmoid(0.5 * z + 0.25))
        .collect();
    (rows, graph, trained)
}

#[test]
fn a_graph_that_scores_nan_or_differently_is_refused_before_publication() {
    let ort = onnxruntime();
    let (rows, good, trained) = one_column_graph(0.5);
    let diff = pipeline::check_parity(&ort, &good, &rows, &trained).unwrap();
    assert!(diff <= pipeline::PARITY_TOLERANCE, "{diff}");

    // A NaN weight makes ONNX Runtime return NaN for every row; `f64::max` would drop it.
    let (_, nan_graph, _) = one_column_graph(f64::NAN);
    let err = pipeline::check_parity(&ort, &nan_graph, &rows, &trained)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN served"), "{err}");
    assert!(err.contains("nothing was published"), "{err}");

    let (_, other_graph, _) = one_column_graph(0.6);
    let err = pipeline::check_parity(&ort, &other_graph, &rows, &trained)
        .unwrap_err()
        .to_string();
    assert!(err.contains("disagree on validation row"), "{err}");

    // And the other way round: the trainer's own NaN is refused too.
    let mut broken = trained.clone();
    broken[7] = f64::NAN;
    let err = pipeline::check_parity(&ort, &good, &rows, &broken)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 7") && err.contains("NaN trained"),
        "{err}"
    );
}

#[test]
fn a_snapshot_changed_after_publication_is_refused_by_its_digest() {
    let f = fixture("tampered");
    let dir = std::path::PathBuf::from(f.snapshot.trim_start_matches("file://"));
    let parquet = dir.join("features.parquet");
    // Drop the last row and write the file back: a valid Parquet file, but not the one the
    // manifest describes.
    let frame =
        leitwerk_trainer::materialize::from_parquet(std::fs::read(&parquet).unwrap()).unwrap();
    let shorter = frame.slice(0, frame.height() - 1);
    std::fs::write(
        &parquet,
        leitwerk_trainer::materialize::to_parquet(&shorter).unwrap(),
    )
    .unwrap();
    let job = TrainJob {
        namespace: "sales".into(),
        name: "lead-scoring".into(),
        version: "v1".into(),
        snapshot: f.snapshot.clone(),
        store: f.store.clone(),
        onnxruntime: onnxruntime(),
    };
    let err = f
        .runtime
        .block_on(pipeline::run_train(&example_model(), &job))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("features.parquet has digest sha256:")
            && err.contains("but its manifest says"),
        "{err}"
    );
    assert!(
        !f.dir.join("store/models").exists(),
        "nothing was published"
    );
}

/// A manifest for a frame of one numeric feature `visits` and the label `converted`.
fn one_feature_manifest() -> leitwerk_trainer::materialize::Manifest {
    use leitwerk_crds::feature_set::FeatureKind;
    use leitwerk_trainer::materialize::{FeatureColumn, Manifest};
    Manifest {
        version: "abc".into(),
        digest: "sha256:abc".into(),
        entity_key: "lead_id".into(),
        label: "converted".into(),
        features: vec![FeatureColumn {
            name: "visits".into(),
            kind: FeatureKind::Numeric,
        }],
        rows: 4,
        cutoffs: Vec::new(),
        data_until: String::new(),
        quality: Vec::new(),
    }
}

#[test]
fn text_in_a_numeric_column_and_missing_or_nan_labels_are_refused_naming_the_column_and_count() {
    use leitwerk_trainer::materialize::CUTOFF;
    use polars::prelude::*;
    let manifest = one_feature_manifest();
    let frame = |visits: Column, label: Column| {
        DataFrame::new_infer_height(vec![
            Column::new("lead_id".into(), ["a", "b", "c", "d"]),
            Column::new(CUTOFF.into(), [1_i64, 1, 2, 2]),
            visits,
            label,
        ])
        .unwrap()
    };
    let good_label = Column::new("converted".into(), [0.0, 1.0, 0.0, 1.0]);
    let text = Column::new("visits".into(), ["3", "n/a", "7", "seven"]);
    let err = pipeline::table(&frame(text, good_label.clone()), &manifest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"feature column "visits": 2 of 4 values are not numbers (first: "n/a")"#),
        "{err}"
    );
    let numbers = Column::new("visits".into(), [3.0, 4.0, 7.0, 1.0]);
    // A missing value of a numeric feature is fine (it is imputed); a missing label is not.
    let with_null = Column::new("visits".into(), [Some(3.0), None, Some(7.0), Some(1.0)]);
    assert!(pipeline::table(&frame(with_null, good_label), &manifest).is_ok());
    for label in [
        Column::new("converted".into(), [0.0, f64::NAN, 1.0, f64::NAN]),
        Column::new("converted".into(), [Some(0.0), None, Some(1.0), None]),
    ] {
        let err = pipeline::table(&frame(numbers.clone(), label), &manifest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"label column "converted": 2 of 4 rows are missing or NaN"#),
            "{err}"
        );
    }
}

#[test]
fn the_segment_scan_and_calibration_error_reach_the_card_and_an_unknown_column_is_refused() {
    let f = fixture("segments");
    let mut spec = example_model();
    spec.evaluation = Some(
        yaml_serde::from_str("{segments: [industry, company_size], minSegmentRows: 100}").unwrap(),
    );
    let job = |version: &str| lead_scoring_job(&f, version);
    let summary = f
        .runtime
        .block_on(pipeline::run_train(&spec, &job("v1")))
        .unwrap();
    let ece = summary.metrics["ece"];
    assert!((0.0..0.1).contains(&ece), "ECE {ece}");
    let gap = summary.metrics["maxSegmentAucGap"];
    assert!(gap > 0.0 && gap < 1.0, "{:?}", summary.metrics);
    assert!(summary.metrics.contains_key("maxSegmentScoreGap"));
    let why = &summary.explanations["maxSegmentAucGap"];
    println!(
        "ECE {ece:.4}, {:?}, {:?}",
        summary.metrics, summary.explanations
    );
    assert!(why.starts_with("segment column "), "{why}");
    let card = card_of(&summary);
    let segments = card["segments"].as_array().unwrap();
    let industries: Vec<&serde_json::Value> = segments
        .iter()
        .filter(|s| s["column"] == "industry")
        .collect();
    assert!(industries.len() >= 3, "{segments:?}");
    // company_size is numeric: cut at its quartiles, four segments.
    let sizes = segments
        .iter()
        .filter(|s| s["column"] == "company_size")
        .count();
    assert_eq!(sizes, 4, "{segments:?}");
    // The compared segments' AUCs span exactly the reported gap.
    let aucs: Vec<f64> = segments
        .iter()
        .filter(|s| s["compared"] == true)
        .filter(|s| why.contains(&format!("column {}:", s["column"].as_str().unwrap())))
        .map(|s| s["auc"].as_f64().unwrap())
        .collect();
    let span = aucs.iter().cloned().fold(f64::MIN, f64::max)
        - aucs.iter().cloned().fold(f64::MAX, f64::min);
    assert!((span - gap).abs() < 1e-9, "span {span} vs gap {gap}");
    // The summary (for the Model's status) keeps each column's lowest and highest AUC
    // segment, lowest first, and fits the termination message.
    let columns: Vec<&str> = summary.segments.iter().map(|s| s.column.as_str()).collect();
    assert_eq!(
        columns,
        ["industry", "industry", "company_size", "company_size"]
    );
    for pair in summary.segments.chunks(2) {
        let column = &pair[0].column;
        let compared: Vec<f64> = segments
            .iter()
            .filter(|s| s["column"] == column.as_str() && s["compared"] == true)
            .filter_map(|s| s["auc"].as_f64())
            .collect();
        let lo = compared.iter().cloned().fold(f64::MAX, f64::min);
        let hi = compared.iter().cloned().fold(f64::MIN, f64::max);
        assert!(
            (pair[0].auc.unwrap() - lo).abs() < 1e-4,
            "{pair:?} {compared:?}"
        );
        assert!(
            (pair[1].auc.unwrap() - hi).abs() < 1e-4,
            "{pair:?} {compared:?}"
        );
    }
    let message = leitwerk_crds::summary::encode_train(&summary);
    assert!(message.len() <= leitwerk_crds::summary::TERMINATION_MESSAGE_LIMIT);
    let back: leitwerk_crds::summary::TrainSummary = serde_json::from_str(&message).unwrap();
    assert_eq!(back.segments, summary.segments);

    spec.evaluation = Some(yaml_serde::from_str("{segments: [industry, region]}").unwrap());
    let err = f
        .runtime
        .block_on(pipeline::run_train(&spec, &job("v2")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.evaluation.segments[1]")
            && err.contains("\"region\"")
            && err.contains("industry"),
        "{err}"
    );
}

/// Batch scoring with a boosted version: each entity's newest snapshot row, or a CSV table
/// with the same rows, scored by the version's ONNX file, with the top three attributions
/// that the explainer inside the same file gives; a changed file and a missing entity column
/// are refused naming what to fix.
#[test]
fn batch_scoring_writes_scores_versions_and_top_attributions_per_entity() {
    use leitwerk_explain::Raw;
    use polars::prelude::*;
    let f = fixture("score");
    let m: Model = yaml_serde::from_str(include_str!(
        "../../examples/lead-scoring-boosted/model.yaml"
    ))
    .unwrap();
    let trained = f
        .runtime
        .block_on(pipeline::run_train(&m.spec, &lead_scoring_job(&f, "v1")))
        .unwrap();
    let model_url = format!("{}#{}", trained.model_url, trained.digest);
    let job = |output: &str| pipeline::ScoreJob {
        model: model_url.clone(),
        version: "v1".into(),
        snapshot: Some(f.snapshot.clone()),
        source: None,
        entity_column: None,
        output: format!("{}/scores/{output}", f.store),
        attributions: 3,
        onnxruntime: onnxruntime(),
        work_dir: f.dir.join("work"),
    };
    let read = |url: &str| std::fs::read(url.trim_start_matches("file://")).unwrap();

    // From the snapshot: one row per entity, at its newest cutoff.
    let summary = f
        .runtime
        .block_on(pipeline::run_score(&job("a.parquet")))
        .unwrap();
    let bytes = read(&summary.output_url);
    assert_eq!(leitwerk_trainer::store::digest(&bytes), summary.digest);
    let scored = leitwerk_trainer::materialize::from_parquet(bytes).unwrap();
    let snapshot = leitwerk_trainer::materialize::from_parquet(read(&format!(
        "{}/features.parquet",
        f.snapshot
    )))
    .unwrap();
    let entities = snapshot.column("lead_id").unwrap().n_unique().unwrap();
    assert_eq!(summary.rows as usize, entities);
    assert_eq!(scored.height(), entities);
    let names: Vec<&str> = scored
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "entity_id",
            "score",
            "version",
            "attribution_1_feature",
            "attribution_1_value",
            "attribution_2_feature",
            "attribution_2_value",
            "attribution_3_feature",
            "attribution_3_value"
        ]
    );
    let text = |frame: &DataFrame, c: &str| -> Vec<String> {
        let col = frame.column(c).unwrap().cast(&DataType::String).unwrap();
        col.str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect()
    };
    let number = |frame: &DataFrame, c: &str| -> Vec<f64> {
        let col = frame.column(c).unwrap().cast(&DataType::Float64).unwrap();
        col.f64().unwrap().iter().map(|v| v.unwrap()).collect()
    };
    let ids = text(&scored, "entity_id");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "sorted, one per entity"
    );
    assert!(text(&scored, "version").iter().all(|v| v == "v1"));
    let by_id: std::collections::HashMap<String, f64> =
        ids.iter().cloned().zip(number(&scored, "score")).collect();

    // The same rows as a CSV table: the rows at the newest cutoff (entities present there).
    let newest = snapshot
        .column("cutoff")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .max()
        .unwrap();
    let mut rows = snapshot
        .clone()
        .lazy()
        .filter(col("cutoff").cast(DataType::Int64).eq(lit(newest)))
        .collect()
        .unwrap();
    assert!(rows.height() > 100, "{}", rows.height());
    let csv = f.dir.join("leads-now.csv");
    let mut file = std::fs::File::create(&csv).unwrap();
    CsvWriter::new(&mut file).finish(&mut rows).unwrap();
    let from_table = pipeline::ScoreJob {
        snapshot: None,
        source: Some(format!("file://{}", csv.display())),
        entity_column: Some("lead_id".into()),
        ..job("b.csv")
    };
    let summary = f
        .runtime
        .block_on(pipeline::run_score(&from_table))
        .unwrap();
    assert_eq!(summary.rows as usize, rows.height());
    let table = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(
            summary.output_url.trim_start_matches("file://").into(),
        ))
        .unwrap()
        .finish()
        .unwrap();
    let explainer = pipeline::explainer_of(&read(&trained.model_url)).unwrap();
    let base = explainer.base();
    let (t_ids, t_scores) = (text(&table, "entity_id"), number(&table, "score"));
    let csv_ids = text(&rows, "lead_id");
    for (r, id) in t_ids.iter().enumerate() {
        assert!(
            (t_scores[r] - by_id[id]).abs() < 1e-6,
            "entity {id}: {} from the table, {} from the snapshot",
            t_scores[r],
            by_id[id]
        );
        // The attributions are this row's: recomputed from its raw values, the top three
        // match, and all of them add up to the score ONNX Runtime gave.
        let at = csv_ids.iter().position(|x| x == id).unwrap();
        let values: Vec<Option<f64>> = explainer
            .features
            .iter()
            .map(|feat| {
                rows.column(feat.name())
                    .unwrap()
                    .cast(&DataType::Float64)
                    .ok()
                    .and_then(|c| c.f64().unwrap().get(at))
            })
            .collect();
        let strings: Vec<String> = explainer
            .features
            .iter()
            .map(|feat| text(&rows, feat.name())[at].clone())
            .collect();
        let raw: Vec<Raw<'_>> = explainer
            .features
            .iter()
            .enumerate()
            .map(|(i, feat)| match feat {
                leitwerk_explain::Feature::Numeric { .. } => {
                    Raw::Number(values[i].map_or(f32::NAN, |v| v as f32))
                }
                leitwerk_explain::Feature::Categorical { .. } => Raw::Text(&strings[i]),
            })
            .collect();
        let full = explainer.explain(&raw).unwrap();
        let score = explainer
            .units
            .score(base + full.values.iter().sum::<f64>());
        assert!(
            (score - t_scores[r]).abs() < 2e-5,
            "entity {id}: {score} vs {}",
            t_scores[r]
        );
        let top = leitwerk_explain::top(&explainer.names(), &full.values, 3);
        for (i, (name, value)) in top.iter().enumerate() {
            assert_eq!(
                &text(&table, &format!("attribution_{}_feature", i + 1))[r],
                name
            );
            let got = number(&table, &format!("attribution_{}_value", i + 1))[r];
            assert!((got - value).abs() < 1e-9, "entity {id} attribution {i}");
        }
    }

    // A file changed after training, and a source without the entity column, are refused.
    let err = f
        .runtime
        .block_on(pipeline::run_score(&pipeline::ScoreJob {
            model: format!("{}#sha256:{}", trained.model_url, "0".repeat(64)),
            ..job("c.parquet")
        }))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has digest") && err.contains("train the Model again"),
        "{err}"
    );
    let err = f
        .runtime
        .block_on(pipeline::run_score(&pipeline::ScoreJob {
            entity_column: Some("customer".into()),
            ..from_table.clone()
        }))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.batchScoring.entityColumn") && err.contains("lead_id"),
        "{err}"
    );
    assert!(
        !f.dir.join("store/scores/c.parquet").exists(),
        "nothing written on a refusal"
    );
}

/// A TPE search on time-ordered folds of the training rows: every trial recorded with its
/// folds, the best one's parameters train the version, and the card and the summary say so.
#[test]
fn a_tuned_model_trains_with_the_best_trials_parameters() {
    let f = fixture("tuning");
    let yaml = "task: BinaryClassification\nfeatureSetRef: {name: lead-features}\nalgorithm:\n  gradientBoosting: {rounds: 60, learningRate: 0.1, numLeaves: 15, seed: 1}\ntuning:\n  method: TPE\n  trials: 8\n  parallelTrials: 2\n  folds: 3\n  pruneAfter: 3\n  seed: 5\n  space:\n    - {parameter: learningRate, min: 0.02, max: 0.3, scale: Log}\n    - {parameter: numLeaves, min: 4, max: 31}\n    - {parameter: minRowsPerLeaf, choices: [10, 20, 50]}\n";
    let spec: leitwerk_crds::ModelSpec = yaml_serde::from_str(yaml).unwrap();
    let summary = f
        .runtime
        .block_on(pipeline::run_train(&spec, &lead_scoring_job(&f, "v1")))
        .unwrap();
    let report = summary.tuning.clone().expect("the search's report");
    assert_eq!(report.version, "v1");
    assert_eq!(
        (report.method.as_str(), report.objective.as_str()),
        ("TPE", "auc")
    );
    assert_eq!(report.trials_run, 8);
    let card = card_of(&summary);
    let trials = card["tuning"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8, "every trial in the card");
    let best = report.best.score.unwrap();
    for t in trials {
        let state = t["state"].as_str().unwrap();
        let folds = t["foldScores"].as_array().unwrap().len();
        match state {
            "Complete" => {
                assert_eq!(folds, 3);
                assert!(t["score"].as_f64().unwrap() <= best, "{t}");
            }
            "Pruned" => assert_eq!(folds, 1, "stopped after its first fold"),
            other => panic!("trial {t}: {other}"),
        }
        let lr = t["parameters"]["learningRate"].as_f64().unwrap();
        let leaves = t["parameters"]["numLeaves"].as_f64().unwrap();
        let rows = t["parameters"]["minRowsPerLeaf"].as_f64().unwrap();
        assert!(
            (0.02..=0.3).contains(&lr) && (4.0..=31.0).contains(&leaves),
            "{t}"
        );
        assert!([10.0, 20.0, 50.0].contains(&rows), "{t}");
    }
    // The version trains with the best trial's parameters; the others keep the spec's.
    let used = &card["parameters"]["gradientBoosting"];
    assert_eq!(
        used["numLeaves"].as_f64(),
        report.best.parameters.get("numLeaves").copied()
    );
    assert_eq!(
        used["minRowsPerLeaf"].as_f64(),
        report.best.parameters.get("minRowsPerLeaf").copied()
    );
    assert_eq!(used["rounds"], 60);
    assert!(summary.metrics["auc"] > 0.7, "{:?}", summary.metrics);
    let message = serde_json::to_string(&summary).unwrap();
    assert!(
        message.len() <= leitwerk_crds::summary::TERMINATION_MESSAGE_LIMIT,
        "the summary fits the termination message: {} bytes",
        message.len()
    );
}
