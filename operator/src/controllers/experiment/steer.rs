//! Steering an Experiment by hand, the way `kubectl argo rollouts` steers a Rollout, but
//! declaratively: the annotation `leitwerk.dev/control: <action>:<nonce>` (with
//! `leitwerk.dev/requested-by: <who>`) asks for one of
//! - `abort`: all traffic back to the stable variant now (RolledBack);
//! - `promote`: the canary wins now, skipping its remaining steps (Promoted);
//! - `pause`: no more analyses and the weights stay, until `resume`;
//! - `resume`: the analysis continues, the next one an interval from now;
//! - `retry`: an Experiment that ended starts again, its variants resolved anew (a newer
//!   candidate, for example).
//!
//! Each request is handled once, recorded as a decision with who asked, and named in
//! `status.lastControl`. Annotations are left alone by GitOps tools that do not declare them,
//! so steering never fights Argo CD or Flux. A request that does not fit the Experiment's
//! state (promoting one that was rolled back) is refused with the reason, and changes
//! nothing. Pure: no Kubernetes.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use leitwerk_crds::Experiment;
use leitwerk_crds::experiment::{
    ControlStatus, Decision, DecisionAction, ExperimentPhase, ExperimentStatus, PauseReason,
    StrategyType,
};
use leitwerk_crds::labels::{CONTROL, REQUESTED_BY};

use super::{
    candidate_name, interval_of, is_terminal, only, pause, record, set_weights, stable_name,
};

/// What can be asked of an Experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// All traffic back to stable, now.
    Abort,
    /// The canary wins now.
    Promote,
    /// Hold the analysis and the weights.
    Pause,
    /// Continue a paused analysis.
    Resume,
    /// Start an ended Experiment again.
    Retry,
}

/// One request read from the annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The annotation's whole value (what makes it unique).
    pub value: String,
    /// The action.
    pub control: Control,
    /// Who asked.
    pub by: Option<String>,
}

/// The request on `exp` that was not handled yet; `Err` names a value that is no action.
pub fn pending(exp: &Experiment, status: &ExperimentStatus) -> Option<Result<Request, String>> {
    let value = exp.annotations().get(CONTROL)?.trim().to_string();
    if value.is_empty()
        || status
            .last_control
            .as_ref()
            .is_some_and(|c| c.request == value)
    {
        return None;
    }
    let action = value.split(':').next().unwrap_or_default();
    let control = match action {
        "abort" => Control::Abort,
        "promote" => Control::Promote,
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "retry" => Control::Retry,
        other => {
            return Some(Err(format!(
                "{CONTROL}={value}: {other:?} is no action on an Experiment; use abort, promote, pause, resume or retry, e.g. promote:$(date +%s)"
            )));
        }
    };
    Some(Ok(Request {
        value,
        control,
        by: exp.annotations().get(REQUESTED_BY).cloned(),
    }))
}

/// Whether someone paused the analysis (and only `resume` continues it).
pub fn paused_by_request(status: &ExperimentStatus) -> bool {
    status.phase == Some(ExperimentPhase::Paused)
        && status
            .analysis
            .as_ref()
            .and_then(|a| a.pause_reason)
            .is_some_and(|r| r == PauseReason::Requested)
}

/// Marks `value` handled with `result`.
pub fn handled(
    status: &mut ExperimentStatus,
    value: &str,
    by: Option<String>,
    result: String,
    now: DateTime<Utc>,
) {
    status.last_control = Some(ControlStatus {
        request: value.to_string(),
        requested_by: by,
        time: now.to_rfc3339(),
        result,
    });
}

/// Carries out `request` on the status: the decision it made, or why it was refused. A
/// `retry` only clears the analysis here; the caller resolves the variants anew and starts.
pub fn steer(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    request: &Request,
    now: DateTime<Utc>,
) -> Result<Decision, String> {
    let spec = &exp.spec;
    let who = request
        .by
        .as_deref()
        .unwrap_or("someone (no leitwerk.dev/requested-by)");
    let phase = status
        .phase
        .map_or_else(|| "not started".to_string(), |p| p.to_string());
    let ended = is_terminal(status);
    let mut decision = Decision {
        time: now.to_rfc3339(),
        step: status.step.clone(),
        requested_by: request.by.clone(),
        ..Decision::default()
    };
    match request.control {
        Control::Abort => {
            if ended || status.analysis.is_none() {
                return Err(format!(
                    "abort: the Experiment is {phase}, there is nothing to abort"
                ));
            }
            let stable = stable_name(spec);
            set_weights(status, only(spec, &stable), now);
            status.phase = Some(ExperimentPhase::RolledBack);
            status.winner = Some(stable.clone());
            decision.action = DecisionAction::RollBack;
            decision.message = format!("aborted by {who}: all traffic back to {stable}");
        }
        Control::Promote => {
            if !matches!(
                spec.strategy.type_,
                StrategyType::Canary | StrategyType::Shadow
            ) {
                return Err(format!(
                    "promote: a {:?} Experiment decides its winner itself; promote applies to a Canary or a Shadow",
                    spec.strategy.type_
                ));
            }
            if ended || status.analysis.is_none() {
                return Err(format!(
                    "promote: the Experiment is {phase}; retry it first"
                ));
            }
            let candidate = candidate_name(spec).unwrap_or_default();
            let steps = super::steps_of(spec).len();
            set_weights(status, only(spec, &candidate), now);
            status.step = Some(super::step_label(spec, steps.saturating_sub(1)));
            status.phase = Some(ExperimentPhase::Promoted);
            status.winner = Some(candidate.clone());
            decision.action = DecisionAction::Promote;
            decision.message = format!(
                "promoted by {who} at step {}, skipping the remaining analysis: {candidate} serves",
                decision.step.clone().unwrap_or_default()
            );
        }
        Control::Pause => {
            if ended || status.analysis.is_none() {
                return Err(format!("pause: the Experiment is {phase}"));
            }
            pause(status, PauseReason::Requested);
            decision.action = DecisionAction::Pause;
            decision.message = format!("paused by {who}: weights stay until resume");
        }
        Control::Resume => {
            if status.phase != Some(ExperimentPhase::Paused) {
                return Err(format!("resume: the Experiment is {phase}, not Paused"));
            }
            let interval = interval_of(spec);
            if let Some(a) = status.analysis.as_mut() {
                a.pause_reason = None;
                a.inconclusive = 0;
                a.consecutive_errors = 0;
                a.next_analysis = Some(
                    (now + chrono::Duration::from_std(interval).unwrap_or_default()).to_rfc3339(),
                );
            }
            status.phase = Some(super::analysing_phase(spec, status));
            decision.action = DecisionAction::Resume;
            decision.message =
                format!("resumed by {who}: next analysis in {}s", interval.as_secs());
        }
        Control::Retry => {
            if !ended {
                return Err(format!(
                    "retry: the Experiment is {phase}; abort it first, or let it end"
                ));
            }
            super::restart(status);
            decision.action = DecisionAction::Retry;
            decision.message =
                format!("retried by {who} after {phase}: variants resolved anew, starting again");
        }
    }
    decision.weights = status.weights.clone();
    record(status, decision.clone());
    Ok(decision)
}
