//! Observing a RagIndex's indexing Jobs: the build in progress, finished builds into versions
//! (through the evaluation gate), the start of a build when one is due, and the bound on the
//! versions kept.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::{
    RagIndex,
    model::ScheduleStatus,
    rag_index::{BuildState, IndexBuild, IndexVersion},
    summary::IndexSummary,
    versions::Versions,
};

use super::{
    BUILD_LABEL, BuildInputs, Error, GENERATION_ANNOTATION, RAG_INDEX_LABEL, SOURCES_ANNOTATION,
    build_index_job, record_version,
};
use crate::{
    config::OperatorConfig,
    context::Context,
    jobs::{JobOutcome, list_owned, outcome_in, outcomes},
    reconcile::{self, Notice},
    schedule,
};

/// What the cluster shows about a RagIndex's builds, and what this reconcile changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Whether the builds were observed (the fields below replace those in status).
    pub recorded: bool,
    /// The versions after this reconcile.
    pub versions: Versions<IndexVersion>,
    /// The last build.
    pub last_build: Option<IndexBuild>,
    /// When the sources were last read into a version.
    pub last_indexed: Option<String>,
    /// The indexing Job in progress, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// What the build in progress last reported.
    pub progress: Option<leitwerk_crds::progress::Progress>,
    /// The indexing Job this reconcile starts (its name).
    pub started: Option<String>,
    /// The indexing Job to create: decided here, created by the reconcile in one place with
    /// the other children, so that observing writes nothing.
    pub start: Option<Job>,
    /// Available replicas of the retrieval Deployment, and the replicas asked for.
    pub serving_replicas: Option<(i32, i32)>,
    /// Time until the next scheduled refresh.
    pub next_scheduled: Option<Duration>,
    /// Where `refreshSchedule` stands.
    pub schedule: Option<ScheduleStatus>,
    /// Events to publish.
    pub events: Vec<Notice>,
}

impl Observed {
    /// The serving version.
    pub fn serving(&self) -> Option<IndexVersion> {
        self.versions.serving().cloned()
    }

    /// Adds an Event of the `Index` action.
    pub(super) fn notice(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(Notice::of(warning, "Index", reason, note));
    }
}

fn build_number(job: &Job) -> Option<i64> {
    job.labels().get(BUILD_LABEL)?.parse().ok()
}

/// What the reconcile reads about a RagIndex's builds before it plans.
#[derive(Debug, Clone, Default)]
pub struct BuildsRead {
    /// Its trusted indexing Jobs (those with a build number).
    pub jobs: Vec<Job>,
    /// The outcome of each build the status does not record as finished.
    pub outcomes: BTreeMap<String, JobOutcome<IndexSummary>>,
    /// Warnings naming Jobs that carry its labels without being its own.
    pub foreign: Vec<Notice>,
}

/// The builds the status does not record as finished: newer than the last one, or the last
/// one while it runs.
fn open_builds<'a>(index: &RagIndex, jobs: &'a [Job]) -> Vec<&'a Job> {
    let last = index.status.as_ref().and_then(|s| s.last_build.as_ref());
    let recorded = last.map_or(0, |b| b.number);
    let pending = last
        .filter(|b| b.state == BuildState::Running)
        .map(|b| b.number);
    let mut open: Vec<&Job> = jobs
        .iter()
        .filter(|j| build_number(j).is_some_and(|n| n > recorded || Some(n) == pending))
        .collect();
    open.sort_by_key(|j| build_number(j));
    open
}

/// Reads the indexing Jobs of a RagIndex and the outcomes of the open builds. Writes nothing.
pub(super) async fn read_builds(ctx: &Context, index: &RagIndex) -> Result<BuildsRead, Error> {
    let selector = format!("{RAG_INDEX_LABEL}={}", index.name_any());
    let owned = list_owned(ctx, index, &selector, false, "Index").await?;
    let jobs: Vec<Job> = owned
        .trusted
        .into_iter()
        .filter(|j| build_number(j).is_some())
        .collect();
    let outcomes = outcomes(ctx, open_builds(index, &jobs)).await?;
    Ok(BuildsRead {
        jobs,
        outcomes,
        foreign: owned.foreign,
    })
}

/// Plans a RagIndex's builds from what was read (pure): finished builds become versions
/// through the evaluation gate, and the next build (`Observed::start`, created by the
/// reconcile) is decided when the spec, the ConfigMap sources or the schedule ask for one and
/// none runs.
pub fn plan_builds(
    index: &RagIndex,
    config: &OperatorConfig,
    sources_digest: &str,
    read: BuildsRead,
    now: chrono::DateTime<chrono::Utc>,
) -> Observed {
    let status = index.status.clone().unwrap_or_default();
    let mut observed = Observed {
        recorded: true,
        versions: status.versions.clone(),
        last_build: status.last_build.clone(),
        last_indexed: status.last_indexed.clone(),
        schedule: status.schedule.clone(),
        events: read.foreign,
        ..Default::default()
    };
    let jobs = read.jobs;
    for job in open_builds(index, &jobs) {
        let build = IndexBuild {
            number: build_number(job).unwrap_or(0),
            job: job.name_any(),
            generation: job
                .annotations()
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok()),
            sources_digest: job.annotations().get(SOURCES_ANNOTATION).cloned(),
            ..Default::default()
        };
        let outcome = outcome_in(&read.outcomes, job);
        record_build(index, &mut observed, build, outcome, now);
    }

    // The refresh schedule: the due time owed a build, if any, and the next one.
    let mut due = None;
    if let Some(cron) = index.spec.refresh_schedule.as_deref() {
        let created = schedule::created_at(&index.metadata);
        if let Some(s) = schedule::standing(cron, status.schedule.as_ref(), &jobs, created, now) {
            due = s.due;
            observed.next_scheduled = s.next_in;
            observed.schedule = Some(s.status);
        }
    } else {
        observed.schedule = None;
    }

    if observed.active.is_none()
        && build_due(
            index,
            observed.last_build.as_ref(),
            sources_digest,
            due.is_some(),
        )
    {
        let highest = jobs
            .iter()
            .filter_map(build_number)
            .chain(observed.last_build.as_ref().map(|b| b.number))
            .max()
            .unwrap_or(0);
        // The files the versions keep once this build's version joins them; the build removes
        // the others, and builds incrementally from the newest kept one.
        let mut kept = observed.versions.clone();
        kept.bound(history_limit(index).saturating_sub(1));
        let inputs = BuildInputs {
            number: highest + 1,
            sources_digest: sources_digest.to_string(),
            previous: kept.last().map(|v| v.url.clone()),
            serving: observed
                .serving()
                .map(|v| (v.url.clone(), v.search_mode.unwrap_or_default())),
            keep: kept.iter().map(|v| v.url.clone()).collect(),
            scheduled_for: due.map(schedule::format),
        };
        let job = build_index_job(index, config, &inputs);
        if let (Some(at), Some(s)) = (&inputs.scheduled_for, observed.schedule.as_mut()) {
            s.last_run = Some(at.clone());
            s.last_job = Some(job.name_any());
        }
        observed.notice(
            false,
            "BuildStarted",
            format!(
                "build {} (Job {}) reads the sources{}",
                inputs.number,
                job.name_any(),
                if due.is_some() {
                    " on the refresh schedule"
                } else {
                    ""
                }
            ),
        );
        observed.started = Some(job.name_any());
        observed.last_build = Some(IndexBuild {
            number: inputs.number,
            job: job.name_any(),
            state: BuildState::Running,
            generation: index.metadata.generation,
            sources_digest: Some(inputs.sources_digest),
            ..Default::default()
        });
        observed.start = Some(job);
    }
    observed
}

/// Records what a build's Job shows: still running, a version through the gate, or a
/// failure that leaves the serving version serving.
pub fn record_build(
    index: &RagIndex,
    observed: &mut Observed,
    mut build: IndexBuild,
    outcome: JobOutcome<IndexSummary>,
    now: chrono::DateTime<chrono::Utc>,
) {
    match outcome {
        JobOutcome::Running {
            unschedulable,
            progress,
        } => {
            observed.active = Some((build.job.clone(), unschedulable));
            observed.progress = progress;
        }
        JobOutcome::Succeeded { summary, finished } => {
            // When the Job does not say when it finished, it finished by the time it was seen.
            let finished = finished.or_else(|| Some(now.to_rfc3339()));
            record_version(index, observed, &mut build, summary, finished);
        }
        JobOutcome::Failed { reason } => {
            build.state = BuildState::Failed;
            build.message = Some(reconcile::truncate(&reason, 512));
            let stays = match observed.serving() {
                Some(v) => format!("version {} keeps serving", v.version),
                None => "nothing serves yet".into(),
            };
            observed.notice(
                true,
                "BuildFailed",
                format!(
                    "build {} (Job {}) failed: {}; {stays}",
                    build.number,
                    build.job,
                    build.message.clone().unwrap_or_default()
                ),
            );
        }
    }
    observed.last_build = Some(build);
}

/// Whether a new build is due: none yet, the spec or the ConfigMap sources changed since the
/// last build, or the refresh schedule is due. A failed build is not retried until one of
/// those changes (the Job's own retries are behind it).
pub fn build_due(
    index: &RagIndex,
    last: Option<&IndexBuild>,
    sources_digest: &str,
    scheduled: bool,
) -> bool {
    match last {
        None => true,
        Some(b) => {
            scheduled
                || b.generation != index.metadata.generation
                || b.sources_digest.as_deref() != Some(sources_digest)
        }
    }
}

/// How many versions a RagIndex keeps.
pub fn history_limit(index: &RagIndex) -> usize {
    leitwerk_crds::versions::history_limit(index.spec.version_history_limit)
}

pub(super) fn round_quality(
    mut q: leitwerk_crds::summary::RetrievalQuality,
) -> leitwerk_crds::summary::RetrievalQuality {
    let r = |x: f64| (x * 1e4).round() / 1e4;
    q.recall_at_k = r(q.recall_at_k);
    q.mrr = r(q.mrr);
    q.ndcg_at_k = r(q.ndcg_at_k);
    q
}
