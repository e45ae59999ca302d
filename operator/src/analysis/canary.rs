//! The canary state machine: what one analysis does to the step and the counters.

use super::gates::Analysis;

/// Counters that survive restarts (they live in the Experiment's status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Failed analyses so far.
    pub failures: i32,
    /// Inconclusive analyses since the last conclusive one.
    pub inconclusive: i32,
    /// Query errors in a row.
    pub errors: i32,
}

/// The limits of `spec`: how many of each are tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `failureLimit`.
    pub failures: i32,
    /// `inconclusiveLimit`.
    pub inconclusive: i32,
    /// `consecutiveErrorLimit`.
    pub errors: i32,
}

/// What the analysis decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Go to the next step (its index).
    Advance(usize),
    /// The last step passed: the candidate wins.
    Promote,
    /// Too many failures: weights back to stable.
    RollBack,
    /// Stay at this step and look again next interval.
    Hold,
    /// Stay at this step, flagged Paused until evidence returns.
    Pause(PauseReason),
}

pub use leitwerk_crds::experiment::PauseReason;

/// Applies one analysis at step `step` (0-based) of `steps`; updates the counters.
pub fn next_move(
    step: usize,
    steps: usize,
    counters: &mut Counters,
    limits: Limits,
    analysis: &Analysis,
) -> Move {
    match analysis {
        Analysis::Error(_) => {
            counters.errors += 1;
            if counters.errors > limits.errors {
                Move::Pause(PauseReason::PrometheusUnavailable)
            } else {
                Move::Hold
            }
        }
        Analysis::Fail(_) => {
            counters.errors = 0;
            counters.inconclusive = 0;
            counters.failures += 1;
            if counters.failures > limits.failures {
                Move::RollBack
            } else {
                Move::Hold
            }
        }
        Analysis::Inconclusive(_) => {
            counters.errors = 0;
            counters.inconclusive += 1;
            if counters.inconclusive > limits.inconclusive {
                Move::Pause(PauseReason::InsufficientData)
            } else {
                Move::Hold
            }
        }
        Analysis::Pass(_) => {
            counters.errors = 0;
            counters.inconclusive = 0;
            if step + 1 >= steps {
                Move::Promote
            } else {
                Move::Advance(step + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        failures: 1,
        inconclusive: 2,
        errors: 1,
    };

    fn run(analyses: &[Analysis]) -> Vec<Move> {
        let (mut step, mut counters) = (0, Counters::default());
        analyses
            .iter()
            .map(|a| {
                let m = next_move(step, 3, &mut counters, LIMITS, a);
                if let Move::Advance(to) = m {
                    step = to;
                }
                m
            })
            .collect()
    }

    #[test]
    fn passing_analyses_walk_the_steps_and_promote_at_the_end() {
        let pass = Analysis::Pass(vec![]);
        assert_eq!(
            run(&[pass.clone(), pass.clone(), pass]),
            vec![Move::Advance(1), Move::Advance(2), Move::Promote]
        );
    }

    #[test]
    fn failures_beyond_the_limit_roll_back() {
        let fail = Analysis::Fail(vec![]);
        assert_eq!(run(&[fail.clone(), fail]), vec![Move::Hold, Move::RollBack]);
        let mut c = Counters::default();
        let strict = Limits {
            failures: 0,
            ..LIMITS
        };
        assert_eq!(
            next_move(0, 3, &mut c, strict, &Analysis::Fail(vec![])),
            Move::RollBack
        );
    }

    #[test]
    fn missing_data_never_advances_and_pauses_past_the_limit_then_resumes() {
        let none = Analysis::Inconclusive(vec![]);
        let err = Analysis::Error("connection refused".into());
        let pass = Analysis::Pass(vec![]);
        assert_eq!(
            run(&[none.clone(), none.clone(), none, pass.clone()]),
            vec![
                Move::Hold,
                Move::Hold,
                Move::Pause(PauseReason::InsufficientData),
                Move::Advance(1)
            ]
        );
        assert_eq!(
            run(&[err.clone(), err.clone(), err, pass]),
            vec![
                Move::Hold,
                Move::Pause(PauseReason::PrometheusUnavailable),
                Move::Pause(PauseReason::PrometheusUnavailable),
                Move::Advance(1)
            ]
        );
    }
}
