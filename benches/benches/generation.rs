//! Generation: Leitwerk's local generator (`leitwerk-inference-server --generator-model`,
//! candle's `quantized_llama`) against the llama.cpp server (the `xllamacpp` wheel) on the
//! same GGUF (SmolLM2-135M-Instruct Q4_1), two threads each, the same prompts, greedy. Both
//! run as servers on 127.0.0.1 and are timed by their own `timings` (prompt and generation
//! milliseconds, which both report in llama.cpp's shape), so HTTP is outside both figures.
//! llama.cpp's prompt cache is off, so every run processes its whole prompt.
//!
//! Reports prompt and generation tokens per second (median of the runs) and their ratio, and
//! how many greedy tokens agree (the longest common prefix, tokenized by the server's own
//! `/tokenize`).
//!
//! Then the content pipeline's own overhead: one run of the stages (`pipeline::run`) over the
//! product-docs corpus, written by SmolLM2 on the llama.cpp server; the share of the run that
//! is not spent in the generator's calls (retrieval, the fact check's embeddings, the style
//! and on-page checks, bookkeeping). Goal: at most 5 %.
//!
//! `cargo bench --workspace --bench generation --profile dev`; set `LEITWERK_GENERATOR_BIN`
//! to measure another build of the server (e.g. one built with `-C target-cpu=x86-64-v3`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmarks: a failed step aborts the run

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leitwerk_benches::free_port;
use serde_json::{Value, json};

const RUNS: usize = 3;
const GENERATED: usize = 48;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ours(gguf: &std::path::Path) -> (Running, String) {
    let bin = std::env::var("LEITWERK_GENERATOR_BIN").map_or_else(
        |_| {
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .and_then(|deps| deps.parent())
                .unwrap()
                .join("leitwerk-inference-server")
        },
        std::path::PathBuf::from,
    );
    let (http, grpc) = (free_port(), free_port());
    let child = Command::new(&bin)
        .arg("--generator-model")
        .arg(gguf)
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .env("RAYON_NUM_THREADS", "2")
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it, or set LEITWERK_GENERATOR_BIN)",
                bin.display()
            )
        });
    eprintln!("ours: {}", bin.display());
    (Running(child), format!("http://127.0.0.1:{http}"))
}

fn theirs(gguf: &std::path::Path) -> (Running, String) {
    let python_path = leitwerk_benches::provided("xllamacpp.sh");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/llama_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(gguf)
        .arg("2")
        .env("PYTHONPATH", python_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line.trim().to_string())
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{base} did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One greedy completion: (text, prompt tokens, prompt ms, generated tokens, generation ms).
async fn complete(
    client: &reqwest::Client,
    base: &str,
    prompt: &str,
) -> (String, f64, f64, f64, f64) {
    let body = json!({"messages": [{"role": "user", "content": prompt}], "temperature": 0,
                      "max_tokens": GENERATED, "cache_prompt": false, "seed": 1});
    let r: Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &r["timings"];
    (
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        t["prompt_n"].as_f64().unwrap_or(0.0),
        t["prompt_ms"].as_f64().unwrap_or(0.0),
        t["predicted_n"].as_f64().unwrap_or(0.0),
        t["predicted_ms"].as_f64().unwrap_or(0.0),
    )
}

async fn tokens(client: &reqwest::Client, base: &str, text: &str) -> Vec<u64> {
    let r: Value = client
        .post(format!("{base}/tokenize"))
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn prompts() -> Vec<(&'static str, String)> {
    let sources = "[c1] Lumen Mail sends the variants to the sample, waits for the test window, then sends the winning variant to everyone else. The winner is chosen by open rate, click rate or revenue.\n\
        [c2] Growth and Scale support multivariate tests with up to eight variants.\n\
        [c3] To reach the inbox, authenticate your sending domain with SPF, DKIM and DMARC. Lumen Mail checks these records and warns you before a campaign is sent.\n\
        [c4] Growth costs €79 per month for 10,000 contacts and unlimited e-mails within fair use. It adds five user seats, unlimited automation journeys, SMS campaigns billed per message, predictive send times and multivariate tests with up to eight variants.\n\
        [c5] Lumen Mail has three plans, billed monthly or yearly. Yearly billing saves 20 %. Extra contacts cost €8 per 1,000 on Growth and €5 per 1,000 on Scale.";
    vec![
        (
            "short (chat)",
            "Name three colours and say why people like them.".into(),
        ),
        (
            "section draft (sources)",
            format!(
                "Write the section \"A/B tests\" of the article \"Lumen Mail: A/B tests\" for an e-commerce marketing manager in 2 to 4 sentences, in language en.\nSources:\n{sources}"
            ),
        ),
    ]
}

/// One pipeline run's total and generation time (the Outline and Draft stages are the
/// generator's calls; everything else is the pipeline's own work).
async fn pipeline_overhead(llama: &str) {
    use leitwerk_content::generate::{Budget, Chain, Generator, Prices, Sampling};
    use leitwerk_content::pipeline::{self, Briefing, IndexRetriever, Inputs, Settings};
    use leitwerk_content::redact::Redactor;
    use leitwerk_rag::chunk::Settings as Chunking;
    use leitwerk_rag::documents::{self, Document};
    use leitwerk_rag::embed::Embedder;
    use leitwerk_rag::index::{ChunkingKey, build};
    use leitwerk_rag::search::ExactStore;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/product-docs-rag/docs-configmap.yaml");
    let cm: Value = yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let data: std::collections::BTreeMap<String, String> =
        serde_json::from_value(cm["data"].clone()).unwrap();
    let docs: Vec<Document> = data
        .iter()
        .map(|(k, v)| documents::read("product-docs", k, v.as_bytes()).unwrap())
        .collect();
    let embedder =
        Embedder::load(&leitwerk_benches::provided("minilm.sh"), "all-MiniLM-L6-v2").unwrap();
    let key = ChunkingKey {
        max_word_pieces: 200,
        overlap: 30,
    };
    let chunking = |d: &Document| Chunking {
        structure: d.structure,
        max_word_pieces: 200,
        overlap: 30,
    };
    let (index, _) = build(None, docs, chunking, key, &embedder).unwrap();
    let store = ExactStore::new(index);
    let briefing = Briefing {
        goal: "Explain A/B tests and pricing of Lumen Mail".into(),
        persona: "an e-commerce marketing manager".into(),
        structure: vec!["A/B tests".into(), "Pricing".into()],
        keywords: vec!["Lumen Mail".into()],
        entities: vec!["Lumen Mail".into()],
        language: "en".into(),
    };
    let settings = Settings {
        max_revisions: 0,
        chunks_per_section: 3,
        section_tokens: 64,
        ..Settings::default()
    };
    let mut shares = Vec::new();
    for run in 0..RUNS {
        // A new chain each run: its cache would otherwise answer the repeated prompts.
        let chain = Chain::new(
            vec![Generator {
                name: "smollm2".into(),
                base_url: format!("{llama}/v1"),
                model: "smollm2".into(),
                api_key: None,
                sampling: Sampling {
                    temperature: 0.0,
                    top_p: 1.0,
                    max_tokens: 160,
                    seed: Some(7),
                },
                prices: Prices {
                    input_per_1k: 0.0,
                    output_per_1k: 0.0,
                },
                timeout: Duration::from_secs(300),
                retries: 0,
                requests_per_minute: None,
            }],
            Budget {
                max_tokens: 100_000,
                max_cost: None,
            },
        )
        .unwrap();
        let started = Instant::now();
        let result = pipeline::run(Inputs {
            briefing: &briefing,
            settings: &settings,
            retriever: &IndexRetriever {
                embedder: &embedder,
                store: &store,
            },
            chain: &chain,
            embed: &embedder,
            redactor: &Redactor::new(b"bench"),
            on_stage: &|_| {},
        })
        .await;
        let total = started.elapsed().as_secs_f64() * 1e3;
        let generation: f64 = result
            .stages
            .iter()
            .filter(|s| matches!(s.stage, "Outline" | "Draft"))
            .map(|s| s.duration_ms as f64)
            .sum();
        let own: Vec<String> = result
            .stages
            .iter()
            .filter(|s| !matches!(s.stage, "Outline" | "Draft"))
            .map(|s| format!("{} {} ms", s.stage, s.duration_ms))
            .collect();
        eprintln!(
            "run {run}: {total:.0} ms, generation {generation:.0} ms; {}",
            own.join(", ")
        );
        shares.push((total - generation) / total);
    }
    println!(
        "\npipeline overhead (everything but the generator's calls): {:.1} % of a run (median of {RUNS}; goal ≤ 5 %)",
        median(shares) * 100.0
    );
}

#[tokio::main]
async fn main() {
    let gguf = leitwerk_benches::provided("smollm2.sh");
    let client = reqwest::Client::new();
    let (_a, ours_url) = ours(&gguf);
    let (_b, theirs_url) = theirs(&gguf);
    let theirs_url = theirs_url.trim_end_matches("/v1").to_string();
    wait_up(&client, &ours_url).await;
    wait_up(&client, &theirs_url).await;
    println!(
        "| prompt | tokens in | Leitwerk prompt tok/s | llama.cpp prompt tok/s | ratio | Leitwerk gen tok/s | llama.cpp gen tok/s | ratio | greedy agreement |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, prompt) in prompts() {
        // One warm-up each (page cache, first allocations).
        complete(&client, &ours_url, &prompt).await;
        complete(&client, &theirs_url, &prompt).await;
        let (mut op, mut og, mut tp, mut tg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ours_text, mut theirs_text, mut n_in) = (String::new(), String::new(), 0.0);
        for _ in 0..RUNS {
            let (text, pn, pms, gn, gms) = complete(&client, &ours_url, &prompt).await;
            op.push(pn / pms * 1e3);
            og.push(gn / gms * 1e3);
            ours_text = text;
            n_in = pn;
            let (text, pn, pms, gn, gms) = complete(&client, &theirs_url, &prompt).await;
            tp.push(pn / pms * 1e3);
            tg.push(gn / gms * 1e3);
            theirs_text = text;
        }
        let a = tokens(&client, &ours_url, &ours_text).await;
        let b = tokens(&client, &ours_url, &theirs_text).await;
        let same = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let (op, og, tp, tg) = (median(op), median(og), median(tp), median(tg));
        println!(
            "| {name} | {n_in} | {op:.1} | {tp:.1} | {:.2}× | {og:.1} | {tg:.1} | {:.2}× | {same} of {} |",
            op / tp,
            og / tg,
            a.len().min(b.len())
        );
    }
    pipeline_overhead(&theirs_url).await;
}
