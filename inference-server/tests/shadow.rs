//! Shadow mode, the stable server's side, in process on 127.0.0.1: a stable server mirrors
//! each REST request to a candidate server (another version of the model) after answering.
//! Callers get the stable answer only; the stable server's metrics count the candidate's rows,
//! its agreements at the threshold (checked against both models' own scores), its scores and
//! its latency; a candidate that is gone is counted as an error and changes nothing for callers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failed setup step fails the test

mod common;
use common::post;

use std::time::Duration;

use leitwerk_inference_server::shadow::Shadow;
use leitwerk_inference_server::{Model, Server};
use serde_json::json;

/// The value of a series in the server's /metrics text (0 when absent).
async fn metric(http: std::net::SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (bounded) until `series` reaches `want`.
async fn wait_metric(http: std::net::SocketAddr, series: &str, want: f64) -> f64 {
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = metric(http, series).await;
        if seen >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stable_server_answers_and_compares_the_candidate_on_the_same_rows() {
    let env = common::environment();
    let (stable_bytes, enc, stable_weights) = common::model_bytes(1.0);
    let (candidate_bytes, _, candidate_weights) = common::model_bytes(-0.3);
    let candidate = common::serve_in_process(Server::new(
        vec![Model::new(&env, "leads", "v2", &candidate_bytes, None).unwrap()],
        None,
        100,
    ))
    .await;
    let stable_server = Server::new(
        vec![Model::new(&env, "leads", "v1", &stable_bytes, None).unwrap()],
        None,
        100,
    );
    let shadow = Shadow::new(&format!("http://{}", candidate.http), 0.5).unwrap();
    let _ = stable_server.shadow.set(std::sync::Arc::new(shadow));
    let stable = common::serve_in_process(stable_server).await;

    let visits = [0.0, 2.0, 4.0, 6.0, 8.0, 9.0];
    let plans = ["basic", "pro", "basic", "pro", "enterprise", "basic"];
    let body = json!({"inputs": [
        {"name": "visits", "datatype": "FP32", "shape": [6, 1], "data": visits},
        {"name": "plan", "datatype": "BYTES", "shape": [6], "data": plans}
    ]});
    let (status, reply) = post(
        &format!("http://{}/v2/models/leads/infer", stable.http),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["model_version"], "v1",
        "callers get the stable answer"
    );
    let served: Vec<f64> = reply["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want_stable = common::expected(&enc, &stable_weights, &visits, &plans);
    let want_candidate = common::expected(&enc, &candidate_weights, &visits, &plans);
    for (s, w) in served.iter().zip(&want_stable) {
        assert!((s - w).abs() < 1e-5, "{served:?} vs {want_stable:?}");
    }
    let agreeing = want_stable
        .iter()
        .zip(&want_candidate)
        .filter(|(s, c)| (**s >= 0.5) == (**c >= 0.5))
        .count() as f64;
    assert!(
        agreeing < 6.0,
        "the two models disagree somewhere: {want_stable:?} {want_candidate:?}"
    );

    let labels = r#"{model="leads",version="v1"}"#;
    let rows = wait_metric(
        stable.http,
        &format!("leitwerk_inference_shadow_rows_total{labels}"),
        6.0,
    )
    .await;
    assert_eq!(rows, 6.0, "the candidate scored the mirrored rows");
    assert_eq!(
        metric(
            stable.http,
            &format!("leitwerk_inference_shadow_agreed_total{labels}")
        )
        .await,
        agreeing
    );
    assert_eq!(
        metric(
            stable.http,
            &format!("leitwerk_inference_shadow_score_count{labels}")
        )
        .await,
        6.0
    );
    assert_eq!(
        metric(
            stable.http,
            r#"leitwerk_inference_shadow_requests_total{model="leads",version="v1",outcome="ok"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            candidate.http,
            r#"leitwerk_inference_predictions_total{model="leads",version="v2"}"#
        )
        .await,
        6.0,
        "the candidate saw the same six rows"
    );

    // The candidate goes away: callers see nothing of it; the error is counted.
    let _ = candidate.stop.unwrap().send(());
    let _ = candidate.done.await;
    let (status, reply) = post(
        &format!("http://{}/v2/models/leads/infer", stable.http),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let errors = wait_metric(
        stable.http,
        r#"leitwerk_inference_shadow_requests_total{model="leads",version="v1",outcome="error"}"#,
        1.0,
    )
    .await;
    assert_eq!(errors, 1.0);
    assert!(Shadow::new("candidate:8080", 0.5).is_err(), "not a URL");
}
