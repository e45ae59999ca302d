//! A FeatureSet's materialization in three steps: read its Jobs (and CronJob), plan in pure
//! code what they show and which children to create, and apply the plan in one place.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use leitwerk_crds::{FeatureSet, summary::MaterializeSummary};

use super::{
    Error, FEATURE_SET_LABEL, Observed, build_cron_job, build_job, cron_job_name,
    generation_job_name, service_account_name,
};
use crate::{
    apply::{apply, apply_if_changed},
    config::OperatorConfig,
    context::Context,
    jobs::{JobOutcome, list_owned, outcome_in, outcomes, own},
    reconcile::{LeitwerkResource, Notice},
    service_account,
};

/// What the reconcile reads about a FeatureSet's materialization before it plans.
#[derive(Debug, Clone, Default)]
pub struct MaterializeRead {
    /// Its trusted Jobs (its own and its CronJob's), oldest first.
    pub jobs: Vec<Job>,
    /// The outcome of each Job newer than the one the status records.
    pub outcomes: BTreeMap<String, JobOutcome<MaterializeSummary>>,
    /// Warnings naming Jobs that carry its labels without being its own.
    pub foreign: Vec<Notice>,
    /// The CronJob of `cutoffs.schedule` as the cluster shows it.
    pub cron_job: Option<CronJob>,
}

/// Reads a FeatureSet's Jobs, the outcomes of those the status does not record yet, and its
/// CronJob. The Jobs come from the shared store when it holds the ones the FeatureSet names
/// (see [`store_covers`]), else from the API server. Writes nothing.
pub(super) async fn read(ctx: &Context, fs: &FeatureSet) -> Result<MaterializeRead, Error> {
    let ns = fs.namespace().unwrap_or_default();
    let stored = match &ctx.stores.feature_set_jobs {
        Some(stores) => stores.labelled(&ns, &fs.name_any()).await,
        None => None,
    }
    .map(|labelled| own(fs, labelled, "Materialize"))
    .filter(|owned| store_covers(fs, &owned.trusted));
    let owned = match stored {
        Some(owned) => owned,
        None => {
            tracing::debug!(feature_set = %fs.name_any(), "Jobs read from the API server: their store has not listed, or lacks the recorded Job");
            let selector = format!("{FEATURE_SET_LABEL}={}", fs.name_any());
            list_owned(ctx, fs, &selector, true, "Materialize").await?
        }
    };
    let mut jobs = owned.trusted;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    let last = fs.status.as_ref().and_then(|s| s.last_job.clone());
    let recorded = jobs
        .iter()
        .position(|j| Some(j.name_any()) == last)
        .map_or(0, |i| i + 1);
    let outcomes = outcomes(ctx, &jobs[recorded..]).await?;
    let cron_job = match &fs.spec.cutoffs.schedule {
        Some(_) => {
            let name = cron_job_name(fs);
            owned.cron_jobs.into_iter().find(|c| c.name_any() == name)
        }
        None => None,
    };
    Ok(MaterializeRead {
        jobs,
        outcomes,
        foreign: owned.foreign,
        cron_job,
    })
}

/// Whether the stored Jobs of `fs` may stand in for a list from the API server (pure): they
/// hold the Job the status records last, if any. The store is at least as new as the event
/// that woke the reconcile, but a Job created a moment ago may not be in it yet. Where that Job
/// is the one of this generation, the plan applies it again, which changes nothing (server-side
/// apply of the same object); where it is the recorded one, the plan would take it for new
/// and report it again, so the API server is asked.
pub fn store_covers(fs: &FeatureSet, trusted: &[Job]) -> bool {
    let last = fs.status.as_ref().and_then(|s| s.last_job.as_deref());
    last.is_none_or(|last| {
        trusted
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(last))
    })
}

/// Plans a FeatureSet's materialization from what was read (pure): the Job of this generation
/// when none ran yet (`Observed::start`), the CronJob of `cutoffs.schedule`, the Job in
/// progress, and the newest finished Job the status does not record yet.
pub fn plan(fs: &FeatureSet, config: &OperatorConfig, read: MaterializeRead) -> Observed {
    let mut observed = Observed {
        events: read.foreign,
        ..Default::default()
    };
    let mut jobs = read.jobs;
    let generation_job = generation_job_name(fs);
    let status = fs.status.clone().unwrap_or_default();
    let known = jobs.iter().any(|j| j.name_any() == generation_job)
        || status.last_job.as_deref() == Some(generation_job.as_str());
    if !known {
        let job = build_job(fs, config, &generation_job);
        jobs.push(job.clone());
        observed.start = Some(job);
    }
    observed.cron_job = fs
        .spec
        .cutoffs
        .schedule
        .as_deref()
        .map(|schedule| build_cron_job(fs, config, schedule));
    for job in jobs.iter().rev() {
        let name = job.name_any();
        if status.last_job.as_deref() == Some(name.as_str()) {
            break;
        }
        match outcome_in(&read.outcomes, job) {
            JobOutcome::Running {
                unschedulable,
                progress,
            } => {
                if observed.active.is_none() {
                    observed.active = Some((name, unschedulable));
                    observed.progress = progress;
                }
            }
            JobOutcome::Succeeded { summary, .. } => {
                observed.finished = Some((name, Ok(summary)));
                break;
            }
            JobOutcome::Failed { reason } => {
                observed.finished = Some((name, Err(reason)));
                break;
            }
        }
    }
    observed
}

/// Applies the plan: the token-less ServiceAccount and the Job of this generation when one
/// starts, and the CronJob when it differs from `current`.
pub(super) async fn apply_plan(
    ctx: &Context,
    fs: &FeatureSet,
    observed: &Observed,
    current: Option<&CronJob>,
) -> Result<(), Error> {
    let ns = fs.namespace().unwrap_or_default();
    if let Some(job) = &observed.start {
        ensure_service_account(ctx, fs).await?;
        apply(ctx, &ns, job, "materialization Job").await?;
    }
    if let Some(cron) = &observed.cron_job {
        apply_if_changed(ctx, &ns, cron.clone(), current, "materialization CronJob").await?;
    }
    Ok(())
}

/// Creates (or restores) the FeatureSet's token-less ServiceAccount.
pub(super) async fn ensure_service_account(ctx: &Context, fs: &FeatureSet) -> Result<(), Error> {
    crate::network_policy::ensure(ctx, &fs.namespace().unwrap_or_default()).await?;
    match service_account::token_less(fs, service_account_name(fs), FEATURE_SET_LABEL) {
        Some(sa) => service_account::ensure(ctx, FeatureSet::KIND, &sa).await,
        None => Ok(()),
    }
}
