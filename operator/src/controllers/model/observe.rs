//! Observing a Model's training Jobs: finished versions, the Job in progress, and whether
//! a new version must be trained (new spec, new data, the schedule, a drift request).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::{
    FeatureSet, Model, ModelSpec,
    metrics::Metric,
    model::{ModelVersion, VersionState, Versions},
    summary::TrainSummary,
    versions::{history_limit, version_number},
};

use super::{
    DATA_VERSION_ANNOTATION, Error, GENERATION_ANNOTATION, MODEL_LABEL, Observed, VERSION_LABEL,
    build_training_job,
};
use crate::{
    config::OperatorConfig,
    context::Context,
    jobs::{JobOutcome, list_owned, outcome_in, outcomes},
    reconcile::{self, Notice},
    schedule,
};

/// Whether a version's metrics meet `minMetrics` (losses and errors are maxima, everything
/// else minima: [`Metric::lower_is_better`]). Returns the first unmet requirement: the
/// metric and why.
pub fn unmet(spec: &ModelSpec, metrics: &BTreeMap<String, f64>) -> Option<(String, String)> {
    for (name, limit) in spec.min_metrics.iter().flatten() {
        let lower_is_better = name.parse::<Metric>().is_ok_and(|m| m.lower_is_better());
        let why = match metrics.get(name) {
            None if name.starts_with("maxSegment") => format!(
                "metric {name} was not measured: spec.evaluation.segments must name a column with at least two segments of spec.evaluation.minSegmentRows rows and both labels"
            ),
            None => format!("metric {name} was not measured"),
            Some(v) if lower_is_better && v > limit => {
                format!("{name} {v:.4} is above the maximum {limit}")
            }
            Some(v) if !lower_is_better && v < limit => {
                format!("{name} {v:.4} is below the minimum {limit}")
            }
            _ => continue,
        };
        return Some((name.clone(), why));
    }
    None
}

/// What the reconcile reads about a Model's training before it plans.
#[derive(Debug, Clone, Default)]
pub struct TrainingRead {
    /// Its trusted training Jobs.
    pub jobs: Vec<Job>,
    /// The outcome of each Job whose version the status does not record yet.
    pub outcomes: BTreeMap<String, JobOutcome<TrainSummary>>,
    /// Warnings naming Jobs that carry its labels without being its own.
    pub foreign: Vec<Notice>,
}

/// Reads a Model's training Jobs and the outcomes of those not recorded yet. Writes nothing.
pub(super) async fn read_training(ctx: &Context, model: &Model) -> Result<TrainingRead, Error> {
    if model.spec.onnx.is_some()
        || model.spec.task == leitwerk_crds::model::Task::CustomerLifetimeValue
    {
        return Ok(TrainingRead::default());
    }
    // Batch scoring Jobs carry the Model's label too; they are read in `batch`.
    let selector = format!(
        "{MODEL_LABEL}={},!{}",
        model.name_any(),
        leitwerk_crds::labels::BATCH_SCORING
    );
    let owned = list_owned(ctx, model, &selector, false, "Train").await?;
    let status = model.status.clone().unwrap_or_default();
    let open: Vec<&Job> = owned
        .trusted
        .iter()
        .filter(|job| {
            job.labels()
                .get(VERSION_LABEL)
                .is_some_and(|v| status.versions.named(v).is_none())
        })
        .collect();
    let outcomes = outcomes(ctx, open).await?;
    Ok(TrainingRead {
        jobs: owned.trusted,
        outcomes,
        foreign: owned.foreign,
    })
}

/// Plans a Model's training from what was read (pure): finished Jobs into versions, the Job in
/// progress, where the schedule stands, and the training Job to start (`Observed::start`,
/// created by the reconcile) when the spec or the data is new, the schedule is due or a drift
/// check asked for one, and none runs.
///
/// Long on purpose: bring-your-own versions, finished Jobs, the schedule and the start of a
/// new Job all read the same Job list and version numbering; split apart they would pass
/// half-built state around.
pub fn plan_training(
    model: &Model,
    fs: Option<&FeatureSet>,
    read: TrainingRead,
    config: &OperatorConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Observed {
    let mut observed = Observed {
        events: read.foreign,
        ..Default::default()
    };
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
            observed.finished.push(ModelVersion {
                version: format!("v{}", status.versions.highest() + 1),
                state: VersionState::Candidate,
                artifact_digest: digest,
                data_version: Some("byo".into()),
                artifact_url: Some(onnx.url.clone()),
                generation: model.metadata.generation,
                trained_at: Some(now.to_rfc3339()),
                ..Default::default()
            });
        }
        return observed;
    }
    let jobs = read.jobs;
    let mut highest = status.versions.highest();
    for job in &jobs {
        let Some(version) = job.labels().get(VERSION_LABEL).cloned() else {
            continue;
        };
        highest = highest.max(version_number(&version));
        if status.versions.named(&version).is_some() {
            continue;
        }
        let v = ModelVersion {
            version: version.clone(),
            generation: job
                .annotations()
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok()),
            data_version: job.annotations().get(DATA_VERSION_ANNOTATION).cloned(),
            ..Default::default()
        };
        match outcome_in(&read.outcomes, job) {
            JobOutcome::Running {
                unschedulable,
                progress,
            } => {
                observed.active = Some((job.name_any(), unschedulable));
                observed.progress = progress;
            }
            done => {
                if let JobOutcome::Succeeded { summary, .. } = &done
                    && let Some(t) = &summary.tuning
                {
                    observed.tuning = Some(t.clone());
                }
                observed
                    .finished
                    .push(trained_version(&model.spec, v, done));
            }
        }
    }
    observed
        .finished
        .sort_by_key(|v| version_number(&v.version));

    // The retraining schedule: the due time owed a training, if any, and the next one.
    let mut due = None;
    if let Some(cron) = schedule::schedule_of(model) {
        let created = schedule::created(model);
        if let Some(s) = schedule::standing(cron, status.schedule.as_ref(), &jobs, created, now) {
            due = s.due;
            observed.next_scheduled = s.next_in;
            observed.schedule = Some(s.status);
        }
    }

    // Start training when nothing runs and the data or the spec is new, or the schedule is
    // due. A due time that finds a training running waits for it to finish.
    let Some(fs) = fs else { return observed };
    let fs_status = fs.status.clone().unwrap_or_default();
    let (Some(data_version), Some(snapshot)) = (
        fs_status.current_version.clone(),
        fs_status.snapshot.clone(),
    ) else {
        return observed;
    };
    if observed.active.is_some() {
        return observed;
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
    if due.is_some() || training_needed(model, latest, on_new_data, &data_version) {
        let version = format!("v{}", highest + 1);
        let mut job = build_training_job(model, config, &version, &snapshot, &data_version);
        if let Some(at) = due {
            let at = schedule::format(at);
            job.annotations_mut()
                .insert(schedule::SCHEDULED_FOR.to_string(), at.clone());
            if let Some(s) = observed.schedule.as_mut() {
                s.last_run = Some(at);
                s.last_job = Some(job.name_any());
            }
        }
        observed.started = Some(job.name_any());
        observed.start = Some(job);
    }
    observed
}

/// The version a finished training Job makes: a Candidate when its metrics meet
/// `minMetrics`, Rejected when they do not, Failed when the Job failed. Pure.
pub fn trained_version(
    spec: &ModelSpec,
    mut v: ModelVersion,
    outcome: JobOutcome<TrainSummary>,
) -> ModelVersion {
    match outcome {
        JobOutcome::Succeeded { summary, finished } => {
            v.artifact_digest = Some(summary.digest);
            v.artifact_url = Some(summary.model_url);
            v.data_version = Some(summary.data_version);
            v.metrics = summary
                .metrics
                .into_iter()
                .map(|(k, x)| (k, (x * 1e4).round() / 1e4))
                .collect();
            v.trained_at = finished;
            v.importance = summary.importance.clone();
            v.segments = summary.segments.clone();
            match unmet(spec, &v.metrics) {
                None => v.state = VersionState::Candidate,
                Some((metric, why)) => {
                    v.state = VersionState::Rejected;
                    // The trainer's line on what stands behind the figure (which segments).
                    let why = match summary.explanations.get(&metric) {
                        Some(detail) => format!("{why}: {detail}"),
                        None => why,
                    };
                    v.message = Some(reconcile::truncate(&why, 512));
                }
            }
        }
        JobOutcome::Failed { reason } => {
            v.state = VersionState::Failed;
            v.message = Some(reconcile::truncate(&reason, 512));
        }
        JobOutcome::Running { .. } => {}
    }
    v
}

/// Whether a new version must be trained: none yet, the spec changed since the newest one, a
/// new snapshot arrived (with `retrain.onNewData`), a drift check asked for it, or someone
/// did (`leitwerk.dev/control: retrain`).
pub fn training_needed(
    model: &Model,
    latest: Option<&ModelVersion>,
    on_new_data: bool,
    data_version: &str,
) -> bool {
    let status = model.status.clone().unwrap_or_default();
    let drift_retrain = status.drift.as_ref().is_some_and(|d| d.retrain_requested);
    drift_retrain
        || super::steer::retrain_asked(model)
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
pub fn next_versions(model: &Model, observed: &Observed) -> Versions {
    let mut versions = model.status.clone().unwrap_or_default().versions;
    versions.record(observed.finished.iter().cloned());
    versions.serve_newest_candidate_if_none_serves();
    versions.bound(history_limit(model.spec.version_history_limit));
    versions
}
