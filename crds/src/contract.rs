//! What crosses the process boundary between the operator and its Jobs and pods besides the
//! summaries (`summary`): the environment variable that carries a resource's spec, and where
//! a RagIndex's index files live in the artifact store.

/// The environment variable that carries a Job's resource spec as JSON (the trainer's
/// `--spec`): specs outgrow comfortable command lines.
pub const SPEC_ENV: &str = "LEITWERK_SPEC";

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

#[cfg(test)]
mod tests {
    use super::*;

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
