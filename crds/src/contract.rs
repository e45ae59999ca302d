//! What crosses the process boundary between the operator and its Jobs and pods besides the
//! summaries (`summary`): the environment variable that carries a resource's spec, and where
//! a RagIndex's index files live in the artifact store.

/// The loopback port of the `i`-th generator's sidecar (`inferenceServer.model`) in a content
/// run's pod: HTTP on this port, gRPC on the next. Pods have their own network, so fixed
/// ports cannot collide across runs.
pub fn local_generator_port(i: usize) -> u16 {
    18080 + 2 * i as u16
}

/// The environment variable that carries a Job's resource spec as JSON (the trainer's
/// `--spec`): specs outgrow comfortable command lines.
pub const SPEC_ENV: &str = "LEITWERK_SPEC";

/// The environment variable that carries a RagIndex's Qdrant API key (from
/// `spec.vectorStore.qdrant.apiKeySecretRef`) into its indexing Job and retrieval pods.
pub const QDRANT_API_KEY_ENV: &str = "LEITWERK_QDRANT_API_KEY";

/// The file extension of an index version.
pub const INDEX_EXTENSION: &str = "lwrag";

/// The key prefix (relative to the artifact store) under which a RagIndex's index files live.
pub fn index_prefix(namespace: &str, name: &str) -> String {
    format!("indexes/{namespace}/{name}/")
}

/// The key of the index version whose file has the SHA-256 `hex` digest.
pub fn index_key(namespace: &str, name: &str, hex: &str) -> String {
    format!("{}{hex}.{INDEX_EXTENSION}", index_prefix(namespace, name))
}

/// Whether `key` names an index version file.
pub fn is_index_file(key: &str) -> bool {
    key.strip_suffix(INDEX_EXTENSION)
        .is_some_and(|k| k.ends_with('.'))
}

/// The environment variable that carries generator `i`'s API key (its position in
/// `spec.generators`) into the content Job, from the Secret the generator names.
pub fn api_key_env(i: usize) -> String {
    format!("LEITWERK_GENERATOR_API_KEY_{i}")
}

/// The environment variable with the HMAC key of the redaction placeholders.
pub const REDACTION_KEY_ENV: &str = "LEITWERK_REDACTION_KEY";
/// The environment variable with the link map (JSON: anchor text → URL) a content run uses.
pub const LINK_MAP_ENV: &str = "LEITWERK_LINK_MAP";
/// The environment variable with a run's prompt templates (JSON: key → minijinja template)
/// from the ConfigMap `spec.templatesRef` names; absent keys use the built-in templates.
pub const TEMPLATES_ENV: &str = "LEITWERK_TEMPLATES";
/// The keys a prompt templates ConfigMap may hold.
pub const TEMPLATE_KEYS: [&str; 4] = ["system", "outline", "section", "revision"];

/// The environment variable with the webhook's bearer token (the publish Job only).
pub const WEBHOOK_TOKEN_ENV: &str = "LEITWERK_WEBHOOK_TOKEN";
/// The environment variable with the webhook's signing key (the publish Job only).
pub const WEBHOOK_SIGNING_KEY_ENV: &str = "LEITWERK_WEBHOOK_SIGNING_KEY";

/// The key prefix of a content run's artifacts (the claim ledger, the draft, the payload).
pub fn content_run_prefix(namespace: &str, name: &str, run_id: &str) -> String {
    format!("content/{namespace}/{name}/{run_id}/")
}

/// The link map of a ContentPipeline from its ConfigMap's data: every value is a YAML mapping
/// of anchor text to URL (an absolute http(s) URL or a path starting with `/`). Errors name
/// the key and the entry, and say what a valid entry looks like.
pub fn parse_link_map(
    data: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, Vec<String>> {
    let mut links = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for (key, text) in data {
        let map: std::collections::BTreeMap<String, String> = match yaml_serde::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!(
                    "key {key:?} is not a mapping of anchor text to URL ({e}); write lines like `Pro plan: /pricing`"
                ));
                continue;
            }
        };
        for (anchor, url) in map {
            let path = url.starts_with('/') && !url.starts_with("//");
            let absolute = ["http://", "https://"]
                .iter()
                .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
            if anchor.trim().is_empty() || url.contains(char::is_whitespace) || !(path || absolute)
            {
                errors.push(format!(
                    "key {key:?}: {anchor:?} → {url:?} is not a link: use an absolute http(s) URL or a path starting with /"
                ));
            } else {
                links.insert(anchor, url);
            }
        }
    }
    if errors.is_empty() {
        Ok(links)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_maps_accept_paths_and_http_urls_and_name_every_bad_entry() {
        let data = std::collections::BTreeMap::from([(
            "links.yaml".to_string(),
            "Pro plan: /pricing\nHubSpot sync: https://example.com/hubspot\n".to_string(),
        )]);
        let links = parse_link_map(&data).unwrap();
        assert_eq!(links["Pro plan"], "/pricing");
        assert_eq!(links.len(), 2);
        let bad = std::collections::BTreeMap::from([
            (
                "a".to_string(),
                "Pricing: javascript:alert(1)\nDocs: //evil\n".to_string(),
            ),
            ("b".to_string(), "- not a map".to_string()),
        ]);
        let errors = parse_link_map(&bad).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("\"Docs\"") || errors[0].contains("\"Pricing\""));
        assert!(
            errors
                .iter()
                .all(|e| e.contains("key \"a\"") || e.contains("key \"b\""))
        );
    }

    #[test]
    fn index_files_live_under_their_namespace_and_name_by_digest() {
        let key = index_key("marketing", "docs", "ab12");
        assert_eq!(key, "indexes/marketing/docs/ab12.lwrag");
        assert!(key.starts_with(&index_prefix("marketing", "docs")));
        assert!(is_index_file(&key));
        assert!(!is_index_file("indexes/marketing/docs/notes.txt"));
        assert!(!is_index_file("indexes/marketing/docs/xlwrag"));
    }
}
