//! Retrieval on a real Qdrant server end to end: `examples/product-docs-rag` with
//! `vectorStore.qdrant` (the server binary of `../shared/tools/qdrant/`, started on 127.0.0.1
//! with an API key; absent, the test says so loudly). The index Job writes each version into
//! a collection of its own, the operator points the alias at the version that passed the
//! gate, and the retrieval pod (the node stand-in runs the real server binary) queries the
//! alias: it answers the labelled queries with the embedded store's first results, follows
//! the alias to a new version without a restart, keeps answering from the serving version
//! while a worse one is refused, keeps `versionHistoryLimit` collections, reports a refused
//! API key naming the Secret, and leaves no collection once the RagIndex is deleted. The spec
//! asks for a GPU, which this machine cannot give the encoder: a condition says the build
//! embedded on the CPU, and why.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use leitwerk_crds::RagIndex;
use leitwerk_crds::rag_index::{
    BuildState, IndexVersion, IndexVersionState, QdrantStore, RagIndexPhase, SearchMode,
    VectorStore,
};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::Index;
use leitwerk_rag::qdrant::Store;
use leitwerk_rag::search::{ExactStore, Filter, HybridStore, VectorStore as _};
use leitwerk_testkit::node::NodeStandIn;
use leitwerk_testkit::qdrant::{QdrantProcess, absent_notice};
use leitwerk_testkit::{OperatorProcess, example_config_map, kubectl_apply, provided, wait_for};

use crate::WAIT;
use crate::predictive::{Plant, images, onnxruntime, operator_with_images};
use crate::retrieval::{BUILD_WAIT, finished_build, labelled, query, retrieval_port};

const TRAINER_IMAGE: &str = "leitwerk-trainer:ragq";
const SERVER_IMAGE: &str = "leitwerk-inference-server:ragq";
/// The collection name the spec gives: the alias; versions are `<it>-<version>`.
const ALIAS: &str = "product-docs";
const SECRET: &str = "qdrant-key";

/// The example's RagIndex with its vectors on `url`, two versions kept.
fn qdrant_index(url: &str) -> anyhow::Result<RagIndex> {
    let text = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/product-docs-rag/ragindex.yaml"),
    )?;
    let mut index: RagIndex = yaml_serde::from_str(&text)?;
    index.spec.vector_store = Some(VectorStore {
        embedded: None,
        qdrant: Some(QdrantStore {
            url: url.into(),
            collection: ALIAS.into(),
            api_key_secret_ref: Some(leitwerk_crds::common::SecretKeyReference {
                name: SECRET.into(),
                key: "api-key".into(),
            }),
        }),
    });
    index.spec.version_history_limit = 2;
    index.spec.resources = Some(leitwerk_crds::common::WorkloadResources {
        cpu: None,
        memory: None,
        gpu: Some(leitwerk_crds::common::GpuResources {
            count: 1,
            resource_name: "nvidia.com/gpu".into(),
        }),
    });
    // No refresh at 02:00 in the middle of a test.
    index.spec.refresh_schedule = None;
    Ok(index)
}

/// The first document of each labelled query as the embedded exact store ranks `version`'s
/// index file in `mode` (what the same version would serve without Qdrant).
fn embedded_first_results(
    artifacts: &std::path::Path,
    ns: &str,
    version: &IndexVersion,
    queries: &[(String, Vec<String>)],
) -> anyhow::Result<Vec<String>> {
    let file = version.url.rsplit('/').next().unwrap_or_default();
    let bytes = std::fs::read(artifacts.join(format!("indexes/{ns}/product-docs/{file}")))?;
    let store = HybridStore::new(ExactStore::new(Index::from_bytes(&bytes)?));
    let embedder = Embedder::load(&provided("minilm.sh")?, "all-MiniLM-L6-v2")?;
    let texts: Vec<&str> = queries.iter().map(|(q, _)| q.as_str()).collect();
    let vectors = embedder.embed(&texts)?;
    let mut first = Vec::new();
    for ((text, _), v) in queries.iter().zip(&vectors) {
        let hits = match version.search_mode.unwrap_or_default() {
            SearchMode::Dense => store.dense().search(v, 1, &Filter::new())?,
            SearchMode::Hybrid => store.search(v, text, 1, &Filter::new())?,
        };
        first.push(hits.first().map(|h| h.document.clone()).unwrap_or_default());
    }
    Ok(first)
}

/// The RagIndex once `check` holds for it.
async fn index_when(
    indexes: &Api<RagIndex>,
    what: &str,
    operator: &OperatorProcess,
    check: impl Fn(&RagIndex) -> bool,
) -> anyhow::Result<RagIndex> {
    wait_for(what, BUILD_WAIT, || async {
        let i = indexes.get("product-docs").await?;
        let s = i.status.clone().unwrap_or_default();
        Ok((
            check(&i).then_some(i),
            format!("{:?} {:?}", s.phase, s.conditions),
        ))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))
}

fn serving(index: &RagIndex) -> IndexVersion {
    index
        .status
        .as_ref()
        .and_then(|s| s.versions.serving().cloned())
        .unwrap_or_default()
}

async fn set_key(secrets: &Api<Secret>, key: &str) -> anyhow::Result<()> {
    secrets
        .patch(
            SECRET,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"stringData": {"api-key": key}})),
        )
        .await?;
    Ok(())
}

/// Long because it is one story, in order: build, serve, swap, refuse, bound, refuse the key,
/// delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_docs_on_qdrant_serves_through_the_alias_and_leaves_nothing_behind()
-> anyhow::Result<()> {
    let Plant {
        dir,
        cluster,
        client,
        ns,
        artifacts,
    } = Plant::start("rag-qdrant", "ragq").await?;
    let Some(server) = QdrantProcess::start(&dir.join("qdrant"), "e2e-key-1").await? else {
        eprintln!(
            "{}",
            absent_notice("the RagIndex-on-Qdrant end-to-end test")
        );
        return Ok(());
    };
    let store = Store::connect(&server.grpc_url, Some(server.api_key.clone()))?;
    let model_dir = provided("minilm.sh")?.display().to_string();
    let env = vec![
        ("LEITWERK_EMBEDDING_MODEL_DIR".to_string(), model_dir),
        ("ORT_DYLIB_PATH".to_string(), onnxruntime()?),
    ];
    let images = images(TRAINER_IMAGE, SERVER_IMAGE, &env)?;
    // GPUs for the Jobs and the retrieval pod (the spec asks for one): the stand-in has none
    // to give, and ONNX Runtime's CPU library has no CUDA provider, so each build says it
    // embedded on the CPU and why.
    let node = NodeStandIn::start(client.clone(), "ragq-node-1", 4, &dir, images).await?;
    let operator =
        operator_with_images(&cluster, &dir, &ns.name, TRAINER_IMAGE, SERVER_IMAGE).await?;
    for file in ["docs-configmap.yaml", "eval-configmap.yaml"] {
        kubectl_apply(
            &cluster,
            &ns.name,
            &format!("examples/product-docs-rag/{file}"),
            None,
        )?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SECRET}, "stringData": {"api-key": server.api_key},
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    let indexes: Api<RagIndex> = Api::namespaced(client.clone(), &ns.name);
    indexes
        .create(&PostParams::default(), &qdrant_index(&server.grpc_url)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // 1. The first version is written to its own collection, passes the gate, and the alias
    // names it.
    let index = index_when(&indexes, "the RagIndex to serve", &operator, |i| {
        i.status.as_ref().and_then(|s| s.phase) == Some(RagIndexPhase::Ready)
    })
    .await?;
    let v1 = serving(&index);
    let c1 = format!("{ALIAS}-{}", v1.version);
    assert_eq!(v1.collection.as_deref(), Some(c1.as_str()), "{v1:?}");
    assert_eq!(store.alias_target(ALIAS).await?, Some(c1.clone()));
    assert_eq!(
        store.count(&c1).await?,
        v1.chunks as u64 - v1.quarantined.unwrap_or(0) as u64
    );
    // The key reaches the Job from the Secret, never as a value in the spec of a pod.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job = jobs.get("product-docs-index-1").await?;
    let container = job
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].clone())
        .unwrap_or_default();
    let key_env = container
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "LEITWERK_QDRANT_API_KEY")
        .ok_or_else(|| anyhow::anyhow!("the index Job has no API key variable"))?;
    assert_eq!(key_env.value, None);
    let from = key_env.value_from.and_then(|v| v.secret_key_ref);
    assert_eq!(
        from.map(|r| (r.name, r.key)),
        Some((SECRET.into(), "api-key".into()))
    );

    // The spec asks for a GPU; this machine's ONNX Runtime library has no CUDA provider: the
    // build embedded on the CPU, and a condition says so and why.
    let conditions = index.status.clone().unwrap_or_default().conditions;
    let accelerated = conditions
        .iter()
        .find(|c| c.type_ == "Accelerated")
        .ok_or_else(|| anyhow::anyhow!("no Accelerated condition: {conditions:?}"))?;
    assert_eq!(
        (accelerated.status.as_str(), accelerated.reason.as_str()),
        ("False", "CpuFallback"),
        "{accelerated:?}"
    );
    assert!(
        accelerated.message.contains("no CUDA execution provider"),
        "{}",
        accelerated.message
    );
    let build = index.status.clone().unwrap_or_default().last_build;
    assert_eq!(build.and_then(|b| b.embedded_on).as_deref(), Some("CPU"));

    // 2. The retrieval pod queries the alias and answers every labelled query with the
    // embedded store's first result for the same version.
    let port = retrieval_port(&node, &pods, &ns.name, &v1.version).await?;
    let queries = labelled()?;
    let want = embedded_first_results(&artifacts, &ns.name, &v1, &queries)?;
    let mut first_relevant = 0;
    for ((text, relevant), want) in queries.iter().zip(&want) {
        let answer = query(port, text, 5).await?;
        let top = answer["results"][0]["document"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(top, want, "{text:?} ({:?} search)", v1.search_mode);
        assert_eq!(answer["version"], v1.version.as_str());
        first_relevant += usize::from(relevant.iter().any(|r| r == top));
    }
    let quality = v1.quality.ok_or_else(|| anyhow::anyhow!("no quality"))?;
    assert_eq!(
        first_relevant as i64, quality.first_relevant,
        "server vs status"
    );

    // 3. An edited document makes version 2; the alias moves to its collection and the same
    // retrieval pod answers from it (no rollout when the mode stays).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let before = deployments.get("product-docs-retrieval").await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let docs = example_config_map("product-docs-rag/docs-configmap.yaml")?;
    let faq = docs.get("billing-faq.md").cloned().unwrap_or_default();
    let edited = format!(
        "{faq}\n## Can I pay in Swiss francs?\nYes: invoices can be issued in CHF for customers in Switzerland.\n"
    );
    configmaps
        .patch(
            "product-docs",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"data": {"billing-faq.md": edited}})),
        )
        .await?;
    let (index, second) = finished_build(&indexes, 2, &operator).await?;
    assert_eq!(second.state, BuildState::Succeeded, "{second:?}");
    let v2 = serving(&index);
    assert_ne!(v2.version, v1.version);
    let c2 = format!("{ALIAS}-{}", v2.version);
    assert_eq!(store.alias_target(ALIAS).await?, Some(c2.clone()));
    let after = deployments.get("product-docs-retrieval").await?;
    if v1.search_mode == v2.search_mode {
        assert_eq!(
            before.metadata.generation, after.metadata.generation,
            "the alias moved, the Deployment stayed"
        );
    }
    let port = retrieval_port(&node, &pods, &ns.name, &v2.version).await?;
    let answer = query(port, "Can I pay in Swiss francs?", 1).await?;
    assert_eq!(
        answer["results"][0]["document"],
        "product-docs/billing-faq.md"
    );

    // 4. A version below the gate is written but refused: the alias stays on version 2, which
    // keeps answering. Two versions are kept: version 1's collection is gone.
    indexes
        .patch(
            "product-docs",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {
                "chunking": {"maxTokens": 100}, "evaluation": {"minRecall": 0.999}}})),
        )
        .await?;
    let (index, third) = finished_build(&indexes, 3, &operator).await?;
    assert_eq!(third.state, BuildState::Succeeded, "{third:?}");
    let status = index.status.clone().unwrap_or_default();
    let refused = status.versions.last().cloned().unwrap_or_default();
    assert_eq!(refused.state, IndexVersionState::Refused, "{refused:?}");
    assert_eq!(status.serving_version.as_deref(), Some(v2.version.as_str()));
    assert_eq!(store.alias_target(ALIAS).await?, Some(c2.clone()));
    let answer = query(port, "How much does the Pro plan cost?", 3).await?;
    assert_eq!(answer["version"], v2.version.as_str());
    let kept: Vec<String> = status
        .versions
        .iter()
        .filter_map(|v| v.collection.clone())
        .collect();
    assert_eq!(kept.len(), 2, "{:?}", status.versions);
    let mut kept_sorted = kept.clone();
    kept_sorted.sort();
    assert_eq!(store.collections(&format!("{ALIAS}-")).await?, kept_sorted);
    assert!(!kept.contains(&c1));
    // The alias pointed at the refused version by hand is put back by the operator.
    let c3 = refused
        .collection
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the refused version has no collection"))?;
    store.point_alias(ALIAS, &c3).await?;
    wait_for("the alias to be put back", WAIT, || async {
        let now = store.alias_target(ALIAS).await?;
        Ok((
            (now.as_deref() == Some(c2.as_str())).then_some(()),
            format!("{now:?}"),
        ))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;

    // 5. A wrong key in the Secret: Ready=False naming the Secret; the right key again and
    // the RagIndex is Ready.
    set_key(&secrets, "not-the-key").await?;
    let refused_key = index_when(&indexes, "a refused API key", &operator, |i| {
        i.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "QdrantUnauthorized")
        })
    })
    .await?;
    let ready = refused_key
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .ok_or_else(|| anyhow::anyhow!("no Ready condition"))?;
    assert_eq!(ready.status, "False");
    assert!(
        ready
            .message
            .contains(&format!("Secret {}/{SECRET}", ns.name))
            && ready.message.contains("apiKeySecretRef"),
        "{}",
        ready.message
    );
    set_key(&secrets, &server.api_key).await?;
    index_when(&indexes, "Ready again with the right key", &operator, |i| {
        i.status.as_ref().and_then(|s| s.phase) == Some(RagIndexPhase::Ready)
    })
    .await?;

    // 6. Deleting the RagIndex deletes its collections (the alias with them).
    indexes.delete("product-docs", &Default::default()).await?;
    wait_for("the RagIndex to be gone", WAIT * 2, || async {
        let gone = indexes.get_opt("product-docs").await?.is_none();
        Ok((gone.then_some(()), "still there".into()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log_text()))?;
    assert_eq!(
        store.collections(&format!("{ALIAS}-")).await?,
        Vec::<String>::new()
    );
    assert_eq!(store.alias_target(ALIAS).await?, None);
    operator.stop().await?;
    drop(node);
    drop(server);
    Ok(())
}
