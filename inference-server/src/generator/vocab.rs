//! The tokenizer of a GGUF model, built from the file's own vocabulary and merges
//! (`tokenizer.ggml.*`): a byte-level BPE (GPT-2 style) as the `tokenizers` crate runs it,
//! with the pre-tokenizer the file names (`tokenizer.ggml.pre`) and the control tokens
//! (ChatML's `<|im_start|>`, `<|im_end|>`) matched whole. It must encode exactly as the
//! llama.cpp server does on the same file; `inference-server/tests/generator.rs` checks that
//! against its `/tokenize`.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{Value as Json, json};
use tokenizers::Tokenizer;

use super::Error;

/// GGUF token types (`tokenizer.ggml.token_type`): control tokens are special.
const CONTROL: i32 = 3;
/// User-defined tokens are matched whole too, but are not special.
const USER_DEFINED: i32 = 4;

fn meta<'a>(content: &'a Content, key: &str) -> Result<&'a Value, Error> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| Error::Model(format!("the GGUF file has no {key}")))
}

fn strings(content: &Content, key: &str) -> Result<Vec<String>, Error> {
    meta(content, key)?
        .to_vec()
        .map_err(|e| Error::Model(format!("{key}: {e}")))?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| Error::Model(format!("{key}: {e}")))
        })
        .collect()
}

/// The pre-tokenizer of `tokenizer.ggml.pre`, as `tokenizer.json` writes it. Only the
/// byte-level BPE families are known; another name is refused rather than guessed.
fn pre_tokenizer(pre: &str) -> Result<Json, Error> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match pre {
        // SmolLM (and StarCoder): every digit alone, then GPT-2's split.
        "smollm" | "starcoder" | "refact" => Ok(json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        })),
        "gpt2" | "default" => Ok(byte_level),
        other => Err(Error::Model(format!(
            "tokenizer.ggml.pre is {other:?}: this server builds byte-level BPE tokenizers of the gpt2 and smollm families only"
        ))),
    }
}

/// The tokenizer of a GGUF file, and the ids of its special tokens by text.
pub fn from_gguf(content: &Content) -> Result<(Tokenizer, HashMap<String, u32>), Error> {
    let model = meta(content, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| Error::Model(e.to_string()))?;
    if model != "gpt2" {
        return Err(Error::Model(format!(
            "tokenizer.ggml.model is {model:?}: only byte-level BPE (gpt2) vocabularies are supported"
        )));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| Error::Model(e.to_string()))?
            .iter()
            .map(|t| t.to_i32().unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("default", String::as_str);
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let mut specials = HashMap::new();
    let added: Vec<Json> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL) | Some(&USER_DEFINED)))
        .map(|(i, t)| {
            let special = types.get(i) == Some(&CONTROL);
            if special {
                specials.insert(t.clone(), i as u32);
            }
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let definition = json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let tokenizer = Tokenizer::from_bytes(definition.to_string().as_bytes()).map_err(|e| {
        Error::Model(format!(
            "the GGUF vocabulary does not make a tokenizer: {e}"
        ))
    })?;
    Ok((tokenizer, specials))
}
