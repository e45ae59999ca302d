//! What every controller shares: the client, one event recorder, metrics, settings, backoff.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    Client,
    api::{ApiResource, GroupVersionKind},
    runtime::events::Reporter,
};

use crate::{config::OperatorConfig, metrics::Metrics, prom::Prometheus};

/// How long a Gateway API discovery answer is reused before asking the API server again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// A discovery answer (the HTTPRoute API, if installed) and when it was given.
type Discovered = (Instant, Option<ApiResource>);

/// The shared context handed to every reconcile.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The one Event publisher of the controllers.
    pub recorder: crate::events::Publisher,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// The operator's settings.
    pub config: Arc<OperatorConfig>,
    /// The shared watches' stores the reconciles read (see [`crate::cache`]).
    pub stores: crate::cache::Stores,
    /// Consecutive failures per object, for exponential backoff.
    failures: Arc<Mutex<HashMap<String, u32>>>,
    /// Prometheus clients by URL (one connection pool each, shared by every analysis).
    prometheus: Arc<Mutex<HashMap<String, Prometheus>>>,
    /// The last answer to "is the HTTPRoute API installed?", and when it was given.
    gateway: Arc<Mutex<Option<Discovered>>>,
    /// Per child (`kind/namespace/name`): the hash of the fields the operator set, as the API
    /// server returned them after the last apply (see `apply::needs_apply`).
    applied: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// Creates the context.
    pub fn new(
        client: Client,
        metrics: Metrics,
        config: OperatorConfig,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "leitwerk-operator".to_string(),
            instance,
        };
        Self {
            recorder: crate::events::Publisher::new(client.clone(), reporter),
            client,
            metrics,
            config: Arc::new(config),
            stores: crate::cache::Stores::default(),
            failures: Arc::default(),
            prometheus: Arc::default(),
            gateway: Arc::default(),
            applied: Arc::default(),
        }
    }

    /// What the API server returned for the fields of the last apply of a child.
    pub fn remembered(&self, child: &str) -> Option<String> {
        self.applied.lock().ok()?.get(child).cloned()
    }

    /// Remembers what the API server returned for the fields of an apply of a child.
    pub fn remember(&self, child: &str, projection_hash: String) {
        if let Ok(mut m) = self.applied.lock() {
            m.insert(child.to_string(), projection_hash);
        }
    }

    /// The Prometheus client for `url`, created on first use.
    pub fn prometheus(&self, url: &str) -> Result<Prometheus, String> {
        if let Some(p) = self
            .prometheus
            .lock()
            .ok()
            .and_then(|m| m.get(url).cloned())
        {
            return Ok(p);
        }
        let p = Prometheus::new(url)?;
        if let Ok(mut m) = self.prometheus.lock() {
            m.insert(url.to_string(), p.clone());
        }
        Ok(p)
    }

    /// The HTTPRoute API when the Gateway API CRDs are installed; asked of the API server at
    /// most once per [`DISCOVERY_TTL`], not on every reconcile.
    pub async fn gateway_api(&self) -> Option<ApiResource> {
        if let Some((at, answer)) = self.gateway.lock().ok().and_then(|g| g.clone())
            && at.elapsed() < DISCOVERY_TTL
        {
            return answer;
        }
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let answer = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .ok()
            .map(|(ar, _)| ar);
        if let Ok(mut g) = self.gateway.lock() {
            *g = Some((Instant::now(), answer.clone()));
        }
        answer
    }

    /// Records a failure of `key` and returns how long to wait before the next try:
    /// 1 s, 2 s, 4 s, … capped at 5 minutes.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_for(*count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// Backoff after the `n`-th consecutive failure.
pub fn backoff_for(n: u32) -> Duration {
    let secs = 1u64
        .checked_shl(n.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(300);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_at_five_minutes() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(5), Duration::from_secs(16));
        assert_eq!(backoff_for(20), Duration::from_secs(300));
        assert_eq!(backoff_for(200), Duration::from_secs(300));
    }
}
