//! Where a RagIndex's vectors and embeddings live: a Qdrant server (collections written by
//! the Job, the alias read by the retrieval pods, the key from its Secret) and the GPU a spec
//! asks for (where each build embedded, and why on the CPU).

use super::*;
use crate::config::OperatorConfig;
use leitwerk_crds::rag_index::{BuildState, IndexBuild, IndexVersion};

#[test]
fn a_gpu_spec_says_where_each_build_embedded_and_why_on_the_cpu() {
    let mut index = example();
    let accelerated = |index: &RagIndex, observed: &Observed| {
        decide(index, observed)
            .conditions
            .into_iter()
            .find(|c| c.type_ == ACCELERATED)
    };
    let mut observed = Observed::default();
    let mut finished = |on_gpu: bool, fallback: Option<&str>| {
        let mut build = IndexBuild {
            number: 1,
            job: "product-docs-index-1".into(),
            ..Default::default()
        };
        let mut s = summary(&"ab".repeat(32), 0.9);
        s.embedded_on_gpu = on_gpu;
        s.gpu_fallback = fallback.map(String::from);
        record_version(&index, &mut observed, &mut build, s, None);
        build.state = BuildState::Succeeded;
        observed.last_build = Some(build);
        observed.clone()
    };
    let on_cpu = finished(
        false,
        Some("this ONNX Runtime library has no CUDA execution provider"),
    );
    let on_gpu = finished(true, None);
    // Without a GPU in the spec there is no such condition.
    assert_eq!(accelerated(&index, &on_cpu), None);

    index.spec.resources = Some(leitwerk_crds::common::WorkloadResources {
        cpu: None,
        memory: None,
        gpu: Some(leitwerk_crds::common::GpuResources {
            count: 1,
            resource_name: "nvidia.com/gpu".into(),
        }),
    });
    let c = accelerated(&index, &on_cpu).unwrap();
    assert_eq!((c.status, c.reason.as_str()), (false, "CpuFallback"));
    assert!(
        c.message.contains("no CUDA execution provider"),
        "{}",
        c.message
    );
    let c = accelerated(&index, &on_gpu).unwrap();
    assert_eq!((c.status, c.reason.as_str()), (true, "OnGpu"));
    let c = accelerated(&index, &Observed::default()).unwrap();
    assert_eq!(c.reason, "AwaitingBuild");
}

fn on_qdrant(url: &str) -> RagIndex {
    let mut index = example();
    index.spec.vector_store = Some(leitwerk_crds::rag_index::VectorStore {
        embedded: None,
        qdrant: Some(leitwerk_crds::rag_index::QdrantStore {
            url: url.into(),
            collection: "docs".into(),
            api_key_secret_ref: Some(leitwerk_crds::common::SecretKeyReference {
                name: "qdrant-key".into(),
                key: "api-key".into(),
            }),
        }),
    });
    index
}

#[test]
fn on_qdrant_the_job_writes_collections_the_server_reads_the_alias_and_the_key_comes_from_the_secret()
 {
    let index = on_qdrant("http://qdrant.vectors:6334");
    assert_eq!(validate(&index.spec), Ok(()));
    let config = OperatorConfig::default();
    let key_of = |pod: &k8s_openapi::api::core::v1::PodSpec| {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == leitwerk_crds::contract::QDRANT_API_KEY_ENV)
            .map(|e| {
                assert_eq!(e.value, None, "the key is never a value in the pod spec");
                let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
                (r.name, r.key)
            })
    };
    let from_secret = Some(("qdrant-key".to_string(), "api-key".to_string()));

    let job = build_index_job(&index, &config, &BuildInputs::default());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    assert!(
        args.contains("--qdrant qdrant+http://qdrant.vectors:6334/docs"),
        "{args}"
    );
    assert_eq!(key_of(&pod), from_secret);

    // A version written to Qdrant is read through the alias; one from before the RagIndex
    // named Qdrant is still read from its file.
    let stored = IndexVersion {
        version: "0123456789ab".into(),
        url: "file:///a/0123.lwrag".into(),
        collection: Some("docs-0123456789ab".into()),
        ..Default::default()
    };
    let index_arg = |v: &IndexVersion| {
        let d = build_serving(&index, &config, v).0;
        let pod = d.spec.unwrap().template.spec.unwrap();
        (
            pod.containers[0].args.clone().unwrap().join(" "),
            key_of(&pod),
        )
    };
    let (args, key) = index_arg(&stored);
    assert!(
        args.contains("--index product-docs=qdrant+http://qdrant.vectors:6334/docs"),
        "{args}"
    );
    assert_eq!(key, from_secret);
    let older = IndexVersion {
        collection: None,
        ..stored.clone()
    };
    assert!(
        index_arg(&older)
            .0
            .contains("--index product-docs=file:///a/0123.lwrag"),
        "{:?}",
        index_arg(&older)
    );

    // The deletion Job never gets the key: the operator deletes the collections itself.
    let delete = build_delete_job(&index, &config);
    assert_eq!(key_of(&delete.spec.unwrap().template.spec.unwrap()), None);
}

#[test]
fn a_qdrant_url_that_names_no_server_is_refused_naming_the_field() {
    for url in ["http://", "ftp://qdrant:6334", "http://:6334"] {
        let errors = validate(&on_qdrant(url).spec).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.field == "spec.vectorStore.qdrant.url"
                    && e.message.contains("http://HOST:6334")),
            "{url}: {errors:?}"
        );
    }
}
