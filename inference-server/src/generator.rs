//! Leitwerk's own local generator: a small quantized model (GGUF, llama architecture) run
//! with candle's `quantized_llama`, its tokenizer built from the file's own vocabulary
//! ([`vocab`]), its chat template (`tokenizer.chat_template`) rendered with minijinja as the
//! llama.cpp server renders it, and sampling by temperature, top-p and seed. The server
//! answers OpenAI-compatible chat completions with it ([`http`]), streamed or whole.
//!
//! One model answers one request at a time (its attention cache is per sequence); requests
//! queue on its lock.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

pub mod http;
pub mod vocab;

/// Why the generator cannot load or answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a model this server runs.
    #[error("{0}")]
    Model(String),
    /// The request cannot be answered as asked.
    #[error("{0}")]
    Request(String),
    /// The model failed while running.
    #[error("generation failed: {0}")]
    Run(String),
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus mass; 1 keeps every token.
    pub top_p: f64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Seed of the sampler.
    pub seed: u64,
}

/// What one generation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The text.
    pub text: String,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Why it stopped: `stop` (end of turn) or `length`.
    pub finish_reason: &'static str,
    /// Seconds spent on the prompt (prefill).
    pub prompt_seconds: f64,
    /// Seconds spent generating after the prompt.
    pub generation_seconds: f64,
}

/// A loaded model.
pub struct Generator {
    /// The model's name (its file name without `.gguf`).
    pub name: String,
    model: Mutex<ModelWeights>,
    tokenizer: Tokenizer,
    template: Option<String>,
    bos: Option<(u32, String)>,
    stops: Vec<u32>,
    eos_text: String,
    context: usize,
    device: Device,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("name", &self.name)
            .finish()
    }
}

fn token_id(content: &gguf_file::Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl Generator {
    /// Loads a GGUF file on the CPU.
    pub fn load(path: &Path) -> Result<Generator, Error> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| Error::Model(format!("cannot open {}: {e}", path.display())))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| Error::Model(format!("{} is not a GGUF file: {e}", path.display())))?;
        let (tokenizer, specials) = vocab::from_gguf(&content)?;
        let tokens = content
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .cloned()
            .unwrap_or_default();
        let text_of = |id: u32| {
            tokens
                .get(id as usize)
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_default()
        };
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = token_id(&content, "tokenizer.ggml.bos_token_id")
            .filter(|_| add_bos)
            .map(|id| (id, text_of(id)));
        let eos = token_id(&content, "tokenizer.ggml.eos_token_id");
        let mut stops: Vec<u32> = eos.into_iter().collect();
        for end in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = specials.get(end)
                && !stops.contains(id)
            {
                stops.push(*id);
            }
        }
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(2048, |c| c as usize);
        let device = Device::Cpu;
        let model = ModelWeights::from_gguf(content, &mut file, &device)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "local".into());
        Ok(Generator {
            name,
            model: Mutex::new(model),
            tokenizer,
            template,
            bos,
            stops,
            eos_text: eos.map(text_of).unwrap_or_default(),
            context,
            device,
        })
    }

    /// The token ids of `text`, control tokens in it matched whole (what llama.cpp's
    /// `/tokenize` answers with `parse_special`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Request(format!("cannot tokenize: {e}")))
    }

    /// The text of `ids`, control tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Run(format!("cannot detokenize: {e}")))
    }

    /// The prompt for `messages`: the model's chat template (ChatML when it has none) with the
    /// assistant's turn opened.
    pub fn prompt(&self, messages: &[Message]) -> Result<String, Error> {
        let Some(template) = &self.template else {
            let mut out: String = messages
                .iter()
                .map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content))
                .collect();
            out.push_str("<|im_start|>assistant\n");
            return Ok(out);
        };
        let mut env = minijinja::Environment::new();
        env.add_template("chat", template)
            .map_err(|e| Error::Model(format!("tokenizer.chat_template does not parse: {e}")))?;
        let rendered = env
            .get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos.as_ref().map(|(_, t)| t.clone()).unwrap_or_default(),
                    eos_token => self.eos_text.clone(),
                })
            })
            .map_err(|e| Error::Request(format!("the chat template failed: {e}")))?;
        Ok(rendered)
    }

    /// The prompt's token ids (with the BOS token when the model asks for one).
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>, Error> {
        let mut ids: Vec<u32> = self.bos.iter().map(|(id, _)| *id).collect();
        ids.extend(self.encode(prompt)?);
        Ok(ids)
    }

    /// Generates from `prompt` token ids; `on_text` receives each new piece of text as soon as
    /// it is complete (a multi-byte character waits for its last token).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: Params,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generated, Error> {
        if prompt.is_empty() {
            return Err(Error::Request("the prompt is empty".into()));
        }
        if prompt.len() + params.max_tokens > self.context {
            return Err(Error::Request(format!(
                "the prompt ({} tokens) and max_tokens ({}) exceed the model's context of {} tokens",
                prompt.len(),
                params.max_tokens,
                self.context
            )));
        }
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else if params.top_p < 1.0 {
            Sampling::TopP {
                p: params.top_p,
                temperature: params.temperature,
            }
        } else {
            Sampling::All {
                temperature: params.temperature,
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut model = self
            .model
            .lock()
            .map_err(|_| Error::Run("the model is poisoned by an earlier panic".into()))?;
        let run = |e: candle_core::Error| Error::Run(e.to_string());
        let started = Instant::now();
        let input = Tensor::new(prompt, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(run)?;
        let mut logits = model.forward(&input, 0).map_err(run)?;
        let mut prompt_seconds = None;
        let mut tokens: Vec<u32> = Vec::new();
        let mut shown = 0usize;
        let mut finish_reason = "length";
        while tokens.len() < params.max_tokens {
            let row = logits.squeeze(0).map_err(run)?;
            let next = sampler.sample(&row).map_err(run)?;
            if prompt_seconds.is_none() {
                prompt_seconds = Some(started.elapsed().as_secs_f64());
            }
            if self.stops.contains(&next) {
                finish_reason = "stop";
                break;
            }
            tokens.push(next);
            let text = self.decode(&tokens)?;
            if text.len() > shown && !text.ends_with('\u{FFFD}') {
                on_text(&text[shown..]);
                shown = text.len();
            }
            if tokens.len() == params.max_tokens {
                break;
            }
            let input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(run)?;
            logits = model
                .forward(&input, prompt.len() + tokens.len() - 1)
                .map_err(run)?;
        }
        let text = self.decode(&tokens)?;
        if text.len() > shown {
            on_text(&text[shown..]);
        }
        let prompt_seconds = prompt_seconds.unwrap_or_else(|| started.elapsed().as_secs_f64());
        Ok(Generated {
            text,
            tokens,
            prompt_tokens: prompt.len(),
            finish_reason,
            prompt_seconds,
            generation_seconds: started.elapsed().as_secs_f64() - prompt_seconds,
        })
    }

    /// The special tokens' ids by text.
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stops
    }
}
