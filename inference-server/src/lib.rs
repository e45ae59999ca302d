//! `leitwerk-inference-server`: serves ONNX models (preprocessing inside the graph) over the
//! Open Inference Protocol v2, REST and gRPC, with dynamic batching, per-version Prometheus
//! metrics (requests, errors, latency, scores, feature buckets from the model card, outcomes)
//! and a feedback endpoint that ties outcomes to prediction ids.

pub mod explain;
pub mod generator;
pub mod grpc;
pub mod model;
pub mod rest;
pub mod retrieval;
pub mod server;
pub mod shadow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::serve::ListenerExt;
use object_store::ObjectStoreExt;
use ort::environment::Environment;

pub use model::Model;
pub use server::{Batching, Server};

/// A model version to serve (`--model NAME=VERSION=URL[#sha256:HEX]`): the operator's and
/// the server's one type.
pub use leitwerk_crds::command::ModelArg;

/// Reads an object by URL (`file://`, `s3://`, `gs://`, `az://`); `Ok(None)` when it does not exist.
pub async fn read_url(url: &str) -> Result<Option<Vec<u8>>, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let options: Vec<(String, String)> = std::env::vars()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let (store, path) =
        object_store::parse_url_opts(&parsed, options).map_err(|e| format!("{url}: {e}"))?;
    match store.get(&path).await {
        Ok(r) => r
            .bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| format!("{url}: {e}")),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// Loads every model (and its `card.json` beside it, when present).
pub async fn load_models(
    environment: &Environment,
    args: &[ModelArg],
) -> Result<Vec<Model>, String> {
    let mut models = Vec::new();
    for a in args {
        let bytes = read_url(&a.url)
            .await?
            .ok_or_else(|| format!("model {} {}: {} does not exist", a.name, a.version, a.url))?;
        let digest = model::digest(&bytes);
        if let Some(expected) = &a.sha256
            && digest != format!("sha256:{expected}")
        {
            return Err(format!(
                "model {} {}: {} has digest {digest}, expected sha256:{expected}",
                a.name, a.version, a.url
            ));
        }
        let card_url = match a.url.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/card.json"),
            None => String::new(),
        };
        let card = match read_url(&card_url).await {
            Ok(Some(b)) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| format!("{card_url} is not a model card: {e}"))?,
            ),
            _ => None,
        };
        models.push(Model::new(environment, &a.name, &a.version, &bytes, card)?);
    }
    Ok(models)
}

/// Serves REST on `http` and gRPC on `grpc` until `shutdown` resolves; in-flight requests
/// finish first. Returns the bound addresses through `bound` as soon as both listen.
pub async fn serve(
    server: Arc<Server>,
    http: SocketAddr,
    grpc: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), String> {
    let http_listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|e| format!("cannot listen on {http}: {e}"))?;
    let grpc_listener = tokio::net::TcpListener::bind(grpc)
        .await
        .map_err(|e| format!("cannot listen on {grpc}: {e}"))?;
    let (http_addr, grpc_addr) = (
        http_listener.local_addr().map_err(|e| e.to_string())?,
        grpc_listener.local_addr().map_err(|e| e.to_string())?,
    );
    bound(http_addr, grpc_addr);
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx_http = tx.subscribe();
    let mut rx_grpc = tx.subscribe();
    let state = server.clone();
    tokio::spawn(async move {
        shutdown.await;
        state.ready.store(false, Ordering::Relaxed);
        let _ = tx.send(());
    });
    // Every accepted socket gets TCP_NODELAY: a response written in two segments otherwise
    // waits for the client's delayed ACK (about 40 ms a request on Linux).
    let http_listener = http_listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "failed to set TCP_NODELAY on a REST connection");
        }
    });
    let routes = rest::limits(
        rest::router(server.clone())
            .merge(retrieval::router(server.clone()))
            .merge(generator::http::router(server.clone())),
    );
    let rest = axum::serve(http_listener, routes).with_graceful_shutdown(async move {
        let _ = rx_http.recv().await;
    });
    let incoming =
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc = tonic::transport::Server::builder()
        .add_service(
            grpc::GrpcInferenceServiceServer::new(grpc::Service(server.clone()))
                .max_decoding_message_size(model::MAX_BODY_BYTES),
        )
        .add_service(
            retrieval::pb::retrieval_server::RetrievalServer::new(retrieval::GrpcRetrieval(server))
                .max_decoding_message_size(model::MAX_BODY_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = rx_grpc.recv().await;
        });
    let (a, b) = tokio::join!(rest, grpc);
    a.map_err(|e| format!("REST server failed: {e}"))?;
    b.map_err(|e| format!("gRPC server failed: {e}"))?;
    Ok(())
}

/// Loads ONNX Runtime's shared library and starts its environment.
pub fn load_onnxruntime(path: Option<&std::path::Path>) -> Result<Environment, String> {
    let path = path.ok_or("no ONNX Runtime library configured: pass --onnxruntime PATH or set ORT_DYLIB_PATH to libonnxruntime.so (for example from the onnxruntime wheel)")?;
    if !path.is_file() {
        return Err(format!(
            "ONNX Runtime library {} does not exist: fix --onnxruntime / ORT_DYLIB_PATH",
            path.display()
        ));
    }
    let builder = ort::init_from(path).map_err(|e| {
        format!(
            "failed to load ONNX Runtime from {} (is it libonnxruntime.so 1.31 or newer?): {e}",
            path.display()
        )
    })?;
    builder
        .with_name("leitwerk-inference-server")
        .build()
        .map_err(|e| {
            format!(
                "failed to create the ONNX Runtime environment from {}: {e}",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_arguments_parse_and_bad_ones_name_the_form() {
        let a: ModelArg = "m=v2=file:///x/model.onnx#sha256:ABC".parse().unwrap();
        assert_eq!(
            a,
            ModelArg {
                name: "m".into(),
                version: "v2".into(),
                url: "file:///x/model.onnx".into(),
                sha256: Some("abc".into())
            }
        );
        let e = "m=file:///x".parse::<ModelArg>().unwrap_err();
        assert!(e.contains("NAME=VERSION=URL"), "{e}");
    }
}
