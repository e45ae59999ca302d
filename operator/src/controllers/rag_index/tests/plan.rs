//! The table of cases of `plan_builds`: which build a RagIndex's Jobs and sources make the
//! plan start, what a finished build records, and which Events it carries. Pure: no cluster.

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::rag_index::{BuildState, IndexBuild, IndexVersionState, RagIndexStatus};
use leitwerk_crds::summary::IndexSummary;

use super::{example, summary};
use crate::{
    config::OperatorConfig,
    controllers::rag_index::{BuildInputs, BuildsRead, Observed, build_index_job, plan_builds},
    jobs::JobOutcome,
    reconcile::Notice,
};

const SOURCES: &str = "sha256:sources-1";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
        .single()
        .expect("a time")
}

fn job(index: &leitwerk_crds::RagIndex, number: i64) -> Job {
    build_index_job(
        index,
        &OperatorConfig::default(),
        &BuildInputs {
            number,
            sources_digest: SOURCES.into(),
            previous: None,
            serving: None,
            keep: vec![],
            scheduled_for: None,
        },
    )
}

/// The example after build `number` finished as `state`, serving a version when it passed.
fn after(number: i64, state: BuildState) -> leitwerk_crds::RagIndex {
    let mut index = example();
    let mut observed = Observed::default();
    if state == BuildState::Succeeded {
        let mut build = IndexBuild {
            number,
            ..Default::default()
        };
        super::super::record_version(
            &index,
            &mut observed,
            &mut build,
            summary(&"a".repeat(64), 0.95),
            None,
        );
    }
    index.status = Some(RagIndexStatus {
        versions: observed.versions,
        last_build: Some(IndexBuild {
            number,
            job: job(&index, number).name_any(),
            state,
            generation: Some(1),
            sources_digest: Some(SOURCES.into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    index
}

fn passed() -> JobOutcome<IndexSummary> {
    JobOutcome::Succeeded {
        summary: summary(&"b".repeat(64), 0.95),
        finished: None,
    }
}

struct Case {
    what: &'static str,
    index: leitwerk_crds::RagIndex,
    sources: &'static str,
    jobs: Vec<(i64, Option<JobOutcome<IndexSummary>>)>,
    foreign: usize,
    starts: Option<i64>,
    active: bool,
    serving: Option<&'static str>,
    events: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    let mut running = example();
    running.status = Some(RagIndexStatus {
        last_build: Some(IndexBuild {
            number: 1,
            job: job(&running, 1).name_any(),
            state: BuildState::Running,
            generation: Some(1),
            sources_digest: Some(SOURCES.into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    vec![
        Case {
            what: "a new RagIndex starts build 1",
            index: example(),
            sources: SOURCES,
            jobs: vec![],
            foreign: 0,
            starts: Some(1),
            active: false,
            serving: None,
            events: vec!["BuildStarted"],
        },
        Case {
            what: "a running build is in progress and nothing else starts",
            index: running.clone(),
            sources: "sha256:sources-2",
            jobs: vec![(1, None)],
            foreign: 0,
            starts: None,
            active: true,
            serving: None,
            events: vec![],
        },
        Case {
            what: "a build that passes the gate serves and nothing else starts",
            index: running.clone(),
            sources: SOURCES,
            jobs: vec![(1, Some(passed()))],
            foreign: 0,
            starts: None,
            active: false,
            serving: Some("bbbbbbbbbbbb"),
            events: vec!["Promoted"],
        },
        Case {
            what: "a failed build is a Warning and is not retried on the same sources",
            index: running,
            sources: SOURCES,
            jobs: vec![(
                1,
                Some(JobOutcome::Failed {
                    reason: "OOMKilled".into(),
                }),
            )],
            foreign: 0,
            starts: None,
            active: false,
            serving: None,
            events: vec!["BuildFailed"],
        },
        Case {
            what: "changed sources start the next build; the serving version stays",
            index: after(1, BuildState::Succeeded),
            sources: "sha256:sources-2",
            jobs: vec![(1, None)],
            foreign: 0,
            starts: Some(2),
            active: false,
            serving: Some("aaaaaaaaaaaa"),
            events: vec!["BuildStarted"],
        },
        Case {
            what: "recorded builds are not read again and foreign Jobs are Warnings",
            index: after(1, BuildState::Failed),
            sources: SOURCES,
            jobs: vec![(1, None)],
            foreign: 2,
            starts: None,
            active: false,
            serving: None,
            events: vec!["UntrustedJob", "UntrustedJob"],
        },
    ]
}

#[test]
fn the_plan_starts_records_and_publishes_what_each_case_asks() {
    for case in cases() {
        let jobs: Vec<Job> = case
            .jobs
            .iter()
            .map(|(n, _)| job(&case.index, *n))
            .collect();
        let read = BuildsRead {
            outcomes: case
                .jobs
                .iter()
                .zip(&jobs)
                .filter_map(|((_, o), j)| Some((j.name_any(), o.clone()?)))
                .collect(),
            jobs,
            foreign: (0..case.foreign)
                .map(|i| Notice::warning("Index", "UntrustedJob", format!("forged {i}")))
                .collect(),
        };
        let observed = plan_builds(
            &case.index,
            &OperatorConfig::default(),
            case.sources,
            read,
            now(),
        );
        let started = observed.start.as_ref().map(|j| j.name_any());
        assert_eq!(
            started,
            case.starts.map(|n| job(&case.index, n).name_any()),
            "{}: started",
            case.what
        );
        assert_eq!(observed.started, started, "{}: named in status", case.what);
        if case.starts.is_some() {
            assert_eq!(
                observed.last_build.as_ref().map(|b| b.state),
                Some(BuildState::Running),
                "{}: the started build is the last one",
                case.what
            );
        }
        assert_eq!(
            observed.active.is_some(),
            case.active,
            "{}: in progress",
            case.what
        );
        assert_eq!(
            observed.versions.serving().map(|v| v.version.as_str()),
            case.serving,
            "{}: serving",
            case.what
        );
        let reasons: Vec<&str> = observed.events.iter().map(|n| n.reason.as_ref()).collect();
        assert_eq!(reasons, case.events, "{}: Events", case.what);
    }
}

#[test]
fn a_promotion_retires_the_version_before_it_by_the_shared_rule() {
    let mut index = after(1, BuildState::Succeeded);
    let second = job(&index, 2);
    if let Some(b) = index.status.as_mut().and_then(|s| s.last_build.as_mut()) {
        b.number = 2;
        b.state = BuildState::Running;
        b.job = second.name_any();
    }
    let read = BuildsRead {
        outcomes: [(second.name_any(), passed())].into_iter().collect(),
        jobs: vec![second],
        foreign: vec![],
    };
    let observed = plan_builds(&index, &OperatorConfig::default(), SOURCES, read, now());
    let states: Vec<(&str, IndexVersionState)> = observed
        .versions
        .iter()
        .map(|v| (v.version.as_str(), v.state))
        .collect();
    assert_eq!(
        states,
        [
            ("aaaaaaaaaaaa", IndexVersionState::Retired),
            ("bbbbbbbbbbbb", IndexVersionState::Serving)
        ]
    );
    assert_eq!(
        observed.last_indexed.as_deref(),
        Some("2026-12-05T12:00:00+00:00"),
        "a Job that does not say when it finished finished by the time it was seen"
    );
}
