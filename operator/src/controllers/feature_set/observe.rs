//! Observing a FeatureSet's materialization Jobs and its ServiceAccount.

use super::*;

pub(super) async fn observe(ctx: &Context, fs: &FeatureSet, ns: &str) -> Result<Observed, Error> {
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{FEATURE_SET_LABEL}={}", fs.name_any());
    let mut jobs = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: "materialization Jobs".into(),
            source,
        })?
        .items;
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
    let mut observed = Observed::default();
    for job in jobs.iter().rev() {
        let state = job_state(job);
        if state == JobState::Active {
            if observed.active.is_none() && observed.finished.is_none() {
                let pods = job_pods(ctx, ns, &job.name_any()).await?;
                observed.active = Some((job.name_any(), unschedulable(&pods)));
            }
            continue;
        }
        if status.last_job.as_deref() == Some(job.name_any().as_str()) {
            break;
        }
        let pods = job_pods(ctx, ns, &job.name_any()).await?;
        let message = termination_message(&pods);
        let result = match (&state, message) {
            (JobState::Succeeded, Some(m)) => serde_json::from_str::<MaterializeSummary>(&m)
                .map_err(|e| {
                    format!(
                        "the Job's summary is not readable ({e}): {}",
                        reconcile::truncate(&m, 300)
                    )
                }),
            (JobState::Succeeded, None) => {
                Err("the Job succeeded but its pod left no summary".into())
            }
            (JobState::Failed(reason), m) => Err(failure_message(m.as_deref(), reason)),
            (JobState::Active, _) => continue,
        };
        observed.finished = Some((job.name_any(), result));
        break;
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
