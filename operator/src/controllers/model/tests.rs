use super::*;
use crate::analysis::drift::FeatureDrift;
use crate::config::OperatorConfig;
use leitwerk_crds::model::{DriftPolicy, ModelDriftStatus, Task, Versions};
use std::collections::BTreeMap;

mod batch;
mod plan;

fn example() -> Model {
    let mut model: Model =
        yaml_serde::from_str(include_str!("../../../../examples/lead-scoring/model.yaml")).unwrap();
    model.metadata.namespace = Some("sales".into());
    model.metadata.uid = Some("uid-1".into());
    model
}

fn feature_set(version: Option<&str>) -> FeatureSet {
    let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
        "../../../../examples/lead-scoring/featureset.yaml"
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
            waiting.phase.as_str(),
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
    let f = |feature: &str, metric: &str, value: f64| FeatureDrift {
        feature: feature.into(),
        metric: metric.parse().expect("a drift metric"),
        value,
        rows: 500.0,
    };
    assert_eq!(
        drift_level(&policy, &[f("a", "psi", 0.05), f("c", "js", 0.01)]).0,
        leitwerk_crds::model::DriftLevel::Ok
    );
    let warn = [f("a", "psi", 0.15), f("c", "js", 0.01)];
    let (level, worst) = drift_level(&policy, &warn);
    assert_eq!(
        (level, worst.map(|w| w.feature.as_str())),
        (leitwerk_crds::model::DriftLevel::Warn, Some("a"))
    );
    // A JS divergence of 0.12 bits is past its act threshold (0.1) even though a PSI of
    // 0.2 is the larger number: each is judged against its own limits.
    let act = [f("a", "psi", 0.2), f("c", "js", 0.12)];
    let (level, worst) = drift_level(&policy, &act);
    assert_eq!(
        (level, worst.map(|w| w.feature.as_str())),
        (leitwerk_crds::model::DriftLevel::Act, Some("c"))
    );
    assert_eq!(
        drift_level(&policy, &[]).0,
        leitwerk_crds::model::DriftLevel::NoData
    );
    // Below minRows (default 100) even a large divergence is no verdict; the threshold is
    // the policy's.
    let few = [FeatureDrift {
        rows: 99.0,
        ..f("a", "psi", 3.0)
    }];
    assert_eq!(
        drift_level(&policy, &few).0,
        leitwerk_crds::model::DriftLevel::NoData
    );
    let strict: DriftPolicy = yaml_serde::from_str("{action: Rollback, minRows: 1000}").unwrap();
    assert_eq!(
        drift_level(&strict, &act).0,
        leitwerk_crds::model::DriftLevel::NoData,
        "500 rows are too few for minRows 1000"
    );
}

/// The example at generation 3 and its newest version, trained at that generation on
/// snapshot `sha256:aa`.
fn trained_on_aa() -> (Model, ModelVersion) {
    let mut model = example();
    model.metadata.generation = Some(3);
    let latest = ModelVersion {
        version: "v2".into(),
        generation: Some(3),
        data_version: Some("sha256:aa".into()),
        ..Default::default()
    };
    (model, latest)
}

#[test]
fn training_follows_spec_changes_new_data_and_drift_requests() {
    let (mut model, latest) = trained_on_aa();
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
        state: state.parse().unwrap(),
        artifact_url: Some(format!("file:///a/{name}.onnx")),
        ..Default::default()
    };
    let mut versions = Versions(vec![
        v("v1", "Retired"),
        v("v2", "Rejected"),
        v("v3", "Serving"),
        v("v4", "Candidate"),
    ]);
    assert_eq!(versions.roll_back_serving("PSI 0.9").as_deref(), Some("v1"));
    let states: Vec<&str> = versions.iter().map(|v| v.state.as_str()).collect();
    assert_eq!(
        states,
        vec!["Serving", "Rejected", "RolledBack", "Candidate"]
    );
    assert_eq!(versions[2].message.as_deref(), Some("PSI 0.9"));
    let mut only = Versions(vec![v("v1", "Serving")]);
    assert_eq!(only.roll_back_serving("x"), None);
    assert_eq!(
        only[0].state,
        VersionState::Serving,
        "nothing to go back to: unchanged"
    );
}

#[test]
fn bring_your_own_onnx_waits_for_serving() {
    let model: Model = yaml_serde::from_str(include_str!(
        "../../../../examples/creative-bandit/model.yaml"
    ))
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
fn versions_meeting_min_metrics_are_promoted_when_nothing_serves_and_history_is_bounded() {
    let mut model = example();
    model.spec.version_history_limit = 2;
    let version = |v: &str, state: &str| ModelVersion {
        version: v.into(),
        state: state.parse().unwrap(),
        ..Default::default()
    };
    model.status = Some(leitwerk_crds::ModelStatus {
        versions: vec![version("v1", "Rejected")].into(),
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
        unmet(&model.spec, &metrics).map(|(_, why)| why).as_deref(),
        Some("auc 0.7000 is below the minimum 0.75")
    );
    metrics.insert("auc".into(), 0.8);
    assert_eq!(unmet(&model.spec, &metrics), None);
}

/// Training and serving pods are two kinds of pod with an account each, both without a
/// token; an Experiment's variants run as the serving account of their Model.
#[test]
fn trainers_and_servers_run_as_their_own_token_less_accounts() {
    let model = example();
    let config = OperatorConfig::default();
    let account = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
        spec.map(|p| {
            (
                p.service_account_name.clone(),
                p.automount_service_account_token,
            )
        })
    };
    let job = build_training_job(&model, &config, "v1", "file:///s", "abc");
    assert_eq!(
        account(job.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
        Some((Some("lead-scoring-model".into()), Some(false)))
    );
    let version = ModelVersion {
        version: "v1".into(),
        artifact_url: Some("file:///m/model.onnx".into()),
        ..Default::default()
    };
    let (deployment, _) = build_serving(&model, &config, &version);
    assert_eq!(
        account(
            deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
        ),
        Some((Some("lead-scoring-serving".into()), Some(false)))
    );
    let sa = build_serving_service_account(&model).unwrap();
    assert_eq!(sa.metadata.name.as_deref(), Some("lead-scoring-serving"));
    assert_eq!(sa.automount_service_account_token, Some(false));
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

#[test]
fn a_bring_your_own_model_gets_a_trainer_account_only_when_it_scores_in_batches() {
    let mut byo = example();
    byo.spec.onnx = Some(leitwerk_crds::model::OnnxSource {
        url: "file:///m/model.onnx".into(),
        sha256: None,
    });
    assert!(
        build_service_account(&byo).is_none(),
        "a Model that runs no Jobs needs no trainer account"
    );
    assert!(
        build_serving_service_account(&byo).is_some(),
        "its serving pods keep their own"
    );
    byo.spec.batch_scoring = Some(
        serde_json::from_value(serde_json::json!({
            "schedule": "0 3 * * *",
            "output": "file:///scores"
        }))
        .unwrap(),
    );
    let sa = build_service_account(&byo).expect("batch scoring runs trainer Jobs");
    assert_eq!(sa.metadata.name.as_deref(), Some("lead-scoring-model"));
}

#[test]
fn the_artifact_store_secret_reaches_training_jobs_and_serving_pods() {
    let model = example();
    let config = OperatorConfig {
        artifact_store: "s3://artifacts".into(),
        artifact_store_secret: Some("s3-credentials".into()),
        ..OperatorConfig::default()
    };
    let secret_of = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| -> Vec<String> {
        spec.and_then(|p| p.containers.first())
            .and_then(|c| c.env_from.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.secret_ref.map(|s| s.name))
            .collect()
    };
    let job = build_training_job(&model, &config, "v1", "s3://artifacts/snap", "abc");
    let job_pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    assert_eq!(secret_of(job_pod), ["s3-credentials"]);
    let version = ModelVersion {
        version: "v1".into(),
        artifact_url: Some("s3://artifacts/models/m/model.onnx".into()),
        ..Default::default()
    };
    let (deployment, _) = build_serving(&model, &config, &version);
    let serving_pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref());
    assert_eq!(secret_of(serving_pod), ["s3-credentials"]);
    // Without it, nothing is added.
    let plain = build_training_job(&model, &OperatorConfig::default(), "v1", "file:///s", "abc");
    assert!(secret_of(plain.spec.as_ref().and_then(|s| s.template.spec.as_ref())).is_empty());
}

/// Each reason carries its severity: failures and references that do not resolve publish
/// Warning Events, waiting for the operator's own work publishes Normal ones.
#[test]
fn failures_are_warnings_and_waiting_is_normal() {
    use crate::reconcile::needs_attention;
    let fs = feature_set(Some("sha256:ab"));
    let mut failed = example();
    failed.status = Some(leitwerk_crds::ModelStatus {
        versions: vec![ModelVersion {
            version: "v1".into(),
            state: VersionState::Failed,
            message: Some("the trainer ran out of memory".into()),
            ..Default::default()
        }]
        .into(),
        ..Default::default()
    });
    let outcome = decide(&failed, Some(Some(&fs)));
    assert_eq!(outcome.ready.reason, "TrainingFailed");
    assert!(needs_attention(&outcome.ready));
    let mut rejected = failed.clone();
    if let Some(st) = rejected.status.as_mut() {
        st.versions[0].state = VersionState::Rejected;
    }
    assert!(needs_attention(&decide(&rejected, Some(Some(&fs))).ready));
    assert!(
        needs_attention(&decide(&example(), None).ready),
        "FeatureSetNotFound"
    );
    let waiting = decide(&example(), Some(Some(&feature_set(None))));
    assert!(!needs_attention(&waiting.ready), "{:?}", waiting.ready);
    assert!(!needs_attention(&decide(&example(), Some(Some(&fs))).ready));
}

#[test]
fn a_retrain_asked_by_hand_trains_once_and_other_actions_are_refused() {
    use leitwerk_crds::labels::{CONTROL, REQUESTED_BY};
    let (mut model, latest) = trained_on_aa();
    assert!(!training_needed(&model, Some(&latest), false, "sha256:aa"));
    let annotations = model.metadata.annotations.get_or_insert_default();
    annotations.insert(CONTROL.into(), "retrain:1".into());
    annotations.insert(REQUESTED_BY.into(), "ana@example.com".into());
    assert!(
        training_needed(&model, Some(&latest), false, "sha256:aa"),
        "asked by hand"
    );
    // Once handled (its Job started), the same request asks nothing again.
    let record = steer::handled(&model, "Retrain: Job started".into(), chrono::Utc::now());
    assert_eq!(
        record.as_ref().and_then(|r| r.requested_by.as_deref()),
        Some("ana@example.com")
    );
    model.status = Some(leitwerk_crds::ModelStatus {
        last_control: record,
        ..Default::default()
    });
    assert!(!training_needed(&model, Some(&latest), false, "sha256:aa"));
    // An Experiment's action on a Model is named and refused.
    model
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(CONTROL.into(), "promote:2".into());
    let refused = steer::pending(&model).unwrap().unwrap_err();
    assert!(
        refused.contains("\"promote\"") && refused.contains("use retrain"),
        "{refused}"
    );
    assert!(!training_needed(&model, Some(&latest), false, "sha256:aa"));
}

#[test]
fn a_pinned_model_is_not_rolled_back_on_drift_and_an_unpinned_one_is() {
    let version = |name: &str, state| leitwerk_crds::model::ModelVersion {
        version: name.into(),
        state,
        artifact_url: Some(format!("file:///m/{name}.onnx")),
        ..Default::default()
    };
    let fresh = || {
        Versions(vec![
            version("v1", VersionState::Retired),
            version("v2", VersionState::Serving),
        ])
    };
    let mut model = example();
    let policy: DriftPolicy = model.spec.drift.clone().unwrap();
    model.metadata.annotations = Some(BTreeMap::from([(
        leitwerk_crds::labels::PIN.to_string(),
        "v2".to_string(),
    )]));
    let mut versions = fresh();
    let mut d = ModelDriftStatus::default();
    let notice = drift::act_on_drift(&model, &policy, &mut versions, &mut d, "psi 0.40");
    assert_eq!(versions, fresh(), "nothing rolled back");
    assert!(notice.note.contains("pinned to v2"), "{}", notice.note);

    model.metadata.annotations = None;
    let notice = drift::act_on_drift(&model, &policy, &mut versions, &mut d, "psi 0.40");
    assert_eq!(versions.serving().map(|v| v.version.as_str()), Some("v1"));
    assert!(notice.note.contains("serving v1 again"), "{}", notice.note);
}
