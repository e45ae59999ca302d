//! The table of cases of the FeatureSet's `plan`: which Job it starts, which Job it reports
//! as running or finished, and the CronJob of the schedule. Pure: no cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use leitwerk_crds::{FeatureSet, FeatureSetStatus, summary::MaterializeSummary};

use crate::{
    config::OperatorConfig,
    controllers::feature_set::{
        MaterializeRead, build_job, generation_job_name, plan, store_covers,
    },
    jobs::JobOutcome,
    reconcile::Notice,
};

fn feature_set(generation: i64, last_job: Option<&str>, schedule: Option<&str>) -> FeatureSet {
    let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
        "../../../../../examples/lead-scoring/featureset.yaml"
    ))
    .expect("the example FeatureSet parses");
    fs.metadata.namespace = Some("sales".into());
    fs.metadata.uid = Some("uid-fs".into());
    fs.metadata.generation = Some(generation);
    fs.spec.cutoffs.schedule = schedule.map(String::from);
    fs.status = Some(FeatureSetStatus {
        last_job: last_job.map(String::from),
        ..Default::default()
    });
    fs
}

/// A Job named `name`, created `minute` minutes into the hour (the order of the list).
fn job(fs: &FeatureSet, name: &str, minute: u32) -> Job {
    let mut job = build_job(fs, &OperatorConfig::default(), name);
    job.metadata.creation_timestamp = Some(Time(
        format!("2026-12-05T10:{minute:02}:00Z")
            .parse()
            .expect("a timestamp"),
    ));
    job
}

fn published() -> JobOutcome<MaterializeSummary> {
    JobOutcome::Succeeded {
        summary: serde_json::from_value(serde_json::json!({
            "rows": 10, "published": true, "version": "sha256:aa", "location": "file:///s"
        }))
        .expect("a materialization summary"),
        finished: None,
    }
}

struct Case {
    what: &'static str,
    fs: FeatureSet,
    jobs: Vec<(Job, Option<JobOutcome<MaterializeSummary>>)>,
    foreign: usize,
    starts: bool,
    active: Option<String>,
    finished: Option<(String, bool)>,
    cron: bool,
}

fn cases() -> Vec<Case> {
    let new = feature_set(1, None, None);
    let g1 = generation_job_name(&new);
    let done = feature_set(1, Some(&g1), None);
    let scheduled = feature_set(1, Some(&g1), Some("0 3 * * *"));
    let edited = feature_set(2, Some(&g1), None);
    let g2 = generation_job_name(&edited);
    vec![
        Case {
            what: "a new FeatureSet starts the Job of its generation, which then runs",
            jobs: vec![],
            foreign: 0,
            starts: true,
            active: Some(g1.clone()),
            finished: None,
            cron: false,
            fs: new.clone(),
        },
        Case {
            what: "a running Job starts nothing",
            jobs: vec![(job(&new, &g1, 0), None)],
            foreign: 0,
            starts: false,
            active: Some(g1.clone()),
            finished: None,
            cron: false,
            fs: new.clone(),
        },
        Case {
            what: "a finished Job not recorded yet is reported with its summary",
            jobs: vec![(job(&new, &g1, 0), Some(published()))],
            foreign: 1,
            starts: false,
            active: None,
            finished: Some((g1.clone(), true)),
            cron: false,
            fs: new.clone(),
        },
        Case {
            what: "a failed Job is reported with its reason",
            jobs: vec![(
                job(&new, &g1, 0),
                Some(JobOutcome::Failed {
                    reason: "no rows".into(),
                }),
            )],
            foreign: 0,
            starts: false,
            active: None,
            finished: Some((g1.clone(), false)),
            cron: false,
            fs: new.clone(),
        },
        Case {
            what: "the recorded Job is not reported again",
            jobs: vec![(job(&done, &g1, 0), Some(published()))],
            foreign: 0,
            starts: false,
            active: None,
            finished: None,
            cron: false,
            fs: done,
        },
        Case {
            what: "a schedule plans its CronJob; its newest run is what counts",
            jobs: vec![
                (job(&scheduled, &g1, 0), Some(published())),
                (job(&scheduled, "lead-features-materialize-1", 5), None),
            ],
            foreign: 0,
            starts: false,
            active: Some("lead-features-materialize-1".into()),
            finished: None,
            cron: true,
            fs: scheduled,
        },
        Case {
            what: "an edited spec starts the Job of the new generation",
            jobs: vec![(job(&edited, &g1, 0), Some(published()))],
            foreign: 0,
            starts: true,
            active: Some(g2),
            finished: None,
            cron: false,
            fs: edited,
        },
    ]
}

#[test]
fn the_plan_starts_and_reports_what_each_case_asks() {
    for case in cases() {
        let read = MaterializeRead {
            jobs: case.jobs.iter().map(|(j, _)| j.clone()).collect(),
            outcomes: case
                .jobs
                .iter()
                .filter_map(|(j, o)| Some((j.name_any(), o.clone()?)))
                .collect::<BTreeMap<_, _>>(),
            foreign: (0..case.foreign)
                .map(|i| Notice::warning("Materialize", "UntrustedJob", format!("forged {i}")))
                .collect(),
            cron_job: None,
        };
        let observed = plan(&case.fs, &OperatorConfig::default(), read);
        assert_eq!(
            observed.start.as_ref().map(|j| j.name_any()),
            case.starts.then(|| generation_job_name(&case.fs)),
            "{}: started",
            case.what
        );
        assert_eq!(
            observed.active.as_ref().map(|(j, _)| j.clone()),
            case.active,
            "{}: running",
            case.what
        );
        assert_eq!(
            observed
                .finished
                .as_ref()
                .map(|(j, result)| (j.clone(), result.is_ok())),
            case.finished,
            "{}: finished",
            case.what
        );
        assert_eq!(
            observed.cron_job.is_some(),
            case.cron,
            "{}: CronJob",
            case.what
        );
        assert_eq!(observed.events.len(), case.foreign, "{}: Events", case.what);
    }
}

#[test]
fn the_job_store_stands_in_for_a_list_unless_it_lacks_the_recorded_job() {
    let new = feature_set(1, None, None);
    let g1 = generation_job_name(&new);
    let done = feature_set(1, Some(&g1), None);
    let by_cron = feature_set(1, Some("lead-features-materialize-1"), Some("0 3 * * *"));
    let edited = feature_set(2, Some(&g1), None);
    let cron_run = job(&by_cron, "lead-features-materialize-1", 5);
    let cases: Vec<(&str, &FeatureSet, Vec<Job>, bool)> = vec![
        (
            "nothing recorded: a missing Job is started (or applied again)",
            &new,
            vec![],
            true,
        ),
        (
            "the store holds the Job of this generation",
            &new,
            vec![job(&new, &g1, 0)],
            true,
        ),
        (
            "the recorded Job of this generation is held",
            &done,
            vec![job(&done, &g1, 0)],
            true,
        ),
        ("the recorded Job is not in the store", &done, vec![], false),
        (
            "the scheduled run the status records is not in the store yet",
            &by_cron,
            vec![job(&by_cron, &g1, 0)],
            false,
        ),
        (
            "the recorded scheduled run is held",
            &by_cron,
            vec![job(&by_cron, &g1, 0), cron_run],
            true,
        ),
        (
            "an edit: the recorded Job of the previous generation is held",
            &edited,
            vec![job(&edited, &g1, 0)],
            true,
        ),
    ];
    for (what, fs, held, covers) in cases {
        assert_eq!(store_covers(fs, &held), covers, "{what}");
    }
}
