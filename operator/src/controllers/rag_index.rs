//! The RagIndex controller: it launches indexing Jobs (`leitwerk-trainer index`) when the
//! spec, a ConfigMap source or the refresh schedule asks for one, records each build's
//! version, lets a version serve only when it passes the evaluation gate, runs the retrieval
//! Deployment and Service of the serving version, keeps a bounded number of versions, and
//! removes the index files when the RagIndex is deleted.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{
    ResourceExt,
    api::PartialObjectMeta,
    core::DeserializeGuard,
    runtime::{WatchStreamExt, controller::Action, reflector::ObjectRef, watcher},
};
use leitwerk_crds::{RagIndex, rag_index::RagIndexPhase};

use crate::cache::Trigger;
use crate::references::{get_opt, missing_secret};
use crate::watch::{Scope, drain, referrers};
use crate::{
    apply::{apply, hash_of},
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    service_account,
    validation::summarize,
    workloads::HTTP_PORT,
};

mod build;
mod delete;
mod observe;
pub mod qdrant;
mod record;
mod status;
#[cfg(test)]
mod tests;
mod validate;

pub use build::*;
use delete::*;
pub use observe::*;
pub use record::*;
pub use status::*;
pub use validate::*;

/// Label naming the RagIndex an object belongs to.
pub const RAG_INDEX_LABEL: &str = leitwerk_crds::labels::RAG_INDEX;
/// Label carrying an indexing Job's build number.
pub const BUILD_LABEL: &str = leitwerk_crds::labels::BUILD;
/// Annotation with the digest of the ConfigMap sources a build read.
pub const SOURCES_ANNOTATION: &str = leitwerk_crds::labels::SOURCES_DIGEST;
/// Annotation with the spec generation a build indexed.
pub const GENERATION_ANNOTATION: &str = leitwerk_crds::labels::GENERATION;
/// The finalizer that removes a RagIndex's index files before it goes.
pub const FINALIZER: &str = leitwerk_crds::labels::INDEX_FILES_FINALIZER;
/// The condition of the last build.
pub const INDEXED: &str = "Indexed";
/// The condition of the last version's evaluation.
pub const EVALUATED: &str = "Evaluated";
/// Where the last build embedded, when the spec asks for a GPU.
pub const ACCELERATED: &str = "Accelerated";
/// The condition of the retrieval Deployment.
pub const SERVING: &str = "Serving";

pub use crate::reconcile::Error;

/// Runs the RagIndex controller. It owns its Jobs, Deployment and ServiceAccount and watches
/// the ConfigMaps its RagIndexes read (a changed document re-indexes).
pub async fn run(
    ctx: Context,
    scope: Scope,
    service_accounts: Trigger<ServiceAccount>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = crate::watch::controller(
        scope.api::<DeserializeGuard<RagIndex>>(client.clone()),
        crate::watch::watch_config(),
    );
    let indexes = controller.store();
    let stream = controller
        .owns_shared_stream(service_accounts)
        // Jobs by their label, not by owner: a Job that carries a RagIndex's labels without
        // being its own is seen at once, ignored and named in an `UntrustedJob` Warning.
        .watches(
            scope.api::<Job>(client.clone()),
            crate::watch::watch_config().labels(RAG_INDEX_LABEL),
            |job: Job| {
                let ns = job.namespace().unwrap_or_default();
                job.labels()
                    .get(RAG_INDEX_LABEL)
                    .map(|name| ObjectRef::<DeserializeGuard<RagIndex>>::new(name).within(&ns))
            },
        )
        .owns(
            scope.api::<Deployment>(client.clone()),
            crate::watch::watch_config().labels(RAG_INDEX_LABEL),
        )
        // Metadata only: a change of any ConfigMap bumps its resourceVersion, which is all
        // the watch needs to map it to the RagIndexes that read it; the operator never holds
        // (or receives) the data of ConfigMaps it does not read.
        .watches_stream(
            watcher(
                scope.api::<PartialObjectMeta<ConfigMap>>(client),
                crate::watch::watch_config(),
            )
            .touched_objects(),
            referrers(indexes, |index: &RagIndex, name| {
                config_maps(&index.spec).iter().any(|(_, cm)| cm == name)
            }),
        )
        .with_config(crate::watch::run_config(&ctx.config))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(RagIndex::KIND, stream).await;
}

/// Reconciles one RagIndex.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<RagIndex>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |index, ctx| {
        Box::pin(reconcile_rag_index(index, ctx))
    })
    .await
}

/// The RagIndex's reconcile: deletion → finalizer → validate → resolve ConfigMaps and
/// Secrets → observe builds → start a build when due → serve → status. Long because it is the
/// sequence; each step is a function of its own.
async fn reconcile_rag_index(index: &RagIndex, ctx: &Context) -> Result<Action, Error> {
    let ns = index.namespace().unwrap_or_default();
    if index.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, index, &ns).await;
    }
    let mut observed = Observed::default();
    let outcome = match validate(&index.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => match resolve(ctx, index, &ns).await? {
            Err(missing) => missing.recheck_after(RECHECK_UNWATCHED),
            Ok(sources_digest) => {
                // Builds write index files: from here on, deletion must remove them.
                if !index.finalizers().iter().any(|f| f == FINALIZER) {
                    set_finalizer(ctx, index, &ns, true).await?;
                }
                crate::network_policy::ensure(ctx, &ns).await?;
                for sa in [
                    build_service_account(index),
                    build_serving_service_account(index),
                ]
                .into_iter()
                .flatten()
                {
                    service_account::ensure(ctx, RagIndex::KIND, &sa).await?;
                }
                match reconcile_builds(ctx, index, &ns, &sources_digest).await? {
                    Ok(o) => {
                        observed = o;
                        let mut outcome = decide(index, &observed);
                        let mut waits: Vec<Duration> = observed
                            .next_scheduled
                            .map(|w| w + Duration::from_secs(1))
                            .into_iter()
                            .collect();
                        // The Qdrant server is looked at again by itself: its key lives in a
                        // Secret the operator does not watch, and an alias moved by hand is
                        // put back.
                        if qdrant::target(index).is_some() {
                            waits.push(RECHECK_UNWATCHED);
                        }
                        for wait in waits {
                            outcome.recheck = Some(outcome.recheck.map_or(wait, |r| r.min(wait)));
                        }
                        outcome
                    }
                    Err(problem) => problem.outcome(),
                }
            }
        },
    };
    let outcome = outcome.with_events(observed.events.clone());
    let endpoint = endpoint(index);
    let action = reconcile::finish_with(ctx, index, outcome, |status| {
        status.progress = observed.progress.clone();
        if observed.recorded {
            apply_observed(status, &observed, &endpoint);
        }
    })
    .await?;
    Ok(action)
}

/// Observes the builds, starts one when due, points a Qdrant alias at the serving version and
/// runs its retrieval Deployment. A Qdrant server that refuses the key (or cannot be reached)
/// is answered before any build starts: a build would fail on it, and a failed build waits
/// for a change of the spec, not of the Secret.
async fn reconcile_builds(
    ctx: &Context,
    index: &RagIndex,
    ns: &str,
    sources_digest: &str,
) -> Result<Result<Observed, qdrant::Problem>, Error> {
    let target = qdrant::target(index);
    let mut moved_alias = None;
    let was_serving = index.status.as_ref().and_then(|s| s.versions.serving());
    if let Some(target) = &target {
        match qdrant::sync_alias(ctx, index, target, was_serving).await {
            Ok(moved) => moved_alias = moved,
            Err(problem) => return Ok(Err(problem)),
        }
    }
    let read = read_builds(ctx, index).await?;
    let now = chrono::Utc::now();
    let mut observed = plan_builds(index, &ctx.config, sources_digest, read, now);
    observed.events.extend(moved_alias);
    if let Some(job) = observed.start.take() {
        apply(ctx, ns, &job, "indexing Job").await?;
    }
    if let Some(serving) = observed.serving() {
        // A version promoted by this reconcile: the alias moves before the Deployment names it.
        if let Some(target) = &target
            && was_serving.map(|v| &v.version) != Some(&serving.version)
        {
            match qdrant::sync_alias(ctx, index, target, Some(&serving)).await {
                Ok(moved) => observed.events.extend(moved),
                Err(problem) => return Ok(Err(problem)),
            }
        }
        observed.serving_replicas = Some(serve(ctx, index, ns, &serving).await?);
    }
    Ok(Ok(observed))
}

/// The ConfigMaps and Secrets a RagIndex names: `Ok(digest of the ConfigMaps' data)` when all
/// exist, otherwise the outcome that names the first missing one.
async fn resolve(
    ctx: &Context,
    index: &RagIndex,
    ns: &str,
) -> Result<Result<String, Outcome<RagIndexPhase>>, Error> {
    let mut contents = Vec::new();
    for (field, name) in config_maps(&index.spec) {
        let cm = get_opt::<ConfigMap>(ctx, ns, &name)
            .await
            .map_err(|source| Error::Read {
                what: format!("ConfigMap {name}"),
                source,
            })?;
        match cm {
            Some(cm) => contents.push((name, cm.data, cm.binary_data)),
            None => return Ok(Err(Outcome::missing("ConfigMap", &name, &field, ns))),
        }
    }
    if let Some(missing) = missing_secret(ctx, ns, secret_refs(&index.spec)).await? {
        return Ok(Err(missing));
    }
    Ok(Ok(hash_of(&contents)))
}

/// The retrieval Service's URL.
pub fn endpoint(index: &RagIndex) -> String {
    format!(
        "http://{}.{}.svc:{HTTP_PORT}",
        serving_name(index),
        index.namespace().unwrap_or_default()
    )
}
