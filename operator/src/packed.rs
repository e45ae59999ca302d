//! A store that keeps each object as its JSON, for the kinds the operator reads one object at
//! a time: its ServiceAccounts and Services by name, a FeatureSet's Jobs and CronJobs by one
//! label. A Kubernetes object held deserialized costs several times its JSON: every label map
//! is a B-tree node of eleven slots (about 540 bytes for two labels), every string its own
//! allocation, every optional field its inline space, and kube's store adds a key of four more
//! strings. At 5,000 objects, holding these kinds packed took the operator from 67 to 51 MiB
//! (`benches/README.md`). A read deserializes only the object asked for (a few µs).
//!
//! The writer follows a watch as kube's reflector does: a (re)list is gathered aside and
//! swapped in whole once it is done, so readers never see half a list, and the store counts as
//! listed from the first list on.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use kube::{Resource, runtime::watcher};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::watch;

/// One object: the value of the label the store is tagged by, and the object's JSON.
#[derive(Debug)]
struct Entry {
    tag: Option<Box<str>>,
    body: Box<[u8]>,
}

/// Objects by `namespace/name`.
type Objects = HashMap<Box<str>, Entry>;

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The reading side of a packed store; clones share it.
pub struct Packed<K> {
    objects: Arc<RwLock<Objects>>,
    listed: watch::Receiver<bool>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self {
            objects: self.objects.clone(),
            listed: self.listed.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed").finish_non_exhaustive()
    }
}

impl<K: DeserializeOwned> Packed<K> {
    /// Whether the store has listed once, waiting up to `wait` for it: before that, a miss
    /// would be taken for an object that does not exist.
    pub async fn listed(&self, wait: Duration) -> bool {
        let mut listed = self.listed.clone();
        matches!(
            tokio::time::timeout(wait, listed.wait_for(|done| *done)).await,
            Ok(Ok(_))
        )
    }

    /// The object `namespace/name`, if the store holds it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        lookup(&self.objects, namespace, name)
    }

    /// The objects in `namespace` whose tag label has the value `tag`.
    pub fn tagged(&self, namespace: &str, tag: &str) -> Vec<K> {
        let prefix = key(namespace, "");
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects
            .iter()
            .filter(|(k, e)| k.starts_with(&prefix) && e.tag.as_deref() == Some(tag))
            .filter_map(|(_, e)| unpack(e))
            .collect()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lookup<K: DeserializeOwned>(
    objects: &RwLock<Objects>,
    namespace: &str,
    name: &str,
) -> Option<K> {
    let objects = objects.read().unwrap_or_else(PoisonError::into_inner);
    unpack(objects.get(key(namespace, name).as_str())?)
}

fn unpack<K: DeserializeOwned>(entry: &Entry) -> Option<K> {
    match serde_json::from_slice(&entry.body) {
        Ok(object) => Some(object),
        Err(error) => {
            // What was serialized here deserializes; a miss sends the reader to the API server.
            tracing::warn!(%error, "a packed object did not deserialize");
            None
        }
    }
}

/// The writing side of a packed store: applies a watch's events.
pub struct PackedWriter<K> {
    objects: Arc<RwLock<Objects>>,
    listing: Option<Objects>,
    listed: watch::Sender<bool>,
    tag: Option<&'static str>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource + Serialize + DeserializeOwned> PackedWriter<K> {
    /// An empty store, not listed yet, whose objects are tagged by the value of their label
    /// `tag` (for [`Packed::tagged`]).
    pub fn new(tag: Option<&'static str>) -> Self {
        Self {
            objects: Arc::default(),
            listing: None,
            listed: watch::Sender::new(false),
            tag,
            kind: PhantomData,
        }
    }

    /// A reader of this store.
    pub fn as_reader(&self) -> Packed<K> {
        Packed {
            objects: self.objects.clone(),
            listed: self.listed.subscribe(),
            kind: PhantomData,
        }
    }

    /// The object `namespace/name`, if the store holds it (what [`Packed::get`] reads).
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        lookup(&self.objects, namespace, name)
    }

    fn pack(&self, object: &K) -> Option<(Box<str>, Entry)> {
        let meta = object.meta();
        let key = key(
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref()?,
        );
        let tag = self
            .tag
            .and_then(|label| meta.labels.as_ref()?.get(label))
            .map(|value| value.as_str().into());
        match serde_json::to_vec(object) {
            Ok(body) => Some((
                key.into_boxed_str(),
                Entry {
                    tag,
                    body: body.into_boxed_slice(),
                },
            )),
            Err(error) => {
                tracing::warn!(%error, %key, "an object did not serialize; it is not held");
                None
            }
        }
    }

    /// Applies one event of the watch.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => {
                if let Some((key, entry)) = self.pack(object) {
                    self.write().insert(key, entry);
                }
            }
            watcher::Event::Delete(object) => {
                let meta = object.meta();
                if let Some(name) = meta.name.as_deref() {
                    let key = key(meta.namespace.as_deref().unwrap_or(""), name);
                    self.write().remove(key.as_str());
                }
            }
            watcher::Event::Init => self.listing = Some(Objects::new()),
            watcher::Event::InitApply(object) => {
                if let Some((key, entry)) = self.pack(object) {
                    self.listing.get_or_insert_default().insert(key, entry);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                *self.write() = listed;
                self.listed.send_replace(true);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::{batch::v1::Job, core::v1::ServiceAccount};
    use kube::api::ObjectMeta;
    use watcher::Event;

    use super::*;

    fn account(namespace: &str, name: &str, owner: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([("owner".to_string(), owner.to_string())])),
                ..ObjectMeta::default()
            },
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    #[tokio::test]
    async fn a_list_counts_only_once_done_and_a_relist_replaces_the_store_whole() {
        let mut writer = PackedWriter::<ServiceAccount>::new(None);
        let store = writer.as_reader();
        assert!(!store.listed(Duration::from_millis(20)).await);
        writer.apply(&Event::Init);
        writer.apply(&Event::InitApply(account("a", "one", "m")));
        writer.apply(&Event::InitApply(account("a", "gone", "m")));
        assert!(store.is_empty(), "half a list is not shown");
        writer.apply(&Event::InitDone);
        assert!(store.listed(Duration::from_millis(20)).await);
        assert_eq!(store.get("a", "one"), Some(account("a", "one", "m")));
        assert_eq!(store.get("b", "one"), None, "another namespace");

        let mut edited = account("a", "one", "m");
        edited.automount_service_account_token = Some(true);
        writer.apply(&Event::Apply(edited.clone()));
        assert_eq!(store.get("a", "one"), Some(edited));
        writer.apply(&Event::Delete(account("a", "one", "m")));
        assert_eq!(store.get("a", "one"), None);

        // A relist (the watch expired): what it does not list is gone once it is done.
        writer.apply(&Event::Init);
        writer.apply(&Event::InitApply(account("a", "new", "m")));
        assert!(store.get("a", "gone").is_some(), "the old list until done");
        writer.apply(&Event::InitDone);
        assert_eq!(store.get("a", "gone"), None);
        assert_eq!(store.len(), 1);
        assert!(store.listed(Duration::ZERO).await, "still listed");
    }

    #[test]
    fn tagged_reads_find_the_label_value_in_one_namespace_only() {
        let job = |namespace: &str, name: &str, set: Option<&str>| Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: set.map(|s| BTreeMap::from([("set".to_string(), s.to_string())])),
                ..ObjectMeta::default()
            },
            ..Job::default()
        };
        let mut writer = PackedWriter::<Job>::new(Some("set"));
        let store = writer.as_reader();
        writer.apply(&Event::Init);
        for j in [
            job("a", "j1", Some("x")),
            job("a", "j2", Some("y")),
            job("ab", "j3", Some("x")),
            job("a", "j4", None),
        ] {
            writer.apply(&Event::InitApply(j));
        }
        writer.apply(&Event::InitDone);
        let names = |jobs: Vec<Job>| {
            let mut n: Vec<_> = jobs.into_iter().filter_map(|j| j.metadata.name).collect();
            n.sort();
            n
        };
        assert_eq!(names(store.tagged("a", "x")), ["j1"]);
        assert_eq!(names(store.tagged("ab", "x")), ["j3"]);
        assert!(store.tagged("a", "z").is_empty());
    }
}
