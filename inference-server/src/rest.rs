//! Open Inference Protocol v2 over REST (JSON), plus `/metrics` and the feedback endpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{Data, InferError, TensorIn};
use crate::server::Server;

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(InferError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            InferError::Invalid(_) => StatusCode::BAD_REQUEST,
            InferError::NotFound(_) => StatusCode::NOT_FOUND,
            InferError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            InferError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            InferError::Conflict(_) => StatusCode::CONFLICT,
            InferError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InferError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (status, Json(json!({ "error": self.0.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"leitwerk-feedback\""),
            );
        }
        response
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        ApiError(e)
    }
}

/// Why a body was not taken: too large (413, naming the limit) or not what `expected` says.
fn rejected(e: axum::extract::rejection::JsonRejection, expected: &str) -> InferError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        InferError::TooLarge(too_large())
    } else {
        InferError::Invalid(format!("{expected}: {}", e.body_text()))
    }
}

fn too_large() -> String {
    format!(
        "the body is larger than the server's limit of {} bytes; send fewer rows per request",
        crate::model::MAX_BODY_BYTES
    )
}

/// The body limit on every route, and its refusal as JSON naming the limit (for routes whose
/// extractor answered with axum's plain text).
pub fn limits(routes: Router) -> Router {
    routes
        .layer(axum::middleware::map_response(
            |response: Response| async move {
                let json = response
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
                    return ApiError(InferError::TooLarge(too_large())).into_response();
                }
                response
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::model::MAX_BODY_BYTES,
        ))
}

/// The routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_v),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v2/feedback", post(feedback))
        .route("/metrics", get(metrics))
        .with_state(server)
}

async fn ready(State(s): State<Arc<Server>>) -> Response {
    let ready = s.ready.load(Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

async fn server_metadata() -> Json<Value> {
    Json(
        json!({"name": "leitwerk-inference-server", "version": env!("CARGO_PKG_VERSION"), "extensions": ["feedback"]}),
    )
}

/// Model metadata as OIP v2 describes it.
pub fn metadata(s: &Server, name: &str, version: Option<&str>) -> Result<Value, InferError> {
    let served = s.find(name, version)?;
    let versions: Vec<String> = s
        .models
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.iter().map(|x| x.model.version.clone()).collect())
        .unwrap_or_default();
    let m = &served.model;
    Ok(json!({
        "name": m.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": m.inputs.iter().map(|(n, k)| json!({"name": n, "datatype": k.datatype(), "shape": [-1, 1]})).collect::<Vec<_>>(),
        "outputs": [{"name": m.output, "datatype": "FP32", "shape": [-1, 1]}],
        "parameters": {"digest": m.digest},
    }))
}

async fn model_metadata(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(metadata(&s, &name, None)?))
}

async fn model_metadata_v(
    State(s): State<Arc<Server>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(metadata(&s, &name, Some(&version))?))
}

async fn model_ready(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.find(&name, None)?;
    Ok(Json(json!({"name": name, "ready": true})))
}

async fn model_ready_v(
    State(s): State<Arc<Server>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    s.find(&name, Some(&version))?;
    Ok(Json(json!({"name": name, "ready": true})))
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

/// `parameters.explain` of a request: absent or false, or true.
fn wants_explanation(parameters: &serde_json::Map<String, Value>) -> Result<bool, InferError> {
    match parameters.get("explain") {
        None | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(other) => Err(InferError::Invalid(format!(
            "parameters.explain is {other}; it is true (answer with per-feature attributions) or false"
        ))),
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Flat,
}

/// An input tensor's `data`, flattened as it is read (no `serde_json::Value` in between): its
/// numbers (`null` as NaN), its strings, and the first value that is neither, in words. The
/// profile of a request showed the allocations of a `Value` tree as a large share of its cost.
#[derive(Debug, Clone, Default)]
struct Flat {
    numbers: Vec<f64>,
    text: Vec<String>,
    other: Option<String>,
}

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut flat = Flat::default();
        deserializer.deserialize_any(Into(&mut flat))?;
        Ok(flat)
    }
}

/// Reads one value (nested arrays included) into a [`Flat`].
struct Into<'a>(&'a mut Flat);

impl<'de> serde::de::DeserializeSeed<'de> for Into<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Into<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("numbers or strings, in nested arrays")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items.next_element_seed(Into(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.numbers.push(v);
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_f64(f64::NAN)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.text.push(v.to_string());
        Ok(())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.0.text.push(v);
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.other.get_or_insert_with(|| v.to_string());
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.0.other.get_or_insert_with(|| "an object".into());
        Ok(())
    }
}

impl serde::Serialize for Flat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.numbers.is_empty() {
            self.text.serialize(serializer)
        } else {
            self.numbers.serialize(serializer)
        }
    }
}

fn parse_inputs(inputs: Vec<InputTensor>) -> Result<Vec<TensorIn>, InferError> {
    inputs
        .into_iter()
        .map(|t| {
            let Flat {
                numbers,
                text,
                other,
            } = t.data;
            if let Some(other) = other {
                return Err(InferError::Invalid(format!(
                    "input {:?}: {other} is neither a number nor a string",
                    t.name
                )));
            }
            let data = match (numbers.is_empty(), text.is_empty()) {
                (_, true) => Data::Numbers(numbers),
                (true, false) => Data::Text(text),
                (false, false) => {
                    return Err(InferError::Invalid(format!(
                        "input {:?} mixes numbers and strings",
                        t.name
                    )));
                }
            };
            Ok(TensorIn {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
                data,
            })
        })
        .collect()
}

async fn run_infer(
    s: Arc<Server>,
    name: String,
    version: Option<String>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) =
        body.map_err(|e| rejected(e, "the body is not an OIP v2 inference request"))?;
    let explain = wants_explanation(&request.parameters)?;
    let mirrored = s
        .shadow
        .get()
        .map(|shadow| (shadow.clone(), serde_json::to_value(&request.inputs)));
    let tensors = parse_inputs(request.inputs)?;
    let scored = s
        .infer(&name, version.as_deref(), tensors, explain, "rest")
        .await?;
    if let Some((shadow, Ok(inputs))) = mirrored {
        shadow.tee(
            s.clone(),
            &name,
            (&scored.model, &scored.version),
            inputs,
            scored.scores.clone(),
        );
    }
    let n = scored.scores.len();
    let mut outputs = vec![OutputTensor {
        name: &scored.output,
        datatype: "FP32",
        shape: [n, 1],
        data: Output::Scores(&scored.scores),
        parameters: None,
    }];
    if let Some(e) = &scored.explanation {
        outputs.push(OutputTensor {
            name: crate::explain::OUTPUT,
            datatype: "FP64",
            shape: [n, e.features.len()],
            data: Output::Attributions(&e.values),
            parameters: Some(
                json!({"features": e.features, "base_value": e.base, "units": e.units}),
            ),
        });
    }
    let answer = InferResponse {
        model_name: &scored.model,
        model_version: &scored.version,
        id: request.id.as_deref().unwrap_or_default(),
        parameters: ResponseParameters {
            prediction_ids: &scored.prediction_ids,
        },
        outputs,
    };
    serde_json::to_vec(&answer)
        .map(|body| ([(header::CONTENT_TYPE, "application/json")], body).into_response())
        .map_err(|e| {
            ApiError(InferError::Internal(format!(
                "the answer did not serialize: {e}"
            )))
        })
}

/// An OIP v2 inference answer, serialized from the scores without a `Value` in between.
#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    id: &'a str,
    parameters: ResponseParameters<'a>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(serde::Serialize)]
struct ResponseParameters<'a> {
    prediction_ids: &'a [String],
}

#[derive(serde::Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Output<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

/// An output's data. Scores are written as the `f64` of each `f32`, digit for digit what the
/// answer has always held.
enum Output<'a> {
    Scores(&'a [f32]),
    Attributions(&'a [f64]),
}

impl serde::Serialize for Output<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::Scores(v) => serializer.collect_seq(v.iter().map(|x| f64::from(*x))),
            Output::Attributions(v) => serializer.collect_seq(v.iter()),
        }
    }
}

async fn infer(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    run_infer(s, name, None, body).await
}

async fn infer_v(
    State(s): State<Arc<Server>>,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    run_infer(s, name, Some(version), body).await
}

#[derive(Debug, Deserialize)]
struct Feedback {
    prediction_id: String,
    converted: bool,
    #[serde(default)]
    value: Option<f64>,
}

async fn feedback(
    State(s): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<Feedback>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(f) = body.map_err(|e| {
        rejected(
            e,
            "feedback is {\"prediction_id\": \"...\", \"converted\": true|false, \"value\": optional number}",
        )
    })?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (model, version) = s.feedback(token, &f.prediction_id, f.converted, f.value)?;
    Ok(Json(
        json!({"model_name": model, "model_version": version, "recorded": true}),
    ))
}

async fn metrics(State(s): State<Arc<Server>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(data: &str) -> Result<Vec<TensorIn>, InferError> {
        let body =
            format!(r#"[{{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": {data}}}]"#);
        let inputs: Vec<InputTensor> =
            serde_json::from_str(&body).map_err(|e| InferError::Invalid(e.to_string()))?;
        parse_inputs(inputs)
    }

    #[test]
    fn data_is_flattened_as_it_is_read_with_null_as_nan() {
        let t = tensors("[[1, -2.5], [null, 4e0]]").expect("numbers");
        let Data::Numbers(n) = &t[0].data else {
            panic!("{:?}", t[0].data)
        };
        assert_eq!((n[0], n[1], n[3]), (1.0, -2.5, 4.0));
        assert!(n[2].is_nan());
        let t = tensors(r#"["a", ["b"]]"#).expect("strings");
        assert!(matches!(&t[0].data, Data::Text(v) if v == &["a", "b"]));
    }

    #[test]
    fn values_that_are_neither_numbers_nor_strings_are_named() {
        for (data, named) in [("[1, true]", "true"), (r#"[{"a": 1}]"#, "an object")] {
            let e = tensors(data).expect_err(data).to_string();
            assert!(
                e.contains(&format!(
                    "input \"x\": {named} is neither a number nor a string"
                )),
                "{e}"
            );
        }
        let e = tensors(r#"[1, "a"]"#).expect_err("mixed").to_string();
        assert!(e.contains("mixes numbers and strings"), "{e}");
    }
}
