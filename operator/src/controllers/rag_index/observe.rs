//! Observing a RagIndex's indexing Jobs: the build in progress, finished builds into versions
//! (through the evaluation gate), the start of a build when one is due, and the bound on the
//! versions kept.

use leitwerk_crds::model::ScheduleStatus;
use leitwerk_crds::rag_index::admit;

use super::*;

/// An Event this reconcile decided to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning (a human should look) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// What happened.
    pub note: String,
}

/// What the cluster shows about a RagIndex's builds, and what this reconcile changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Whether the builds were observed (the fields below replace those in status).
    pub recorded: bool,
    /// The versions after this reconcile.
    pub versions: Vec<IndexVersion>,
    /// The last build.
    pub last_build: Option<IndexBuild>,
    /// When the sources were last read into a version.
    pub last_indexed: Option<String>,
    /// The indexing Job in progress, and why it cannot be scheduled if so.
    pub active: Option<(String, Option<String>)>,
    /// The indexing Job this reconcile started.
    pub started: Option<String>,
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
        self.versions
            .iter()
            .find(|v| v.state == IndexVersionState::Serving)
            .cloned()
    }

    fn notice(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(Notice {
            warning,
            reason,
            note,
        });
    }
}

impl Notice {
    /// The Event to publish.
    pub fn event(&self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.into(),
            note: Some(reconcile::truncate(&self.note, 1024)),
            action: "Index".into(),
            secondary: None,
        }
    }
}

fn build_number(job: &Job) -> Option<i64> {
    job.labels().get(BUILD_LABEL)?.parse().ok()
}

/// Reads the indexing Jobs of a RagIndex, records finished builds, and starts the next build
/// when the spec, the ConfigMap sources or the schedule ask for one and none runs.
pub(super) async fn observe_builds(
    ctx: &Context,
    index: &RagIndex,
    ns: &str,
    sources_digest: &str,
) -> Result<Observed, Error> {
    let status = index.status.clone().unwrap_or_default();
    let mut observed = Observed {
        recorded: true,
        versions: status.versions.clone(),
        last_build: status.last_build.clone(),
        last_indexed: status.last_indexed.clone(),
        schedule: status.schedule.clone(),
        ..Default::default()
    };
    let jobs: Vec<Job> = Api::<Job>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{RAG_INDEX_LABEL}={}", index.name_any())))
        .await
        .map_err(|source| Error::Read {
            what: "indexing Jobs".into(),
            source,
        })?
        .items
        .into_iter()
        .filter(|j| build_number(j).is_some())
        .collect();
    let recorded = status.last_build.as_ref().map_or(0, |b| b.number);
    let pending = status
        .last_build
        .as_ref()
        .filter(|b| b.state == BuildState::Running)
        .map(|b| b.number);
    let mut open: Vec<&Job> = jobs
        .iter()
        .filter(|j| build_number(j).is_some_and(|n| n > recorded || Some(n) == pending))
        .collect();
    open.sort_by_key(|j| build_number(j));
    for job in open {
        let number = build_number(job).unwrap_or(0);
        let pods = job_pods(ctx, ns, &job.name_any()).await?;
        let mut build = IndexBuild {
            number,
            job: job.name_any(),
            generation: job
                .annotations()
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok()),
            sources_digest: job.annotations().get(SOURCES_ANNOTATION).cloned(),
            ..Default::default()
        };
        match job_state(job) {
            JobState::Active => {
                observed.active = Some((job.name_any(), unschedulable(&pods)));
                observed.last_build = Some(build);
            }
            state => {
                let message = termination_message(&pods);
                let finished = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0.to_string());
                let summary = message
                    .as_deref()
                    .and_then(|m| serde_json::from_str::<IndexSummary>(m).ok());
                match (&state, summary) {
                    (JobState::Succeeded, Some(summary)) => {
                        record_version(index, &mut observed, &mut build, summary, finished);
                    }
                    _ => {
                        let reason = match &state {
                            JobState::Failed(reason) => reason.clone(),
                            _ => "the Job succeeded but left no readable summary".into(),
                        };
                        build.state = BuildState::Failed;
                        build.message = Some(reconcile::truncate(
                            &failure_message(message.as_deref(), &reason),
                            512,
                        ));
                        let stays = match observed.serving() {
                            Some(v) => format!("version {} keeps serving", v.version),
                            None => "nothing serves yet".into(),
                        };
                        observed.notice(
                            true,
                            "BuildFailed",
                            format!(
                                "build {number} (Job {}) failed: {}; {stays}",
                                build.job,
                                build.message.clone().unwrap_or_default()
                            ),
                        );
                    }
                }
                observed.last_build = Some(build);
            }
        }
    }

    // The refresh schedule: the due time owed a build, if any, and the next one.
    let mut due = None;
    if let Some(cron) = index.spec.refresh_schedule.as_deref() {
        let now = chrono::Utc::now();
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
        bound(&mut kept, history_limit(index).saturating_sub(1));
        let inputs = BuildInputs {
            number: highest + 1,
            sources_digest: sources_digest.to_string(),
            previous: kept.last().map(|v| v.url.clone()),
            keep: kept.iter().map(|v| v.url.clone()).collect(),
            scheduled_for: due.map(schedule::format),
        };
        let job = build_index_job(index, &ctx.config, &inputs);
        apply(ctx, ns, &job, "indexing Job").await?;
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
    }
    Ok(observed)
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
    observed.last_indexed = finished
        .clone()
        .or_else(|| Some(k8s_openapi::jiff::Timestamp::now().to_string()));
    if let Some(known) = observed
        .versions
        .iter()
        .find(|v| v.digest == summary.digest)
    {
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
        Some(e) => match &summary.quality {
            Some(q) => admit(
                q,
                serving.as_ref().and_then(|s| s.quality.as_ref()),
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
            format!(
                ", recall@{} {:.3}, nDCG@{} {:.3}",
                q.k, q.recall_at_k, q.k, q.ndcg_at_k
            )
        })
        .unwrap_or_default();
    let mut version = IndexVersion {
        version: summary.version.clone(),
        state: IndexVersionState::Serving,
        digest: summary.digest.clone(),
        url: summary.url.clone(),
        build: build.number,
        documents: summary.documents,
        chunks: summary.chunks,
        quality: summary.quality.map(round_quality),
        model: Some(summary.model.clone()),
        flagged: Some(summary.flagged),
        quarantined: Some(summary.quarantined),
        hidden_html: Some(summary.hidden_html),
        built_at: finished,
        message: None,
    };
    match gate {
        Ok(()) => {
            for v in &mut observed.versions {
                if v.state == IndexVersionState::Serving {
                    v.state = IndexVersionState::Retired;
                }
            }
            let replaced = serving
                .map(|s| format!(", replacing version {}", s.version))
                .unwrap_or_default();
            observed.notice(
                false,
                "Promoted",
                format!(
                    "version {} serves: {} documents, {} chunks{quality}{replaced}",
                    version.version, version.documents, version.chunks
                ),
            );
        }
        Err(why) => {
            version.state = IndexVersionState::Refused;
            let stays = match &serving {
                Some(s) => format!("version {} keeps serving", s.version),
                None => "nothing serves".into(),
            };
            version.message = Some(format!("{why}; {stays}"));
            observed.notice(
                true,
                "Refused",
                format!("version {} does not serve: {why}; {stays}", version.version),
            );
        }
    }
    observed.versions.push(version);
    bound(&mut observed.versions, history_limit(index));
}

/// How many versions a RagIndex keeps.
pub fn history_limit(index: &RagIndex) -> usize {
    usize::try_from(index.spec.version_history_limit.max(1)).unwrap_or(3)
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

/// Keeps at most `limit` versions, dropping the oldest that does not serve first.
pub fn bound(versions: &mut Vec<IndexVersion>, limit: usize) {
    while versions.len() > limit {
        match versions
            .iter()
            .position(|v| v.state != IndexVersionState::Serving)
        {
            Some(i) => {
                versions.remove(i);
            }
            None => break,
        }
    }
}
