//! Steering by hand: each `leitwerk.dev/control` request once, recorded with who asked;
//! requests that do not fit the state are refused and change nothing.

use super::*;
use crate::controllers::experiment::steer::{Control, handled, paused_by_request, pending, steer};
use leitwerk_crds::experiment::{Decision, ExperimentPhase, PauseReason};
use leitwerk_crds::labels::{CONTROL, REQUESTED_BY};

fn asked(mut exp: Experiment, value: &str) -> Experiment {
    let a = exp.metadata.annotations.get_or_insert_default();
    a.insert(CONTROL.into(), value.into());
    a.insert(REQUESTED_BY.into(), "ana@example.com".into());
    exp
}

/// Reads and carries out the pending request, marking it handled as the reconcile does.
fn run(exp: &Experiment, status: &mut ExperimentStatus) -> Result<Decision, String> {
    let request = pending(exp, status).expect("a pending request")?;
    let result = steer(exp, status, &request, now());
    let note = result
        .as_ref()
        .map_or_else(|e| e.clone(), |d| d.message.clone());
    handled(status, &request.value, request.by.clone(), note, now());
    result
}

#[test]
fn abort_sends_all_traffic_to_stable_at_once_and_names_who_asked() {
    let (exp, mut status) = started();
    let exp = asked(exp, "abort:1");
    let d = run(&exp, &mut status).unwrap();
    assert_eq!(d.action, DecisionAction::RollBack);
    assert_eq!(d.requested_by.as_deref(), Some("ana@example.com"));
    assert!(
        d.message.contains("aborted by ana@example.com"),
        "{}",
        d.message
    );
    assert_eq!(status.phase, Some(ExperimentPhase::RolledBack));
    assert_eq!(status.weights.get("canary"), Some(&0));
    assert_eq!(status.weights.get("stable"), Some(&100));
    assert_eq!(status.decisions.last(), Some(&d));
    // Handled once: the same value asks nothing again.
    assert!(pending(&exp, &status).is_none());
}

#[test]
fn promote_skips_the_remaining_steps_of_a_canary_and_only_a_canary() {
    let (exp, mut status) = started();
    let d = run(&asked(exp, "promote:1"), &mut status).unwrap();
    assert_eq!(d.action, DecisionAction::Promote);
    assert_eq!(status.phase, Some(ExperimentPhase::Promoted));
    assert_eq!(status.winner.as_deref(), Some("canary"));
    assert_eq!(status.weights.get("canary"), Some(&100));
    // Promoting what has ended is refused, and changes nothing.
    let (exp, mut status) = started();
    run(&asked(exp.clone(), "abort:1"), &mut status).unwrap();
    let before = status.clone();
    let err = run(&asked(exp, "promote:2"), &mut status).unwrap_err();
    assert!(err.contains("RolledBack") && err.contains("retry"), "{err}");
    assert_eq!(status.weights, before.weights);
    assert_eq!(status.phase, before.phase);
    assert!(
        status
            .last_control
            .as_ref()
            .is_some_and(|c| c.request == "promote:2"),
        "a refused request is handled too, so it is not refused again on every reconcile"
    );
    let mut b = bandit();
    b.metadata.uid = Some("uid-2".into());
    let mut bs = ExperimentStatus {
        phase: Some(ExperimentPhase::Progressing),
        analysis: Some(Default::default()),
        ..Default::default()
    };
    let err = run(&asked(b, "promote:1"), &mut bs).unwrap_err();
    assert!(err.contains("Canary"), "{err}");
}

#[test]
fn a_paused_analysis_waits_for_resume_whatever_the_evidence() {
    let (exp, mut status) = started();
    let weights = status.weights.clone();
    let d = run(&asked(exp.clone(), "pause:1"), &mut status).unwrap();
    assert_eq!(d.action, DecisionAction::Pause);
    assert!(paused_by_request(&status));
    assert_eq!(
        status.analysis.as_ref().and_then(|a| a.pause_reason),
        Some(PauseReason::Requested)
    );
    assert_eq!(status.weights, weights, "the weights stay");
    // Resume: progressing again, the next analysis an interval away.
    let d = run(&asked(exp.clone(), "resume:2"), &mut status).unwrap();
    assert_eq!(d.action, DecisionAction::Resume);
    assert_eq!(status.phase, Some(ExperimentPhase::Progressing));
    assert!(!paused_by_request(&status));
    let next = status
        .analysis
        .as_ref()
        .and_then(|a| a.next_analysis.clone());
    assert!(next.is_some_and(|n| n > now().to_rfc3339()));
    // Resuming what is not paused is refused.
    let err = run(&asked(exp, "resume:3"), &mut status).unwrap_err();
    assert!(err.contains("not Paused"), "{err}");
}

#[test]
fn retry_starts_an_ended_experiment_again_and_nothing_else() {
    let (exp, mut status) = started();
    let err = run(&asked(exp.clone(), "retry:1"), &mut status).unwrap_err();
    assert!(err.contains("abort it first"), "{err}");
    run(&asked(exp.clone(), "abort:2"), &mut status).unwrap();
    let d = run(&asked(exp, "retry:3"), &mut status).unwrap();
    assert_eq!(d.action, DecisionAction::Retry);
    assert!(
        status.analysis.is_none(),
        "the next reconcile starts afresh"
    );
    assert_eq!(status.phase, None);
    assert_eq!(
        status.decisions.len(),
        3,
        "Start, RollBack, Retry: history stays ({:?})",
        status.decisions
    );
}

#[test]
fn an_unknown_action_is_named_with_the_ones_there_are() {
    let (exp, status) = started();
    let err = pending(&asked(exp, "rollback:1"), &status)
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("\"rollback\"") && err.contains("abort, promote, pause, resume or retry"),
        "{err}"
    );
    let (exp, status) = started();
    let r = pending(&asked(exp, "pause"), &status).unwrap().unwrap();
    assert_eq!(r.control, Control::Pause, "the nonce is optional");
}
