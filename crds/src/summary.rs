//! What the trainer reports back through its pod's termination message (at most 4096 bytes,
//! JSON): the contract between `leitwerk-trainer` and the operator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rag_index::SearchMode;

/// The largest termination message Kubernetes keeps.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The termination message of a failed Job: `{"error": "…"}`, the error shortened (on a
/// character boundary, with `…`) until the JSON fits [`TERMINATION_MESSAGE_LIMIT`]. Cutting
/// the encoded JSON instead would leave it unreadable for the operator, which then could only
/// show it raw.
pub fn encode_error(problem: &str) -> String {
    let mut keep = problem.len();
    loop {
        let mut end = keep.min(problem.len());
        while !problem.is_char_boundary(end) {
            end -= 1;
        }
        let shown = if end < problem.len() {
            format!("{}…", &problem[..end])
        } else {
            problem.to_string()
        };
        let text = serde_json::json!({ "error": shown }).to_string();
        if text.len() <= TERMINATION_MESSAGE_LIMIT || end == 0 {
            return text;
        }
        // Escapes make the JSON longer than the text: shrink by the excess and try again.
        keep = end.saturating_sub((text.len() - TERMINATION_MESSAGE_LIMIT).max(16));
    }
}

/// The outcome of one quality rule (the same type the FeatureSet status shows).
pub use crate::feature_set::QualityRuleStatus as QualityResult;

/// `leitwerk-trainer materialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterializeSummary {
    /// Whether a snapshot was published (false when a quality rule failed).
    pub published: bool,
    /// Snapshot version (first 12 hex digits of the content digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `sha256:<hex>` of the snapshot file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// URL of the snapshot's directory in the artifact store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Rows (entity × cutoff).
    pub rows: i64,
    /// Newest event timestamp in the label source (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_until: Option<String>,
    /// Quality results, failed rules first.
    #[serde(default)]
    pub quality: Vec<QualityResult>,
}

/// `leitwerk-trainer train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainSummary {
    /// The version trained, as the operator named it (`v3`).
    pub version: String,
    /// URL of the ONNX model.
    pub model_url: String,
    /// `sha256:<hex>` of the ONNX file.
    pub digest: String,
    /// The FeatureSet snapshot version trained on (or `byo` for a bring-your-own model).
    pub data_version: String,
    /// Validation metrics (`auc`, `prAuc`, `logLoss`, `brier`, `f1`, … or `rmse`, `mae`, `r2`).
    pub metrics: BTreeMap<String, f64>,
    /// Largest |ONNX Runtime − in-process| prediction difference on the validation rows.
    pub parity_max_abs_diff: f64,
    /// What stands behind a metric, in a line (`maxSegmentAucGap`: which segments), for the
    /// message of a version that a `minMetrics` gate rejects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub explanations: BTreeMap<String, String>,
    /// The five most important features: mean |SHAP value| on the validation rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub importance: BTreeMap<String, f64>,
    /// The hyper-parameter search, when the Model tunes (the best trials only: the message
    /// holds 4096 bytes; the model card has every trial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::model::TuningReport>,
    /// The lowest- and highest-AUC segment of each segment column (at most eight rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<crate::model::SegmentStatus>,
}

/// The termination message of a trained version: the summary as JSON, with the shortened
/// parts (the segment extremes, then the best trials beyond the first) left out as far as
/// needed to fit [`TERMINATION_MESSAGE_LIMIT`]. The model card holds all of them.
pub fn encode_train(summary: &TrainSummary) -> String {
    let mut s = summary.clone();
    loop {
        let text = serde_json::to_string(&s).unwrap_or_default();
        if text.len() <= TERMINATION_MESSAGE_LIMIT {
            return text;
        }
        if s.segments.pop().is_some() {
            continue;
        }
        match s.tuning.as_mut() {
            Some(t) if t.top.len() > 1 => {
                t.top.pop();
            }
            _ => return text,
        }
    }
}

/// `leitwerk-trainer score`: one batch scoring run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreSummary {
    /// The version that scored.
    pub version: String,
    /// Rows scored.
    pub rows: u64,
    /// URL of the file written.
    pub output_url: String,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    /// The snapshot version scored, when the rows came from a FeatureSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<String>,
    /// What a customer lifetime value run fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<crate::model::LifetimeFit>,
}

/// `leitwerk-trainer index`: one index version built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexSummary {
    /// Version (first 12 hex digits of the index file's digest).
    pub version: String,
    /// `sha256:<hex>` of the index file.
    pub digest: String,
    /// URL of the index file.
    pub url: String,
    /// The Qdrant collection the version was written to, when the RagIndex names a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Whether the encoder ran on a GPU.
    #[serde(default)]
    pub embedded_on_gpu: bool,
    /// Why it ran on the CPU although the Job asked for a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_fallback: Option<String>,
    /// Documents in the version.
    pub documents: i64,
    /// Chunks in the version.
    pub chunks: i64,
    /// Documents new in this build.
    pub added: i64,
    /// Documents whose content changed.
    pub changed: i64,
    /// Documents no longer in the sources.
    pub removed: i64,
    /// Documents kept with their vectors.
    pub unchanged: i64,
    /// Chunks embedded by this build.
    pub embedded: i64,
    /// Whether the previous version was ignored (none, or another model or chunking).
    pub from_scratch: bool,
    /// The embedding model: name, weights and tokenizer digests, dimension, pooling.
    pub model: EmbeddingModelIdentity,
    /// Quality on the labelled set, when one was given, in the mode the version serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<RetrievalQuality>,
    /// The mode the version serves in (`spec.search.mode`, or the better one measured).
    #[serde(default)]
    pub search_mode: SearchMode,
    /// Quality in each mode, when the spec left the mode to the labelled set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quality_by_mode: BTreeMap<SearchMode, RetrievalQuality>,
    /// The serving version measured again on this build's labelled set, in the mode it
    /// serves: what the evaluation gate compares with, so that a changed labelled set never
    /// compares figures from two different sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_quality: Option<RetrievalQuality>,
    /// Personal data found in the version's documents (redacted or flagged).
    #[serde(default)]
    pub personal_data: i64,
    /// The same, by kind (`e-mail address`, `IBAN`, …): counts only, never values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub personal_data_by_kind: BTreeMap<String, i64>,
    /// Prompt-injection signs found in the version's documents.
    #[serde(default)]
    pub injection: i64,
    /// Chunks flagged for a reviewer.
    #[serde(default)]
    pub flagged: i64,
    /// Chunks quarantined from serving.
    #[serde(default)]
    pub quarantined: i64,
    /// Documents with HTML text hidden from readers (never indexed).
    #[serde(default)]
    pub hidden_html: i64,
}

/// What identifies an embedding model (the same fields the RagIndex status shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingModelIdentity {
    /// Name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// `sha256:` digest of the weights.
    pub weights_digest: String,
    /// `sha256:` digest of the tokenizer.
    pub tokenizer_digest: String,
    /// Vector dimension.
    pub dimension: i64,
    /// Pooling (`mean`, then L2 normalisation).
    pub pooling: String,
}

/// Retrieval quality of a version on the labelled set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrievalQuality {
    /// The cut-off k.
    pub k: i64,
    /// Mean recall@k.
    pub recall_at_k: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Mean nDCG@k.
    pub ndcg_at_k: f64,
    /// Queries whose first result is relevant.
    pub first_relevant: i64,
    /// Queries evaluated.
    pub queries: i64,
}

/// Serialises a summary, dropping quality details until it fits the limit.
pub fn encode_materialize(summary: &MaterializeSummary) -> String {
    let mut s = summary.clone();
    loop {
        let text = serde_json::to_string(&s).unwrap_or_default();
        if text.len() <= TERMINATION_MESSAGE_LIMIT || s.quality.is_empty() {
            return text;
        }
        s.quality.pop();
    }
}

/// The content Job's summary as JSON within the limit. What goes first when it does not fit:
/// findings beyond the first of each stage, then the oldest stages (the newest tell how the
/// run ended), then on-page findings, then the texts are shortened. The reason, the figures
/// and the payload digest always stay.
pub fn encode_content(summary: &crate::content_pipeline::ContentSummary) -> String {
    let mut s = summary.clone();
    let fits = |s: &crate::content_pipeline::ContentSummary| {
        let text = serde_json::to_string(s).unwrap_or_default();
        (text.len() <= TERMINATION_MESSAGE_LIMIT).then_some(text)
    };
    if let Some(text) = fits(&s) {
        return text;
    }
    for stage in &mut s.stages {
        stage.findings.truncate(1);
    }
    while s.stages.len() > 1 {
        if let Some(text) = fits(&s) {
            return text;
        }
        s.stages.remove(0);
    }
    s.seo_findings.clear();
    s.fallbacks.truncate(3);
    let short = |t: &mut String| {
        if t.chars().count() > 200 {
            *t = format!("{}…", t.chars().take(200).collect::<String>());
        }
    };
    for stage in &mut s.stages {
        stage.findings.iter_mut().for_each(short);
    }
    s.fallbacks.iter_mut().for_each(short);
    if let Some(reason) = s.reason.as_mut() {
        short(reason);
    }
    serde_json::to_string(&s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content_pipeline::{ContentSummary, StageSummary};

    #[test]
    fn a_long_content_summary_keeps_its_newest_stages_and_every_figure() {
        let stages = (0..40)
            .map(|i| StageSummary {
                stage: format!("Draft-{i}"),
                passed: false,
                duration_ms: 10,
                findings: vec![format!("unsupported claim {i}: {}", "y".repeat(150)); 5],
                ..StageSummary::default()
            })
            .collect();
        let s = ContentSummary {
            run_id: "r1".into(),
            reason: Some("z".repeat(3000)),
            stages,
            claims: 9,
            grounded_claims: 7,
            payload_digest: Some("sha256:00".into()),
            seo_findings: vec!["title too long".into(); 50],
            ..ContentSummary::default()
        };
        let text = encode_content(&s);
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let back: ContentSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(back.stages.last().unwrap().stage, "Draft-39");
        assert!(back.stages.iter().all(|s| s.findings.len() <= 1));
        assert_eq!((back.claims, back.grounded_claims), (9, 7));
        assert_eq!(back.payload_digest.as_deref(), Some("sha256:00"));
        assert!(back.reason.unwrap().ends_with('…'));
        let small = ContentSummary {
            run_id: "r2".into(),
            ..ContentSummary::default()
        };
        assert_eq!(
            serde_json::from_str::<ContentSummary>(&encode_content(&small)).unwrap(),
            small
        );
    }

    #[test]
    fn a_train_summary_sheds_segments_then_trials_to_fit_the_limit() {
        let segment = |i: usize| crate::model::SegmentStatus {
            column: format!("column_{i}"),
            value: "x".repeat(200),
            rows: 100,
            auc: Some(0.7),
            positive_rate: 0.1,
            mean_score: 0.2,
        };
        let mut summary = TrainSummary {
            version: "v1".into(),
            model_url: "file:///m/v1/model.onnx".into(),
            digest: "sha256:00".into(),
            data_version: "d1".into(),
            metrics: BTreeMap::from([("auc".to_string(), 0.8)]),
            parity_max_abs_diff: 0.0,
            explanations: BTreeMap::new(),
            importance: BTreeMap::new(),
            tuning: None,
            segments: (0..8).map(segment).collect(),
        };
        let short = encode_train(&summary);
        assert_eq!(
            serde_json::from_str::<TrainSummary>(&short).unwrap(),
            summary
        );
        summary.segments = (0..40).map(segment).collect();
        let cut: TrainSummary = serde_json::from_str(&encode_train(&summary)).unwrap();
        assert!(encode_train(&summary).len() <= TERMINATION_MESSAGE_LIMIT);
        assert!(!cut.segments.is_empty() && cut.segments.len() < 40);
        assert_eq!(cut.segments[..], summary.segments[..cut.segments.len()]);
    }

    #[test]
    fn a_long_error_stays_valid_json_within_the_limit() {
        let problem = format!(
            "source leads could not be read with the credentials of Secret \"s3-wrong\": {}",
            "<Error>\"quoted\"</Error>\n".repeat(400)
        );
        let text = encode_error(&problem);
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let error = back["error"].as_str().unwrap();
        assert!(error.starts_with(
            "source leads could not be read with the credentials of Secret \"s3-wrong\""
        ));
        assert!(error.ends_with('…'));
        assert_eq!(encode_error("short"), r#"{"error":"short"}"#);
    }

    #[test]
    fn a_long_quality_list_is_cut_to_the_termination_message_limit() {
        let quality = (0..200)
            .map(|i| QualityResult {
                rule: format!("rule-{i}"),
                passed: i > 0,
                measured: Some(0.5),
                limit: Some(0.1),
                message: "x".repeat(40),
            })
            .collect();
        let s = MaterializeSummary {
            published: false,
            version: None,
            digest: None,
            location: None,
            rows: 10,
            data_until: None,
            quality,
        };
        let text = encode_materialize(&s);
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT);
        let back: MaterializeSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(back.quality[0].rule, "rule-0");
        assert!(back.quality.len() < 200 && back.quality.len() > 10);
    }
}
