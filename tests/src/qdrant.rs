//! A real Qdrant server on 127.0.0.1 for the tests: the binary built from Qdrant's public
//! source that the workplace provides at `../shared/tools/qdrant/qdrant` (or
//! `$LEITWERK_QDRANT`), with its storage in the test's directory and an API key. No package
//! registry ships a Qdrant server; where the binary is absent, [`QdrantProcess::start`] answers
//! `None` and the caller says loudly that the Qdrant path did not run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, repo_root, wait_for};

/// A running Qdrant; killed when dropped.
#[derive(Debug)]
pub struct QdrantProcess {
    /// gRPC URL (what `qdrant-client` talks to), e.g. `http://127.0.0.1:PORT`.
    pub grpc_url: String,
    /// REST URL.
    pub http_url: String,
    /// The API key every request must carry.
    pub api_key: String,
    child: Child,
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server binary is expected.
pub fn binary() -> PathBuf {
    std::env::var_os("LEITWERK_QDRANT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/tools/qdrant/qdrant"))
}

/// The line a test prints when the server is absent, so that a skipped path is never silent.
pub fn absent_notice(what: &str) -> String {
    format!(
        "!!! QDRANT SERVER ABSENT: {} is missing (set LEITWERK_QDRANT to a Qdrant server binary); {what} DID NOT RUN",
        binary().display()
    )
}

impl QdrantProcess {
    /// Starts Qdrant with its storage under `dir` and `api_key`, and waits until it is ready;
    /// `None` when the binary is absent.
    pub async fn start(dir: &Path, api_key: &str) -> anyhow::Result<Option<QdrantProcess>> {
        let bin = binary();
        if !bin.is_file() {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)?;
        let (http, grpc) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("qdrant.log"))?;
        let child = Command::new(&bin)
            .current_dir(dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
            .env("QDRANT__SERVICE__API_KEY", api_key)
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let process = QdrantProcess {
            grpc_url: format!("http://127.0.0.1:{grpc}"),
            http_url: format!("http://127.0.0.1:{http}"),
            api_key: api_key.to_string(),
            child,
        };
        let ready = format!("{}/readyz", process.http_url);
        wait_for("Qdrant to be ready", Duration::from_secs(30), || {
            let ready = ready.clone();
            async move {
                let ok = reqwest::get(&ready)
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok((ok.then_some(()), format!("{ready} not ready")))
            }
        })
        .await?;
        Ok(Some(process))
    }
}
