//! Observing a FeatureSet's materialization Jobs and its ServiceAccount.

use super::*;

pub(super) async fn observe(ctx: &Context, fs: &FeatureSet, ns: &str) -> Result<Observed, Error> {
    let selector = format!("{FEATURE_SET_LABEL}={}", fs.name_any());
    let owned = list_owned(ctx, fs, &selector, true, "Materialize").await?;
    let mut jobs = owned.trusted;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    let generation_job = generation_job_name(fs);
    let status = fs.status.clone().unwrap_or_default();
    let known = jobs.iter().any(|j| j.name_any() == generation_job)
        || status.last_job.as_deref() == Some(generation_job.as_str());
    if !known {
        ensure_service_account(ctx, fs).await?;
        let job = build_job(fs, &ctx.config, &generation_job);
        apply(ctx, ns, &job, "materialization Job").await?;
        jobs.push(job);
    }
    if let Some(schedule) = &fs.spec.cutoffs.schedule {
        let cron = build_cron_job(fs, &ctx.config, schedule);
        let current = Api::<CronJob>::namespaced(ctx.client.clone(), ns)
            .get_opt(&cron.name_any())
            .await
            .map_err(|source| Error::Read {
                what: "materialization CronJob".into(),
                source,
            })?;
        apply_if_changed(ctx, ns, cron, current.as_ref(), "materialization CronJob").await?;
    }
    let mut observed = Observed {
        events: owned.foreign,
        ..Default::default()
    };
    for job in jobs.iter().rev() {
        let finished = status.last_job.as_deref() == Some(job.name_any().as_str());
        match outcome::<MaterializeSummary>(ctx, job).await? {
            JobOutcome::Running { unschedulable } => {
                if observed.active.is_none() && observed.finished.is_none() {
                    observed.active = Some((job.name_any(), unschedulable));
                }
            }
            _ if finished => break,
            JobOutcome::Succeeded { summary, .. } => {
                observed.finished = Some((job.name_any(), Ok(summary)));
                break;
            }
            JobOutcome::Failed { reason } => {
                observed.finished = Some((job.name_any(), Err(reason)));
                break;
            }
        }
    }
    Ok(observed)
}

/// Creates (or restores) the FeatureSet's token-less ServiceAccount.
pub(super) async fn ensure_service_account(ctx: &Context, fs: &FeatureSet) -> Result<(), Error> {
    match service_account::token_less(fs, service_account_name(fs), FEATURE_SET_LABEL) {
        Some(sa) => service_account::ensure(ctx, FeatureSet::KIND, &sa).await,
        None => Ok(()),
    }
}
