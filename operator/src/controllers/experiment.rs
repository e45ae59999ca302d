//! The Experiment controller: resolves the variants, runs one serving Deployment per variant,
//! moves traffic (Gateway API `HTTPRoute` weights, or replica ratio without the Gateway API),
//! reads KPIs and input drift from Prometheus every interval, and promotes, pauses or rolls
//! back on the evidence. Everything a restarted operator needs lives in the status.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        watcher,
    },
};
use leitwerk_crds::{
    Experiment, ExperimentSpec, Model,
    experiment::ExperimentPhase,
    experiment::{DecisionAction, ExperimentStatus},
};

use super::{Scope, drain, get_opt, referrers};
use crate::{
    analysis::{
        bandit::{self},
        canary::{self},
    },
    context::Context,
    metrics::{DecisionLabels, DriftLabels, KpiLabels, VariantLabels},
    reconcile::{self, LeitwerkResource, Outcome},
    status::{Desired, READY},
    validation::{parse_duration, summarize},
};

/// Shortest analysis interval: Prometheus needs a few scrapes per interval.
pub const MIN_INTERVAL_SECS: u64 = 5;
/// Decisions kept in status.
pub const DECISION_HISTORY: usize = 20;
/// Label on everything an Experiment runs.
pub const EXPERIMENT_LABEL: &str = leitwerk_crds::labels::EXPERIMENT;
/// Label naming the variant of a serving pod.
pub const VARIANT_LABEL: &str = leitwerk_crds::labels::VARIANT;
/// The condition that says an analysis is paused and why.
pub const PAUSED: &str = "Paused";

pub use crate::reconcile::Error;

mod arms;
mod children;
mod decide;
mod measure;
mod variants;

use arms::*;
pub use children::*;
pub use decide::*;
pub use measure::*;
pub use variants::*;

/// Runs the Experiment controller; it watches Models (an Experiment waiting for a version moves
/// on as soon as one appears) and the Deployments it owns.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<Experiment>>(client.clone()),
        watcher::Config::default(),
    );
    let experiments = controller.store();
    let stream = controller
        .owns(
            scope.api::<Deployment>(client.clone()),
            watcher::Config::default().labels(EXPERIMENT_LABEL),
        )
        .watches(
            scope.api::<DeserializeGuard<Model>>(client),
            watcher::Config::default(),
            referrers(experiments, |e: &Experiment, name| {
                e.spec.variants.iter().any(|v| v.model_ref.name == name)
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(Experiment::KIND, stream).await;
}

/// Reconciles one Experiment: validate → resolve variants → analyse when due → apply the
/// serving children and the traffic split → carry a verdict over to the Model → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Experiment>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |exp, ctx| {
        Box::pin(reconcile_experiment(exp, ctx))
    })
    .await
}

/// The Experiment's reconcile: validate → resolve variants → apply children → analyse when due
/// → publish the decision → write status. Long because it is the sequence; each step is a
/// function of its own.
async fn reconcile_experiment(exp: &Experiment, ctx: &Context) -> Result<Action, Error> {
    let ns = exp.namespace().unwrap_or_default();
    if let Err(errors) = validate(&exp.spec) {
        let action = reconcile::finish(ctx, exp, Outcome::invalid(summarize(&errors))).await?;
        return Ok(action);
    }
    let mut models = Vec::with_capacity(exp.spec.variants.len());
    for v in &exp.spec.variants {
        let model = get_opt::<Model>(ctx, &ns, &v.model_ref.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Model {}", v.model_ref.name),
                source,
            })?;
        models.push(model);
    }
    let now = Utc::now();
    let mut status = exp.status.clone().unwrap_or_default();
    let fresh_generation = status.observed_generation != exp.metadata.generation;
    let variants = if fresh_generation || status.variants.len() != exp.spec.variants.len() {
        match resolve(exp, &models) {
            Ok(v) => v,
            Err(outcome) => {
                let action = reconcile::finish(ctx, exp, *outcome).await?;
                return Ok(action);
            }
        }
    } else {
        status.variants.clone()
    };
    if fresh_generation && status.variants != variants {
        restart(&mut status);
    }
    status.variants = variants;

    let route = ctx.gateway_api().await;
    status.routing = Some(
        if route.is_some() {
            "HTTPRoute"
        } else {
            "ReplicaRatio"
        }
        .into(),
    );
    let mut decision = None;
    if status.analysis.is_none() {
        decision = Some(start(exp, &mut status, now));
    } else if !is_terminal(&status) && is_due(&status, now) {
        let url = exp
            .spec
            .prometheus_url
            .clone()
            .unwrap_or_else(|| ctx.config.prometheus_url.clone());
        let window = window_secs(exp, &status, now);
        let measured = match ctx.prometheus(&url) {
            Ok(prom) => measure(&prom, exp, &status.variants, window).await,
            Err(e) => Measurements::failed(e),
        };
        decision = Some(analyse(exp, &mut status, &measured, now));
    }

    apply_children(ctx, exp, &models, &mut status, route.as_ref()).await?;
    if is_terminal(&status) && !status.promotion_confirmed {
        status.promotion_confirmed = carry_over(ctx, exp, &status, &models).await?;
    }
    export_metrics(ctx, exp, &status);
    if let Some(d) = &decision {
        ctx.metrics
            .experiment_decisions
            .get_or_create(&DecisionLabels {
                namespace: ns.clone(),
                experiment: exp.name_any(),
                action: d.action.to_string(),
            })
            .inc();
        let warning = matches!(d.action, DecisionAction::RollBack | DecisionAction::Pause);
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: d.action.to_string(),
            note: Some(reconcile::truncate(&d.message, 1024)),
            action: "Analyse".into(),
            secondary: None,
        };
        reconcile::publish(ctx, Experiment::KIND, &event, &exp.object_ref(&())).await;
    }
    let outcome = outcome_of(exp, &status, now);
    let action = reconcile::finish_with(ctx, exp, outcome, |s| {
        let phase = s.phase;
        let conditions = std::mem::take(&mut s.conditions);
        let generation = s.observed_generation;
        *s = status;
        s.phase = phase;
        s.conditions = conditions;
        s.observed_generation = generation;
    })
    .await?;
    Ok(action)
}

/// Forgets the analysis of an earlier generation (its variants changed): the new variants
/// start at the first step with fresh evidence. Decisions stay as history.
fn restart(status: &mut ExperimentStatus) {
    status.analysis = None;
    status.arms.clear();
    status.holdout = None;
    status.drift.clear();
    status.winner = None;
    status.promotion_confirmed = false;
    status.phase = None;
}

/// Whether the analysis has ended (no more traffic moves).
pub fn is_terminal(status: &ExperimentStatus) -> bool {
    matches!(
        status.phase,
        Some(ExperimentPhase::Promoted | ExperimentPhase::RolledBack | ExperimentPhase::Concluded)
    )
}

fn is_due(status: &ExperimentStatus, now: DateTime<Utc>) -> bool {
    next_analysis(status).is_none_or(|t| now >= t)
}

fn next_analysis(status: &ExperimentStatus) -> Option<DateTime<Utc>> {
    let text = status.analysis.as_ref()?.next_analysis.as_deref()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn interval_of(spec: &ExperimentSpec) -> Duration {
    parse_duration(&spec.interval)
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(MIN_INTERVAL_SECS))
}

/// The query window: the time since the previous analysis (so consecutive windows neither
/// overlap nor leave gaps, which the bandit's counts rely on), at least one interval.
fn window_secs(exp: &Experiment, status: &ExperimentStatus, now: DateTime<Utc>) -> u64 {
    let interval = interval_of(&exp.spec).as_secs();
    let last = next_analysis(status).map(|t| t - chrono::Duration::seconds(interval as i64));
    let elapsed = last.map_or(interval, |l| (now - l).num_seconds().max(0) as u64);
    elapsed.clamp(interval, interval * 10)
}

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
            let reason = status
                .analysis
                .as_ref()
                .and_then(|a| a.pause_reason)
                .map_or("Paused", |r| r.as_str());
            Desired::failed(READY, reason, last.clone())
        }
        ExperimentPhase::Running => {
            Desired::ok(READY, "Running", format!("weights {weights} via {routing}"))
        }
        _ => Desired::ok(
            READY,
            "Progressing",
            format!("weights {weights} via {routing}; {last}"),
        ),
    };
    let mut outcome = Outcome::new(phase, ready.clone());
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

fn export_metrics(ctx: &Context, exp: &Experiment, status: &ExperimentStatus) {
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

#[cfg(test)]
mod tests;
