//! One admission review: who asks, what the resource names, and which rules it breaks.

use std::collections::BTreeMap;

use axum::{Json, Router, extract::State, routing::post};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{ApiResource, GroupVersionKind, Selector, SelectorExt};
use kube::runtime::events::Recorder;
use kube::{Resource, ResourceExt};
use leitwerk_crds::labels::{APPROVE, APPROVED_BY, REJECT};
use leitwerk_crds::policy::{Denial, LeitwerkPolicy, MAX_DENIALS};
use serde_json::Value;
use tracing::warn;

use super::{audit, rules};
use crate::notice::Notice;

/// What a review needs: the API and somewhere to send Events.
#[derive(Clone)]
pub struct Reviewer {
    client: kube::Client,
    recorder: Recorder,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer").finish_non_exhaustive()
    }
}

/// The webhook's routes.
pub fn router(reviewer: Reviewer) -> Router {
    Router::new()
        .route(super::PATH, post(handle))
        .route(super::MUTATE_PATH, post(super::defaults::handle))
        .with_state(reviewer)
}

/// The review's request, or the answer to a review that holds none.
pub(super) fn request_of(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review.try_into().map_err(|_| {
        Box::new(Json(
            AdmissionResponse::invalid("no request in the review").into_review(),
        ))
    })
}

async fn handle(
    State(reviewer): State<Reviewer>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request = match request_of(review) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    let response = AdmissionResponse::from(&request);
    let response = match reviewer.decide(&request).await {
        Ok(None) => response,
        Ok(Some(why)) => response.deny(why),
        // Failing closed, as the webhook's failurePolicy does.
        Err(err) => response.deny(format!(
            "Leitwerk could not check this request, so it is refused: {err:#}"
        )),
    };
    Json(response.into_review())
}

impl Reviewer {
    /// A reviewer over `client`.
    pub fn new(client: kube::Client, recorder: Recorder) -> Self {
        Self { client, recorder }
    }

    /// `None` to admit, or why not.
    async fn decide(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> anyhow::Result<Option<String>> {
        if req.kind.kind == "LeitwerkPolicy" {
            self.policy_changed(req).await;
            return Ok(None);
        }
        let Some(object) = &req.object else {
            return Ok(None);
        };
        let kind = req.kind.kind.clone();
        let ns = req.namespace.clone().unwrap_or_default();
        let name = object.name_any();
        let new = serde_json::to_value(object)?;
        let old = req
            .old_object
            .as_ref()
            .map(serde_json::to_value)
            .transpose()?;
        let user = &req.user_info;
        let username = user.username.clone().unwrap_or_default();
        let resource = format!("{kind} {ns}/{name}");

        if kind == "ContentPipeline"
            && let Some(decided) = decided(&new, old.as_ref())
        {
            if let Some(why) = approval(&new, user, decided) {
                return Ok(Some(self.deny(req, &resource, &username, why).await));
            }
            let run = new["metadata"]["annotations"][decided]
                .as_str()
                .unwrap_or_default();
            let what = format!(
                "metadata.annotations[{decided}]: {username} decides run {run} as a listed approver"
            );
            audit::line("allowed", &resource, &username, &what);
            let notice = Notice::normal("Admit", "ApproverVerified", what);
            self.tell(req, &audit::regarding(req), notice).await;
        }
        // An update that leaves the spec alone (finalizers, annotations, labels) is never
        // refused: a policy made later must not block cleaning up.
        if old.as_ref().is_some_and(|o| o["spec"] == new["spec"]) {
            return Ok(None);
        }
        let before = old.as_ref().map(rules::secret_refs).unwrap_or_default();
        for (field, secret) in rules::secret_refs(&new) {
            if before.iter().any(|(f, s)| f == &field && s == &secret) {
                continue;
            }
            if !self.may_get_secret(user, &ns, &secret).await? {
                let why = format!(
                    "{field}: {username} may not get Secret {ns}/{secret}, so may not have {resource} use it; reference a Secret you can read, or ask for get on this one"
                );
                return Ok(Some(self.deny(req, &resource, &username, why).await));
            }
            let what = format!(
                "{field}: {username} may get Secret {ns}/{secret}, so {resource} may use it"
            );
            audit::line("allowed", &resource, &username, &what);
            let notice = Notice::normal("Admit", "SecretReferenceAllowed", what);
            self.tell(req, &audit::regarding(req), notice).await;
        }
        let policies = self.policies_for(&ns).await?;
        if policies.is_empty() {
            return Ok(None);
        }
        let mut known = rules::Known::default();
        if policies.iter().any(|p| p.spec.gpu_quota.is_some()) {
            known.gpus_elsewhere = self.gpus_elsewhere(&ns, &kind, &name).await?;
        }
        if policies.iter().any(|p| p.spec.secret_selector.is_some()) {
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            for (_, secret) in rules::secret_refs(&new) {
                if let Some(found) = secrets.get_metadata_opt(&secret).await? {
                    known.secret_labels.insert(secret, found.labels().clone());
                }
            }
        }
        let mut refused = Vec::new();
        for policy in &policies {
            let findings = rules::check(&policy.spec, &kind, &new, &known);
            for f in &findings {
                refused.push(format!(
                    "{}: {} (LeitwerkPolicy {}, rule {})",
                    f.field,
                    f.message,
                    policy.name_any(),
                    f.rule
                ));
            }
            if !findings.is_empty() && !req.dry_run {
                self.record(policy, &resource, &username, &findings).await;
            }
        }
        if refused.is_empty() {
            return Ok(None);
        }
        let why = refused.join("; ");
        audit::line("denied", &resource, &username, &why);
        Ok(Some(why))
    }

    /// Whether `user` could `get` Secret `ns/name` themselves.
    async fn may_get_secret(&self, user: &UserInfo, ns: &str, name: &str) -> anyhow::Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns.to_string()),
                    verb: Some("get".into()),
                    resource: Some("secrets".into()),
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// The policies whose namespace selector matches `ns`.
    pub(super) async fn policies_for(&self, ns: &str) -> anyhow::Result<Vec<LeitwerkPolicy>> {
        let policies: Api<LeitwerkPolicy> = Api::all(self.client.clone());
        let all = policies.list(&ListParams::default()).await?.items;
        if all.is_empty() {
            return Ok(all);
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let labels = namespaces
            .get(ns)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        Ok(all.into_iter().filter(|p| selects(p, &labels)).collect())
    }

    /// The GPUs the other Leitwerk resources of `ns` ask for.
    async fn gpus_elsewhere(&self, ns: &str, kind: &str, name: &str) -> anyhow::Result<i64> {
        let mut total = 0;
        for other in ["FeatureSet", "Model", "RagIndex", "ContentPipeline"] {
            let gvk = GroupVersionKind::gvk(leitwerk_crds::GROUP, leitwerk_crds::VERSION, other);
            let plural = format!("{}s", other.to_lowercase()).replace("ragindexs", "ragindexes");
            let api: Api<DynamicObject> = Api::namespaced_with(
                self.client.clone(),
                ns,
                &ApiResource::from_gvk_with_plural(&gvk, &plural),
            );
            for item in api.list(&ListParams::default()).await?.items {
                if other == kind && item.name_any() == name {
                    continue;
                }
                total += rules::gpus(&item.data["spec"]);
            }
        }
        Ok(total)
    }

    /// Keeps the denial in the policy's status and sends an Event about it.
    async fn record(
        &self,
        policy: &LeitwerkPolicy,
        resource: &str,
        user: &str,
        findings: &[rules::Finding],
    ) {
        let api: Api<LeitwerkPolicy> = Api::all(self.client.clone());
        let mut status = policy.status.clone().unwrap_or_default();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for f in findings {
            status.denials.push(Denial {
                time: time.clone(),
                user: user.to_string(),
                resource: resource.to_string(),
                field: f.field.clone(),
                rule: f.rule.to_string(),
                message: f.message.clone(),
            });
            status.denied_total += 1;
        }
        let excess = status.denials.len().saturating_sub(MAX_DENIALS);
        status.denials.drain(..excess);
        status.last_denial = status
            .denials
            .last()
            .map(|d| format!("{} {}: {} ({})", d.time, d.resource, d.field, d.rule));
        let patch = serde_json::json!({"status": {
            "deniedTotal": status.denied_total,
            "lastDenial": status.last_denial,
            "denials": status.denials,
        }});
        if let Err(err) = api
            .patch_status(
                &policy.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            warn!(policy = %policy.name_any(), %err, "failed to record a denial in the policy's status");
        }
        let note = findings
            .iter()
            .map(|f| format!("{}: {} ({})", f.field, f.message, f.rule))
            .collect::<Vec<_>>()
            .join("; ");
        let notice = Notice::warning("Admit", "Denied", format!("{resource} by {user}: {note}"));
        if let Err(err) = self
            .recorder
            .publish(&notice.event(), &policy.object_ref(&()))
            .await
        {
            warn!(%err, "failed to publish the denial's Event");
        }
    }

    /// The Events' recorder.
    pub(super) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// A denial no policy made (a Secret the user may not read, an approver not listed): a
    /// log line and a Warning Event on the resource; returns `why`.
    async fn deny(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        resource: &str,
        user: &str,
        why: String,
    ) -> String {
        audit::line("denied", resource, user, &why);
        let notice = Notice::warning("Admit", "Denied", format!("{user}: {why}"));
        self.tell(req, &audit::regarding(req), notice).await;
        why
    }
}

/// Whether `policy` governs a namespace with `labels`.
pub fn selects(policy: &LeitwerkPolicy, labels: &BTreeMap<String, String>) -> bool {
    match &policy.spec.namespace_selector {
        None => true,
        Some(selector) => Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels)),
    }
}

/// The decision on a content run asked for now: the annotation (approve or reject) that was
/// not there before, or changed with its `approved-by`.
fn decided(new: &Value, old: Option<&Value>) -> Option<&'static str> {
    let annotations = &new["metadata"]["annotations"];
    let before = old.map(|o| &o["metadata"]["annotations"]);
    [APPROVE, REJECT].into_iter().find(|key| {
        annotations[*key].is_string()
            && before.is_none_or(|b| {
                b[*key] != annotations[*key] || b[APPROVED_BY] != annotations[APPROVED_BY]
            })
    })
}

/// Why a content run's approval or rejection (`decided`) is refused, if it is: only a listed
/// approver (by user name or group) may decide, and `approved-by` must name the user or one
/// of their groups.
fn approval(new: &Value, user: &UserInfo, decided: &str) -> Option<String> {
    let annotations = &new["metadata"]["annotations"];
    let username = user.username.clone().unwrap_or_default();
    let who: Vec<String> = std::iter::once(username.clone())
        .chain(user.groups.clone().unwrap_or_default())
        .collect();
    let approvers: Vec<&str> = new["spec"]["approval"]["approvers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !approvers.is_empty() && !who.iter().any(|w| approvers.contains(&w.as_str())) {
        return Some(format!(
            "metadata.annotations[{decided}]: {username} is not among spec.approval.approvers ({}), nor is any of their groups",
            approvers.join(", ")
        ));
    }
    if let Some(by) = annotations[APPROVED_BY].as_str()
        && !who.iter().any(|w| w == by)
    {
        return Some(format!(
            "metadata.annotations[{APPROVED_BY}]: {by:?} is not {username} or one of their groups; record who approves truthfully"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: Some(name.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        }
    }

    fn pipeline(approve: Option<&str>, by: Option<&str>) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(a) = approve {
            annotations.insert(APPROVE.into(), json!(a));
        }
        if let Some(b) = by {
            annotations.insert(APPROVED_BY.into(), json!(b));
        }
        json!({"metadata": {"annotations": annotations},
               "spec": {"approval": {"required": true, "approvers": ["alice", "editors"]}}})
    }

    /// The webhook's approval check: a decision asked for now, then who may make it.
    fn check(new: &Value, old: Option<&Value>, user: &UserInfo) -> Option<String> {
        decided(new, old).and_then(|d| approval(new, user, d))
    }

    #[test]
    fn only_a_listed_approver_or_group_member_approves_and_only_as_themselves() {
        let approved = pipeline(Some("run1"), Some("editors"));
        let before = pipeline(None, None);
        assert_eq!(
            check(&approved, Some(&before), &user("bob", &["editors"])),
            None
        );
        assert_eq!(
            check(
                &pipeline(Some("run1"), None),
                Some(&before),
                &user("alice", &[])
            ),
            None
        );
        let refused = check(&approved, Some(&before), &user("mallory", &["marketing"]));
        assert!(refused.is_some_and(|r| {
            r.contains("mallory is not among spec.approval.approvers (alice, editors)")
        }));
        let impersonated = check(
            &pipeline(Some("run1"), Some("alice")),
            Some(&before),
            &user("bob", &["editors"]),
        );
        assert!(impersonated.is_some_and(|r| r.contains("\"alice\" is not bob")));
        // Another edit of an approved pipeline is not an approval.
        assert_eq!(
            check(&approved, Some(&approved), &user("mallory", &[])),
            None
        );
    }
}
