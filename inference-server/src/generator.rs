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
pub mod structured;
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
    /// Per token: whether its text may stand inside a JSON string unescaped.
    string_safe: Vec<bool>,
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
        let string_safe = (0..tokenizer.get_vocab_size(true) as u32)
            .map(|id| {
                !stops.contains(&id)
                    && !specials.values().any(|s| *s == id)
                    && tokenizer.decode(&[id], false).is_ok_and(|t| {
                        !t.is_empty()
                            && !t.contains(['"', '\\'])
                            && !t.chars().any(char::is_control)
                    })
            })
            .collect();
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
            string_safe,
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
    /// it is complete (a multi-byte character waits for its last token). With `schema` (a
    /// JSON schema of the shapes [`structured`] knows) the answer is that JSON: its structure
    /// is written for the model and only the values are sampled.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: Params,
        schema: Option<&serde_json::Value>,
        on_text: impl FnMut(&str),
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
        let shape = schema.map(structured::Shape::of).transpose()?;
        let mut model = self
            .model
            .lock()
            .map_err(|_| Error::Run("the model is poisoned by an earlier panic".into()))?;
        let started = Instant::now();
        let mut session = Session {
            generator: self,
            model: &mut model,
            sampler: LogitsProcessor::from_sampling(params.seed, sampling(&params)),
            logits: None,
            position: 0,
            generated: Vec::new(),
            shown: 0,
            on_text,
            prompt_seconds: None,
            started,
        };
        session.feed(prompt)?;
        session.prompt_seconds = Some(started.elapsed().as_secs_f64());
        let finish_reason = match &shape {
            Some(shape) => structured::write(&mut session, shape, params.max_tokens)?,
            None => session.free(params.max_tokens)?,
        };
        let prompt_seconds = session.prompt_seconds.unwrap_or_default();
        let tokens = std::mem::take(&mut session.generated);
        let text = self.decode(&tokens)?;
        if text.len() > session.shown {
            (session.on_text)(&text[session.shown..]);
        }
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

fn sampling(params: &Params) -> Sampling {
    if params.temperature <= 0.0 {
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
    }
}

/// Which tokens a sample may pick.
#[derive(Debug, Clone, Copy)]
pub enum Allowed<'a> {
    /// Any.
    Any,
    /// Those that may stand inside a JSON string, and the one that ends it.
    InString(u32),
    /// Only these.
    OneOf(&'a [u32]),
}

/// One generation in progress: the model's attention cache, the next token's logits, what
/// was generated and what was shown.
pub struct Session<'a, F: FnMut(&str)> {
    generator: &'a Generator,
    model: &'a mut ModelWeights,
    sampler: LogitsProcessor,
    logits: Option<Tensor>,
    position: usize,
    generated: Vec<u32>,
    shown: usize,
    on_text: F,
    prompt_seconds: Option<f64>,
    started: Instant,
}

impl<F: FnMut(&str)> Session<'_, F> {
    fn run(e: candle_core::Error) -> Error {
        Error::Run(e.to_string())
    }

    /// Runs `tokens` through the model (the prompt, or text written for the model).
    fn feed(&mut self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Ok(());
        }
        let input = Tensor::new(tokens, &self.generator.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(Self::run)?;
        let logits = self
            .model
            .forward(&input, self.position)
            .and_then(|l| l.squeeze(0))
            .map_err(Self::run)?;
        self.position += tokens.len();
        self.logits = Some(logits);
        Ok(())
    }

    /// Appends `tokens` to the answer and runs them through the model.
    fn write(&mut self, tokens: &[u32]) -> Result<(), Error> {
        self.generated.extend_from_slice(tokens);
        self.show()?;
        self.feed(tokens)
    }

    /// Writes `text` for the model.
    pub fn force(&mut self, text: &str) -> Result<(), Error> {
        let ids = self.generator.encode(text)?;
        self.write(&ids)
    }

    fn show(&mut self) -> Result<(), Error> {
        let text = self.generator.decode(&self.generated)?;
        if text.len() > self.shown && !text.ends_with('\u{FFFD}') {
            (self.on_text)(&text[self.shown..]);
            self.shown = text.len();
        }
        Ok(())
    }

    /// Samples the next token among those `allowed`, without writing it.
    pub fn sample(&mut self, allowed: Allowed<'_>) -> Result<u32, Error> {
        let logits = self
            .logits
            .as_ref()
            .ok_or_else(|| Error::Run("nothing was fed to the model".into()))?;
        let safe = &self.generator.string_safe;
        let allows = |id: u32| match allowed {
            Allowed::Any => true,
            Allowed::InString(end) => id == end || safe.get(id as usize).copied().unwrap_or(false),
            Allowed::OneOf(ids) => ids.contains(&id),
        };
        let next = match allowed {
            Allowed::Any => self.sampler.sample(logits).map_err(Self::run)?,
            _ => {
                let mut values = logits
                    .to_dtype(candle_core::DType::F32)
                    .and_then(|l| l.to_vec1::<f32>())
                    .map_err(Self::run)?;
                for (id, v) in values.iter_mut().enumerate() {
                    if !allows(id as u32) {
                        *v = f32::NEG_INFINITY;
                    }
                }
                let masked = Tensor::new(values, &self.generator.device).map_err(Self::run)?;
                self.sampler.sample(&masked).map_err(Self::run)?
            }
        };
        if self.prompt_seconds.is_none() {
            self.prompt_seconds = Some(self.started.elapsed().as_secs_f64());
        }
        Ok(next)
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.generated.len()
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.generator.encode(text)
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.generator.decode(ids)
    }

    /// Free generation until an end of turn or `max_tokens`.
    fn free(&mut self, max_tokens: usize) -> Result<&'static str, Error> {
        while self.generated.len() < max_tokens {
            let next = self.sample(Allowed::Any)?;
            if self.generator.stops.contains(&next) {
                return Ok("stop");
            }
            self.generated.push(next);
            self.show()?;
            if self.generated.len() < max_tokens {
                self.feed(&[next])?;
            }
        }
        Ok("length")
    }

    /// Writes `id`, sampled, to the answer.
    pub fn accept(&mut self, id: u32) -> Result<(), Error> {
        self.write(&[id])
    }
}
