//! What the CRD schema cannot check of a Model's spec.

use leitwerk_crds::metrics::Metric;

use leitwerk_crds::{ModelSpec, model::Task};

use crate::{validation::FieldError, validation::check_cron, validation::into_result};

/// Checks what the schema cannot.
pub fn validate(spec: &ModelSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(schedule) = spec
        .training
        .as_ref()
        .and_then(|t| t.retrain.as_ref())
        .and_then(|r| r.schedule.as_ref())
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.training.retrain.schedule", problem));
    }
    if let Some(Err(problem)) = spec.tuning.as_ref().map(|t| t.objective_for(spec.task)) {
        errors.push(FieldError::new("spec.tuning.objective", problem));
    }
    if let Some(batch) = &spec.batch_scoring
        && let Err(problem) = check_cron(&batch.schedule)
    {
        errors.push(FieldError::new("spec.batchScoring.schedule", problem));
    }
    if let Some(algorithm) = &spec.algorithm {
        let classifier_only = algorithm.logistic_regression.is_some();
        let regressor_only = algorithm.linear_regression.is_some();
        if spec.task == Task::Regression && classifier_only {
            errors.push(FieldError::new("spec.algorithm.logisticRegression", "logistic regression is a classifier: use linearRegression, decisionTree or randomForest for a Regression task"));
        }
        if spec.task == Task::BinaryClassification && regressor_only {
            errors.push(FieldError::new("spec.algorithm.linearRegression", "linear regression predicts numbers: use logisticRegression, decisionTree or randomForest for a BinaryClassification task"));
        }
    }
    let segments = spec
        .evaluation
        .as_ref()
        .is_some_and(|e| !e.segments.is_empty());
    if segments && spec.task != Task::BinaryClassification {
        errors.push(FieldError::new(
            "spec.evaluation.segments",
            "the segment scan compares AUC and positive rates per segment: it needs task BinaryClassification",
        ));
    }
    if let Some(metrics) = &spec.min_metrics {
        for name in metrics.keys().filter(|n| n.starts_with("maxSegment")) {
            if !segments {
                errors.push(FieldError::new(
                    format!("spec.minMetrics.{name}"),
                    "bounds a gap between segments, but spec.evaluation.segments names no column to segment by",
                ));
            }
        }
        for (name, value) in metrics {
            let bounded = name.parse::<Metric>().is_ok_and(|m| m.is_unit_interval());
            if bounded && !(0.0..=1.0).contains(value) {
                errors.push(FieldError::new(
                    format!("spec.minMetrics.{name}"),
                    format!("{value} is outside 0–1"),
                ));
            }
        }
    }
    into_result(errors)
}
