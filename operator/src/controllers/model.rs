//! The Model controller.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Service, ServiceAccount};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        watcher,
    },
};
use leitwerk_crds::{
    FIELD_MANAGER, FeatureSet, Model, ModelSpec,
    model::{DriftAction, DriftPolicy, FeatureDriftValue, ModelDriftStatus, ModelVersion, Task},
    summary::TrainSummary,
};

use super::{
    Scope, drain,
    feature_set::{apply, apply_if_changed, failure_message, job_pods},
    get_opt, referrers,
};
use crate::{
    analysis::drift::FeatureDrift,
    config::OperatorConfig,
    context::Context,
    metrics::ModelDriftLabels,
    reconcile::{self, LeitwerkResource, Outcome},
    status::{Desired, READY},
    validation::{FieldError, check_cron, into_result, parse_duration, summarize},
    workloads::{
        HTTP_PORT, JobState, MANAGED_BY, PodParts, child_name, job_state, resources,
        serving_deployment, serving_service, store_mount, termination_message, trainer_job,
        unschedulable,
    },
};

/// Label naming the Model an object belongs to.
pub const MODEL_LABEL: &str = "leitwerk.dev/model";
/// The condition that reports input drift of the serving version.
pub const DRIFT: &str = "Drift";
/// Label carrying the version a training Job produces.
pub const VERSION_LABEL: &str = "leitwerk.dev/version";

pub use crate::reconcile::Error;

mod drift;

pub use drift::*;

/// Runs the Model controller. It watches FeatureSets (a Model waiting for one recovers as
/// soon as it publishes), its training Jobs, and owns its ServiceAccount, Deployment and
/// Service.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<Model>>(client.clone()),
        watcher::Config::default(),
    );
    let models = controller.store();
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let stream = controller
        .owns(
            scope.api::<ServiceAccount>(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .owns(
            scope.api::<Job>(client.clone()),
            watcher::Config::default().labels(MODEL_LABEL),
        )
        .owns(
            scope.api::<Deployment>(client.clone()),
            watcher::Config::default().labels(MODEL_LABEL),
        )
        .watches(
            scope.api::<FeatureSet>(client),
            watcher::Config::default(),
            referrers(models, |m: &Model, name| {
                m.spec
                    .feature_set_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(Model::KIND, stream).await;
}

/// What the cluster shows about a Model's workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Versions of training Jobs that finished since the status was written.
    pub finished: Vec<ModelVersion>,
    /// The training Job in progress, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// The training Job this reconcile started.
    pub started: Option<String>,
    /// Available replicas of the serving Deployment, and the replicas asked for.
    pub serving_replicas: Option<(i32, i32)>,
    /// Time until the next scheduled retraining (`spec.training.retrain.schedule`).
    pub next_scheduled: Option<std::time::Duration>,
}

/// The next run of a five-field cron schedule strictly after `after` (UTC).
pub fn next_run(
    schedule: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let cron: croner::Cron = schedule.parse().ok()?;
    cron.find_next_occurrence(&after, false).ok()
}

/// Whether a scheduled retraining is due now, and how long until the next one otherwise.
/// The schedule counts from the newest version's training time (or the Model's creation).
pub fn schedule_state(
    schedule: &str,
    last: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> (bool, Option<std::time::Duration>) {
    match next_run(schedule, last) {
        Some(next) if next <= now => (true, None),
        Some(next) => (false, (next - now).to_std().ok()),
        None => (false, None),
    }
}

/// Reconciles one Model: resolve the FeatureSet → validate → ServiceAccount → read finished
/// training Jobs into versions → start training when the data (or the spec) is new → promote
/// → serve → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Model>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(Model::KIND);
    let model = match &obj.0 {
        Ok(m) => m,
        Err(invalid) => return Ok(reconcile::report_malformed::<Model>(&ctx, invalid).await),
    };
    let ns = model.namespace().unwrap_or_default();
    let feature_set = match &model.spec.feature_set_ref {
        Some(r) => get_opt::<FeatureSet>(&ctx, &ns, &r.name)
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
    let outcome = match validate(&model.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            if let Some(sa) = build_service_account(model) {
                apply_service_account(&ctx, &ns, sa).await?;
            }
            observed = observe_training(
                &ctx,
                model,
                &ns,
                feature_set.as_ref().and_then(|f| f.as_ref()),
            )
            .await?;
            versions = next_versions(model, &observed);
            let drift_condition = match &model.spec.drift {
                Some(policy) => watch_drift(&ctx, model, policy, &mut versions, &mut drift).await,
                None => None,
            };
            if let Some(serving) = versions.iter().find(|v| v.state == "Serving") {
                observed.serving_replicas = Some(serve(&ctx, model, &ns, serving).await?);
            }
            let mut outcome = decide_with(
                model,
                feature_set.as_ref().map(|f| f.as_ref()),
                &observed,
                &versions,
            );
            if let Some((condition, period)) = drift_condition {
                outcome.conditions.push(condition);
                outcome.recheck = Some(outcome.recheck.map_or(period, |r| r.min(period)));
            }
            outcome
        }
    };
    if observed.started.is_some()
        && let Some(d) = drift.as_mut()
    {
        d.retrain_requested = false;
    }
    let endpoint = format!("http://{}.{ns}.svc:{HTTP_PORT}", serving_name(model));
    let action = reconcile::finish_with(&ctx, model, outcome, |status| {
        status.serving_version = versions
            .iter()
            .find(|v| v.state == "Serving")
            .map(|v| v.version.clone());
        status.endpoint = status.serving_version.as_ref().map(|_| endpoint.clone());
        if let Some(latest) = versions.iter().rev().find(|v| v.state != "Failed") {
            status.latest_version = Some(latest.version.clone());
            status.latest_auc = latest.metrics.get("auc").map(|a| (a * 1e4).round() / 1e4);
        }
        status.training_job = observed
            .started
            .clone()
            .or_else(|| observed.active.as_ref().map(|(j, _)| j.clone()));
        status.versions = versions.clone();
        status.drift = drift.clone();
    })
    .await?;
    ctx.reset_backoff(&reconcile::backoff_key(model));
    Ok(action)
}

fn version_number(v: &str) -> u32 {
    v.trim_start_matches('v').parse().unwrap_or(0)
}

/// Whether a version's metrics meet `minMetrics` (`logLoss`, `brier`, `mae`, `rmse` are
/// maxima; everything else minima). Returns the first unmet requirement.
pub fn unmet(spec: &ModelSpec, metrics: &BTreeMap<String, f64>) -> Option<String> {
    for (name, limit) in spec.min_metrics.iter().flatten() {
        let lower_is_better = matches!(name.as_str(), "logLoss" | "brier" | "mae" | "rmse");
        match metrics.get(name) {
            None => return Some(format!("metric {name} was not measured")),
            Some(v) if lower_is_better && v > limit => {
                return Some(format!("{name} {v:.4} is above the maximum {limit}"));
            }
            Some(v) if !lower_is_better && v < limit => {
                return Some(format!("{name} {v:.4} is below the minimum {limit}"));
            }
            _ => {}
        }
    }
    None
}

async fn observe_training(
    ctx: &Context,
    model: &Model,
    ns: &str,
    fs: Option<&FeatureSet>,
) -> Result<Observed, Error> {
    let mut observed = Observed::default();
    let status = model.status.clone().unwrap_or_default();
    if let Some(onnx) = &model.spec.onnx {
        // Bring your own ONNX: each new (url, sha256) is a new version, served as given when
        // nothing serves yet and a Candidate (for an Experiment to judge) otherwise.
        let digest = onnx.sha256.as_ref().map(|d| format!("sha256:{d}"));
        let newest_byo = status
            .versions
            .iter()
            .rev()
            .find(|v| v.data_version.as_deref() == Some("byo"));
        let known = newest_byo.is_some_and(|v| {
            v.artifact_url.as_deref() == Some(onnx.url.as_str()) && v.artifact_digest == digest
        });
        if !known {
            let next = status
                .versions
                .iter()
                .map(|v| version_number(&v.version))
                .max()
                .unwrap_or(0)
                + 1;
            observed.finished.push(ModelVersion {
                version: format!("v{next}"),
                state: "Candidate".into(),
                artifact_digest: digest,
                data_version: Some("byo".into()),
                artifact_url: Some(onnx.url.clone()),
                generation: model.metadata.generation,
                trained_at: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
                ..Default::default()
            });
        }
        return Ok(observed);
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{MODEL_LABEL}={}", model.name_any());
    let jobs = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: "training Jobs".into(),
            source,
        })?
        .items;
    let recorded = |v: &str| status.versions.iter().any(|x| x.version == v);
    let mut highest = status
        .versions
        .iter()
        .map(|v| version_number(&v.version))
        .max()
        .unwrap_or(0);
    for job in &jobs {
        let Some(version) = job.labels().get(VERSION_LABEL).cloned() else {
            continue;
        };
        highest = highest.max(version_number(&version));
        if recorded(&version) {
            continue;
        }
        let state = job_state(job);
        if state == JobState::Active {
            let pods = job_pods(ctx, ns, &job.name_any()).await?;
            observed.active = Some((job.name_any(), unschedulable(&pods)));
            continue;
        }
        let pods = job_pods(ctx, ns, &job.name_any()).await?;
        let message = termination_message(&pods);
        let generation = job
            .annotations()
            .get("leitwerk.dev/generation")
            .and_then(|g| g.parse().ok());
        let data_version = job.annotations().get("leitwerk.dev/data-version").cloned();
        let mut v = ModelVersion {
            version: version.clone(),
            generation,
            data_version,
            ..Default::default()
        };
        match (
            &state,
            message.as_deref().map(serde_json::from_str::<TrainSummary>),
        ) {
            (JobState::Succeeded, Some(Ok(summary))) => {
                v.artifact_digest = Some(summary.digest);
                v.artifact_url = Some(summary.model_url);
                v.data_version = Some(summary.data_version);
                v.metrics = summary
                    .metrics
                    .into_iter()
                    .map(|(k, x)| (k, (x * 1e4).round() / 1e4))
                    .collect();
                v.trained_at = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0.to_string());
                match unmet(&model.spec, &v.metrics) {
                    None => v.state = "Candidate".into(),
                    Some(why) => {
                        v.state = "Rejected".into();
                        v.message = Some(why);
                    }
                }
            }
            _ => {
                v.state = "Failed".into();
                let reason = match &state {
                    JobState::Failed(reason) => reason.clone(),
                    _ => "the Job succeeded but left no readable summary".into(),
                };
                v.message = Some(reconcile::truncate(
                    &failure_message(message.as_deref(), &reason),
                    512,
                ));
            }
        }
        observed.finished.push(v);
    }
    observed
        .finished
        .sort_by_key(|v| version_number(&v.version));

    // Start training when nothing runs and the data or the spec is new.
    let Some(fs) = fs else { return Ok(observed) };
    let fs_status = fs.status.clone().unwrap_or_default();
    let (Some(data_version), Some(snapshot)) = (
        fs_status.current_version.clone(),
        fs_status.snapshot.clone(),
    ) else {
        return Ok(observed);
    };
    if observed.active.is_some() {
        return Ok(observed);
    }
    let latest = status
        .versions
        .iter()
        .chain(&observed.finished)
        .max_by_key(|v| version_number(&v.version));
    let on_new_data = model
        .spec
        .training
        .as_ref()
        .and_then(|t| t.retrain.as_ref())
        .is_some_and(|r| r.on_new_data);
    if training_needed(model, latest, on_new_data, &data_version) {
        let version = format!("v{}", highest + 1);
        let job = build_training_job(model, &ctx.config, &version, &snapshot, &data_version);
        apply(ctx, ns, &job, "training Job").await?;
        observed.started = Some(job.name_any());
    }
    Ok(observed)
}

/// Whether a new version must be trained: none yet, the spec changed since the newest one, a
/// new snapshot arrived (with `retrain.onNewData`), or a drift check asked for it.
pub fn training_needed(
    model: &Model,
    latest: Option<&ModelVersion>,
    on_new_data: bool,
    data_version: &str,
) -> bool {
    let status = model.status.clone().unwrap_or_default();
    let drift_retrain = status.drift.as_ref().is_some_and(|d| d.retrain_requested);
    drift_retrain
        || match latest {
            None => true,
            Some(v) => {
                v.generation != model.metadata.generation
                    || (on_new_data && v.data_version.as_deref() != Some(data_version))
            }
        }
}

/// The versions after this reconcile: recorded plus finished, promoted when nothing serves,
/// bounded by `versionHistoryLimit` (the serving version is always kept).
pub fn next_versions(model: &Model, observed: &Observed) -> Vec<ModelVersion> {
    let mut versions = model.status.clone().unwrap_or_default().versions;
    versions.extend(observed.finished.iter().cloned());
    if !versions.iter().any(|v| v.state == "Serving")
        && let Some(best) = versions.iter_mut().rev().find(|v| v.state == "Candidate")
    {
        best.state = "Serving".into();
    }
    let limit = usize::try_from(model.spec.version_history_limit.max(1)).unwrap_or(10);
    while versions.len() > limit {
        match versions.iter().position(|v| v.state != "Serving") {
            Some(i) => {
                versions.remove(i);
            }
            None => break,
        }
    }
    versions
}

/// Name of a Model's serving Deployment and Service.
pub fn serving_name(model: &Model) -> String {
    child_name(&model.name_any(), "serving")
}

fn parts(
    model: &Model,
    config: &OperatorConfig,
    store_read_only: bool,
    resources_spec: Option<&leitwerk_crds::common::WorkloadResources>,
    scheduling: Option<leitwerk_crds::common::Scheduling>,
) -> PodParts {
    let mut mounts = Vec::new();
    let store = config.artifact_store.clone();
    if let Some(m) = store_mount(&store, &config.artifact_claim_name, store_read_only) {
        mounts.push(m);
    }
    let mut scheduling = scheduling.unwrap_or_default();
    if scheduling.service_account_name.is_none() {
        scheduling.service_account_name = Some(service_account_name(model));
    }
    PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (MODEL_LABEL.to_string(), model.name_any()),
        ]),
        mounts,
        env: Vec::new(),
        resources: resources(resources_spec),
        scheduling: Some(scheduling),
        service_account: config.workload_service_account.clone(),
        secret_env: Vec::new(),
    }
}

/// The training Job of one version.
pub fn build_training_job(
    model: &Model,
    config: &OperatorConfig,
    version: &str,
    snapshot: &str,
    data_version: &str,
) -> Job {
    let training = model.spec.training.clone().unwrap_or_default();
    let mut p = parts(
        model,
        config,
        false,
        training.resources.as_ref(),
        training.scheduling.clone(),
    );
    p.labels
        .insert(VERSION_LABEL.to_string(), version.to_string());
    let mut spec = model.spec.clone();
    spec.serving.image = None;
    p.env.push(EnvVar {
        name: "LEITWERK_SPEC".into(),
        value: serde_json::to_string(&spec).ok(),
        ..Default::default()
    });
    let args = vec![
        "train".into(),
        "--namespace".into(),
        model.namespace().unwrap_or_default(),
        "--name".into(),
        model.name_any(),
        "--version".into(),
        version.into(),
        "--snapshot".into(),
        snapshot.into(),
        "--artifact-store".into(),
        config.artifact_store.clone(),
    ];
    let image = training
        .image
        .clone()
        .unwrap_or_else(|| config.trainer_image.clone());
    let owner = model.controller_owner_ref(&()).unwrap_or_default();
    let mut job = trainer_job(
        &child_name(&model.name_any(), &format!("train-{version}")),
        &model.namespace().unwrap_or_default(),
        owner,
        &image,
        args,
        &p,
        training.backoff_limit,
        training.active_deadline_seconds,
    );
    job.metadata.annotations = Some(BTreeMap::from([
        (
            "leitwerk.dev/generation".to_string(),
            model.metadata.generation.unwrap_or(0).to_string(),
        ),
        (
            "leitwerk.dev/data-version".to_string(),
            data_version.to_string(),
        ),
    ]));
    job
}

/// The serving Deployment and Service of a version.
pub fn build_serving(
    model: &Model,
    config: &OperatorConfig,
    version: &ModelVersion,
) -> (Deployment, Service) {
    let serving = &model.spec.serving;
    let p = serving_parts(model, config);
    let mut args = serving_args(model, version);
    let ns = model.namespace().unwrap_or_default();
    args.extend(["--metric-label".to_string(), format!("namespace={ns}")]);
    let image = serving_image(model, config);
    let owner = model.controller_owner_ref(&()).unwrap_or_default();
    let name = serving_name(model);
    let deployment = serving_deployment(
        &name,
        &ns,
        owner.clone(),
        &image,
        serving.replicas,
        args,
        &p,
    );
    let service = serving_service(&name, &ns, owner, &p.labels);
    (deployment, service)
}

/// The pod parts of a Model's serving pods (its labels, store mount, resources, account).
pub fn serving_parts(model: &Model, config: &OperatorConfig) -> PodParts {
    parts(
        model,
        config,
        true,
        model.spec.serving.resources.as_ref(),
        None,
    )
}

/// The serving image of a Model.
pub fn serving_image(model: &Model, config: &OperatorConfig) -> String {
    model
        .spec
        .serving
        .image
        .clone()
        .unwrap_or_else(|| config.inference_server_image.clone())
}

/// The inference server's arguments for one version: the digest-pinned model and batching.
pub fn serving_args(model: &Model, version: &ModelVersion) -> Vec<String> {
    let serving = &model.spec.serving;
    let url = version.artifact_url.clone().unwrap_or_default();
    let digest = version
        .artifact_digest
        .as_deref()
        .and_then(|d| d.strip_prefix("sha256:"))
        .map(|d| format!("#sha256:{d}"))
        .unwrap_or_default();
    let mut args = vec![
        "--model".to_string(),
        format!("{}={}={url}{digest}", model.name_any(), version.version),
    ];
    if let Some(b) = &serving.batching {
        args.extend([
            "--max-batch-size".into(),
            b.max_batch_size.to_string(),
            "--max-batch-delay-ms".into(),
            b.max_delay_ms.to_string(),
        ]);
    }
    args
}

async fn serve(
    ctx: &Context,
    model: &Model,
    ns: &str,
    version: &ModelVersion,
) -> Result<(i32, i32), Error> {
    let (deployment, service) = build_serving(model, &ctx.config, version);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = api
        .get_opt(&deployment.name_any())
        .await
        .map_err(|source| Error::Read {
            what: "serving Deployment".into(),
            source,
        })?;
    apply_if_changed(ctx, ns, deployment, current.as_ref(), "serving Deployment").await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let current_service = services
        .get_opt(&service.name_any())
        .await
        .map_err(|source| Error::Read {
            what: "serving Service".into(),
            source,
        })?;
    apply_if_changed(
        ctx,
        ns,
        service,
        current_service.as_ref(),
        "serving Service",
    )
    .await?;
    let available = current
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    Ok((available, model.spec.serving.replicas))
}

/// The status of a valid Model, given its FeatureSet: `None` when the reference does not
/// resolve, `Some(None)` when the Model brings its own ONNX file.
pub fn decide(model: &Model, feature_set: Option<Option<&FeatureSet>>) -> Outcome {
    let versions = model.status.clone().unwrap_or_default().versions;
    decide_with(model, feature_set, &Observed::default(), &versions)
}

/// The status given what the cluster shows and the versions after this reconcile.
pub fn decide_with(
    model: &Model,
    feature_set: Option<Option<&FeatureSet>>,
    observed: &Observed,
    versions: &[ModelVersion],
) -> Outcome {
    let ns = model.namespace().unwrap_or_default();
    let training = match (&observed.active, &observed.started) {
        (Some((job, Some(why))), _) => Some(Desired::not(
            "Training",
            "Unschedulable",
            format!("training Job {job} cannot be scheduled: {why}"),
        )),
        (Some((job, None)), _) => Some(Desired::ok(
            "Training",
            "Running",
            format!("training Job {job} is running"),
        )),
        (None, Some(job)) => Some(Desired::ok(
            "Training",
            "Started",
            format!("training Job {job} was created"),
        )),
        _ => None,
    };
    let recheck = observed.active.is_some() || observed.started.is_some();
    let with_training = |mut o: Outcome| {
        if let Some(t) = training.clone() {
            o.conditions.push(t);
        }
        if recheck {
            o.recheck_after(std::time::Duration::from_secs(10))
        } else {
            o
        }
    };
    if let Some(serving) = versions.iter().find(|v| v.state == "Serving") {
        let auc = serving
            .metrics
            .get("auc")
            .map(|a| format!(" (AUC {a})"))
            .unwrap_or_default();
        return with_training(match observed.serving_replicas {
            Some((available, _)) if available >= 1 => Outcome::new(
                "Serving",
                Desired::ok(
                    READY,
                    "Serving",
                    format!("version {}{auc} is serving", serving.version),
                ),
            ),
            Some((available, wanted)) => Outcome::new(
                "Deploying",
                Desired::not(
                    READY,
                    "AwaitingServing",
                    format!(
                        "version {}{auc} is deploying: {available}/{wanted} replicas available",
                        serving.version
                    ),
                ),
            )
            .recheck_after(std::time::Duration::from_secs(10)),
            None => Outcome::new(
                "Serving",
                Desired::ok(
                    READY,
                    "Serving",
                    format!("version {}{auc} is serving", serving.version),
                ),
            ),
        });
    }
    let outcome = match (feature_set, &model.spec.feature_set_ref) {
        (None, Some(r)) => Outcome::new(
            "Pending",
            Desired::not(
                READY,
                "FeatureSetNotFound",
                format!(
                    "FeatureSet {:?} named by spec.featureSetRef.name does not exist in namespace {ns:?}: create it or fix the reference",
                    r.name
                ),
            ),
        ),
        (Some(Some(fs)), _)
            if fs
                .status
                .as_ref()
                .and_then(|s| s.current_version.clone())
                .is_none() =>
        {
            Outcome::new(
                "WaitingForData",
                Desired::not(
                    READY,
                    "WaitingForFeatureSet",
                    format!(
                        "waiting for FeatureSet {:?} to publish its first snapshot",
                        fs.name_any()
                    ),
                ),
            )
        }
        (Some(None), None) => Outcome::new(
            "Deploying",
            Desired::not(
                READY,
                "AwaitingServing",
                "the ONNX model is being registered and deployed",
            ),
        ),
        _ => match (versions.last(), &training) {
            (_, Some(t)) if t.reason == "Unschedulable" => Outcome::new(
                "Pending",
                Desired::not(READY, "AwaitingTraining", t.message.clone()),
            ),
            (_, Some(t)) => Outcome::new(
                "Training",
                Desired::not(READY, "AwaitingTraining", t.message.clone()),
            ),
            (Some(v), None) if v.state == "Rejected" => Outcome::new(
                "Rejected",
                Desired::not(
                    READY,
                    "BelowMinMetrics",
                    format!(
                        "version {} is not served: {}",
                        v.version,
                        v.message.clone().unwrap_or_default()
                    ),
                ),
            ),
            (Some(v), None) if v.state == "Failed" => Outcome::new(
                "Failed",
                Desired::not(
                    READY,
                    "TrainingFailed",
                    format!(
                        "training of version {} failed: {}",
                        v.version,
                        v.message.clone().unwrap_or_default()
                    ),
                ),
            ),
            _ => {
                let data = match feature_set {
                    Some(Some(fs)) => format!(
                        "snapshot {} of FeatureSet {:?} is available; ",
                        fs.status
                            .as_ref()
                            .and_then(|s| s.current_version.clone())
                            .unwrap_or_default(),
                        fs.name_any()
                    ),
                    _ => String::new(),
                };
                Outcome::new(
                    "Pending",
                    Desired::not(
                        READY,
                        "AwaitingTraining",
                        format!("{data}waiting for a version to train"),
                    ),
                )
            }
        },
    };
    with_training(outcome)
}

/// Checks what the schema cannot.
pub fn validate(spec: &ModelSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(schedule) = spec
        .training
        .as_ref()
        .and_then(|t| t.retrain.as_ref())
        .and_then(|r| r.schedule.as_ref())
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.training.retrain.schedule", problem));
    }
    if let Some(algorithm) = &spec.algorithm {
        let classifier_only = algorithm.logistic_regression.is_some();
        let regressor_only = algorithm.linear_regression.is_some();
        if spec.task == Task::Regression && classifier_only {
            errors.push(FieldError::new("spec.algorithm.logisticRegression", "logistic regression is a classifier: use linearRegression, decisionTree or randomForest for a Regression task"));
        }
        if spec.task == Task::BinaryClassification && regressor_only {
            errors.push(FieldError::new("spec.algorithm.linearRegression", "linear regression predicts numbers: use logisticRegression, decisionTree or randomForest for a BinaryClassification task"));
        }
    }
    if let Some(metrics) = &spec.min_metrics {
        for (name, value) in metrics {
            let bounded = matches!(
                name.as_str(),
                "auc" | "prAuc" | "precision" | "recall" | "f1" | "brier"
            );
            if bounded && !(0.0..=1.0).contains(value) {
                errors.push(FieldError::new(
                    format!("spec.minMetrics.{name}"),
                    format!("{value} is outside 0–1"),
                ));
            }
        }
    }
    into_result(errors)
}

/// The ServiceAccount the Model's trainer Jobs and serving pods run as, unless the spec names
/// one. It has no API token mounted: the workloads never talk to the API server.
pub fn build_service_account(model: &Model) -> Option<ServiceAccount> {
    let named = model
        .spec
        .training
        .as_ref()
        .and_then(|t| t.scheduling.as_ref())
        .and_then(|s| s.service_account_name.as_ref());
    if named.is_some() {
        return None;
    }
    let owner = model.controller_owner_ref(&())?;
    Some(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(service_account_name(model)),
            namespace: model.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (MODEL_LABEL.to_string(), model.name_any()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// Name of a Model's ServiceAccount.
pub fn service_account_name(model: &Model) -> String {
    format!("{}-model", model.name_any())
}

/// Whether `existing` already carries everything `desired` sets.
pub fn service_account_matches(
    existing: Option<&ServiceAccount>,
    desired: &ServiceAccount,
) -> bool {
    let Some(existing) = existing else {
        return false;
    };
    let labels = existing.labels();
    let labels_match = desired
        .labels()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let owners_match = desired.owner_references().iter().all(|o| {
        existing
            .owner_references()
            .iter()
            .any(|e| e.uid == o.uid && e.controller == o.controller)
    });
    labels_match
        && owners_match
        && existing.automount_service_account_token == desired.automount_service_account_token
}

async fn apply_service_account(
    ctx: &Context,
    ns: &str,
    desired: ServiceAccount,
) -> Result<(), Error> {
    let name = desired.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    if service_account_matches(existing.as_ref(), &desired) {
        return Ok(());
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|source| Error::Apply {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    ctx.metrics.wrote(Model::KIND, "child");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Model {
        let mut model: Model =
            yaml_serde::from_str(include_str!("../../../examples/lead-scoring/model.yaml"))
                .unwrap();
        model.metadata.namespace = Some("sales".into());
        model.metadata.uid = Some("uid-1".into());
        model
    }

    fn feature_set(version: Option<&str>) -> FeatureSet {
        let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
            "../../../examples/lead-scoring/featureset.yaml"
        ))
        .unwrap();
        fs.status = Some(leitwerk_crds::FeatureSetStatus {
            current_version: version.map(String::from),
            ..Default::default()
        });
        fs
    }

    #[test]
    fn missing_feature_set_names_it_the_field_and_the_namespace() {
        let outcome = decide(&example(), None);
        assert_eq!(outcome.ready.reason, "FeatureSetNotFound");
        assert!(
            outcome.ready.message.contains("\"lead-features\"")
                && outcome.ready.message.contains("spec.featureSetRef.name")
                && outcome.ready.message.contains("\"sales\"")
        );
        assert_eq!(
            outcome.recheck, None,
            "recovery comes from the FeatureSet watch, not a timer"
        );
    }

    #[test]
    fn model_waits_for_data_then_for_training_and_never_claims_ready() {
        let fs = feature_set(None);
        let waiting = decide(&example(), Some(Some(&fs)));
        assert_eq!(
            (
                waiting.phase,
                waiting.ready.reason.as_str(),
                waiting.ready.status
            ),
            ("WaitingForData", "WaitingForFeatureSet", false)
        );
        let fs = feature_set(Some("sha256:ab"));
        let pending = decide(&example(), Some(Some(&fs)));
        assert_eq!(
            (pending.ready.reason.as_str(), pending.ready.status),
            ("AwaitingTraining", false)
        );
        assert!(
            pending.ready.message.contains("waiting for a version"),
            "{}",
            pending.ready.message
        );
    }

    #[test]
    fn drift_levels_use_psi_for_numbers_and_js_for_categories() {
        let policy: DriftPolicy = yaml_serde::from_str("{action: Rollback}").unwrap();
        assert_eq!(
            (policy.psi_warn, policy.psi_act, policy.js_act),
            (0.1, 0.25, 0.1)
        );
        let f = |feature: &str, metric: &'static str, value: f64| FeatureDrift {
            feature: feature.into(),
            metric,
            value,
            rows: 500.0,
        };
        assert_eq!(
            drift_level(&policy, &[f("a", "psi", 0.05), f("c", "js", 0.01)]).0,
            "Ok"
        );
        let warn = [f("a", "psi", 0.15), f("c", "js", 0.01)];
        let (level, worst) = drift_level(&policy, &warn);
        assert_eq!(
            (level, worst.map(|w| w.feature.as_str())),
            ("Warn", Some("a"))
        );
        // A JS divergence of 0.12 bits is past its act threshold (0.1) even though a PSI of
        // 0.2 is the larger number: each is judged against its own limits.
        let act = [f("a", "psi", 0.2), f("c", "js", 0.12)];
        let (level, worst) = drift_level(&policy, &act);
        assert_eq!(
            (level, worst.map(|w| w.feature.as_str())),
            ("Act", Some("c"))
        );
        assert_eq!(drift_level(&policy, &[]).0, "Ok");
    }

    #[test]
    fn training_follows_spec_changes_new_data_and_drift_requests() {
        let mut model = example();
        model.metadata.generation = Some(3);
        let latest = ModelVersion {
            version: "v2".into(),
            generation: Some(3),
            data_version: Some("sha256:aa".into()),
            ..Default::default()
        };
        assert!(
            training_needed(&model, None, false, "sha256:aa"),
            "nothing trained yet"
        );
        assert!(!training_needed(&model, Some(&latest), true, "sha256:aa"));
        assert!(
            training_needed(&model, Some(&latest), true, "sha256:bb"),
            "new data"
        );
        assert!(
            !training_needed(&model, Some(&latest), false, "sha256:bb"),
            "onNewData off"
        );
        model.metadata.generation = Some(4);
        assert!(
            training_needed(&model, Some(&latest), false, "sha256:aa"),
            "spec changed"
        );
        model.metadata.generation = Some(3);
        model.status = Some(leitwerk_crds::ModelStatus {
            drift: Some(ModelDriftStatus {
                retrain_requested: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            training_needed(&model, Some(&latest), false, "sha256:aa"),
            "drift asked for it"
        );
    }

    #[test]
    fn a_drift_rollback_serves_the_previous_version_and_records_why() {
        let v = |name: &str, state: &str| ModelVersion {
            version: name.into(),
            state: state.into(),
            artifact_url: Some(format!("file:///a/{name}.onnx")),
            ..Default::default()
        };
        let mut versions = vec![
            v("v1", "Retired"),
            v("v2", "Rejected"),
            v("v3", "Serving"),
            v("v4", "Candidate"),
        ];
        assert_eq!(roll_back(&mut versions, "PSI 0.9").as_deref(), Some("v1"));
        let states: Vec<&str> = versions.iter().map(|v| v.state.as_str()).collect();
        assert_eq!(
            states,
            vec!["Serving", "Rejected", "RolledBack", "Candidate"]
        );
        assert_eq!(versions[2].message.as_deref(), Some("PSI 0.9"));
        let mut only = vec![v("v1", "Serving")];
        assert_eq!(roll_back(&mut only, "x"), None);
        assert_eq!(only[0].state, "Serving", "nothing to go back to: unchanged");
    }

    #[test]
    fn bring_your_own_onnx_waits_for_serving() {
        let model: Model =
            yaml_serde::from_str(include_str!("../../../examples/creative-bandit/model.yaml"))
                .unwrap();
        assert_eq!(decide(&model, Some(None)).ready.reason, "AwaitingServing");
    }

    #[test]
    fn the_examples_are_valid_and_semantic_mistakes_name_their_fields() {
        assert_eq!(validate(&example().spec), Ok(()));
        let mut spec = example().spec;
        spec.task = Task::Regression;
        spec.training.get_or_insert_default().retrain = Some(leitwerk_crds::model::RetrainPolicy {
            on_new_data: false,
            schedule: Some("0 4 * *".into()),
        });
        let errors = validate(&spec).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.training.retrain.schedule",
                "spec.algorithm.logisticRegression"
            ]
        );
    }

    #[test]
    fn a_retrain_schedule_is_due_after_its_next_run_and_waits_until_then() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let last = at("2026-11-23T04:30:00Z");
        assert_eq!(
            next_run("0 4 * * *", last),
            Some(at("2026-11-24T04:00:00Z"))
        );
        let (due, wait) = schedule_state("0 4 * * *", last, at("2026-11-24T03:00:00Z"));
        assert_eq!(
            (due, wait),
            (false, Some(std::time::Duration::from_secs(3600)))
        );
        assert_eq!(
            schedule_state("0 4 * * *", last, at("2026-11-24T04:00:01Z")),
            (true, None)
        );
        assert_eq!(next_run("not a schedule", last), None);
    }

    #[test]
    fn versions_meeting_min_metrics_are_promoted_when_nothing_serves_and_history_is_bounded() {
        let mut model = example();
        model.spec.version_history_limit = 2;
        let version = |v: &str, state: &str| ModelVersion {
            version: v.into(),
            state: state.into(),
            ..Default::default()
        };
        model.status = Some(leitwerk_crds::ModelStatus {
            versions: vec![version("v1", "Rejected")],
            ..Default::default()
        });
        let observed = Observed {
            finished: vec![version("v2", "Candidate"), version("v3", "Failed")],
            ..Default::default()
        };
        let next = next_versions(&model, &observed);
        let states: Vec<(&str, &str)> = next
            .iter()
            .map(|v| (v.version.as_str(), v.state.as_str()))
            .collect();
        assert_eq!(
            states,
            vec![("v2", "Serving"), ("v3", "Failed")],
            "v1 fell out of the bounded history"
        );
        let mut metrics = BTreeMap::from([("auc".to_string(), 0.7)]);
        assert_eq!(
            unmet(&model.spec, &metrics).as_deref(),
            Some("auc 0.7000 is below the minimum 0.75")
        );
        metrics.insert("auc".into(), 0.8);
        assert_eq!(unmet(&model.spec, &metrics), None);
    }

    #[test]
    fn service_account_is_owned_token_less_and_skipped_when_unchanged() {
        let model = example();
        let sa = build_service_account(&model).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("lead-scoring-model"));
        assert_eq!(sa.automount_service_account_token, Some(false));
        let owner = &sa.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Model", Some(true))
        );
        assert!(service_account_matches(Some(&sa), &sa));
        assert!(!service_account_matches(None, &sa));
        let mut drifted = sa.clone();
        drifted.automount_service_account_token = Some(true);
        assert!(!service_account_matches(Some(&drifted), &sa));
        let mut named = example();
        named.spec.training.get_or_insert_default().scheduling =
            Some(leitwerk_crds::common::Scheduling {
                service_account_name: Some("mine".into()),
                ..Default::default()
            });
        assert!(
            build_service_account(&named).is_none(),
            "a user-named account is used as is"
        );
    }
}
