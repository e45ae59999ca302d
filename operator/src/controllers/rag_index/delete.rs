//! Deleting a RagIndex: the operator deletes its Qdrant collections, a Job removes its index
//! files, then its finalizer goes.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use leitwerk_crds::RagIndex;

use super::{FINALIZER, build_delete_job, index_prefix_url};
use crate::{
    apply::apply,
    context::Context,
    finalizer,
    notice::Notice,
    reconcile::{self, Error, LeitwerkResource},
    workloads::{JobState, job_state},
};

/// Adds (`true`) or removes (`false`) the finalizer, never touching any other (a JSON patch
/// pinned to the list this copy shows: [`crate::finalizer`]).
pub(super) async fn set_finalizer(
    ctx: &Context,
    index: &RagIndex,
    ns: &str,
    on: bool,
) -> Result<(), Error> {
    let api: Api<RagIndex> = Api::namespaced(ctx.client.clone(), ns);
    finalizer::set(&api, index, FINALIZER, on)
        .await
        .map_err(|source| Error::Finalizer {
            what: format!("RagIndex {}", index.name_any()),
            source,
        })
}

/// A Warning that the index files stay (the RagIndex goes anyway, so that a namespace can be
/// deleted).
async fn files_left(ctx: &Context, index: &RagIndex, why: &str) {
    let notice = Notice::warning(
        "Delete",
        "FilesLeft",
        format!(
            "the index files under {} could not be removed ({why}); remove them by hand",
            index_prefix_url(index, &ctx.config)
        ),
    );
    reconcile::publish(ctx, RagIndex::KIND, &notice, &index.object_ref(&())).await;
}

/// A RagIndex being deleted: a Job removes its index files, then the finalizer goes. A
/// namespace that is being deleted takes no new Job: the files stay, and a Warning says so.
pub(super) async fn finalize(ctx: &Context, index: &RagIndex, ns: &str) -> Result<Action, Error> {
    if !index.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if let Some(wait) = delete_collections(ctx, index).await {
        return Ok(Action::requeue(wait));
    }
    let job = build_delete_job(index, &ctx.config);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let current = jobs
        .get_opt(&job.name_any())
        .await
        .map_err(|source| Error::Read {
            what: "the index deletion Job".into(),
            source,
        })?;
    let done = match current.as_ref().map(job_state) {
        None => {
            if let Err(e) = apply(ctx, ns, &job, "index deletion Job").await {
                files_left(ctx, index, &reconcile::error_chain(&e)).await;
                true
            } else {
                false
            }
        }
        Some(JobState::Active) => false,
        Some(JobState::Succeeded) => true,
        Some(JobState::Failed(why)) => {
            files_left(ctx, index, &why).await;
            true
        }
    };
    if !done {
        return Ok(Action::requeue(Duration::from_secs(3)));
    }
    set_finalizer(ctx, index, ns, false).await?;
    Ok(Action::await_change())
}

/// How long a deleted RagIndex waits for its Qdrant server before it goes and leaves the
/// collections (named in a Warning).
const QDRANT_PATIENCE_S: i64 = 300;

/// Deletes the RagIndex's Qdrant collections, if it names a server. `Some(wait)` while the
/// server refuses or cannot be reached and the deletion is younger than [`QDRANT_PATIENCE_S`] seconds;
/// after that, a Warning names what stays and the deletion goes on.
async fn delete_collections(ctx: &Context, index: &RagIndex) -> Option<Duration> {
    let target = super::qdrant::target(index)?;
    let notice = match super::qdrant::delete_collections(ctx, index, &target).await {
        Ok(deleted) => Notice::normal(
            "Delete",
            "CollectionsDeleted",
            format!(
                "deleted the Qdrant collections {} at {}",
                if deleted.is_empty() {
                    "(none were left)".to_string()
                } else {
                    deleted.join(", ")
                },
                target.url
            ),
        ),
        Err(problem) => {
            let since = index
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|t| chrono::Utc::now().timestamp() - t.0.as_second())
                .unwrap_or_default();
            if since < QDRANT_PATIENCE_S {
                tracing::info!(reason = problem.reason, "{}: trying again", problem.message);
                return Some(Duration::from_secs(5));
            }
            Notice::warning(
                "Delete",
                "CollectionsLeft",
                format!(
                    "the Qdrant collections {}-<version> at {} stay ({}); delete them by hand",
                    target.collection, target.url, problem.message
                ),
            )
        }
    };
    reconcile::publish(ctx, RagIndex::KIND, &notice, &index.object_ref(&())).await;
    None
}
