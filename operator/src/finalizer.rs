//! Adding and removing the operator's finalizers without losing anyone else's.
//!
//! A merge patch of the whole `metadata.finalizers` list, computed from the cached object,
//! would remove a finalizer that another controller added since the cache was filled. Every
//! change here is a JSON patch whose `test` operation pins what it was computed from: when
//! the list changed in between, the API server refuses the patch (422) and the reconcile runs
//! again on the newer object.

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Why a finalizer could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The patch could not be built (never expected: the operations are fixed shapes).
    #[error("failed to build the finalizer patch")]
    Build(#[source] serde_json::Error),
    /// The API server refused or failed the patch (422: the list changed since it was read).
    #[error("failed to {verb} the finalizer {finalizer}")]
    Patch {
        /// `add` or `remove`.
        verb: &'static str,
        /// The finalizer.
        finalizer: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The JSON patch that adds (`on`) or removes `finalizer` from an object whose finalizers are
/// `current`; `None` when nothing needs to change. Pure.
pub fn patch_for(
    current: &[String],
    finalizer: &str,
    on: bool,
) -> Result<Option<json_patch::Patch>, serde_json::Error> {
    let position = current.iter().position(|f| f == finalizer);
    let ops: Value = match (on, position) {
        (true, Some(_)) | (false, None) => return Ok(None),
        // No list yet: `test` that it is still absent (null), then create it.
        (true, None) if current.is_empty() => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": Value::Null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ]),
        (true, None) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
        (false, Some(i)) => json!([
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
        ]),
    };
    serde_json::from_value(ops).map(Some)
}

/// Adds (`on`) or removes `finalizer` on `obj` through `api`, pinned to the list `obj` shows.
pub async fn set<K>(api: &Api<K>, obj: &K, finalizer: &str, on: bool) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(patch) = patch_for(obj.finalizers(), finalizer, on).map_err(Error::Build)? else {
        return Ok(());
    };
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|source| Error::Patch {
        verb: if on { "add" } else { "remove" },
        finalizer: finalizer.to_string(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(finalizers: Option<&[&str]>) -> Value {
        match finalizers {
            // The API server's JSON patch treats an absent list like null.
            None => json!({"metadata": {"name": "docs", "finalizers": null}}),
            Some(f) => json!({"metadata": {"name": "docs", "finalizers": f}}),
        }
    }

    fn finalizers(doc: &Value) -> Vec<&str> {
        doc["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn adding_to_an_unchanged_list_appends_and_keeps_the_others() {
        let mut doc = object(Some(&["other.io/keep"]));
        let patch = patch_for(&["other.io/keep".into()], "leitwerk.dev/x", true)
            .unwrap()
            .unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(finalizers(&doc), ["other.io/keep", "leitwerk.dev/x"]);

        let mut empty = object(None);
        let patch = patch_for(&[], "leitwerk.dev/x", true).unwrap().unwrap();
        json_patch::patch(&mut empty, &patch).unwrap();
        assert_eq!(finalizers(&empty), ["leitwerk.dev/x"]);
    }

    #[test]
    fn a_finalizer_added_by_another_controller_in_between_survives() {
        // Computed from a cached copy with no finalizers; another controller added one since.
        let add = patch_for(&[], "leitwerk.dev/x", true).unwrap().unwrap();
        let mut live = object(Some(&["other.io/keep"]));
        assert!(json_patch::patch(&mut live, &add).is_err());
        assert_eq!(finalizers(&live), ["other.io/keep"]);

        // Removal computed from [ours]; the live list is [other, ours]: the index moved.
        let remove = patch_for(&["leitwerk.dev/x".into()], "leitwerk.dev/x", false)
            .unwrap()
            .unwrap();
        let mut live = object(Some(&["other.io/keep", "leitwerk.dev/x"]));
        assert!(json_patch::patch(&mut live, &remove).is_err());
        assert_eq!(finalizers(&live), ["other.io/keep", "leitwerk.dev/x"]);

        // Recomputed from the live object, both succeed and only ours changes.
        let remove = patch_for(
            &["other.io/keep".into(), "leitwerk.dev/x".into()],
            "leitwerk.dev/x",
            false,
        )
        .unwrap()
        .unwrap();
        json_patch::patch(&mut live, &remove).unwrap();
        assert_eq!(finalizers(&live), ["other.io/keep"]);
    }

    #[test]
    fn nothing_to_change_is_no_patch() {
        assert!(
            patch_for(&["leitwerk.dev/x".into()], "leitwerk.dev/x", true)
                .unwrap()
                .is_none()
        );
        assert!(patch_for(&[], "leitwerk.dev/x", false).unwrap().is_none());
    }
}
