//! NetworkPolicies for the pods the operator creates, one pair per namespace it works in:
//! - `leitwerk-jobs`: the pods of its Jobs (materialization, training, indexing, content runs,
//!   publishing) take no connections at all;
//! - `leitwerk-servers`: its serving pods (inference and retrieval servers) take connections
//!   only from pods of their own namespace and from the namespaces in the operator's
//!   `networkPolicyIngressNamespaces` (Prometheus; add the Gateway's namespace there).
//!
//! Egress is left open: Jobs read their sources and write the artifact store, content runs
//! call their generators, and each of those is the team's own choice of endpoint (a
//! `LeitwerkPolicy` limits them at admission instead).
//!
//! The pair is applied once per namespace and operator process, before the first workload.
//! A NetworkPolicy only has effect where the network plugin enforces it.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::Api;

use crate::{apply, context::Context, reconcile::Error, workloads::MANAGED_BY};

/// The policy of the Jobs' pods.
pub const JOBS: &str = "leitwerk-jobs";
/// The policy of the serving pods.
pub const SERVERS: &str = "leitwerk-servers";
/// The label the Job controller sets on every pod of a Job.
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// The two policies of namespace `ns`, letting servers be reached from `ingress_namespaces`.
pub fn desired(ns: &str, ingress_namespaces: &[String]) -> [NetworkPolicy; 2] {
    let policy = |name: &str, job_pods: &str, ingress: Option<Vec<NetworkPolicyIngressRule>>| {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                    (
                        "app.kubernetes.io/component".into(),
                        "network-policy".into(),
                    ),
                ])),
                ..Default::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        MANAGED_BY.0.to_string(),
                        MANAGED_BY.1.to_string(),
                    )])),
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: JOB_NAME.into(),
                        operator: job_pods.into(),
                        values: None,
                    }]),
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress,
                egress: None,
            }),
        }
    };
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    }];
    from.extend(ingress_namespaces.iter().map(|n| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                n.clone(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }));
    [
        // No ingress rule: nothing may connect.
        policy(JOBS, "Exists", None),
        policy(
            SERVERS,
            "DoesNotExist",
            Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: None,
            }]),
        ),
    ]
}

/// Applies the namespace's pair unless this process already did (or the config turns them
/// off).
pub async fn ensure(ctx: &Context, ns: &str) -> Result<(), Error> {
    let Some(from) = ctx.config.network_policy_ingress_namespaces.as_ref() else {
        return Ok(());
    };
    let policies = desired(ns, from);
    let key = format!("NetworkPolicy/{ns}/pair");
    let hash = apply::hash_of(&policies);
    if ctx.remembered(&key).as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
    for policy in policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let current = api.get_opt(&name).await.map_err(|source| Error::Read {
            what: format!("NetworkPolicy {name}"),
            source,
        })?;
        apply::apply_if_changed(ctx, ns, policy, current.as_ref(), "NetworkPolicy").await?;
    }
    ctx.remember(&key, hash);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_take_no_connections_and_servers_only_from_their_namespace_and_monitoring() {
        let [jobs, servers] = desired("team-a", &["monitoring".to_string()]);
        let jobs = serde_json::to_value(jobs).unwrap_or_default();
        assert_eq!(jobs["spec"]["policyTypes"], json!(["Ingress"]));
        assert!(
            jobs["spec"]["ingress"].is_null(),
            "no ingress rule: nothing may connect"
        );
        assert_eq!(
            jobs["spec"]["podSelector"]["matchExpressions"][0]["operator"],
            "Exists"
        );
        let servers = serde_json::to_value(servers).unwrap_or_default();
        assert_eq!(
            servers["spec"]["ingress"][0]["from"],
            json!([{"podSelector": {}},
                   {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
        );
        assert_eq!(
            servers["spec"]["podSelector"]["matchExpressions"][0]["operator"],
            "DoesNotExist"
        );
        assert_eq!(servers["metadata"]["namespace"], "team-a");
    }
}
