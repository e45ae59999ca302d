//! The node stand-in's share of the kubelet API: container logs, as the API server reads them
//! for `kubectl logs` and for the operator's `pods/log` reads (a Job's progress reports).
//!
//! The API server reaches a node's kubelet at the Node's address and
//! `status.daemonEndpoints.kubeletEndpoint.Port` over HTTPS, at
//! `/containerLogs/{namespace}/{pod}/{container}`. This serves that one path from the log files
//! the stand-in writes, with `tailLines` and `limitBytes` as a kubelet applies them; `follow`
//! returns what the log holds now. Its certificate is self-signed: an API server started
//! without `--kubelet-certificate-authority` does not verify a kubelet's serving certificate.
//! It listens on 127.0.0.1 only and, like a kubelet behind the API server, serves what it holds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;

/// The log file of each container, keyed `namespace/pod/container`.
pub type LogFiles = Arc<Mutex<HashMap<String, PathBuf>>>;

/// The key of a container's log.
pub fn key(namespace: &str, pod: &str, container: &str) -> String {
    format!("{namespace}/{pod}/{container}")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

/// The last `tail` lines of `text`, then at most `limit` bytes of them (from their start, as a
/// kubelet stops reading at the limit), cut back to a character boundary.
pub fn tail(text: &str, tail: Option<usize>, limit: Option<usize>) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out: String = lines[from..].concat();
    if let Some(limit) = limit
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

async fn container_logs(
    State(files): State<LogFiles>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> (StatusCode, String) {
    let file = files
        .lock()
        .ok()
        .and_then(|f| f.get(&key(&namespace, &pod, &container)).cloned());
    let Some(file) = file else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container} of pod {namespace}/{pod} is not on this node"),
        );
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            StatusCode::OK,
            tail(
                &String::from_utf8_lossy(&bytes),
                q.tail_lines,
                q.limit_bytes,
            ),
        ),
        // Created but not started yet: no output.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (StatusCode::OK, String::new()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves the container logs in `files` over HTTPS on a free loopback port; returns the port.
pub async fn serve(files: LogFiles) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    Ok((port, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_lines_then_the_byte_limit() {
        let log = "one\ntwo\nthree\n";
        assert_eq!(tail(log, Some(2), None), "two\nthree\n");
        assert_eq!(tail(log, None, None), log);
        assert_eq!(tail(log, Some(10), Some(5)), "one\nt");
        assert_eq!(tail("äö", None, Some(3)), "ä");
    }
}
