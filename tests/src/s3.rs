//! An S3-compatible server on 127.0.0.1 for the object-storage tests: the Versity S3 Gateway
//! (`tests/s3.sh` builds it from its Go module), serving a directory over the S3 protocol and
//! checking AWS Signature V4 against one access key. A bucket is a directory under the root,
//! an object a file below it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running S3 server; stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// The directory it serves.
    pub root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The access key it accepts.
    pub access_key: String,
    /// The secret key it accepts.
    pub secret_key: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Builds (once) and starts the server on a free port, serving `root`.
    pub fn start(root: &Path) -> anyhow::Result<S3Server> {
        let out = Command::new("bash")
            .arg(crate::repo_root().join("tests/s3.sh"))
            .output()
            .context("failed to run tests/s3.sh")?;
        if !out.status.success() {
            bail!(
                "tests/s3.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        std::fs::create_dir_all(root)?;
        let port = crate::free_port()?;
        let (access_key, secret_key) = (
            "LEITWERKTESTKEY".to_string(),
            "leitwerk-test-secret".to_string(),
        );
        let log = std::fs::File::create(root.with_extension("log"))?;
        let child = Command::new(&binary)
            .args(["--access", &access_key, "--secret", &secret_key])
            .args(["--port", &format!("127.0.0.1:{port}")])
            .arg("posix")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let server = S3Server {
            child,
            root: root.to_path_buf(),
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key,
            secret_key,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the S3 server did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Stores an object (creating its bucket).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.root.join(bucket).join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// A Secret with the environment `object_store` reads S3 settings from, with `secret` as
    /// the secret key (pass a wrong one to test refusals).
    pub fn credentials_secret(&self, name: &str, secret: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  AWS_ACCESS_KEY_ID: {}\n  AWS_SECRET_ACCESS_KEY: {secret}\n  AWS_ENDPOINT: {}\n  AWS_ALLOW_HTTP: \"true\"\n  AWS_REGION: us-east-1\n",
            self.access_key, self.endpoint
        )
    }
}
