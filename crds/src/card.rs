//! The contract between the trainer, the inference server and the operator about a trained
//! model, written once: the model card (`card.json` beside `model.onnx`), the reference
//! distribution of every feature and the rule that puts a value into a bucket, and the names
//! of the inference server's metrics that the operator queries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::feature_set::FeatureKind;

/// The bucket label of a missing value.
pub const MISSING: &str = "missing";

/// The category that stands for every category not kept by the encoder.
pub const UNKNOWN: &str = "<unknown>";

/// Metric names of `leitwerk-inference-server` that the operator and the example KPI queries
/// read from Prometheus. The server registers each under [`metric::PREFIX`] with its
/// `registered` name; the exposition adds `_total` to counters.
pub mod metric {
    /// Prefix of every inference server metric.
    pub const PREFIX: &str = "leitwerk_inference";

    /// The names the server registers, under [`PREFIX`].
    pub mod registered {
        /// Rows scored per model version (a counter).
        pub const PREDICTIONS: &str = "predictions";
        /// Outcomes reported through the feedback endpoint (a counter; `outcome` label).
        pub const OUTCOMES: &str = "outcomes";
        /// Served rows per feature and reference bucket (a counter).
        pub const FEATURE_BUCKET: &str = "feature_bucket";
        /// Training share per feature and bucket from the model card (a gauge).
        pub const FEATURE_REFERENCE: &str = "feature_reference";
        /// Inference requests (a counter).
        pub const REQUESTS: &str = "requests";
        /// Failed inference requests by code (a counter).
        pub const ERRORS: &str = "errors";
        /// Time from request to response (a histogram).
        pub const REQUEST_DURATION: &str = "request_duration_seconds";
        /// Scores returned, one per row (a histogram).
        pub const SCORE: &str = "score";
        /// Requests mirrored to a shadow candidate by outcome (a counter).
        pub const SHADOW_REQUESTS: &str = "shadow_requests";
        /// Rows a shadow candidate scored (a counter).
        pub const SHADOW_ROWS: &str = "shadow_rows";
        /// Rows a shadow candidate put on the server's side of the threshold (a counter).
        pub const SHADOW_AGREED: &str = "shadow_agreed";
    }

    /// Rows scored per model version, as exposed.
    pub const PREDICTIONS: &str = "leitwerk_inference_predictions_total";
    /// Outcomes reported through the feedback endpoint, as exposed.
    pub const OUTCOMES: &str = "leitwerk_inference_outcomes_total";
    /// Served rows per feature and reference bucket, as exposed: the drift input.
    pub const FEATURE_BUCKET: &str = "leitwerk_inference_feature_bucket_total";
    /// Training share per feature and bucket from the model card, as exposed: the drift
    /// reference.
    pub const FEATURE_REFERENCE: &str = "leitwerk_inference_feature_reference";
    /// Inference requests, as exposed.
    pub const REQUESTS: &str = "leitwerk_inference_requests_total";
    /// Failed inference requests, as exposed.
    pub const ERRORS: &str = "leitwerk_inference_errors_total";
    /// Request latency histogram, as exposed (with `_bucket`, `_sum`, `_count`).
    pub const REQUEST_DURATION: &str = "leitwerk_inference_request_duration_seconds";
    /// Score histogram, as exposed (with `_bucket`, `_sum`, `_count`).
    pub const SCORE: &str = "leitwerk_inference_score";
    /// Mirrored requests by outcome, as exposed.
    pub const SHADOW_REQUESTS: &str = "leitwerk_inference_shadow_requests_total";
    /// Rows a shadow candidate scored, as exposed.
    pub const SHADOW_ROWS: &str = "leitwerk_inference_shadow_rows_total";
    /// Rows on the same side of the threshold, as exposed.
    pub const SHADOW_AGREED: &str = "leitwerk_inference_shadow_agreed_total";

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exposed_names_are_the_registered_ones_under_the_prefix() {
            for (exposed, name, counter) in [
                (PREDICTIONS, registered::PREDICTIONS, true),
                (OUTCOMES, registered::OUTCOMES, true),
                (FEATURE_BUCKET, registered::FEATURE_BUCKET, true),
                (FEATURE_REFERENCE, registered::FEATURE_REFERENCE, false),
                (REQUESTS, registered::REQUESTS, true),
                (ERRORS, registered::ERRORS, true),
                (REQUEST_DURATION, registered::REQUEST_DURATION, false),
                (SCORE, registered::SCORE, false),
                (SHADOW_REQUESTS, registered::SHADOW_REQUESTS, true),
                (SHADOW_ROWS, registered::SHADOW_ROWS, true),
                (SHADOW_AGREED, registered::SHADOW_AGREED, true),
            ] {
                let suffix = if counter { "_total" } else { "" };
                assert_eq!(exposed, format!("{PREFIX}_{name}{suffix}"));
            }
        }
    }
}

/// The reference bucket of a number. Bucket `i` is `(edges[i-1], edges[i]]`, the first
/// `(-inf, edges[0]]`, the last `(edges[last], +inf)`. Compared in `f32`, the precision the
/// model and the server see, so that training rows and served rows are bucketed alike.
pub fn numeric_bucket(edges: &[f64], value: f64) -> usize {
    let v = value as f32;
    edges.partition_point(|e| (*e as f32) < v)
}

/// Reference distribution of one raw feature, for drift detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// Feature (input) name.
    pub name: String,
    /// Numeric or Categorical.
    #[serde(default)]
    pub kind: FeatureKind,
    /// Numeric: inner bucket edges (deciles of the training rows), see [`numeric_bucket`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: the categories in bucket order; the last bucket is the unknown bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Share of training rows per bucket (sums to 1), missing values excluded.
    #[serde(default)]
    pub proportions: Vec<f64>,
    /// Share of training rows with a missing value.
    #[serde(default)]
    pub missing: f64,
}

impl Reference {
    /// The training share of every bucket label, missing values included (sums to 1).
    pub fn shares(&self) -> Vec<(String, f64)> {
        let missing = self.missing.clamp(0.0, 1.0);
        let present = 1.0 - missing;
        let mut out: Vec<(String, f64)> = self
            .proportions
            .iter()
            .enumerate()
            .map(|(i, p)| (i.to_string(), p * present))
            .collect();
        out.push((MISSING.into(), missing));
        out
    }

    /// The bucket label of a number (NaN is missing).
    pub fn bucket_of_number(&self, v: f64) -> String {
        if v.is_nan() {
            return MISSING.into();
        }
        numeric_bucket(&self.edges, v).to_string()
    }

    /// The bucket index of a category: its position among the kept categories, the last
    /// (unknown) bucket for any other; `None` for a missing (empty) value.
    pub fn category_bucket(&self, v: &str) -> Option<usize> {
        if v.is_empty() {
            return None;
        }
        let known = self.categories.len().saturating_sub(1);
        Some(
            self.categories[..known]
                .iter()
                .position(|c| c == v)
                .unwrap_or(known),
        )
    }

    /// The bucket label of a category (unknown ones share the last bucket).
    pub fn bucket_of_text(&self, v: &str) -> String {
        self.category_bucket(v)
            .map_or_else(|| MISSING.to_string(), |b| b.to_string())
    }
}

/// The model card, `card.json` beside `model.onnx`. The trainer writes every field; readers
/// (the inference server, tools) may meet cards of bring-your-own models with only some.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCard {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Version as the operator named it.
    #[serde(default)]
    pub version: String,
    /// Task.
    #[serde(default)]
    pub task: String,
    /// Algorithm and its parameters.
    #[serde(default)]
    pub parameters: serde_json::Value,
    /// Validation metrics.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Calibration table on the validation rows (classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<serde_json::Value>,
    /// Decision threshold used for precision/recall/F1.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Snapshot version and digest.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Rows used for training and validation.
    #[serde(default)]
    pub rows: serde_json::Value,
    /// Inputs in order: name and OIP v2 datatype (`FP32` or `BYTES`), shape `[-1, 1]`.
    #[serde(default)]
    pub inputs: Vec<(String, String)>,
    /// The output tensor.
    #[serde(default)]
    pub output: String,
    /// Reference distribution of every feature.
    #[serde(default)]
    pub reference: Vec<Reference>,
    /// `leitwerk-trainer` version.
    #[serde(default)]
    pub trainer_version: String,
    /// When training finished (RFC 3339).
    #[serde(default)]
    pub trained_at: String,
    /// Largest |ONNX Runtime − in-process| difference on the validation rows.
    #[serde(default)]
    pub parity_max_abs_diff: f64,
    /// The first validation rows with their raw inputs and the score the trainer computed:
    /// a smoke test for any deployment of the model.
    #[serde(default)]
    pub examples: Vec<serde_json::Value>,
    /// The segment scan of `spec.evaluation.segments` on the validation rows: per column and
    /// value, rows, AUC, positive rate and mean score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentFigures>,
    /// Global importance: mean |SHAP value| (log-odds for classification) of every feature
    /// on the validation rows, largest first. Empty for a single tree or a forest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importance: Vec<FeatureImportance>,
    /// The hyper-parameter search: method, objective, best trial and every trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<serde_json::Value>,
}

/// One feature's global importance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureImportance {
    /// The raw feature (a categorical one sums its one-hot columns).
    pub feature: String,
    /// Mean |SHAP value| over the validation rows.
    pub mean_abs_shap: f64,
}

/// One segment of a declared segment column on the validation rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentFigures {
    /// The column.
    pub column: String,
    /// The value (for a numeric column, its quartile range such as `(12.5, 40]`).
    pub value: String,
    /// Validation rows.
    pub rows: usize,
    /// ROC AUC; absent with one label only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Share of positive labels.
    pub positive_rate: f64,
    /// Mean score.
    pub mean_score: f64,
    /// Whether the segment counts towards the gaps (enough rows, both labels).
    pub compared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_closed_above_and_compared_in_single_precision() {
        let edges = [1.0, 2.0, 4.0];
        let got: Vec<usize> = [-5.0, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0]
            .iter()
            .map(|v| numeric_bucket(&edges, *v))
            .collect();
        assert_eq!(got, [0, 0, 1, 1, 2, 2, 3]);
        // 0.1 as f64 and as f32 differ; a served f32 value at the edge lands in the bucket the
        // training row with the same value landed in.
        assert_eq!(
            numeric_bucket(&[0.1], 0.1),
            numeric_bucket(&[0.1], f64::from(0.1_f32))
        );
    }

    #[test]
    fn shares_include_missing_values_and_unknown_categories_share_the_last_bucket() {
        let r = Reference {
            name: "industry".into(),
            kind: FeatureKind::Categorical,
            edges: Vec::new(),
            categories: vec!["retail".into(), "saas".into(), UNKNOWN.into()],
            proportions: vec![0.5, 0.25, 0.25],
            missing: 0.2,
        };
        assert_eq!(
            r.shares(),
            vec![
                ("0".to_string(), 0.4),
                ("1".to_string(), 0.2),
                ("2".to_string(), 0.2),
                (MISSING.to_string(), 0.2)
            ]
        );
        assert_eq!(r.bucket_of_text("saas"), "1");
        assert_eq!(r.bucket_of_text("mining"), "2");
        assert_eq!(r.bucket_of_text(""), MISSING);
        let card: ModelCard =
            serde_json::from_str(r#"{"reference": [], "threshold": 0.4}"#).unwrap();
        assert_eq!(card.threshold, Some(0.4), "a partial card reads");
    }
}
