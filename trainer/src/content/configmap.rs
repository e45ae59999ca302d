//! Publishing an approved run into the ConfigMap `spec.publish.configMap` names.
//!
//! The operator creates that ConfigMap (owned by the pipeline) and a Role that lets the
//! publish Job's own ServiceAccount `get` and `patch` that one ConfigMap and nothing else;
//! the pod's projected token is the only credential it holds. This writes the run into it
//! with one merge patch: the article as Markdown, HTML and JSON-LD, the whole payload, and
//! the run and payload digest as annotations, so a reader can tell which run it holds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Config};
use leitwerk_content::publish::Payload;
use leitwerk_crds::labels::{CONTENT_PIPELINE, RUN};

use crate::pipeline::{JobError, error_chain};

/// The keys of a published ConfigMap.
pub const KEYS: [&str; 4] = [
    "article.md",
    "article.html",
    "article.jsonld",
    "payload.json",
];

/// Annotation holding the digest of the published payload.
pub const PAYLOAD_DIGEST: &str = "leitwerk.dev/payload-digest";

/// What the API server accepts in one ConfigMap (its data and metadata together).
const LIMIT: usize = 1024 * 1024 - 16 * 1024;

/// The ConfigMap's data for `payload` (whose JSON is `bytes`).
pub fn data(payload: &Payload, bytes: &[u8]) -> Result<BTreeMap<String, String>, JobError> {
    let json_ld = serde_json::to_string_pretty(&payload.json_ld)
        .map_err(|e| JobError::Invalid(format!("the JSON-LD does not serialise: {e}")))?;
    let data = BTreeMap::from([
        (KEYS[0].to_string(), payload.markdown.clone()),
        (KEYS[1].to_string(), payload.html.clone()),
        (KEYS[2].to_string(), json_ld),
        (
            KEYS[3].to_string(),
            String::from_utf8_lossy(bytes).into_owned(),
        ),
    ]);
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > LIMIT {
        return Err(JobError::Invalid(format!(
            "spec.publish.configMap: the article is {size} bytes, more than a ConfigMap holds ({LIMIT}); publish it to publish.artifactStore or publish.webhook instead"
        )));
    }
    Ok(data)
}

/// Writes the run into ConfigMap `name` in `namespace`, through the pod's own in-cluster
/// credentials. Returns where it went.
pub async fn publish(
    namespace: &str,
    pipeline: &str,
    name: &str,
    payload: &Payload,
    bytes: &[u8],
    digest: &str,
) -> Result<String, JobError> {
    let data = data(payload, bytes)?;
    let config = Config::incluster().map_err(|e| {
        JobError::Invalid(format!(
            "spec.publish.configMap: this pod has no API credentials ({}); the operator gives the publish Job a ServiceAccount token only for a ConfigMap target",
            error_chain(&e)
        ))
    })?;
    let client = Client::try_from(config)
        .map_err(|e| JobError::Invalid(format!("the API client: {}", error_chain(&e))))?;
    let patch = serde_json::json!({
        "metadata": {
            "labels": {CONTENT_PIPELINE: pipeline, RUN: payload.run_id},
            "annotations": {RUN: payload.run_id, PAYLOAD_DIGEST: digest},
        },
        "data": data,
    });
    Api::<ConfigMap>::namespaced(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            JobError::Invalid(format!(
                "spec.publish.configMap {namespace}/{name}: {}",
                error_chain(&e)
            ))
        })?;
    Ok(format!("configmap/{namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(markdown: String) -> Payload {
        Payload {
            run_id: "abc".into(),
            experiment_id: None,
            title: "T".into(),
            description: "D".into(),
            markdown,
            html: "<h1>T</h1>".into(),
            json_ld: serde_json::json!({"@type": "Article"}),
            sources: vec![],
        }
    }

    #[test]
    fn the_article_fills_every_key() {
        let p = payload("# T\n".into());
        let bytes = serde_json::to_vec(&p).unwrap();
        let d = data(&p, &bytes).unwrap();
        assert_eq!(d.keys().map(String::as_str).collect::<Vec<_>>(), {
            let mut k = KEYS.to_vec();
            k.sort();
            k
        });
        assert_eq!(d["article.md"], "# T\n");
        assert!(d["article.jsonld"].contains("\"Article\""));
        assert_eq!(d["payload.json"].as_bytes(), bytes.as_slice());
    }

    #[test]
    fn an_article_too_large_for_a_configmap_is_refused_naming_the_alternatives() {
        let p = payload("x".repeat(600 * 1024));
        let bytes = serde_json::to_vec(&p).unwrap();
        let err = data(&p, &bytes).unwrap_err().to_string();
        assert!(err.contains("spec.publish.configMap"), "{err}");
        assert!(err.contains("publish.artifactStore"), "{err}");
    }
}
