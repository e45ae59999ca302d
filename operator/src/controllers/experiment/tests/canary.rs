//! The canary: steps, breaches, missing data, drift, and every pair of gate result and query
//! outcome.

use super::*;
use crate::analysis::drift::FeatureDrift;
use leitwerk_crds::experiment::ExperimentStatus;
use std::collections::BTreeMap;

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

    assert_eq!(status.phase.map(|p| p.as_str()), Some("Promoted"));
    assert_eq!(status.winner.as_deref(), Some("canary"));
    assert_eq!(status.weights["canary"], 100);
    let outcome = outcome_of(&exp, &status, t);
    assert_eq!(
        (outcome.phase.as_str(), outcome.ready.reason.as_str()),
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
    assert_eq!(status.phase.map(|p| p.as_str()), Some("RolledBack"));
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
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Paused"));
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
        (d.action.as_str(), status.phase.map(|p| p.as_str())),
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
            metric: leitwerk_crds::model::DriftMetric::Psi,
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
            metric: leitwerk_crds::model::DriftMetric::Psi,
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
