//! The server's Prometheus metrics: per version, per feature bucket, per outcome.

use leitwerk_crds::card::metric;
use leitwerk_crds::card::metric::registered;

use super::*;

/// Labels of per-version series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
}

/// Labels of retrieval series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IndexLabels {
    /// RagIndex name.
    pub index: String,
    /// Index version.
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

/// Labels of refusal series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: `unauthenticated`, `unknown` or `replayed`.
    pub reason: String,
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

/// Labels of mirrored-request series (shadow mode).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// Model name (the stable one that answered).
    pub model: String,
    /// Version (the stable one that answered).
    pub version: String,
    /// `ok`, `error` (no answer, a refusal or a timeout) or `dropped` (too many open).
    pub outcome: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    /// Registry rendered at /metrics.
    pub registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) predictions: Family<VersionLabels, Counter>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) latency: Family<RequestLabels, Histogram>,
    pub(crate) scores: Family<VersionLabels, Histogram>,
    pub(crate) features: Family<FeatureLabels, Counter>,
    pub(crate) reference: Family<ReferenceLabels, Gauge<f64, AtomicU64>>,
    pub(crate) outcomes: Family<OutcomeLabels, Counter>,
    pub(crate) outcome_value: Family<VersionLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) feedback_refused: Family<ReasonLabels, Counter>,
    pub(crate) batch_rows: Histogram,
    pub(crate) embedding_batch_texts: Histogram,
    pub(crate) index_queries: Family<IndexLabels, Counter>,
    pub(crate) index_empty: Family<IndexLabels, Counter>,
    pub(crate) index_latency: Family<IndexLabels, Histogram>,
    pub(crate) shadow_requests: Family<ShadowLabels, Counter>,
    pub(crate) shadow_rows: Family<VersionLabels, Counter>,
    pub(crate) shadow_agreed: Family<VersionLabels, Counter>,
    pub(crate) shadow_scores: Family<VersionLabels, Histogram>,
    pub(crate) shadow_latency: Family<VersionLabels, Histogram>,
}

impl Metrics {
    /// Registers every metric the server exposes; a list, long because there are that many.
    pub(crate) fn new(labels: &[(String, String)]) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            metric::PREFIX,
            labels
                .iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))),
        );
        let reference = Family::<ReferenceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            metric::registered::FEATURE_REFERENCE,
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
        registry.register(registered::REQUESTS, "Inference requests", requests.clone());
        registry.register(
            metric::registered::PREDICTIONS,
            "Rows scored",
            predictions.clone(),
        );
        registry.register(
            registered::ERRORS,
            "Failed inference requests by code",
            errors.clone(),
        );
        registry.register(
            registered::REQUEST_DURATION,
            "Time from request to response",
            latency.clone(),
        );
        registry.register(
            registered::SCORE,
            "Scores returned (P(true) for classifiers)",
            scores.clone(),
        );
        registry.register(
            metric::registered::FEATURE_BUCKET,
            "Rows per feature and bucket of the model card's reference distribution (drift input)",
            features.clone(),
        );
        registry.register(
            metric::registered::OUTCOMES,
            "Outcomes reported through the feedback endpoint",
            outcomes.clone(),
        );
        registry.register(
            "outcome_value",
            "Sum of reported outcome values (e.g. revenue)",
            outcome_value.clone(),
        );
        let feedback_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "feedback_refused",
            "Outcomes refused, by reason: unauthenticated (no or a wrong feedback token), unknown (a forged, guessed or forgotten prediction id), replayed (reported before)",
            feedback_refused.clone(),
        );
        registry.register(
            "batch_rows",
            "Rows per model run (dynamic batching)",
            batch_rows.clone(),
        );
        let embedding_batch_texts = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        registry.register(
            "embedding_batch_texts",
            "Texts per run of the embedding model (embeddings requests and index queries, batched)",
            embedding_batch_texts.clone(),
        );
        let index_queries = Family::<IndexLabels, Counter>::default();
        let index_empty = Family::<IndexLabels, Counter>::default();
        let index_latency = Family::<IndexLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
        });
        registry.register(
            "index_queries",
            "Retrieval queries per index version",
            index_queries.clone(),
        );
        registry.register(
            "index_empty_results",
            "Retrieval queries that found nothing (e.g. a filter nothing passes)",
            index_empty.clone(),
        );
        registry.register(
            "index_query_duration_seconds",
            "Time to embed a query and search the index",
            index_latency.clone(),
        );
        let shadow_requests = Family::<ShadowLabels, Counter>::default();
        let shadow_rows = Family::<VersionLabels, Counter>::default();
        let shadow_agreed = Family::<VersionLabels, Counter>::default();
        let shadow_scores = Family::<VersionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new((1..20).map(|i| i as f64 / 20.0))
        });
        let shadow_latency = Family::<VersionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ])
        });
        registry.register(
            registered::SHADOW_REQUESTS,
            "Requests mirrored to the shadow candidate, by outcome (ok, error, dropped)",
            shadow_requests.clone(),
        );
        registry.register(
            registered::SHADOW_ROWS,
            "Rows the shadow candidate scored",
            shadow_rows.clone(),
        );
        registry.register(
            registered::SHADOW_AGREED,
            "Rows the shadow candidate put on the same side of the threshold as this server",
            shadow_agreed.clone(),
        );
        registry.register(
            "shadow_score",
            "The shadow candidate's scores of the mirrored rows",
            shadow_scores.clone(),
        );
        registry.register(
            "shadow_request_duration_seconds",
            "Time the shadow candidate took to answer",
            shadow_latency.clone(),
        );
        Metrics {
            shadow_requests,
            shadow_rows,
            shadow_agreed,
            shadow_scores,
            shadow_latency,
            registry,
            index_queries,
            index_empty,
            index_latency,
            requests,
            predictions,
            errors,
            latency,
            scores,
            features,
            reference,
            outcomes,
            outcome_value,
            feedback_refused,
            batch_rows,
            embedding_batch_texts,
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
