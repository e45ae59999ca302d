//! The two Jobs end to end: `materialize` (sources → snapshot in the artifact store) and
//! `train` (snapshot → ONNX model + model card in the artifact store), each returning the
//! summary that goes to the pod's termination message; `score` (a version and a table → one
//! file of scores and attributions, `score.rs`).
//!
//! Store layout (every object digest-named, so a write never replaces what a reader uses):
//! `featuresets/<namespace>/<name>/<version>/{features.parquet,stats.json,manifest.json}` and
//! `models/<namespace>/<name>/<digest12>/{model.onnx,card.json}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leitwerk_crds::feature_set::{FeatureKind, FeatureSetSpec};
use leitwerk_crds::metrics::Metric;
use leitwerk_crds::model::{ModelSpec, Task};
use leitwerk_crds::summary::{MaterializeSummary, TrainSummary};
use ndarray::Array2;
use polars::prelude::*;
use serde::Serialize;

use crate::materialize::{self, CUTOFF, FeatureColumn, Manifest};
use crate::metrics;
use crate::onnx::{self, Head};
use crate::preprocess::{Columns, Encoder, UNKNOWN};
use crate::progress;
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

/// An error and its sources in one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Downloads object-store sources into `work` and returns every source's local path.
pub async fn resolve_sources(
    spec: &FeatureSetSpec,
    work: &Path,
) -> Result<materialize::LocalPaths, JobError> {
    let mut paths = BTreeMap::new();
    for (index, source) in spec.sources.iter().enumerate() {
        let path = match (&source.file, &source.object_store) {
            (Some(file), _) => PathBuf::from(&file.path),
            (None, Some(obj)) => {
                let bytes = store::read_url(&obj.url).await.map_err(|e| {
                    let credentials = match &obj.credentials_secret_ref {
                        Some(secret) => format!(
                            "with the credentials of Secret {:?} (spec.sources[{}].objectStore.credentialsSecretRef): check its keys",
                            secret.name, index
                        ),
                        None => "without credentials (set objectStore.credentialsSecretRef)".to_string(),
                    };
                    invalid(format!(
                        "source {} could not be read {credentials}: {}",
                        source.name,
                        error_chain(&e)
                    ))
                })?;
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
    progress::step("reading sources");
    let paths = resolve_sources(spec, work).await?;
    progress::step("computing features");
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
    let writing = progress::stage("writing", Some(rows as u64), "rows");
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
    writing.set(rows as u64);
    writing.finish();
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

mod card;
mod fit;
mod parity;
mod requests;
mod score;
mod segments;
mod table;
mod tuning;

pub use card::*;
pub use fit::*;
pub use leitwerk_crds::card::{FeatureImportance, ModelCard, Reference};
pub use parity::*;
pub use requests::*;
pub use score::*;
pub use segments::*;
pub use table::*;
pub use tuning::*;

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
///
/// Long on purpose: the steps (verify the snapshot, split, fit, evaluate, export, check
/// parity, publish) run in this order and each refuses to go on when the previous one found a
/// problem; read top to bottom they are the trainer's contract.
pub async fn run_train(spec: &ModelSpec, job: &TrainJob) -> Result<TrainSummary, JobError> {
    if spec.task == Task::CustomerLifetimeValue {
        return Err(invalid(
            "task CustomerLifetimeValue is fitted by `leitwerk-trainer lifetime-value` on spec.lifetimeValue.transactions, not trained on a snapshot",
        ));
    }
    progress::step("loading snapshot");
    let snapshot = Store::open(&job.snapshot)?;
    let manifest: Manifest = serde_json::from_slice(&snapshot.get("manifest.json").await?)
        .map_err(|e| {
            invalid(format!(
                "{} is not a snapshot manifest: {e}",
                snapshot.url_of("manifest.json")
            ))
        })?;
    let parquet = snapshot.get("features.parquet").await?;
    let digest = store::digest(&parquet);
    if digest != manifest.digest {
        return Err(invalid(format!(
            "{} has digest {digest}, but its manifest says {}: the snapshot was changed or damaged after publication; materialize the FeatureSet again",
            snapshot.url_of("features.parquet"),
            manifest.digest
        )));
    }
    let frame = materialize::from_parquet(parquet)?;
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
    // A search first, on time-ordered folds of the training rows; its best parameters train
    // the version.
    let (tuned, tuning_report, tuning_card) = match &spec.tuning {
        Some(t) => {
            progress::step("tuning");
            let cutoffs: Vec<i64> = train_idx.iter().map(|&i| table.cutoff[i]).collect();
            let (tuned, mut report, card) = tune(spec, t, &x_train, &y_train, &cutoffs)?;
            report.version = job.version.clone();
            (tuned, Some(report), Some(card))
        }
        None => (spec.clone(), None, None),
    };
    let spec = &tuned;
    progress::step("fitting");
    let (model, parameters) = match early_stopping_fraction(spec) {
        // Early stopping judges rounds on the newest training cutoffs, never on the rows the
        // version's metrics come from.
        Some(fraction) => {
            let cutoffs: Vec<i64> = train_idx.iter().map(|&i| table.cutoff[i]).collect();
            let (fit_rows, stop_rows) = time_split(&cutoffs, fraction).map_err(|e| {
                invalid(format!(
                    "spec.algorithm.gradientBoosting.earlyStopping needs at least 2 cutoffs among the training rows ({e}); raise the FeatureSet's cutoffs.count or remove earlyStopping"
                ))
            })?;
            let rows = |idx: &[usize]| x_train.select(ndarray::Axis(0), idx);
            let targets = |idx: &[usize]| idx.iter().map(|&i| y_train[i]).collect::<Vec<f64>>();
            let y_stop = targets(&stop_rows);
            let x_stop = rows(&stop_rows);
            fit(
                spec,
                &rows(&fit_rows),
                &targets(&fit_rows),
                Some((&x_stop, &y_stop)),
            )?
        }
        None => fit(spec, &x_train, &y_train, None)?,
    };
    progress::step("evaluating");
    let predicted = model.predict(&x_valid);
    // Global importance: mean |SHAP value| per raw feature on the validation rows.
    let explainer = crate::explain::explainer(&model, &encoder, &x_train, spec.task);
    let importance: Vec<FeatureImportance> =
        crate::explain::attributions(&model, &explainer, &x_valid)
            .map(|(_, values)| crate::explain::importance(&explainer, &values))
            .unwrap_or_default()
            .into_iter()
            .map(|(feature, mean_abs_shap)| FeatureImportance {
                feature,
                mean_abs_shap,
            })
            .collect();

    let threshold = spec.serving.threshold;
    let mut metric_map = BTreeMap::new();
    let mut calibration = Vec::new();
    let (mut explanations, mut segments) = (BTreeMap::new(), Vec::new());
    match spec.task {
        Task::BinaryClassification => {
            let labels: Vec<bool> = y_valid.iter().map(|&v| v > 0.0).collect();
            if let Some(auc) = metrics::roc_auc(&predicted, &labels) {
                metric_map.insert(Metric::Auc.to_string(), auc);
            }
            if let Some(pr) = metrics::pr_auc(&predicted, &labels) {
                metric_map.insert(Metric::PrAuc.to_string(), pr);
            }
            metric_map.insert(
                Metric::LogLoss.to_string(),
                metrics::log_loss(&predicted, &labels),
            );
            metric_map.insert(
                Metric::Brier.to_string(),
                metrics::brier(&predicted, &labels),
            );
            let t = metrics::at_threshold(&predicted, &labels, threshold);
            metric_map.insert(Metric::Precision.to_string(), t.precision);
            metric_map.insert(Metric::Recall.to_string(), t.recall);
            metric_map.insert(Metric::F1.to_string(), t.f1);
            metric_map.insert(
                Metric::PositiveRate.to_string(),
                labels.iter().filter(|&&b| b).count() as f64 / labels.len().max(1) as f64,
            );
            let bins = metrics::calibration(&predicted, &labels, 10);
            metric_map.insert(Metric::Ece.to_string(), metrics::ece(&bins));
            if let Some(evaluation) = &spec.evaluation {
                let scan = scan(evaluation, &valid, &predicted, &labels)?;
                metric_map.extend(scan.gaps);
                explanations = scan.explanations;
                segments = scan.figures;
            }
            calibration = bins
                .iter()
                .map(|b| serde_json::json!({"lower": b.lower, "upper": b.upper, "count": b.count, "predicted": b.predicted, "observed": b.observed}))
                .collect();
        }
        Task::Regression | Task::CustomerLifetimeValue => {
            let r = metrics::regression(&predicted, &y_valid);
            metric_map.insert(Metric::Mae.to_string(), r.mae);
            metric_map.insert(Metric::Rmse.to_string(), r.rmse);
            metric_map.insert(Metric::R2.to_string(), r.r2);
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
    progress::step("exporting");
    let explainer_json = explainer
        .to_json()
        .map_err(|e| invalid(format!("the model's explainer: {e}")))?;
    let bytes = onnx::export(
        &encoder,
        &model.head(),
        &[
            ("leitwerk.model", job.name.clone()),
            ("leitwerk.version", job.version.clone()),
            ("leitwerk.threshold", threshold.to_string()),
            (leitwerk_explain::METADATA_KEY, explainer_json),
        ],
    );
    progress::step("checking parity");
    let parity = check_parity(&job.onnxruntime, &bytes, &valid, &predicted)?;
    progress::step("publishing");

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
        threshold: Some(threshold),
        data: serde_json::json!({"version": manifest.version, "digest": manifest.digest, "snapshot": job.snapshot}),
        rows: serde_json::json!({"train": train_idx.len(), "validation": valid_idx.len()}),
        inputs,
        output: onnx::OUTPUT.to_string(),
        reference: references(&train, &encoder),
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        parity_max_abs_diff: parity,
        examples: examples(&valid, &predicted, 5),
        segments,
        importance: importance.clone(),
        tuning: tuning_card,
    };
    let segment_extremes = extremes(&card.segments);
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
        explanations,
        importance: importance
            .iter()
            .take(5)
            .map(|i| (i.feature.clone(), (i.mean_abs_shap * 1e4).round() / 1e4))
            .collect(),
        tuning: tuning_report,
        segments: segment_extremes,
    })
}
