//! SIGTERM drains the server: readiness fails at once, requests are still answered for
//! `--drain-seconds` (while Service endpoints and load balancers drop the pod), then the
//! listeners close, in-flight requests finish and the process exits cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leitwerk_testkit::{free_port, provided};

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-inference-server");

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

async fn status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn sigterm_fails_readiness_first_keeps_answering_for_the_drain_then_exits()
-> anyhow::Result<()> {
    let (http, grpc) = (free_port()?, free_port()?);
    // The embedding model alone (no ONNX model): the server's lightest complete start.
    let model_dir = provided("minilm.sh")?;
    let child = Command::new(BIN)
        .arg("--embedding-model-dir")
        .arg(&model_dir)
        .args([
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--drain-seconds",
            "8",
        ])
        .env_remove("ORT_DYLIB_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut child = Killed(child);
    let ready = format!("http://127.0.0.1:{http}/v2/health/ready");
    let live = format!("http://127.0.0.1:{http}/v2/health/live");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&ready).await != Some(200) {
        anyhow::ensure!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(kill.success(), "kill -TERM failed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: not ready, yet every new request is still answered.
    assert_eq!(status(&ready).await, Some(503));
    for _ in 0..10 {
        assert_eq!(status(&live).await, Some(200), "a request during the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The checks above ran inside the drain: the process had not exited after them.
    anyhow::ensure!(
        child.0.try_wait()?.is_none(),
        "the server exited before the checks of its drain finished"
    );

    // After the drain the process exits on its own, successfully.
    // A bound on the wait, not a timing goal.
    let give_up = sent + Duration::from_secs(30);
    let exit = loop {
        if let Some(code) = child.0.try_wait()? {
            break code;
        }
        anyhow::ensure!(
            Instant::now() < give_up,
            "the server did not exit after its drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        sent.elapsed() >= Duration::from_secs(8),
        "exited before the drain ended: {:?}",
        sent.elapsed()
    );
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr)?;
    }
    assert!(stderr.contains("readiness fails now"), "{stderr}");
    Ok(())
}
