//! What every controller's `run` shares: where it watches, the mapper from another kind to
//! the objects that refer to it, and the loop that drains its results.

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
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

/// Objects per page when a watch lists (at start, and again after its watch expired). A page is
/// read and deserialized whole, pod templates and managed fields included, before the objects
/// are pruned for a store: 500 (client-go's and kube's default) made a relist of Jobs the
/// operator's memory peak (`benches/README.md`).
pub const LIST_PAGE: u32 = 100;

/// How every watch of the operator lists and watches: [`LIST_PAGE`] objects per list page.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE)
}

/// The annotation `kubectl apply` keeps its last applied configuration in (client-side apply).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A controller for `api` whose store holds each object without what the operator never reads:
/// `managedFields` and kubectl's last-applied configuration. Deserialized, those were most of
/// the store (a Model's managed fields are a tree of every field each manager set), and the
/// store holds every object of the kind.
pub fn controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::<K>::default();
    let reader = writer.as_reader();
    let objects =
        reflector::reflector(writer, watcher(api, config).modify(prune)).applied_objects();
    Controller::for_stream(objects, reader)
}

/// How every controller runs: at most `reconcileConcurrency` reconciles at once (at least one).
pub fn run_config(config: &crate::config::OperatorConfig) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(config.reconcile_concurrency.max(1))
}

/// Removes what [`controller`]'s store does not keep.
pub fn prune<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
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

/// [`referrers`] for a shared watch's events (see [`crate::cache`]).
pub fn referrers_shared<K, Other>(
    store: Store<DeserializeGuard<K>>,
    refers_to: fn(&K, &str) -> bool,
) -> impl Fn(std::sync::Arc<Other>) -> Vec<ObjectRef<DeserializeGuard<K>>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Other: Resource + Clone,
{
    let map = referrers::<K, Other>(store, refers_to);
    move |other| map((*other).clone())
}
