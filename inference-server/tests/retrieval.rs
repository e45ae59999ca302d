//! The server binary serving a RagIndex version built from the example corpus: answers over
//! REST agree with the library's evaluation (and over gRPC with REST), `/v1/embeddings` returns the model's vectors,
//! refusals name the field, and an index built with another model is refused at start.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leitwerk_rag::chunk::Settings;
use leitwerk_rag::documents;
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::eval::{evaluate, parse_labelled};
use leitwerk_rag::index::{ChunkingKey, build};
use leitwerk_rag::search::{ExactStore, Filter, VectorStore};
use leitwerk_testkit::{example_config_map, free_port, provided};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-inference-server");

fn example(file: &str) -> anyhow::Result<BTreeMap<String, String>> {
    example_config_map(&format!("product-docs-rag/{file}"))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(format!("{base}/v2/health/ready")).await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not become ready")
}

/// The server binary with the embedding model in `model_dir` and `flags`, once it is ready:
/// the process, its REST base URL and its gRPC port.
async fn serve(
    model_dir: &std::path::Path,
    flags: &[&str],
) -> anyhow::Result<(Running, String, u16)> {
    let (http, grpc) = (free_port()?, free_port()?);
    let server = Running(
        Command::new(BIN)
            .arg("--embedding-model-dir")
            .arg(model_dir)
            .args(flags)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http}");
    wait_ready(&base).await?;
    Ok((server, base, grpc))
}

async fn post(url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new().post(url).json(body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_the_labelled_queries_as_the_evaluation_says() -> anyhow::Result<()> {
    let model_dir = provided("minilm.sh")?;
    let embedder = Embedder::load(&model_dir, "all-MiniLM-L6-v2")?;
    let docs: Vec<documents::Document> = example("docs-configmap.yaml")?
        .iter()
        .map(|(k, v)| documents::read("product-docs", k, v.as_bytes()))
        .collect::<Result<_, _>>()?;
    let key = ChunkingKey {
        max_word_pieces: 200,
        overlap: 30,
    };
    let settings = |d: &documents::Document| Settings {
        structure: d.structure,
        max_word_pieces: 200,
        overlap: 30,
    };
    let (index, _) = build(None, docs, settings, key, &embedder)?;
    let dir = std::env::temp_dir().join(format!("leitwerk-retrieval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("index.lwrag");
    std::fs::write(&file, index.to_bytes())?;
    let version: String = index
        .digest()
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect();

    // What the evaluation says: how many labelled queries get a relevant document first.
    let set = parse_labelled(example("eval-configmap.yaml")?["queries.jsonl"].as_str())?;
    let store = ExactStore::new(index.clone());
    let vectors = embedder.embed(&set.iter().map(|l| l.query.as_str()).collect::<Vec<_>>())?;
    let ranked: Vec<Vec<String>> = vectors
        .iter()
        .map(|v| {
            store
                .search(v, 40, &Filter::new())
                .map(|hits| hits.into_iter().map(|h| h.document).collect())
        })
        .collect::<Result<_, _>>()?;
    let expected = evaluate(&set, &ranked, 5);

    let index_arg = format!("product-docs=file://{}", file.display());
    let (server, base, grpc) = serve(&model_dir, &["--index", index_arg.as_str()]).await?;
    let url = format!("{base}/v1/indexes/product-docs/query");
    let mut first_relevant = 0;
    for labelled in &set {
        let (status, body) = post(&url, &json!({"query": labelled.query, "topK": 3})).await?;
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().cloned().unwrap_or_default();
        assert_eq!(results.len(), 3);
        assert_eq!(body["version"], version.as_str());
        let first = results[0]["document"].as_str().unwrap_or_default();
        if labelled.relevant.iter().any(|r| r == first) {
            first_relevant += 1;
        }
        for r in &results {
            assert!(r["title"].is_string() && r["section"].is_string() && r["text"].is_string());
            assert_eq!(r["version"], version.as_str());
        }
    }
    assert_eq!(first_relevant, expected.first_relevant);
    assert!(
        first_relevant * 10 >= set.len() * 8,
        "{first_relevant}/{}",
        set.len()
    );

    // A filter restricts the results; an unknown field, a bad topK or mode, an unknown index
    // are refused naming what is wrong.
    let (_, body) = post(
        &url,
        &json!({"query": "price", "topK": 5, "filter": {"document": "product-docs/plan-scale.md"}}),
    )
    .await?;
    let results = body["results"].as_array().cloned().unwrap_or_default();
    assert!(!results.is_empty());
    assert!(
        results
            .iter()
            .all(|r| r["document"] == "product-docs/plan-scale.md")
    );
    for (request, status, needle) in [
        (
            json!({"query": "x", "filter": {"colour": "red"}}),
            400,
            "\"colour\"",
        ),
        (json!({"query": "x", "topK": 0}), 400, "topK"),
        (json!({"query": "x", "mode": "Sparse"}), 400, "Hybrid"),
        (json!({"query": ""}), 400, "query"),
        (json!({"question": "x"}), 400, "query"),
    ] {
        let (got, body) = post(&url, &request).await?;
        assert_eq!(got, status, "{request}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(needle),
            "{body}"
        );
    }
    // Hybrid: dense and BM25 fused by reciprocal rank (scores at most 2 / 61).
    let (got, body) = post(
        &url,
        &json!({"query": "charity discount nonprofit", "topK": 3, "mode": "Hybrid"}),
    )
    .await?;
    assert_eq!(got, 200, "{body}");
    let results = body["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "{body}");
    let top = results[0]["score"].as_f64().unwrap_or(1.0);
    assert!(top > 0.0 && top <= 2.0 / 61.0 + 1e-6, "{body}");
    let (got, body) = post(
        &format!("{base}/v1/indexes/nope/query"),
        &json!({"query": "x"}),
    )
    .await?;
    assert_eq!(got, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("product-docs"),
        "{body}"
    );

    // gRPC answers the same query with the same chunks, and refuses the same way.
    use leitwerk_inference_server::retrieval::pb;
    let mut client =
        pb::retrieval_client::RetrievalClient::connect(format!("http://127.0.0.1:{grpc}")).await?;
    let question = "Is there a discount for charities?";
    let (_, rest) = post(&url, &json!({"query": question, "topK": 4})).await?;
    let answer = client
        .query(pb::QueryRequest {
            index: "product-docs".into(),
            query: question.into(),
            top_k: 4,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(answer.version, version);
    let grpc_docs: Vec<&str> = answer.results.iter().map(|c| c.document.as_str()).collect();
    let rest_docs: Vec<&str> = rest["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|h| h["document"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(grpc_docs, rest_docs);
    for (request, code) in [
        (
            pb::QueryRequest {
                index: "nope".into(),
                query: "x".into(),
                ..Default::default()
            },
            tonic::Code::NotFound,
        ),
        (
            pb::QueryRequest {
                index: "product-docs".into(),
                query: "x".into(),
                top_k: 1000,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
    ] {
        let err = client.query(request).await.err().map(|e| e.code());
        assert_eq!(err, Some(code));
    }

    // Embeddings, OpenAI-compatible, equal to the library's.
    let texts = ["How do I cancel?", "Preise für SMS"];
    let (status, body) = post(
        &format!("{base}/v1/embeddings"),
        &json!({"input": texts, "model": "all-MiniLM-L6-v2"}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let want = embedder.embed(&texts)?;
    for (i, w) in want.iter().enumerate() {
        let got: Vec<f32> = serde_json::from_value(body["data"][i]["embedding"].clone())?;
        let diff = got
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(diff < 1e-6, "{diff}");
    }
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 4);
    let (status, _) = post(
        &format!("{base}/v1/embeddings"),
        &json!({"input": "x", "model": "text-embedding-3-small"}),
    )
    .await?;
    assert_eq!(status, 404);

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let line = format!(
        "leitwerk_inference_index_queries_total{{index=\"product-docs\",version=\"{version}\"}}"
    );
    assert!(metrics.contains(&line), "{metrics}");
    drop(server);

    // An index embedded with another model is refused at start, naming both.
    let mut foreign = index.clone();
    foreign.model.weights_digest = "sha256:0000".into();
    let other = dir.join("foreign.lwrag");
    std::fs::write(&other, foreign.to_bytes())?;
    let out = Command::new(BIN)
        .arg("--embedding-model-dir")
        .arg(&model_dir)
        .arg("--index")
        .arg(format!("old=file://{}", other.display()))
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("index old was embedded with") && stderr.contains("sha256:0000"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// With `--max-batch-size`, concurrent embeddings requests share runs of the encoder (on ONNX
/// Runtime, as served in production), and each still gets its own texts' vectors, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_embeddings_are_batched_and_each_gets_its_own_vectors() -> anyhow::Result<()> {
    let model_dir = provided("minilm.sh")?;
    let ort = provided("onnxruntime.sh")?;
    let embedder = Embedder::load(&model_dir, "all-MiniLM-L6-v2")?;
    let ort = ort.display().to_string();
    let flags = ["--onnxruntime", ort.as_str(), "--max-batch-size", "32"];
    let (server, base, _) = serve(&model_dir, &flags).await?;
    // 24 requests at once, of one to three texts each, of different lengths (so that a batch
    // pads them and sorts them by length before it runs).
    let requests: Vec<Vec<String>> = (0..24)
        .map(|i| {
            (0..=i % 3)
                .map(|j| {
                    format!(
                        "campaign {i} text {j}: {}",
                        "spend and reach ".repeat(i + j)
                    )
                })
                .collect()
        })
        .collect();
    let url = format!("{base}/v1/embeddings");
    let bodies: Vec<Value> = requests.iter().map(|t| json!({ "input": t })).collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| post(&url, b))).await;
    for (texts, answer) in requests.iter().zip(answers) {
        let (status, body) = answer?;
        assert_eq!(status, 200, "{body}");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let want = embedder.embed(&refs)?;
        let data = body["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(data.len(), texts.len(), "{body}");
        for (i, w) in want.iter().enumerate() {
            assert_eq!(data[i]["index"], i);
            let got: Vec<f32> = serde_json::from_value(data[i]["embedding"].clone())?;
            let diff = got
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0_f32, f32::max);
            assert!(diff < 1e-5, "{texts:?}[{i}]: {diff}");
        }
    }
    // Every text was embedded once, in fewer runs than requests.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let texts: usize = requests.iter().map(Vec::len).sum();
    assert_eq!(
        value("leitwerk_inference_embedding_batch_texts_sum"),
        texts as f64
    );
    let runs = value("leitwerk_inference_embedding_batch_texts_count");
    assert!(runs >= 1.0 && runs < requests.len() as f64, "{runs} runs");
    drop(server);
    Ok(())
}
