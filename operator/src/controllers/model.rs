//! The Model controller.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, reflector::ObjectRef},
};
use leitwerk_crds::{
    FeatureSet, Model,
    metrics::Metric,
    model::{ModelVersion, VersionState},
};

use crate::cache::Trigger;
use crate::references::{artifact_store_secret, first_missing_secret};
use crate::status::Desired;
use crate::watch::{Scope, drain, referrers_shared};
use crate::{
    apply::apply,
    context::Context,
    reconcile::{self, LeitwerkResource, Notice, Outcome},
    schedule, service_account,
    validation::summarize,
    workloads::HTTP_PORT,
};
use leitwerk_crds::labels::{PIN, REQUESTED_BY};
use leitwerk_crds::progress::Progress;

/// Label naming the Model an object belongs to.
pub const MODEL_LABEL: &str = leitwerk_crds::labels::MODEL;
/// The condition that reports input drift of the serving version.
pub const DRIFT: &str = "Drift";
/// Label carrying the version a training Job produces.
pub const VERSION_LABEL: &str = leitwerk_crds::labels::VERSION;
/// Annotation with the spec generation a training Job trained from.
pub const GENERATION_ANNOTATION: &str = leitwerk_crds::labels::GENERATION;
/// Annotation with the snapshot version a training Job reads.
pub const DATA_VERSION_ANNOTATION: &str = leitwerk_crds::labels::DATA_VERSION;

pub use crate::reconcile::Error;

mod batch;
mod build;
mod drift;
mod observe;
mod serve;
mod status;
pub(crate) mod steer;
mod validate;

#[cfg(test)]
mod tests;

pub use batch::*;
pub use build::*;
pub use drift::*;
pub use observe::*;
use serve::*;
pub use status::*;
pub use validate::*;

/// Runs the Model controller. It watches FeatureSets (a Model waiting for one recovers as
/// soon as it publishes), its training Jobs, and owns its ServiceAccount, Deployment and
/// Service.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::for_shared_stream(shared.models, shared.store.clone());
    let stream = controller
        .owns_shared_stream(shared.service_accounts)
        // Jobs by their label, not by owner: a Job that carries a Model's labels without
        // being its own is seen at once, ignored and named in an `UntrustedJob` Warning.
        .watches(
            scope.api::<Job>(client.clone()),
            crate::watch::watch_config().labels(MODEL_LABEL),
            |job: Job| {
                let ns = job.namespace().unwrap_or_default();
                job.labels()
                    .get(MODEL_LABEL)
                    .map(|name| ObjectRef::<DeserializeGuard<Model>>::new(name).within(&ns))
            },
        )
        .owns(
            scope.api::<Deployment>(client),
            crate::watch::watch_config().labels(MODEL_LABEL),
        )
        .watches_shared_stream(
            shared.feature_sets,
            referrers_shared(shared.store, |m: &Model, name| {
                m.spec
                    .feature_set_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            }),
        )
        .with_config(crate::watch::run_config(&ctx.config))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(Model::KIND, stream).await;
}

/// What the Model controller takes from the shared watches (see [`crate::cache`]).
pub struct Shared {
    /// The store of Models.
    pub store: kube::runtime::reflector::Store<DeserializeGuard<Model>>,
    /// Every Model the shared watch applied.
    pub models: Trigger<DeserializeGuard<Model>>,
    /// Every FeatureSet the shared watch applied.
    pub feature_sets: Trigger<DeserializeGuard<FeatureSet>>,
    /// Every managed ServiceAccount the shared watch applied.
    pub service_accounts: Trigger<ServiceAccount>,
}

/// What the cluster shows about a Model's workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Versions of training Jobs that finished since the status was written.
    pub finished: Vec<ModelVersion>,
    /// The training Job in progress, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// What the training Job in progress last reported.
    pub progress: Option<Progress>,
    /// The version `leitwerk.dev/pin` holds serving, when the pin can be held.
    pub pinned: Option<String>,
    /// The record of a pin applied in this reconcile.
    pub pin_control: Option<leitwerk_crds::experiment::ControlStatus>,
    /// The training Job this reconcile starts (its name).
    pub started: Option<String>,
    /// The training Job to create: planned, then created by the reconcile in one place.
    pub start: Option<Job>,
    /// Available replicas of the serving Deployment, and the replicas asked for.
    pub serving_replicas: Option<(i32, i32)>,
    /// Time until the next scheduled retraining (`spec.training.retrain.schedule`).
    pub next_scheduled: Option<std::time::Duration>,
    /// Where the retraining schedule stands, when the Model has one.
    pub schedule: Option<leitwerk_crds::model::ScheduleStatus>,
    /// Events to publish (a foreign Job carrying the Model's labels).
    pub events: Vec<Notice>,
    /// The search of the newest finished tuned version.
    pub tuning: Option<leitwerk_crds::model::TuningReport>,
}

/// Holds the version `leitwerk.dev/pin` names serving (see `steer`): the `Pinned` condition,
/// and the Event and the record of a pin that changed what serves.
fn pin(
    model: &Model,
    versions: &mut leitwerk_crds::versions::Versions,
    observed: &mut Observed,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Desired> {
    let pin = steer::pin_of(model)?;
    let who = steer::requester(model);
    Some(match steer::apply_pin(versions, &pin, &who) {
        Ok(changed) => {
            observed.pinned = Some(pin.clone());
            if let Some(note) = changed {
                observed
                    .events
                    .push(Notice::normal("Steer", "Pinned", note.clone()));
                observed.pin_control = Some(leitwerk_crds::experiment::ControlStatus {
                    request: format!("pin:{pin}"),
                    requested_by: model.annotations().get(REQUESTED_BY).cloned(),
                    time: now.to_rfc3339(),
                    result: format!("Pinned: {note}"),
                });
            }
            Desired::ok(
                PINNED,
                "Pinned",
                format!(
                    "{pin} serves, pinned by {who}; Experiments and the drift policy leave it until the {PIN} annotation goes"
                ),
            )
        }
        Err(why) => Desired::failed(PINNED, "PinRefused", why),
    })
}

/// The condition of a pinned Model.
pub const PINNED: &str = "Pinned";

/// Reconciles one Model: resolve the FeatureSet → validate → ServiceAccount → read finished
/// training Jobs into versions → start training when the data (or the spec) is new → promote
/// → serve → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Model>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |model, ctx| Box::pin(reconcile_model(model, ctx))).await
}

/// The Model's reconcile: resolve the FeatureSet and Secrets → validate → observe training →
/// serve → drift → status. Long because it is the sequence; each step is a function of its
/// own.
async fn reconcile_model(model: &Model, ctx: &Context) -> Result<Action, Error> {
    let ns = model.namespace().unwrap_or_default();
    let feature_set = match &model.spec.feature_set_ref {
        Some(r) => ctx
            .stores
            .feature_set(&ctx.client, &ns, &r.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("FeatureSet {}", r.name),
                source,
            })?
            .map(Some),
        None => Some(None),
    };
    let mut versions = model.status.clone().unwrap_or_default().versions;
    let mut drift = model.status.clone().unwrap_or_default().drift;
    let mut observed = Observed::default();
    let mut batch = BatchPlan::default();
    let missing_secret = first_missing_secret(ctx, &ns, &artifact_store_secret(ctx))
        .await
        .map_err(|source| Error::Read {
            what: "the artifact store Secret".into(),
            source,
        })?;
    let outcome = match (validate(&model.spec), missing_secret) {
        (Err(errors), _) => Outcome::invalid(summarize(&errors)),
        (Ok(()), Some((field, name))) => Outcome::missing("Secret", &name, &field, &ns)
            .recheck_after(reconcile::RECHECK_UNWATCHED),
        (Ok(()), None) => {
            crate::network_policy::ensure(ctx, &ns).await?;
            for sa in [
                build_service_account(model),
                build_serving_service_account(model),
            ]
            .into_iter()
            .flatten()
            {
                service_account::ensure(ctx, Model::KIND, &sa).await?;
            }
            let read = read_training(ctx, model).await?;
            let fs = feature_set.as_ref().and_then(|f| f.as_ref());
            observed = plan_training(model, fs, read, &ctx.config, chrono::Utc::now());
            if let Some(job) = &observed.start {
                apply(ctx, &ns, job, "training Job").await?;
            }
            versions = next_versions(model, &observed);
            let drift_condition = match &model.spec.drift {
                Some(policy) => watch_drift(ctx, model, policy, &mut versions, &mut drift).await,
                None => None,
            };
            let pinned = pin(model, &mut versions, &mut observed, chrono::Utc::now());
            if let Some(serving) = versions.iter().find(|v| v.state == VersionState::Serving) {
                observed.serving_replicas = Some(serve(ctx, model, &ns, serving).await?);
            }
            let read = read_batch(ctx, model).await?;
            batch = plan_batch(model, fs, &versions, read, &ctx.config, chrono::Utc::now());
            if let Some(job) = &batch.start {
                apply(ctx, &ns, job, "batch scoring Job").await?;
            }
            let mut outcome = decide_with(
                model,
                feature_set.as_ref().map(|f| f.as_ref()),
                &observed,
                &versions,
            );
            if model.spec.task == leitwerk_crds::model::Task::CustomerLifetimeValue {
                outcome = decide_lifetime(model, &batch);
            }
            outcome.conditions.extend(pinned);
            if let Some((condition, period, acted)) = drift_condition {
                observed.events.extend(acted);
                outcome.conditions.push(condition);
                outcome.recheck = Some(outcome.recheck.map_or(period, |r| r.min(period)));
            }
            if let Some(wait) = batch.next_in.map(|w| w + Duration::from_secs(1)) {
                outcome.recheck = Some(outcome.recheck.map_or(wait, |r| r.min(wait)));
            }
            if let Some(wait) = observed.next_scheduled {
                // Wake up just after the next due time (a second late, never early).
                let wait = wait + Duration::from_secs(1);
                outcome.recheck = Some(outcome.recheck.map_or(wait, |r| r.min(wait)));
            }
            outcome
        }
    };
    if observed.started.is_some()
        && let Some(d) = drift.as_mut()
    {
        d.retrain_requested = false;
    }
    // A retrain asked for by hand is handled once its Job started; another action is refused.
    let now = chrono::Utc::now();
    let control = match steer::pending(model) {
        Some(Ok(value)) if model.spec.onnx.is_some() => {
            let why = format!(
                "{value}: this Model serves its own ONNX file (spec.onnx); there is nothing to train"
            );
            observed
                .events
                .push(Notice::of(true, "Steer", "ControlRefused", why.clone()));
            steer::handled(model, format!("refused: {why}"), now)
        }
        Some(Ok(_)) => observed.started.as_ref().and_then(|job| {
            let who = model.annotations().get(REQUESTED_BY).cloned();
            let note = format!(
                "retraining asked by {}: Job {job} started",
                who.as_deref()
                    .unwrap_or("someone (no leitwerk.dev/requested-by)")
            );
            observed
                .events
                .push(Notice::normal("Steer", "Retrain", note.clone()));
            steer::handled(model, format!("Retrain: {note}"), now)
        }),
        Some(Err(why)) => {
            observed
                .events
                .push(Notice::of(true, "Steer", "ControlRefused", why.clone()));
            steer::handled(model, format!("refused: {why}"), now)
        }
        None => None,
    };
    let outcome = outcome.with_events(std::mem::take(&mut observed.events));
    let endpoint = format!("http://{}.{ns}.svc:{HTTP_PORT}", serving_name(model));
    let action = reconcile::finish_with(ctx, model, outcome, |status| {
        status.serving_version = versions
            .iter()
            .find(|v| v.state == VersionState::Serving)
            .map(|v| v.version.clone());
        status.endpoint = status.serving_version.as_ref().map(|_| endpoint.clone());
        status.algorithm = Some(model.spec.algorithm_name())
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        if let Some(latest) = versions
            .iter()
            .rev()
            .find(|v| v.state != VersionState::Failed)
        {
            status.latest_version = Some(latest.version.clone());
            status.latest_auc = latest
                .metrics
                .get(Metric::Auc.as_str())
                .map(|a| (a * 1e4).round() / 1e4);
        }
        status.training_job = observed
            .started
            .clone()
            .or_else(|| observed.active.as_ref().map(|(j, _)| j.clone()));
        status.versions = versions.clone();
        status.pinned_version = observed.pinned.clone();
        if steer::pin_of(model).is_none() {
            // Unpinned: the condition goes with the annotation.
            status.conditions.retain(|c| c.type_ != PINNED);
        }
        status.progress = observed.progress.clone();
        status.drift = drift.clone();
        if let Some(c) = control.clone().or_else(|| observed.pin_control.clone()) {
            status.last_control = Some(c);
        }
        if observed.schedule.is_some() || schedule::schedule_of(model).is_none() {
            status.schedule = observed.schedule.clone();
        }
        if observed.tuning.is_some() || model.spec.tuning.is_none() {
            status.tuning = observed.tuning.clone();
        }
        if batch.status.is_some() || model.spec.batch_scoring.is_none() {
            status.batch_scoring = batch.status.clone();
        }
    })
    .await?;
    Ok(action)
}
