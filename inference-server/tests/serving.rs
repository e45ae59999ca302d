//! The inference server in process, on 127.0.0.1, with models the trainer library exports:
//! OIP v2 over REST and gRPC for several models and versions, request validation, dynamic
//! batching, metrics (including the model card's feature buckets), feedback and graceful
//! shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failed setup step fails the test

use std::sync::Arc;
use std::time::Duration;

use leitwerk_crds::card::metric;
use leitwerk_inference_server::grpc::pb;
use leitwerk_inference_server::model::Card;
use leitwerk_inference_server::{Batching, Model, Server};
use ort::environment::Environment;
use serde_json::{Value, json};

mod common;
use common::{Running, environment, expected, model_bytes, post};

fn card() -> Card {
    serde_json::from_value(json!({
        "reference": [
            {"name": "visits", "edges": [2.0, 5.0]},
            {"name": "plan", "kind": "Categorical", "categories": ["basic", "pro", "<unknown>"]}
        ],
        "threshold": 0.5
    }))
    .unwrap()
}

async fn start(env: &Environment, batching: Option<Batching>) -> Running {
    start_with(env, batching, None).await
}

async fn start_with(
    env: &Environment,
    batching: Option<Batching>,
    feedback_token: Option<&str>,
) -> Running {
    let (a, _, _) = model_bytes(1.0);
    let (b, _, _) = model_bytes(-1.0);
    let models = vec![
        Model::new(env, "leads", "v2", &a, Some(card())).unwrap(),
        Model::new(env, "leads", "v1", &b, None).unwrap(),
        Model::new(env, "churn", "v7", &b, None).unwrap(),
    ];
    let server = Server::new(models, batching, 1000);
    if let Some(token) = feedback_token {
        let _ = server.feedback_token.set(token.to_string());
    }
    common::serve_in_process(server).await
}

/// One gRPC input tensor.
fn grpc_tensor(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: pb::InferTensorContents,
) -> pb::model_infer_request::InferInputTensor {
    pb::model_infer_request::InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents: Some(contents),
    }
}

fn request(visits: &[f64], plans: &[&str]) -> Value {
    json!({"id": "r1", "inputs": [
        {"name": "visits", "datatype": "FP32", "shape": [visits.len(), 1], "data": visits},
        {"name": "plan", "datatype": "BYTES", "shape": [plans.len()], "data": plans}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_serve_several_models_and_versions_with_the_trainers_scores() {
    let env = environment();
    let s = start(&env, None).await;
    let base = format!("http://{}", s.http);
    let (_, enc, weights) = model_bytes(1.0);
    let visits = [0.0, 3.0, 9.0];
    let plans = ["basic", "pro", "enterprise"];
    let want = expected(&enc, &weights, &visits, &plans);

    let (status, body) = post(
        &format!("{base}/v2/models/leads/infer"),
        &request(&visits, &plans),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["model_version"].as_str(), body["id"].as_str()),
        (Some("v2"), Some("r1")),
        "the first version is the default"
    );
    let got: Vec<f64> = body["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    assert_eq!(body["outputs"][0]["shape"], json!([3, 1]));
    assert_eq!(
        body["parameters"]["prediction_ids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let (_, v1) = post(
        &format!("{base}/v2/models/leads/versions/v1/infer"),
        &request(&visits, &plans),
    )
    .await;
    let v1_scores: Vec<f64> = v1["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        v1_scores[2] < got[2],
        "v1 has the opposite weight: {v1_scores:?} vs {got:?}"
    );

    let meta: Value = reqwest::get(format!("{base}/v2/models/leads"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["versions"], json!(["v2", "v1"]));
    assert_eq!(
        meta["inputs"],
        json!([{"name": "visits", "datatype": "FP32", "shape": [-1, 1]}, {"name": "plan", "datatype": "BYTES", "shape": [-1, 1]}])
    );
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/churn/ready",
        "/v2/models/leads/versions/v1/ready",
    ] {
        assert_eq!(
            reqwest::get(format!("{base}{path}"))
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        reqwest::get(format!("{base}/v2/models/nope/ready"))
            .await
            .unwrap()
            .status(),
        404
    );

    // gRPC: the same scores, typed contents.
    let mut client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
        format!("http://{}", s.grpc),
    )
    .await
    .unwrap();
    let tensor =
        |name: &str, datatype: &str, contents| grpc_tensor(name, datatype, vec![3, 1], contents);
    let req = pb::ModelInferRequest {
        model_name: "leads".into(),
        model_version: "v2".into(),
        id: "g1".into(),
        inputs: vec![
            tensor(
                "visits",
                "FP64",
                pb::InferTensorContents {
                    fp64_contents: visits.to_vec(),
                    ..Default::default()
                },
            ),
            tensor(
                "plan",
                "BYTES",
                pb::InferTensorContents {
                    bytes_contents: plans.iter().map(|p| p.as_bytes().to_vec()).collect(),
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let reply = client.model_infer(req.clone()).await.unwrap().into_inner();
    assert_eq!(reply.id, "g1");
    let grpc_scores = &reply.outputs[0].contents.as_ref().unwrap().fp32_contents;
    for (g, w) in grpc_scores.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-5);
    }
    let mut bad = req.clone();
    bad.inputs[0].datatype = "BYTES".into();
    let err = client.model_infer(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("visits"), "{}", err.message());
    let mut missing = req.clone();
    missing.model_name = "nope".into();
    assert_eq!(
        client.model_infer(missing).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let meta = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "churn".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, vec!["v7"]);
    assert!(
        client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    let _ = s.stop.unwrap().send(());
    s.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_the_reason_and_the_server_keeps_serving() {
    let env = environment();
    let s = start(&env, None).await;
    let url = format!("http://{}/v2/models/leads/infer", s.http);
    let cases = [
        (
            json!({"inputs": [{"name": "visits", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
            "missing input(s): plan",
        ),
        (
            json!({"inputs": [{"name": "visits", "datatype": "FP32", "shape": [2], "data": [1.0]}, {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]}]}),
            "has shape [2] but 1 values",
        ),
        (
            json!({"inputs": [{"name": "visits", "datatype": "BYTES", "shape": [1], "data": ["x"]}, {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]}]}),
            "the model expects FP32",
        ),
        (
            json!({"inputs": [{"name": "visits", "datatype": "FP32", "shape": [1], "data": [1.0]}, {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]}, {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}),
            "unknown input \"x\"",
        ),
        (
            json!({"inputs": [{"name": "visits", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}, {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]}]}),
            "expected [N] or [N, 1]",
        ),
        (
            json!({"inputs": [{"name": "visits", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}, {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]}]}),
            "has 1 rows but others have 2",
        ),
        (json!({"nonsense": true}), "not an OIP v2 inference request"),
    ];
    for (body, reason) in cases {
        let (status, reply) = post(&url, &body).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert!(
            reply["error"].as_str().unwrap_or_default().contains(reason),
            "{reason}: {reply}"
        );
    }
    let (status, _) = post(&url, &request(&[1.0], &["pro"])).await;
    assert_eq!(status, 200, "still serving");
    let metrics = reqwest::get(format!("http://{}/metrics", s.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"leitwerk_inference_errors_total{model="leads",version="",code="invalid_argument"} 6"#
        ),
        "six well-formed but invalid requests (the unparseable body never reaches a model): {metrics}"
    );
    let _ = s.stop.unwrap().send(());
    s.done.await.unwrap().unwrap();
}

/// The server's own limits: each refusal names the limit (413 for a body over
/// `MAX_BODY_BYTES` on every route, 400 for a string over `MAX_STRING_BYTES`, too many rows, or
/// a number FP32 cannot hold); NaN is a missing value and is scored; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_and_named_and_nan_is_a_missing_value() {
    use leitwerk_inference_server::model::{MAX_BODY_BYTES, MAX_ROWS, MAX_STRING_BYTES};
    let env = environment();
    let s = start(&env, None).await;
    let base = format!("http://{}", s.http);
    let url = format!("{base}/v2/models/leads/infer");
    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    for path in [
        "/v2/models/leads/infer",
        "/v2/feedback",
        "/v1/chat/completions",
    ] {
        let r = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 413, "{path}");
        let reply: Value = r.json().await.unwrap();
        assert!(
            reply["error"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("limit of {MAX_BODY_BYTES} bytes")),
            "{path}: {reply}"
        );
    }
    let long = "p".repeat(MAX_STRING_BYTES + 1);
    let many: Vec<f64> = vec![1.0; MAX_ROWS + 1];
    let plans: Vec<&str> = vec!["pro"; MAX_ROWS + 1];
    let cases = [
        (
            request(&[1.0, 2.0], &["pro", &long]),
            format!("input \"plan\" row 1 is {} bytes long; the server's limit is {MAX_STRING_BYTES}", long.len()),
        ),
        // Found by the fuzzer (benches/benches/fuzz.rs): a NUL in a string was a 500.
        (
            request(&[1.0], &["pr\u{0}o"]),
            "input \"plan\" row 0 contains a NUL character".to_string(),
        ),
        (
            request(&many, &plans),
            format!("a request carries 1 to {MAX_ROWS} rows, not {}", MAX_ROWS + 1),
        ),
        (
            json!({"inputs": [
                {"name": "visits", "datatype": "FP64", "shape": [2], "data": [1.0, 1e39]},
                {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["pro", "pro"]}
            ]}),
            "input \"visits\" row 1 is 1000000000000000000000000000000000000000, which is infinite or beyond FP32's range".to_string(),
        ),
    ];
    for (body, reason) in cases {
        let (status, reply) = post(&url, &body).await;
        assert_eq!(status, 400, "{reason} → {reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap_or_default()
                .contains(&reason),
            "{reason}: {reply}"
        );
    }
    // NaN (which JSON cannot carry, gRPC can) scores as a missing value.
    let mut client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
        format!("http://{}", s.grpc),
    )
    .await
    .unwrap();
    let tensor =
        |name: &str, datatype: &str, contents| grpc_tensor(name, datatype, vec![1], contents);
    let req = pb::ModelInferRequest {
        model_name: "leads".into(),
        inputs: vec![
            tensor(
                "visits",
                "FP32",
                pb::InferTensorContents {
                    fp32_contents: vec![f32::NAN],
                    ..Default::default()
                },
            ),
            tensor(
                "plan",
                "BYTES",
                pb::InferTensorContents {
                    bytes_contents: vec![b"pro".to_vec()],
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let reply = client.model_infer(req.clone()).await.unwrap().into_inner();
    let score = reply.outputs[0].contents.as_ref().unwrap().fp32_contents[0];
    // Found by the fuzzer: a NUL in a BYTES element was INTERNAL; it is INVALID_ARGUMENT.
    let mut nul = req;
    nul.inputs[1].contents.as_mut().unwrap().bytes_contents = vec![b"p\0ro".to_vec()];
    let refused = client.model_infer(nul).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("NUL character"), "{refused:?}");
    assert!(
        score.is_finite(),
        "a NaN input is imputed, not propagated: {score}"
    );
    let (status, _) = post(&url, &request(&[1.0], &["pro"])).await;
    assert_eq!(status, 200, "still serving");
    let _ = s.stop.unwrap().send(());
    s.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_merges_concurrent_requests_and_metrics_and_feedback_are_per_version() {
    let env = environment();
    let s = start(
        &env,
        Some(Batching {
            max_batch_size: 8,
            max_delay: Duration::from_millis(50),
        }),
    )
    .await;
    let base = Arc::new(format!("http://{}", s.http));
    let (_, enc, weights) = model_bytes(1.0);
    let requests = (0..8).map(|i| {
        let base = base.clone();
        async move {
            let v = [f64::from(i)];
            let (status, body) = post(
                &format!("{base}/v2/models/leads/infer"),
                &request(&v, &["pro"]),
            )
            .await;
            (i, status, body)
        }
    });
    let replies = futures::future::join_all(requests).await;
    for (i, status, body) in &replies {
        assert_eq!(*status, 200, "{body}");
        let want = expected(&enc, &weights, &[f64::from(*i)], &["pro"])[0];
        let got = body["outputs"][0]["data"][0].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-5,
            "request {i} got the score of its own row"
        );
    }
    let metrics = scrape(&base).await;
    let value = |prefix: &str| metric(&metrics, prefix);
    let (rows, runs) = (
        value("leitwerk_inference_batch_rows_sum"),
        value("leitwerk_inference_batch_rows_count"),
    );
    assert_eq!(rows, 8.0);
    assert!(
        runs < 8.0,
        "8 concurrent single-row requests ran as {runs} model runs"
    );
    assert_eq!(
        value(r#"leitwerk_inference_requests_total{model="leads",version="v2",protocol="rest"}"#),
        8.0
    );
    assert_eq!(
        value(r#"leitwerk_inference_score_count{model="leads",version="v2"}"#),
        8.0
    );
    // The names the operator queries (crds' `card::metric`) are the ones exposed.
    assert_eq!(
        value(&format!(
            r#"{}{{model="leads",version="v2"}}"#,
            metric::PREDICTIONS
        )),
        8.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"{}{{model="leads",version="v2",feature="visits",kind="numeric",bucket="missing"}}"#,
            metric::FEATURE_REFERENCE
        )),
        "{metrics}"
    );
    // visits 0..7 against edges [2, 5]: buckets 0 (0,1,2), 1 (3,4,5), 2 (6,7).
    for (bucket, n) in [("0", 3.0), ("1", 3.0), ("2", 2.0)] {
        assert_eq!(
            value(&format!(
                r#"{}{{model="leads",version="v2",feature="visits",bucket="{bucket}"}}"#,
                metric::FEATURE_BUCKET
            )),
            n,
            "{metrics}"
        );
    }
    assert_eq!(
        value(&format!(
            r#"{}{{model="leads",version="v2",feature="plan",bucket="1"}}"#,
            metric::FEATURE_BUCKET
        )),
        8.0
    );

    let id = replies[0].2["parameters"]["prediction_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = post(
        &format!("{base}/v2/feedback"),
        &json!({"prediction_id": id, "converted": true, "value": 120.5}),
    )
    .await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("v2")));
    let (status, body) = post(
        &format!("{base}/v2/feedback"),
        &json!({"prediction_id": id, "converted": true}),
    )
    .await;
    assert_eq!(status, 409, "an outcome counts once: {body}");
    // Ids are unguessable: the next counter value with the same suffix names no prediction.
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert_eq!(parts[2].len(), 32, "a 128-bit random suffix: {id}");
    let next: u64 = parts[1].parse().unwrap();
    let guessed = format!("{}-{}-{}", parts[0], next + 1, parts[2]);
    let (status, _) = post(
        &format!("{base}/v2/feedback"),
        &json!({"prediction_id": guessed, "converted": true}),
    )
    .await;
    assert_eq!(status, 404, "a guessed id is refused");
    let (status, _) = post(&format!("{base}/v2/feedback"), &json!({"prediction_id": 3})).await;
    assert_eq!(status, 400);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            r#"{}{{model="leads",version="v2",outcome="converted"}} 1"#,
            metric::OUTCOMES
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"leitwerk_inference_outcome_value_total{model="leads",version="v2"} 120.5"#
        ),
        "{metrics}"
    );
    // The replay and the guess were refused and counted, each by its reason.
    for reason in ["replayed", "unknown"] {
        assert!(
            metrics.contains(&format!(
                r#"leitwerk_inference_feedback_refused_total{{reason="{reason}"}} 1"#
            )),
            "{metrics}"
        );
    }
    let _ = s.stop.unwrap().send(());
    s.done.await.unwrap().unwrap();
}

/// With a feedback token (the operator sets one from the Model's feedback Secret), an outcome
/// without it or with a wrong one is refused with 401 and counted, and takes nothing from the
/// caller who holds the token: the prediction can still be reported once.
/// The drift input: each served row counts once in its bucket of the model card's reference
/// distribution (numeric edges, kept categories, the unknown bucket, missing values), and every
/// bucket's series exists from the start, at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_row_counts_in_its_reference_bucket_and_every_bucket_starts_at_zero() {
    let env = environment();
    let s = start(&env, None).await;
    let base = format!("http://{}", s.http);
    let before = scrape(&base).await;
    let series = |feature: &str, bucket: &str| {
        format!(
            r#"{}{{model="leads",version="v2",feature="{feature}",bucket="{bucket}"}} "#,
            metric::FEATURE_BUCKET
        )
    };
    for (feature, bucket) in [("visits", "0"), ("visits", "missing"), ("plan", "2")] {
        assert_eq!(
            metric(&before, &series(feature, bucket)),
            0.0,
            "{feature}/{bucket}"
        );
    }
    let (status, body) = post(
        &format!("{base}/v2/models/leads/infer"),
        &request(&[1.0, 3.0, 9.0, 4.0], &["pro", "enterprise", "", "pro"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after = scrape(&base).await;
    // visits: edges [2, 5] → (-inf, 2], (2, 5], (5, inf); plan: basic, pro, unknown.
    for (feature, bucket, count) in [
        ("visits", "0", 1.0),
        ("visits", "1", 2.0),
        ("visits", "2", 1.0),
        ("visits", "missing", 0.0),
        ("plan", "0", 0.0),
        ("plan", "1", 2.0),
        ("plan", "2", 1.0),
        ("plan", "missing", 1.0),
    ] {
        assert_eq!(
            metric(&after, &series(feature, bucket)),
            count,
            "{feature}/{bucket}"
        );
    }
}

/// The server's Prometheus exposition.
async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first exposition line starting with `prefix`; -1 when there is none.
fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// Adaptive batching (no window): a batch is what queued while the runners were busy. Under
/// a burst, requests share model runs, and each still gets the score of its own row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_batching_merges_what_queued_and_answers_each_request_with_its_own_row() {
    let env = environment();
    let s = start(
        &env,
        Some(Batching {
            max_batch_size: 32,
            max_delay: Duration::ZERO,
        }),
    )
    .await;
    let base = Arc::new(format!("http://{}", s.http));
    let (_, enc, weights) = model_bytes(1.0);
    const BURST: usize = 256;
    let requests = (0..BURST).map(|i| {
        let base = base.clone();
        async move {
            let v = [i as f64 / 8.0];
            let (status, body) = post(
                &format!("{base}/v2/models/leads/infer"),
                &request(&v, &["pro"]),
            )
            .await;
            (v, status, body)
        }
    });
    for (v, status, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
        let want = expected(&enc, &weights, &v, &["pro"])[0];
        let got = body["outputs"][0]["data"][0].as_f64().unwrap();
        assert!((got - want).abs() < 1e-5, "{v:?}: {got} vs {want}");
    }
    let metrics = scrape(&base).await;
    let value = |prefix: &str| metric(&metrics, prefix);
    let (rows, runs) = (
        value("leitwerk_inference_batch_rows_sum"),
        value("leitwerk_inference_batch_rows_count"),
    );
    assert_eq!(rows, BURST as f64);
    assert!(
        runs < BURST as f64,
        "{BURST} concurrent requests ran as {runs} model runs: nothing was merged"
    );
    eprintln!("adaptive batching: {BURST} requests in {runs} model runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_taken_only_from_callers_with_the_token() {
    let env = environment();
    let mut s = start_with(&env, None, Some("6f1c0d2e")).await;
    let base = format!("http://{}", s.http);
    let (status, reply) = post(
        &format!("{base}/v2/models/leads/infer"),
        &request(&[3.0], &["pro"]),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["parameters"]["prediction_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let send = |token: Option<&'static str>, id: String| {
        let url = format!("{base}/v2/feedback");
        async move {
            let mut r = reqwest::Client::new()
                .post(url)
                .json(&json!({"prediction_id": id, "converted": true}));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            (
                r.status().as_u16(),
                challenge,
                r.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, challenge, body) = send(None, id.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.unwrap_or_default().starts_with("Bearer"));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (status, _, body) = send(Some("6f1c0d2f"), id.clone()).await;
    assert_eq!(status, 401, "a wrong token: {body}");
    let (status, _, body) = send(Some("6f1c0d2e"), id.clone()).await;
    assert_eq!(status, 200, "the token holder reports it: {body}");
    let (status, _, body) = send(Some("6f1c0d2e"), id.clone()).await;
    assert_eq!(status, 409, "a replay: {body}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in [("unauthenticated", 2), ("replayed", 1)] {
        assert!(
            metrics.contains(&format!(
                r#"leitwerk_inference_feedback_refused_total{{reason="{reason}"}} {n}"#
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!(
            r#"{}{{model="leads",version="v2",outcome="converted"}} 1"#,
            metric::OUTCOMES
        )),
        "only the authenticated outcome counts: {metrics}"
    );
    let _ = s.stop.take().unwrap().send(());
    s.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_then_stops() {
    let env = environment();
    let mut s = start(
        &env,
        Some(Batching {
            max_batch_size: 64,
            max_delay: Duration::from_millis(400),
        }),
    )
    .await;
    let url = format!("http://{}/v2/models/leads/infer", s.http);
    let in_flight = tokio::spawn(async move { post(&url, &request(&[1.0], &["pro"])).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.stop.take().unwrap().send(());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        status, 200,
        "the request waiting in the batch window was answered: {body}"
    );
    tokio::time::timeout(Duration::from_secs(5), s.done)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("http://{}/v2/health/live", s.http))
            .await
            .is_err(),
        "no longer listening"
    );
}

/// ghz, the Go gRPC load tester, built by `tests/ghz.sh` (cached).
fn ghz() -> std::path::PathBuf {
    common::provided("ghz.sh")
}

/// Regression test for Nagle's algorithm on the server's sockets: against a server whose
/// accepted sockets lack TCP_NODELAY, a real gRPC client (ghz, where the defect was found)
/// waits out a delayed ACK on every request, about 31–44 ms, so 100 sequential requests on
/// one connection take 3–4 s; the fixed server needs about 2 ms a request here. The check
/// counts requests instead of timing the run: with the defect nearly every request waits a
/// delayed ACK, so it asks that at most a quarter of them took 30 ms or more, which a loaded
/// machine's occasional slow request cannot reach. REST is checked the same way with a client
/// that leaves Nagle on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_are_not_slowed_by_delayed_acks() {
    const REQUESTS: u32 = 100;
    const DELAYED_ACK: Duration = Duration::from_millis(30);
    let ghz = ghz();
    let env = environment();
    let s = start(&env, None).await;
    let request = r#"{"model_name":"leads","inputs":[{"name":"visits","datatype":"FP32","shape":[1,1],"contents":{"fp32_contents":[3]}},{"name":"plan","datatype":"BYTES","shape":[1,1],"contents":{"bytes_contents":["cHJv"]}}]}"#;
    let target = s.grpc.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(ghz)
            .args(["--insecure", "--proto"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/proto/inference.proto"
            ))
            .args(["--call", "inference.GRPCInferenceService/ModelInfer"])
            .args(["-n", &REQUESTS.to_string(), "-c", "1", "--connections", "1"])
            .args(["-d", request, "--format", "json"])
            .arg(target)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ghz: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["statusCodeDistribution"]["OK"], REQUESTS, "{report}");
    // ghz's per-request latencies: the 75th percentile.
    let p75 = report["latencyDistribution"]
        .as_array()
        .and_then(|d| d.iter().find(|p| p["percentage"] == 75))
        .and_then(|p| p["latency"].as_u64())
        .unwrap_or_else(|| panic!("no 75th percentile in {report}"));
    // A 75th percentile at a delayed ACK or above: more than a quarter of them waited one.
    let grpc_slow = if Duration::from_nanos(p75) >= DELAYED_ACK {
        REQUESTS / 4 + 1
    } else {
        0
    };

    let rest = reqwest::Client::builder()
        .tcp_nodelay(false)
        .build()
        .unwrap();
    let url = format!("http://{}/v2/models/leads/infer", s.http);
    let body = request_body();
    rest.post(&url).json(&body).send().await.unwrap();
    let mut rest_slow = 0;
    for _ in 0..REQUESTS {
        let started = std::time::Instant::now();
        let r = rest.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        rest_slow += u32::from(started.elapsed() >= DELAYED_ACK);
    }
    eprintln!(
        "{REQUESTS} sequential requests: gRPC p75 {:?}, REST {rest_slow} of them ≥ {DELAYED_ACK:?}",
        Duration::from_nanos(p75)
    );
    for (protocol, slow) in [("gRPC", grpc_slow), ("REST", rest_slow)] {
        assert!(
            slow <= REQUESTS / 4,
            "{slow} of {REQUESTS} sequential {protocol} requests waited {DELAYED_ACK:?} or more: delayed ACKs are back (TCP_NODELAY)"
        );
    }
}

fn request_body() -> Value {
    request(&[3.0], &["pro"])
}

/// A model whose runs are measured short runs on the thread that took the request (no hop to a
/// blocking thread and back); a request whose rows would take longer does not.
#[test]
fn a_cheap_model_runs_inline_once_its_runs_are_measured() {
    use leitwerk_inference_server::model::{Column, INLINE_RUN, InputKind, Rows};
    let env = environment();
    let (a, _, _) = model_bytes(1.0);
    let model = Model::new(&env, "leads", "v1", &a, None).unwrap();
    assert!(!model.runs_inline(1), "unknown before the first run");
    let rows = |n: usize| Rows {
        n,
        columns: model
            .inputs
            .iter()
            .map(|(_, kind)| match kind {
                InputKind::Number => Column::Number(vec![3.0; n]),
                InputKind::Text => Column::Text(vec!["pro".into(); n]),
            })
            .collect(),
    };
    // Bounded: a busy machine may make some runs slow; the average follows the rest (2,000
    // runs of a few µs each are a few ms).
    for _ in 0..2_000 {
        model.run(&rows(1)).unwrap();
        if model.runs_inline(1) {
            break;
        }
    }
    assert!(model.runs_inline(1), "one row of a logistic regression");
    // A million rows at the measured rate (at least 1 ns a row) is far past the limit.
    assert!(INLINE_RUN.as_nanos() < 1_000_000);
    assert!(!model.runs_inline(1_000_000));
}
