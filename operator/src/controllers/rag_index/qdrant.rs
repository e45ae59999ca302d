//! A RagIndex whose vectors live on a Qdrant server (`spec.vectorStore.qdrant`). The indexing
//! Job writes each version into a collection of its own (`<collection>-<version>`) and drops
//! those of versions no longer kept; the operator owns the alias `<collection>`: it points it
//! at the serving version's collection in one request when a version is promoted (the
//! retrieval pods query the alias, so every replica moves at once), and deletes the
//! RagIndex's collections when it goes.
//!
//! The API key is the one Secret value the operator reads: the Secret that
//! `spec.vectorStore.qdrant.apiKeySecretRef` names (a LeitwerkPolicy's `secrets` decides
//! which may be named). It reads it when it talks to the server, and never logs or stores it.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use leitwerk_crds::RagIndex;
use leitwerk_crds::command::QdrantTarget;
use leitwerk_crds::rag_index::{IndexVersion, RagIndexPhase};
use leitwerk_rag::qdrant::{Store, StoreError};

use crate::reconcile::{Notice, Outcome, RECHECK_UNWATCHED};
use crate::status::{Desired, READY};

/// The field that names the API key, in messages.
const KEY_FIELD: &str = "spec.vectorStore.qdrant.apiKeySecretRef";

/// The Qdrant location of a RagIndex, when it names one.
pub fn target(index: &RagIndex) -> Option<QdrantTarget> {
    let q = index.spec.vector_store.as_ref()?.qdrant.as_ref()?;
    Some(QdrantTarget {
        url: q.url.clone(),
        collection: q.collection.clone(),
    })
}

/// Why the operator cannot work with a RagIndex's Qdrant server: the Ready condition's
/// reason and a message that names the server, the Secret and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The condition's reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    /// The outcome that reports it: Ready=False, looked at again (Secrets are not watched).
    pub fn outcome(&self) -> Outcome<RagIndexPhase> {
        Outcome::new(
            RagIndexPhase::Failed,
            Desired::failed(READY, self.reason, self.message.clone()),
        )
        .recheck_after(RECHECK_UNWATCHED)
    }
}

/// The key's Secret as `namespace/name key KEY`, for messages.
fn secret_named(index: &RagIndex) -> Option<String> {
    let r = index
        .spec
        .vector_store
        .as_ref()?
        .qdrant
        .as_ref()?
        .api_key_secret_ref
        .as_ref()?;
    Some(format!(
        "Secret {}/{} (key {:?})",
        index.namespace().unwrap_or_default(),
        r.name,
        r.key
    ))
}

/// What a server answer means for the user.
fn problem(index: &RagIndex, error: StoreError) -> Problem {
    match &error {
        StoreError::Unauthorized { url, .. } => Problem {
            reason: "QdrantUnauthorized",
            message: match secret_named(index) {
                Some(secret) => format!(
                    "Qdrant at {url} refused the API key from {secret} named by {KEY_FIELD}: put the server's key in that Secret"
                ),
                None => format!(
                    "Qdrant at {url} asks for an API key: set {KEY_FIELD} to a Secret that holds it"
                ),
            },
        },
        StoreError::Server { .. } | StoreError::UnknownField(_) => Problem {
            reason: "QdrantUnavailable",
            message: format!(
                "{error}; the serving version keeps serving what it can, and the operator tries again"
            ),
        },
    }
}

/// The API key from the Secret, if the spec names one.
async fn api_key(
    ctx: &crate::context::Context,
    index: &RagIndex,
) -> Result<Option<String>, Problem> {
    let Some(r) = index
        .spec
        .vector_store
        .as_ref()
        .and_then(|v| v.qdrant.as_ref())
        .and_then(|q| q.api_key_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let ns = index.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&r.name)
        .await
        .map_err(|e| Problem {
            reason: "SecretUnreadable",
            message: format!(
                "cannot read Secret {ns}/{} named by {KEY_FIELD}: {e}",
                r.name
            ),
        })?;
    let value = secret
        .and_then(|s| s.data)
        .and_then(|d| d.get(&r.key).cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    match value {
        Some(key) => Ok(Some(key)),
        None => Err(Problem {
            reason: "SecretKeyMissing",
            message: format!(
                "Secret {ns}/{} named by {KEY_FIELD} has no key {:?} (or it is empty): add the Qdrant API key under that key",
                r.name, r.key
            ),
        }),
    }
}

/// A connection to the RagIndex's server with its API key.
async fn connect(
    ctx: &crate::context::Context,
    index: &RagIndex,
    target: &QdrantTarget,
) -> Result<Store, Problem> {
    let key = api_key(ctx, index).await?;
    Store::connect(&target.url, key).map_err(|e| problem(index, e))
}

/// Checks that the server takes the key and points the alias at the serving version's
/// collection when it points elsewhere (or nowhere). A version served from its index file (it
/// was built before the RagIndex named Qdrant) leaves the alias alone. Returns the Event of a
/// move.
pub async fn sync_alias(
    ctx: &crate::context::Context,
    index: &RagIndex,
    target: &QdrantTarget,
    serving: Option<&IndexVersion>,
) -> Result<Option<Notice>, Problem> {
    let store = connect(ctx, index, target).await?;
    let current = store
        .alias_target(&target.collection)
        .await
        .map_err(|e| problem(index, e))?;
    let Some((version, collection)) =
        serving.and_then(|v| Some((v.version.clone(), v.collection.clone()?)))
    else {
        return Ok(None);
    };
    if current.as_deref() == Some(collection.as_str()) {
        return Ok(None);
    }
    store
        .point_alias(&target.collection, &collection)
        .await
        .map_err(|e| problem(index, e))?;
    let from = current
        .map(|c| format!(" (it named {c})"))
        .unwrap_or_default();
    Ok(Some(Notice::normal(
        "Index",
        "AliasMoved",
        format!(
            "the Qdrant alias {} now names {collection}, version {version}{from}",
            target.collection
        ),
    )))
}

/// Deletes every collection of the RagIndex's versions (the alias goes with the one it
/// names); returns their names.
pub async fn delete_collections(
    ctx: &crate::context::Context,
    index: &RagIndex,
    target: &QdrantTarget,
) -> Result<Vec<String>, Problem> {
    let store = connect(ctx, index, target).await?;
    let prefix = format!("{}-", target.collection);
    let mut deleted = Vec::new();
    for name in store
        .collections(&prefix)
        .await
        .map_err(|e| problem(index, e))?
    {
        if target.version_of(&name).is_some() {
            store.delete(&name).await.map_err(|e| problem(index, e))?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}
