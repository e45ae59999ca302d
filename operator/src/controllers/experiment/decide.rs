//! One analysis: what the measured KPIs and drift do to counters, weights, evidence and phase
//! (pure: no Kubernetes, no Prometheus).

use leitwerk_crds::model::DriftMetric;

use chrono::{DateTime, Utc};
use leitwerk_crds::{
    Experiment, ExperimentSpec, experiment::AnalysisState, experiment::Decision,
    experiment::DecisionAction, experiment::DriftStatus, experiment::ExperimentPhase,
    experiment::ExperimentStatus, experiment::KpiGate, experiment::PauseReason,
    experiment::StrategyType,
};

use super::{
    Measurements, analyse_bandit, analyse_measure, canary, canary_weights, candidate_name,
    interval_of, only, record, set_weights, stable_name, steps_of,
};
use crate::analysis::canary::Counters;
use crate::analysis::canary::Limits;
use crate::analysis::canary::Move;
use crate::analysis::gates::Analysis;
use crate::analysis::gates::Check;
use crate::analysis::gates::Verdict;
use crate::analysis::gates::judge;
use std::collections::BTreeMap;

/// Runs one analysis on what was measured: updates counters, weights, evidence and phase, and
/// returns the decision (also recorded in the status).
pub fn analyse(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    now: DateTime<Utc>,
) -> Decision {
    let spec = &exp.spec;
    let interval = interval_of(spec);
    let mut state = status.analysis.clone().unwrap_or_default();
    state.analyses += 1;
    state.next_analysis =
        Some((now + chrono::Duration::from_std(interval).unwrap_or_default()).to_rfc3339());
    status.analysis = Some(state.clone());
    let mut values = BTreeMap::new();
    for ((kpi, variant), (v, samples)) in &m.kpis {
        // JSON has no infinity (serde writes null, which would not read back as a number):
        // an infinite KPI is in the decision's message ("inf breaches …") instead.
        if let Ok(Some(x)) = v
            && x.is_finite()
        {
            values.insert(format!("{kpi}/{variant}"), round4(*x));
        }
        if let Ok(Some(n)) = samples
            && n.is_finite()
        {
            values.insert(format!("{kpi}/{variant}/samples"), n.round());
        }
    }
    status.drift = m
        .drift
        .iter()
        .flat_map(|(variant, d)| {
            d.iter().flatten().map(move |f| DriftStatus {
                variant: variant.clone(),
                feature: f.feature.clone(),
                metric: f.metric,
                value: round4(f.value),
                rows: f.rows.round(),
            })
        })
        .collect();
    for d in &status.drift {
        values.insert(format!("drift/{}/{}", d.variant, d.feature), d.value);
    }
    let mut decision = Decision {
        time: now.to_rfc3339(),
        values,
        ..Default::default()
    };
    match spec.strategy.type_ {
        StrategyType::Canary | StrategyType::Shadow => {
            analyse_canary(exp, status, m, &mut decision, now)
        }
        StrategyType::Bandit => analyse_bandit(exp, status, m, &mut decision, now),
        StrategyType::FixedSplit | StrategyType::Holdout => {
            analyse_measure(exp, status, m, &mut decision)
        }
    }
    if status.phase != Some(ExperimentPhase::Paused)
        && let Some(a) = status.analysis.as_mut()
    {
        a.pause_reason = None;
    }
    decision.weights = status.weights.clone();
    record(status, decision.clone());
    decision
}

/// Pauses the analysis for `reason` (kept in the status for the conditions).
pub(super) fn pause(status: &mut ExperimentStatus, reason: PauseReason) {
    status.phase = Some(ExperimentPhase::Paused);
    if let Some(a) = status.analysis.as_mut() {
        a.pause_reason = Some(reason);
    }
}

pub(super) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub(super) fn limits(spec: &ExperimentSpec) -> Limits {
    Limits {
        failures: spec.failure_limit,
        inconclusive: spec.inconclusive_limit,
        errors: spec.consecutive_error_limit,
    }
}

pub(super) fn counters(state: &AnalysisState) -> Counters {
    Counters {
        failures: state.failures,
        inconclusive: state.inconclusive,
        errors: state.consecutive_errors,
    }
}

pub(super) fn store_counters(status: &mut ExperimentStatus, c: Counters) {
    if let Some(a) = status.analysis.as_mut() {
        a.failures = c.failures;
        a.inconclusive = c.inconclusive;
        a.consecutive_errors = c.errors;
    }
}

/// The KPI gates and the drift gate of one variant.
pub fn checks(spec: &ExperimentSpec, m: &Measurements, variant: &str) -> Vec<Check> {
    let stable = stable_name(spec);
    let mut out: Vec<Check> = spec
        .kpis
        .iter()
        .map(|gate: &KpiGate| {
            let (value, samples) = m.reading(&gate.name, variant);
            judge(gate, variant, value, samples, m.value(&gate.name, &stable))
        })
        .collect();
    if let Some(gate) = &spec.drift_gate
        && let Some(Ok(features)) = m.drift.get(variant)
    {
        let limit = |metric: DriftMetric| match metric {
            DriftMetric::Psi => gate.max_psi,
            DriftMetric::Js => gate.max_js_divergence,
        };
        let breaches: Vec<String> = features
            .iter()
            .filter(|f| f.value > limit(f.metric))
            .map(|f| {
                let limit = limit(f.metric);
                format!(
                    "{} {} {:.3} > {limit}",
                    f.feature,
                    f.metric.as_str().to_uppercase(),
                    f.value
                )
            })
            .collect();
        let rows = features.iter().map(|f| f.rows).fold(0.0, f64::max);
        // Too few rows first: a divergence over a handful of rows is sampling noise, even
        // when it is large.
        let (verdict, message) = if rows < gate.min_rows as f64 {
            (
                Verdict::Inconclusive,
                format!(
                    "drift/{variant}: {rows:.0} of {} serving rows in the window",
                    gate.min_rows
                ),
            )
        } else if !breaches.is_empty() {
            (
                Verdict::Fail,
                format!("input drift of {variant}: {}", breaches.join(", ")),
            )
        } else {
            let worst = features.iter().map(|f| f.value).fold(0.0, f64::max);
            (
                Verdict::Pass,
                format!("drift/{variant}: largest {worst:.3} within limits"),
            )
        };
        out.push(Check {
            kpi: "drift".into(),
            variant: variant.into(),
            verdict,
            value: None,
            samples: Some(rows),
            min: None,
            max: None,
            message,
        });
    }
    out
}

/// One canary analysis: the gates' checks and thresholds, the move of the state machine, and
/// the weights, phase and decision message it implies. One match over the move on purpose:
/// each arm writes the same three things (weights, phase, message) and reads best side by side.
pub(super) fn analyse_canary(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
    now: DateTime<Utc>,
) {
    let spec = &exp.spec;
    let steps = steps_of(spec);
    let state = status.analysis.clone().unwrap_or_default();
    let step = usize::try_from(state.step_index).unwrap_or(0);
    let candidate = candidate_name(spec).unwrap_or_default();
    let stable = stable_name(spec);
    let shadowing = super::shadowing(spec, status);
    let checks = match (shadowing, super::shadow_of(spec), &m.shadow) {
        // The shadow stage: the candidate answers no caller, so its KPIs say nothing; the
        // comparison with stable (and the drift of the inputs it was sent) decides.
        (true, Some(shadow), Some(Ok(reading))) => {
            let mirror = super::shadow_mirror(exp, status).unwrap_or(super::Mirror::StableServer);
            status.shadow = Some(super::shadow_status(mirror, super::MIRRORING, reading));
            let mut out = super::shadow_checks(shadow, &candidate, reading);
            out.extend(
                checks(spec, m, &candidate)
                    .into_iter()
                    .filter(|c| c.kpi == "drift"),
            );
            out
        }
        // No comparison (a query failed, and says so): never a pass on drift alone.
        (true, _, _) => {
            let mut out: Vec<Check> = checks(spec, m, &candidate)
                .into_iter()
                .filter(|c| c.kpi == "drift")
                .collect();
            out.push(Check {
                kpi: "shadow".into(),
                variant: candidate.clone(),
                verdict: Verdict::Inconclusive,
                value: None,
                samples: None,
                min: None,
                max: None,
                message: format!("shadow/{candidate}: not compared"),
            });
            out
        }
        (false, _, _) => checks(spec, m, &candidate),
    };
    if shadowing && let Some(shadow) = &status.shadow {
        for (key, value) in [
            ("shadow/rows", Some(shadow.rows)),
            ("shadow/score-psi", shadow.score_psi),
            ("shadow/agreement", shadow.agreement),
            ("shadow/stable-p99", shadow.stable_p99_seconds),
            ("shadow/candidate-p99", shadow.candidate_p99_seconds),
            ("shadow/error-rate", shadow.error_rate),
        ] {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                decision
                    .values
                    .insert(format!("{key}/{candidate}"), round4(v));
            }
        }
    }
    for c in &checks {
        if let Some(x) = c.min {
            decision
                .thresholds
                .insert(format!("{}/{}/min", c.kpi, c.variant), round4(x));
        }
        if let Some(x) = c.max {
            decision
                .thresholds
                .insert(format!("{}/{}/max", c.kpi, c.variant), round4(x));
        }
    }
    let analysis = Analysis::of(checks, m.first_error());
    let mut c = counters(&state);
    // A step of 100 % is the promotion itself: with no traffic left on stable, relative gates
    // would have nothing to compare with.
    let judged = steps.iter().filter(|w| **w < 100).count().max(1);
    let mv = canary::next_move(step, judged, &mut c, limits(spec), &analysis);
    store_counters(status, c);
    let at = super::step_label(spec, step);
    decision.step = Some(at.clone());
    let passed = if shadowing {
        "the shadow passed".to_string()
    } else {
        format!("step {at} passed")
    };
    let evidence = |v: Verdict| analysis.summary(v);
    match mv {
        Move::Advance(to) => {
            let w = steps.get(to).copied().unwrap_or(100);
            set_weights(status, canary_weights(spec, w), now);
            if let Some(a) = status.analysis.as_mut() {
                a.step_index = to as i32;
            }
            status.step = Some(super::step_label(spec, to));
            status.phase = Some(ExperimentPhase::Progressing);
            decision.action = DecisionAction::Advance;
            decision.message = format!(
                "{passed} ({}); {candidate} now at {w}%",
                evidence(Verdict::Pass)
            );
        }
        Move::Promote => {
            set_weights(status, only(spec, &candidate), now);
            status.step = Some(super::step_label(spec, steps.len().saturating_sub(1)));
            status.phase = Some(ExperimentPhase::Promoted);
            status.winner = Some(candidate.clone());
            decision.action = DecisionAction::Promote;
            let last = if shadowing {
                passed.clone()
            } else {
                format!("last {passed}")
            };
            decision.message = format!(
                "{last} ({}); promoting {candidate}",
                evidence(Verdict::Pass)
            );
        }
        Move::RollBack => {
            set_weights(status, only(spec, &stable), now);
            status.phase = Some(ExperimentPhase::RolledBack);
            status.winner = Some(stable.clone());
            decision.action = DecisionAction::RollBack;
            decision.message = if shadowing {
                format!(
                    "{}; failures {} > failureLimit {}: {candidate} retired in the shadow, it never answered a caller",
                    evidence(Verdict::Fail),
                    c.failures,
                    spec.failure_limit
                )
            } else {
                format!(
                    "{}; failures {} > failureLimit {}: all traffic back to {stable}",
                    evidence(Verdict::Fail),
                    c.failures,
                    spec.failure_limit
                )
            };
        }
        Move::Hold => {
            decision.action = DecisionAction::Hold;
            decision.message = match &analysis {
                Analysis::Error(e) => format!(
                    "query failed ({}/{} in a row): {e}",
                    c.errors, spec.consecutive_error_limit
                ),
                Analysis::Fail(_) => format!(
                    "{} (failure {} of {} tolerated)",
                    evidence(Verdict::Fail),
                    c.failures,
                    spec.failure_limit
                ),
                _ => format!(
                    "{} ({}/{} inconclusive)",
                    evidence(Verdict::Inconclusive),
                    c.inconclusive,
                    spec.inconclusive_limit
                ),
            };
            if status.phase != Some(ExperimentPhase::Paused) {
                status.phase = Some(super::analysing_phase(spec, status));
            }
        }
        Move::Pause(reason) => {
            pause(status, reason);
            decision.action = DecisionAction::Pause;
            decision.message = match &analysis {
                Analysis::Error(e) => format!(
                    "{}: {} query errors in a row (limit {}): {e}; holding at step {at}, never promoting without data",
                    reason.as_str(),
                    c.errors,
                    spec.consecutive_error_limit
                ),
                _ => format!(
                    "{}: {} inconclusive analyses (limit {}): {}; holding at step {at}",
                    reason.as_str(),
                    c.inconclusive,
                    spec.inconclusive_limit,
                    evidence(Verdict::Inconclusive)
                ),
            };
        }
    }
}
