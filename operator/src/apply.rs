//! Applying the children the operator owns (Jobs, Deployments, Services, HTTPRoutes,
//! ServiceAccounts) by server-side apply under one field manager, and only when needed: a
//! child is written when what the operator wants changed, or when someone changed the child
//! by hand (`kubectl edit`, `kubectl scale`), which is put back within one reconcile.

use kube::{
    Api, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
};
use leitwerk_crds::FIELD_MANAGER;
use serde_json::Value;

use crate::{context::Context, reconcile::Error};

/// Annotation with the hash of what the operator last applied to a child object.
pub const APPLIED_HASH: &str = leitwerk_crds::labels::APPLIED_HASH;

/// A stable hash of an object's JSON.
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// `current` cut down to the shape of `desired`: for every field that `desired` sets, the
/// value `current` has there (`Null` where it has none). Fields the API server added
/// (defaults, status, metadata it manages) fall away, so the result equals `desired` exactly
/// when every field the operator sets still holds its value.
pub fn project(current: &Value, desired: &Value) -> Value {
    match (current, desired) {
        (Value::Object(c), Value::Object(d)) => Value::Object(
            d.iter()
                .map(|(k, dv)| {
                    let seen = match c.get(k) {
                        Some(cv) => project(cv, dv),
                        // The API server does not store empty values (`readOnly: false`,
                        // `[]`): absent is what was asked for.
                        None if is_empty_value(dv) => dv.clone(),
                        None => Value::Null,
                    };
                    (k.clone(), seen)
                })
                .collect(),
        ),
        (Value::Array(c), Value::Array(d)) if c.len() == d.len() => {
            Value::Array(c.iter().zip(d).map(|(cv, dv)| project(cv, dv)).collect())
        }
        _ => current.clone(),
    }
}

/// Whether a value is one the API server leaves out when it stores an object.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Why a child must be applied, or `None` when the cluster already shows it: it is missing,
/// the operator's desired object changed (another hash), or a field the operator sets was
/// changed by someone else (the reason names the first such field). `remembered` is the
/// projection the API server returned for the last apply (it spells some values its own way,
/// such as quantities), so a normalised value is not mistaken for an edit.
pub fn why_apply(
    current: Option<&Value>,
    desired: &Value,
    remembered: Option<&str>,
) -> Option<String> {
    let Some(current) = current else {
        return Some("it does not exist".into());
    };
    if current["metadata"]["annotations"][APPLIED_HASH]
        != desired["metadata"]["annotations"][APPLIED_HASH]
    {
        return Some("the desired object changed".into());
    }
    let seen = project(current, desired);
    if seen == *desired || remembered == Some(hash_of(&seen).as_str()) {
        return None;
    }
    Some(format!(
        "{} was changed by someone else",
        first_difference(&seen, desired, String::new()).unwrap_or_else(|| "a field".into())
    ))
}

/// Whether a child must be applied (see [`why_apply`]).
pub fn needs_apply(current: Option<&Value>, desired: &Value, remembered: Option<&str>) -> bool {
    why_apply(current, desired, remembered).is_some()
}

/// The path of the first field where `seen` differs from `desired`.
fn first_difference(seen: &Value, desired: &Value, path: String) -> Option<String> {
    match (seen, desired) {
        (Value::Object(s), Value::Object(d)) => d.iter().find_map(|(k, dv)| {
            first_difference(s.get(k).unwrap_or(&Value::Null), dv, format!("{path}.{k}"))
        }),
        (Value::Array(s), Value::Array(d)) if s.len() == d.len() => s
            .iter()
            .zip(d)
            .enumerate()
            .find_map(|(i, (sv, dv))| first_difference(sv, dv, format!("{path}[{i}]"))),
        _ if seen == desired => None,
        _ => Some(path.trim_start_matches('.').to_string()),
    }
}

/// A typed child as it is applied: annotated with the hash of what the operator wants.
pub fn desired_value<K: kube::Resource + serde::Serialize>(mut obj: K) -> Value {
    let hash = hash_of(&obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(APPLIED_HASH.to_string(), hash);
    serde_json::to_value(&obj).unwrap_or_default()
}

/// Applies `obj` (a typed child) unless the cluster already shows exactly it.
pub async fn apply_if_changed<K>(
    ctx: &Context,
    ns: &str,
    obj: K,
    current: Option<&K>,
    what: &str,
) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let desired = desired_value(obj);
    let current = current.and_then(|c| serde_json::to_value(c).ok());
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    if apply_value_if_changed(
        ctx,
        &api,
        K::kind(&()).as_ref(),
        ns,
        &desired,
        current,
        what,
    )
    .await?
    {
        ctx.metrics.wrote(K::kind(&()).as_ref(), "child");
    }
    Ok(())
}

/// Applies an untyped child (an HTTPRoute of the Gateway API) unless the cluster already shows
/// exactly it. Returns whether it wrote.
pub async fn apply_dynamic_if_changed(
    ctx: &Context,
    api: &Api<DynamicObject>,
    mut desired: Value,
    current: Option<&DynamicObject>,
    what: &str,
) -> Result<bool, Error> {
    let hash = hash_of(&desired);
    desired["metadata"]["annotations"] = serde_json::json!({APPLIED_HASH: hash});
    let current = current.and_then(|c| serde_json::to_value(c).ok());
    let kind = desired["kind"].as_str().unwrap_or_default().to_string();
    let ns = desired["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    apply_value_if_changed(ctx, api, &kind, &ns, &desired, current, what).await
}

/// The common part of the two above: decide, log why, apply, remember what the API server
/// returned. Returns whether it wrote.
async fn apply_value_if_changed<T>(
    ctx: &Context,
    api: &Api<T>,
    kind: &str,
    ns: &str,
    desired: &Value,
    current: Option<Value>,
    what: &str,
) -> Result<bool, Error>
where
    T: Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let key = child_key(kind, ns, desired);
    let Some(why) = why_apply(current.as_ref(), desired, ctx.remembered(&key).as_deref()) else {
        return Ok(false);
    };
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    tracing::info!(child = %key, "applying {what} {name}: {why}");
    let applied = server_side_apply(api, name, desired, what).await?;
    remember(ctx, &key, &applied, desired);
    Ok(true)
}

/// Applies a child object by server-side apply, unconditionally.
pub async fn apply<K>(ctx: &Context, ns: &str, obj: &K, what: &str) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    server_side_apply(&api, &name, obj, what).await?;
    ctx.metrics.wrote(K::kind(&()).as_ref(), "child");
    Ok(())
}

/// One server-side apply under the operator's field manager, taking over conflicting fields.
async fn server_side_apply<T, B>(api: &Api<T>, name: &str, body: &B, what: &str) -> Result<T, Error>
where
    T: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    B: serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|source| Error::Apply {
        what: format!("{what} {name}"),
        source,
    })
}

fn child_key(kind: &str, ns: &str, desired: &Value) -> String {
    format!(
        "{kind}/{ns}/{}",
        desired["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn remember<T: serde::Serialize>(ctx: &Context, key: &str, applied: &T, desired: &Value) {
    if let Ok(applied) = serde_json::to_value(applied) {
        ctx.remember(key, hash_of(&project(&applied, desired)));
    }
}

/// Applies a serving Deployment and its Service where they differ from what runs; returns the
/// Deployment as it was before (its status tells how many replicas are available).
pub async fn apply_serving(
    ctx: &Context,
    ns: &str,
    deployment: k8s_openapi::api::apps::v1::Deployment,
    service: k8s_openapi::api::core::v1::Service,
    what: &str,
) -> Result<Option<k8s_openapi::api::apps::v1::Deployment>, Error> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = api
        .get_opt(&deployment.name_any())
        .await
        .map_err(|source| Error::Read {
            what: format!("{what} Deployment"),
            source,
        })?;
    apply_if_changed(
        ctx,
        ns,
        deployment,
        current.as_ref(),
        &format!("{what} Deployment"),
    )
    .await?;
    // The shared watch's store first (see `crate::cache`).
    let current_service = match ctx.stores.service(ns, &service.name_any()).await {
        Some(held) => Some(held),
        None => {
            let services: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(ctx.client.clone(), ns);
            services
                .get_opt(&service.name_any())
                .await
                .map_err(|source| Error::Read {
                    what: format!("{what} Service"),
                    source,
                })?
        }
    };
    apply_if_changed(
        ctx,
        ns,
        service,
        current_service.as_ref(),
        &format!("{what} Service"),
    )
    .await?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn desired() -> Value {
        json!({
            "metadata": {"name": "m-serving", "annotations": {APPLIED_HASH: "abc"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "server", "image": "leitwerk-inference-server:1", "resources": {"limits": {"cpu": "0.5"}}}
            ]}}}
        })
    }

    /// The Deployment as the API server returns it: defaults added, the CPU limit in its own
    /// spelling.
    fn stored() -> Value {
        json!({
            "metadata": {"name": "m-serving", "uid": "u", "resourceVersion": "7", "annotations": {APPLIED_HASH: "abc"}},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"spec": {"containers": [
                {"name": "server", "image": "leitwerk-inference-server:1", "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"cpu": "500m"}}}
            ]}}},
            "status": {"replicas": 1}
        })
    }

    #[test]
    fn defaults_added_by_the_api_server_are_no_change() {
        let mut exact = stored();
        exact["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("0.5");
        assert!(!needs_apply(Some(&exact), &desired(), None));
    }

    #[test]
    fn a_value_the_server_normalised_is_no_change_once_remembered() {
        let remembered = hash_of(&project(&stored(), &desired()));
        assert!(
            needs_apply(Some(&stored()), &desired(), None),
            "unknown after a restart: one apply"
        );
        assert!(!needs_apply(Some(&stored()), &desired(), Some(&remembered)));
    }

    #[test]
    fn a_hand_edit_of_a_field_the_operator_sets_is_a_change() {
        let remembered = hash_of(&project(&stored(), &desired()));
        for (path, value) in [
            ("/spec/replicas", json!(5)),
            (
                "/spec/template/spec/containers/0/image",
                json!("evil:latest"),
            ),
        ] {
            let mut edited = stored();
            *edited.pointer_mut(path).unwrap() = value;
            assert!(
                needs_apply(Some(&edited), &desired(), Some(&remembered)),
                "{path}"
            );
        }
        let mut gone = stored();
        gone["spec"]["template"]["spec"]["containers"] = json!([]);
        assert!(needs_apply(Some(&gone), &desired(), Some(&remembered)));
        // A new desired object (another hash) and a missing child are applied too.
        let mut newer = desired();
        newer["metadata"]["annotations"][APPLIED_HASH] = json!("def");
        assert!(needs_apply(Some(&stored()), &newer, Some(&remembered)));
        assert!(needs_apply(None, &desired(), None));
    }

    #[test]
    fn empty_values_the_api_server_leaves_out_are_no_change() {
        let mut asked = desired();
        asked["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "store", "mountPath": "/s", "readOnly": false}]);
        asked["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
        let mut stored = stored();
        stored["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "store", "mountPath": "/s"}]);
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("0.5");
        assert_eq!(why_apply(Some(&stored), &asked, None), None);
    }

    #[test]
    fn fields_the_operator_does_not_set_may_change() {
        let remembered = hash_of(&project(&stored(), &desired()));
        let mut annotated = stored();
        annotated["metadata"]["annotations"]["team"] = json!("growth");
        annotated["spec"]["progressDeadlineSeconds"] = json!(900);
        assert!(!needs_apply(
            Some(&annotated),
            &desired(),
            Some(&remembered)
        ));
    }
}
