//! Defaults from `LeitwerkPolicy`: what the mutating webhook fills in where a new resource
//! leaves a field out. Pure functions over the resource as the API server sends it (JSON);
//! the webhook (`super::review`) finds the policies and answers with the JSON patch.
//!
//! Only fields the author left out are filled, and only on create: an update never changes
//! what the author wrote or what was filled in before. What was filled in is named in the
//! annotation `leitwerk.dev/defaulted`, so the stored object says where each value came from.

use axum::{Json, extract::State};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use leitwerk_crds::labels::DEFAULTED;
use leitwerk_crds::policy::LeitwerkPolicySpec;
use serde_json::{Value, json};
use tracing::warn;

use super::audit;
use super::review::Reviewer;

/// The mutating webhook's answer: the request admitted, with a JSON patch when a policy fills
/// something in. It never refuses: where it cannot look the policies up it admits the object
/// unchanged (its `failurePolicy` is `Ignore`), and the validating webhook still holds every
/// rule.
pub async fn handle(
    State(reviewer): State<Reviewer>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request = match super::review::request_of(review) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    let response = AdmissionResponse::from(&request);
    let response = match reviewer.defaults(&request).await {
        Ok(None) => response,
        Ok(Some(patch)) => match response.clone().with_patch(patch) {
            Ok(patched) => patched,
            Err(err) => {
                warn!(%err, "a default could not be written as a patch; admitted unchanged");
                response
            }
        },
        Err(err) => {
            warn!(
                err = format!("{err:#}"),
                "policies could not be read for defaults; admitted unchanged"
            );
            response
        }
    };
    Json(response.into_review())
}

impl Reviewer {
    /// The patch that fills in what the namespace's policies give, for a new object.
    async fn defaults(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> anyhow::Result<Option<json_patch::Patch>> {
        let (Operation::Create, Some(object)) = (&req.operation, &req.object) else {
            return Ok(None);
        };
        let ns = req.namespace.clone().unwrap_or_default();
        let policies = self.policies_for(&ns).await?;
        let mut named: Vec<(String, &LeitwerkPolicySpec)> =
            policies.iter().map(|p| (p.name_any(), &p.spec)).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let value = serde_json::to_value(object)?;
        let filled = fill(&named, &req.kind.kind, &value);
        if filled.is_empty() {
            return Ok(None);
        }
        let text: Vec<String> = filled.iter().map(ToString::to_string).collect();
        let resource = format!("{} {ns}/{}", req.kind.kind, object.name_any());
        let user = req.user_info.username.clone().unwrap_or_default();
        audit::line("defaulted", &resource, &user, &text.join("; "));
        Ok(Some(json_patch::diff(&value, &apply(&value, &filled))))
    }
}

/// One value filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    /// The field, e.g. `spec.budget.maxCost`.
    pub field: &'static str,
    /// Its value.
    pub value: Value,
    /// The policy that gave it.
    pub policy: String,
}

impl std::fmt::Display for Filled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        write!(f, "{}={value} (LeitwerkPolicy {})", self.field, self.policy)
    }
}

/// What the policies (`(name, spec)`, sorted by name) fill in on a new `kind` object.
pub fn fill(policies: &[(String, &LeitwerkPolicySpec)], kind: &str, object: &Value) -> Vec<Filled> {
    let spec = &object["spec"];
    let mut out = Vec::new();
    if kind == "Experiment" && spec["prometheusUrl"].is_null() {
        let first = policies.iter().find_map(|(name, p)| {
            let url = p.defaults.as_ref()?.prometheus_url.clone()?;
            Some((name.clone(), url))
        });
        if let Some((policy, url)) = first {
            out.push(Filled {
                field: "spec.prometheusUrl",
                value: json!(url),
                policy,
            });
        }
    }
    if kind == "ContentPipeline"
        && spec["budget"].is_object()
        && spec["budget"]["maxCost"].is_null()
    {
        // Each policy's default, else its limit; the least of them, lowered to the least
        // limit so that every policy's limit holds (then named after the policy of that limit).
        let least = policies
            .iter()
            .filter_map(|(name, p)| {
                let cost = p.defaults.as_ref().and_then(|d| d.max_run_cost);
                Some((name.clone(), cost.or(p.max_run_cost)?))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let limit = policies
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), p.max_run_cost?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let least = match (least, limit) {
            (Some(least), Some(limit)) if limit.1 < least.1 => Some(limit),
            (least, _) => least,
        };
        if let Some((policy, cost)) = least {
            out.push(Filled {
                field: "spec.budget.maxCost",
                value: json!(cost),
                policy,
            });
        }
    }
    out
}

/// `object` with `filled` set and named in its `leitwerk.dev/defaulted` annotation.
pub fn apply(object: &Value, filled: &[Filled]) -> Value {
    let mut out = object.clone();
    for f in filled {
        let mut at = &mut out;
        let mut path = f.field.split('.').peekable();
        while let Some(key) = path.next() {
            if !at.is_object() {
                *at = json!({});
            }
            let slot = &mut at[key];
            if path.peek().is_none() {
                *slot = f.value.clone();
                break;
            }
            at = slot;
        }
    }
    if !filled.is_empty() {
        let text: Vec<String> = filled.iter().map(ToString::to_string).collect();
        // Indexing into anything but an object (or null) panics: whatever the request holds
        // there (the fuzzer sent numbers), it becomes an object.
        if !out.is_object() {
            out = json!({});
        }
        if !out["metadata"].is_object() {
            out["metadata"] = json!({});
        }
        if !out["metadata"]["annotations"].is_object() {
            out["metadata"]["annotations"] = json!({});
        }
        out["metadata"]["annotations"][DEFAULTED] = json!(text.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leitwerk_crds::policy::PolicyDefaults;

    fn policy(limit: Option<f64>, default: Option<f64>, url: Option<&str>) -> LeitwerkPolicySpec {
        LeitwerkPolicySpec {
            max_run_cost: limit,
            defaults: Some(PolicyDefaults {
                max_run_cost: default,
                prometheus_url: url.map(str::to_string),
            }),
            ..LeitwerkPolicySpec::default()
        }
    }

    fn pipeline(budget: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"budget": budget}})
    }

    #[test]
    fn a_pipeline_without_a_cost_gets_the_least_default_or_limit() {
        let (a, b) = (
            policy(Some(5.0), Some(2.0), None),
            policy(Some(1.5), None, None),
        );
        let policies = [("a".to_string(), &a), ("b".to_string(), &b)];
        let filled = fill(
            &policies,
            "ContentPipeline",
            &pipeline(json!({"maxTokens": 1000})),
        );
        assert_eq!(
            filled,
            [Filled {
                field: "spec.budget.maxCost",
                value: json!(1.5),
                policy: "b".into(),
            }]
        );
        let out = apply(&pipeline(json!({"maxTokens": 1000})), &filled);
        assert_eq!(
            out["spec"]["budget"],
            json!({"maxTokens": 1000, "maxCost": 1.5})
        );
        assert_eq!(
            out["metadata"]["annotations"][DEFAULTED],
            "spec.budget.maxCost=1.5 (LeitwerkPolicy b)"
        );
        // A default above another policy's limit is lowered to that limit.
        let c = policy(Some(3.0), None, None);
        let policies = [("a".to_string(), &a), ("c".to_string(), &c)];
        let filled = fill(
            &policies,
            "ContentPipeline",
            &pipeline(json!({"maxTokens": 1000})),
        );
        assert_eq!(
            (filled[0].value.clone(), filled[0].policy.as_str()),
            (json!(2.0), "a")
        );
    }

    #[test]
    fn odd_metadata_is_replaced_not_a_panic() {
        // Found by the fuzzer (policy-defaults): metadata that is a number, a bool, an array.
        let a = policy(Some(5.0), None, None);
        let policies = [("a".to_string(), &a)];
        for metadata in [json!(3), json!(true), json!([1]), json!({"annotations": 7})] {
            let object = json!({"metadata": metadata, "spec": {"budget": {"maxTokens": 100}}});
            let filled = fill(&policies, "ContentPipeline", &object);
            let out = apply(&object, &filled);
            assert_eq!(
                out["metadata"]["annotations"][DEFAULTED],
                "spec.budget.maxCost=5.0 (LeitwerkPolicy a)"
            );
        }
    }

    #[test]
    fn what_the_author_wrote_is_never_filled_over() {
        let a = policy(Some(5.0), Some(2.0), Some("http://thanos.team-a:9090"));
        let policies = [("a".to_string(), &a)];
        let written = pipeline(json!({"maxTokens": 1000, "maxCost": 4.0}));
        assert!(fill(&policies, "ContentPipeline", &written).is_empty());
        let exp = json!({"spec": {"prometheusUrl": "http://own:9090"}});
        assert!(fill(&policies, "Experiment", &exp).is_empty());
        // Nothing to fill without a policy that says what.
        let none = LeitwerkPolicySpec::default();
        let bare = [("n".to_string(), &none)];
        assert!(
            fill(
                &bare,
                "ContentPipeline",
                &pipeline(json!({"maxTokens": 1000}))
            )
            .is_empty()
        );
        assert!(fill(&bare, "Experiment", &json!({"spec": {}})).is_empty());
    }

    #[test]
    fn an_experiment_without_a_prometheus_gets_the_first_policys() {
        let a = policy(None, None, None);
        let b = policy(None, None, Some("http://thanos.team-a:9090/"));
        let c = policy(None, None, Some("http://other:9090/"));
        let policies = [
            ("a".to_string(), &a),
            ("b".to_string(), &b),
            ("c".to_string(), &c),
        ];
        let exp = json!({"metadata": {"annotations": {"x": "y"}}, "spec": {"variants": []}});
        let filled = fill(&policies, "Experiment", &exp);
        let out = apply(&exp, &filled);
        assert_eq!(out["spec"]["prometheusUrl"], "http://thanos.team-a:9090/");
        assert_eq!(out["metadata"]["annotations"]["x"], "y");
        assert_eq!(
            out["metadata"]["annotations"][DEFAULTED],
            "spec.prometheusUrl=http://thanos.team-a:9090/ (LeitwerkPolicy b)"
        );
        // Other kinds are left alone.
        assert!(fill(&policies, "Model", &exp).is_empty());
    }
}
