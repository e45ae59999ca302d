//! Steering a Model by hand: `leitwerk.dev/control: retrain:<nonce>` (with
//! `leitwerk.dev/requested-by`) trains a new version now, from the spec and the FeatureSet's
//! current snapshot, as a changed spec would. Each request is handled once and recorded in
//! `status.lastControl`.
//!
//! `leitwerk.dev/pin: v3` (with `leitwerk.dev/requested-by`) pins the Model: v3 serves, and
//! neither an Experiment nor the drift policy changes what serves while the annotation stays.
//! Removing it unpins; what serves stays until something changes it. Pure: no Kubernetes.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use leitwerk_crds::Model;
use leitwerk_crds::experiment::ControlStatus;
use leitwerk_crds::labels::{CONTROL, PIN, REQUESTED_BY};
use leitwerk_crds::model::{ModelVersion, VersionState};
use leitwerk_crds::versions::Versions;

/// The request on `model` not handled yet: `Ok` for `retrain`, `Err` naming a value that is
/// no action on a Model.
pub fn pending(model: &Model) -> Option<Result<String, String>> {
    let value = model.annotations().get(CONTROL)?.trim().to_string();
    let handled = model
        .status
        .as_ref()
        .and_then(|s| s.last_control.as_ref())
        .is_some_and(|c| c.request == value);
    if value.is_empty() || handled {
        return None;
    }
    Some(match value.split(':').next() {
        Some("retrain") => Ok(value),
        other => Err(format!(
            "{CONTROL}={value}: {:?} is no action on a Model; use retrain, e.g. retrain:$(date +%s) (Experiments take abort, promote, pause, resume and retry)",
            other.unwrap_or_default()
        )),
    })
}

/// Whether someone asked for a retraining that has not started yet.
pub fn retrain_asked(model: &Model) -> bool {
    matches!(pending(model), Some(Ok(_)))
}

/// The record of a handled request.
pub fn handled(model: &Model, result: String, now: DateTime<Utc>) -> Option<ControlStatus> {
    let value = model.annotations().get(CONTROL)?.trim().to_string();
    Some(ControlStatus {
        request: value,
        requested_by: model.annotations().get(REQUESTED_BY).cloned(),
        time: now.to_rfc3339(),
        result,
    })
}

/// The version `leitwerk.dev/pin` names, when the annotation is set.
pub fn pin_of(model: &Model) -> Option<String> {
    model
        .annotations()
        .get(PIN)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Who asked for a request on `model`, in words.
pub fn requester(model: &Model) -> String {
    model
        .annotations()
        .get(REQUESTED_BY)
        .cloned()
        .unwrap_or_else(|| format!("someone (no {REQUESTED_BY})"))
}

/// Serves the pinned version `pin`. `Ok(Some(note))` when that changed what serves, `Ok(None)`
/// when it serves already, `Err(why)` when it cannot serve (nothing changes).
pub fn apply_pin(
    versions: &mut Versions<ModelVersion>,
    pin: &str,
    who: &str,
) -> Result<Option<String>, String> {
    let Some(v) = versions.named(pin) else {
        let recorded: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        return Err(format!(
            "{PIN}={pin}: no version {pin} is recorded (recorded: {}); name one of them or remove the annotation",
            if recorded.is_empty() {
                "none".to_string()
            } else {
                recorded.join(", ")
            }
        ));
    };
    match v.state {
        VersionState::Serving => return Ok(None),
        VersionState::Failed => {
            return Err(format!(
                "{PIN}={pin}: {pin} failed training and has no model to serve"
            ));
        }
        VersionState::Rejected => {
            return Err(format!(
                "{PIN}={pin}: {pin} is Rejected (below spec.minMetrics) and is never served"
            ));
        }
        _ if v.artifact_url.is_none() => {
            return Err(format!("{PIN}={pin}: {pin} has no model file to serve"));
        }
        _ => {}
    }
    let before = versions.serving().map(|s| s.version.clone());
    versions.promote(pin, format!("pinned by {who}"));
    Ok(Some(format!(
        "pinned to {pin} by {who}: {pin} serves{}",
        before
            .map(|b| format!(" instead of {b}"))
            .unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(states: &[(&str, VersionState, bool)]) -> Versions<ModelVersion> {
        let mut v = Versions::default();
        v.record(states.iter().map(|(name, state, file)| ModelVersion {
            version: name.to_string(),
            state: *state,
            artifact_url: file.then(|| format!("file:///m/{name}.onnx")),
            ..Default::default()
        }));
        v
    }

    #[test]
    fn a_pin_serves_its_version_and_retires_the_one_serving() {
        let mut v = versions(&[
            ("v1", VersionState::Retired, true),
            ("v2", VersionState::Serving, true),
            ("v3", VersionState::RolledBack, true),
        ]);
        let note = apply_pin(&mut v, "v1", "ana@example.com").unwrap();
        assert_eq!(
            note.as_deref(),
            Some("pinned to v1 by ana@example.com: v1 serves instead of v2")
        );
        assert_eq!(v.serving().map(|s| s.version.as_str()), Some("v1"));
        assert_eq!(v.named("v2").map(|s| s.state), Some(VersionState::Retired));
        // Applied again, nothing changes.
        assert_eq!(apply_pin(&mut v, "v1", "ana@example.com"), Ok(None));
    }

    #[test]
    fn a_pin_that_cannot_serve_is_refused_naming_why_and_changes_nothing() {
        let mut v = versions(&[
            ("v1", VersionState::Serving, true),
            ("v2", VersionState::Failed, false),
            ("v3", VersionState::Rejected, true),
            ("v4", VersionState::Candidate, false),
        ]);
        let before = v.clone();
        let unknown = apply_pin(&mut v, "v9", "ana").unwrap_err();
        assert!(
            unknown.contains("no version v9 is recorded (recorded: v1, v2, v3, v4)"),
            "{unknown}"
        );
        assert!(
            apply_pin(&mut v, "v2", "ana")
                .unwrap_err()
                .contains("failed training")
        );
        assert!(
            apply_pin(&mut v, "v3", "ana")
                .unwrap_err()
                .contains("below spec.minMetrics")
        );
        assert!(
            apply_pin(&mut v, "v4", "ana")
                .unwrap_err()
                .contains("no model file")
        );
        assert_eq!(v, before);
    }
}
