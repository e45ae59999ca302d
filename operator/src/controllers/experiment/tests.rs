use leitwerk_crds::{ModelStatus, model::ModelVersion};

use super::*;
use chrono::DateTime;
use leitwerk_crds::experiment::ExperimentStatus;
use leitwerk_crds::experiment::VariantRole;
use leitwerk_crds::model::VersionState;

fn canary() -> Experiment {
    let mut e: Experiment = yaml_serde::from_str(include_str!(
        "../../../../examples/canary-rollout/experiment.yaml"
    ))
    .unwrap();
    e.metadata.namespace = Some("sales".into());
    e.metadata.name = Some("lead-scoring-canary".into());
    e.metadata.uid = Some("uid-1".into());
    e
}

fn bandit() -> Experiment {
    let mut e: Experiment = yaml_serde::from_str(include_str!(
        "../../../../examples/creative-bandit/experiment.yaml"
    ))
    .unwrap();
    e.metadata.namespace = Some("sales".into());
    e
}

fn version(v: &str, state: &str) -> ModelVersion {
    ModelVersion {
        version: v.to_string(),
        state: state.parse().unwrap(),
        artifact_url: Some(format!("file:///store/m/{v}/model.onnx")),
        artifact_digest: Some(format!("sha256:{}", v.repeat(3))),
        ..Default::default()
    }
}

fn model_with(versions: &[(&str, &str)]) -> Model {
    let mut m: Model =
        yaml_serde::from_str(include_str!("../../../../examples/lead-scoring/model.yaml")).unwrap();
    m.metadata.namespace = Some("sales".into());
    let versions: Vec<ModelVersion> = versions.iter().map(|(v, s)| version(v, s)).collect();
    m.status = Some(ModelStatus {
        serving_version: versions
            .iter()
            .find(|v| v.state == VersionState::Serving)
            .map(|v| v.version.clone()),
        versions: versions.into(),
        ..Default::default()
    });
    m
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A canary that has started on v1 (stable) and v2 (candidate).
fn started() -> (Experiment, ExperimentStatus) {
    let exp = canary();
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let mut status = ExperimentStatus {
        variants: resolve(&exp, &[Some(m.clone()), Some(m)]).unwrap(),
        ..Default::default()
    };
    start(&exp, &mut status, now());
    (exp, status)
}

/// Readings of both KPIs for both variants: conversion rate and samples, CPA.
fn readings(stable_rate: f64, canary_rate: f64, samples: f64) -> Measurements {
    let mut m = Measurements::default();
    for (variant, rate) in [("stable", stable_rate), ("canary", canary_rate)] {
        m.kpis.insert(
            ("conversion-rate".into(), variant.into()),
            (Ok(Some(rate)), Ok(Some(samples))),
        );
        m.kpis
            .insert(("cpa".into(), variant.into()), (Ok(Some(20.0)), Ok(None)));
    }
    m
}

#[test]
fn a_missing_model_names_the_variant_and_field() {
    let outcome = resolve(&canary(), &[None, None]).unwrap_err();
    assert_eq!(outcome.ready.reason, "ModelNotFound");
    assert!(
        outcome
            .ready
            .message
            .contains("spec.variants[0].modelRef.name")
            && outcome.ready.message.contains("\"stable\"")
    );
}

#[test]
fn variants_resolve_to_serving_and_newest_candidate_versions_with_digests() {
    let none = model_with(&[]);
    assert_eq!(
        resolve(&canary(), &[Some(none.clone()), Some(none)])
            .unwrap_err()
            .ready
            .reason,
        "WaitingForVersions"
    );
    let only_serving = model_with(&[("v1", "Serving")]);
    let waiting =
        resolve(&canary(), &[Some(only_serving.clone()), Some(only_serving)]).unwrap_err();
    assert!(
        waiting.ready.message.contains("newest Candidate"),
        "{}",
        waiting.ready.message
    );
    let m = model_with(&[
        ("v1", "Retired"),
        ("v2", "Serving"),
        ("v3", "Candidate"),
        ("v4", "Rejected"),
    ]);
    let v = resolve(&canary(), &[Some(m.clone()), Some(m.clone())]).unwrap();
    assert_eq!((v[0].version.as_str(), v[1].version.as_str()), ("v2", "v3"));
    assert_eq!(
        v[1].artifact_url.as_deref(),
        Some("file:///store/m/v3/model.onnx#sha256:v3v3v3")
    );
    let mut pinned = canary();
    pinned.spec.variants[1].version = Some("v4".into());
    let rejected = resolve(&pinned, &[Some(m.clone()), Some(m)]).unwrap_err();
    assert!(
        rejected.ready.message.contains("Rejected"),
        "{}",
        rejected.ready.message
    );
}

#[test]
fn semantic_mistakes_are_all_reported_with_their_fields() {
    assert_eq!(validate(&canary().spec), Ok(()));
    assert_eq!(validate(&bandit().spec), Ok(()));
    let mut spec = canary().spec;
    spec.interval = "2s".into();
    spec.kpis[0].query = "sum(x{v=\"{{version}}\"})".into();
    spec.kpis[1].min_samples = Some(10);
    let fields: Vec<String> = validate(&spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        vec![
            "spec.interval",
            "spec.kpis[0].query",
            "spec.kpis[1].sampleQuery"
        ]
    );
    let mut blind = canary().spec;
    blind.kpis.clear();
    blind.drift_gate = None;
    assert_eq!(validate(&blind).unwrap_err()[0].field, "spec.kpis");
    let mut all_at_once = canary().spec;
    all_at_once.strategy.canary =
        Some(leitwerk_crds::experiment::CanaryStrategy { steps: vec![100] });
    assert_eq!(
        validate(&all_at_once).unwrap_err()[0].field,
        "spec.strategy.canary.steps"
    );
    let mut two = canary().spec;
    two.variants[0].role = VariantRole::Candidate;
    assert_eq!(validate(&two).unwrap_err()[0].field, "spec.variants");
    let mut uncounted = bandit().spec;
    uncounted.kpis[0].sample_query = None;
    assert_eq!(
        validate(&uncounted).unwrap_err()[0].field,
        "spec.kpis[0].sampleQuery"
    );
}

/// The serving container's arguments of a variant Deployment.
fn args_of(d: &k8s_openapi::api::apps::v1::Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

mod arms;
mod canary;
mod shadow;
mod steering;
