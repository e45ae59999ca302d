//! An Experiment's status as the user sees it (phase, Ready and Paused conditions, when to
//! look again) and its gauges.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use leitwerk_crds::{
    Experiment,
    experiment::{ExperimentPhase, ExperimentStatus},
};

use super::{PAUSED, interval_of, is_terminal, next_analysis};
use crate::{
    context::Context,
    metrics::{DriftLabels, KpiLabels, VariantLabels},
    reconcile::Outcome,
    status::{Desired, READY},
};

/// The phase, conditions and requeue of the status.
pub fn outcome_of(
    exp: &Experiment,
    status: &ExperimentStatus,
    now: DateTime<Utc>,
) -> Outcome<ExperimentPhase> {
    let last = status
        .decisions
        .last()
        .map(|d| format!("{}: {}", d.action, d.message))
        .unwrap_or_default();
    let weights = status.weights_summary.clone().unwrap_or_default();
    let routing = status.routing.clone().unwrap_or_default();
    // Only the analysis' own phases survive here; anything else (a phase of waiting written
    // before the variants resolved) reads as progressing.
    let phase = match status.phase {
        Some(
            p @ (ExperimentPhase::Promoted
            | ExperimentPhase::Concluded
            | ExperimentPhase::RolledBack
            | ExperimentPhase::Paused
            | ExperimentPhase::Shadowing
            | ExperimentPhase::Running),
        ) => p,
        _ => ExperimentPhase::Progressing,
    };
    let ready = match phase {
        ExperimentPhase::Promoted | ExperimentPhase::Concluded => {
            Desired::ok(READY, phase.as_str(), last.clone())
        }
        ExperimentPhase::RolledBack => Desired::failed(READY, "RolledBack", last.clone()),
        ExperimentPhase::Paused => {
            let reason = status.analysis.as_ref().and_then(|a| a.pause_reason);
            let name = reason.map_or("Paused", |r| r.as_str());
            if reason == Some(leitwerk_crds::experiment::PauseReason::Requested) {
                // Paused by hand: nothing is wrong, it waits for a person.
                Desired::not(READY, name, last.clone())
            } else {
                Desired::failed(READY, name, last.clone())
            }
        }
        ExperimentPhase::Running => {
            Desired::ok(READY, "Running", format!("weights {weights} via {routing}"))
        }
        ExperimentPhase::Shadowing => {
            let mirror = status
                .shadow
                .as_ref()
                .map_or(String::new(), |s| s.mirror.clone());
            Desired::ok(
                READY,
                "Shadowing",
                format!(
                    "stable answers every caller; the candidate scores a copy of each request (mirrored by {mirror}); {last}"
                ),
            )
        }
        _ => Desired::ok(
            READY,
            "Progressing",
            format!("weights {weights} via {routing}; {last}"),
        ),
    };
    let mut outcome = Outcome::new(phase, ready.clone());
    outcome.moving = matches!(
        phase,
        ExperimentPhase::Progressing | ExperimentPhase::Shadowing
    );
    let paused = if phase == ExperimentPhase::Paused {
        Desired::ok(PAUSED, ready.reason.clone(), ready.message.clone())
    } else {
        Desired::not(PAUSED, "Analysing", "the analysis is not paused")
    };
    outcome.conditions.push(paused);
    if is_terminal(status) {
        if !status.promotion_confirmed {
            outcome = outcome.recheck_after(Duration::from_secs(2));
        }
        return outcome;
    }
    let wait = next_analysis(status)
        .map(|t| (t - now).to_std().unwrap_or_default())
        .unwrap_or(interval_of(&exp.spec));
    outcome.recheck_after(wait.max(Duration::from_millis(500)))
}

pub(super) fn export_metrics(ctx: &Context, exp: &Experiment, status: &ExperimentStatus) {
    let namespace = exp.namespace().unwrap_or_default();
    let experiment = exp.name_any();
    for (variant, w) in &status.weights {
        ctx.metrics
            .experiment_weight
            .get_or_create(&VariantLabels {
                namespace: namespace.clone(),
                experiment: experiment.clone(),
                variant: variant.clone(),
            })
            .set(i64::from(*w));
    }
    if let Some(d) = status.decisions.last() {
        for (key, value) in &d.values {
            let mut parts = key.splitn(2, '/');
            if let (Some(kpi), Some(variant)) = (parts.next(), parts.next())
                && kpi != "drift"
            {
                ctx.metrics
                    .experiment_kpi
                    .get_or_create(&KpiLabels {
                        namespace: namespace.clone(),
                        experiment: experiment.clone(),
                        variant: variant.into(),
                        kpi: kpi.into(),
                    })
                    .set(*value);
            }
        }
    }
    for d in &status.drift {
        ctx.metrics
            .experiment_drift
            .get_or_create(&DriftLabels {
                namespace: namespace.clone(),
                experiment: experiment.clone(),
                variant: d.variant.clone(),
                feature: d.feature.clone(),
                metric: d.metric.to_string(),
            })
            .set(d.value);
    }
}
