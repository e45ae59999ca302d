use leitwerk_crds::{ModelStatus, model::ModelVersion};

use super::*;

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
fn a_canary_walks_its_steps_on_passing_evidence_and_promotes_at_the_end() {
    let (exp, mut status) = started();
    assert_eq!(
        status.weights,
        BTreeMap::from([("stable".into(), 95), ("canary".into(), 5)])
    );
    assert_eq!(status.step.as_deref(), Some("1/5"));
    let mut t = now();
    for (i, expected) in [10, 25, 50].iter().enumerate() {
        t += chrono::Duration::minutes(10);
        let d = analyse(&exp, &mut status, &readings(0.10, 0.11, 600.0), t);
        assert_eq!(d.action, DecisionAction::Advance, "{d:?}");
        assert_eq!(status.weights["canary"], *expected);
        assert_eq!(status.step, Some(format!("{}/5", i + 2)));
        assert_eq!(d.values["conversion-rate/canary"], 0.11);
        assert_eq!(
            d.thresholds["conversion-rate/canary/min"], 0.095,
            "0.95 × stable 0.10"
        );
    }
    let d = analyse(
        &exp,
        &mut status,
        &readings(0.10, 0.11, 600.0),
        t + chrono::Duration::minutes(10),
    );
    assert_eq!(
        d.action,
        DecisionAction::Promote,
        "passing at 50 % promotes: 100 % is the promotion"
    );
    assert_eq!(status.step.as_deref(), Some("5/5"));

    assert_eq!(status.phase.as_deref(), Some("Promoted"));
    assert_eq!(status.winner.as_deref(), Some("canary"));
    assert_eq!(status.weights["canary"], 100);
    let outcome = outcome_of(&exp, &status, t);
    assert_eq!(
        (outcome.phase, outcome.ready.reason.as_str()),
        ("Promoted", "Promoted")
    );
}

#[test]
fn a_breached_gate_rolls_back_at_once_with_the_evidence() {
    let (exp, mut status) = started();
    let d = analyse(
        &exp,
        &mut status,
        &readings(0.10, 0.05, 600.0),
        now() + chrono::Duration::minutes(10),
    );
    assert_eq!(d.action, DecisionAction::RollBack);
    assert!(
        d.message
            .contains("conversion-rate/canary 0.0500 breaches ≥ 0.0950"),
        "{}",
        d.message
    );
    assert_eq!(
        status.weights,
        BTreeMap::from([("stable".into(), 100), ("canary".into(), 0)])
    );
    assert_eq!(status.phase.as_deref(), Some("RolledBack"));
    assert_eq!(status.decisions.len(), 2, "Start and RollBack");
    assert!(
        status
            .last_decision
            .as_deref()
            .unwrap_or_default()
            .starts_with("RollBack: ")
    );
}

#[test]
fn missing_data_never_promotes_pauses_past_the_limit_and_resumes() {
    let (exp, mut status) = started();
    let mut t = now();
    // Too few samples: inconclusive, three tolerated, the fourth pauses.
    for i in 0..4 {
        t += chrono::Duration::minutes(10);
        let d = analyse(&exp, &mut status, &readings(0.10, 0.2, 10.0), t);
        assert_eq!(
            status.weights["canary"], 5,
            "never advances without evidence"
        );
        assert_eq!(
            d.action.as_str(),
            if i < 3 { "Hold" } else { "Pause" },
            "{d:?}"
        );
    }
    assert_eq!(status.phase.as_deref(), Some("Paused"));
    let paused = outcome_of(&exp, &status, t);
    assert_eq!(paused.ready.reason, "InsufficientData");
    assert!(
        paused
            .conditions
            .iter()
            .any(|c| c.type_ == PAUSED && c.status)
    );
    // Prometheus down: errors, then the pause says so.
    let down = Measurements::failed("connection refused".into());
    for _ in 0..4 {
        t += chrono::Duration::minutes(10);
        analyse(&exp, &mut status, &down, t);
    }
    assert_eq!(
        outcome_of(&exp, &status, t).ready.reason,
        "PrometheusUnavailable"
    );
    assert_eq!(status.weights["canary"], 5);
    // Data returns: the canary moves on by itself.
    t += chrono::Duration::minutes(10);
    let d = analyse(&exp, &mut status, &readings(0.10, 0.11, 600.0), t);
    assert_eq!(
        (d.action.as_str(), status.phase.as_deref()),
        ("Advance", Some("Progressing"))
    );
}

#[test]
fn input_drift_of_the_candidate_rolls_back() {
    let (mut exp, mut status) = started();
    exp.spec.drift_gate = Some(leitwerk_crds::experiment::DriftGate {
        max_psi: 0.25,
        max_js_divergence: 0.1,
        features: vec![],
        min_rows: 100,
        window: None,
    });
    let mut m = readings(0.10, 0.11, 600.0);
    m.drift.insert(
        "canary".into(),
        Ok(vec![FeatureDrift {
            feature: "visits_30d".into(),
            metric: "psi",
            value: 1.7,
            rows: 500.0,
        }]),
    );
    let d = analyse(&exp, &mut status, &m, now() + chrono::Duration::minutes(10));
    assert_eq!(d.action, DecisionAction::RollBack);
    assert!(
        d.message.contains("visits_30d PSI 1.700 > 0.25"),
        "{}",
        d.message
    );
    assert_eq!(status.drift[0].value, 1.7);
    assert_eq!(d.values["drift/canary/visits_30d"], 1.7);
}

#[test]
fn a_bandit_reweights_by_posterior_and_promotes_a_clear_winner() {
    let exp = bandit();
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate"), ("v3", "Candidate")]);
    let mut status = ExperimentStatus {
        variants: resolve(&exp, &[Some(m.clone()), Some(m.clone()), Some(m)]).unwrap(),
        ..Default::default()
    };
    start(&exp, &mut status, now());
    assert_eq!(status.weights.values().sum::<i32>(), 100);
    let round = |rates: [f64; 3], trials: f64| {
        let mut m = Measurements::default();
        for (v, r) in ["v1", "v2", "v3"].iter().zip(rates) {
            m.kpis.insert(
                ("signup-rate".into(), v.to_string()),
                (Ok(Some(r)), Ok(Some(trials))),
            );
        }
        m
    };
    let mut t = now();
    t += chrono::Duration::minutes(5);
    let d = analyse(&exp, &mut status, &round([0.05, 0.08, 0.05], 300.0), t);
    assert_eq!(d.action, DecisionAction::Reweight, "{d:?}");
    assert!(
        status.weights["v2"] > status.weights["v1"],
        "{:?}",
        status.weights
    );
    assert!(status.weights.values().all(|w| *w >= 5), "floor weight");
    assert_eq!(status.arms[1].trials, 300.0);
    assert_eq!(status.arms[1].alpha, 25.0, "1 + 0.08 × 300");
    // The posteriors persist: a restarted operator continues from them.
    let restored: ExperimentStatus =
        serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
    status = restored;
    let mut last = d;
    for _ in 0..20 {
        t += chrono::Duration::minutes(5);
        last = analyse(&exp, &mut status, &round([0.05, 0.08, 0.05], 300.0), t);
        if last.action == DecisionAction::Promote {
            break;
        }
    }
    assert_eq!(last.action, DecisionAction::Promote, "{last:?}");
    assert_eq!(status.winner.as_deref(), Some("v2"));
    assert!(status.arms[1].trials >= 2000.0, "minSamples 2000");
}

#[test]
fn a_holdout_reports_lift_with_an_interval() {
    let mut exp = canary();
    exp.spec.strategy = yaml_serde::from_str(
        "type: Holdout\nholdout: {percent: 10, controlVariant: control, kpi: conversion-rate}",
    )
    .unwrap();
    exp.spec.variants[1].name = "control".into();
    exp.spec.variants[1].role = VariantRole::Control;
    assert_eq!(validate(&exp.spec), Ok(()));
    let m = model_with(&[("v1", "Retired"), ("v2", "Serving")]);
    let mut status = ExperimentStatus {
        variants: resolve(&exp, &[Some(m.clone()), Some(m)]).unwrap(),
        ..Default::default()
    };
    assert_eq!(
        status.variants[1].version, "v1",
        "control takes the version served before"
    );
    start(&exp, &mut status, now());
    assert_eq!(
        status.weights,
        BTreeMap::from([("stable".into(), 90), ("control".into(), 10)])
    );
    let mut reading = Measurements::default();
    reading.kpis.insert(
        ("conversion-rate".into(), "stable".into()),
        (Ok(Some(0.12)), Ok(Some(9000.0))),
    );
    reading.kpis.insert(
        ("conversion-rate".into(), "control".into()),
        (Ok(Some(0.10)), Ok(Some(1000.0))),
    );
    let d = analyse(
        &exp,
        &mut status,
        &reading,
        now() + chrono::Duration::minutes(10),
    );
    assert_eq!(d.action, DecisionAction::Measure);
    let h = status.holdout.clone().unwrap();
    assert_eq!((h.model_rate, h.control_rate, h.lift), (0.12, 0.1, 0.02));
    assert!(
        h.lift_lower < 0.02 && h.lift_upper > 0.02 && h.lift_lower > -0.01,
        "{h:?}"
    );
    assert_eq!(
        status.weights["control"], 10,
        "the holdout share stays fixed"
    );
}

#[test]
fn weights_reach_traffic_as_route_weights_and_replicas() {
    let (exp, status) = started();
    let route = http_route(&exp, &status);
    let backends = &route["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends[0]["name"], "lead-scoring-canary-stable");
    assert_eq!(
        (
            backends[0]["weight"].as_i64(),
            backends[1]["weight"].as_i64()
        ),
        (Some(95), Some(5))
    );
    assert_eq!(
        route["metadata"]["ownerReferences"][0]["kind"],
        "Experiment"
    );
    assert_eq!(
        (replicas_for(95, 2), replicas_for(5, 2), replicas_for(0, 2)),
        (2, 1, 0)
    );
    assert_eq!((replicas_for(50, 10), replicas_for(5, 20)), (5, 1));
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let config = crate::config::OperatorConfig::default();
    let work = variant_workloads(&exp, &[Some(m.clone()), Some(m)], &status, &config);
    assert_eq!(work.len(), 2);
    let (deployment, service) = &work[1];
    let labels = deployment
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(labels[VARIANT_LABEL], "canary");
    assert!(
        !labels.contains_key("leitwerk.dev/model"),
        "the Model's own Service must not select variant pods"
    );
    let args = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"lead-scoring=v2=file:///store/m/v2/model.onnx#sha256:v2v2v2".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"variant=canary".to_string())
            && args.contains(&"experiment=lead-scoring-canary".to_string())
    );
    assert_eq!(
        service.spec.as_ref().unwrap().selector.as_ref().unwrap()[VARIANT_LABEL],
        "canary"
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

/// Every pair of (what the CPA gate of the canary shows × what the conversion-rate query of
/// the canary returns) at the first analysis of step 1, with failureLimit 0 and three errors
/// and three inconclusive analyses tolerated: the action and which counter moved.
#[test]
fn a_breach_decides_whatever_the_other_queries_return_and_nan_is_no_data_but_infinity_is_a_value() {
    type Reading = Result<Option<f64>, String>;
    let gate: [(&str, Reading); 6] = [
        ("passes", Ok(Some(20.0))),
        ("breaches", Ok(Some(30.0))),
        ("is +Inf (no conversions)", Ok(Some(f64::INFINITY))),
        ("is NaN (0/0)", Ok(Some(f64::NAN))),
        ("has no data", Ok(None)),
        ("query fails", Err("context deadline exceeded".into())),
    ];
    let other: [(&str, Reading); 3] = [
        ("answers", Ok(Some(0.11))),
        ("has no data", Ok(None)),
        ("query fails", Err("connection refused".into())),
    ];
    // (action, consecutive errors, inconclusive) per row of `gate`, column of `other`.
    let expected = [
        [("Advance", 0, 0), ("Hold", 0, 1), ("Hold", 1, 0)],
        [("RollBack", 0, 0), ("RollBack", 0, 0), ("RollBack", 0, 0)],
        [("RollBack", 0, 0), ("RollBack", 0, 0), ("RollBack", 0, 0)],
        [("Hold", 0, 1), ("Hold", 0, 1), ("Hold", 1, 0)],
        [("Hold", 0, 1), ("Hold", 0, 1), ("Hold", 1, 0)],
        [("Hold", 1, 0), ("Hold", 1, 0), ("Hold", 1, 0)],
    ];
    for (row, (gate_says, cpa)) in gate.iter().enumerate() {
        for (column, (other_says, rate)) in other.iter().enumerate() {
            let (exp, mut status) = started();
            let mut m = readings(0.10, 0.11, 600.0);
            m.kpis
                .insert(("cpa".into(), "canary".into()), (cpa.clone(), Ok(None)));
            m.kpis.insert(
                ("conversion-rate".into(), "canary".into()),
                (rate.clone(), Ok(Some(600.0))),
            );
            let d = analyse(&exp, &mut status, &m, now() + chrono::Duration::minutes(10));
            let a = status.analysis.clone().unwrap_or_default();
            assert_eq!(
                (d.action.as_str(), a.consecutive_errors, a.inconclusive),
                expected[row][column],
                "CPA {gate_says}, conversion rate {other_says}: {}",
                d.message
            );
            if d.action == DecisionAction::RollBack {
                assert_eq!(status.weights["canary"], 0, "{gate_says}/{other_says}");
                assert!(d.message.contains("cpa/canary"), "{}", d.message);
            }
            // The status must read back: JSON has no infinity.
            let json = serde_json::to_string(&status).unwrap();
            let back: ExperimentStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back.decisions.len(), status.decisions.len());
        }
    }
}

#[test]
fn a_drift_gate_does_not_judge_a_handful_of_rows() {
    let (mut exp, mut status) = started();
    exp.spec.drift_gate = Some(leitwerk_crds::experiment::DriftGate {
        max_psi: 0.25,
        max_js_divergence: 0.1,
        features: Vec::new(),
        min_rows: 100,
        window: None,
    });
    let mut m = readings(0.10, 0.11, 600.0);
    m.drift.insert(
        "canary".into(),
        Ok(vec![FeatureDrift {
            feature: "visits".into(),
            metric: "psi",
            value: 2.5,
            rows: 40.0,
        }]),
    );
    let d = analyse(&exp, &mut status, &m, now() + chrono::Duration::minutes(10));
    assert_eq!(d.action, DecisionAction::Hold, "{d:?}");
    assert!(
        d.message.contains("drift/canary: 40 of 100 serving rows"),
        "{}",
        d.message
    );
    if let Ok(features) = m.drift.get_mut("canary").unwrap() {
        features[0].rows = 100.0;
    }
    let d = analyse(&exp, &mut status, &m, now() + chrono::Duration::minutes(20));
    assert_eq!(d.action, DecisionAction::RollBack, "{d:?}");
}
