//! Batch scoring (`spec.batchScoring`): at each due time of its schedule a Job scores the
//! FeatureSet's newest snapshot (each entity's newest row) or the table the spec names with the
//! serving version, and writes one file of scores, versions and top attributions. Due times
//! missed while the operator was down start one run; a due time that finds the previous run
//! still going waits for it; one that finds nothing serving (or no snapshot) is skipped with
//! the reason in the status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::command::{JobArgs, JobCommand, LifetimeArgs, ScoreArgs};
use leitwerk_crds::labels::BATCH_SCORING;
use leitwerk_crds::model::{
    BatchScoring, BatchScoringStatus, ModelPhase, ScheduleStatus, Task, VersionState,
};
use leitwerk_crds::summary::ScoreSummary;
use leitwerk_crds::{FeatureSet, Model, versions::Versions};

use super::{Error, MODEL_LABEL};
use crate::config::OperatorConfig;
use crate::context::Context;
use crate::jobs::{JobOutcome, list_owned, outcome};
use crate::reconcile::Outcome;
use crate::schedule::{self, SCHEDULED_FOR};
use crate::status::Desired;
use crate::workloads::spec_env;

/// What the reconcile reads about a Model's batch scoring before it plans.
#[derive(Debug, Clone, Default)]
pub struct BatchRead {
    /// Its trusted batch scoring Jobs.
    pub jobs: Vec<Job>,
    /// The newest of them and what it shows.
    pub newest: Option<(Job, JobOutcome<ScoreSummary>)>,
}

/// What batch scoring asks for now.
#[derive(Debug, Clone, Default)]
pub struct BatchPlan {
    /// The Job to create.
    pub start: Option<Job>,
    /// The status to record (absent without `spec.batchScoring`).
    pub status: Option<BatchScoringStatus>,
    /// Time until the next due time.
    pub next_in: Option<Duration>,
}

/// The label selector of a Model's batch scoring Jobs.
pub fn batch_selector(model: &Model) -> String {
    format!("{MODEL_LABEL}={},{BATCH_SCORING}=true", model.name_any())
}

fn due_of(job: &Job) -> Option<String> {
    job.annotations().get(SCHEDULED_FOR).cloned()
}

/// Reads a Model's batch scoring Jobs and the outcome of the newest. Writes nothing.
pub(super) async fn read_batch(ctx: &Context, model: &Model) -> Result<BatchRead, Error> {
    if model.spec.batch_scoring.is_none() {
        return Ok(BatchRead::default());
    }
    let owned = list_owned(ctx, model, &batch_selector(model), false, "Score").await?;
    let newest = owned.trusted.iter().max_by_key(|j| due_of(j)).cloned();
    let newest = match newest {
        Some(job) => {
            let seen = outcome(ctx, &job).await?;
            Some((job, seen))
        }
        None => None,
    };
    Ok(BatchRead {
        jobs: owned.trusted,
        newest,
    })
}

/// The batch scoring Job of one due time (pure).
pub fn build_score_job(
    model: &Model,
    config: &OperatorConfig,
    spec: &BatchScoring,
    version: (&str, &str),
    snapshot: Option<&str>,
    due: DateTime<Utc>,
) -> Job {
    let (name, url) = version;
    let job_args = JobArgs::new(
        &model.namespace().unwrap_or_default(),
        &model.name_any(),
        &config.artifact_store,
    );
    let args = if model.spec.task == Task::CustomerLifetimeValue {
        JobCommand::LifetimeValue {
            job: job_args,
            lifetime: LifetimeArgs {
                output: format!(
                    "{}/{}-{}.{}",
                    spec.output.trim_end_matches('/'),
                    model.name_any(),
                    due.format("%Y%m%dT%H%MZ"),
                    spec.format.extension()
                ),
                not_after: due.format("%Y-%m-%d").to_string(),
            },
        }
    } else {
        score_command(model, spec, job_args, (name, url), snapshot, due)
    }
    .to_args();
    let mut job = super::model_job(
        model,
        config,
        &format!("score-{}", due.format("%Y%m%d-%H%M")),
        (BATCH_SCORING, "true"),
        spec_env(&model.spec),
        args,
    );
    job.annotations_mut()
        .insert(SCHEDULED_FOR.to_string(), schedule::format(due));
    job
}

/// The `score` command of one due time.
fn score_command(
    model: &Model,
    spec: &BatchScoring,
    job: JobArgs,
    version: (&str, &str),
    snapshot: Option<&str>,
    due: DateTime<Utc>,
) -> JobCommand {
    let (name, url) = version;
    let output = format!(
        "{}/{}-{name}-{}.{}",
        spec.output.trim_end_matches('/'),
        model.name_any(),
        due.format("%Y%m%dT%H%MZ"),
        spec.format.extension()
    );
    JobCommand::Score {
        job,
        score: ScoreArgs {
            model: url.into(),
            version: name.into(),
            snapshot: spec
                .source
                .is_none()
                .then(|| snapshot.map(str::to_string))
                .flatten(),
            source: spec.source.clone(),
            entity_column: spec.entity_column.clone(),
            output,
            attributions: u8::try_from(spec.attributions.clamp(0, 10)).unwrap_or(3),
            // The trainer image sets ORT_DYLIB_PATH.
            onnxruntime: None,
        },
    }
}

/// Plans batch scoring from what was read (pure): the newest run into the status, and the Job
/// to start when a due time is owed one, something serves, there is something to score and
/// the previous run has finished.
pub fn plan_batch(
    model: &Model,
    fs: Option<&FeatureSet>,
    versions: &Versions,
    read: BatchRead,
    config: &OperatorConfig,
    now: DateTime<Utc>,
) -> BatchPlan {
    let Some(spec) = &model.spec.batch_scoring else {
        return BatchPlan::default();
    };
    let mut status = model
        .status
        .as_ref()
        .and_then(|s| s.batch_scoring.clone())
        .unwrap_or_default();
    let recorded = ScheduleStatus {
        last_run: status.last_run.clone(),
        next_run: status.next_run.clone(),
        last_job: status.last_job.clone(),
    };
    let Some(standing) = schedule::standing(
        &spec.schedule,
        Some(&recorded),
        &read.jobs,
        schedule::created(model),
        now,
    ) else {
        return BatchPlan::default();
    };
    status.last_run = standing.status.last_run;
    status.next_run = standing.status.next_run;
    status.last_job = standing.status.last_job;
    let mut running = false;
    if let Some((job, seen)) = &read.newest
        && status.last_job.as_deref() == Some(job.name_any().as_str())
    {
        record(&mut status, seen);
        running = seen.is_running();
    }
    let mut plan = BatchPlan {
        start: None,
        status: None,
        next_in: standing.next_in,
    };
    if let Some(due) = standing.due
        && !running
    {
        let serving = versions.iter().find(|v| v.state == VersionState::Serving);
        let snapshot = fs
            .and_then(|f| f.status.as_ref())
            .and_then(|s| s.snapshot.clone());
        let skip = |why: String| BatchScoringStatus {
            last_run: Some(schedule::format(due)),
            next_run: status.next_run.clone(),
            state: Some("Waiting".into()),
            message: Some(why),
            ..Default::default()
        };
        let lifetime = model.spec.task == Task::CustomerLifetimeValue;
        status = match (serving, &snapshot, &spec.source) {
            _ if lifetime => {
                let job = build_score_job(model, config, spec, ("", ""), None, due);
                // The last good run's file and fit stay until this one replaces them.
                let started = BatchScoringStatus {
                    last_run: Some(schedule::format(due)),
                    last_job: Some(job.name_any()),
                    state: Some("Running".into()),
                    message: None,
                    ..status.clone()
                };
                plan.start = Some(job);
                started
            }
            (None, _, _) => skip(format!(
                "the run due at {} was skipped: no version serves yet",
                schedule::format(due)
            )),
            (Some(_), None, None) => skip(format!(
                "the run due at {} was skipped: the FeatureSet has no snapshot yet",
                schedule::format(due)
            )),
            (Some(v), _, _) => {
                let url = match (&v.artifact_url, &v.artifact_digest) {
                    (Some(u), Some(d)) => format!("{u}#{d}"),
                    (Some(u), None) => u.clone(),
                    _ => String::new(),
                };
                let job = build_score_job(
                    model,
                    config,
                    spec,
                    (&v.version, &url),
                    snapshot.as_deref(),
                    due,
                );
                // The last good run's file stays until this one replaces it.
                let started = BatchScoringStatus {
                    last_run: Some(schedule::format(due)),
                    last_job: Some(job.name_any()),
                    state: Some("Running".into()),
                    version: Some(v.version.clone()),
                    message: None,
                    ..status.clone()
                };
                plan.start = Some(job);
                started
            }
        };
    }
    plan.status = Some(status);
    plan
}

/// Writes what the newest run shows into the status.
fn record(status: &mut BatchScoringStatus, seen: &JobOutcome<ScoreSummary>) {
    match seen {
        JobOutcome::Running { .. } => status.state = Some("Running".into()),
        JobOutcome::Succeeded { summary, finished } => {
            status.state = Some("Succeeded".into());
            status.version = Some(summary.version.clone()).filter(|v| !v.is_empty());
            status.fitted = summary.fitted.clone();
            status.rows = i64::try_from(summary.rows).ok();
            status.output_url = Some(summary.output_url.clone());
            status.output_digest = Some(summary.digest.clone());
            status.finished_at = finished.clone();
            status.message = None;
        }
        JobOutcome::Failed { reason } => {
            status.state = Some("Failed".into());
            status.message = Some(crate::reconcile::truncate(reason, 512));
            status.rows = None;
            status.output_url = None;
            status.output_digest = None;
        }
    }
}

/// The phase and `Ready` of a CustomerLifetimeValue Model, which serves nothing: Ready once a
/// run has written its file (with the fit in the message), not Ready before the first one or
/// after a failed one (with the trainer's reason).
pub fn decide_lifetime(model: &Model, plan: &BatchPlan) -> Outcome<ModelPhase> {
    let status = plan.status.clone().unwrap_or_default();
    let schedule = model
        .spec
        .batch_scoring
        .as_ref()
        .map(|b| b.schedule.clone())
        .unwrap_or_default();
    let next = status.next_run.as_deref().unwrap_or("unknown");
    let job = status.last_job.as_deref().unwrap_or("");
    let running = status.state.as_deref() == Some("Running");
    let going = if running {
        format!("; run {job} is going")
    } else {
        String::new()
    };
    let outcome = match (status.state.as_deref(), &status.fitted, &status.output_url) {
        (Some("Failed"), _, _) => Outcome::new(
            ModelPhase::Failed,
            Desired::failed(
                crate::status::READY,
                "RunFailed",
                format!(
                    "the lifetime value run {job} failed: {}; the next run is due {next}",
                    status.message.as_deref().unwrap_or("no reason given")
                ),
            ),
        ),
        (_, Some(f), Some(file)) => Outcome::new(
            ModelPhase::Scheduled,
            Desired::ok(
                crate::status::READY,
                "Scheduled",
                format!(
                    "{} customers scored into {file} (total CLV {:.2}; BG/NBD r {:.4}, α {:.4}, a {:.4}, b {:.4}; Gamma-Gamma p {:.4}, q {:.4}, v {:.4}); next run due {next}{going}",
                    status.rows.unwrap_or(0),
                    f.total_clv,
                    f.r,
                    f.alpha,
                    f.a,
                    f.b,
                    f.p,
                    f.q,
                    f.v
                ),
            ),
        ),
        _ => Outcome::new(
            ModelPhase::Scheduled,
            Desired::not(
                crate::status::READY,
                "AwaitingFirstRun",
                format!(
                    "fits and scores on the schedule {schedule:?}; no run has written its file yet; next run due {next}{going}"
                ),
            ),
        ),
    };
    if running {
        outcome.recheck_after(Duration::from_secs(10))
    } else {
        outcome
    }
}
