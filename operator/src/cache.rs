//! Watches that several controllers share: one watch and one store per kind, read by the
//! reconciles instead of the API server.
//!
//! Models are watched by the Model controller (its own objects) and the Experiment controller
//! (the Models its variants name), FeatureSets by their controller and the Model controller,
//! the operator's ServiceAccounts by every controller that owns one; its Services are read by
//! every serving apply. The Jobs and CronJobs that carry a FeatureSet's label are watched for
//! the FeatureSet controller ([`JobStores`]), Jobs without their pod template. Pods are not
//! watched: a watch of them cost more (memory, API server CPU, a reconcile per pod change)
//! than the lists it saved (`benches/README.md`).
//! Deployments are not shared: a store of full Deployments (their pod templates) cost 19 MiB
//! per 1,000 serving Models to save one read each (`benches/README.md`).
//! Models and FeatureSets are held deserialized, as every reconcile of theirs reads them whole;
//! the ServiceAccounts, Services, Jobs and CronJobs, read one at a time, are held as their JSON
//! ([`crate::packed`]): 16 MiB less at 5,000 objects (`benches/README.md`).
//!
//! Each kind is watched once here; every controller subscribes to the same events, which reach
//! a subscriber only after the store holds them. A reconcile that reads a Model or a
//! ServiceAccount therefore finds it in the store, at least as new as the event that woke it,
//! and asks the API server only for what the store does not hold (not yet seen, or deleted: a
//! read that may well find nothing). A store that has not listed once is waited for, up to
//! [`FIRST_LIST`], before a miss in it counts.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt, channel::mpsc, stream::BoxStream};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        batch::v1::{CronJob, Job},
        core::v1::{Service, ServiceAccount, ServiceSpec},
    },
};
use kube::{
    Api, Resource,
    core::DeserializeGuard,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use leitwerk_crds::{FeatureSet, Model};
use serde::{Serialize, de::DeserializeOwned};

use crate::jobs::Labelled;
use crate::packed::{Packed, PackedWriter};

/// How long a reconcile waits for a shared watch's first list before it reads the API server
/// instead. A watch that never lists (no RBAC to list its kind) costs each reconcile this
/// wait, and the reconcile still goes on from the API server.
pub const FIRST_LIST: Duration = Duration::from_secs(5);

/// Objects a subscriber may fall behind by before the shared watch waits for it.
const BUFFER: usize = 1024;

/// A stream of the objects a shared watch applied to its store.
pub type Trigger<K> = BoxStream<'static, Arc<K>>;

/// Where a shared watch keeps the objects it sees: kube's store ([`Writer`], objects held
/// deserialized, for kinds every reconcile reads whole) or a [`PackedWriter`] (objects held as
/// their JSON, for kinds read one at a time).
pub trait Holder<K: Resource<DynamicType = ()>>: Send + 'static {
    /// Applies one event of the watch.
    fn apply(&mut self, event: &watcher::Event<K>);
    /// The object `reference` as held now.
    fn get(&self, reference: &ObjectRef<K>) -> Option<Arc<K>>;
}

impl<K> Holder<K> for Writer<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn apply(&mut self, event: &watcher::Event<K>) {
        self.apply_watcher_event(event);
    }

    fn get(&self, reference: &ObjectRef<K>) -> Option<Arc<K>> {
        self.as_reader().get(reference)
    }
}

impl<K> Holder<K> for PackedWriter<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn apply(&mut self, event: &watcher::Event<K>) {
        PackedWriter::apply(self, event);
    }

    fn get(&self, reference: &ObjectRef<K>) -> Option<Arc<K>> {
        let namespace = reference.namespace.as_deref().unwrap_or("");
        PackedWriter::get(self, namespace, &reference.name).map(Arc::new)
    }
}

/// One shared watch of `K`: its store, and subscriptions to hand to controllers before it runs.
/// Every object the watch sees (applied, or deleted) goes to every subscriber after the store
/// holds it; the objects of a (re)list go out once the whole list is in the store.
pub struct SharedWatch<K, H = Writer<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    holder: H,
    subscribers: Vec<mpsc::Sender<Arc<K>>>,
    trim: fn(&mut K),
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// A watch not yet running, whose store holds the objects deserialized.
    pub fn new() -> Self {
        Self {
            holder: Writer::default(),
            subscribers: Vec::new(),
            trim: |_| {},
        }
    }

    /// The store the watch fills.
    pub fn store(&self) -> Store<K> {
        self.holder.as_reader()
    }
}

impl<K> SharedWatch<K, PackedWriter<K>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync,
{
    /// A watch not yet running, whose store holds each object as its JSON ([`Packed`]),
    /// tagged by the value of its label `tag`.
    pub fn packed(tag: Option<&'static str>) -> Self {
        Self {
            holder: PackedWriter::new(tag),
            subscribers: Vec::new(),
            trim: |_| {},
        }
    }

    /// The store the watch fills.
    pub fn store(&self) -> Packed<K> {
        self.holder.as_reader()
    }
}

impl<K, H> SharedWatch<K, H>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    H: Holder<K>,
{
    /// The same watch, whose store also drops what `trim` removes from each object (on top of
    /// [`crate::watch::prune`]): for fields no reconcile reads, such as a Job's pod template.
    pub fn trimmed(self, trim: fn(&mut K)) -> Self {
        Self { trim, ..self }
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
            mut holder,
            mut subscribers,
            trim,
        } = self;
        let events = watcher(api, config)
            .default_backoff()
            .modify(move |object| {
                crate::watch::prune(object);
                trim(object);
            });
        futures::pin_mut!(events);
        let mut listed: Vec<ObjectRef<K>> = Vec::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                // The backoff retries; the controllers see the objects once it recovers.
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "shared watch failed; retrying with backoff");
                    continue;
                }
            };
            holder.apply(&event);
            match event {
                watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                    broadcast(&mut subscribers, Arc::new(o)).await;
                }
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(o) => listed.push(ObjectRef::from_obj(&o)),
                // One at a time: a packed store makes each object anew for its subscribers.
                watcher::Event::InitDone => {
                    for reference in std::mem::take(&mut listed) {
                        if let Some(object) = holder.get(&reference) {
                            broadcast(&mut subscribers, object).await;
                        }
                    }
                }
            }
        }
    }
}

/// Sends `object` to every subscriber; one that ended (its controller shut down) is skipped.
async fn broadcast<K>(subscribers: &mut [mpsc::Sender<Arc<K>>], object: Arc<K>) {
    for subscriber in subscribers {
        let _ = subscriber.send(object.clone()).await;
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
    pub service_accounts: Option<Packed<ServiceAccount>>,
    /// The Services the operator manages.
    pub services: Option<Packed<Service>>,
    /// The Jobs and CronJobs that carry a FeatureSet's label.
    pub feature_set_jobs: Option<JobStores>,
}

/// The Jobs and CronJobs that carry one label (whoever made them: trust is decided by the
/// reader, see [`crate::jobs::own`]). Jobs are kept without their spec ([`trim_job`]); both
/// stores are packed, tagged by the label's value.
#[derive(Clone)]
pub struct JobStores {
    /// The label key the watches select on.
    pub label: &'static str,
    /// The Jobs carrying the label, without `spec`.
    pub jobs: Packed<Job>,
    /// The CronJobs carrying the label, whole.
    pub cron_jobs: Packed<CronJob>,
    /// How long a reconcile waits for the watches' first lists ([`FIRST_LIST`]).
    pub first_list: Duration,
}

impl JobStores {
    /// Stores over the watches' writers; [`FIRST_LIST`] as the wait for their first lists.
    pub fn new(label: &'static str, jobs: Packed<Job>, cron_jobs: Packed<CronJob>) -> Self {
        Self {
            label,
            jobs,
            cron_jobs,
            first_list: FIRST_LIST,
        }
    }

    /// The Jobs and CronJobs labelled `label=value` in `namespace`. `None` while a watch
    /// has not listed once (an empty store would then say "none", which may be false): a
    /// reconcile at start-up waits up to `first_list` for that, then reads the API server.
    pub async fn labelled(&self, namespace: &str, value: &str) -> Option<Labelled> {
        let wait = self.first_list;
        let (jobs, cron_jobs) = futures::join!(self.jobs.listed(wait), self.cron_jobs.listed(wait));
        if !(jobs && cron_jobs) {
            return None;
        }
        Some(Labelled {
            jobs: self.jobs.tagged(namespace, value),
            cron_jobs: self.cron_jobs.tagged(namespace, value),
        })
    }
}

/// A Job as [`JobStores`] keeps it: without its spec (the pod template) and annotations, which
/// no reader of the store uses (a FeatureSet's Jobs are applied when missing, not compared).
pub fn trim_job(job: &mut Job) {
    job.spec = None;
    job.metadata.annotations = None;
}

/// A Service as the shared store keeps it: the metadata and the spec fields the operator
/// sets (selector and ports). What the API server allocates (cluster IPs, IP families and
/// policies) and its status are dropped: [`crate::apply::why_apply`] compares only the fields
/// the desired Service sets, so a trimmed Service compares as the whole one does.
pub fn trim_service(service: &mut Service) {
    service.status = None;
    service.metadata.uid = None;
    service.metadata.creation_timestamp = None;
    if let Some(spec) = service.spec.as_mut() {
        *spec = ServiceSpec {
            selector: spec.selector.take(),
            ports: spec.ports.take(),
            ..ServiceSpec::default()
        };
    }
}

/// A ServiceAccount as the shared store keeps it: what [`crate::service_account::matches`]
/// compares (labels, owners, whether a token is mounted), without its uid and creation time.
pub fn trim_service_account(account: &mut ServiceAccount) {
    account.metadata.uid = None;
    account.metadata.creation_timestamp = None;
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

/// `namespace/name` as `store` holds it, if it does. A store that has not listed yet (the
/// operator just started) is waited for up to [`FIRST_LIST`]: a miss there would be taken for
/// an object to create, and a settled operator would write at start-up.
async fn held<K: DeserializeOwned>(
    store: Option<&Packed<K>>,
    namespace: &str,
    name: &str,
) -> Option<K> {
    let store = store?;
    if !store.listed(FIRST_LIST).await {
        return None;
    }
    store.get(namespace, name)
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

    /// The managed ServiceAccount `namespace/name` as the store holds it, if it does (waiting
    /// up to [`FIRST_LIST`] for the store's first list).
    pub async fn service_account(&self, namespace: &str, name: &str) -> Option<ServiceAccount> {
        held(self.service_accounts.as_ref(), namespace, name).await
    }

    /// The managed Service `namespace/name` as the store holds it, if it does (waiting up to
    /// [`FIRST_LIST`] for the store's first list).
    pub async fn service(&self, namespace: &str, name: &str) -> Option<Service> {
        held(self.services.as_ref(), namespace, name).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    use super::*;

    fn labelled<K: Resource + Default>(namespace: &str, name: &str, label: &str) -> K {
        let mut object = K::default();
        let meta = object.meta_mut();
        meta.name = Some(name.into());
        meta.namespace = Some(namespace.into());
        meta.labels = Some(BTreeMap::from([("set".to_string(), label.to_string())]));
        object
    }

    #[tokio::test]
    async fn job_stores_answer_only_once_both_watches_listed_and_only_for_the_label_asked() {
        let mut jobs = PackedWriter::<Job>::new(Some("set"));
        let mut cron_jobs = PackedWriter::<CronJob>::new(Some("set"));
        let stores = JobStores {
            first_list: Duration::from_millis(50),
            ..JobStores::new("set", jobs.as_reader(), cron_jobs.as_reader())
        };
        jobs.apply(&Event::Init);
        jobs.apply(&Event::InitApply(labelled("a", "j1", "x")));
        jobs.apply(&Event::InitApply(labelled("a", "j2", "y")));
        jobs.apply(&Event::InitApply(labelled("b", "j3", "x")));
        jobs.apply(&Event::InitDone);
        assert!(
            stores.labelled("a", "x").await.is_none(),
            "the CronJobs have not been listed"
        );
        cron_jobs.apply(&Event::Init);
        cron_jobs.apply(&Event::InitApply(labelled("a", "c1", "x")));
        cron_jobs.apply(&Event::InitDone);
        let found = stores.labelled("a", "x").await.expect("both listed");
        let names = |m: Vec<ObjectMeta>| m.into_iter().filter_map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(found.jobs.into_iter().map(|j| j.metadata).collect()),
            ["j1"]
        );
        assert_eq!(
            names(found.cron_jobs.into_iter().map(|c| c.metadata).collect()),
            ["c1"]
        );
    }

    #[test]
    fn a_stored_job_keeps_its_status_and_owner_but_not_its_pod_template_or_annotations() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "annotations": {"leitwerk.dev/applied-hash": "abc"}, "ownerReferences": [{"apiVersion": "v1", "kind": "FeatureSet", "name": "f", "uid": "u", "controller": true}]},
            "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}}},
            "status": {"succeeded": 1}
        }))
        .expect("a Job");
        trim_job(&mut job);
        assert!(job.spec.is_none() && job.metadata.annotations.is_none());
        assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
        assert!(crate::jobs::controlled_by(&job.metadata, "u"));
    }

    /// A Service as the API server returns it: defaults and allocated fields on top of what
    /// the operator applied (`applied`).
    fn served(applied: &serde_json::Value) -> Service {
        let mut stored = applied.clone();
        stored["metadata"]["uid"] = serde_json::json!("5f0c");
        stored["metadata"]["resourceVersion"] = serde_json::json!("812");
        stored["metadata"]["creationTimestamp"] = serde_json::json!("2026-12-07T10:00:00Z");
        let spec = &mut stored["spec"];
        spec["clusterIP"] = serde_json::json!("10.0.12.7");
        spec["clusterIPs"] = serde_json::json!(["10.0.12.7"]);
        spec["ipFamilies"] = serde_json::json!(["IPv4"]);
        spec["ipFamilyPolicy"] = serde_json::json!("SingleStack");
        spec["internalTrafficPolicy"] = serde_json::json!("Cluster");
        spec["sessionAffinity"] = serde_json::json!("None");
        spec["type"] = serde_json::json!("ClusterIP");
        for port in spec["ports"].as_array_mut().into_iter().flatten() {
            port["protocol"] = serde_json::json!("TCP");
        }
        stored["status"] = serde_json::json!({"loadBalancer": {}});
        serde_json::from_value(stored).expect("a Service")
    }

    fn desired_service() -> Service {
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "leitwerk.dev/v1alpha1".into(),
            kind: "Model".into(),
            name: "lead-scoring".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let labels = [(
            "app.kubernetes.io/name".to_string(),
            "lead-scoring".to_string(),
        )]
        .into();
        crate::workloads::serving_service("lead-scoring-serving", "marketing", owner, &labels)
    }

    #[test]
    fn a_trimmed_service_compares_as_the_whole_one_and_still_shows_an_edit() {
        let want = crate::apply::desired_value(desired_service());
        let mut stored = served(&want);
        let whole = serde_json::to_value(&stored).expect("serializes");
        trim_service(&mut stored);
        let trimmed = serde_json::to_value(&stored).expect("serializes");
        assert!(trimmed["spec"].get("clusterIP").is_none() && trimmed.get("status").is_none());
        assert_eq!(crate::apply::why_apply(Some(&whole), &want, None), None);
        assert_eq!(crate::apply::why_apply(Some(&trimmed), &want, None), None);
        // Someone changed the port by hand: the trimmed copy still shows it.
        let mut edited = stored.clone();
        if let Some(port) = edited
            .spec
            .as_mut()
            .and_then(|s| s.ports.as_mut())
            .and_then(|p| p.first_mut())
        {
            port.port = 9999;
        }
        let edited = serde_json::to_value(&edited).expect("serializes");
        assert!(crate::apply::why_apply(Some(&edited), &want, None).is_some());
    }

    #[test]
    fn a_trimmed_service_account_still_matches_and_still_shows_a_mounted_token() {
        let desired = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("m-serving".into()),
                namespace: Some("marketing".into()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "leitwerk".to_string(),
                    )]
                    .into(),
                ),
                owner_references: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                        uid: "uid-1".into(),
                        controller: Some(true),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            automount_service_account_token: Some(false),
            ..Default::default()
        };
        let mut stored = desired.clone();
        stored.metadata.uid = Some("sa-uid".into());
        stored.metadata.resource_version = Some("9".into());
        trim_service_account(&mut stored);
        assert!(stored.metadata.uid.is_none());
        assert!(crate::service_account::matches(Some(&stored), &desired));
        stored.automount_service_account_token = Some(true);
        assert!(!crate::service_account::matches(Some(&stored), &desired));
    }
}
