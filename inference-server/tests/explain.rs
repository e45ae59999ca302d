//! Per-prediction explanations, end to end in process: models fitted by the trainer library
//! (logistic regression, a random forest, LightGBM gradient boosting), exported as the trainer
//! exports them (the explainer inside the ONNX file), served on 127.0.0.1 and asked over REST
//! and gRPC with `explain`. Each answer's attributions add up, with the base value, to the
//! score the same answer serves, and equal what the trainer's explainer computes for the same
//! raw rows; a model without an explainer and malformed requests are refused with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failed setup step fails the test

mod common;
use common::post;

use leitwerk_crds::model::Task;
use leitwerk_explain::{Explainer, METADATA_KEY, Raw, Units};
use leitwerk_inference_server::grpc::pb;
use leitwerk_inference_server::{Model, Server};
use leitwerk_trainer::boosting::{self, Objective};
use leitwerk_trainer::onnx::export;
use leitwerk_trainer::pipeline::Fitted;
use leitwerk_trainer::preprocess::{Columns, Encoder};
use leitwerk_trainer::tree::{Forest, ForestParams};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

/// Rows of `spend` (number, some missing), `visits` (number) and `plan` (category); the label
/// depends on all three.
fn data(n: usize, seed: u64) -> (Columns, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut spend, mut visits, mut plan, mut y) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let s: f64 = rng.random_range(0.0..100.0);
        let v = f64::from(rng.random_range(0..12u8));
        let p = ["basic", "pro", "team"][rng.random_range(0..3)];
        let z = 0.04 * s + 0.3 * v + if p == "pro" { 1.0 } else { -0.5 } - 3.0
            + rng.random_range(-1.5..1.5);
        spend.push(if rng.random_range(0.0..1.0) < 0.05 {
            f64::NAN
        } else {
            s
        });
        visits.push(v);
        plan.push(p.to_string());
        y.push(f64::from(u8::from(z > 0.0)));
    }
    let columns = Columns {
        numeric: vec![("spend".into(), spend), ("visits".into(), visits)],
        categorical: vec![("plan".into(), plan)],
    };
    (columns, y)
}

/// The three kinds of model, fitted on the same rows, each with its explainer.
fn fitted() -> Vec<(&'static str, Fitted, Explainer, Encoder)> {
    let (columns, y) = data(3000, 1);
    let encoder = Encoder::fit(&columns);
    let x = encoder.transform(&columns);
    let classes: Vec<bool> = y.iter().map(|&v| v > 0.0).collect();
    let logistic = Fitted::Logistic(
        leitwerk_trainer::logistic::Logistic::fit(&x, &classes, 1.0, 100).unwrap(),
    );
    let forest = Fitted::Trees(
        Forest::fit(
            &x,
            &y,
            ForestParams {
                trees: 10,
                max_depth: 6,
                min_samples_leaf: 10,
                sample_ratio: 0.8,
                seed: 2,
            },
        )
        .unwrap(),
    );
    let params = serde_json::from_value(
        json!({"rounds": 80, "learningRate": 0.1, "numLeaves": 15, "minRowsPerLeaf": 10}),
    )
    .unwrap();
    let boosted = Fitted::Boosted(boosting::fit(&x, &y, None, &params, Objective::Binary).unwrap());
    [
        ("logistic", logistic),
        ("forest", forest),
        ("boosted", boosted),
    ]
    .into_iter()
    .map(|(name, model)| {
        let explainer =
            leitwerk_trainer::explain::explainer(&model, &encoder, &x, Task::BinaryClassification);
        (name, model, explainer, encoder.clone())
    })
    .collect()
}

fn onnx(model: &Fitted, encoder: &Encoder, explainer: Option<&Explainer>) -> Vec<u8> {
    let metadata: Vec<(&str, String)> = explainer
        .map(|e| vec![(METADATA_KEY, e.to_json().unwrap())])
        .unwrap_or_default();
    export(encoder, &model.head(), &metadata)
}

async fn start(models: Vec<Model>) -> common::Running {
    common::serve_in_process(Server::new(models, None, 1000)).await
}

/// The probe rows: raw values as a caller sends them (a missing `spend`, an unknown plan).
fn probe() -> (Vec<f64>, Vec<f64>, Vec<String>) {
    let (columns, _) = data(40, 7);
    let mut spend = columns.numeric[0].1.clone();
    spend[0] = f64::NAN;
    let visits = columns.numeric[1].1.clone();
    let mut plan = columns.categorical[0].1.clone();
    plan[1] = "enterprise".into();
    (spend, visits, plan)
}

fn request(spend: &[f64], visits: &[f64], plan: &[String], parameters: Value) -> Value {
    let spend: Vec<Value> = spend
        .iter()
        .map(|v| if v.is_nan() { Value::Null } else { json!(v) })
        .collect();
    json!({"inputs": [
        {"name": "spend", "datatype": "FP32", "shape": [spend.len(), 1], "data": spend},
        {"name": "visits", "datatype": "FP32", "shape": [visits.len(), 1], "data": visits},
        {"name": "plan", "datatype": "BYTES", "shape": [plan.len()], "data": plan}
    ], "parameters": parameters})
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_attributions_add_up_to_the_served_score_for_every_kind_of_model() {
    let env = common::environment();
    let kinds = fitted();
    let mut models = Vec::new();
    for (name, model, explainer, encoder) in &kinds {
        let bytes = onnx(model, encoder, Some(explainer));
        models.push(Model::new(&env, name, "v1", &bytes, None).unwrap());
    }
    let (model, _, encoder) = (&kinds[0].1, (), &kinds[0].3);
    models.push(Model::new(&env, "plain", "v1", &onnx(model, encoder, None), None).unwrap());
    let s = start(models).await;
    let (spend, visits, plan) = probe();
    let n = spend.len();

    for (name, _, explainer, _) in &kinds {
        let url = format!("http://{}/v2/models/{name}/infer", s.http);
        let (status, body) = post(
            &url,
            &request(&spend, &visits, &plan, json!({"explain": true})),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        let scores = floats(&body["outputs"][0]["data"]);
        let out = &body["outputs"][1];
        assert_eq!(out["name"], "attributions", "{name}");
        assert_eq!(out["datatype"], "FP64");
        assert_eq!(out["shape"], json!([n, 3]));
        assert_eq!(
            out["parameters"]["features"],
            json!(["spend", "visits", "plan"])
        );
        let units = out["parameters"]["units"].as_str().unwrap();
        let expected_units = if *name == "forest" {
            Units::Probability
        } else {
            Units::LogOdds
        };
        assert_eq!(units, expected_units.as_str(), "{name}");
        let base = out["parameters"]["base_value"].as_f64().unwrap();
        assert!((base - explainer.base()).abs() < 1e-12, "{name}");
        let values = floats(&out["data"]);
        for r in 0..n {
            let row = &values[r * 3..r * 3 + 3];
            // Adds up to the score this very answer serves (ONNX Runtime's, in f32).
            let score = expected_units.score(base + row.iter().sum::<f64>());
            assert!(
                (score - scores[r]).abs() < 2e-5,
                "{name} row {r}: base + Σ attributions gives {score}, the server scored {}",
                scores[r]
            );
            // And equals the trainer's explainer on the same raw row.
            let raw = [
                Raw::Number(spend[r] as f32),
                Raw::Number(visits[r] as f32),
                Raw::Text(&plan[r]),
            ];
            let want = explainer.explain(&raw).unwrap().values;
            assert_eq!(row, want.as_slice(), "{name} row {r}");
        }
        // Without the parameter the answer is the score alone.
        let (_, plain) = post(&url, &request(&spend, &visits, &plan, json!({}))).await;
        assert_eq!(plain["outputs"].as_array().unwrap().len(), 1, "{name}");
        assert_eq!(floats(&plain["outputs"][0]["data"]), scores, "{name}");
    }

    // gRPC: the same attributions as FP64 contents, the names in the tensor's parameters.
    let mut client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
        format!("http://{}", s.grpc),
    )
    .await
    .unwrap();
    let tensor = |name: &str, datatype: &str, contents: pb::InferTensorContents| {
        pb::model_infer_request::InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![n as i64, 1],
            parameters: Default::default(),
            contents: Some(contents),
        }
    };
    let explain = |on: bool| {
        [(
            "explain".to_string(),
            pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::BoolParam(on)),
            },
        )]
        .into_iter()
        .collect()
    };
    let grpc_request = |parameters| pb::ModelInferRequest {
        model_name: "boosted".into(),
        model_version: "v1".into(),
        id: "g1".into(),
        parameters,
        inputs: vec![
            tensor(
                "spend",
                "FP32",
                pb::InferTensorContents {
                    fp32_contents: spend.iter().map(|v| *v as f32).collect(),
                    ..Default::default()
                },
            ),
            tensor(
                "visits",
                "FP32",
                pb::InferTensorContents {
                    fp32_contents: visits.iter().map(|v| *v as f32).collect(),
                    ..Default::default()
                },
            ),
            tensor(
                "plan",
                "BYTES",
                pb::InferTensorContents {
                    bytes_contents: plan.iter().map(|p| p.as_bytes().to_vec()).collect(),
                    ..Default::default()
                },
            ),
        ],
        outputs: vec![],
    };
    let reply = client
        .model_infer(grpc_request(explain(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.outputs.len(), 2);
    let attributions = &reply.outputs[1];
    assert_eq!(attributions.shape, vec![n as i64, 3]);
    let rest = post(
        &format!("http://{}/v2/models/boosted/infer", s.http),
        &request(&spend, &visits, &plan, json!({"explain": true})),
    )
    .await
    .1;
    assert_eq!(
        attributions.contents.as_ref().unwrap().fp64_contents,
        floats(&rest["outputs"][1]["data"]),
        "gRPC and REST explain alike"
    );
    let err = client
        .model_infer(grpc_request(
            [(
                "explain".to_string(),
                pb::InferParameter {
                    parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(
                        "yes".into(),
                    )),
                },
            )]
            .into_iter()
            .collect(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("explain"), "{}", err.message());

    // Refusals name the reason; the server keeps serving.
    let base = format!("http://{}/v2/models", s.http);
    let (status, body) = post(
        &format!("{base}/plain/infer"),
        &request(&spend, &visits, &plan, json!({"explain": true})),
    )
    .await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("model plain v1 cannot explain") && error.contains(METADATA_KEY),
        "{error}"
    );
    let (status, body) = post(
        &format!("{base}/logistic/infer"),
        &request(&spend, &visits, &plan, json!({"explain": "yes"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("parameters.explain"),
        "{body}"
    );
    let many = leitwerk_inference_server::explain::MAX_EXPLAIN_ROWS + 1;
    let (status, body) = post(
        &format!("{base}/logistic/infer"),
        &request(
            &vec![1.0; many],
            &vec![2.0; many],
            &vec!["pro".to_string(); many],
            json!({"explain": true}),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 1000 rows"),
        "{body}"
    );
    let (status, _) = post(
        &format!("{base}/plain/infer"),
        &request(&spend, &visits, &plan, json!({})),
    )
    .await;
    assert_eq!(status, 200, "a model without an explainer still serves");
}
