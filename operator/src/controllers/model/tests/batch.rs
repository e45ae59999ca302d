//! `plan_batch`: when a Model's batch scoring starts a Job, what the Job runs, and what the
//! status shows of each run. Pure: no cluster.

use chrono::{DateTime, TimeZone, Utc};
use kube::ResourceExt;
use leitwerk_crds::{
    FeatureSet, FeatureSetStatus, Model, ModelStatus,
    command::JobCommand,
    model::{BatchScoringStatus, ModelVersion, VersionState},
    summary::ScoreSummary,
};

use crate::{
    config::OperatorConfig,
    controllers::model::{BatchRead, plan_batch},
    jobs::JobOutcome,
};

fn model(batch: &str, versions: Vec<ModelVersion>, status: Option<BatchScoringStatus>) -> Model {
    let text = format!(
        "{}  batchScoring: {batch}\n",
        include_str!("../../../../../examples/lead-scoring/model.yaml")
    );
    let mut model: Model = yaml_serde::from_str(&text).expect("the example Model parses");
    model.metadata.namespace = Some("sales".into());
    model.metadata.uid = Some("uid-1".into());
    model.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-01T00:00:00Z".parse().expect("a timestamp"),
    ));
    model.status = Some(ModelStatus {
        versions: versions.into(),
        batch_scoring: status,
        ..Default::default()
    });
    model
}

fn serving() -> Vec<ModelVersion> {
    vec![ModelVersion {
        version: "v2".into(),
        state: VersionState::Serving,
        artifact_url: Some("file:///m/v2/model.onnx".into()),
        artifact_digest: Some("sha256:ab12".into()),
        ..Default::default()
    }]
}

fn fs() -> FeatureSet {
    let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
        "../../../../../examples/lead-scoring/featureset.yaml"
    ))
    .expect("the example FeatureSet parses");
    fs.status = Some(FeatureSetStatus {
        current_version: Some("d7".into()),
        snapshot: Some("file:///store/featuresets/d7".into()),
        ..Default::default()
    });
    fs
}

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, hour, minute, 0)
        .single()
        .expect("a time")
}

const DAILY: &str = "{schedule: '0 5 * * *', output: 's3://crm/scores/'}";

#[test]
fn a_due_time_starts_one_job_scoring_the_newest_snapshot_with_the_serving_version() {
    let m = model(DAILY, serving(), None);
    let versions = m.status.clone().unwrap_or_default().versions;
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        BatchRead::default(),
        &OperatorConfig::default(),
        at(5, 3),
    );
    let job = plan.start.expect("a Job at the due time");
    assert_eq!(job.name_any(), "lead-scoring-score-20261205-0500");
    assert_eq!(job.labels()["leitwerk.dev/batch-scoring"], "true");
    assert!(
        !job.labels().contains_key("leitwerk.dev/version"),
        "not a training Job"
    );
    assert_eq!(
        job.annotations()[crate::schedule::SCHEDULED_FOR],
        "2026-12-05T05:00:00Z"
    );
    let JobCommand::Score { score, .. } = command_of(&job) else {
        panic!("a score command: {:?}", command_of(&job));
    };
    assert_eq!(score.model, "file:///m/v2/model.onnx#sha256:ab12");
    assert_eq!(score.version, "v2");
    assert_eq!(
        score.snapshot.as_deref(),
        Some("file:///store/featuresets/d7")
    );
    assert_eq!(
        score.output,
        "s3://crm/scores/lead-scoring-v2-20261205T0500Z.parquet"
    );
    assert_eq!(score.attributions, 3);
    let status = plan.status.expect("a status");
    assert_eq!(status.state.as_deref(), Some("Running"));
    assert_eq!(status.last_run.as_deref(), Some("2026-12-05T05:00:00Z"));
    assert_eq!(status.next_run.as_deref(), Some("2026-12-06T05:00:00Z"));
    assert_eq!(
        status.last_job.as_deref(),
        Some("lead-scoring-score-20261205-0500")
    );
    assert!(plan.next_in.is_some());

    // Before the due time (the 4th's run done) nothing starts; the status names the next run.
    let done = BatchScoringStatus {
        last_run: Some("2026-12-04T05:00:00Z".into()),
        ..Default::default()
    };
    let m = model(DAILY, serving(), Some(done));
    let early = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        BatchRead::default(),
        &OperatorConfig::default(),
        at(4, 59),
    );
    assert!(early.start.is_none());
    assert_eq!(
        early.status.unwrap().next_run.as_deref(),
        Some("2026-12-05T05:00:00Z")
    );
}

#[derive(Debug, clap::Parser)]
struct JobCommandParser {
    #[command(subcommand)]
    command: JobCommand,
}

/// The trainer command a Job runs, parsed as the trainer parses it.
fn command_of(job: &k8s_openapi::api::batch::v1::Job) -> JobCommand {
    let args = job
        .spec
        .clone()
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().cloned())
        .and_then(|c| c.args)
        .expect("the Job's arguments");
    <JobCommandParser as clap::Parser>::try_parse_from(
        std::iter::once("leitwerk-trainer".to_string())
            .chain(args)
            .chain(["--spec".to_string(), "{}".to_string()]),
    )
    .expect("the trainer parses the Job's command line")
    .command
}

#[test]
fn a_finished_run_fills_the_status_and_a_running_one_holds_the_next_due_time() {
    let started = BatchScoringStatus {
        last_run: Some("2026-12-04T05:00:00Z".into()),
        last_job: Some("lead-scoring-score-20261204-0500".into()),
        state: Some("Running".into()),
        ..Default::default()
    };
    let m = model(DAILY, serving(), Some(started));
    let versions = m.status.clone().unwrap_or_default().versions;
    let first = {
        let fresh = model(DAILY, serving(), None);
        let v = fresh.status.clone().unwrap_or_default().versions;
        plan_batch(
            &fresh,
            Some(&fs()),
            &v,
            BatchRead::default(),
            &OperatorConfig::default(),
            Utc.with_ymd_and_hms(2026, 12, 4, 5, 1, 0)
                .single()
                .expect("a time"),
        )
        .start
        .expect("the run of the 4th")
    };
    let done = JobOutcome::Succeeded {
        summary: ScoreSummary {
            version: "v2".into(),
            rows: 4180,
            output_url: "s3://crm/scores/lead-scoring-v2-20261204T0500Z.parquet".into(),
            digest: "sha256:cd34".into(),
            data_version: Some("d7".into()),
            fitted: None,
        },
        finished: Some("2026-12-04T05:02:10Z".into()),
    };
    // The 4th's run finished before the 5th's due time: recorded, and nothing new starts.
    let read = BatchRead {
        jobs: vec![first.clone()],
        newest: Some((first.clone(), done)),
    };
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        read,
        &OperatorConfig::default(),
        at(4, 0),
    );
    assert!(plan.start.is_none());
    let status = plan.status.expect("a status");
    assert_eq!(status.state.as_deref(), Some("Succeeded"));
    assert_eq!(status.rows, Some(4180));
    assert_eq!(status.output_digest.as_deref(), Some("sha256:cd34"));
    assert_eq!(status.finished_at.as_deref(), Some("2026-12-04T05:02:10Z"));

    // Still running at the 5th's due time: the due time waits for it.
    let running = BatchRead {
        jobs: vec![first.clone()],
        newest: Some((
            first.clone(),
            JobOutcome::Running {
                unschedulable: None,
                progress: None,
            },
        )),
    };
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        running,
        &OperatorConfig::default(),
        at(5, 1),
    );
    assert!(plan.start.is_none(), "one run at a time");
    assert_eq!(
        plan.status.expect("a status").state.as_deref(),
        Some("Running")
    );

    // Failed: the reason shows; the next due time starts a new run.
    let failed = BatchRead {
        jobs: vec![first.clone()],
        newest: Some((
            first,
            JobOutcome::Failed {
                reason: "spec.batchScoring.entityColumn: no column \"id\"".into(),
            },
        )),
    };
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        failed.clone(),
        &OperatorConfig::default(),
        at(4, 0),
    );
    let status = plan.status.expect("a status");
    assert_eq!(status.state.as_deref(), Some("Failed"));
    assert!(status.message.unwrap().contains("entityColumn"));
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &versions,
        failed,
        &OperatorConfig::default(),
        at(5, 1),
    );
    assert_eq!(
        plan.start.expect("the 5th's run").name_any(),
        "lead-scoring-score-20261205-0500"
    );
}

#[test]
fn a_due_time_without_a_serving_version_or_a_snapshot_is_skipped_with_the_reason() {
    let m = model(DAILY, vec![], None);
    let plan = plan_batch(
        &m,
        Some(&fs()),
        &Default::default(),
        BatchRead::default(),
        &OperatorConfig::default(),
        at(5, 1),
    );
    assert!(plan.start.is_none());
    let status = plan.status.expect("a status");
    assert_eq!(status.state.as_deref(), Some("Waiting"));
    assert!(status.message.unwrap().contains("no version serves yet"));
    assert_eq!(
        status.last_run.as_deref(),
        Some("2026-12-05T05:00:00Z"),
        "skipped, not owed"
    );

    let m = model(DAILY, serving(), None);
    let versions = m.status.clone().unwrap_or_default().versions;
    let plan = plan_batch(
        &m,
        None,
        &versions,
        BatchRead::default(),
        &OperatorConfig::default(),
        at(5, 1),
    );
    assert!(plan.start.is_none());
    assert!(
        plan.status
            .unwrap()
            .message
            .unwrap()
            .contains("no snapshot yet")
    );

    // With a source table the snapshot is not needed.
    let m = model(
        "{schedule: '0 5 * * *', output: 'file:///out', format: CSV, attributions: 0, source: 'file:///in/leads.csv', entityColumn: lead_id}",
        serving(),
        None,
    );
    let plan = plan_batch(
        &m,
        None,
        &versions,
        BatchRead::default(),
        &OperatorConfig::default(),
        at(5, 1),
    );
    let args = plan
        .start
        .expect("a Job")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(
        args.contains("--source file:///in/leads.csv --entity-column lead_id"),
        "{args}"
    );
    assert!(
        args.contains("--output file:///out/lead-scoring-v2-20261205T0500Z.csv"),
        "{args}"
    );
    assert!(
        args.contains("--attributions 0") && !args.contains("--snapshot"),
        "{args}"
    );
}

#[test]
fn a_broken_batch_schedule_is_refused_naming_the_field() {
    let m = model(
        "{schedule: '0 25 * * *', output: 's3://crm/scores/'}",
        serving(),
        None,
    );
    let errors = crate::controllers::model::validate(&m.spec).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.batchScoring.schedule"),
        "{errors:?}"
    );
}

fn lifetime_model(status: Option<BatchScoringStatus>) -> Model {
    let mut model: Model = yaml_serde::from_str(
        "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {name: shop-clv, namespace: shop, uid: uid-2, creationTimestamp: '2026-12-01T00:00:00Z'}\nspec:\n  task: CustomerLifetimeValue\n  lifetimeValue: {transactions: 's3://shop/transactions.csv', horizon: 26}\n  batchScoring: {schedule: '0 5 * * *', output: 's3://crm/clv/', format: CSV}\n",
    )
    .expect("a CLV Model parses");
    model.status = Some(ModelStatus {
        batch_scoring: status,
        ..Default::default()
    });
    model
}

#[test]
fn a_lifetime_value_model_fits_and_scores_at_each_due_time_without_serving() {
    let m = lifetime_model(None);
    let plan = plan_batch(
        &m,
        None,
        &Default::default(),
        BatchRead::default(),
        &OperatorConfig::default(),
        at(5, 2),
    );
    let job = plan
        .start
        .clone()
        .expect("a Job without a serving version or a snapshot");
    let JobCommand::LifetimeValue { lifetime, .. } = command_of(&job) else {
        panic!("a lifetime-value command: {:?}", command_of(&job));
    };
    assert_eq!(lifetime.output, "s3://crm/clv/shop-clv-20261205T0500Z.csv");
    assert_eq!(
        lifetime.not_after, "2026-12-05",
        "a purchase after the due day is refused"
    );
    let outcome = crate::controllers::model::decide_lifetime(&m, &plan);
    assert_eq!(outcome.phase, leitwerk_crds::model::ModelPhase::Scheduled);
    assert_eq!(
        (outcome.ready.status, outcome.ready.reason.as_str()),
        (false, "AwaitingFirstRun"),
        "not Ready before a run has written its file"
    );

    // A finished run: the fit and the file in the status, the fit in Ready's message.
    let started = plan.status.clone().expect("a status");
    let m = lifetime_model(Some(started));
    let done = JobOutcome::Succeeded {
        summary: ScoreSummary {
            version: String::new(),
            rows: 2357,
            output_url: "s3://crm/clv/shop-clv-20261205T0500Z.csv".into(),
            digest: "sha256:ef".into(),
            data_version: None,
            fitted: Some(leitwerk_crds::model::LifetimeFit {
                r: 0.2426,
                alpha: 4.4135,
                a: 0.7929,
                b: 2.4258,
                p: 6.2488,
                q: 3.7446,
                v: 15.4477,
                period_end: "2026-12-04".into(),
                total_clv: 51234.5,
            }),
        },
        finished: Some("2026-12-05T05:03:00Z".into()),
    };
    let read = BatchRead {
        jobs: vec![job.clone()],
        newest: Some((job.clone(), done)),
    };
    let plan = plan_batch(
        &m,
        None,
        &Default::default(),
        read,
        &OperatorConfig::default(),
        at(6, 0),
    );
    let status = plan.status.clone().expect("a status");
    assert_eq!(status.state.as_deref(), Some("Succeeded"));
    assert_eq!(
        status.version, None,
        "a lifetime value run has no model version"
    );
    assert_eq!(status.fitted.as_ref().map(|f| f.r), Some(0.2426));
    let outcome = crate::controllers::model::decide_lifetime(&m, &plan);
    let ready = &outcome.ready;
    assert!(
        ready.message.contains("2357 customers") && ready.message.contains("r 0.2426"),
        "{}",
        ready.message
    );

    // A failed run: the Model is Failed with the trainer's reason.
    let failed = BatchRead {
        jobs: vec![job.clone()],
        newest: Some((
            job,
            JobOutcome::Failed {
                reason: "s3://shop/transactions.csv: line 7: date 2026-12-09 lies after the run's day 2026-12-05".into(),
            },
        )),
    };
    let plan = plan_batch(
        &m,
        None,
        &Default::default(),
        failed,
        &OperatorConfig::default(),
        at(6, 0),
    );
    let outcome = crate::controllers::model::decide_lifetime(&m, &plan);
    assert_eq!(outcome.phase, leitwerk_crds::model::ModelPhase::Failed);
    assert!(
        outcome.ready.message.contains("line 7"),
        "{:?}",
        outcome.ready
    );
}

#[test]
fn a_tuning_objective_of_the_other_task_is_refused_naming_the_field() {
    let m: Model = yaml_serde::from_str(
        "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n  task: Regression\n  featureSetRef: {name: x}\n  algorithm: {gradientBoosting: {}}\n  tuning: {objective: auc, trials: 5, space: [{parameter: l2, min: 0.1, max: 1}]}\n",
    )
    .expect("a Model parses");
    let errors = crate::controllers::model::validate(&m.spec).expect_err("refused");
    let error = errors
        .iter()
        .find(|e| e.field == "spec.tuning.objective")
        .expect("the objective named");
    assert!(error.message.contains("rmse"), "{}", error.message);
}
