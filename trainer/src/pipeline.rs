//! The two Jobs end to end: `materialize` (sources → snapshot in the artifact store) and
//! `train` (snapshot → ONNX model + model card in the artifact store), each returning the
//! summary that goes to the pod's termination message.
//!
//! Store layout (every object digest-named, so a write never replaces what a reader uses):
//! `featuresets/<namespace>/<name>/<version>/{features.parquet,stats.json,manifest.json}` and
//! `models/<namespace>/<name>/<digest12>/{model.onnx,card.json}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leitwerk_crds::feature_set::{FeatureKind, FeatureSetSpec};
use leitwerk_crds::model::{ModelSpec, Task};
use leitwerk_crds::summary::{MaterializeSummary, TrainSummary};
use ndarray::Array2;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::materialize::{self, CUTOFF, FeatureColumn, Manifest};
use crate::metrics;
use crate::onnx::{self, Head};
use crate::preprocess::{Columns, Encoder, UNKNOWN};
use crate::store::{self, Store};
use crate::tree::{Forest, ForestParams};

/// Errors of a Job; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Materialization failed.
    #[error(transparent)]
    Materialize(#[from] materialize::MaterializeError),
    /// The artifact store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// polars failed.
    #[error("reading the snapshot failed")]
    Polars(#[from] PolarsError),
    /// Anything else, with the reason.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> JobError {
    JobError::Invalid(message.into())
}

/// Downloads object-store sources into `work` and returns every source's local path.
pub async fn resolve_sources(
    spec: &FeatureSetSpec,
    work: &Path,
) -> Result<materialize::LocalPaths, JobError> {
    let mut paths = BTreeMap::new();
    for source in &spec.sources {
        let path = match (&source.file, &source.object_store) {
            (Some(file), _) => PathBuf::from(&file.path),
            (None, Some(obj)) => {
                let bytes = store::read_url(&obj.url).await?;
                let local = work.join(format!("source-{}", source.name));
                std::fs::write(&local, bytes)
                    .map_err(|e| invalid(format!("cannot write {}: {e}", local.display())))?;
                local
            }
            (None, None) => {
                return Err(invalid(format!(
                    "source {} sets neither file nor objectStore",
                    source.name
                )));
            }
        };
        paths.insert(source.name.clone(), path);
    }
    Ok(paths)
}

/// `leitwerk-trainer materialize`.
pub async fn run_materialize(
    spec: &FeatureSetSpec,
    namespace: &str,
    name: &str,
    store_url: &str,
    work: &Path,
) -> Result<MaterializeSummary, JobError> {
    let paths = resolve_sources(spec, work).await?;
    let m = materialize::materialize(spec, &paths)?;
    let rows = m.frame.height() as i64;
    let data_until = Some(materialize::rfc3339(m.data_until_ms));
    if m.quality.iter().any(|q| !q.passed) {
        return Ok(MaterializeSummary {
            published: false,
            version: None,
            digest: None,
            location: None,
            rows,
            data_until,
            quality: m.quality,
        });
    }
    let parquet = materialize::to_parquet(&m.frame)?;
    let digest = store::digest(&parquet);
    let version = digest.trim_start_matches("sha256:")[..12].to_string();
    let stats = materialize::statistics(&m)?;
    let manifest = Manifest {
        version: version.clone(),
        digest: digest.clone(),
        entity_key: spec.entity_key.clone(),
        label: spec.label.name.clone(),
        features: m.features.clone(),
        rows: m.frame.height(),
        cutoffs: m.cutoffs.iter().map(|&t| materialize::rfc3339(t)).collect(),
        data_until: materialize::rfc3339(m.data_until_ms),
        quality: m.quality.clone(),
    };
    let store = Store::open(store_url)?;
    let dir = format!("featuresets/{namespace}/{name}/{version}");
    store
        .put(&format!("{dir}/features.parquet"), parquet)
        .await?;
    store
        .put(&format!("{dir}/stats.json"), json(&stats))
        .await?;
    // The manifest goes last: its presence marks a complete snapshot.
    store
        .put(&format!("{dir}/manifest.json"), json(&manifest))
        .await?;
    Ok(MaterializeSummary {
        published: true,
        version: Some(version),
        digest: Some(digest),
        location: Some(store.url_of(&dir)),
        rows,
        data_until,
        quality: m.quality,
    })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// A training table read back from a snapshot.
#[derive(Debug, Clone)]
pub struct Table {
    /// Raw feature columns.
    pub columns: Columns,
    /// Feature order and kinds.
    pub features: Vec<FeatureColumn>,
    /// Label per row (regression: the value; classification: 0/1).
    pub label: Vec<f64>,
    /// Cutoff per row (ms).
    pub cutoff: Vec<i64>,
}

/// Turns a snapshot frame into columns.
pub fn table(frame: &DataFrame, manifest: &Manifest) -> Result<Table, JobError> {
    let mut columns = Columns::default();
    for f in &manifest.features {
        let c = frame.column(&f.name)?;
        match f.kind {
            FeatureKind::Numeric => {
                let v = c.cast(&DataType::Float64)?;
                columns.numeric.push((
                    f.name.clone(),
                    v.f64()?.iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
                ));
            }
            FeatureKind::Categorical => {
                let v = c.cast(&DataType::String)?;
                columns.categorical.push((
                    f.name.clone(),
                    v.str()?
                        .iter()
                        .map(|x| x.unwrap_or("").to_string())
                        .collect(),
                ));
            }
        }
    }
    let label = frame.column(&manifest.label)?.cast(&DataType::Float64)?;
    let label: Vec<f64> = label.f64()?.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
    let cutoff = frame.column(CUTOFF)?.cast(&DataType::Int64)?;
    let cutoff: Vec<i64> = cutoff.i64()?.iter().map(|x| x.unwrap_or(0)).collect();
    Ok(Table {
        columns,
        features: manifest.features.clone(),
        label,
        cutoff,
    })
}

/// Time-ordered split: the newest `fraction` of cutoffs validate. Returns (train, validation)
/// row indices.
pub fn time_split(cutoff: &[i64], fraction: f64) -> Result<(Vec<usize>, Vec<usize>), JobError> {
    let mut distinct: Vec<i64> = cutoff.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(invalid(format!(
            "the snapshot has {} cutoff(s); a time-ordered split needs at least 2 (raise spec.cutoffs.count of the FeatureSet)",
            distinct.len()
        )));
    }
    let k = ((distinct.len() as f64 * fraction).ceil() as usize).clamp(1, distinct.len() - 1);
    let first_valid = distinct[distinct.len() - k];
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, &c) in cutoff.iter().enumerate() {
        if c >= first_valid {
            valid.push(i)
        } else {
            train.push(i)
        }
    }
    Ok((train, valid))
}

/// A fitted model: preprocessing plus head.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// Logistic regression.
    Logistic(crate::logistic::Logistic),
    /// One tree or a forest.
    Trees(Forest),
}

impl Fitted {
    /// In-process predictions on encoded rows.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        match self {
            Fitted::Logistic(m) => m.predict(x),
            Fitted::Trees(f) => f.predict(x),
        }
    }

    fn head(&self) -> Head<'_> {
        match self {
            Fitted::Logistic(m) => Head::Logistic {
                weights: m.weights.as_slice().unwrap_or(&[]),
                intercept: m.intercept,
            },
            Fitted::Trees(f) => Head::Trees(f),
        }
    }
}

/// Fits the algorithm a Model asks for.
pub fn fit(
    spec: &ModelSpec,
    x: &Array2<f64>,
    y: &[f64],
) -> Result<(Fitted, serde_json::Value), JobError> {
    let classes: Vec<bool> = match spec.task {
        Task::BinaryClassification => y.iter().map(|&v| v > 0.0).collect(),
        Task::Regression => {
            let mut sorted = y.to_vec();
            sorted.sort_by(f64::total_cmp);
            let median = materialize::quantile(&sorted, 0.5);
            y.iter().map(|&v| v > median).collect()
        }
    };
    let algorithm = spec
        .algorithm
        .clone()
        .unwrap_or(leitwerk_crds::model::Algorithm {
            logistic_regression: None,
            decision_tree: None,
            random_forest: None,
            linear_regression: None,
        });
    if let Some(lr) = &algorithm.logistic_regression {
        if spec.task != Task::BinaryClassification {
            return Err(invalid(
                "spec.algorithm.logisticRegression needs task BinaryClassification",
            ));
        }
        let m = crate::logistic::Logistic::fit(x, &classes, lr.l2, lr.max_iterations.max(1) as u64)
            .map_err(|e| {
                invalid(format!(
                    "{e}: {:?}",
                    std::error::Error::source(&e).map(ToString::to_string)
                ))
            })?;
        return Ok((
            Fitted::Logistic(m),
            serde_json::json!({"logisticRegression": {"l2": lr.l2, "maxIterations": lr.max_iterations}}),
        ));
    }
    if algorithm.linear_regression.is_some() {
        return Err(invalid(
            "spec.algorithm.linearRegression is not available in this release; use decisionTree or randomForest for regression",
        ));
    }
    let (params, described) = if let Some(rf) = &algorithm.random_forest {
        (
            ForestParams {
                trees: rf.trees.max(1) as usize,
                max_depth: rf.max_depth.max(1) as usize,
                min_samples_leaf: 5,
                sample_ratio: rf.sample_ratio,
                seed: rf.seed as u64,
            },
            serde_json::json!({"randomForest": {"trees": rf.trees, "maxDepth": rf.max_depth, "sampleRatio": rf.sample_ratio, "seed": rf.seed}}),
        )
    } else if let Some(dt) = &algorithm.decision_tree {
        (
            ForestParams {
                trees: 1,
                max_depth: dt.max_depth.max(1) as usize,
                min_samples_leaf: dt.min_samples_leaf.max(1) as usize,
                sample_ratio: 1.0,
                seed: 0,
            },
            serde_json::json!({"decisionTree": {"maxDepth": dt.max_depth, "minSamplesLeaf": dt.min_samples_leaf}}),
        )
    } else if spec.task == Task::BinaryClassification {
        let m = crate::logistic::Logistic::fit(x, &classes, 1.0, 200)
            .map_err(|e| invalid(e.to_string()))?;
        return Ok((
            Fitted::Logistic(m),
            serde_json::json!({"logisticRegression": {"l2": 1.0, "maxIterations": 200}}),
        ));
    } else {
        (
            ForestParams {
                trees: 1,
                max_depth: 8,
                min_samples_leaf: 5,
                sample_ratio: 1.0,
                seed: 0,
            },
            serde_json::json!({"decisionTree": {"maxDepth": 8, "minSamplesLeaf": 5}}),
        )
    };
    let forest = Forest::fit(x, &classes, y, params).map_err(|e| invalid(e.to_string()))?;
    Ok((Fitted::Trees(forest), described))
}

/// Reference distribution of one raw feature, for drift detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// Feature (input) name.
    pub name: String,
    /// Numeric or Categorical.
    pub kind: FeatureKind,
    /// Numeric: inner bucket edges (deciles of the training rows); bucket i is
    /// `(edges[i-1], edges[i]]`, the first `(-inf, edges[0]]`, the last `(edges[last], +inf)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: the categories in bucket order; the last bucket is the unknown bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Share of training rows per bucket (sums to 1), missing values excluded.
    pub proportions: Vec<f64>,
    /// Share of training rows with a missing value.
    pub missing: f64,
}

/// The model card, `card.json` beside `model.onnx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCard {
    /// Model name.
    pub model: String,
    /// Version as the operator named it.
    pub version: String,
    /// Task.
    pub task: String,
    /// Algorithm and its parameters.
    pub parameters: serde_json::Value,
    /// Validation metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Calibration table on the validation rows (classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<serde_json::Value>,
    /// Decision threshold used for precision/recall/F1.
    pub threshold: f64,
    /// Snapshot version and digest.
    pub data: serde_json::Value,
    /// Rows used for training and validation.
    pub rows: serde_json::Value,
    /// Inputs in order: name and OIP v2 datatype (`FP32` or `BYTES`), shape `[-1, 1]`.
    pub inputs: Vec<(String, String)>,
    /// The output tensor.
    pub output: String,
    /// Reference distribution of every feature.
    pub reference: Vec<Reference>,
    /// `leitwerk-trainer` version.
    pub trainer_version: String,
    /// When training finished (RFC 3339).
    pub trained_at: String,
    /// Largest |ONNX Runtime − in-process| difference on the validation rows.
    pub parity_max_abs_diff: f64,
    /// The first validation rows with their raw inputs and the score the trainer computed:
    /// a smoke test for any deployment of the model.
    pub examples: Vec<serde_json::Value>,
}

/// The first `n` rows of `columns` as `{"inputs": {...}, "score": s}`.
pub fn examples(columns: &Columns, scores: &[f64], n: usize) -> Vec<serde_json::Value> {
    (0..n.min(scores.len()))
        .map(|i| {
            let mut inputs = serde_json::Map::new();
            for (name, v) in &columns.numeric {
                inputs.insert(
                    name.clone(),
                    if v[i].is_finite() {
                        serde_json::json!(v[i])
                    } else {
                        serde_json::Value::Null
                    },
                );
            }
            for (name, v) in &columns.categorical {
                inputs.insert(name.clone(), serde_json::json!(v[i]));
            }
            serde_json::json!({"inputs": inputs, "score": scores[i]})
        })
        .collect()
}

/// Reference distributions from training rows.
pub fn references(train: &Columns, encoder: &Encoder) -> Vec<Reference> {
    let mut out = Vec::new();
    for (name, values) in &train.numeric {
        let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..10)
            .map(|i| materialize::quantile(&present, i as f64 / 10.0))
            .collect();
        edges.dedup();
        let mut counts = vec![0usize; edges.len() + 1];
        for v in &present {
            counts[edges.partition_point(|e| e < v)] += 1;
        }
        let n = present.len().max(1) as f64;
        out.push(Reference {
            name: name.clone(),
            kind: FeatureKind::Numeric,
            edges,
            categories: Vec::new(),
            proportions: counts.iter().map(|&c| c as f64 / n).collect(),
            missing: (values.len() - present.len()) as f64 / values.len().max(1) as f64,
        });
    }
    for ((name, values), (_, cats)) in train.categorical.iter().zip(&encoder.categories) {
        let mut counts = vec![0usize; cats.len() + 1];
        let mut missing = 0;
        for v in values {
            if v.is_empty() {
                missing += 1;
            } else {
                counts[cats.iter().position(|c| c == v).unwrap_or(cats.len())] += 1;
            }
        }
        let n = (values.len() - missing).max(1) as f64;
        let mut categories = cats.clone();
        categories.push(UNKNOWN.to_string());
        out.push(Reference {
            name: name.clone(),
            kind: FeatureKind::Categorical,
            edges: Vec::new(),
            categories,
            proportions: counts.iter().map(|&c| c as f64 / n).collect(),
            missing: missing as f64 / values.len().max(1) as f64,
        });
    }
    out
}

/// What `train` needs besides the spec.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Namespace of the Model.
    pub namespace: String,
    /// Name of the Model.
    pub name: String,
    /// Version to record (`v3`).
    pub version: String,
    /// URL of the snapshot directory (with `manifest.json` and `features.parquet`).
    pub snapshot: String,
    /// Artifact store URL.
    pub store: String,
    /// ONNX Runtime shared library for the parity check.
    pub onnxruntime: PathBuf,
}

/// `leitwerk-trainer train`.
pub async fn run_train(spec: &ModelSpec, job: &TrainJob) -> Result<TrainSummary, JobError> {
    let snapshot = Store::open(&job.snapshot)?;
    let manifest: Manifest = serde_json::from_slice(&snapshot.get("manifest.json").await?)
        .map_err(|e| {
            invalid(format!(
                "{} is not a snapshot manifest: {e}",
                snapshot.url_of("manifest.json")
            ))
        })?;
    let frame = materialize::from_parquet(snapshot.get("features.parquet").await?)?;
    let table = table(&frame, &manifest)?;
    let fraction = spec
        .training
        .as_ref()
        .and_then(|t| t.validation_fraction)
        .unwrap_or(0.2);
    let (train_idx, valid_idx) = time_split(&table.cutoff, fraction)?;
    let train = table.columns.take(&train_idx);
    let valid = table.columns.take(&valid_idx);
    let y_train: Vec<f64> = train_idx.iter().map(|&i| table.label[i]).collect();
    let y_valid: Vec<f64> = valid_idx.iter().map(|&i| table.label[i]).collect();
    if spec.task == Task::BinaryClassification {
        let positives = y_train.iter().filter(|&&v| v > 0.0).count();
        if positives == 0 || positives == y_train.len() {
            return Err(invalid(format!(
                "the training rows have {positives} positive label(s) of {}: both classes are needed",
                y_train.len()
            )));
        }
    }
    let encoder = Encoder::fit(&train);
    let x_train = encoder.transform(&train);
    let x_valid = encoder.transform(&valid);
    let (model, parameters) = fit(spec, &x_train, &y_train)?;
    let predicted = model.predict(&x_valid);

    let threshold = spec.serving.threshold;
    let mut metric_map = BTreeMap::new();
    let mut calibration = Vec::new();
    match spec.task {
        Task::BinaryClassification => {
            let labels: Vec<bool> = y_valid.iter().map(|&v| v > 0.0).collect();
            if let Some(auc) = metrics::roc_auc(&predicted, &labels) {
                metric_map.insert("auc".to_string(), auc);
            }
            if let Some(pr) = metrics::pr_auc(&predicted, &labels) {
                metric_map.insert("prAuc".to_string(), pr);
            }
            metric_map.insert("logLoss".into(), metrics::log_loss(&predicted, &labels));
            metric_map.insert("brier".into(), metrics::brier(&predicted, &labels));
            let t = metrics::at_threshold(&predicted, &labels, threshold);
            metric_map.insert("precision".into(), t.precision);
            metric_map.insert("recall".into(), t.recall);
            metric_map.insert("f1".into(), t.f1);
            metric_map.insert(
                "positiveRate".into(),
                labels.iter().filter(|&&b| b).count() as f64 / labels.len().max(1) as f64,
            );
            calibration = metrics::calibration(&predicted, &labels, 10)
                .iter()
                .map(|b| serde_json::json!({"lower": b.lower, "upper": b.upper, "count": b.count, "predicted": b.predicted, "observed": b.observed}))
                .collect();
        }
        Task::Regression => {
            let r = metrics::regression(&predicted, &y_valid);
            metric_map.insert("mae".into(), r.mae);
            metric_map.insert("rmse".into(), r.rmse);
            metric_map.insert("r2".into(), r.r2);
        }
    }

    let inputs: Vec<(String, String)> = encoder
        .scales
        .iter()
        .map(|(n, _, _)| (n.clone(), "FP32".to_string()))
        .chain(
            encoder
                .categories
                .iter()
                .map(|(n, _)| (n.clone(), "BYTES".to_string())),
        )
        .collect();
    let bytes = onnx::export(
        &encoder,
        &model.head(),
        &[
            ("leitwerk.model", job.name.clone()),
            ("leitwerk.version", job.version.clone()),
            ("leitwerk.threshold", threshold.to_string()),
        ],
    );
    let served = crate::runtime::score(&job.onnxruntime, &bytes, &valid)?;
    let parity = served
        .iter()
        .zip(&predicted)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0_f64, f64::max);
    if served.len() != predicted.len() || !parity.is_finite() || parity > 1e-5 {
        return Err(invalid(format!(
            "ONNX Runtime and the trained model disagree on the validation rows (max |difference| {parity:e} > 1e-5); nothing was published"
        )));
    }

    let digest = store::digest(&bytes);
    let dir = format!(
        "models/{}/{}/{}",
        job.namespace,
        job.name,
        &digest.trim_start_matches("sha256:")[..12]
    );
    let card = ModelCard {
        model: job.name.clone(),
        version: job.version.clone(),
        task: format!("{:?}", spec.task),
        parameters,
        metrics: metric_map.clone(),
        calibration,
        threshold,
        data: serde_json::json!({"version": manifest.version, "digest": manifest.digest, "snapshot": job.snapshot}),
        rows: serde_json::json!({"train": train_idx.len(), "validation": valid_idx.len()}),
        inputs,
        output: onnx::OUTPUT.to_string(),
        reference: references(&train, &encoder),
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        parity_max_abs_diff: parity,
        examples: examples(&valid, &predicted, 5),
    };
    let out = Store::open(&job.store)?;
    out.put(&format!("{dir}/card.json"), json(&card)).await?;
    out.put(&format!("{dir}/model.onnx"), bytes).await?;
    Ok(TrainSummary {
        version: job.version.clone(),
        model_url: out.url_of(&format!("{dir}/model.onnx")),
        digest,
        data_version: manifest.version,
        metrics: metric_map,
        parity_max_abs_diff: parity,
    })
}
