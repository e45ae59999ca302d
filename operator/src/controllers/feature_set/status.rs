//! The status of a FeatureSet from what its Jobs show (pure).

use leitwerk_crds::{FeatureSet, feature_set::FeatureSetPhase};

use super::Observed;
use crate::{reconcile::Outcome, status::Desired, status::READY};

/// The status of a valid FeatureSet whose references resolve.
pub fn decide(fs: &FeatureSet) -> Outcome<FeatureSetPhase> {
    decide_with(fs, &Observed::default())
}

/// The status given what the Jobs show.
pub fn decide_with(fs: &FeatureSet, observed: &Observed) -> Outcome<FeatureSetPhase> {
    let mut status = fs.status.clone().unwrap_or_default();
    observed.apply(&mut status);
    let failed_rule = status.quality_results.iter().find(|q| !q.passed);
    let quality_condition = failed_rule.map(|q| {
        let figures = match (q.measured, q.limit) {
            (Some(m), Some(l)) => format!(" (measured {m}, limit {l})"),
            _ => String::new(),
        };
        Desired::not(
            "QualityPassed",
            "QualityRuleFailed",
            format!(
                "quality rule {:?} failed{figures}: {}; the snapshot was not published",
                q.rule, q.message
            ),
        )
    });
    let mut outcome = match (
        &status.current_version,
        &observed.active,
        &status.last_error,
        &quality_condition,
    ) {
        (Some(version), _, _, _) => Outcome::new(
            FeatureSetPhase::Ready,
            Desired::ok(
                READY,
                "SnapshotPublished",
                format!(
                    "snapshot {version} is published ({} rows, data until {})",
                    status.rows.unwrap_or(0),
                    status.data_until.clone().unwrap_or_default()
                ),
            ),
        ),
        (None, Some((job, Some(why))), _, _) => Outcome::new(
            FeatureSetPhase::Materializing,
            Desired::failed(
                READY,
                "Unschedulable",
                format!("materialization Job {job} cannot be scheduled: {why}"),
            ),
        ),
        (None, Some((job, None)), _, _) => Outcome::new(
            FeatureSetPhase::Materializing,
            Desired::not(
                READY,
                "AwaitingMaterialization",
                format!("Job {job} is materializing the first snapshot"),
            ),
        ),
        (None, None, Some(error), _) => Outcome::new(
            FeatureSetPhase::Failed,
            Desired::failed(READY, "MaterializationFailed", error.clone()),
        ),
        (None, None, None, Some(q)) => Outcome::new(
            FeatureSetPhase::QualityFailed,
            Desired::failed(READY, "QualityRuleFailed", q.message.clone()),
        ),
        (None, None, None, None) => Outcome::new(
            FeatureSetPhase::Pending,
            Desired::not(
                READY,
                "AwaitingMaterialization",
                "the spec is valid; the materialization Job is being created",
            ),
        ),
    };
    if let Some(q) = quality_condition {
        outcome.conditions.push(q);
    } else if !status.quality_results.is_empty() {
        outcome.conditions.push(Desired::ok(
            "QualityPassed",
            "AllRulesPassed",
            format!("{} quality rules passed", status.quality_results.len()),
        ));
    }
    if observed.active.is_some() {
        outcome = outcome.recheck_after(std::time::Duration::from_secs(10));
    }
    outcome
}
