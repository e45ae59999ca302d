//! Dynamic batching against no batching, with the server in its own process: the real
//! `leitwerk-inference-server` binary (`cargo build --workspace --bins` first), pinned to one
//! CPU with `taskset` where it exists, and a closed-loop REST load generator in this process,
//! pinned to another. Single-row requests at 1, 4 and 16 connections, for a cheap model (the
//! lead-scoring logistic regression), a 200-tree forest and the MiniLM embedder
//! (`/v1/embeddings`, one text per request: a short query, then a paragraph), each served
//! three ways: no batching, adaptive batching (at most 32 rows or texts, no wait: a batch is
//! what queued while the model ran) and a fixed window (32 / 2 ms, the old behaviour). Each
//! cell is run three times, the modes in rotated order; the median run is reported.
//! `LEITWERK_BENCH_CASES=embed` (or `forest`, …) runs only the cases whose name contains it.
//!
//! `cargo build --release -p leitwerk-inference-server --bin leitwerk-inference-server`
//! `cargo bench --workspace --profile dev --bench batching`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmarks: a failed step aborts the run

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leitwerk_benches::{free_port, onnxruntime, provided, scratch, summary, train_lead_model};
use serde_json::{Value, json};

/// Measured time per cell, after a warm-up.
const MEASURE: Duration = Duration::from_secs(4);
const WARM_UP: Duration = Duration::from_millis(500);
const CONNECTIONS: [usize; 3] = [1, 4, 16];
/// Runs per cell (`LEITWERK_BENCH_ROUNDS`, 3 by default); the median is reported.
fn rounds() -> usize {
    std::env::var("LEITWERK_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

/// One way of serving: its name and the server's batching flags.
const MODES: [(&str, &[&str]); 3] = [
    ("no batching", &["--max-batch-size", "1"]),
    ("adaptive 32", &["--max-batch-size", "32"]),
    (
        "window 32/2ms",
        &["--max-batch-size", "32", "--max-batch-delay-ms", "2"],
    ),
];

fn taskset() -> Option<PathBuf> {
    ["/usr/bin/taskset", "/bin/taskset"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The server binary: `$LEITWERK_BENCH_SERVER`, else the release build, else the debug one.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEITWERK_BENCH_SERVER") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/batching-<hash> → target/{release,debug}/leitwerk-inference-server
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let binary = ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("leitwerk-inference-server"))
        .find(|b| b.exists());
    binary.expect(
        "no leitwerk-inference-server: run `cargo build --release -p leitwerk-inference-server --bin leitwerk-inference-server` first",
    )
}

/// A server process; killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one case serves: the server's flags, the path requests go to, and their body.
struct Case {
    name: String,
    serve: Vec<String>,
    path: &'static str,
    body: Arc<Value>,
}

/// Starts the server and waits until it is ready; a server that is not ready in 30 s (it
/// happened once in three full runs, cause not seen) is stopped, its log printed, and started
/// again on fresh ports, three times at most.
fn start_server(serve: &[String], flags: &[&str], pin: Option<&Path>) -> ServerProcess {
    let log = scratch("batching-server").join("server.log");
    for attempt in 1..=3 {
        let (http, grpc) = (free_port(), free_port());
        let mut cmd = match pin {
            Some(taskset) => {
                let mut c = Command::new(taskset);
                c.args(["-c", "1"]).arg(server_binary());
                c
            }
            None => Command::new(server_binary()),
        };
        cmd.args(serve)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .arg("--onnxruntime")
            .arg(onnxruntime())
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut server = ServerProcess {
            child: cmd.spawn().unwrap(),
            url: format!("http://127.0.0.1:{http}"),
        };
        for _ in 0..300 {
            if ready(http) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                println!("!!! the server exited ({status}) before it was ready");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "!!! attempt {attempt}: the server was not ready ({flags:?}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!("the server did not get ready in three attempts: {flags:?}");
}

/// Whether the server on `port` answers its readiness probe with 200.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /v2/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Closed loop: `connections` clients, each sending the next request when its answer came.
/// Returns requests per second, p50 and p99 in µs.
async fn load(url: String, body: Arc<Value>, connections: usize) -> (f64, f64, f64) {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let url = Arc::new(url);
    let started = Instant::now();
    let (warm, end) = (started + WARM_UP, started + WARM_UP + MEASURE);
    let workers = (0..connections).map(|_| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            // Bounded by the deadline, and by a count no run reaches.
            for _ in 0..10_000_000 {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let r = client.post(url.as_str()).json(body.as_ref()).send().await;
                let ok = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                assert!(ok, "a request failed");
                if t >= warm {
                    samples.push(t.elapsed());
                }
            }
            samples
        })
    });
    let samples: Vec<Duration> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let n = samples.len();
    let (p50, p99, _) = summary(samples);
    (n as f64 / MEASURE.as_secs_f64(), p50, p99)
}

/// A one-row OIP v2 request of the card's first example.
fn request(card: &Value) -> Value {
    let example = &card["examples"][0]["inputs"];
    let inputs: Vec<Value> = card["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i[0].as_str().unwrap();
            json!({"name": name, "datatype": i[1], "shape": [1, 1], "data": [example[name]]})
        })
        .collect();
    json!({ "inputs": inputs })
}

/// The cases: the two lead-scoring models (trained here on 1,500 generated leads), then the
/// embedder with one short text and with one paragraph per request.
fn cases(setup: &tokio::runtime::Runtime) -> Vec<Case> {
    let dir = scratch("batching");
    let models = [
        ("logistic regression (lead-scoring)", None),
        (
            "random forest, 200 trees, depth 10",
            Some(json!({"randomForest": {"trees": 200, "maxDepth": 10, "seed": 7}})),
        ),
    ];
    let mut cases = Vec::new();
    for (i, (name, algorithm)) in models.into_iter().enumerate() {
        let only = std::env::var("LEITWERK_BENCH_CASES").unwrap_or_default();
        if !name.contains(&only) {
            continue;
        }
        let t = Instant::now();
        let (bytes, card) = train_lead_model(setup, &format!("batching-{i}"), 1500, algorithm);
        let path = dir.join(format!("model-{i}")).join("model.onnx");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(
            path.with_file_name("card.json"),
            serde_json::to_vec(&card).unwrap(),
        )
        .unwrap();
        cases.push(Case {
            name: format!("{name} (trained in {:.1} s)", t.elapsed().as_secs_f64()),
            serve: vec![
                "--model".into(),
                format!("lead-scoring=v1=file://{}", path.display()),
            ],
            path: "/v2/models/lead-scoring/infer",
            body: Arc::new(request(&card)),
        });
    }
    let minilm = provided("minilm.sh");
    let texts = [
        (
            "MiniLM embedder, one short query per request",
            "which campaigns had the best conversion rate last week",
        ),
        (
            "MiniLM embedder, one paragraph per request",
            "Our spring campaign reached new customers through email and paid search, and the conversion rate rose by a third while the cost per acquisition fell. The team kept the budget flat and moved spend toward the channels with the best return.",
        ),
    ];
    for (name, text) in texts {
        cases.push(Case {
            name: name.into(),
            serve: vec!["--embedding-model-dir".into(), minilm.display().to_string()],
            path: "/v1/embeddings",
            body: Arc::new(json!({ "input": text })),
        });
    }
    cases
}

fn main() {
    // Counted before this process pins itself to one CPU.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = taskset();
    if let Some(t) = &pin {
        // This process (and the threads it starts) on CPU 0; the server on CPU 1.
        let _ = Command::new(t)
            .args(["-cp", "0", &std::process::id().to_string()])
            .output();
    } else {
        println!("!!! taskset is missing: server and load generator share the CPUs");
    }
    let setup = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "server: {} on {}; load: closed loop, {} s per run after {} ms warm-up, median of {}",
        server_binary().display(),
        if pin.is_some() { "CPU 1" } else { "any CPU" },
        MEASURE.as_secs(),
        WARM_UP.as_millis(),
        rounds()
    );
    let only = std::env::var("LEITWERK_BENCH_CASES").unwrap_or_default();
    // Cases run before are kept in results.json unless this run measures them again.
    let mut results: serde_json::Map<String, Value> = leitwerk_testkit::read_bench_results(RESULTS)
        .and_then(|r| r["cases"].as_object().cloned())
        .unwrap_or_default();
    for case in cases(&setup) {
        if !case.name.contains(&only) {
            continue;
        }
        let mut cells = Vec::new();
        println!("\n{}", case.name);
        println!(
            "| connections | mode | req/s | p50 µs | p99 µs | req/s vs no batching |\n|---|---|---|---|---|---|"
        );
        for connections in CONNECTIONS {
            // rounds() rounds, the modes in a rotated order each round; the median run counts.
            let mut runs: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); MODES.len()];
            for round in 0..rounds() {
                for k in 0..MODES.len() {
                    let m = (k + round) % MODES.len();
                    let server = start_server(&case.serve, MODES[m].1, pin.as_deref());
                    let url = format!("{}{}", server.url, case.path);
                    runs[m].push(runtime.block_on(load(url, case.body.clone(), connections)));
                }
            }
            let medians: Vec<(f64, f64, f64)> = runs
                .into_iter()
                .map(|mut r| {
                    r.sort_by(|a, b| a.0.total_cmp(&b.0));
                    r[r.len() / 2]
                })
                .collect();
            let base = medians[0].0;
            for ((mode, _), (rps, p50, p99)) in MODES.iter().zip(medians) {
                println!(
                    "| {connections} | {mode} | {rps:.0} | {p50:.0} | {p99:.0} | {:.2}× |",
                    rps / base
                );
                cells.push(json!({
                    "connections": connections, "mode": mode, "rps": rps,
                    "p50_us": p50, "p99_us": p99, "vs_no_batching": rps / base,
                }));
            }
        }
        // The case's name without the training time, which changes from run to run.
        let key = case.name.split(" (trained").next().unwrap_or(&case.name);
        results.insert(key.to_string(), json!(cells));
    }
    let path = leitwerk_testkit::write_bench_results(
        RESULTS,
        &json!({
            "what": "single-row requests, closed loop; server on CPU 1, load on CPU 0",
            "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
            "cpus": cpus,
            "seconds_per_run": MEASURE.as_secs(),
            "rounds": rounds(),
            "cases": results,
        }),
    )
    .unwrap();
    println!(
        "\nfigures: {} (chart: bash benches/charts.sh {RESULTS})",
        path.display()
    );
}

/// The directory under `benches/results/` this bench writes.
const RESULTS: &str = "batching";
