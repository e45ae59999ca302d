//! The Secret that holds the token feedback callers must present to a serving endpoint
//! (`Authorization: Bearer <token>` on `/v2/feedback`): one per Model, and one per Experiment
//! for the variants callers reach through its route. The operator creates it with a random
//! token when it is missing and never reads it back: the serving pods get the value through
//! `secretKeyRef`, so creating is the only access to Secrets this needs. A Secret of that name
//! made beforehand (with the key `token`) is used as it is, which is how a team brings its own
//! token or rotates one (change the value, then restart the serving pods).

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
};

use crate::{
    context::Context,
    reconcile::Error,
    workloads::{MANAGED_BY, child_name},
};

/// The key of the token in the Secret.
pub const TOKEN_KEY: &str = "token";
/// The environment variable the inference server reads the token from.
pub const TOKEN_ENV: &str = "LEITWERK_FEEDBACK_TOKEN";

/// The name of the feedback Secret of the Model or Experiment `owner`.
pub fn name(owner: &str) -> String {
    child_name(owner, "feedback")
}

/// The serving container's environment variable with the token from Secret `secret`.
pub fn env(secret: &str) -> EnvVar {
    EnvVar {
        name: TOKEN_ENV.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: TOKEN_KEY.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A new feedback Secret for `owner` with 256 random bits as its token, or `None` when the
/// owner was never stored (no UID to own it).
pub fn desired<K: Resource<DynamicType = ()>>(owner: &K) -> Option<Secret> {
    let reference = owner.controller_owner_ref(&())?;
    let token: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name(&owner.name_any())),
            namespace: owner.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            owner_references: Some(vec![reference]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.into_bytes()),
        )])),
        ..Secret::default()
    })
}

/// Creates the feedback Secret of `owner` unless it exists (its metadata read first; a 409
/// from a race is fine too), once per process and owner.
pub async fn ensure<K: Resource<DynamicType = ()>>(ctx: &Context, owner: &K) -> Result<(), Error> {
    let Some(secret) = desired(owner) else {
        return Ok(());
    };
    let ns = owner.namespace().unwrap_or_default();
    let secret_name = secret.name_any();
    let key = format!(
        "Secret/{ns}/{secret_name}/{}",
        owner.meta().uid.as_deref().unwrap_or_default()
    );
    if ctx.remembered(&key).is_some() {
        return Ok(());
    }
    // A read first (metadata only, never the value): a restarted operator finds the Secrets
    // there and writes nothing.
    let exists = crate::references::secret_exists(ctx, &ns, &secret_name)
        .await
        .map_err(|source| Error::Read {
            what: format!("feedback Secret {secret_name}"),
            source,
        })?;
    if exists {
        ctx.remember(&key, "exists".into());
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(source) => {
            return Err(Error::Apply {
                what: format!("feedback Secret {secret_name}"),
                source,
            });
        }
    }
    ctx.remember(&key, "created".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn each_owner_gets_its_own_random_token_read_only_by_its_pods() {
        // Any stored object can own one; a ConfigMap stands for the Model here.
        let mut model = ConfigMap::default();
        model.metadata.name = Some("leads".into());
        model.metadata.namespace = Some("team-a".into());
        model.metadata.uid = Some("u1".into());
        let a = desired(&model).unwrap_or_default();
        let b = desired(&model).unwrap_or_default();
        assert_eq!(a.metadata.name.as_deref(), Some("leads-feedback"));
        assert_eq!(a.metadata.namespace.as_deref(), Some("team-a"));
        let token = |s: &Secret| s.data.as_ref().and_then(|d| d.get(TOKEN_KEY)).cloned();
        let (ta, tb) = (token(&a).unwrap_or_default(), token(&b).unwrap_or_default());
        assert_eq!(ta.0.len(), 64, "256 bits as hex");
        assert_ne!(ta, tb, "tokens are drawn, not derived");
        assert_eq!(
            a.metadata.owner_references.unwrap_or_default()[0].uid,
            "u1",
            "deleted with its owner"
        );
        let e = env("leads-feedback");
        let from = e
            .value_from
            .and_then(|v| v.secret_key_ref)
            .unwrap_or_default();
        assert_eq!(
            (e.name.as_str(), from.name.as_str(), from.key.as_str()),
            (TOKEN_ENV, "leads-feedback", TOKEN_KEY)
        );
        model.metadata.uid = None;
        assert!(desired(&model).is_none(), "an unstored owner gets nothing");
    }
}
