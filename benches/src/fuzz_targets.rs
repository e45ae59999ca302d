//! The fuzz targets: everything that reads hostile input, each a function of bytes that may
//! answer anything but a panic, an internal error or a hang. Shared by the mutation runner
//! (`benches/benches/fuzz.rs`) and the coverage-guided libFuzzer runner (`benches/fuzz/`, which
//! includes this file by path, so it uses nothing else of this crate).

use std::path::{Path, PathBuf};

use leitwerk_crds::filter::Filter;
use leitwerk_crds::policy::LeitwerkPolicySpec;
use leitwerk_crds::{ContentPipelineSpec, ExperimentSpec, FeatureSetSpec, ModelSpec, RagIndexSpec};
use leitwerk_inference_server::grpc::{Service as GrpcService, pb};
use leitwerk_inference_server::{Model, Server, load_onnxruntime, rest};
use leitwerk_operator::admission::{defaults, rules};
use leitwerk_operator::controllers::{content_pipeline, experiment, feature_set, model, rag_index};
use leitwerk_operator::validation::{check_cron, check_template, render_template};
use prost::Message as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// One execution of a target: `Err` is a finding (an answer no input may get).
pub type Target = Box<dyn FnMut(&[u8]) -> Result<(), String>>;

/// A target's name, its seeds and its run.
pub type Named = (&'static str, Vec<Value>, Target);

/// The repository's root: the first directory above the crate that builds this file (the
/// benchmarks or the libFuzzer runner) that holds `examples/`.
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("examples").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

/// The input as text: a JSON string's value, else the bytes read lossily.
pub fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    serde_json::from_str::<String>(&s).unwrap_or_else(|_| s.into_owned())
}

/// Validation through serde (as the API server's decoded object would arrive) then the check.
fn spec_target<T: serde::de::DeserializeOwned + 'static>(
    check: fn(&T) -> Result<(), Vec<leitwerk_operator::validation::FieldError>>,
) -> Target {
    Box::new(move |bytes| {
        if let Ok(spec) = serde_json::from_slice::<T>(bytes) {
            let _ = check(&spec);
        }
        Ok(())
    })
}

fn example_spec(file: &str, kind: &str) -> Value {
    let text = std::fs::read_to_string(root().join("examples").join(file)).unwrap_or_default();
    text.split("\n---")
        .filter_map(|d| yaml_serde::from_str::<Value>(d).ok())
        .find(|d| d["kind"] == kind)
        .map(|d| d["spec"].clone())
        .unwrap_or(Value::Null)
}

/// Every target with its seeds (each seed's bytes are its JSON), serving `model` (an ONNX
/// lead-scoring graph with inputs `visits` and `plan`) on ONNX Runtime from `ort`.
pub fn targets(model: &[u8], ort: &Path) -> Result<Vec<Named>, String> {
    // Kept for the process's life: the targets borrow nothing.
    let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
    ));
    let _entered = runtime.enter();
    let env = load_onnxruntime(Some(ort)).map_err(|e| e.to_string())?;
    let model = Model::new(&env, "leads", "v1", model, None).map_err(|e| e.to_string())?;
    let server = Server::new(vec![model], None, 10_000);
    let router = rest::limits(rest::router(server.clone()));
    let grpc = GrpcService(server);

    let infer_seeds = vec![
        json!({"id": "r1", "inputs": [
            {"name": "visits", "datatype": "FP32", "shape": [2, 1], "data": [3.0, 1.0]},
            {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["pro", "basic"]}]}),
        json!({"inputs": [
            {"name": "visits", "datatype": "INT64", "shape": [1], "data": [7]},
            {"name": "plan", "datatype": "BYTES", "shape": [1, 1], "data": ["pro"]}],
            "parameters": {"x": 1}}),
    ];
    let grpc_seed = pb::ModelInferRequest {
        model_name: "leads".into(),
        inputs: vec![
            pb::model_infer_request::InferInputTensor {
                name: "visits".into(),
                datatype: "FP32".into(),
                shape: vec![1],
                contents: Some(pb::InferTensorContents {
                    fp32_contents: vec![3.0],
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::model_infer_request::InferInputTensor {
                name: "plan".into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                contents: Some(pb::InferTensorContents {
                    bytes_contents: vec![b"pro".to_vec()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
    .encode_to_vec();
    let mut out: Vec<Named> = vec![
        (
            "oip-json-infer",
            infer_seeds,
            Box::new(move |body: &[u8]| {
                let request = axum::http::Request::post("/v2/models/leads/infer")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_vec()))
                    .map_err(|e| e.to_string())?;
                let status = runtime
                    .block_on(router.clone().oneshot(request))
                    .map_err(|e| e.to_string())?
                    .status()
                    .as_u16();
                match status {
                    200 | 400 | 404 | 413 | 415 | 422 => Ok(()),
                    other => Err(format!("answered {other}")),
                }
            }),
        ),
        (
            "grpc-infer",
            vec![json!(grpc_seed)],
            Box::new(move |bytes: &[u8]| {
                // The seed is the encoded message as a JSON array of bytes; mutated, it may be
                // anything, and the raw bytes are decoded as the wire would deliver them.
                let wire: Vec<u8> =
                    serde_json::from_slice::<Vec<u8>>(bytes).unwrap_or_else(|_| bytes.to_vec());
                let Ok(message) = pb::ModelInferRequest::decode(wire.as_slice()) else {
                    return Ok(());
                };
                use pb::grpc_inference_service_server::GrpcInferenceService as _;
                match runtime.block_on(grpc.model_infer(tonic::Request::new(message))) {
                    Err(s) if matches!(s.code(), tonic::Code::Internal | tonic::Code::Unknown) => {
                        Err(format!("gRPC {:?}: {}", s.code(), s.message()))
                    }
                    _ => Ok(()),
                }
            }),
        ),
        (
            "retrieval-query",
            vec![json!({"query": "how do refunds work", "topK": 3,
            "filter": {"section": "billing"}, "mode": "Hybrid"})],
            Box::new(|bytes: &[u8]| {
                let _ = leitwerk_inference_server::retrieval::parse_query(
                    bytes,
                    leitwerk_crds::rag_index::SearchMode::Dense,
                );
                Ok(())
            }),
        ),
        (
            "chat-completion",
            vec![
                json!({"messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"}], "max_tokens": 16, "temperature": 0.5, "top_p": 0.9,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object",
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"},
            "l": {"type": "array", "items": {"enum": ["x", "y"]}}}, "required": ["a"]}}}}),
            ],
            Box::new(|bytes: &[u8]| {
                let _ = leitwerk_inference_server::generator::http::parse_chat(bytes);
                Ok(())
            }),
        ),
        (
            "featureset-filter",
            vec![
                json!("event_type == 'page_view' && path == '/pricing'"),
                json!("duration_min > 2 || !(country != 'DE')"),
            ],
            Box::new(|bytes: &[u8]| {
                let _ = Filter::parse(&text(bytes));
                Ok(())
            }),
        ),
        (
            "promql-template",
            vec![json!(
                "sum(rate(leitwerk_inference_outcomes_total{namespace=\"{{namespace}}\",experiment=\"{{experiment}}\",variant=\"{{variant}}\",outcome=\"converted\"}[{{interval}}]))"
            )],
            Box::new(|bytes: &[u8]| {
                let t = text(bytes);
                if check_template(&t).is_ok() {
                    let _ = render_template(
                        &t,
                        &[
                            ("namespace", "a"),
                            ("experiment", "e"),
                            ("model", "m"),
                            ("variant", "canary"),
                            ("interval", "10m"),
                        ],
                    );
                }
                let _ = check_cron(&t);
                Ok(())
            }),
        ),
        (
            "spec-featureset",
            vec![example_spec("lead-scoring/featureset.yaml", "FeatureSet")],
            spec_target::<FeatureSetSpec>(feature_set::validate),
        ),
        (
            "spec-model",
            vec![
                example_spec("lead-scoring/model.yaml", "Model"),
                example_spec("churn/model.yaml", "Model"),
            ],
            spec_target::<ModelSpec>(model::validate),
        ),
        (
            "spec-experiment",
            vec![
                example_spec("canary-rollout/experiment.yaml", "Experiment"),
                example_spec("creative-bandit/experiment.yaml", "Experiment"),
            ],
            spec_target::<ExperimentSpec>(experiment::validate),
        ),
        (
            "spec-ragindex",
            vec![example_spec("product-docs-rag/ragindex.yaml", "RagIndex")],
            spec_target::<RagIndexSpec>(rag_index::validate),
        ),
        (
            "spec-contentpipeline",
            vec![example_spec(
                "seo-article/contentpipeline.yaml",
                "ContentPipeline",
            )],
            spec_target::<ContentPipelineSpec>(content_pipeline::validate),
        ),
        (
            "policy-rules",
            vec![
                json!({"kind": "ContentPipeline", "policy": {"secretNames": ["k"],
            "imagePrefixes": ["r/"], "prometheusUrls": ["http://p"], "endpointHosts": ["h", "q:1"],
            "gpuQuota": 2, "maxRunCost": 5.0, "requireRedaction": true},
            "object": {"spec": example_spec("seo-article/contentpipeline.yaml", "ContentPipeline")}}),
            ],
            Box::new(|bytes: &[u8]| {
                let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                let policy: LeitwerkPolicySpec =
                    serde_json::from_value(v["policy"].clone()).unwrap_or_default();
                for kind in ["ContentPipeline", "Model", "Experiment", "RagIndex"] {
                    let _ = rules::check(&policy, kind, &v["object"], &rules::Known::default());
                }
                Ok(())
            }),
        ),
    ];
    out.push(defaults_target());
    Ok(out)
}

/// What a policy fills in: never a panic, and the patch applies to the object it came from.
fn defaults_target() -> Named {
    (
        "policy-defaults",
        vec![json!({"kind": "ContentPipeline",
            "policies": [{"maxRunCost": 5.0, "defaults": {"maxRunCost": 2.0}},
                         {"maxRunCost": 1.5, "defaults": {"prometheusUrl": "http://p:9090/"}}],
            "object": {"metadata": {"annotations": {"a": "b"}},
                       "spec": example_spec("seo-article/contentpipeline.yaml", "ContentPipeline")}})],
        Box::new(|bytes: &[u8]| {
            let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            let specs: Vec<LeitwerkPolicySpec> = v["policies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| serde_json::from_value(p.clone()).unwrap_or_default())
                .collect();
            let named: Vec<(String, &LeitwerkPolicySpec)> = specs
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), p))
                .collect();
            for kind in ["ContentPipeline", "Experiment"] {
                let filled = defaults::fill(&named, kind, &v["object"]);
                let out = defaults::apply(&v["object"], &filled);
                let mut patched = v["object"].clone();
                json_patch::patch(&mut patched, &json_patch::diff(&v["object"], &out))
                    .map_err(|e| format!("the defaults patch does not apply: {e}"))?;
                if patched != out {
                    return Err("the defaults patch gives another object".into());
                }
            }
            Ok(())
        }),
    )
}
