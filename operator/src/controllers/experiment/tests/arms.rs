//! Bandit posteriors, holdout lift, and how weights reach traffic.

use super::*;
use leitwerk_crds::experiment::ExperimentStatus;
use leitwerk_crds::experiment::VariantRole;
use std::collections::BTreeMap;

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
    let args = args_of(deployment);
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
