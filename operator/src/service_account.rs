//! The token-less ServiceAccount that a resource's workloads (trainer and materialization
//! Jobs, serving pods) run as when the spec names none: owned by the resource, labelled with
//! it, and without an API token, because those workloads never talk to the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
};
use leitwerk_crds::FIELD_MANAGER;

use crate::{context::Context, reconcile::Error, workloads::MANAGED_BY};

/// The ServiceAccount `name` for the workloads of `owner`, labelled `owner_label=<owner
/// name>`. `None` when the owner has no UID yet (it was never stored).
pub fn token_less<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    owner_label: &str,
) -> Option<ServiceAccount> {
    let reference = owner.controller_owner_ref(&())?;
    Some(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (owner_label.to_string(), owner.name_any()),
            ])),
            owner_references: Some(vec![reference]),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// Whether `existing` already carries everything `desired` sets (labels, owner, no token).
pub fn matches(existing: Option<&ServiceAccount>, desired: &ServiceAccount) -> bool {
    let Some(existing) = existing else {
        return false;
    };
    let labels = existing.labels();
    let labels_match = desired
        .labels()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let owners_match = desired.owner_references().iter().all(|o| {
        existing
            .owner_references()
            .iter()
            .any(|e| e.uid == o.uid && e.controller == o.controller)
    });
    labels_match
        && owners_match
        && existing.automount_service_account_token == desired.automount_service_account_token
}

/// Creates `desired`, or restores it when someone changed what it sets (a token mounted by
/// hand); writes nothing when the shared store shows it already matches. Counted as a child
/// write of `kind`.
///
/// A store miss is applied without reading the object first: server-side apply of an
/// unchanged object changes nothing (the API server stores no new revision), so where the
/// store only lags, the apply costs the one request a read would have, and where it does not,
/// the read was one request too many (3,000 of them per 1,000 Models, in
/// `benches/README.md`).
pub async fn ensure(
    ctx: &Context,
    kind: &'static str,
    desired: &ServiceAccount,
) -> Result<(), Error> {
    let name = desired.name_any();
    let ns = desired.namespace().unwrap_or_default();
    // The shared watch's store: a settled operator reads nothing from the API server.
    if matches(
        ctx.stores.service_account(&ns, &name).await.as_ref(),
        desired,
    ) {
        return Ok(());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map_err(|source| Error::Apply {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    ctx.metrics.wrote(kind, "child");
    Ok(())
}

#[cfg(test)]
mod tests {
    use leitwerk_crds::Model;

    use super::*;

    fn model() -> Model {
        let mut m: Model =
            yaml_serde::from_str(include_str!("../../examples/lead-scoring/model.yaml"))
                .expect("the example parses");
        m.metadata.uid = Some("uid-1".into());
        m.metadata.namespace = Some("marketing".into());
        m
    }

    #[test]
    fn it_is_owned_labelled_token_less_and_restored_when_a_token_is_mounted() {
        let m = model();
        let sa = token_less(&m, "lead-scoring-model".into(), "leitwerk.dev/model")
            .expect("a stored owner");
        assert_eq!(sa.automount_service_account_token, Some(false));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("marketing"));
        assert_eq!(sa.labels()["leitwerk.dev/model"], "lead-scoring");
        let owner = &sa.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Model", Some(true))
        );
        assert!(matches(Some(&sa), &sa));
        assert!(!matches(None, &sa));
        let mut drifted = sa.clone();
        drifted.automount_service_account_token = Some(true);
        assert!(!matches(Some(&drifted), &sa));
        let mut relabelled = sa.clone();
        relabelled.labels_mut().clear();
        assert!(!matches(Some(&relabelled), &sa));
        let mut never_stored = model();
        never_stored.metadata.uid = None;
        assert!(token_less(&never_stored, "x".into(), "l").is_none());
    }
}
