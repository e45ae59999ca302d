//! Publishing the controllers' Events (`events.k8s.io/v1`), with a repeat within six minutes
//! counted on the Event already published (its `series`), as kube's `Recorder` does. Unlike
//! the `Recorder`, which keeps every Event it published for six minutes, this remembers a hash
//! of each Event's identity and the name it was published under: at thousands of objects the
//! kept Events were tens of MiB of the operator's memory (`benches/README.md`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

/// How long a repeat counts on the Event already published.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often forgotten entries are swept out (a sweep walks every entry).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// An Event published within the window: where it is, and how often it happened.
#[derive(Debug, Clone)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Debug)]
struct Seen {
    by_key: HashMap<u64, Published>,
    swept: Instant,
}

/// Publishes Events for the controllers.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// The identity of an Event: what it is about and what it says.
fn key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        &event.reason,
        &event.action,
        &event.note,
        matches!(event.type_, EventType::Warning),
    )
        .hash(&mut h);
    h.finish()
}

impl Publisher {
    /// A publisher reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            seen: Arc::new(Mutex::new(Seen {
                by_key: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    /// The Event published for `key` within the window, if any; sweeps now and then.
    fn recent(&self, key: u64, now: Instant) -> Option<Published> {
        let mut seen = self.seen.lock().ok()?;
        if now.duration_since(seen.swept) >= SWEEP_EVERY {
            seen.by_key
                .retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            seen.swept = now;
        }
        seen.by_key
            .get(&key)
            .filter(|p| now.duration_since(p.last) < SERIES_WINDOW)
            .cloned()
    }

    fn remember(&self, key: u64, published: Published) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.by_key.insert(key, published);
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or the count of the same Event
    /// published within six minutes raised.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = key(event, regarding);
        let now = Instant::now();
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        if let Some(mut published) = self.recent(key, now) {
            published.count += 1;
            published.last = now;
            let series = EventSeries {
                count: published.count,
                last_observed_time: stamp,
            };
            Api::<K8sEvent>::namespaced(self.client.clone(), &published.namespace)
                .patch(
                    &published.name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "series": series })),
                )
                .await?;
            self.remember(key, published);
            return Ok(());
        }
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            k8s_openapi::jiff::Timestamp::now().as_nanosecond()
        );
        let k8s_event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(stamp),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &k8s_event)
            .await?;
        self.remember(
            key,
            Published {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: "Serving".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn about(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Model".into()),
            namespace: Some("team-a".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_event_is_known_by_what_it_is_about_and_what_it_says() {
        let a = key(&event("v1 is serving"), &about("m"));
        assert_eq!(a, key(&event("v1 is serving"), &about("m")));
        assert_ne!(a, key(&event("v2 is serving"), &about("m")));
        assert_ne!(a, key(&event("v1 is serving"), &about("n")));
        let mut warning = event("v1 is serving");
        warning.type_ = EventType::Warning;
        assert_ne!(a, key(&warning, &about("m")));
    }
}
