//! Leitwerk's embeddings, on candle and on ONNX Runtime, against an independent implementation
//! over the same weights
//! (`tests/embeddings/reference.py`: its own WordPiece and a numpy encoder, one sentence at a
//! time), computed in the same run.

use std::io::Write;
use std::process::{Command, Stdio};

use leitwerk_rag::embed::{CANDLE, Embedder, MAX_WORD_PIECES, ONNX_RUNTIME, OnnxDevice, cosine};
use leitwerk_testkit::{provided, repo_root};

/// A few hundred sentences of the kinds an index sees: questions, product copy, prices and
/// SKUs, accents, punctuation, CJK, an emoji, and one longer than the model reads.
fn sentences() -> Vec<String> {
    let subjects = [
        "the pro plan",
        "our starter bundle",
        "the analytics add-on",
        "a yearly subscription",
        "the Müller GmbH contract",
        "SKU LW-4471-B",
    ];
    let verbs = [
        "includes",
        "costs",
        "renews",
        "can be cancelled",
        "ships with",
        "is refunded",
    ];
    let objects = [
        "unlimited seats.",
        "€49 per month, VAT included!",
        "a 14-day free trial?",
        "priority support (24/7).",
        "the café's crème brûlée voucher.",
        "within 30 days — no questions asked.",
        "e-mail and SMS campaigns; A/B tests too.",
        "version 2.3.1 of the API",
    ];
    let mut out = Vec::new();
    for s in subjects {
        for v in verbs {
            for o in objects {
                out.push(format!("{s} {v} {o}"));
            }
        }
    }
    out.extend(
        [
            "How do I reset my password?",
            "I forgot my password",
            "Wie kündige ich mein Abonnement?",
            "价格 包括 增值税",
            "Great deal 🎉 on shoes",
            "ALL CAPS HEADLINE: SPRING SALE",
            "tab\tseparated and\u{a0}non-breaking space",
        ]
        .map(String::from),
    );
    out.push("conversion rate optimisation ".repeat(120));
    out
}

#[test]
fn embeddings_match_an_independent_implementation_within_1e_5() -> anyhow::Result<()> {
    let model_dir = provided("minilm.sh")?;
    let python = provided("numpy-python.sh")?;
    let sentences = sentences();
    assert!(sentences.len() >= 250, "{}", sentences.len());

    let mut child = Command::new(python)
        .arg(repo_root().join("tests/embeddings/reference.py"))
        .arg(&model_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(sentences.join("\n").as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "reference.py failed");
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let expected: Vec<Vec<f64>> = serde_json::from_value(reference["vectors"].clone())?;
    assert_eq!(expected.len(), sentences.len());

    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    // Both engines, each against the reference: candle, and ONNX Runtime on the graph of
    // fused operators that Leitwerk writes from the same weights.
    let ort = provided("onnxruntime.sh")?;
    let environment = ort::init_from(&ort)?
        .with_name("leitwerk-rag-test")
        .build()?;
    let onnx = Embedder::load_onnx(
        &model_dir,
        "all-MiniLM-L6-v2",
        &environment,
        None,
        OnnxDevice::Cpu,
    )?;
    assert_eq!(onnx.engine(), ONNX_RUNTIME);
    let embedder = Embedder::load(&model_dir, "all-MiniLM-L6-v2")?;
    assert_eq!(embedder.engine(), CANDLE);
    for engine in [&embedder, &onnx] {
        let vectors = engine.embed(&texts)?;
        assert_eq!(vectors.len(), sentences.len());
        let mut worst = (0.0_f64, 0);
        for (i, (got, want)) in vectors.iter().zip(&expected).enumerate() {
            assert_eq!(got.len(), 384);
            assert_eq!(want.len(), 384);
            for (g, w) in got.iter().zip(want) {
                let d = (f64::from(*g) - w).abs();
                if d > worst.0 {
                    worst = (d, i);
                }
            }
        }
        eprintln!(
            "{} sentences, max |{} − reference| = {:.2e} (sentence {})",
            sentences.len(),
            engine.engine(),
            worst.0,
            worst.1
        );
        assert!(
            worst.0 <= 1e-5,
            "{}: sentence {:?} differs by {:.2e}",
            engine.engine(),
            sentences[worst.1],
            worst.0
        );
        assert_eq!(
            engine.identity(),
            embedder.identity(),
            "one model, one identity"
        );
    }

    // A GPU asked of the CPU-only library: the encoder stays on the CPU, says why, and gives
    // the same vectors.
    let fallback = Embedder::load_onnx(
        &model_dir,
        "all-MiniLM-L6-v2",
        &environment,
        None,
        OnnxDevice::Cuda,
    )?;
    assert!(!fallback.on_gpu() && !onnx.on_gpu());
    let why = fallback.fallback().unwrap_or_default();
    assert!(
        why.contains("no CUDA execution provider") && why.contains("onnxruntime-gpu"),
        "{why}"
    );
    assert_eq!(onnx.fallback(), None);
    let few = &texts[..8];
    assert_eq!(fallback.embed(few)?, onnx.embed(few)?);

    // The identity names the weights and tokenizer it was computed with.
    let id = embedder.identity();
    assert_eq!((id.dimension, id.pooling.as_str()), (384, "mean"));
    assert!(id.weights_digest.starts_with("sha256:") && id.tokenizer_digest.len() == 71);
    // Meaning: a paraphrase is close, an unrelated sentence is not.
    let v = embedder.embed(&[
        "How do I reset my password?",
        "I forgot my password",
        "Great deal on shoes",
    ])?;
    assert!(cosine(&v[0], &v[1]) > 0.7 && cosine(&v[0], &v[2]) < 0.2);
    // The long sentence was truncated to what the model reads, in both implementations.
    let ids: Vec<Vec<u32>> = serde_json::from_value(reference["ids"].clone())?;
    assert_eq!(ids.last().map(Vec::len), Some(MAX_WORD_PIECES));
    assert!(
        embedder
            .pieces()
            .count(sentences.last().map_or("", String::as_str))
            > MAX_WORD_PIECES
    );
    Ok(())
}
