//! One analysis: what the measured KPIs and drift do to counters, weights, evidence and phase
//! (pure: no Kubernetes, no Prometheus).

use super::*;

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
                metric: f.metric.into(),
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
        StrategyType::Canary => analyse_canary(exp, status, m, &mut decision, now),
        StrategyType::Bandit => analyse_bandit(exp, status, m, &mut decision, now),
        StrategyType::FixedSplit | StrategyType::Holdout => {
            analyse_measure(exp, status, m, &mut decision)
        }
    }
    if status.phase.as_deref() != Some("Paused")
        && let Some(a) = status.analysis.as_mut()
    {
        a.pause_reason = None;
    }
    decision.weights = status.weights.clone();
    record(status, decision.clone());
    decision
}

/// Pauses the analysis for `reason` (kept in the status for the conditions).
fn pause(status: &mut ExperimentStatus, reason: PauseReason) {
    status.phase = Some("Paused".into());
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
        let breaches: Vec<String> = features
            .iter()
            .filter(|f| {
                let limit = if f.metric == "psi" {
                    gate.max_psi
                } else {
                    gate.max_js_divergence
                };
                f.value > limit
            })
            .map(|f| {
                let limit = if f.metric == "psi" {
                    gate.max_psi
                } else {
                    gate.max_js_divergence
                };
                format!(
                    "{} {} {:.3} > {limit}",
                    f.feature,
                    f.metric.to_uppercase(),
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
    let checks = checks(spec, m, &candidate);
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
    let at = format!("{}/{}", step + 1, steps.len());
    decision.step = Some(at.clone());
    let evidence = |v: Verdict| analysis.summary(v);
    match mv {
        Move::Advance(to) => {
            let w = steps.get(to).copied().unwrap_or(100);
            set_weights(status, canary_weights(spec, w), now);
            if let Some(a) = status.analysis.as_mut() {
                a.step_index = to as i32;
            }
            status.step = Some(format!("{}/{}", to + 1, steps.len()));
            status.phase = Some("Progressing".into());
            decision.action = DecisionAction::Advance;
            decision.message = format!(
                "step {at} passed ({}); {candidate} now at {w}%",
                evidence(Verdict::Pass)
            );
        }
        Move::Promote => {
            set_weights(status, only(spec, &candidate), now);
            status.step = Some(format!("{}/{}", steps.len(), steps.len()));
            status.phase = Some("Promoted".into());
            status.winner = Some(candidate.clone());
            decision.action = DecisionAction::Promote;
            decision.message = format!(
                "last step {at} passed ({}); promoting {candidate}",
                evidence(Verdict::Pass)
            );
        }
        Move::RollBack => {
            set_weights(status, only(spec, &stable), now);
            status.phase = Some("RolledBack".into());
            status.winner = Some(stable.clone());
            decision.action = DecisionAction::RollBack;
            decision.message = format!(
                "{}; failures {} > failureLimit {}: all traffic back to {stable}",
                evidence(Verdict::Fail),
                c.failures,
                spec.failure_limit
            );
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
            if status.phase.as_deref() != Some("Paused") {
                status.phase = Some("Progressing".into());
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
    status.phase = Some("Progressing".into());
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
        status.phase = Some(if stable { "Concluded" } else { "Promoted" }.into());
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
    status.phase = Some("Running".into());
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
