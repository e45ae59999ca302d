//! Lease-based leader election: only the replica holding the Lease runs the controllers.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tracing::info;

/// Settings of leader election.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Identity of this replica (its pod name).
    pub identity: String,
    /// Seconds a lease is valid after its last renewal.
    pub duration_secs: u64,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease manager failed.
    #[error("failed to manage Lease {namespace}/{name}")]
    Lease {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The lease manager's error.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
}

/// Tries to set up the Lease manager this often (about 40 s in all) before giving up.
const LEASE_ATTEMPTS: u32 = 10;

/// Starts competing for the Lease. The returned channel turns `true` when this replica leads
/// and `false` when it loses the lease.
pub async fn start(client: Client, election: &Election) -> Result<watch::Receiver<bool>, Error> {
    let grace = (election.duration_secs / 3).max(1);
    let params = LeaseParams::new(election.identity.clone(), election.duration_secs, grace)
        .with_field_manager("leitwerk.dev/leader-election");
    // RBAC that was just applied (a fresh install, a restart beside `kubectl apply`) reaches
    // the API server's authorizer a moment later: a refusal is tried again for a while
    // before it counts.
    let mut attempt = 0_u32;
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.namespace)
            .with_parameters(params.clone())
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(source) if attempt < LEASE_ATTEMPTS => {
                attempt += 1;
                tracing::warn!(lease = %election.lease_name, namespace = %election.namespace, error = %source, attempt, "cannot manage the Lease yet; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt.min(5)))).await;
            }
            Err(source) => {
                return Err(Error::Lease {
                    namespace: election.namespace.clone(),
                    name: election.lease_name.clone(),
                    source,
                });
            }
        }
    };
    let (channel, _task) = manager.watch().await;
    info!(lease = %election.lease_name, namespace = %election.namespace, identity = %election.identity, "competing for leadership");
    Ok(channel)
}
