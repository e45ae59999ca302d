//! What the Jobs of every kind share: their pods, and why a Job failed.

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};

use crate::{context::Context, reconcile::Error};

/// Why a Job failed: the trainer's `{"error": …}` summary, else the pod's message (its log
/// tail), else the Job's own reason.
pub fn failure_message(message: Option<&str>, reason: &str) -> String {
    let Some(m) = message.filter(|m| !m.trim().is_empty()) else {
        return reason.to_string();
    };
    serde_json::from_str::<serde_json::Value>(m)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| format!("{reason}: {}", m.trim()))
}

/// Pods of a Job.
pub async fn job_pods(ctx: &Context, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Read {
            what: format!("pods of Job {job}"),
            source,
        })
}
