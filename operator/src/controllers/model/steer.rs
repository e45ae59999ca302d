//! Steering a Model by hand: `leitwerk.dev/control: retrain:<nonce>` (with
//! `leitwerk.dev/requested-by`) trains a new version now, from the spec and the FeatureSet's
//! current snapshot, as a changed spec would. Each request is handled once and recorded in
//! `status.lastControl`. Pure: no Kubernetes.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use leitwerk_crds::Model;
use leitwerk_crds::experiment::ControlStatus;
use leitwerk_crds::labels::{CONTROL, REQUESTED_BY};

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
