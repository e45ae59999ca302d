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
use tokio::sync::{mpsc, oneshot};

use crate::model::{Column, InferError, Model, Rows, TensorIn};

/// Labels of per-version series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
}

/// Labels of request series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// `rest` or `grpc`.
    pub protocol: String,
}

/// Labels of error series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// `invalid_argument`, `not_found` or `internal`.
    pub code: String,
}

/// Labels of feature histogram series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// Feature (input) name.
    pub feature: String,
    /// Bucket index of the model card's reference distribution, or `missing`.
    pub bucket: String,
}

/// Labels of the reference distribution series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReferenceLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// Feature (input) name.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// Bucket index, or `missing`.
    pub bucket: String,
}

/// Labels of outcome series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// `converted` or `not_converted`.
    pub outcome: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    /// Registry rendered at /metrics.
    pub registry: Registry,
    requests: Family<RequestLabels, Counter>,
    predictions: Family<VersionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    scores: Family<VersionLabels, Histogram>,
    features: Family<FeatureLabels, Counter>,
    reference: Family<ReferenceLabels, Gauge<f64, AtomicU64>>,
    outcomes: Family<OutcomeLabels, Counter>,
    outcome_value: Family<VersionLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    batch_rows: Histogram,
}

impl Metrics {
    fn new(labels: &[(String, String)]) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "leitwerk_inference",
            labels
                .iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))),
        );
        let reference = Family::<ReferenceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "feature_reference",
            "Share of training rows per feature and bucket, from the model card (drift reference)",
            reference.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let predictions = Family::<VersionLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ])
        });
        let scores = Family::<VersionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new((1..20).map(|i| i as f64 / 20.0))
        });
        let features = Family::<FeatureLabels, Counter>::default();
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        let outcome_value = Family::<VersionLabels, Counter<f64, AtomicU64>>::default();
        let batch_rows = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        registry.register("requests", "Inference requests", requests.clone());
        registry.register("predictions", "Rows scored", predictions.clone());
        registry.register(
            "errors",
            "Failed inference requests by code",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response",
            latency.clone(),
        );
        registry.register(
            "score",
            "Scores returned (P(true) for classifiers)",
            scores.clone(),
        );
        registry.register(
            "feature_bucket",
            "Rows per feature and bucket of the model card's reference distribution (drift input)",
            features.clone(),
        );
        registry.register(
            "outcomes",
            "Outcomes reported through the feedback endpoint",
            outcomes.clone(),
        );
        registry.register(
            "outcome_value",
            "Sum of reported outcome values (e.g. revenue)",
            outcome_value.clone(),
        );
        registry.register(
            "batch_rows",
            "Rows per model run (dynamic batching)",
            batch_rows.clone(),
        );
        Metrics {
            registry,
            requests,
            predictions,
            errors,
            latency,
            scores,
            features,
            reference,
            outcomes,
            outcome_value,
            batch_rows,
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Where recent predictions are remembered for feedback, bounded.
#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    by_id: HashMap<String, (String, String)>,
    order: VecDeque<String>,
}

impl FeedbackStore {
    /// A store that remembers at most `capacity` predictions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_id: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers a prediction, forgetting the oldest beyond the capacity.
    pub fn remember(&mut self, id: String, model: &str, version: &str) {
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        self.by_id
            .insert(id.clone(), (model.to_string(), version.to_string()));
        self.order.push_back(id);
    }

    /// Takes a prediction out (each outcome counts once).
    pub fn take(&mut self, id: &str) -> Option<(String, String)> {
        let found = self.by_id.remove(id)?;
        self.order.retain(|x| x != id);
        Some(found)
    }

    /// Predictions remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

struct BatchJob {
    rows: Rows,
    reply: oneshot::Sender<Result<Vec<f32>, InferError>>,
}

/// Dynamic batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Largest number of rows per model run.
    pub max_batch_size: usize,
    /// Longest wait for a batch to fill.
    pub max_delay: Duration,
}

/// One served model version with its batcher.
#[derive(Debug)]
pub struct Served {
    /// The model.
    pub model: Arc<Model>,
    batcher: Option<mpsc::Sender<BatchJobHandle>>,
}

/// A boxed batch job (keeps the channel type private).
pub struct BatchJobHandle(BatchJob);

impl std::fmt::Debug for BatchJobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchJob({} rows)", self.0.rows.n)
    }
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
                            kind: reference.kind.to_lowercase(),
                            bucket,
                        })
                        .set(share);
                }
            }
            let model = Arc::new(model);
            let batcher = batching.filter(|b| b.max_batch_size > 1).map(|b| {
                let (tx, rx) = mpsc::channel(1024);
                tokio::spawn(batch_loop(model.clone(), rx, b, metrics.batch_rows.clone()));
                tx
            });
            let served = Served {
                model: model.clone(),
                batcher,
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
        })
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
        protocol: &str,
    ) -> Result<Scored, InferError> {
        let started = Instant::now();
        let result = self.infer_inner(name, version, tensors).await;
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
    ) -> Result<Scored, InferError> {
        let served = self.find(name, version)?;
        let model = served.model.clone();
        let rows = model.prepare(tensors)?;
        self.observe_features(&model, &rows);
        let scores = match &served.batcher {
            Some(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(BatchJobHandle(BatchJob { rows, reply }))
                    .await
                    .map_err(|_| InferError::Internal("the batcher stopped".into()))?;
                rx.await
                    .map_err(|_| InferError::Internal("the batcher dropped the request".into()))??
            }
            None => {
                let m = model.clone();
                let n = rows.n;
                self.metrics.batch_rows.observe(n as f64);
                tokio::task::spawn_blocking(move || m.run(&rows))
                    .await
                    .map_err(|e| InferError::Internal(format!("inference task failed: {e}")))??
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
                let id = format!(
                    "{}-{}",
                    self.id_prefix,
                    self.ids.fetch_add(1, Ordering::Relaxed)
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
        })
    }

    fn observe_features(&self, model: &Model, rows: &Rows) {
        for (((name, _), reference), column) in model
            .inputs
            .iter()
            .zip(&model.references)
            .zip(&rows.columns)
        {
            let Some(reference) = reference else { continue };
            let mut counts: HashMap<String, u64> = HashMap::new();
            match column {
                Column::Number(v) => v
                    .iter()
                    .for_each(|x| *counts.entry(reference.bucket_of_number(*x)).or_default() += 1),
                Column::Text(v) => v
                    .iter()
                    .for_each(|x| *counts.entry(reference.bucket_of_text(x)).or_default() += 1),
            }
            for (bucket, c) in counts {
                let labels = FeatureLabels {
                    model: model.name.clone(),
                    version: model.version.clone(),
                    feature: name.clone(),
                    bucket,
                };
                self.metrics.features.get_or_create(&labels).inc_by(c);
            }
        }
    }

    /// Records an outcome for a prediction id; unknown (or already reported) ids are NotFound.
    pub fn feedback(
        &self,
        prediction_id: &str,
        converted: bool,
        value: Option<f64>,
    ) -> Result<(String, String), InferError> {
        let found = self
            .feedback
            .lock()
            .map_err(|_| InferError::Internal("feedback store lock poisoned".into()))?
            .take(prediction_id);
        let (model, version) = found.ok_or_else(|| {
            InferError::NotFound(format!(
                "prediction {prediction_id:?} is unknown, already reported or too old to remember"
            ))
        })?;
        let outcome = if converted {
            "converted"
        } else {
            "not_converted"
        };
        self.metrics
            .outcomes
            .get_or_create(&OutcomeLabels {
                model: model.clone(),
                version: version.clone(),
                outcome: outcome.into(),
            })
            .inc();
        if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
            self.metrics
                .outcome_value
                .get_or_create(&VersionLabels {
                    model: model.clone(),
                    version: version.clone(),
                })
                .inc_by(v);
        }
        Ok((model, version))
    }
}

async fn batch_loop(
    model: Arc<Model>,
    mut rx: mpsc::Receiver<BatchJobHandle>,
    batching: Batching,
    rows_histogram: Histogram,
) {
    while let Some(BatchJobHandle(first)) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + batching.max_delay;
        let mut jobs = vec![first];
        let mut total = jobs[0].rows.n;
        while total < batching.max_batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(BatchJobHandle(job))) => {
                    total += job.rows.n;
                    jobs.push(job);
                }
                _ => break,
            }
        }
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut combined: Option<Rows> = None;
        for job in jobs {
            sizes.push(job.rows.n);
            replies.push(job.reply);
            match &mut combined {
                None => combined = Some(job.rows),
                Some(c) => c.extend(job.rows),
            }
        }
        let Some(rows) = combined else { continue };
        rows_histogram.observe(rows.n as f64);
        let m = model.clone();
        let result = tokio::task::spawn_blocking(move || m.run(&rows))
            .await
            .unwrap_or_else(|e| Err(InferError::Internal(format!("inference task failed: {e}"))));
        let mut offset = 0;
        for (n, reply) in sizes.into_iter().zip(replies) {
            let part = result
                .as_ref()
                .map(|s| s[offset..offset + n].to_vec())
                .map_err(Clone::clone);
            offset += n;
            let _ = reply.send(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feedback_store_is_bounded_and_counts_each_outcome_once() {
        let mut store = FeedbackStore::new(3);
        for i in 0..5 {
            store.remember(format!("p{i}"), "m", "v1");
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.take("p0"), None, "the oldest were forgotten");
        assert_eq!(store.take("p4"), Some(("m".into(), "v1".into())));
        assert_eq!(store.take("p4"), None, "an outcome counts once");
        assert_eq!(store.len(), 2);
    }
}
