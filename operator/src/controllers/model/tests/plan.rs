//! The table of cases of `plan_training`: what a Model's training Jobs and its FeatureSet
//! make the plan start, record and publish. Pure: no cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::{
    FeatureSet, FeatureSetStatus, Model, ModelStatus,
    model::{ModelVersion, RetrainPolicy, VersionState},
    summary::TrainSummary,
};

use crate::{
    config::OperatorConfig,
    controllers::model::{Observed, TrainingRead, build_training_job, plan_training},
    jobs::JobOutcome,
    reconcile::Notice,
};

fn model(generation: i64, versions: Vec<ModelVersion>) -> Model {
    let mut model: Model = yaml_serde::from_str(include_str!(
        "../../../../../examples/lead-scoring/model.yaml"
    ))
    .expect("the example Model parses");
    model.metadata.namespace = Some("sales".into());
    model.metadata.uid = Some("uid-1".into());
    model.metadata.generation = Some(generation);
    model.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-01T00:00:00Z".parse().expect("a timestamp"),
    ));
    model.status = Some(ModelStatus {
        versions: versions.into(),
        ..Default::default()
    });
    model
}

fn published(data: &str) -> FeatureSet {
    let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
        "../../../../../examples/lead-scoring/featureset.yaml"
    ))
    .expect("the example FeatureSet parses");
    fs.status = Some(FeatureSetStatus {
        current_version: Some(data.into()),
        snapshot: Some(format!("file:///store/{data}")),
        ..Default::default()
    });
    fs
}

fn recorded(name: &str, generation: i64, data: &str, state: VersionState) -> ModelVersion {
    ModelVersion {
        version: name.into(),
        state,
        generation: Some(generation),
        data_version: Some(data.into()),
        artifact_url: Some(format!("file:///m/{name}.onnx")),
        ..Default::default()
    }
}

fn job(model: &Model, version: &str, data: &str) -> Job {
    build_training_job(
        model,
        &OperatorConfig::default(),
        version,
        "file:///s",
        data,
    )
}

fn succeeded(version: &str, auc: f64) -> JobOutcome<TrainSummary> {
    JobOutcome::Succeeded {
        summary: TrainSummary {
            version: version.into(),
            model_url: format!("file:///m/{version}.onnx"),
            digest: "sha256:00".into(),
            data_version: "d1".into(),
            metrics: BTreeMap::from([("auc".to_string(), auc)]),
            parity_max_abs_diff: 0.0,
            explanations: BTreeMap::new(),
            importance: BTreeMap::from([("pricing_views_7d".to_string(), 0.41)]),
            tuning: None,
            segments: vec![leitwerk_crds::model::SegmentStatus {
                column: "industry".into(),
                value: "retail".into(),
                rows: 120,
                auc: Some(0.71),
                positive_rate: 0.2,
                mean_score: 0.22,
            }],
        },
        finished: Some("2026-12-05T10:00:00Z".into()),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
        .single()
        .expect("a time")
}

/// One case: the Model (with its recorded versions), its Jobs with their outcomes, its
/// FeatureSet; what the plan must show.
struct Case {
    what: &'static str,
    model: Model,
    jobs: Vec<(Job, Option<JobOutcome<TrainSummary>>)>,
    foreign: usize,
    fs: Option<FeatureSet>,
    starts: Option<&'static str>,
    active: Option<&'static str>,
    finished: Vec<(&'static str, VersionState)>,
}

fn plan(case: &Case) -> Observed {
    let read = TrainingRead {
        jobs: case.jobs.iter().map(|(j, _)| j.clone()).collect(),
        outcomes: case
            .jobs
            .iter()
            .filter_map(|(j, o)| Some((j.name_any(), o.clone()?)))
            .collect(),
        foreign: (0..case.foreign)
            .map(|i| Notice::warning("Train", "UntrustedJob", format!("forged {i}")))
            .collect(),
    };
    plan_training(
        &case.model,
        case.fs.as_ref(),
        read,
        &OperatorConfig::default(),
        now(),
    )
}

fn cases() -> Vec<Case> {
    use VersionState::*;
    let fresh = model(1, vec![]);
    let trained = model(1, vec![recorded("v1", 1, "d1", Serving)]);
    let edited = model(2, vec![recorded("v1", 1, "d1", Serving)]);
    let mut scheduled = model(1, vec![recorded("v1", 1, "d1", Serving)]);
    if let Some(t) = scheduled.spec.training.as_mut() {
        t.retrain = Some(RetrainPolicy {
            on_new_data: false,
            schedule: Some("0 4 * * *".into()),
        });
    }
    let mut drifted = model(1, vec![recorded("v1", 1, "d1", Serving)]);
    if let Some(s) = drifted.status.as_mut() {
        s.drift = Some(leitwerk_crds::model::ModelDriftStatus {
            retrain_requested: true,
            ..Default::default()
        });
    }
    vec![
        Case {
            what: "a new Model with published data trains v1",
            jobs: vec![],
            foreign: 0,
            fs: Some(published("d1")),
            starts: Some("v1"),
            active: None,
            finished: vec![],
            model: fresh.clone(),
        },
        Case {
            what: "nothing starts before the FeatureSet publishes",
            jobs: vec![],
            foreign: 0,
            fs: None,
            starts: None,
            active: None,
            finished: vec![],
            model: fresh.clone(),
        },
        Case {
            what: "a running Job is the one in progress and nothing else starts",
            jobs: vec![(job(&fresh, "v1", "d1"), None)],
            foreign: 0,
            fs: Some(published("d2")),
            starts: None,
            active: Some("v1"),
            finished: vec![],
            model: fresh.clone(),
        },
        Case {
            what: "a finished Job above minMetrics is a Candidate; the same data starts nothing",
            jobs: vec![(job(&fresh, "v1", "d1"), Some(succeeded("v1", 0.9)))],
            foreign: 0,
            fs: Some(published("d1")),
            starts: None,
            active: None,
            finished: vec![("v1", Candidate)],
            model: fresh.clone(),
        },
        Case {
            what: "a finished Job below minMetrics is Rejected and not retrained on the same data",
            jobs: vec![(job(&fresh, "v1", "d1"), Some(succeeded("v1", 0.6)))],
            foreign: 0,
            fs: Some(published("d1")),
            starts: None,
            active: None,
            finished: vec![("v1", Rejected)],
            model: fresh.clone(),
        },
        Case {
            what: "a failed Job is recorded Failed and not retried until something changes",
            jobs: vec![(
                job(&fresh, "v1", "d1"),
                Some(JobOutcome::Failed {
                    reason: "OOMKilled".into(),
                }),
            )],
            foreign: 0,
            fs: Some(published("d1")),
            starts: None,
            active: None,
            finished: vec![("v1", Failed)],
            model: fresh.clone(),
        },
        Case {
            what: "new data with onNewData trains the next version after the recorded ones",
            jobs: vec![(job(&trained, "v1", "d1"), None)],
            foreign: 0,
            fs: Some(published("d2")),
            starts: Some("v2"),
            active: None,
            finished: vec![],
            model: trained.clone(),
        },
        Case {
            what: "an edited spec trains again on the same data",
            jobs: vec![],
            foreign: 0,
            fs: Some(published("d1")),
            starts: Some("v2"),
            active: None,
            finished: vec![],
            model: edited,
        },
        Case {
            what: "a due schedule trains even when nothing changed",
            jobs: vec![],
            foreign: 0,
            fs: Some(published("d1")),
            starts: Some("v2"),
            active: None,
            finished: vec![],
            model: scheduled,
        },
        Case {
            what: "a drift request trains even when nothing changed",
            jobs: vec![],
            foreign: 0,
            fs: Some(published("d1")),
            starts: Some("v2"),
            active: None,
            finished: vec![],
            model: drifted,
        },
        Case {
            what: "foreign Jobs become Warnings and change nothing else",
            jobs: vec![],
            foreign: 2,
            fs: Some(published("d1")),
            starts: None,
            active: None,
            finished: vec![],
            model: trained,
        },
    ]
}

#[test]
fn the_plan_starts_records_and_publishes_what_each_case_asks() {
    for case in cases() {
        let observed = plan(&case);
        let started = observed.start.as_ref().and_then(|j| {
            j.labels()
                .get(crate::controllers::model::VERSION_LABEL)
                .cloned()
        });
        assert_eq!(started.as_deref(), case.starts, "{}: started", case.what);
        assert_eq!(
            observed.started,
            observed.start.as_ref().map(|j| j.name_any()),
            "{}: the name in status is the Job created",
            case.what
        );
        let active = observed.active.as_ref().map(|(job, _)| job.clone());
        let expected_active = case.active.map(|v| job(&case.model, v, "d1").name_any());
        assert_eq!(active, expected_active, "{}: in progress", case.what);
        let finished: Vec<(String, VersionState)> = observed
            .finished
            .iter()
            .map(|v| (v.version.clone(), v.state))
            .collect();
        let expected: Vec<(String, VersionState)> = case
            .finished
            .iter()
            .map(|(v, s)| (v.to_string(), *s))
            .collect();
        assert_eq!(finished, expected, "{}: finished", case.what);
        assert_eq!(
            observed.events.len(),
            case.foreign,
            "{}: only foreign Jobs make Events here",
            case.what
        );
    }
}

#[test]
fn a_scheduled_training_carries_its_due_time_and_the_schedule_names_its_job() {
    let case = cases()
        .into_iter()
        .find(|c| c.what.starts_with("a due schedule"))
        .expect("the schedule case");
    let observed = plan(&case);
    let job = observed.start.expect("a scheduled Job");
    let due = job
        .annotations()
        .get(crate::schedule::SCHEDULED_FOR)
        .cloned()
        .expect("the due time on the Job");
    assert_eq!(due, "2026-12-05T04:00:00Z");
    let schedule = observed.schedule.expect("the schedule's status");
    assert_eq!(schedule.last_run.as_deref(), Some(due.as_str()));
    assert_eq!(schedule.last_job, Some(job.name_any()));
    assert_eq!(schedule.next_run.as_deref(), Some("2026-12-06T04:00:00Z"));
}

#[test]
fn a_bring_your_own_model_plans_one_version_per_new_file_and_never_a_job() {
    let mut byo = model(1, vec![]);
    byo.spec.feature_set_ref = None;
    byo.spec.onnx = Some(
        yaml_serde::from_str("{url: 'file:///m/mine.onnx', sha256: ab}").expect("an onnx source"),
    );
    let case = Case {
        what: "byo",
        jobs: vec![],
        foreign: 0,
        fs: Some(published("d1")),
        starts: None,
        active: None,
        finished: vec![],
        model: byo.clone(),
    };
    let first = plan(&case);
    assert!(first.start.is_none());
    assert_eq!(first.finished.len(), 1);
    assert_eq!(first.finished[0].version, "v1");
    byo.status = Some(ModelStatus {
        versions: first.finished.clone().into(),
        ..Default::default()
    });
    let again = plan(&Case { model: byo, ..case });
    assert!(again.finished.is_empty(), "the same file is no new version");
}

/// A version whose segment gap breaks its `minMetrics` bound is Rejected, and its message
/// names the gap, the bound, the column and both segments.
#[test]
fn a_version_over_its_segment_gap_is_rejected_naming_the_segments() {
    let mut m = model(1, vec![]);
    m.spec.min_metrics = Some(BTreeMap::from([
        ("auc".to_string(), 0.7),
        ("maxSegmentAucGap".to_string(), 0.1),
    ]));
    let mut outcome = succeeded("v1", 0.82);
    if let JobOutcome::Succeeded { summary, .. } = &mut outcome {
        summary.metrics.insert("maxSegmentAucGap".into(), 0.1523);
        summary.explanations.insert(
            "maxSegmentAucGap".into(),
            "segment column industry: retail 0.7112 (412 rows) vs software 0.8635 (1020 rows)"
                .into(),
        );
    }
    let v = crate::controllers::model::trained_version(
        &m.spec,
        recorded("v1", 1, "d1", VersionState::Candidate),
        outcome,
    );
    assert_eq!(v.state, VersionState::Rejected);
    assert_eq!(
        v.message.as_deref(),
        Some(
            "maxSegmentAucGap 0.1523 is above the maximum 0.1: segment column industry: retail 0.7112 (412 rows) vs software 0.8635 (1020 rows)"
        )
    );
    // Within the bound the same figures make a Candidate.
    let mut outcome = succeeded("v1", 0.82);
    if let JobOutcome::Succeeded { summary, .. } = &mut outcome {
        summary.metrics.insert("maxSegmentAucGap".into(), 0.08);
    }
    let v = crate::controllers::model::trained_version(
        &m.spec,
        recorded("v1", 1, "d1", VersionState::Candidate),
        outcome,
    );
    assert_eq!(v.state, VersionState::Candidate);
    // The version carries the trainer's global importance into the status.
    assert_eq!(v.importance.get("pricing_views_7d"), Some(&0.41));
    // ... and the extremes of its segment scan.
    assert_eq!(
        v.segments
            .iter()
            .map(|s| (s.column.as_str(), s.value.as_str(), s.auc))
            .collect::<Vec<_>>(),
        vec![("industry", "retail", Some(0.71))]
    );
}

#[test]
fn segment_gates_without_segments_and_segments_on_regression_are_refused_naming_the_field() {
    use crate::controllers::model::validate;
    let mut m = model(1, vec![]);
    m.spec.min_metrics = Some(BTreeMap::from([("maxSegmentAucGap".to_string(), 0.1)]));
    let errors = validate(&m.spec).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.minMetrics.maxSegmentAucGap"),
        "{errors:?}"
    );
    m.spec.evaluation = Some(leitwerk_crds::model::EvaluationSpec {
        segments: vec!["industry".into()],
        min_segment_rows: 50,
    });
    assert!(validate(&m.spec).is_ok());
    m.spec.task = leitwerk_crds::model::Task::Regression;
    m.spec.min_metrics = None;
    let errors = validate(&m.spec).unwrap_err();
    assert!(
        errors.iter().any(|e| e.field == "spec.evaluation.segments"),
        "{errors:?}"
    );
}

#[test]
fn a_tuned_versions_search_reaches_the_plan_for_the_status() {
    let m = model(1, vec![]);
    let j = job(&m, "v1", "d1");
    let mut outcome = succeeded("v1", 0.81);
    let report = leitwerk_crds::model::TuningReport {
        version: "v1".into(),
        method: "TPE".into(),
        objective: "auc".into(),
        trials_run: 40,
        pruned: 12,
        ..Default::default()
    };
    if let JobOutcome::Succeeded { summary, .. } = &mut outcome {
        summary.tuning = Some(report.clone());
    }
    let observed = plan_training(
        &m,
        Some(&published("d1")),
        TrainingRead {
            jobs: vec![j.clone()],
            outcomes: [(j.name_any(), outcome)].into_iter().collect(),
            foreign: vec![],
        },
        &OperatorConfig::default(),
        now(),
    );
    assert_eq!(observed.tuning, Some(report));
    assert_eq!(observed.finished.len(), 1);
}
