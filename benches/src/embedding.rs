//! Embedding figures of the retrieval benchmark (`cargo bench --bench retrieval -- embedding`
//! and `-- gpu`): throughput at equal work against sentence-transformers, the FLOPs that work
//! costs, and each side's share of this machine's fp32 peak.

use std::time::Instant;

use leitwerk_rag::embed::{Embedder, OnnxDevice};

use crate::scratch;

/// Sentences per batch, on every side.
pub const BATCH: usize = 32;

/// FLOPs of one pass over `texts` as both sides batch them: sorted longest first (by
/// characters), batches of 32, each padded to its longest text in word pieces (`[CLS]` and
/// `[SEP]` included, at most 256). Per padded token and layer 2·(4H² + 2HI) for the projections
/// and the feed-forward block; per sequence and layer 4·S²·H for the attention products.
pub fn encoder_flops(embedder: &Embedder, texts: &[&str]) -> f64 {
    let (layers, h, i) = (6.0, 384.0, 1536.0);
    let mut order: Vec<&str> = texts.to_vec();
    order.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
    order
        .chunks(BATCH)
        .map(|batch| {
            let width = batch
                .iter()
                .map(|t| (embedder.pieces().count(t) + 2).min(256))
                .max()
                .unwrap_or(0) as f64;
            let rows = batch.len() as f64;
            layers
                * (rows * width * 2.0 * (4.0 * h * h + 2.0 * h * i)
                    + rows * 4.0 * width * width * h)
        })
        .sum()
}

/// This machine's fp32 peak in FLOP/s: cores × the clock `/proc/cpuinfo` reports × 64 FLOP
/// per cycle (two AVX-512 FMA units, 16 lanes, 2 FLOP each; 32 without AVX-512). Turbo clocks
/// above the reported one would make the shares below smaller.
pub fn fp32_peak() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mhz: f64 = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")?
                .split(':')
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(2000.0);
    let per_cycle = if info.contains("avx512f") { 64.0 } else { 32.0 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let peak = cores * mhz * 1e6 * per_cycle;
    (
        peak,
        format!(
            "{cores} cores × {mhz:.0} MHz × {per_cycle} FLOP/cycle = {:.0} GFLOP/s",
            peak / 1e9
        ),
    )
}

/// Sentences per second of `embedder` over all of `texts` (its own length sort, batch 32),
/// median of three passes after a warm-up.
pub fn sentences_per_second(embedder: &Embedder, texts: &[&str]) -> f64 {
    embedder.embed(&texts[..BATCH]).unwrap(); // warm-up
    let mut times: Vec<_> = (0..3)
        .map(|_| {
            let t = Instant::now();
            embedder.embed(texts).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    texts.len() as f64 / times[1].as_secs_f64()
}

/// Embedding throughput at equal work: Leitwerk on candle and on ONNX Runtime (the graph of
/// fused operators it writes from the weights), and sentence-transformers (PyTorch), all three
/// sorting the same sentences by length and batching 32, on two threads; each side's share of
/// the fp32 peak.
pub fn embedding_throughput(candle: &Embedder, sentences: &[String], model: &std::path::Path) {
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let flops = encoder_flops(candle, &refs) / refs.len() as f64;
    let (peak, peak_text) = fp32_peak();
    let report = |who: &str, per_s: f64| {
        let gflops = per_s * flops / 1e9;
        println!(
            "embedding: {who} {per_s:.1} sentences/s, {gflops:.1} GFLOP/s, {:.0} % of the fp32 peak",
            100.0 * gflops * 1e9 / peak
        );
    };
    println!(
        "embedding: {} sentences sorted by length, batch {BATCH}, {:.1} MFLOP per sentence; fp32 peak {peak_text}",
        refs.len(),
        flops / 1e6
    );
    let ours = sentences_per_second(candle, &refs);
    report("Leitwerk (candle)", ours);
    let environment = ort::init_from(crate::onnxruntime())
        .unwrap()
        .with_name("leitwerk-bench")
        .build()
        .unwrap();
    let onnx = Embedder::load_onnx(
        model,
        "all-MiniLM-L6-v2",
        &environment,
        Some(2),
        OnnxDevice::Cpu,
    )
    .unwrap();
    let ours_onnx = sentences_per_second(&onnx, &refs);
    report("Leitwerk (ONNX Runtime, fused graph)", ours_onnx);
    let dir = scratch("retrieval-st");
    let input = dir.join("sentences.json");
    std::fs::write(&input, serde_json::to_vec(sentences).unwrap()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sentence_transformers_reference.py");
    let python = std::env::var("LEITWERK_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(model)
        .arg(&input)
        .arg(BATCH.to_string())
        .output()
        .expect("run python3");
    if !out.status.success() {
        println!(
            "embedding: sentence-transformers DID NOT RUN (pip install sentence-transformers): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
        return;
    }
    let theirs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    report("sentence-transformers (PyTorch)", theirs);
    println!(
        "embedding: ratio Leitwerk / sentence-transformers: ONNX Runtime {:.2}x, candle {:.2}x",
        ours_onnx / theirs,
        ours / theirs
    );
}

/// The encoder on the GPU: the onnxruntime-gpu library (`tests/onnxruntime-gpu.sh`), CUDA
/// asked for. On a machine that has a GPU and the CUDA libraries: throughput at equal work and
/// the largest difference from candle on the CPU; elsewhere, the reason it stayed on the CPU.
pub fn gpu_figures(candle: &Embedder, sentences: &[String], model: &std::path::Path) {
    let library = crate::provided("onnxruntime-gpu.sh");
    let environment = ort::init_from(&library)
        .unwrap()
        .with_name("leitwerk-bench-gpu")
        .build()
        .unwrap();
    let gpu = Embedder::load_onnx(
        model,
        "all-MiniLM-L6-v2",
        &environment,
        None,
        OnnxDevice::Cuda,
    )
    .unwrap();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    if !gpu.on_gpu() {
        println!(
            "gpu: DID NOT RUN on a GPU ({}); the encoder fell back to the CPU: {}",
            library.display(),
            gpu.fallback().unwrap_or("no reason given")
        );
        return;
    }
    let per_s = sentences_per_second(&gpu, &refs);
    let flops = encoder_flops(candle, &refs) / refs.len() as f64;
    let want = candle.embed(&refs[..64]).unwrap();
    let got = gpu.embed(&refs[..64]).unwrap();
    let worst = want
        .iter()
        .flatten()
        .zip(got.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0_f32, f32::max);
    println!(
        "gpu: Leitwerk (ONNX Runtime, CUDA) {per_s:.1} sentences/s, {:.1} GFLOP/s; max |CUDA − candle CPU| over 64 sentences {worst:.2e}",
        per_s * flops / 1e9
    );
}
