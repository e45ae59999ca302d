//! What a RagIndex's spec names (ConfigMaps and Secrets, with their fields) and what its
//! schema cannot check.

use leitwerk_crds::{
    RagIndexSpec,
    rag_index::{EMBEDDING_MODELS, embedding_model},
};

use crate::validation::{FieldError, check_cron, into_result};

/// `(field, ConfigMap name)` of every ConfigMap the spec reads: sources and the labelled set.
pub fn config_maps(spec: &RagIndexSpec) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = spec
        .sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some((
                format!("spec.sources[{i}].configMapRef.name"),
                s.config_map_ref.as_ref()?.name.clone(),
            ))
        })
        .collect();
    if let Some(cm) = spec
        .evaluation
        .as_ref()
        .and_then(|e| e.config_map_ref.as_ref())
    {
        refs.push(("spec.evaluation.configMapRef.name".into(), cm.name.clone()));
    }
    refs
}

/// `(field, secret name)` of every Secret the spec references.
pub fn secret_refs(spec: &RagIndexSpec) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = spec
        .sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some((
                format!("spec.sources[{i}].objectStore.credentialsSecretRef"),
                s.object_store
                    .as_ref()?
                    .credentials_secret_ref
                    .as_ref()?
                    .name
                    .clone(),
            ))
        })
        .collect();
    if let Some(key) = spec
        .vector_store
        .as_ref()
        .and_then(|v| v.qdrant.as_ref())
        .and_then(|q| q.api_key_secret_ref.as_ref())
    {
        refs.push((
            "spec.vectorStore.qdrant.apiKeySecretRef".to_string(),
            key.name.clone(),
        ));
    }
    refs
}

/// Checks what the schema cannot.
pub fn validate(spec: &RagIndexSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    match embedding_model(&spec.embedding.model) {
        None => {
            let known: Vec<&str> = EMBEDDING_MODELS.iter().map(|m| m.name).collect();
            errors.push(FieldError::new(
                "spec.embedding.model",
                format!(
                    "{:?} is not an embedding model Leitwerk ships; use one of {known:?}",
                    spec.embedding.model
                ),
            ));
        }
        Some(m)
            if spec.chunking.max_tokens
                > i32::try_from(m.max_chunk_tokens()).unwrap_or(i32::MAX) =>
        {
            errors.push(FieldError::new(
                "spec.chunking.maxTokens",
                format!(
                    "{} exceeds what {} reads ({} word pieces, {} of them text): chunks would be truncated; use at most {}",
                    spec.chunking.max_tokens,
                    m.name,
                    m.max_word_pieces,
                    m.max_chunk_tokens(),
                    m.max_chunk_tokens()
                ),
            ));
        }
        Some(_) => {}
    }
    if let Some(schedule) = &spec.refresh_schedule
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.refreshSchedule", problem));
    }
    for (i, source) in spec.sources.iter().enumerate() {
        if let Some(file) = &source.file
            && file.claim_name.is_none()
        {
            errors.push(FieldError::new(
                format!("spec.sources[{i}].file.claimName"),
                "a file source needs the PersistentVolumeClaim that holds it: set claimName",
            ));
        }
    }
    if let Some(q) = spec.vector_store.as_ref().and_then(|v| v.qdrant.as_ref())
        && url::Url::parse(&q.url)
            .ok()
            .filter(|u| u.host_str().is_some() && matches!(u.scheme(), "http" | "https"))
            .is_none()
    {
        errors.push(FieldError::new(
            "spec.vectorStore.qdrant.url",
            format!(
                "{:?} is not the gRPC URL of a Qdrant server: write http://HOST:6334 (or https://)",
                q.url
            ),
        ));
    }
    into_result(errors)
}
