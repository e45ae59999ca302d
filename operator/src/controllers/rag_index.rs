//! The RagIndex controller.

use std::sync::Arc;

use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, watcher},
};
use leitwerk_crds::{RagIndex, RagIndexSpec, rag_index::RagIndexPhase};

use super::{Scope, config_map_exists, drain, first_missing_secret};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    status::{Desired, READY},
    validation::{FieldError, check_cron, into_result, summarize},
};

/// Embedding models that ship with Leitwerk.
pub const KNOWN_EMBEDDING_MODELS: [&str; 1] = ["all-MiniLM-L6-v2"];

pub use crate::reconcile::Error;

/// Runs the RagIndex controller.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let stream = Controller::new(
        scope.api::<DeserializeGuard<RagIndex>>(ctx.client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(RagIndex::KIND, stream).await;
}

/// Reconciles one RagIndex: validate → resolve ConfigMaps and Secrets → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<RagIndex>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |index, ctx| {
        Box::pin(reconcile_rag_index(index, ctx))
    })
    .await
}

async fn reconcile_rag_index(index: &RagIndex, ctx: &Context) -> Result<Action, Error> {
    let ns = index.namespace().unwrap_or_default();
    let outcome = match validate(&index.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            let mut missing = None;
            for (i, source) in index.spec.sources.iter().enumerate() {
                if let Some(cm) = &source.config_map_ref
                    && !config_map_exists(ctx, &ns, &cm.name)
                        .await
                        .map_err(|source| Error::Read {
                            what: format!("ConfigMap {}", cm.name),
                            source,
                        })?
                {
                    missing = Some((
                        "ConfigMap",
                        cm.name.clone(),
                        format!("spec.sources[{i}].configMapRef.name"),
                    ));
                    break;
                }
            }
            if missing.is_none()
                && let Some((field, name)) =
                    first_missing_secret(ctx, &ns, &secret_refs(&index.spec))
                        .await
                        .map_err(|source| Error::Read {
                            what: "Secrets".into(),
                            source,
                        })?
            {
                missing = Some(("Secret", name, field));
            }
            match missing {
                Some((kind, name, field)) => {
                    Outcome::missing(kind, &name, &field, &ns).recheck_after(RECHECK_UNWATCHED)
                }
                None => decide(index),
            }
        }
    };
    let action = reconcile::finish(ctx, index, outcome).await?;
    Ok(action)
}

/// The status of a valid RagIndex whose references resolve.
pub fn decide(index: &RagIndex) -> Outcome<RagIndexPhase> {
    match index
        .status
        .as_ref()
        .and_then(|s| s.current_version.clone())
    {
        Some(version) => Outcome::new(
            RagIndexPhase::Ready,
            Desired::ok(
                READY,
                "Indexed",
                format!("index version {version} serves retrieval"),
            ),
        ),
        None => Outcome::new(
            RagIndexPhase::Pending,
            Desired::not(
                READY,
                "AwaitingIndexing",
                "the spec is valid; no index version exists yet (this operator version does not run indexing Jobs yet)",
            ),
        ),
    }
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
    if !KNOWN_EMBEDDING_MODELS.contains(&spec.embedding.model.as_str()) {
        errors.push(FieldError::new("spec.embedding.model", format!("{:?} is not an embedding model Leitwerk ships; use one of {KNOWN_EMBEDDING_MODELS:?}", spec.embedding.model)));
    }
    if spec.embedding.model == "all-MiniLM-L6-v2" && spec.chunking.max_tokens > 256 {
        errors.push(FieldError::new(
            "spec.chunking.maxTokens",
            format!(
                "{} exceeds the 256-token window of all-MiniLM-L6-v2: chunks would be truncated",
                spec.chunking.max_tokens
            ),
        ));
    }
    if let Some(schedule) = &spec.refresh_schedule
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.refreshSchedule", problem));
    }
    into_result(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> RagIndex {
        yaml_serde::from_str(include_str!(
            "../../../examples/product-docs-rag/ragindex.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn a_fresh_index_waits_for_indexing_and_a_published_one_is_ready() {
        assert_eq!(decide(&example()).ready.reason, "AwaitingIndexing");
        let mut index = example();
        index.status = Some(leitwerk_crds::RagIndexStatus {
            current_version: Some("sha256:1".into()),
            ..Default::default()
        });
        let outcome = decide(&index);
        assert!(outcome.ready.status && outcome.phase == RagIndexPhase::Ready);
    }

    #[test]
    fn unknown_models_oversized_chunks_and_bad_schedules_are_named() {
        assert_eq!(validate(&example().spec), Ok(()));
        let mut spec = example().spec;
        spec.embedding.model = "text-embedding-3-large".into();
        spec.refresh_schedule = Some("nightly".into());
        let fields: Vec<String> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["spec.embedding.model", "spec.refreshSchedule"]);
        let mut spec = example().spec;
        spec.chunking.max_tokens = 512;
        assert_eq!(
            validate(&spec).unwrap_err()[0].field,
            "spec.chunking.maxTokens"
        );
    }
}
