//! Retrieval: embedding throughput against sentence-transformers (PyTorch, CPU) on the same
//! weights and sentences; query latency at 10,000 and 100,000 chunks of the embedded exact
//! store and of a real Qdrant server (HNSW), the server's recall@10 measured against the exact
//! store; a full build per 1,000 chunks and an incremental rebuild after one changed document
//! among those. `-- query` runs the query figures only.
//!
//! `cargo bench --workspace --bench retrieval --profile dev` (the peer: `pip install
//! sentence-transformers`, its Python in `LEITWERK_PYTHON`; the benchmark says so when it is
//! missing)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed step aborts the run

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use leitwerk_benches::embedding::{embedding_throughput, gpu_figures};
use leitwerk_benches::{scratch, summary};
use leitwerk_rag::chunk::Settings;
use leitwerk_rag::documents::{self, Document};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::{ChunkingKey, build};
use leitwerk_rag::search::{ExactStore, Filter, VectorStore};
use rand::{RngExt, SeedableRng};

/// Per-dimension noise of a clustered chunk around its centre: about 0.8 cosine in 384
/// dimensions.
const CLUSTER_SPREAD: f32 = 0.066;

fn model_dir() -> std::path::PathBuf {
    leitwerk_benches::provided("minilm.sh")
}

/// The example corpus's documents, and its paragraphs as sentences to embed.
fn corpus() -> (Vec<Document>, Vec<String>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/product-docs-rag/docs-configmap.yaml");
    let cm: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let data: BTreeMap<String, String> = serde_json::from_value(cm["data"].clone()).unwrap();
    let docs: Vec<Document> = data
        .iter()
        .map(|(k, v)| documents::read("product-docs", k, v.as_bytes()).unwrap())
        .collect();
    let sentences = data
        .values()
        .flat_map(|t| t.split("\n\n").map(str::trim).filter(|p| p.len() > 20))
        .map(String::from)
        .collect();
    (docs, sentences)
}

fn settings(d: &Document) -> Settings {
    Settings {
        structure: d.structure,
        max_word_pieces: 64,
        overlap: 8,
    }
}

const KEY: ChunkingKey = ChunkingKey {
    max_word_pieces: 64,
    overlap: 8,
};

/// Unit vector of `v`.
fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `v` moved by Gaussian-like noise of `spread` per dimension (a sum of uniforms), unit.
fn near(rng: &mut rand::rngs::StdRng, v: &[f32], spread: f32) -> Vec<f32> {
    unit(
        v.iter()
            .map(|x| {
                let noise: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>();
                x + noise * spread
            })
            .collect(),
    )
}

/// `n` chunks as an index: with `centres`, each chunk near one of them (cosine about 0.8 to its
/// centre), as real embeddings cluster by topic; without, uniformly random unit vectors (the
/// latency of exact search does not depend on the values; for a graph index they are the
/// worst case, every distance nearly the same).
fn synthetic_index(n: usize, centres: Option<&[Vec<f32>]>) -> leitwerk_rag::index::Index {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let template = {
        let (docs, _) = corpus();
        docs.into_iter().next().unwrap()
    };
    let mut index_docs = BTreeMap::new();
    let per_doc = 100;
    for d in 0..n / per_doc {
        let chunks = (0..per_doc)
            .map(|c| {
                let v = match centres {
                    Some(centres) => {
                        let centre = &centres[rng.random_range(0..centres.len())];
                        near(&mut rng, centre, CLUSTER_SPREAD)
                    }
                    None => unit((0..384).map(|_| rng.random::<f32>() - 0.5).collect()),
                };
                leitwerk_rag::index::StoredChunk {
                    id: format!("d{d}#{c}"),
                    document: format!("d{d}"),
                    text: String::new(),
                    section: String::new(),
                    word_pieces: 0,
                    vector: v,
                    personal_data: 0,
                    flagged: false,
                    quarantined: false,
                }
            })
            .collect();
        index_docs.insert(
            format!("d{d}"),
            leitwerk_rag::index::StoredDocument {
                id: format!("d{d}"),
                source: "bench".into(),
                title: template.title.clone(),
                url: None,
                metadata: BTreeMap::new(),
                digest: String::new(),
                hidden_words: 0,
                personal_data: BTreeMap::new(),
                injection: 0,
                chunks,
            },
        );
    }
    let embedder_identity = Embedder::load(&model_dir(), "all-MiniLM-L6-v2")
        .unwrap()
        .identity()
        .clone();
    leitwerk_rag::index::Index {
        model: embedder_identity,
        chunking: KEY,
        documents: index_docs,
        safety: Default::default(),
    }
}

/// Query latency of the embedded exact store over `index`, and the top 10 of each query (the
/// reference for recall: exact search finds the true nearest chunks by definition).
fn exact_queries(index: &leitwerk_rag::index::Index, queries: &[Vec<f32>]) -> Vec<Vec<String>> {
    let n = index.chunks().count();
    let store = ExactStore::new(index.clone());
    let mut samples: Vec<Duration> = Vec::new();
    let mut truth = Vec::new();
    for round in 0..3 {
        for q in queries {
            let t = Instant::now();
            let hits = store.search(q, 10, &Filter::new()).unwrap();
            samples.push(t.elapsed());
            assert_eq!(hits.len(), 10);
            if round == 0 {
                truth.push(hits.into_iter().map(|h| h.chunk).collect());
            }
        }
    }
    let (p50, p99, _) = summary(samples);
    println!(
        "query: {n} chunks, embedded exact store, top 10: p50 {:.2} ms, p99 {:.2} ms (the reference for recall)",
        p50 / 1000.0,
        p99 / 1000.0
    );
    truth
}

/// The same index in a real Qdrant server (HNSW once its optimizer is done): query latency
/// through the gRPC client and recall@10 against the exact store's `truth`, measured.
fn qdrant_queries(
    index: &leitwerk_rag::index::Index,
    queries: &[Vec<f32>],
    truth: &[Vec<String>],
    runtime: &tokio::runtime::Runtime,
) {
    use leitwerk_testkit::qdrant::{QdrantProcess, absent_notice};
    let n = index.chunks().count();
    let dir = scratch(&format!("retrieval-qdrant-{n}"));
    runtime.block_on(async {
        let Some(server) = QdrantProcess::start(&dir, "bench-key").await.unwrap() else {
            println!("query: {}", absent_notice(&format!("the Qdrant figures at {n} chunks")));
            return;
        };
        let store = leitwerk_rag::qdrant::Store::connect(&server.grpc_url, Some(server.api_key.clone())).unwrap();
        let t = Instant::now();
        store.write("bench", "bench", index).await.unwrap();
        let written = t.elapsed();
        // Wait for the optimizer, so that the figures are HNSW's and not a scan of a segment
        // still being indexed (bounded: 10 minutes).
        let t = Instant::now();
        let mut state = store.state("bench").await.unwrap();
        while !state.green && t.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            state = store.state("bench").await.unwrap();
        }
        let indexing = t.elapsed();
        let mut samples = Vec::new();
        let mut found = 0usize;
        for round in 0..3 {
            for (q, want) in queries.iter().zip(truth) {
                let t = Instant::now();
                let (hits, _) = store.search("bench", q, None, 10, &Filter::new()).await.unwrap();
                samples.push(t.elapsed());
                if round == 0 {
                    found += hits.iter().filter(|h| want.contains(&h.chunk)).count();
                }
            }
        }
        let (p50, p99, _) = summary(samples);
        let recall = found as f64 / (10 * queries.len()) as f64;
        println!(
            "query: {n} chunks, Qdrant server (HNSW over {} of {} vectors, green {}), top 10 over gRPC: p50 {:.2} ms, p99 {:.2} ms, recall@10 against the exact store {recall:.3} (written in {:.1} s, indexed {:.1} s later)",
            state.indexed,
            state.points,
            state.green,
            p50 / 1000.0,
            p99 / 1000.0,
            written.as_secs_f64(),
            indexing.as_secs_f64()
        );
    });
}

fn main() {
    let model = model_dir();
    let embedder = Embedder::load(&model, "all-MiniLM-L6-v2").unwrap();
    let (docs, sentences) = corpus();
    let sentences: Vec<String> = sentences.into_iter().cycle().take(512).collect();
    // `-- gpu`: the encoder on ONNX Runtime's CUDA provider (the onnxruntime-gpu library).
    if std::env::args().any(|a| a == "gpu") {
        gpu_figures(&embedder, &sentences, &model);
        return;
    }
    // `-- query`: the query figures only.
    if std::env::args().any(|a| a == "query") {
        query_figures(&embedder, &sentences);
        return;
    }
    embedding_throughput(&embedder, &sentences, &model);
    // `-- embedding`: the embedding figures only.
    if std::env::args().any(|a| a == "embedding") {
        return;
    }

    // Builds: the corpus copied until it has at least 1,000 chunks.
    let per_copy: usize = docs
        .iter()
        .map(|d| {
            leitwerk_rag::chunk::split(&d.text, &settings(d), embedder.pieces())
                .unwrap()
                .len()
        })
        .sum();
    let mut many = Vec::new();
    for copy in 0..1000_usize.div_ceil(per_copy) {
        for d in &docs {
            let mut d = d.clone();
            d.id = format!("{}-{copy}", d.id);
            d.digest = documents::digest(format!("{}{copy}", d.digest).as_bytes());
            many.push(d);
        }
    }
    let t = Instant::now();
    let (full, report) = build(None, many.clone(), settings, KEY, &embedder).unwrap();
    let full_time = t.elapsed();
    let chunks = report.chunks;
    let mut edited = many.clone();
    edited[0]
        .text
        .push_str("\n\nOne more paragraph about invoices.");
    edited[0].digest = documents::digest(edited[0].text.as_bytes());
    let t = Instant::now();
    let (_, inc) = build(Some(&full), edited, settings, KEY, &embedder).unwrap();
    let inc_time = t.elapsed();
    println!(
        "build: {} documents, {chunks} chunks from scratch in {:.2} s ({:.2} s per 1,000 chunks)",
        many.len(),
        full_time.as_secs_f64(),
        full_time.as_secs_f64() * 1000.0 / chunks as f64
    );
    println!(
        "build: one changed document ({} chunks embedded) in {:.3} s: {:.1} % of the full build",
        inc.embedded,
        inc_time.as_secs_f64(),
        100.0 * inc_time.as_secs_f64() / full_time.as_secs_f64()
    );

    query_figures(&embedder, &sentences);
}

/// Query latency at 10,000 and 100,000 chunks: the embedded exact store, then the same index
/// in a Qdrant server, with its recall measured against the exact store.
fn query_figures(embedder: &Embedder, sentences: &[String]) {
    let refs: Vec<&str> = sentences.iter().take(200).map(String::as_str).collect();
    let queries = embedder.embed(&refs).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Clustered: the centres are the corpus's sentence vectors; each query is a fresh point
    // near one of them, so its true neighbours are that topic's chunks.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let near_queries: Vec<Vec<f32>> = queries
        .iter()
        .map(|c| near(&mut rng, c, CLUSTER_SPREAD))
        .collect();
    let mut cos = 0.0;
    for (q, c) in near_queries.iter().zip(&queries) {
        cos += q.iter().zip(c).map(|(a, b)| a * b).sum::<f32>();
    }
    println!(
        "query: clustered chunks lie at cosine {:.2} from their topic's centre on average",
        cos / queries.len() as f32
    );
    for n in [10_000, 100_000] {
        for (what, centres, asked) in [
            ("clustered", Some(queries.as_slice()), &near_queries),
            ("uniformly random", None, &queries),
        ] {
            println!("query: {n} {what} chunks");
            let index = synthetic_index(n, centres);
            let truth = exact_queries(&index, asked);
            qdrant_queries(&index, asked, &truth, &runtime);
        }
    }
}
