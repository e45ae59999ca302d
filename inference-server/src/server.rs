//! The server's shared state: models, dynamic batching, metrics and the feedback store.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::model::{Column, InferError, Model, Rows, TensorIn};

mod batching;
mod feedback;
pub(crate) mod metrics;

pub use batching::*;
pub use feedback::*;
pub use metrics::*;

/// One served model version with its batcher.
#[derive(Debug)]
pub struct Served {
    /// The model.
    pub model: Arc<Model>,
    batcher: Option<Arc<Batcher<Model>>>,
    /// Per input with a reference distribution, the drift counter of each of its buckets and,
    /// last, of its missing values: made once at load, so a request only computes bucket
    /// indices and increments, with no label sets to build or look up.
    features: Vec<Option<Vec<Counter>>>,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    /// Models by name, versions in the order given (the first is the default).
    pub models: Vec<(String, Vec<Served>)>,
    /// Metrics.
    pub metrics: Metrics,
    /// Remembered predictions.
    pub feedback: Mutex<FeedbackStore>,
    ids: AtomicU64,
    id_prefix: String,
    /// False once shutdown begins (readiness fails).
    pub ready: std::sync::atomic::AtomicBool,
    /// The embedding model and RagIndex versions, when the server was given them
    /// ([`Server::set_retrieval`]).
    pub retrieval: std::sync::OnceLock<Arc<crate::retrieval::Retrieval>>,
    /// How model runs, and the encoder's, are batched.
    batching: Option<Batching>,
    /// The local generator, when the server was given a GGUF model.
    pub generator: std::sync::OnceLock<Arc<crate::generator::Generator>>,
    /// The token feedback callers must send (`Authorization: Bearer …`); without one the
    /// endpoint takes outcomes from anyone who holds a prediction id.
    pub feedback_token: std::sync::OnceLock<String>,
    /// The candidate REST requests are mirrored to (shadow mode).
    pub shadow: std::sync::OnceLock<Arc<crate::shadow::Shadow>>,
}

/// The reply of one inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Model name.
    pub model: String,
    /// Version that answered.
    pub version: String,
    /// Output tensor name.
    pub output: String,
    /// One score per row.
    pub scores: Vec<f32>,
    /// One prediction id per row, for the feedback endpoint.
    pub prediction_ids: Vec<String>,
    /// Per-row attributions, when the request asked for them.
    pub explanation: Option<crate::explain::Explained>,
}

impl Server {
    /// Builds the server; with batching, starts one batching task per model version.
    pub fn new(
        models: Vec<Model>,
        batching: Option<Batching>,
        feedback_capacity: usize,
    ) -> Arc<Server> {
        Self::with_labels(models, batching, feedback_capacity, &[])
    }

    /// Builds the server with constant labels on every metric (e.g. `variant=canary`, so that
    /// KPI queries can tell the arms of an Experiment apart without scrape relabelling).
    pub fn with_labels(
        models: Vec<Model>,
        batching: Option<Batching>,
        feedback_capacity: usize,
        labels: &[(String, String)],
    ) -> Arc<Server> {
        let mut grouped: Vec<(String, Vec<Served>)> = Vec::new();
        let metrics = Metrics::new(labels);
        for model in models {
            for reference in model.references.iter().flatten() {
                for (bucket, share) in reference.shares() {
                    metrics
                        .reference
                        .get_or_create(&ReferenceLabels {
                            model: model.name.clone(),
                            version: model.version.clone(),
                            feature: reference.name.clone(),
                            kind: match reference.kind {
                                leitwerk_crds::feature_set::FeatureKind::Numeric => {
                                    "numeric".into()
                                }
                                leitwerk_crds::feature_set::FeatureKind::Categorical => {
                                    "categorical".into()
                                }
                            },
                            bucket,
                        })
                        .set(share);
                }
            }
            let model = Arc::new(model);
            let batcher = batching
                .filter(|b| b.max_batch_size > 1)
                .map(|b| Arc::new(Batcher::new(model.clone(), b, metrics.batch_rows.clone())));
            let features = feature_counters(&model, &metrics);
            let served = Served {
                model: model.clone(),
                batcher,
                features,
            };
            match grouped.iter_mut().find(|(n, _)| *n == model.name) {
                Some((_, versions)) => versions.push(served),
                None => grouped.push((model.name.clone(), vec![served])),
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Arc::new(Server {
            models: grouped,
            metrics,
            feedback: Mutex::new(FeedbackStore::new(feedback_capacity)),
            ids: AtomicU64::new(0),
            id_prefix: format!("{:x}", nanos & 0xffff_ffff_ffff),
            ready: std::sync::atomic::AtomicBool::new(true),
            retrieval: std::sync::OnceLock::new(),
            batching,
            generator: std::sync::OnceLock::new(),
            feedback_token: std::sync::OnceLock::new(),
            shadow: std::sync::OnceLock::new(),
        })
    }

    /// Serves `retrieval`, its encoder batched as the models are (texts for rows). A second
    /// call changes nothing.
    pub fn set_retrieval(&self, retrieval: crate::retrieval::Retrieval) {
        let texts = self.metrics.embedding_batch_texts.clone();
        let _ = self
            .retrieval
            .set(Arc::new(retrieval.batched(self.batching, texts)));
    }

    /// Finds a model version; no version means the default (the first given).
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<&Served, InferError> {
        let (_, versions) = self.models.iter().find(|(n, _)| n == name).ok_or_else(|| {
            InferError::NotFound(format!(
                "model {name:?} is not served here; models: {}",
                self.models
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        match version.filter(|v| !v.is_empty()) {
            None => versions
                .first()
                .ok_or_else(|| InferError::NotFound(format!("model {name:?} has no version"))),
            Some(v) => versions
                .iter()
                .find(|s| s.model.version == v)
                .ok_or_else(|| {
                    InferError::NotFound(format!(
                        "model {name:?} has no version {v:?}; versions: {}",
                        versions
                            .iter()
                            .map(|s| s.model.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
        }
    }

    /// Validates, scores and records one request.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<&str>,
        tensors: Vec<TensorIn>,
        explain: bool,
        protocol: &str,
    ) -> Result<Scored, InferError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(
            crate::model::REQUEST_TIMEOUT,
            self.infer_inner(name, version, tensors, explain),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(InferError::Timeout(format!(
                "the request took longer than the server's limit of {} s",
                crate::model::REQUEST_TIMEOUT.as_secs()
            ))),
        };
        let (model, version_label) = match &result {
            Ok(s) => (s.model.clone(), s.version.clone()),
            Err(_) => (name.to_string(), version.unwrap_or("").to_string()),
        };
        let labels = RequestLabels {
            model: model.clone(),
            version: version_label.clone(),
            protocol: protocol.to_string(),
        };
        self.metrics.requests.get_or_create(&labels).inc();
        match &result {
            Ok(_) => self
                .metrics
                .latency
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => {
                let code = match e {
                    InferError::Invalid(_) => "invalid_argument",
                    InferError::NotFound(_) => "not_found",
                    InferError::Internal(_) => "internal",
                    InferError::Unauthenticated(_) => "unauthenticated",
                    InferError::Conflict(_) => "conflict",
                    InferError::TooLarge(_) => "too_large",
                    InferError::Timeout(_) => "timeout",
                };
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        model,
                        version: version_label,
                        code: code.into(),
                    })
                    .inc();
            }
        }
        result
    }

    async fn infer_inner(
        &self,
        name: &str,
        version: Option<&str>,
        tensors: Vec<TensorIn>,
        explain: bool,
    ) -> Result<Scored, InferError> {
        let served = self.find(name, version)?;
        let model = served.model.clone();
        let rows = model.prepare(tensors)?;
        // Explained first: a request the explainer refuses is refused whole, before scoring.
        let explanation = if explain {
            let (m, rows) = (model.clone(), rows.clone());
            Some(
                tokio::task::spawn_blocking(move || m.explain(&rows))
                    .await
                    .map_err(|e| InferError::Internal(format!("explanation task failed: {e}")))??,
            )
        } else {
            None
        };
        Self::observe_features(served, &rows);
        let scores = match &served.batcher {
            Some(batcher) => batcher.score(rows).await?,
            None => {
                let n = rows.n;
                self.metrics.batch_rows.observe(n as f64);
                if model.runs_inline(n) {
                    model.run(&rows)?
                } else {
                    let m = model.clone();
                    tokio::task::spawn_blocking(move || m.run(&rows))
                        .await
                        .map_err(|e| {
                            InferError::Internal(format!("inference task failed: {e}"))
                        })??
                }
            }
        };
        let labels = VersionLabels {
            model: model.name.clone(),
            version: model.version.clone(),
        };
        let histogram = self.metrics.scores.get_or_create(&labels);
        for s in &scores {
            histogram.observe(f64::from(*s));
        }
        self.metrics
            .predictions
            .get_or_create(&labels)
            .inc_by(scores.len() as u64);
        let mut ids = Vec::with_capacity(scores.len());
        if let Ok(mut store) = self.feedback.lock() {
            for _ in 0..scores.len() {
                // Unguessable: a caller who saw one id cannot name the next one, so only
                // the caller that got a prediction can report its outcome.
                let id = format!(
                    "{}-{}-{:032x}",
                    self.id_prefix,
                    self.ids.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u128>()
                );
                store.remember(id.clone(), &model.name, &model.version);
                ids.push(id);
            }
        }
        Ok(Scored {
            model: model.name.clone(),
            version: model.version.clone(),
            output: model.output.clone(),
            scores,
            prediction_ids: ids,
            explanation,
        })
    }

    fn observe_features(served: &Served, rows: &Rows) {
        let references = served.model.references.iter();
        for ((counters, reference), column) in
            served.features.iter().zip(references).zip(&rows.columns)
        {
            let (Some(counters), Some(reference)) = (counters, reference) else {
                continue;
            };
            let missing = counters.len().saturating_sub(1);
            let count = |bucket: usize| {
                if let Some(c) = counters.get(bucket) {
                    c.inc();
                }
            };
            match column {
                Column::Number(v) => v.iter().for_each(|x| {
                    let x = f64::from(*x);
                    count(if x.is_nan() {
                        missing
                    } else {
                        leitwerk_crds::card::numeric_bucket(&reference.edges, x)
                    })
                }),
                Column::Text(v) => v
                    .iter()
                    .for_each(|x| count(reference.category_bucket(x).unwrap_or(missing))),
            }
        }
    }
}

/// The drift counters of a model's inputs, one per bucket of its reference distribution and
/// one for missing values (last), labelled as `Reference::bucket_of_number` and
/// `bucket_of_text` name the buckets.
fn feature_counters(model: &Model, metrics: &Metrics) -> Vec<Option<Vec<Counter>>> {
    model
        .inputs
        .iter()
        .zip(&model.references)
        .map(|((name, _), reference)| {
            let reference = reference.as_ref()?;
            let buckets = match reference.kind {
                leitwerk_crds::feature_set::FeatureKind::Numeric => reference.edges.len() + 1,
                leitwerk_crds::feature_set::FeatureKind::Categorical => reference.categories.len(),
            };
            let labels = (0..buckets)
                .map(|b| b.to_string())
                .chain([leitwerk_crds::card::MISSING.to_string()]);
            Some(
                labels
                    .map(|bucket| {
                        metrics
                            .features
                            .get_or_create(&FeatureLabels {
                                model: model.name.clone(),
                                version: model.version.clone(),
                                feature: name.clone(),
                                bucket,
                            })
                            .clone()
                    })
                    .collect(),
            )
        })
        .collect()
}
