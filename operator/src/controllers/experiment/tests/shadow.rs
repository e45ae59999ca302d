//! The shadow stage: who mirrors, what the children look like while shadowing, and how the
//! comparison's gates send the candidate on into its canary or retire it.

use super::*;
use leitwerk_crds::experiment::{ExperimentPhase, ExperimentStatus};
use std::collections::BTreeMap;

fn shadow_example() -> Experiment {
    let mut e: Experiment = yaml_serde::from_str(include_str!(
        "../../../../../examples/shadow-rollout/experiment.yaml"
    ))
    .unwrap();
    e.metadata.namespace = Some("sales".into());
    e.metadata.uid = Some("uid-2".into());
    e
}

/// The example (agreement gate: the stable server tees) started on v1 and v2, routed by an
/// HTTPRoute.
fn shadowing_started(exp: &Experiment) -> ExperimentStatus {
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let mut status = ExperimentStatus {
        variants: resolve(exp, &[Some(m.clone()), Some(m)]).unwrap(),
        routing: Some("HTTPRoute".into()),
        ..Default::default()
    };
    start(exp, &mut status, now());
    status
}

/// A comparison of `rows` rows with the candidate's scores at `psi` from stable's.
fn compared(rows: f64, psi: f64) -> Measurements {
    Measurements {
        shadow: Some(Ok(ShadowReading {
            rows,
            score_psi: Some(psi),
            agreement: Some(0.97),
            stable_latency: (Some(0.002), Some(0.004)),
            candidate_latency: (Some(0.002), Some(0.005)),
            error_rate: Some(0.0),
        })),
        ..Default::default()
    }
}

fn replicas_of(d: &k8s_openapi::api::apps::v1::Deployment) -> i32 {
    d.spec.as_ref().unwrap().replicas.unwrap_or(0)
}

#[test]
fn a_shadow_starts_with_every_caller_on_stable_and_a_copy_for_the_candidate() {
    let exp = shadow_example();
    let status = shadowing_started(&exp);
    assert_eq!(
        status.weights,
        BTreeMap::from([("stable".into(), 100), ("candidate".into(), 0)])
    );
    assert_eq!(status.phase, Some(ExperimentPhase::Shadowing));
    assert_eq!(status.step.as_deref(), Some("shadow"));
    let shadow = status.shadow.clone().unwrap();
    // minAgreement needs both answers to one request: the stable server tees.
    assert_eq!(
        (shadow.mirror.as_str(), shadow.stage.as_str()),
        ("StableServer", MIRRORING)
    );
    assert_eq!(shadow_mirror(&exp, &status), Some(Mirror::StableServer));

    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let config = crate::config::OperatorConfig::default();
    let work = variant_workloads(&exp, &[Some(m.clone()), Some(m)], &status, &config);
    let (stable, candidate) = (&work[0].0, &work[1].0);
    // The candidate at weight 0 still runs, with stable's replicas: it scores all traffic.
    assert_eq!((replicas_of(stable), replicas_of(candidate)), (2, 2));
    let args = args_of(stable).join(" ");
    assert!(
        args.contains("--shadow http://lead-scoring-shadow-candidate.sales.svc:8080")
            && args.contains("--shadow-threshold 0.5")
            && !args.contains("--shadow-model"),
        "{args}"
    );
    assert!(!args_of(candidate).join(" ").contains("--shadow"));
    // The tee mirrors: the route carries no mirror filter of its own.
    let route = http_route(&exp, &status);
    assert!(route["spec"]["rules"][0]["filters"].is_null(), "{route}");
}

#[test]
fn without_an_agreement_gate_the_gateway_mirrors_through_the_http_route() {
    let mut exp = shadow_example();
    if let Some(s) = exp.spec.strategy.shadow.as_mut() {
        s.min_agreement = None;
    }
    let status = shadowing_started(&exp);
    assert_eq!(shadow_mirror(&exp, &status), Some(Mirror::HttpRoute));
    assert_eq!(status.shadow.as_ref().unwrap().mirror, "HTTPRoute");
    let route = http_route(&exp, &status);
    let rule = &route["spec"]["rules"][0];
    assert_eq!(rule["filters"][0]["type"], "RequestMirror");
    assert_eq!(
        rule["filters"][0]["requestMirror"]["backendRef"]["name"],
        "lead-scoring-shadow-candidate"
    );
    assert_eq!(rule["backendRefs"][0]["weight"], 100);
    assert_eq!(rule["backendRefs"][1]["weight"], 0);
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let config = crate::config::OperatorConfig::default();
    let work = variant_workloads(&exp, &[Some(m.clone()), Some(m.clone())], &status, &config);
    assert!(!args_of(&work[0].0).join(" ").contains("--shadow"));
    // Without a Gateway API the stable server tees again.
    let mut replica = status.clone();
    replica.routing = Some("ReplicaRatio".into());
    assert_eq!(shadow_mirror(&exp, &replica), Some(Mirror::StableServer));
    // A candidate that is another Model is asked under its own name, by the tee.
    let mut other = exp.clone();
    other.spec.variants[1].model_ref.name = "lead-scoring-rules".into();
    assert_eq!(shadow_mirror(&other, &status), Some(Mirror::StableServer));
    let rules = model_with(&[("v2", "Candidate")]);
    let mut rules = rules;
    rules.metadata.name = Some("lead-scoring-rules".into());
    let work = variant_workloads(&other, &[Some(m), Some(rules)], &status, &config);
    assert!(
        args_of(&work[0].0)
            .join(" ")
            .contains("--shadow-model lead-scoring-rules"),
        "{:?}",
        args_of(&work[0].0)
    );
}

#[test]
fn a_passed_shadow_hands_the_candidate_to_its_canary() {
    let exp = shadow_example();
    let mut status = shadowing_started(&exp);
    let t = now() + chrono::Duration::minutes(10);
    let d = analyse(&exp, &mut status, &compared(5000.0, 0.02), t);
    assert_eq!(d.action, DecisionAction::Advance, "{}", d.message);
    assert!(d.message.starts_with("the shadow passed"), "{}", d.message);
    assert_eq!(d.values["shadow/score-psi/candidate"], 0.02);
    assert_eq!(d.values["shadow/rows/candidate"], 5000.0);
    assert_eq!(
        status.weights,
        BTreeMap::from([("stable".into(), 90), ("candidate".into(), 10)])
    );
    assert_eq!(status.phase, Some(ExperimentPhase::Progressing));
    assert_eq!(status.step.as_deref(), Some("1/3"));
    let shadow = status.shadow.clone().unwrap();
    assert_eq!((shadow.rows, shadow.score_psi), (5000.0, Some(0.02)));
    assert_eq!(shadow.candidate_p99_seconds, Some(0.005));
    settle_shadow(&exp.spec, &mut status);
    assert_eq!(status.shadow.as_ref().unwrap().stage, PASSED);
    // Out of the shadow: no tee, the candidate's replicas follow its weight, and the canary is
    // judged on its KPIs (none measured here: a Hold, never a promotion).
    assert_eq!(shadow_mirror(&exp, &status), None);
    let m = model_with(&[("v1", "Serving"), ("v2", "Candidate")]);
    let config = crate::config::OperatorConfig::default();
    let work = variant_workloads(&exp, &[Some(m.clone()), Some(m)], &status, &config);
    assert!(!args_of(&work[0].0).join(" ").contains("--shadow"));
    let d = analyse(
        &exp,
        &mut status,
        &Measurements::default(),
        t + chrono::Duration::minutes(10),
    );
    assert_eq!(d.action, DecisionAction::Hold, "{}", d.message);
}

#[test]
fn a_shadow_straight_to_one_hundred_promotes_when_it_passes() {
    let mut exp = shadow_example();
    if let Some(s) = exp.spec.strategy.shadow.as_mut() {
        s.canary_steps = vec![100];
    }
    let mut status = shadowing_started(&exp);
    let d = analyse(&exp, &mut status, &compared(5000.0, 0.02), now());
    assert_eq!(d.action, DecisionAction::Promote, "{}", d.message);
    assert_eq!(status.phase, Some(ExperimentPhase::Promoted));
    assert_eq!(status.winner.as_deref(), Some("candidate"));
    assert_eq!(status.step.as_deref(), Some("1/1"));
}

#[test]
fn a_candidate_that_scores_unlike_stable_is_retired_without_answering_anyone() {
    let exp = shadow_example();
    let mut status = shadowing_started(&exp);
    let d = analyse(&exp, &mut status, &compared(5000.0, 0.6), now());
    assert_eq!(d.action, DecisionAction::RollBack, "{}", d.message);
    assert!(
        d.message
            .contains("shadow-score-psi/candidate 0.6000 breaches ≤ 0.1000")
            && d.message.contains("retired in the shadow"),
        "{}",
        d.message
    );
    assert_eq!(status.phase, Some(ExperimentPhase::RolledBack));
    assert_eq!(status.weights["candidate"], 0);
    settle_shadow(&exp.spec, &mut status);
    assert_eq!(status.shadow.as_ref().unwrap().stage, RETIRED);
    // Every other gate breaches on its own too.
    for (reading, gate) in [
        (
            ShadowReading {
                agreement: Some(0.5),
                ..reading_ok()
            },
            "shadow-agreement/candidate 0.5000 breaches ≥ 0.9000",
        ),
        (
            ShadowReading {
                candidate_latency: (Some(0.01), Some(0.05)),
                ..reading_ok()
            },
            "shadow-p99-ratio/candidate 12.5000 breaches ≤ 1.5000",
        ),
        (
            ShadowReading {
                error_rate: Some(0.2),
                ..reading_ok()
            },
            "shadow-error-rate/candidate 0.2000 breaches ≤ 0.0050",
        ),
    ] {
        let mut status = shadowing_started(&exp);
        let m = Measurements {
            shadow: Some(Ok(reading)),
            ..Default::default()
        };
        let d = analyse(&exp, &mut status, &m, now());
        assert_eq!(d.action, DecisionAction::RollBack, "{}", d.message);
        assert!(d.message.contains(gate), "{gate}: {}", d.message);
    }
}

fn reading_ok() -> ShadowReading {
    match compared(5000.0, 0.02).shadow {
        Some(Ok(r)) => r,
        _ => unreachable!(),
    }
}

#[test]
fn too_few_rows_a_failed_query_or_no_comparison_never_pass_the_shadow() {
    let exp = shadow_example();
    let mut status = shadowing_started(&exp);
    let d = analyse(&exp, &mut status, &compared(40.0, 0.6), now());
    assert_eq!(d.action, DecisionAction::Hold, "{}", d.message);
    assert!(d.message.contains("40 of 1000 samples"), "{}", d.message);
    assert_eq!(status.phase, Some(ExperimentPhase::Shadowing));
    assert_eq!(status.step.as_deref(), Some("shadow"));
    let failed = Measurements {
        shadow: Some(Err("query to http://prometheus failed".into())),
        ..Default::default()
    };
    let d = analyse(&exp, &mut status, &failed, now());
    assert_eq!(d.action, DecisionAction::Hold, "{}", d.message);
    assert!(d.message.contains("query failed"), "{}", d.message);
    let d = analyse(&exp, &mut status, &Measurements::default(), now());
    assert_ne!(d.action, DecisionAction::Advance, "{}", d.message);
    assert_eq!(status.weights["candidate"], 0);
}

#[test]
fn a_shadow_whose_canary_needs_evidence_must_name_a_gate() {
    let exp = shadow_example();
    assert_eq!(validate(&exp.spec), Ok(()));
    let mut blind = exp.spec.clone();
    blind.kpis.clear();
    blind.drift_gate = None;
    let errors = validate(&blind).unwrap_err();
    assert_eq!(errors[0].field, "spec.kpis");
    assert!(errors[0].message.contains("canarySteps: [100]"));
    if let Some(s) = blind.strategy.shadow.as_mut() {
        s.canary_steps = vec![100];
    }
    assert_eq!(validate(&blind), Ok(()));
}

#[test]
fn score_shares_come_from_cumulative_buckets_in_edge_order() {
    let series = |pairs: &[(&str, f64)]| -> Vec<crate::prom::Series> {
        pairs
            .iter()
            .map(|(le, v)| {
                (
                    std::collections::HashMap::from([("le".to_string(), le.to_string())]),
                    *v,
                )
            })
            .collect()
    };
    let stable = series(&[("+Inf", 10.0), ("0.5", 4.0), ("0.25", 1.0)]);
    assert_eq!(shares(&stable), Some(vec![1.0, 3.0, 6.0]));
    assert_eq!(shares(&series(&[("0.5", 0.0), ("+Inf", 0.0)])), None);
}
