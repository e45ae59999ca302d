//! What every controller's `run` shares: where it watches, the mapper from another kind to
//! the objects that refer to it, and the loop that drains its results.

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    core::DeserializeGuard,
    runtime::reflector::{ObjectRef, Store},
};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

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
