//! When an Experiment is analysed: its interval, the next analysis, the query window, and a
//! restart when its variants change.

use std::time::Duration;

use chrono::{DateTime, Utc};
use leitwerk_crds::{
    Experiment, ExperimentSpec,
    experiment::{ExperimentPhase, ExperimentStatus},
};

use super::MIN_INTERVAL_SECS;
use crate::validation::parse_duration;

/// Forgets the analysis of an earlier generation (its variants changed): the new variants
/// start at the first step with fresh evidence. Decisions stay as history.
pub(super) fn restart(status: &mut ExperimentStatus) {
    status.analysis = None;
    status.arms.clear();
    status.holdout = None;
    status.drift.clear();
    status.winner = None;
    status.promotion_confirmed = false;
    status.phase = None;
}

/// Whether the analysis has ended (no more traffic moves).
pub fn is_terminal(status: &ExperimentStatus) -> bool {
    matches!(
        status.phase,
        Some(ExperimentPhase::Promoted | ExperimentPhase::RolledBack | ExperimentPhase::Concluded)
    )
}

pub(super) fn is_due(status: &ExperimentStatus, now: DateTime<Utc>) -> bool {
    next_analysis(status).is_none_or(|t| now >= t)
}

pub(super) fn next_analysis(status: &ExperimentStatus) -> Option<DateTime<Utc>> {
    let text = status.analysis.as_ref()?.next_analysis.as_deref()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn interval_of(spec: &ExperimentSpec) -> Duration {
    parse_duration(&spec.interval)
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(MIN_INTERVAL_SECS))
}

/// The query window: the time since the previous analysis (so consecutive windows neither
/// overlap nor leave gaps, which the bandit's counts rely on), at least one interval.
pub(super) fn window_secs(exp: &Experiment, status: &ExperimentStatus, now: DateTime<Utc>) -> u64 {
    let interval = interval_of(&exp.spec).as_secs();
    let last = next_analysis(status).map(|t| t - chrono::Duration::seconds(interval as i64));
    let elapsed = last.map_or(interval, |l| (now - l).num_seconds().max(0) as u64);
    elapsed.clamp(interval, interval * 10)
}
