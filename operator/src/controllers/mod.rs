//! One controller per resource kind, each with the same small surface: `run`, `reconcile`,
//! `error_policy` and a local `Error`.

pub mod content_pipeline;
pub mod experiment;
pub mod feature_set;
pub mod model;
pub mod rag_index;

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client, Resource,
    api::PartialObjectMeta,
    core::DeserializeGuard,
    runtime::reflector::{ObjectRef, Store},
};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::context::Context;

/// Where the controllers look: one namespace, or all of them.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The namespace to watch; all namespaces when `None`.
    pub namespace: Option<String>,
}

impl Scope {
    /// An API for `K` in the watched namespace(s).
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

/// Runs every controller until shutdown is requested.
pub async fn run_all(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    futures::join!(
        feature_set::run(ctx.clone(), scope.clone(), shutdown.clone()),
        model::run(ctx.clone(), scope.clone(), shutdown.clone()),
        experiment::run(ctx.clone(), scope.clone(), shutdown.clone()),
        rag_index::run(ctx.clone(), scope.clone(), shutdown.clone()),
        content_pipeline::run(ctx, scope, shutdown),
    );
}

/// Drains a controller's result stream, logging each outcome.
pub async fn drain<S, T, E>(kind: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    T: Debug,
    E: std::error::Error,
{
    stream
        .for_each(|result| async move {
            match result {
                Ok(done) => debug!(kind, ?done, "reconciled"),
                Err(err) => {
                    warn!(kind, error = %crate::reconcile::error_chain(&err), "controller error")
                }
            }
        })
        .await;
}

/// Reads an object by name in a namespace; `None` when it does not exist.
pub async fn get_opt<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
}

/// Whether a Secret exists; reads only its metadata, never its data.
pub async fn secret_exists(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let meta: Option<PartialObjectMeta<Secret>> =
        Api::<Secret>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
    Ok(meta.is_some())
}

/// Whether a ConfigMap exists; reads only its metadata.
pub async fn config_map_exists(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let meta: Option<PartialObjectMeta<ConfigMap>> =
        Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
    Ok(meta.is_some())
}

/// The operator's `artifactStoreSecret` as a reference to check, if it is set.
pub fn artifact_store_secret(ctx: &Context) -> Vec<(String, String)> {
    ctx.config
        .artifact_store_secret
        .iter()
        .map(|name| {
            (
                "artifactStoreSecret of the operator's config".to_string(),
                name.clone(),
            )
        })
        .collect()
}

/// Finds the first missing Secret among `(field, name)` references.
pub async fn first_missing_secret(
    ctx: &Context,
    namespace: &str,
    refs: &[(String, String)],
) -> Result<Option<(String, String)>, kube::Error> {
    for (field, name) in refs {
        if !secret_exists(ctx, namespace, name).await? {
            return Ok(Some((field.clone(), name.clone())));
        }
    }
    Ok(None)
}

/// A watch mapper: the objects in `store` (same namespace as the changed object) that
/// `refers_to` the changed object's name. Malformed objects refer to nothing. Watch the other
/// kind through `DeserializeGuard` too, so that one malformed object of it cannot stall the
/// watch: its name still maps to the objects that refer to it.
pub fn referrers<K, Other>(
    store: Store<DeserializeGuard<K>>,
    refers_to: fn(&K, &str) -> bool,
) -> impl Fn(Other) -> Vec<ObjectRef<DeserializeGuard<K>>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Other: Resource,
{
    move |other| {
        let namespace = other.meta().namespace.clone();
        let name = other.meta().name.clone().unwrap_or_default();
        store
            .state()
            .into_iter()
            .filter(|o| {
                o.0.as_ref()
                    .is_ok_and(|o| o.meta().namespace == namespace && refers_to(o, &name))
            })
            .map(|o| ObjectRef::from_obj(&*o))
            .collect()
    }
}
