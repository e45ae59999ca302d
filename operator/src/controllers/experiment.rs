//! The Experiment controller: resolves the variants, runs one serving Deployment per variant,
//! moves traffic (Gateway API `HTTPRoute` weights, or replica ratio without the Gateway API),
//! reads KPIs and input drift from Prometheus every interval, and promotes, pauses or rolls
//! back on the evidence. Everything a restarted operator needs lives in the status.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{ResourceExt, core::DeserializeGuard, runtime::controller::Action};
use leitwerk_crds::{
    Experiment, Model,
    experiment::{DecisionAction, ExperimentStatus},
};

use crate::cache::Trigger;
use crate::notice::Notice;
use crate::watch::{Scope, drain, referrers_shared};
use crate::{
    analysis::{
        bandit::{self},
        canary::{self},
    },
    context::Context,
    metrics::DecisionLabels,
    reconcile::{self, LeitwerkResource, Outcome},
    validation::summarize,
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
mod cadence;
mod children;
mod decide;
mod measure;
mod shadow;
mod status;
mod steer;
mod variants;

use arms::*;
pub use cadence::*;
pub use children::*;
pub use decide::*;
pub use measure::*;
pub use shadow::*;
pub use status::*;
pub use variants::*;

/// Runs the Experiment controller; it watches Models (an Experiment waiting for a version moves
/// on as soon as one appears) and the Deployments it owns.
pub async fn run(
    ctx: Context,
    scope: Scope,
    models: Trigger<DeserializeGuard<Model>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = crate::watch::controller(
        scope.api::<DeserializeGuard<Experiment>>(client.clone()),
        crate::watch::watch_config(),
    );
    let experiments = controller.store();
    let stream = controller
        .owns(
            scope.api::<Deployment>(client),
            crate::watch::watch_config().labels(EXPERIMENT_LABEL),
        )
        .watches_shared_stream(
            models,
            referrers_shared(experiments, |e: &Experiment, name| {
                e.spec.variants.iter().any(|v| v.model_ref.name == name)
            }),
        )
        .with_config(crate::watch::run_config(&ctx.config))
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

/// Handles a `leitwerk.dev/control` request not handled yet (see `steer`): the Event that
/// reports what it did, or why it was refused. A retry resolves the variants anew first, so
/// that a refused retry changes nothing.
fn steer_by_hand(
    exp: &Experiment,
    models: &[Option<Model>],
    status: &mut ExperimentStatus,
    now: chrono::DateTime<Utc>,
) -> Option<Notice> {
    use leitwerk_crds::labels::{CONTROL, REQUESTED_BY};
    let request = steer::pending(exp, status)?;
    let value = exp.annotations().get(CONTROL).cloned().unwrap_or_default();
    let by = exp.annotations().get(REQUESTED_BY).cloned();
    let result = request.and_then(|r| {
        let variants = if r.control == steer::Control::Retry {
            Some(resolve(exp, models).map_err(|o| format!("retry: {}", o.ready.message))?)
        } else {
            None
        };
        let decision = steer::steer(exp, status, &r, now)?;
        if let Some(v) = variants {
            status.variants = v;
        }
        Ok(decision)
    });
    Some(match result {
        Ok(d) => {
            steer::handled(
                status,
                &value,
                by,
                format!("{}: {}", d.action, d.message),
                now,
            );
            Notice::of(
                d.action == DecisionAction::RollBack,
                "Steer",
                d.action.to_string(),
                d.message,
            )
        }
        Err(why) => {
            steer::handled(status, &value, by, format!("refused: {why}"), now);
            Notice::of(true, "Steer", "ControlRefused", why)
        }
    })
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
        let model = ctx
            .stores
            .model(&ctx.client, &ns, &v.model_ref.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Model {}", v.model_ref.name),
                source,
            })?;
        models.push(model);
    }
    let now = Utc::now();
    let mut status = exp.status.clone().unwrap_or_default();
    // A pinned Model is held by hand: the Experiment neither analyses nor carries a verdict
    // over to it until the pin goes (the Experiment watches Models, so unpinning wakes it).
    if !status.promotion_confirmed
        && let Some((model, version)) = models
            .iter()
            .flatten()
            .find_map(|m| crate::controllers::model::steer::pin_of(m).map(|v| (m.name_any(), v)))
    {
        let phase = status
            .phase
            .unwrap_or(leitwerk_crds::experiment::ExperimentPhase::WaitingForVersions);
        let held = crate::status::Desired::failed(
            crate::status::READY,
            "ModelPinned",
            format!(
                "Model {model} is pinned to {version} ({}): the Experiment holds, with no analysis and no promotion, until the pin is removed (kubectl leitwerk unpin model/{model})",
                leitwerk_crds::labels::PIN
            ),
        );
        let action = reconcile::finish(ctx, exp, Outcome::new(phase, held)).await?;
        return Ok(action);
    }
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
    let steered = steer_by_hand(exp, &models, &mut status, now);

    let route = ctx.gateway_api().await;
    status.routing = Some(
        if route.is_some() {
            "HTTPRoute"
        } else {
            "ReplicaRatio"
        }
        .into(),
    );
    if let Some(mirror) = shadow_mirror(exp, &status)
        && let Some(shadow) = status.shadow.as_mut()
    {
        shadow.mirror = mirror.as_str().into();
    }
    let mut decision = None;
    if status.analysis.is_none() {
        decision = Some(start(exp, &mut status, now));
    } else if !is_terminal(&status) && !steer::paused_by_request(&status) && is_due(&status, now) {
        let url = exp
            .spec
            .prometheus_url
            .clone()
            .unwrap_or_else(|| ctx.config.prometheus_url.clone());
        let window = window_secs(exp, &status, now);
        let mirror = shadow_mirror(exp, &status);
        let measured = match ctx.prometheus(&url) {
            Ok(prom) => measure(&prom, exp, &status.variants, window, mirror).await,
            Err(e) => Measurements::failed(e),
        };
        decision = Some(analyse(exp, &mut status, &measured, now));
    }

    settle_shadow(&exp.spec, &mut status);
    apply_children(ctx, exp, &models, &mut status, route.as_ref()).await?;
    if is_terminal(&status) && !status.promotion_confirmed {
        status.promotion_confirmed = carry_over(ctx, exp, &status, &models).await?;
    }
    export_metrics(ctx, exp, &status);
    let mut events = Vec::new();
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
        events.push(Notice::of(
            warning,
            "Analyse",
            d.action.to_string(),
            d.message.clone(),
        ));
    }
    events.extend(steered);
    let outcome = outcome_of(exp, &status, now).with_events(events);
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

#[cfg(test)]
mod tests;
