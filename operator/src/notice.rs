//! Events as data: what a reconcile decided to publish travels in its outcome and is
//! published in one place ([`crate::reconcile::finish_with`]) after the status is written.

use std::borrow::Cow;

use kube::runtime::events::{Event, EventType};

use crate::reconcile::truncate;

/// An Event a reconcile decided to publish: data in its outcome, published in one place
/// ([`finish_with`]) after the status is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning (a human should look) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: Cow<'static, str>,
    /// What happened, with the figures behind it.
    pub note: String,
    /// The action the Event reports (`Index`, `Train`, `Materialize`, …).
    pub action: &'static str,
}

impl Notice {
    /// A Normal Event.
    pub fn normal(
        action: &'static str,
        reason: impl Into<Cow<'static, str>>,
        note: impl Into<String>,
    ) -> Self {
        Notice {
            warning: false,
            reason: reason.into(),
            note: note.into(),
            action,
        }
    }

    /// A Warning Event: a human should look.
    pub fn warning(
        action: &'static str,
        reason: impl Into<Cow<'static, str>>,
        note: impl Into<String>,
    ) -> Self {
        Notice {
            warning: true,
            ..Notice::normal(action, reason, note)
        }
    }

    /// A Warning when `warning`, else a Normal Event.
    pub fn of(
        warning: bool,
        action: &'static str,
        reason: impl Into<Cow<'static, str>>,
        note: impl Into<String>,
    ) -> Self {
        Notice {
            warning,
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
            reason: self.reason.to_string(),
            note: Some(truncate(&self.note, 1024)),
            action: self.action.into(),
            secondary: None,
        }
    }
}
