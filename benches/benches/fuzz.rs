//! Fuzzing of everything that reads hostile input: the OIP v2 JSON infer body (through the
//! REST router with a real ONNX model), the gRPC infer message (bytes decoded and served), the
//! retrieval query, the chat-completion request, the FeatureSet filter parser, PromQL template
//! checking and rendering, every spec validation function and the LeitwerkPolicy rules.
//!
//! cargo-fuzz needs a nightly toolchain, which is not installed here, so this is structured
//! random fuzzing on stable: each target starts from valid seeds and mutates them (JSON
//! structure: values replaced by other types, extreme numbers, long and odd strings, members
//! dropped or duplicated; bytes: flips, cuts, insertions), plus fully random inputs. A panic
//! is a crash, an execution over one second a hang; both are written to `benches/fuzz-found/`
//! to become regression tests. Run on demand (see `benches/README.md`):
//!
//! ```sh
//! cargo bench --workspace --profile dev --bench fuzz -- 10000000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed setup aborts the run

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leitwerk_benches::mutate::{input, repo_root, text};
use leitwerk_crds::filter::Filter;
use leitwerk_crds::policy::LeitwerkPolicySpec;
use leitwerk_crds::{ContentPipelineSpec, ExperimentSpec, FeatureSetSpec, ModelSpec, RagIndexSpec};
use leitwerk_inference_server::grpc::{Service as GrpcService, pb};
use leitwerk_inference_server::{Model, Server, load_onnxruntime, rest};
use leitwerk_operator::admission::rules;
use leitwerk_operator::controllers::{content_pipeline, experiment, feature_set, model, rag_index};
use leitwerk_operator::validation::{check_cron, check_template, render_template};
use leitwerk_trainer::onnx::{Head, export};
use leitwerk_trainer::preprocess::{Columns, Encoder};
use prost::Message as _;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// What one execution of a target is allowed to answer: anything but a panic or a hang.
type Target<'a> = Box<dyn FnMut(&[u8]) -> Result<(), String> + 'a>;

/// Validation through serde (as the API server's decoded object would arrive) then the check.
fn spec_target<T: serde::de::DeserializeOwned + 'static>(
    check: fn(&T) -> Result<(), Vec<leitwerk_operator::validation::FieldError>>,
) -> Target<'static> {
    Box::new(move |bytes| {
        if let Ok(spec) = serde_json::from_slice::<T>(bytes) {
            let _ = check(&spec);
        }
        Ok(())
    })
}

fn example_spec(file: &str, kind: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap_or_default();
    text.split("\n---")
        .filter_map(|d| yaml_serde::from_str::<Value>(d).ok())
        .find(|d| d["kind"] == kind)
        .map(|d| d["spec"].clone())
        .unwrap_or(Value::Null)
}

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let _entered = runtime.enter();
    let env = load_onnxruntime(Some(&leitwerk_benches::onnxruntime())).unwrap();
    let columns = Columns {
        numeric: vec![(
            "visits".into(),
            (0..40).map(|i| f64::from(i % 10)).collect(),
        )],
        categorical: vec![(
            "plan".into(),
            (0..40)
                .map(|i| ["basic", "pro"][i % 2].to_string())
                .collect(),
        )],
    };
    let encoder = Encoder::fit(&columns);
    let weights = vec![1.0, 0.5, -0.5, 0.0];
    let bytes = export(
        &encoder,
        &Head::Logistic {
            weights: &weights,
            intercept: -0.2,
        },
        &[],
    );
    let model = Model::new(&env, "leads", "v1", &bytes, None).unwrap();
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
    let mut targets: Vec<(&str, Vec<Value>, Target)> = vec![
        (
            "oip-json-infer",
            infer_seeds,
            Box::new(|body: &[u8]| {
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
            Box::new(|bytes: &[u8]| {
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
    // Fixed seed per run given, else the time: each run explores other inputs.
    let seed = std::env::var("LEITWERK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let found_dir = repo_root().join("benches/fuzz-found");
    let last_panic = Arc::new(Mutex::new(String::new()));
    let recorded = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut p) = recorded.lock() {
            *p = info.to_string();
        }
    }));
    // The server target costs about 100 times a parser's run: it gets a smaller share.
    let weights: Vec<u64> = targets
        .iter()
        .map(|(n, _, _)| if n.contains("infer") { 1 } else { 10 })
        .collect();
    let weight_sum: u64 = weights.iter().sum();
    println!(
        "fuzz: seed {seed}, {total} executions over {} targets",
        targets.len()
    );
    println!("| target | executions | exec/s | crashes | hangs (>1 s) | slowest |");
    println!("|---|---|---|---|---|---|");
    let (mut all_execs, mut all_bad) = (0u64, 0u64);
    for ((name, seeds, run), weight) in targets.iter_mut().zip(weights) {
        let execs = total * weight / weight_sum;
        let mut rng = StdRng::seed_from_u64(seed ^ name.bytes().map(u64::from).sum::<u64>());
        let (mut crashes, mut hangs, mut slowest) = (0u64, 0u64, Duration::ZERO);
        let started = Instant::now();
        for i in 0..execs {
            let bytes = if i % 50 == 0 {
                (0..rng.random_range(0..256))
                    .map(|_| rng.random())
                    .collect()
            } else {
                input(&mut rng, seeds)
            };
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&bytes)));
            let took = t.elapsed();
            slowest = slowest.max(took);
            let problem = match outcome {
                Err(_) => Some((
                    "crash",
                    last_panic.lock().map(|p| p.clone()).unwrap_or_default(),
                )),
                Ok(Err(why)) => Some(("crash", why)),
                Ok(Ok(())) if took > Duration::from_secs(1) => Some(("hang", format!("{took:?}"))),
                Ok(Ok(())) => None,
            };
            if let Some((what, why)) = problem {
                if what == "crash" {
                    crashes += 1
                } else {
                    hangs += 1
                }
                let _ = std::fs::create_dir_all(&found_dir);
                let file = found_dir.join(format!("{name}-{what}-{i}.bin"));
                let _ = std::fs::write(&file, &bytes);
                eprintln!("fuzz: {name}: {what} ({why}); input in {}", file.display());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {execs} | {:.0} | {crashes} | {hangs} | {:.1} ms |",
            execs as f64 / secs.max(1e-9),
            slowest.as_secs_f64() * 1e3
        );
        all_execs += execs;
        all_bad += crashes + hangs;
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    println!(
        "fuzz: {all_execs} executions, {all_bad} crashes or hangs, peak memory {}",
        peak.trim_start_matches("VmHWM:").trim()
    );
    if all_bad > 0 {
        std::process::exit(1);
    }
}
