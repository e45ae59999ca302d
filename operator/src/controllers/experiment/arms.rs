//! Analyses that accumulate evidence per arm: the bandit's posteriors and weights, and the
//! fixed split's and holdout's measurements (pure).

use chrono::{DateTime, Utc};
use leitwerk_crds::{
    Experiment, ExperimentSpec, experiment::ArmStatus, experiment::Decision,
    experiment::DecisionAction, experiment::ExperimentPhase, experiment::ExperimentStatus,
    experiment::HoldoutStatus, experiment::PauseReason, experiment::StrategyType,
    experiment::VariantRole,
};

use super::{
    Measurements, bandit, counters, only, pause, role_of, round4, set_weights, store_counters,
};
use crate::analysis::bandit::Arm;
use crate::analysis::holdout;
use std::collections::BTreeMap;

pub(super) fn reward_kpi(spec: &ExperimentSpec) -> Option<String> {
    match spec.strategy.type_ {
        StrategyType::Bandit => spec.strategy.bandit.as_ref().map(|b| b.reward_kpi.clone()),
        StrategyType::Holdout => spec
            .strategy
            .holdout
            .as_ref()
            .and_then(|h| h.kpi.clone())
            .or_else(|| spec.kpis.first().map(|k| k.name.clone())),
        _ => None,
    }
}

/// Adds one interval's successes (rate × trials) and trials to each arm.
pub(super) fn accumulate(status: &mut ExperimentStatus, m: &Measurements, kpi: &str) {
    for v in &status.variants {
        if !status.arms.iter().any(|a| a.variant == v.name) {
            status.arms.push(ArmStatus {
                variant: v.name.clone(),
                alpha: 1.0,
                beta: 1.0,
                ..Default::default()
            });
        }
    }
    for arm in &mut status.arms {
        let (rate, trials) = m.reading(kpi, &arm.variant);
        let trials = trials.unwrap_or(0.0).max(0.0);
        let successes = (rate.unwrap_or(0.0).clamp(0.0, 1.0) * trials).max(0.0);
        arm.trials = round4(arm.trials + trials);
        arm.successes = round4(arm.successes + successes);
        let (a, b) = Arm {
            successes: arm.successes,
            trials: arm.trials,
        }
        .alpha_beta();
        arm.alpha = round4(a);
        arm.beta = round4(b);
    }
}

/// One bandit analysis: posteriors from the arms' evidence, the probability that each arm is
/// best, new weights, and a promotion or conclusion once one arm is best with
/// `probabilityToWin`. Kept in one function like `analyse_canary`: the weights, phase and
/// decision message it writes are read together.
pub(super) fn analyse_bandit(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
    now: DateTime<Utc>,
) {
    let spec = &exp.spec;
    let Some(b) = spec.strategy.bandit.clone() else {
        return;
    };
    let state = status.analysis.clone().unwrap_or_default();
    decision.step = Some(format!("analysis {}", state.analyses));
    let mut c = counters(&state);
    if let Some(e) = m.first_error() {
        c.errors += 1;
        store_counters(status, c);
        if c.errors > spec.consecutive_error_limit {
            pause(status, PauseReason::PrometheusUnavailable);
            decision.action = DecisionAction::Pause;
            decision.message = format!(
                "PrometheusUnavailable: {} query errors in a row (limit {}): {e}; weights kept",
                c.errors, spec.consecutive_error_limit
            );
        } else {
            decision.action = DecisionAction::Hold;
            decision.message = format!(
                "query failed ({}/{}): {e}; weights kept",
                c.errors, spec.consecutive_error_limit
            );
        }
        return;
    }
    c.errors = 0;
    store_counters(status, c);
    status.phase = Some(ExperimentPhase::Progressing);
    accumulate(status, m, &b.reward_kpi);
    let arms: Vec<Arm> = status
        .arms
        .iter()
        .map(|a| Arm {
            successes: a.successes,
            trials: a.trials,
        })
        .collect();
    let seed = (b.seed as u64).wrapping_add(state.analyses as u64);
    let p = bandit::probability_best(&arms, seed, bandit::DRAWS);
    for (arm, p) in status.arms.iter_mut().zip(&p) {
        arm.probability_best = Some(round4(*p));
    }
    let posteriors: Vec<String> = status
        .arms
        .iter()
        .map(|a| {
            format!(
                "{} {:.0}/{:.0} P(best)={:.3}",
                a.variant,
                a.successes,
                a.trials,
                a.probability_best.unwrap_or(0.0)
            )
        })
        .collect();
    let best = (0..p.len()).max_by(|x, y| p[*x].total_cmp(&p[*y]));
    if let Some(i) = best
        && p[i] >= b.probability_to_win
        && status.arms[i].trials >= b.min_samples as f64
    {
        let winner = status.arms[i].variant.clone();
        set_weights(status, only(spec, &winner), now);
        status.winner = Some(winner.clone());
        let stable = role_of(spec, &winner) == VariantRole::Stable;
        status.phase = Some(if stable {
            ExperimentPhase::Concluded
        } else {
            ExperimentPhase::Promoted
        });
        decision.action = if stable {
            DecisionAction::Conclude
        } else {
            DecisionAction::Promote
        };
        decision.message = format!(
            "{winner} is best with probability {:.3} ≥ {} after {:.0} trials ({}){}",
            p[i],
            b.probability_to_win,
            status.arms[i].trials,
            posteriors.join("; "),
            if stable {
                "; the stable variant stays"
            } else {
                ""
            }
        );
        return;
    }
    let names: Vec<String> = status.arms.iter().map(|a| a.variant.clone()).collect();
    let weights: BTreeMap<String, i32> = names
        .into_iter()
        .zip(bandit::weights(&p, b.floor_weight))
        .collect();
    set_weights(status, weights, now);
    decision.action = DecisionAction::Reweight;
    decision.message = format!("posteriors: {}", posteriors.join("; "));
}

pub(super) fn analyse_measure(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
) {
    let spec = &exp.spec;
    let state = status.analysis.clone().unwrap_or_default();
    decision.step = Some(format!("analysis {}", state.analyses));
    let mut c = counters(&state);
    if let Some(e) = m.first_error() {
        c.errors += 1;
        store_counters(status, c);
        let paused = c.errors > spec.consecutive_error_limit;
        if paused {
            pause(status, PauseReason::PrometheusUnavailable);
        }
        decision.action = if paused {
            DecisionAction::Pause
        } else {
            DecisionAction::Hold
        };
        decision.message = format!(
            "PrometheusUnavailable: query failed ({} in a row): {e}",
            c.errors
        );
        return;
    }
    c.errors = 0;
    store_counters(status, c);
    status.phase = Some(ExperimentPhase::Running);
    decision.action = DecisionAction::Measure;
    let Some(kpi) = reward_kpi(spec) else {
        decision.message = format!("{} KPI values recorded", decision.values.len());
        return;
    };
    accumulate(status, m, &kpi);
    let control = spec
        .strategy
        .holdout
        .as_ref()
        .map(|h| h.control_variant.clone())
        .unwrap_or_default();
    let (mut ms, mut mn, mut cs, mut cn) = (0.0, 0.0, 0.0, 0.0);
    for a in &status.arms {
        if a.variant == control {
            (cs, cn) = (cs + a.successes, cn + a.trials);
        } else {
            (ms, mn) = (ms + a.successes, mn + a.trials);
        }
    }
    match holdout::lift((ms, mn), (cs, cn)) {
        Some(l) => {
            status.holdout = Some(HoldoutStatus {
                kpi: kpi.clone(),
                model_rate: round4(l.model_rate),
                control_rate: round4(l.control_rate),
                lift: round4(l.lift),
                lift_lower: round4(l.lower),
                lift_upper: round4(l.upper),
                relative_lift: l.relative.map(round4),
                model_trials: mn.round(),
                control_trials: cn.round(),
            });
            decision.message = format!(
                "{kpi}: model {:.4} vs control {:.4} over {:.0}/{:.0} trials; lift {:+.4} (95% CI {:+.4} … {:+.4})",
                l.model_rate, l.control_rate, mn, cn, l.lift, l.lower, l.upper
            );
        }
        None => decision.message = format!("{kpi}: no trials yet on both arms"),
    }
}
