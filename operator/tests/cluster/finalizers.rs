//! Finalizers changed without losing anyone else's (`leitwerk_operator::finalizer`), against
//! the real API server: the operator's copy is stale on purpose, as a cached copy is when
//! another controller writes in between.

use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use leitwerk_crds::RagIndex;
use leitwerk_operator::{controllers::rag_index::FINALIZER, finalizer};
use leitwerk_testkit::{Cluster, TestNamespace, repo_root};
use serde_json::json;

const AUDIT: &str = "example.com/audit";
const BACKUP: &str = "example.com/backup";

async fn finalizers(api: &Api<RagIndex>, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(api.get(name).await?.metadata.finalizers.unwrap_or_default())
}

/// Another controller's write: a JSON patch, as a well-behaved controller makes it.
async fn other_controller(
    api: &Api<RagIndex>,
    name: &str,
    op: serde_json::Value,
) -> anyhow::Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(json!([op]))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

#[tokio::test]
async fn another_controllers_finalizer_added_in_between_survives() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "finalizers").await?;
    let api: Api<RagIndex> = Api::namespaced(cluster.client().await?, &ns.name);
    let mut index: RagIndex = yaml_serde::from_str(&std::fs::read_to_string(
        repo_root().join("examples/product-docs-rag/ragindex.yaml"),
    )?)?;
    index.metadata.finalizers = Some(vec![AUDIT.into()]);
    let name = api
        .create(&PostParams::default(), &index)
        .await?
        .metadata
        .name
        .unwrap_or_default();

    // Added on a current copy.
    let copy = api.get(&name).await?;
    finalizer::set(&api, &copy, FINALIZER, true).await?;
    assert_eq!(finalizers(&api, &name).await?, [AUDIT, FINALIZER]);

    // Removed on a copy that predates another controller's finalizer: that one stays.
    let stale = api.get(&name).await?;
    other_controller(
        &api,
        &name,
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": BACKUP}),
    )
    .await?;
    finalizer::set(&api, &stale, FINALIZER, false).await?;
    assert_eq!(
        finalizers(&api, &name).await?,
        [AUDIT, BACKUP],
        "only the operator's finalizer goes; the one added in between survives"
    );

    // Added on a copy whose list changed since: refused (the reconcile runs again on the
    // newer object), and nothing is lost or put back.
    let stale = api.get(&name).await?;
    other_controller(
        &api,
        &name,
        json!({"op": "remove", "path": "/metadata/finalizers/0"}),
    )
    .await?;
    let refused = finalizer::set(&api, &stale, FINALIZER, true).await;
    assert!(
        matches!(&refused, Err(finalizer::Error::Patch { source: kube::Error::Api(e), .. }) if e.code == 422),
        "a patch pinned to an old list is refused: {refused:?}"
    );
    assert_eq!(finalizers(&api, &name).await?, [BACKUP]);
    let fresh = api.get(&name).await?;
    finalizer::set(&api, &fresh, FINALIZER, true).await?;
    assert_eq!(finalizers(&api, &name).await?, [BACKUP, FINALIZER]);

    // Let the namespace go.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    Ok(())
}
