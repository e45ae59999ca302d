//! Inference latency and throughput: the lead-scoring model (trained here by the trainer's own
//! pipeline on generated data) served by `leitwerk-inference-server` over REST and gRPC,
//! against a raw in-process ONNX Runtime call on the same model. Single-row requests,
//! sequential and at concurrency 8, without and with dynamic batching.
//!
//! `cargo bench -p leitwerk-benches --bench inference`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::sync::Arc;
use std::time::{Duration, Instant};

use leitwerk_benches::{onnxruntime, scratch, summary};
use leitwerk_inference_server::grpc::pb;
use leitwerk_inference_server::model::{Card, Data, TensorIn};
use leitwerk_inference_server::{Batching, Model, Server, load_onnxruntime, serve};
use serde_json::{Value, json};

const SEQUENTIAL: usize = 2000;
const CONCURRENT_TOTAL: usize = 4000;
const CONCURRENCY: usize = 8;

fn tensors(card: &Value) -> Vec<TensorIn> {
    let example = &card["examples"][0]["inputs"];
    card["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i[0].as_str().unwrap().to_string();
            let datatype = i[1].as_str().unwrap().to_string();
            let data = match example[&name].clone() {
                Value::String(s) => Data::Text(vec![s]),
                v => Data::Numbers(vec![v.as_f64().unwrap_or(f64::NAN)]),
            };
            TensorIn {
                name,
                datatype,
                shape: vec![1, 1],
                data,
            }
        })
        .collect()
}

fn rest_body(t: &[TensorIn]) -> Value {
    json!({"inputs": t.iter().map(|t| {
        let data = match &t.data { Data::Numbers(v) => json!(v), Data::Text(v) => json!(v) };
        json!({"name": t.name, "datatype": t.datatype, "shape": [1, 1], "data": data})
    }).collect::<Vec<_>>()})
}

fn grpc_request(t: &[TensorIn]) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "lead-scoring".into(),
        inputs: t
            .iter()
            .map(|t| pb::model_infer_request::InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                shape: vec![1, 1],
                parameters: Default::default(),
                contents: Some(match &t.data {
                    Data::Numbers(v) => pb::InferTensorContents {
                        fp32_contents: v.iter().map(|x| *x as f32).collect(),
                        ..Default::default()
                    },
                    Data::Text(v) => pb::InferTensorContents {
                        bytes_contents: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
                        ..Default::default()
                    },
                }),
            })
            .collect(),
        ..Default::default()
    }
}

fn report(name: &str, samples: Vec<Duration>, elapsed: Duration, raw_p50: f64) {
    let n = samples.len();
    let (p50, p99, _) = summary(samples);
    println!(
        "{name:<40} p50 {p50:>8.1} µs  p99 {p99:>8.1} µs  {:>8.0} req/s  p50 ratio to raw ort {:>6.1}×",
        n as f64 / elapsed.as_secs_f64(),
        p50 / raw_p50
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // ONNX Runtime allows one environment per process and the trainer's parity check creates
    // one: the model is trained in a child process of this benchmark.
    if let Ok(out) = std::env::var("LEITWERK_BENCH_TRAIN_INTO") {
        let (bytes, card) = leitwerk_benches::train_lead_model(&runtime, "inference", 3000, None);
        std::fs::write(format!("{out}/model.onnx"), bytes).unwrap();
        std::fs::write(
            format!("{out}/card.json"),
            serde_json::to_vec(&card).unwrap(),
        )
        .unwrap();
        return;
    }
    let out = scratch("inference-model");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LEITWERK_BENCH_TRAIN_INTO", &out)
        .status()
        .unwrap();
    assert!(status.success(), "training the benchmark model failed");
    let bytes = std::fs::read(out.join("model.onnx")).unwrap();
    let card: Value =
        serde_json::from_slice(&std::fs::read(out.join("card.json")).unwrap()).unwrap();
    // The server spawns its batching tasks on the current runtime.
    let _entered = runtime.enter();
    let env = load_onnxruntime(Some(&onnxruntime())).unwrap();
    let reference: Card = serde_json::from_value(card.clone()).unwrap();
    let tensors = tensors(&card);

    // Raw in-process ONNX Runtime on the same graph and row.
    let raw = Model::new(&env, "lead-scoring", "v1", &bytes, None).unwrap();
    let rows = raw.prepare(tensors.clone()).unwrap();
    for _ in 0..200 {
        raw.run(&rows).unwrap();
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        raw.run(&rows).unwrap();
        samples.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    let (raw_p50, _, _) = summary(samples.clone());
    println!(
        "model: examples/lead-scoring ({} inputs), single-row requests, 2 tokio workers",
        tensors.len()
    );
    report("raw in-process ort (Model::run)", samples, elapsed, raw_p50);

    for batching in [
        None,
        Some(Batching {
            max_batch_size: 32,
            max_delay: Duration::from_millis(2),
        }),
    ] {
        let label = if batching.is_some() {
            "batching 32/2ms"
        } else {
            "no batching"
        };
        let model =
            Model::new(&env, "lead-scoring", "v1", &bytes, Some(reference.clone())).unwrap();
        let server = Server::new(vec![model], batching, 100_000);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let handle = runtime.spawn(serve(
            server,
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            async move {
                let _ = stop_rx.await;
            },
            move |h, g| {
                let _ = addr_tx.send((h, g));
            },
        ));
        let (http, grpc) = addr_rx.recv().unwrap();
        let url = Arc::new(format!("http://{http}/v2/models/lead-scoring/infer"));
        let body = Arc::new(rest_body(&tensors));
        let request = grpc_request(&tensors);
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut grpc_client =
                pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(format!(
                    "http://{grpc}"
                ))
                .await
                .unwrap();
            if batching.is_none() {
                for _ in 0..200 {
                    client
                        .post(url.as_str())
                        .json(body.as_ref())
                        .send()
                        .await
                        .unwrap();
                }
                let (mut rest, mut g) = (Vec::new(), Vec::new());
                let started = Instant::now();
                for _ in 0..SEQUENTIAL {
                    let t = Instant::now();
                    let r = client
                        .post(url.as_str())
                        .json(body.as_ref())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                    rest.push(t.elapsed());
                }
                report("REST sequential", rest, started.elapsed(), raw_p50);
                let started = Instant::now();
                for _ in 0..SEQUENTIAL {
                    let t = Instant::now();
                    grpc_client.model_infer(request.clone()).await.unwrap();
                    g.push(t.elapsed());
                }
                report("gRPC sequential", g, started.elapsed(), raw_p50);
            }
            // Concurrency 8: each worker sends its share of the requests back to back.
            let per = CONCURRENT_TOTAL / CONCURRENCY;
            let started = Instant::now();
            let workers = (0..CONCURRENCY).map(|_| {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    let mut s = Vec::with_capacity(per);
                    for _ in 0..per {
                        let t = Instant::now();
                        client
                            .post(url.as_str())
                            .json(body.as_ref())
                            .send()
                            .await
                            .unwrap()
                            .bytes()
                            .await
                            .unwrap();
                        s.push(t.elapsed());
                    }
                    s
                })
            });
            let rest: Vec<Duration> = futures::future::join_all(workers)
                .await
                .into_iter()
                .flat_map(|r| r.unwrap())
                .collect();
            report(
                &format!("REST concurrency 8, {label}"),
                rest,
                started.elapsed(),
                raw_p50,
            );
            let started = Instant::now();
            let workers = (0..CONCURRENCY).map(|_| {
                let (mut c, req) = (grpc_client.clone(), request.clone());
                tokio::spawn(async move {
                    let mut s = Vec::with_capacity(per);
                    for _ in 0..per {
                        let t = Instant::now();
                        c.model_infer(req.clone()).await.unwrap();
                        s.push(t.elapsed());
                    }
                    s
                })
            });
            let g: Vec<Duration> = futures::future::join_all(workers)
                .await
                .into_iter()
                .flat_map(|r| r.unwrap())
                .collect();
            report(
                &format!("gRPC concurrency 8, {label}"),
                g,
                started.elapsed(),
                raw_p50,
            );
        });
        let _ = stop_tx.send(());
        runtime.block_on(handle).unwrap().unwrap();
    }
}
