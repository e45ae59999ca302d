//! The audit trail of admission: every decision on a Secret reference or an approval, every
//! denial and every change to a `LeitwerkPolicy` becomes an Event and a structured log line
//! under the target `leitwerk_operator::audit`. Neither carries a Secret's value (only its
//! name) nor personal data from a spec (a briefing, a source document): what is written is
//! the user, the resource, the field, the rule and the decision.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::admission::AdmissionRequest;
use kube::{Resource, api::DynamicObject};
use leitwerk_crds::policy::LeitwerkPolicySpec;
use serde_json::Value;
use tracing::{info, warn};

use super::review::Reviewer;
use crate::notice::Notice;

/// The log target of the audit trail.
pub const TARGET: &str = "leitwerk_operator::audit";

/// One structured audit line: `decision` is `allowed`, `denied`, `changed` or `defaulted`.
pub fn line(decision: &str, resource: &str, user: &str, what: &str) {
    if decision == "denied" {
        warn!(target: "leitwerk_operator::audit", resource, user, decision, "{what}");
    } else {
        info!(target: "leitwerk_operator::audit", resource, user, decision, "{what}");
    }
}

/// The object a request is about, as an Event's `regarding` (it may not be stored yet).
pub fn regarding(req: &AdmissionRequest<DynamicObject>) -> ObjectReference {
    ObjectReference {
        api_version: Some(if req.kind.group.is_empty() {
            req.kind.version.clone()
        } else {
            format!("{}/{}", req.kind.group, req.kind.version)
        }),
        kind: Some(req.kind.kind.clone()),
        namespace: req.namespace.clone(),
        name: Some(req.name.clone()),
        uid: req
            .object
            .as_ref()
            .or(req.old_object.as_ref())
            .and_then(|o| o.meta().uid.clone()),
        ..ObjectReference::default()
    }
}

/// What a policy change does, rule by rule (the rules' values are no secrets: names, URLs,
/// hosts, numbers): e.g. `maxRunCost 5 → 2; prometheusUrls added`.
pub fn policy_change(old: Option<&Value>, new: Option<&Value>) -> String {
    let spec = |v: Option<&Value>| {
        v.map(|v| v["spec"].clone())
            .and_then(|s| serde_json::from_value::<LeitwerkPolicySpec>(s).ok())
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null)
    };
    let (before, after) = (spec(old), spec(new));
    match (old.is_some(), new.is_some()) {
        (false, _) => return format!("created: {}", compact(&after)),
        (_, false) => return "deleted".into(),
        _ => {}
    }
    let mut keys: Vec<&String> = before
        .as_object()
        .into_iter()
        .chain(after.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|k| before[k.as_str()] != after[k.as_str()])
        .map(|k| match (&before[k.as_str()], &after[k.as_str()]) {
            (Value::Null, now) => format!("{k} set to {}", compact(now)),
            (_, Value::Null) => format!("{k} removed"),
            (was, now) => format!("{k} {} → {}", compact(was), compact(now)),
        })
        .collect();
    if changes.is_empty() {
        "metadata only".into()
    } else {
        changes.join("; ")
    }
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

impl Reviewer {
    /// Sends `notice` about `regarding` unless the request is a dry run; a failure to publish
    /// is logged, never fatal to the decision.
    pub(super) async fn tell(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        regarding: &ObjectReference,
        notice: Notice,
    ) {
        if req.dry_run {
            return;
        }
        if let Err(err) = self.recorder().publish(&notice.event(), regarding).await {
            warn!(%err, reason = %notice.reason, "failed to publish an audit Event");
        }
    }

    /// Records a change to a `LeitwerkPolicy` (the audit webhook, which never refuses).
    pub(super) async fn policy_changed(&self, req: &AdmissionRequest<DynamicObject>) {
        let as_value = |o: Option<&DynamicObject>| o.and_then(|o| serde_json::to_value(o).ok());
        let (old, new) = (
            as_value(req.old_object.as_ref()),
            as_value(req.object.as_ref()),
        );
        let what = policy_change(old.as_ref(), new.as_ref());
        let user = req.user_info.username.clone().unwrap_or_default();
        let resource = format!("LeitwerkPolicy {}", req.name);
        if req.dry_run {
            return;
        }
        line("changed", &resource, &user, &what);
        let notice = Notice::normal("Govern", "PolicyChanged", format!("{user}: {what}"));
        self.tell(req, &regarding(req), notice).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_change_is_told_rule_by_rule() {
        let old = json!({"spec": {"maxRunCost": 5.0, "prometheusUrls": ["http://p:9090"]}});
        let new = json!({"spec": {"maxRunCost": 2.0, "requireRedaction": true}});
        assert_eq!(
            policy_change(Some(&old), Some(&new)),
            r#"maxRunCost 5.0 → 2.0; prometheusUrls removed; requireRedaction false → true"#
        );
        assert!(policy_change(None, Some(&new)).starts_with("created: {"));
        assert_eq!(policy_change(Some(&old), None), "deleted");
        assert_eq!(policy_change(Some(&old), Some(&old)), "metadata only");
    }
}
