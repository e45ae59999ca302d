//! Reading what a resource references (a FeatureSet, ConfigMaps, Secrets) before it
//! reconciles: existence checks read metadata only, never a Secret's data.

use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{ConfigMap, Secret},
};
use kube::{Api, Resource, api::PartialObjectMeta};
use serde::de::DeserializeOwned;

use crate::context::Context;

/// Reads an object by name in a namespace; `None` when it does not exist.
pub async fn get_opt<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
}

/// Whether a Secret exists; reads only its metadata, never its data.
pub async fn secret_exists(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let meta: Option<PartialObjectMeta<Secret>> =
        Api::<Secret>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
    Ok(meta.is_some())
}

/// Whether a ConfigMap exists; reads only its metadata.
pub async fn config_map_exists(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let meta: Option<PartialObjectMeta<ConfigMap>> =
        Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
    Ok(meta.is_some())
}

/// The operator's `artifactStoreSecret` as a reference to check, if it is set.
pub fn artifact_store_secret(ctx: &Context) -> Vec<(String, String)> {
    ctx.config
        .artifact_store_secret
        .iter()
        .map(|name| {
            (
                "artifactStoreSecret of the operator's config".to_string(),
                name.clone(),
            )
        })
        .collect()
}

/// Finds the first missing Secret among `(field, name)` references.
pub async fn first_missing_secret(
    ctx: &Context,
    namespace: &str,
    refs: &[(String, String)],
) -> Result<Option<(String, String)>, kube::Error> {
    for (field, name) in refs {
        if !secret_exists(ctx, namespace, name).await? {
            return Ok(Some((field.clone(), name.clone())));
        }
    }
    Ok(None)
}

/// The outcome naming the first Secret that does not exist among `refs` and the artifact
/// store's (`Outcome::missing`), or `None` when all exist.
pub async fn missing_secret<P: leitwerk_crds::common::Phase>(
    ctx: &Context,
    namespace: &str,
    mut refs: Vec<(String, String)>,
) -> Result<Option<crate::reconcile::Outcome<P>>, crate::reconcile::Error> {
    refs.extend(artifact_store_secret(ctx));
    let missing = first_missing_secret(ctx, namespace, &refs)
        .await
        .map_err(|source| crate::reconcile::Error::Read {
            what: "Secrets".into(),
            source,
        })?;
    Ok(missing.map(|(field, name)| {
        crate::reconcile::Outcome::missing("Secret", &name, &field, namespace)
    }))
}

/// The environment variable `name` from one key of a Secret (required: the pod does not start
/// without it, and says which).
pub fn secret_key_env(
    name: String,
    reference: &leitwerk_crds::common::SecretKeyReference,
) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name,
        value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
            secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
