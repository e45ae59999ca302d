//! Observing a RagIndex's indexing Jobs: the build in progress, finished builds into versions
//! (through the evaluation gate), the start of a build when one is due, and the bound on the
//! versions kept.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::{
    RagIndex,
    model::ScheduleStatus,
    rag_index::{BuildState, IndexBuild, IndexVersion, IndexVersionState, SearchMode, admit},
    summary::{IndexSummary, RetrievalQuality},
    versions::Versions,
};

use super::{
    BUILD_LABEL, BuildInputs, Error, GENERATION_ANNOTATION, RAG_INDEX_LABEL, SOURCES_ANNOTATION,
    build_index_job,
};
use crate::{
    config::OperatorConfig,
    context::Context,
    jobs::{JobOutcome, list_owned, outcomes},
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

    fn notice(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(if warning {
            Notice::warning("Index", reason, note)
        } else {
            Notice::normal("Index", reason, note)
        });
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
        let outcome = read
            .outcomes
            .get(&job.name_any())
            .cloned()
            .unwrap_or(JobOutcome::Running {
                unschedulable: None,
            });
        record_build(index, &mut observed, build, outcome, now);
    }

    // The refresh schedule: the due time owed a build, if any, and the next one.
    let mut due = None;
    if let Some(cron) = index.spec.refresh_schedule.as_deref() {
        let last = schedule::last_run(status.schedule.as_ref(), &jobs);
        let since = last
            .as_ref()
            .map(|(t, _)| *t)
            .or_else(|| schedule::created_at(&index.metadata))
            .unwrap_or(now);
        if let Some(check) = schedule::check(cron, since, now) {
            due = check.due;
            observed.next_scheduled = check.next.and_then(|n| (n - now).to_std().ok());
            observed.schedule = Some(ScheduleStatus {
                last_run: last.as_ref().map(|(t, _)| schedule::format(*t)),
                next_run: check.next.map(schedule::format),
                last_job: last.and_then(|(_, j)| j),
            });
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
        JobOutcome::Running { unschedulable } => {
            observed.active = Some((build.job.clone(), unschedulable));
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

/// Records a finished build's version: the same digest as a known version changes nothing; a
/// new version serves when it passes the evaluation gate and is refused (the serving version
/// stays) when it does not. The versions kept are bounded by `versionHistoryLimit`.
pub fn record_version(
    index: &RagIndex,
    observed: &mut Observed,
    build: &mut IndexBuild,
    summary: IndexSummary,
    finished: Option<String>,
) {
    build.state = BuildState::Succeeded;
    build.version = Some(summary.version.clone());
    build.added = Some(summary.added);
    build.changed = Some(summary.changed);
    build.removed = Some(summary.removed);
    build.unchanged = Some(summary.unchanged);
    build.embedded = Some(summary.embedded);
    observed.last_indexed.clone_from(&finished);
    if let Some(known) = observed
        .versions
        .iter_mut()
        .find(|v| v.digest == summary.digest)
    {
        // The same file, measured again: a changed labelled set or search mode shows in the
        // serving version's figures and in the mode its Deployment serves.
        if known.state == IndexVersionState::Serving && summary.quality.is_some() {
            known.quality = summary.quality.map(round_quality);
            known.search_mode = Some(summary.search_mode);
            known.quality_by_mode = rounded_by_mode(&summary);
        }
        let note = format!(
            "build {} found the sources unchanged: version {} ({})",
            build.number, known.version, known.state
        );
        observed.notice(false, "Unchanged", note);
        return;
    }
    let serving = observed.serving();
    let gate = match &index.spec.evaluation {
        None => Ok(()),
        // The serving version as the build measured it again on the same labelled set (a
        // summary of an older trainer has none: then its recorded figure).
        Some(e) => match &summary.quality {
            Some(q) => admit(
                q,
                summary
                    .serving_quality
                    .as_ref()
                    .or_else(|| serving.as_ref().and_then(|s| s.quality.as_ref())),
                e.min_recall,
                e.tolerance,
            ),
            None => Err("the build measured no quality on the labelled set".to_string()),
        },
    };
    let quality = summary
        .quality
        .as_ref()
        .map(|q| {
            let modes: Vec<String> = summary
                .quality_by_mode
                .iter()
                .map(|(m, q)| format!("{m} {:.3}", q.recall_at_k))
                .collect();
            let modes = match modes.is_empty() {
                true => String::new(),
                false => format!(" (measured {})", modes.join(", ")),
            };
            format!(
                ", {} search, recall@{} {:.3}, nDCG@{} {:.3}{modes}",
                summary.search_mode, q.k, q.recall_at_k, q.k, q.ndcg_at_k
            )
        })
        .unwrap_or_default();
    let summary_findings = (summary.personal_data, summary.injection);
    let mut version = IndexVersion {
        version: summary.version.clone(),
        // Joins the history out of service; promoted there below when it passes the gate.
        state: IndexVersionState::Retired,
        digest: summary.digest.clone(),
        url: summary.url.clone(),
        build: build.number,
        documents: summary.documents,
        chunks: summary.chunks,
        quality: summary.quality.map(round_quality),
        search_mode: Some(summary.search_mode),
        quality_by_mode: rounded_by_mode(&summary),
        model: Some(summary.model.clone()),
        personal_data: summary.personal_data_by_kind.clone(),
        flagged: Some(summary.flagged),
        quarantined: Some(summary.quarantined),
        hidden_html: Some(summary.hidden_html),
        built_at: finished,
        message: None,
    };
    if let Some(notice) = ingest_findings(&version, &summary_findings) {
        observed.events.push(notice);
    }
    let name = version.version.clone();
    let note = match gate {
        Ok(()) => {
            let replaced = serving
                .as_ref()
                .map(|s| format!(", replacing version {}", s.version))
                .unwrap_or_default();
            format!(
                "version {name} serves: {} documents, {} chunks{quality}{replaced}",
                version.documents, version.chunks
            )
        }
        Err(why) => {
            let stays = match &serving {
                Some(s) => format!("version {} keeps serving", s.version),
                None => "nothing serves".into(),
            };
            version.message = Some(format!("{why}; {stays}"));
            version.state = IndexVersionState::Refused;
            format!("version {name} does not serve: {why}; {stays}")
        }
    };
    // A version that passes is promoted in the history, so the serving one before it is
    // retired by the same rule as a Model's.
    let refused = version.state == IndexVersionState::Refused;
    observed.versions.record([version]);
    if refused {
        observed.notice(true, "Refused", note);
    } else {
        observed.versions.promote(&name, "passed its evaluation");
        observed.notice(false, "Promoted", note);
    }
    observed.versions.bound(history_limit(index));
}

/// The quality in each mode measured, rounded like the version's own.
fn rounded_by_mode(summary: &IndexSummary) -> BTreeMap<SearchMode, RetrievalQuality> {
    summary
        .quality_by_mode
        .iter()
        .map(|(m, q)| (*m, round_quality(*q)))
        .collect()
}

/// The `IngestFindings` Event of a new version: what the safety scan found, by kind, and
/// what it did — counts only, never a value or a sample. A Warning when chunks were
/// quarantined or flagged (a reviewer should look), Normal when everything was redacted.
pub fn ingest_findings(
    version: &IndexVersion,
    (personal, injection): &(i64, i64),
) -> Option<Notice> {
    let flagged = version.flagged.unwrap_or(0);
    let quarantined = version.quarantined.unwrap_or(0);
    let hidden = version.hidden_html.unwrap_or(0);
    if *personal == 0 && *injection == 0 && flagged == 0 && quarantined == 0 && hidden == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if *personal > 0 {
        let kinds: Vec<String> = version
            .personal_data
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let kinds = if kinds.is_empty() {
            personal.to_string()
        } else {
            kinds.join(", ")
        };
        parts.push(format!("personal data: {kinds}"));
    }
    if *injection > 0 {
        parts.push(format!("{injection} prompt-injection signs"));
    }
    parts.push(format!(
        "{quarantined} chunks quarantined (never served), {flagged} flagged for review, {hidden} documents with hidden HTML text (left out)"
    ));
    let note = format!("version {}: {}", version.version, parts.join("; "));
    Some(if flagged > 0 || quarantined > 0 {
        Notice::warning("Index", "IngestFindings", note)
    } else {
        Notice::normal("Index", "IngestFindings", note)
    })
}

/// How many versions a RagIndex keeps.
pub fn history_limit(index: &RagIndex) -> usize {
    leitwerk_crds::versions::history_limit(index.spec.version_history_limit)
}

fn round_quality(
    mut q: leitwerk_crds::summary::RetrievalQuality,
) -> leitwerk_crds::summary::RetrievalQuality {
    let r = |x: f64| (x * 1e4).round() / 1e4;
    q.recall_at_k = r(q.recall_at_k);
    q.mrr = r(q.mrr);
    q.ndcg_at_k = r(q.ndcg_at_k);
    q
}
