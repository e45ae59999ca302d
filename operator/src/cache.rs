//! Watches that several controllers share: one watch and one store per kind, read by the
//! reconciles instead of the API server.
//!
//! Models are watched by the Model controller (its own objects) and the Experiment controller
//! (the Models its variants name), FeatureSets by their controller and the Model controller,
//! the operator's ServiceAccounts by every controller that owns one; its Services are read by
//! every serving apply. Deployments are not shared: a store of full Deployments (their pod
//! templates) cost 19 MiB per 1,000 serving Models to save one read each (`benches/README.md`). Each kind is watched once
//! here; every controller subscribes to the same events, which reach a subscriber only after
//! the store holds them. A reconcile that reads a Model or a ServiceAccount therefore finds it
//! in the store, at least as new as the event that woke it, and asks the API server only for
//! what the store does not hold (not yet seen, or deleted: a read that may well find nothing).

use std::fmt::Debug;
use std::sync::Arc;

use futures::{SinkExt, StreamExt, channel::mpsc, stream::BoxStream};
use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{Service, ServiceAccount},
};
use kube::{
    Api, Resource,
    core::DeserializeGuard,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use leitwerk_crds::{FeatureSet, Model};
use serde::de::DeserializeOwned;

/// Objects a subscriber may fall behind by before the shared watch waits for it.
const BUFFER: usize = 1024;

/// A stream of the objects a shared watch applied to its store.
pub type Trigger<K> = BoxStream<'static, Arc<K>>;

/// One shared watch of `K`: its store, and subscriptions to hand to controllers before it runs.
/// Every object the watch sees (applied, or deleted) goes to every subscriber after the store
/// holds it; the objects of a (re)list go out once the whole list is in the store.
pub struct SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    writer: Writer<K>,
    subscribers: Vec<mpsc::Sender<Arc<K>>>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// A watch not yet running.
    pub fn new() -> Self {
        let writer = Writer::default();
        Self {
            store: writer.as_reader(),
            writer,
            subscribers: Vec::new(),
        }
    }

    /// The store the watch fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A new subscription. Subscribe before [`SharedWatch::run`]; a subscriber must keep
    /// reading (a controller does), since the watch waits for one that is `BUFFER` behind.
    pub fn subscribe(&mut self) -> Trigger<K> {
        let (sender, receiver) = mpsc::channel(BUFFER);
        self.subscribers.push(sender);
        receiver.boxed()
    }

    /// Runs the watch (with backoff on errors) until the process stops: the objects are kept
    /// without what the operator never reads (see [`crate::watch::prune`]).
    pub async fn run(self, api: Api<K>, config: watcher::Config) {
        let Self {
            store,
            writer,
            mut subscribers,
        } = self;
        let events = reflector::reflector(
            writer,
            watcher(api, config)
                .default_backoff()
                .modify(crate::watch::prune),
        );
        futures::pin_mut!(events);
        let mut listed: Vec<ObjectRef<K>> = Vec::new();
        while let Some(event) = events.next().await {
            let objects: Vec<Arc<K>> = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => vec![Arc::new(o)],
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listed.push(ObjectRef::from_obj(&o));
                    continue;
                }
                Ok(watcher::Event::InitDone) => std::mem::take(&mut listed)
                    .iter()
                    .filter_map(|r| store.get(r))
                    .collect(),
                // The backoff retries; the controllers see the objects once it recovers.
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "shared watch failed; retrying with backoff");
                    continue;
                }
            };
            for object in objects {
                for subscriber in &mut subscribers {
                    // A subscriber that ended (its controller shut down) is skipped.
                    let _ = subscriber.send(object.clone()).await;
                }
            }
        }
    }
}

impl<K> Default for SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

/// The stores the reconciles read; `None` where no shared watch runs (unit tests, tools), in
/// which case every read goes to the API server.
#[derive(Clone, Default)]
pub struct Stores {
    /// Every Model in scope.
    pub models: Option<Store<DeserializeGuard<Model>>>,
    /// Every FeatureSet in scope.
    pub feature_sets: Option<Store<DeserializeGuard<FeatureSet>>>,
    /// The ServiceAccounts the operator manages.
    pub service_accounts: Option<Store<ServiceAccount>>,
    /// The Services the operator manages.
    pub services: Option<Store<Service>>,
}

impl Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// The object `namespace/name` from `store`, when it holds a well-formed one.
fn stored<K>(store: Option<&Store<DeserializeGuard<K>>>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let found = store?.get(&ObjectRef::new(name).within(namespace))?;
    found.0.as_ref().ok().cloned()
}

/// `namespace/name` as `store` holds it, if it does.
fn held<K>(store: Option<&Store<K>>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store?
        .get(&ObjectRef::new(name).within(namespace))
        .map(|o| (*o).clone())
}

/// `namespace/name` from `store` when it holds a well-formed one, else from the API server
/// (`None` when it does not exist).
async fn stored_or_read<K>(
    store: Option<&Store<DeserializeGuard<K>>>,
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> kube::Result<Option<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    match stored(store, namespace, name) {
        Some(object) => Ok(Some(object)),
        None => {
            Api::<K>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
        }
    }
}

impl Stores {
    /// The Model `namespace/name`: from the store, else from the API server.
    pub async fn model(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<Model>> {
        stored_or_read(self.models.as_ref(), client, namespace, name).await
    }

    /// The FeatureSet `namespace/name`: from the store, else from the API server.
    pub async fn feature_set(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<FeatureSet>> {
        stored_or_read(self.feature_sets.as_ref(), client, namespace, name).await
    }

    /// The managed ServiceAccount `namespace/name` as the store holds it, if it does.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<ServiceAccount> {
        held(self.service_accounts.as_ref(), namespace, name)
    }

    /// The managed Service `namespace/name` as the store holds it, if it does.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Service> {
        held(self.services.as_ref(), namespace, name)
    }
}
