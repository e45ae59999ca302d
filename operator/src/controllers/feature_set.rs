//! The FeatureSet controller.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{
    ResourceExt,
    api::ObjectMeta,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use leitwerk_crds::{
    FeatureSet, FeatureSetStatus, feature_set::QualityRuleStatus, summary::MaterializeSummary,
};

use crate::cache::Trigger;
use crate::references::{artifact_store_secret, first_missing_secret};
use crate::watch::drain;
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Notice, Outcome, RECHECK_UNWATCHED},
    validation::summarize,
};
use leitwerk_crds::progress::Progress;

pub use crate::reconcile::Error;

/// Label naming the FeatureSet a Job belongs to.
pub const FEATURE_SET_LABEL: &str = leitwerk_crds::labels::FEATURE_SET;

/// Runs the FeatureSet controller. It is woken by its materialization Jobs (its own and those
/// of its CronJob) and its CronJob, from the shared watches that fill `ctx.stores`.
pub async fn run(
    ctx: Context,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let stream = Controller::for_shared_stream(shared.feature_sets, shared.store)
        .watches_shared_stream(shared.jobs, |job: Arc<Job>| labelled_by(&job.metadata))
        .watches_shared_stream(shared.cron_jobs, |cron: Arc<CronJob>| {
            labelled_by(&cron.metadata)
        })
        .with_config(crate::watch::run_config(&ctx.config))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(FeatureSet::KIND, stream).await;
}

/// What the FeatureSet controller takes from the shared watches (see [`crate::cache`]).
pub struct Shared {
    /// The store of FeatureSets.
    pub store: Store<DeserializeGuard<FeatureSet>>,
    /// Every FeatureSet the shared watch applied.
    pub feature_sets: Trigger<DeserializeGuard<FeatureSet>>,
    /// Every Job carrying a FeatureSet's label.
    pub jobs: Trigger<Job>,
    /// Every CronJob carrying a FeatureSet's label.
    pub cron_jobs: Trigger<CronJob>,
}

/// The FeatureSet whose label an object carries.
fn labelled_by(meta: &ObjectMeta) -> Option<ObjectRef<DeserializeGuard<FeatureSet>>> {
    let name = meta.labels.as_ref()?.get(FEATURE_SET_LABEL)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// Reconciles one FeatureSet: validate → resolve Secrets → launch the materialization Job for
/// this generation (and the CronJob of `cutoffs.schedule`) → read finished Jobs → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<FeatureSet>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |fs, ctx| Box::pin(reconcile_feature_set(fs, ctx))).await
}

async fn reconcile_feature_set(fs: &FeatureSet, ctx: &Context) -> Result<Action, Error> {
    let ns = fs.namespace().unwrap_or_default();
    let mut observed = Observed::default();
    let outcome = match validate(&fs.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            let mut refs = secret_refs(&fs.spec);
            refs.extend(artifact_store_secret(ctx));
            match first_missing_secret(ctx, &ns, &refs)
                .await
                .map_err(|source| Error::Read {
                    what: "credential Secrets".into(),
                    source,
                })? {
                Some((field, name)) => {
                    Outcome::missing("Secret", &name, &field, &ns).recheck_after(RECHECK_UNWATCHED)
                }
                None => {
                    let read = read(ctx, fs).await?;
                    let current_cron_job = read.cron_job.clone();
                    observed = plan(fs, &ctx.config, read);
                    apply_plan(ctx, fs, &observed, current_cron_job.as_ref()).await?;
                    decide_with(fs, &observed)
                }
            }
        }
    };
    let outcome = outcome.with_events(observed.events.clone());
    let action = reconcile::finish_with(ctx, fs, outcome, |status| observed.apply(status)).await?;
    Ok(action)
}

/// What the Jobs of a FeatureSet show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// A Job is running: its name, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// What the Job in progress last reported.
    pub progress: Option<Progress>,
    /// The newest finished Job not yet reflected in status, with its summary or error.
    pub finished: Option<(String, Result<MaterializeSummary, String>)>,
    /// Events to publish (a foreign Job carrying the FeatureSet's labels).
    pub events: Vec<Notice>,
    /// The Job of this generation to create (none ran yet).
    pub start: Option<Job>,
    /// The CronJob of `cutoffs.schedule`, as it should be.
    pub cron_job: Option<CronJob>,
}

impl Observed {
    /// Copies a newly finished Job's results into the status.
    pub fn apply(&self, status: &mut FeatureSetStatus) {
        status.progress = self.progress.clone();
        let Some((job, result)) = &self.finished else {
            return;
        };
        status.last_job = Some(job.clone());
        match result {
            Err(error) => status.last_error = Some(reconcile::truncate(error, 1024)),
            Ok(summary) => {
                status.last_error = None;
                status.quality_results = summary
                    .quality
                    .iter()
                    .take(32)
                    .map(|q| QualityRuleStatus {
                        rule: q.rule.clone(),
                        passed: q.passed,
                        measured: q.measured,
                        limit: q.limit,
                        message: reconcile::truncate(&q.message, 256),
                    })
                    .collect();
                let failed = summary.quality.iter().filter(|q| !q.passed).count();
                status.quality = Some(if failed == 0 {
                    format!("{}/{} passed", summary.quality.len(), summary.quality.len())
                } else {
                    format!("{failed}/{} failed", summary.quality.len())
                });
                if summary.published {
                    status.current_version = summary.version.clone();
                    status.rows = Some(summary.rows);
                    status.snapshot = summary.location.clone();
                    status.data_until = summary.data_until.clone();
                    status.published_at = Some(k8s_openapi::jiff::Timestamp::now().to_string());
                }
            }
        }
    }
}

mod build;
mod observe;
mod status;
mod validate;

#[cfg(test)]
mod tests;

pub use build::*;
pub use observe::*;
pub use status::*;
pub use validate::*;
