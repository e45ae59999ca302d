//! Deleting a RagIndex: a Job removes its index files, then its finalizer goes.

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
