//! Events as data: what a reconcile decided to publish travels in its outcome and is
//! published in one place ([`crate::reconcile::finish_with`]) after the status is written.

use kube::runtime::events::{Event, EventType};

use crate::reconcile::truncate;

/// An Event a reconcile decided to publish: data in its outcome, published in one place
/// ([`finish_with`]) after the status is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning (a human should look) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// What happened, with the figures behind it.
    pub note: String,
    /// The action the Event reports (`Index`, `Train`, `Materialize`, …).
    pub action: &'static str,
}

impl Notice {
    /// A Normal Event.
    pub fn normal(action: &'static str, reason: &'static str, note: impl Into<String>) -> Self {
        Notice {
            warning: false,
            reason,
            note: note.into(),
            action,
        }
    }

    /// A Warning Event: a human should look.
    pub fn warning(action: &'static str, reason: &'static str, note: impl Into<String>) -> Self {
        Notice {
            warning: true,
            ..Notice::normal(action, reason, note)
        }
    }

    /// The Event to publish.
    pub fn event(&self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.into(),
            note: Some(truncate(&self.note, 1024)),
            action: self.action.into(),
            secondary: None,
        }
    }
}
