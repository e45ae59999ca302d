//! Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use crate::model::{Data, InferError, TensorIn};
use crate::server::Server;

/// Code generated from `proto/inference.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::GrpcInferenceService;
pub use pb::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Service(pub Arc<Server>);

fn status(e: InferError) -> Status {
    match e {
        InferError::Invalid(m) => Status::invalid_argument(m),
        InferError::NotFound(m) => Status::not_found(m),
        InferError::Internal(m) => Status::internal(m),
        InferError::Unauthenticated(m) => Status::unauthenticated(m),
        InferError::Conflict(m) => Status::already_exists(m),
        InferError::TooLarge(m) => Status::resource_exhausted(m),
        InferError::Timeout(m) => Status::deadline_exceeded(m),
    }
}

fn tensor_in(t: pb::model_infer_request::InferInputTensor) -> Result<TensorIn, InferError> {
    let c = t.contents.unwrap_or_default();
    let data = match t.datatype.as_str() {
        "BYTES" => Data::Text(
            c.bytes_contents
                .into_iter()
                .map(|b| {
                    String::from_utf8(b).map_err(|_| {
                        InferError::Invalid(format!(
                            "input {:?} holds bytes that are not UTF-8",
                            t.name
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        "FP32" => Data::Numbers(c.fp32_contents.into_iter().map(f64::from).collect()),
        "FP64" => Data::Numbers(c.fp64_contents),
        "INT32" | "INT16" | "INT8" => {
            Data::Numbers(c.int_contents.into_iter().map(f64::from).collect())
        }
        "INT64" => Data::Numbers(c.int64_contents.into_iter().map(|v| v as f64).collect()),
        "UINT32" | "UINT16" | "UINT8" => {
            Data::Numbers(c.uint_contents.into_iter().map(f64::from).collect())
        }
        "UINT64" => Data::Numbers(c.uint64_contents.into_iter().map(|v| v as f64).collect()),
        other => {
            return Err(InferError::Invalid(format!(
                "input {:?} has unsupported datatype {other:?}",
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
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.0.ready.load(Ordering::Relaxed),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        self.0.find(&r.name, Some(&r.version)).map_err(status)?;
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "leitwerk-inference-server".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["feedback".into()],
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let served = self.0.find(&r.name, Some(&r.version)).map_err(status)?;
        let m = &served.model;
        let versions = self
            .0
            .models
            .iter()
            .find(|(n, _)| *n == r.name)
            .map(|(_, v)| v.iter().map(|s| s.model.version.clone()).collect())
            .unwrap_or_default();
        let meta = |name: &str, datatype: &str| pb::model_metadata_response::TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![-1, 1],
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions,
            platform: "onnxruntime_onnx".into(),
            inputs: m
                .inputs
                .iter()
                .map(|(n, k)| meta(n, k.datatype()))
                .collect(),
            outputs: vec![meta(&m.output, "FP32")],
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let r = r.into_inner();
        let explain = match r
            .parameters
            .get("explain")
            .and_then(|p| p.parameter_choice.as_ref())
        {
            None | Some(pb::infer_parameter::ParameterChoice::BoolParam(false)) => false,
            Some(pb::infer_parameter::ParameterChoice::BoolParam(true)) => true,
            Some(other) => {
                return Err(Status::invalid_argument(format!(
                    "parameter explain is {other:?}; it is a bool_param: true (answer with per-feature attributions) or false"
                )));
            }
        };
        let tensors = r
            .inputs
            .into_iter()
            .map(tensor_in)
            .collect::<Result<Vec<_>, _>>()
            .map_err(status)?;
        let scored = self
            .0
            .infer(
                &r.model_name,
                Some(&r.model_version),
                tensors,
                explain,
                "grpc",
            )
            .await
            .map_err(status)?;
        let n = scored.scores.len() as i64;
        let mut parameters = std::collections::HashMap::new();
        parameters.insert(
            "prediction_ids".to_string(),
            pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(
                    scored.prediction_ids.join(","),
                )),
            },
        );
        let mut outputs = vec![pb::model_infer_response::InferOutputTensor {
            name: scored.output,
            datatype: "FP32".into(),
            shape: vec![n, 1],
            parameters: Default::default(),
            contents: Some(pb::InferTensorContents {
                fp32_contents: scored.scores,
                ..Default::default()
            }),
        }];
        if let Some(e) = scored.explanation {
            let text = |s: String| pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(s)),
            };
            let tensor_parameters = [
                ("features".to_string(), text(e.features.join(","))),
                ("base_value".to_string(), text(e.base.to_string())),
                ("units".to_string(), text(e.units.to_string())),
            ]
            .into_iter()
            .collect();
            outputs.push(pb::model_infer_response::InferOutputTensor {
                name: crate::explain::OUTPUT.into(),
                datatype: "FP64".into(),
                shape: vec![n, e.features.len() as i64],
                parameters: tensor_parameters,
                contents: Some(pb::InferTensorContents {
                    fp64_contents: e.values,
                    ..Default::default()
                }),
            });
        }
        Ok(Response::new(pb::ModelInferResponse {
            model_name: scored.model,
            model_version: scored.version,
            id: r.id,
            parameters,
            outputs,
        }))
    }
}
