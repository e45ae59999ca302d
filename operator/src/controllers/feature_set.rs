//! The FeatureSet controller.

use std::sync::Arc;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{EnvVar, Pod, ServiceAccount};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use leitwerk_crds::{
    FIELD_MANAGER, FeatureSet, FeatureSetSpec, FeatureSetStatus,
    feature_set::{Aggregation, QualityRuleStatus},
    filter::Filter,
    summary::MaterializeSummary,
};

use super::{Scope, drain, first_missing_secret};
use crate::{
    config::OperatorConfig,
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    status::{Desired, READY},
    validation::{FieldError, check_cron, into_result, parse_duration, summarize},
    workloads::{
        JobState, MANAGED_BY, Mount, PodParts, child_name, claim_mount, job_state, resources,
        store_mount, termination_message, trainer_job, unschedulable,
    },
};

pub use crate::reconcile::Error;

/// Label naming the FeatureSet a Job belongs to.
pub const FEATURE_SET_LABEL: &str = "leitwerk.dev/featureset";

/// Runs the FeatureSet controller. It watches the materialization Jobs (its own and those of
/// its CronJob) by label.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let api = scope.api::<DeserializeGuard<FeatureSet>>(client.clone());
    let stream = Controller::new(api, watcher::Config::default())
        .watches(
            scope.api::<Job>(client),
            watcher::Config::default().labels(FEATURE_SET_LABEL),
            |job: Job| {
                let name = job.labels().get(FEATURE_SET_LABEL).cloned()?;
                Some(
                    ObjectRef::<DeserializeGuard<FeatureSet>>::new(&name).within(&job.namespace()?),
                )
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(FeatureSet::KIND, stream).await;
}

/// Reconciles one FeatureSet: validate → resolve Secrets → launch the materialization Job for
/// this generation (and the CronJob of `cutoffs.schedule`) → read finished Jobs → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<FeatureSet>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(FeatureSet::KIND);
    let fs = match &obj.0 {
        Ok(fs) => fs,
        Err(invalid) => return Ok(reconcile::report_malformed::<FeatureSet>(&ctx, invalid).await),
    };
    let ns = fs.namespace().unwrap_or_default();
    let mut observed = Observed::default();
    let outcome = match validate(&fs.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            let refs = secret_refs(&fs.spec);
            match first_missing_secret(&ctx, &ns, &refs).await.map_err(|source| Error::Read { what: "credential Secrets".into(), source })? {
                Some((field, name)) => Outcome::new(
                    "Pending",
                    Desired::not(READY, "SecretNotFound", format!("Secret {name:?} named by {field} does not exist in namespace {ns:?}: create it or fix the reference")),
                )
                .recheck_after(RECHECK_UNWATCHED),
                None => {
                    observed = observe(&ctx, fs, &ns).await?;
                    decide_with(fs, &observed)
                }
            }
        }
    };
    let action = reconcile::finish_with(&ctx, fs, outcome, |status| observed.apply(status)).await?;
    ctx.reset_backoff(&reconcile::backoff_key(fs));
    Ok(action)
}

/// What the Jobs of a FeatureSet show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// A Job is running: its name, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// The newest finished Job not yet reflected in status, with its summary or error.
    pub finished: Option<(String, Result<MaterializeSummary, String>)>,
}

impl Observed {
    /// Copies a newly finished Job's results into the status.
    pub fn apply(&self, status: &mut FeatureSetStatus) {
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

async fn observe(ctx: &Context, fs: &FeatureSet, ns: &str) -> Result<Observed, Error> {
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
        ensure_service_account(ctx, fs, ns).await?;
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

/// Name of the token-less ServiceAccount a FeatureSet's Jobs run as.
pub fn service_account_name(fs: &FeatureSet) -> String {
    child_name(&fs.name_any(), "featureset")
}

/// Creates the FeatureSet's ServiceAccount (owned, no API token) when it is missing.
async fn ensure_service_account(ctx: &Context, fs: &FeatureSet, ns: &str) -> Result<(), Error> {
    let name = service_account_name(fs);
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    if api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Read {
            what: format!("ServiceAccount {name}"),
            source,
        })?
        .is_some()
    {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (FEATURE_SET_LABEL.to_string(), fs.name_any()),
            ])),
            owner_references: fs.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    apply(ctx, ns, &sa, "ServiceAccount").await
}

/// Why a Job failed: the trainer's `{"error": …}` summary, else the pod's message (its log
/// tail), else the Job's own reason.
pub fn failure_message(message: Option<&str>, reason: &str) -> String {
    let Some(m) = message.filter(|m| !m.trim().is_empty()) else {
        return reason.to_string();
    };
    serde_json::from_str::<serde_json::Value>(m)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| format!("{reason}: {}", m.trim()))
}

/// Pods of a Job.
pub async fn job_pods(ctx: &Context, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Read {
            what: format!("pods of Job {job}"),
            source,
        })
}

/// Applies a child object by server-side apply.
pub async fn apply<K>(ctx: &Context, ns: &str, obj: &K, what: &str) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|source| Error::Apply {
            what: format!("{what} {name}"),
            source,
        })?;
    ctx.metrics.wrote(K::kind(&()).as_ref(), "child");
    Ok(())
}

/// Annotation with the hash of what the operator last applied to a child object.
pub const APPLIED_HASH: &str = "leitwerk.dev/applied-hash";

/// A stable hash of an object's JSON.
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Applies `obj` unless `current` carries the hash of the same desired object: the API server
/// fills in defaults, so comparing specs would write on every reconcile.
pub async fn apply_if_changed<K>(
    ctx: &Context,
    ns: &str,
    mut obj: K,
    current: Option<&K>,
    what: &str,
) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let hash = hash_of(&obj);
    if current
        .and_then(|c| c.meta().annotations.as_ref())
        .and_then(|a| a.get(APPLIED_HASH))
        == Some(&hash)
    {
        return Ok(());
    }
    obj.meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(APPLIED_HASH.to_string(), hash);
    apply(ctx, ns, &obj, what).await
}

/// Name of the Job that materializes the current generation.
pub fn generation_job_name(fs: &FeatureSet) -> String {
    child_name(
        &fs.name_any(),
        &format!("mat-g{}", fs.metadata.generation.unwrap_or(0)),
    )
}

fn pod_parts(fs: &FeatureSet, config: &OperatorConfig) -> (PodParts, String) {
    let store = fs
        .spec
        .artifact_store
        .clone()
        .unwrap_or_else(|| config.artifact_store.clone());
    let mut mounts: Vec<Mount> = Vec::new();
    for s in &fs.spec.sources {
        let (Some(file), Some(claim)) =
            (&s.file, s.file.as_ref().and_then(|f| f.claim_name.as_ref()))
        else {
            continue;
        };
        let dir = std::path::Path::new(&file.path)
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_else(|| "/".into());
        if mounts.iter().any(|m| m.mount.mount_path == dir) {
            continue;
        }
        let volume = format!("data-{}", mounts.len());
        mounts.push(claim_mount(&volume, claim, &dir, true));
    }
    if let Some(m) = store_mount(&store, &config.artifact_claim_name, false) {
        mounts.push(m);
    }
    let env = vec![EnvVar {
        name: "LEITWERK_SPEC".into(),
        value: serde_json::to_string(&fs.spec).ok(),
        ..Default::default()
    }];
    let parts = PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (FEATURE_SET_LABEL.to_string(), fs.name_any()),
        ]),
        mounts,
        env,
        resources: resources(fs.spec.resources.as_ref()),
        scheduling: None,
        service_account: service_account_name(fs),
        secret_env: {
            let mut names: Vec<String> =
                secret_refs(&fs.spec).into_iter().map(|(_, n)| n).collect();
            names.dedup();
            names
        },
    };
    (parts, store)
}

fn job_args(fs: &FeatureSet, store: &str) -> Vec<String> {
    vec![
        "materialize".into(),
        "--namespace".into(),
        fs.namespace().unwrap_or_default(),
        "--name".into(),
        fs.name_any(),
        "--artifact-store".into(),
        store.into(),
    ]
}

/// The materialization Job of one generation.
pub fn build_job(fs: &FeatureSet, config: &OperatorConfig, name: &str) -> Job {
    let (parts, store) = pod_parts(fs, config);
    let owner = fs.controller_owner_ref(&()).unwrap_or_default();
    trainer_job(
        name,
        &fs.namespace().unwrap_or_default(),
        owner,
        &config.trainer_image,
        job_args(fs, &store),
        &parts,
        Some(2),
        Some(6 * 3600),
    )
}

/// The CronJob that re-materializes on `spec.cutoffs.schedule`.
pub fn build_cron_job(fs: &FeatureSet, config: &OperatorConfig, schedule: &str) -> CronJob {
    let name = child_name(&fs.name_any(), "materialize");
    let job = build_job(fs, config, &name);
    CronJob {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: fs.namespace(),
            labels: job.metadata.labels.clone(),
            owner_references: job.metadata.owner_references.clone(),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: job.metadata.labels.clone(),
                    ..Default::default()
                }),
                spec: job.spec,
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status of a valid FeatureSet whose references resolve.
pub fn decide(fs: &FeatureSet) -> Outcome {
    decide_with(fs, &Observed::default())
}

/// The status given what the Jobs show.
pub fn decide_with(fs: &FeatureSet, observed: &Observed) -> Outcome {
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
            "Ready",
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
        (None, Some((job, why)), _, _) => Outcome::new(
            "Materializing",
            Desired::not(
                READY,
                "AwaitingMaterialization",
                match why {
                    Some(why) => format!("Job {job} cannot be scheduled: {why}"),
                    None => format!("Job {job} is materializing the first snapshot"),
                },
            ),
        ),
        (None, None, Some(error), _) => Outcome::new(
            "Failed",
            Desired::not(READY, "MaterializationFailed", error.clone()),
        ),
        (None, None, None, Some(q)) => Outcome::new(
            "QualityFailed",
            Desired::not(READY, "QualityRuleFailed", q.message.clone()),
        ),
        (None, None, None, None) => Outcome::new(
            "Pending",
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

/// `(field, secret name)` of every Secret the spec references.
pub fn secret_refs(spec: &FeatureSetSpec) -> Vec<(String, String)> {
    spec.sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let secret = s.object_store.as_ref()?.credentials_secret_ref.as_ref()?;
            Some((
                format!("spec.sources[{i}].objectStore.credentialsSecretRef"),
                secret.name.clone(),
            ))
        })
        .collect()
}

/// Checks what the schema cannot: durations, schedules, column names and label leakage.
pub fn validate(spec: &FeatureSetSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let max_window = std::time::Duration::from_secs(10 * 365 * 86_400);
    for (i, f) in spec.features.iter().enumerate() {
        for (j, w) in f.windows.iter().enumerate() {
            match parse_duration(w) {
                Some(d) if d.is_zero() => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    "a window must be longer than 0",
                )),
                Some(d) if d > max_window => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("window {w} is longer than ten years"),
                )),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("{w:?} is not a duration such as 7d"),
                )),
            }
            let column = format!("{}_{}", f.name, w);
            if column.len() > 63 {
                errors.push(FieldError::new(
                    format!("spec.features[{i}].name"),
                    format!(
                        "snapshot column {column:?} is longer than 63 characters: shorten the name"
                    ),
                ));
            }
        }
        if let Some(filter) = &f.filter
            && let Err(e) = Filter::parse(filter)
        {
            errors.push(FieldError::new(
                format!("spec.features[{i}].filter"),
                e.to_string(),
            ));
        }
        if f.aggregation == Aggregation::Static && f.filter.is_some() {
            errors.push(FieldError::new(
                format!("spec.features[{i}].filter"),
                "a Static feature takes no filter",
            ));
        }
        if f.name == spec.label.name {
            errors.push(FieldError::new(
                format!("spec.features[{i}].name"),
                format!(
                    "{:?} is also the label's name: a feature named like the label leaks it",
                    f.name
                ),
            ));
        }
        if f.column.as_deref() == Some(spec.entity_key.as_str())
            && f.aggregation != Aggregation::DistinctCount
            && f.aggregation != Aggregation::Count
        {
            errors.push(FieldError::new(
                format!("spec.features[{i}].column"),
                "aggregating the entity key itself is meaningless: pick another column",
            ));
        }
    }
    if let Some(filter) = &spec.label.filter
        && let Err(e) = Filter::parse(filter)
    {
        errors.push(FieldError::new("spec.label.filter", e.to_string()));
    }
    if let Some(source) = spec
        .sources
        .iter()
        .find(|s| s.file.is_none() == s.object_store.is_none())
    {
        errors.push(FieldError::new(
            "spec.sources",
            format!(
                "source {:?} sets neither or both of file and objectStore: set exactly one",
                source.name
            ),
        ));
    }
    let names: Vec<&str> = spec.sources.iter().map(|s| s.name.as_str()).collect();
    for (i, f) in spec.features.iter().enumerate() {
        if !names.contains(&f.source.as_str()) {
            errors.push(FieldError::new(
                format!("spec.features[{i}].source"),
                format!(
                    "no source is named {:?}; sources: {}",
                    f.source,
                    names.join(", ")
                ),
            ));
        }
    }
    if !names.contains(&spec.label.source.as_str()) {
        errors.push(FieldError::new(
            "spec.label.source",
            format!(
                "no source is named {:?}; sources: {}",
                spec.label.source,
                names.join(", ")
            ),
        ));
    }
    match parse_duration(&spec.label.horizon) {
        Some(d) if !d.is_zero() => {}
        _ => errors.push(FieldError::new(
            "spec.label.horizon",
            format!(
                "{:?} is not a positive duration such as 30d",
                spec.label.horizon
            ),
        )),
    }
    if let Some(every) = &spec.cutoffs.every
        && !matches!(parse_duration(every), Some(d) if !d.is_zero())
    {
        errors.push(FieldError::new(
            "spec.cutoffs.every",
            format!("{every:?} is not a positive duration such as 7d"),
        ));
    }
    if let Some(dates) = &spec.cutoffs.dates {
        for (i, d) in dates.iter().enumerate() {
            if k8s_openapi::jiff::civil::Date::strptime("%Y-%m-%d", d).is_err() {
                errors.push(FieldError::new(
                    format!("spec.cutoffs.dates[{i}]"),
                    format!("{d:?} is not a calendar date"),
                ));
            }
        }
    }
    if let Some(schedule) = &spec.cutoffs.schedule
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.cutoffs.schedule", problem));
    }
    into_result(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> FeatureSet {
        yaml_serde::from_str(include_str!(
            "../../../examples/lead-scoring/featureset.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn examples_are_valid() {
        assert_eq!(validate(&example().spec), Ok(()));
        let churn: FeatureSet =
            yaml_serde::from_str(include_str!("../../../examples/churn/featureset.yaml")).unwrap();
        assert_eq!(validate(&churn.spec), Ok(()));
    }

    #[test]
    fn a_feature_named_like_the_label_is_reported_as_leakage() {
        let mut spec = example().spec;
        spec.features[0].name = spec.label.name.clone();
        let errors = validate(&spec).unwrap_err();
        assert_eq!(errors[0].field, "spec.features[0].name");
        assert!(errors[0].message.contains("leaks"));
    }

    #[test]
    fn impossible_dates_zero_windows_and_bad_schedules_are_named() {
        let mut spec = example().spec;
        spec.features[3].windows[0] = "0d".into();
        spec.cutoffs.schedule = Some("0 3 * * 8".into());
        spec.cutoffs.every = None;
        spec.cutoffs.dates = Some(vec!["2026-02-30".into()]);
        let fields: Vec<String> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.features[3].windows[0]",
                "spec.cutoffs.dates[0]",
                "spec.cutoffs.schedule"
            ]
        );
    }

    #[test]
    fn unpublished_feature_sets_are_honest_about_waiting() {
        let outcome = decide(&example());
        assert_eq!(
            (
                outcome.phase,
                outcome.ready.status,
                outcome.ready.reason.as_str()
            ),
            ("Pending", false, "AwaitingMaterialization")
        );
    }

    #[test]
    fn credential_secrets_are_found_with_their_fields() {
        let mut spec = example().spec;
        assert!(secret_refs(&spec).is_empty());
        spec.sources[1].object_store = Some(leitwerk_crds::feature_set::ObjectStoreSource {
            url: "s3://b/e/".into(),
            credentials_secret_ref: Some(leitwerk_crds::common::SecretReference {
                name: "s3-creds".into(),
            }),
        });
        assert_eq!(
            secret_refs(&spec),
            vec![(
                "spec.sources[1].objectStore.credentialsSecretRef".to_string(),
                "s3-creds".to_string()
            )]
        );
    }
}
