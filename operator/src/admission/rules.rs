//! The rules of a `LeitwerkPolicy`, applied to a resource as the API server sends it (JSON).
//! Pure functions: the webhook (`super::review`) gathers what they need.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use leitwerk_crds::policy::LeitwerkPolicySpec;
use serde_json::Value;

/// One rule a resource breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The field at fault, e.g. `spec.prometheusUrl`.
    pub field: String,
    /// The rule's name in the policy's spec, e.g. `prometheusUrls`.
    pub rule: &'static str,
    /// What is wrong and what would be allowed.
    pub message: String,
}

/// What the rules need to know beyond the object.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// GPUs the namespace's other Leitwerk resources ask for.
    pub gpus_elsewhere: i64,
    /// The labels of each Secret the object names (absent: no such Secret).
    pub secret_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// Every rule of `policy` that `object` (of `kind`) breaks.
pub fn check(
    policy: &LeitwerkPolicySpec,
    kind: &str,
    object: &Value,
    known: &Known,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let spec = &object["spec"];
    let gpus_elsewhere = known.gpus_elsewhere;
    if policy.secret_names.is_some() || policy.secret_selector.is_some() {
        let selector = policy
            .secret_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok());
        for (field, name) in secret_refs(object) {
            let by_name = policy
                .secret_names
                .as_ref()
                .is_some_and(|names| names.contains(&name));
            let by_label = selector.as_ref().is_some_and(|s| {
                known
                    .secret_labels
                    .get(&name)
                    .is_some_and(|labels| s.matches(labels))
            });
            if !by_name && !by_label {
                let mut allowed = Vec::new();
                if let Some(names) = &policy.secret_names {
                    allowed.push(format!("names {}", names.join(", ")));
                }
                if let Some(s) = &selector {
                    allowed.push(format!("labels {s}"));
                }
                findings.push(Finding {
                    field,
                    rule: if by_name || policy.secret_selector.is_none() {
                        "secretNames"
                    } else {
                        "secretSelector"
                    },
                    message: format!(
                        "Secret {name:?} is not one this namespace may reference (allowed: {})",
                        allowed.join("; ")
                    ),
                });
            }
        }
    }
    if let Some(prefixes) = &policy.image_prefixes {
        for (field, image) in images(spec) {
            if !prefixes.iter().any(|p| image.starts_with(p.as_str())) {
                findings.push(Finding {
                    field,
                    rule: "imagePrefixes",
                    message: format!(
                        "image {image:?} comes from no allowed registry (allowed prefixes: {})",
                        prefixes.join(", ")
                    ),
                });
            }
        }
    }
    if let (Some(prefixes), Some(url)) = (
        &policy.prometheus_urls,
        spec["prometheusUrl"]
            .as_str()
            .filter(|_| kind == "Experiment"),
    ) && !prefixes.iter().any(|p| url.starts_with(p.as_str()))
    {
        findings.push(Finding {
            field: "spec.prometheusUrl".into(),
            rule: "prometheusUrls",
            message: format!(
                "{url:?} is not an allowed Prometheus (allowed: {}); leave prometheusUrl out to use the operator's",
                prefixes.join(", ")
            ),
        });
    }
    if let Some(hosts) = &policy.endpoint_hosts {
        for (field, url) in endpoints(kind, spec) {
            let host = host_of(&url);
            let allowed = host.as_ref().is_some_and(|(host, port)| {
                hosts
                    .iter()
                    .any(|h| h == host || h == &format!("{host}:{port}"))
            });
            if !allowed {
                findings.push(Finding {
                    field,
                    rule: "endpointHosts",
                    message: format!(
                        "{url:?} names a host this namespace may not call (allowed: {})",
                        hosts.join(", ")
                    ),
                });
            }
        }
    }
    if let Some(quota) = policy.gpu_quota {
        let asked = gpus(spec);
        if asked > 0 && gpus_elsewhere + asked > quota {
            findings.push(Finding {
                field: "spec".into(),
                rule: "gpuQuota",
                message: format!(
                    "asks for {asked} nvidia.com/gpu; with the {gpus_elsewhere} the namespace's other Leitwerk resources ask for, that exceeds its quota of {quota}"
                ),
            });
        }
    }
    if kind == "ContentPipeline" {
        if let Some(limit) = policy.max_run_cost {
            match spec["budget"]["maxCost"].as_f64() {
                Some(cost) if cost <= limit => {}
                Some(cost) => findings.push(Finding {
                    field: "spec.budget.maxCost".into(),
                    rule: "maxRunCost",
                    message: format!("{cost} is more than a run may cost here ({limit})"),
                }),
                None => findings.push(Finding {
                    field: "spec.budget.maxCost".into(),
                    rule: "maxRunCost",
                    message: format!("must be set, at most {limit}"),
                }),
            }
        }
        if policy.require_redaction && spec["guardrails"]["redactPii"].as_bool() == Some(false) {
            findings.push(Finding {
                field: "spec.guardrails.redactPii".into(),
                rule: "requireRedaction",
                message: "personal data must be redacted before any model sees it here; remove redactPii: false".into(),
            });
        }
    }
    findings
}

/// Every Secret the object names: (field path, Secret name), for each `…SecretRef` with a name.
pub fn secret_refs(object: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(&object["spec"], "spec", &mut |path, key, value| {
        if key.ends_with("SecretRef")
            && let Some(name) = value["name"].as_str()
        {
            out.push((format!("{path}.{key}.name"), name.to_string()));
        }
    });
    out
}

/// The images a spec chooses itself.
fn images(spec: &Value) -> Vec<(String, String)> {
    ["training", "serving"]
        .iter()
        .filter_map(|part| {
            let image = spec[part]["image"].as_str()?;
            Some((format!("spec.{part}.image"), image.to_string()))
        })
        .collect()
}

/// The endpoints outside the cluster's own a spec names.
fn endpoints(kind: &str, spec: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match kind {
        "ContentPipeline" => {
            for (i, g) in spec["generators"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                for backend in ["openAiCompatible", "inferenceServer"] {
                    if let Some(url) = g[backend]["url"].as_str() {
                        out.push((format!("spec.generators[{i}].{backend}.url"), url.into()));
                    }
                }
            }
        }
        "RagIndex" => {
            if let Some(url) = spec["vectorStore"]["qdrant"]["url"].as_str() {
                out.push(("spec.vectorStore.qdrant.url".into(), url.into()));
            }
        }
        _ => {}
    }
    out
}

/// A URL's host and port (the scheme's default when it names none).
fn host_of(url: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(url).ok()?;
    Some((url.host_str()?.to_string(), url.port_or_known_default()?))
}

/// The GPUs a spec asks for: every `resources.gpu.count`, times the `replicas` beside it.
pub fn gpus(spec: &Value) -> i64 {
    let mut total = 0;
    walk(spec, "spec", &mut |_, key, value| {
        if key == "resources"
            && let Some(count) = value["gpu"]["count"].as_i64()
        {
            total += count.max(0);
        }
    });
    // Serving runs `replicas` pods, each with its resources.
    if let Some(per_pod) = spec["serving"]["resources"]["gpu"]["count"].as_i64() {
        let replicas = spec["serving"]["replicas"].as_i64().unwrap_or(1).max(1);
        total += per_pod.max(0) * (replicas - 1);
    }
    total
}

/// Calls `visit(path, key, value)` for every member of every object under `value`.
fn walk(value: &Value, path: &str, visit: &mut dyn FnMut(&str, &str, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                visit(path, key, child);
                walk(child, &format!("{path}.{key}"), visit);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> LeitwerkPolicySpec {
        LeitwerkPolicySpec {
            secret_names: Some(vec!["openai".into()]),
            image_prefixes: Some(vec!["registry.example.com/ml/".into()]),
            prometheus_urls: Some(vec!["http://prometheus.monitoring:9090".into()]),
            endpoint_hosts: Some(vec!["llm.internal".into(), "qdrant.vectors:6334".into()]),
            gpu_quota: Some(2),
            max_run_cost: Some(5.0),
            require_redaction: true,
            ..Default::default()
        }
    }

    fn gpus_used(n: i64) -> Known {
        Known {
            gpus_elsewhere: n,
            ..Default::default()
        }
    }

    fn rules(findings: &[Finding]) -> Vec<(&str, &str)> {
        findings
            .iter()
            .map(|f| (f.field.as_str(), f.rule))
            .collect()
    }

    #[test]
    fn an_experiment_may_only_read_an_allowed_prometheus() {
        let bad = json!({"spec": {"prometheusUrl": "http://169.254.169.254/latest"}});
        let found = check(&policy(), "Experiment", &bad, &gpus_used(0));
        assert_eq!(rules(&found), [("spec.prometheusUrl", "prometheusUrls")]);
        assert!(found[0].message.contains("169.254.169.254"), "{found:?}");
        let good = json!({"spec": {"prometheusUrl": "http://prometheus.monitoring:9090/"}});
        assert!(check(&policy(), "Experiment", &good, &gpus_used(0)).is_empty());
        // Without one, the operator's own Prometheus is used.
        assert!(check(&policy(), "Experiment", &json!({"spec": {}}), &gpus_used(0)).is_empty());
    }

    #[test]
    fn secrets_images_and_endpoints_are_checked_where_they_are_named() {
        let pipeline = json!({"spec": {
            "generators": [
                {"name": "a", "openAiCompatible": {"url": "https://llm.internal/v1", "model": "m",
                  "apiKeySecretRef": {"name": "openai", "key": "k"}}},
                {"name": "b", "openAiCompatible": {"url": "https://evil.example.com:443/v1", "model": "m",
                  "apiKeySecretRef": {"name": "other-team", "key": "k"}}}],
            "budget": {"maxTokens": 1000, "maxCost": 4.0},
            "guardrails": {"redactPii": true}}});
        assert_eq!(
            rules(&check(
                &policy(),
                "ContentPipeline",
                &pipeline,
                &gpus_used(0)
            )),
            [
                (
                    "spec.generators[1].openAiCompatible.apiKeySecretRef.name",
                    "secretNames"
                ),
                ("spec.generators[1].openAiCompatible.url", "endpointHosts"),
            ]
        );
        let model = json!({"spec": {"training": {"image": "docker.io/evil/trainer:1"},
                                    "serving": {"image": "registry.example.com/ml/server:2"}}});
        assert_eq!(
            rules(&check(&policy(), "Model", &model, &gpus_used(0))),
            [("spec.training.image", "imagePrefixes")]
        );
        let index = json!({"spec": {"vectorStore": {"qdrant": {"url": "http://qdrant.vectors:6333", "collection": "c"}}}});
        assert_eq!(
            rules(&check(&policy(), "RagIndex", &index, &gpus_used(0))),
            [("spec.vectorStore.qdrant.url", "endpointHosts")],
            "the allowed entry names port 6334"
        );
    }

    #[test]
    fn a_secret_is_allowed_by_name_or_by_its_labels() {
        let policy = LeitwerkPolicySpec {
            secret_names: Some(vec!["openai".into()]),
            secret_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(
                        [("leitwerk.dev/usable".to_string(), "true".to_string())].into(),
                    ),
                    ..Default::default()
                },
            ),
            ..Default::default()
        };
        let index = json!({"spec": {"sources": [
            {"s3": {"credentialsSecretRef": {"name": "openai"}}},
            {"s3": {"credentialsSecretRef": {"name": "labelled"}}},
            {"s3": {"credentialsSecretRef": {"name": "other"}}}]}});
        let mut known = Known::default();
        known.secret_labels.insert(
            "labelled".into(),
            [("leitwerk.dev/usable".to_string(), "true".to_string())].into(),
        );
        known.secret_labels.insert("other".into(), BTreeMap::new());
        let found = check(&policy, "RagIndex", &index, &known);
        assert_eq!(
            rules(&found),
            [(
                "spec.sources[2].s3.credentialsSecretRef.name",
                "secretSelector"
            )]
        );
        assert!(
            found[0]
                .message
                .contains("names openai; labels leitwerk.dev/usable=true"),
            "{found:?}"
        );
    }

    #[test]
    fn gpus_count_serving_replicas_and_the_namespace_s_other_resources() {
        let model = json!({"spec": {
            "training": {"resources": {"gpu": {"count": 1}}},
            "serving": {"replicas": 3, "resources": {"gpu": {"count": 1}}}}});
        assert_eq!(gpus(&model["spec"]), 4);
        let one = json!({"spec": {"training": {"resources": {"gpu": {"count": 1}}}}});
        assert!(check(&policy(), "Model", &one, &gpus_used(1)).is_empty());
        let found = check(&policy(), "Model", &one, &gpus_used(2));
        assert_eq!(rules(&found), [("spec", "gpuQuota")]);
        assert!(found[0].message.contains("quota of 2"), "{found:?}");
    }

    #[test]
    fn content_runs_need_a_bounded_cost_and_redaction() {
        let pipeline = json!({"spec": {"budget": {"maxTokens": 1000},
                                       "guardrails": {"redactPii": false}}});
        assert_eq!(
            rules(&check(
                &policy(),
                "ContentPipeline",
                &pipeline,
                &gpus_used(0)
            )),
            [
                ("spec.budget.maxCost", "maxRunCost"),
                ("spec.guardrails.redactPii", "requireRedaction")
            ]
        );
        let costly = json!({"spec": {"budget": {"maxTokens": 1000, "maxCost": 50.0}}});
        assert_eq!(
            rules(&check(&policy(), "ContentPipeline", &costly, &gpus_used(0))),
            [("spec.budget.maxCost", "maxRunCost")]
        );
        // A policy that leaves every rule out allows anything.
        assert!(
            check(
                &LeitwerkPolicySpec::default(),
                "ContentPipeline",
                &pipeline,
                &gpus_used(99)
            )
            .is_empty()
        );
    }
}
