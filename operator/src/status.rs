//! Pure helpers for status: conditions that keep their transition time, and comparison that
//! ignores timestamps so a no-op reconcile writes nothing.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use leitwerk_crds::ResourceStatus;

/// The standard condition every Leitwerk resource carries.
pub const READY: &str = "Ready";

/// Whether a condition's reason asks a human to act. It decides the type of the Event that
/// publishes a change of the Ready condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Severity {
    /// Progress or waiting for the operator's own work: a Normal Event.
    #[default]
    Normal,
    /// Something failed or is wrong in the spec or the cluster: a Warning Event.
    Warning,
}

/// A condition as a reconcile decides it, before times are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: bool,
    /// PascalCase reason.
    pub reason: String,
    /// Human-readable message naming the object or field and the fix.
    pub message: String,
    /// The severity of the reason.
    pub severity: Severity,
}

impl Desired {
    /// A condition that holds.
    pub fn ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
            severity: Severity::Normal,
        }
    }

    /// A condition that does not hold yet: the operator waits or works on it (Normal).
    pub fn not(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
            severity: Severity::Normal,
        }
    }

    /// A condition that does not hold because something failed or is wrong: a human should
    /// look (Warning).
    pub fn failed(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::not(type_, reason, message)
        }
    }

    /// The same condition with a Warning severity (a holding condition that reports trouble,
    /// such as drift above the warning level).
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

/// Sets `desired` in `conditions`: the transition time is kept when the status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: &Desired,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if desired.status { "True" } else { "False" }.to_string();
    let message: String = desired.message.chars().take(1024).collect();
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = desired.reason.clone();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: desired.type_.to_string(),
            status,
            reason: desired.reason.clone(),
            message,
            last_transition_time: Time(now),
            observed_generation: generation,
        }),
    }
}

/// Builds the next status from the current one: observedGeneration, phase and conditions.
pub fn next_status<S: ResourceStatus>(
    current: Option<&S>,
    generation: Option<i64>,
    phase: S::Phase,
    conditions: &[Desired],
    now: Timestamp,
) -> S {
    let mut next = current.cloned().unwrap_or_default();
    next.set_observed_generation(generation);
    next.set_phase(Some(phase));
    for desired in conditions {
        set_condition(next.conditions_mut(), desired, generation, now);
    }
    next
}

/// Whether two statuses differ in anything but condition transition times.
pub fn differs_ignoring_time<S: ResourceStatus>(a: Option<&S>, b: &S) -> bool {
    let Some(a) = a else { return true };
    let strip = |s: &S| {
        let mut s = s.clone();
        for c in s.conditions_mut() {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) != strip(b)
}

/// The `(status, reason)` of a condition, for detecting transitions.
pub fn condition_key<S: ResourceStatus>(
    status: Option<&S>,
    type_: &str,
) -> Option<(String, String)> {
    status?
        .conditions()
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[cfg(test)]
mod tests {
    use leitwerk_crds::{ModelStatus, model::ModelPhase};

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn transition_time_is_kept_when_status_does_not_change() {
        let first: ModelStatus = next_status(
            None,
            Some(1),
            ModelPhase::Pending,
            &[Desired::not(READY, "A", "a")],
            at(100),
        );
        let second: ModelStatus = next_status(
            Some(&first),
            Some(2),
            ModelPhase::Pending,
            &[Desired::not(READY, "B", "b")],
            at(200),
        );
        assert_eq!(second.conditions[0].last_transition_time, Time(at(100)));
        assert_eq!(second.conditions[0].reason, "B");
        assert_eq!(second.conditions[0].observed_generation, Some(2));
        let third: ModelStatus = next_status(
            Some(&second),
            Some(2),
            ModelPhase::Serving,
            &[Desired::ok(READY, "C", "c")],
            at(300),
        );
        assert_eq!(third.conditions[0].last_transition_time, Time(at(300)));
        assert_eq!(third.conditions[0].status, "True");
    }

    #[test]
    fn same_decision_later_is_not_a_difference() {
        let first: ModelStatus = next_status(
            None,
            Some(1),
            ModelPhase::Pending,
            &[Desired::not(READY, "A", "a")],
            at(100),
        );
        let again: ModelStatus = next_status(
            Some(&first),
            Some(1),
            ModelPhase::Pending,
            &[Desired::not(READY, "A", "a")],
            at(999),
        );
        assert!(!differs_ignoring_time(Some(&first), &again));
        let moved: ModelStatus = next_status(
            Some(&first),
            Some(2),
            ModelPhase::Pending,
            &[Desired::not(READY, "A", "a")],
            at(999),
        );
        assert!(differs_ignoring_time(Some(&first), &moved));
        assert!(differs_ignoring_time(None, &again));
    }

    #[test]
    fn messages_are_truncated_to_one_kibibyte() {
        let long = "x".repeat(5000);
        let s: ModelStatus = next_status(
            None,
            None,
            ModelPhase::Invalid,
            &[Desired::not(READY, "A", long)],
            at(1),
        );
        assert_eq!(s.conditions[0].message.len(), 1024);
    }
}
