//! Sentence embeddings with all-MiniLM-L6-v2 (a BERT encoder): word pieces, the encoder, mean
//! pooling over the attention mask and L2 normalisation, as sentence-transformers computes
//! them. The encoder runs on ONNX Runtime (a graph of fused operators Leitwerk writes from the
//! weights, [`crate::bert_onnx`]) where the process has it, on candle otherwise.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chunk::WordPieces;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The most word pieces the model reads (sentence-transformers' `max_seq_length` for
/// all-MiniLM-L6-v2); longer inputs are truncated, so chunks are sized below it.
pub const MAX_WORD_PIECES: usize = 256;

/// Sentences embedded per forward pass.
pub const BATCH: usize = 32;

/// Errors of loading or running the embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing or unreadable.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The tokenizer failed on an input.
    #[error("cannot tokenize: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("embedding failed: {0}")]
    Model(#[from] candle_core::Error),
    /// The encoder could not be written as an ONNX graph.
    #[error("cannot write the encoder as an ONNX graph: {0}")]
    Graph(#[from] crate::bert_onnx::GraphError),
    /// ONNX Runtime refused the graph or failed to run it.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}

/// What runs the encoder.
enum Engine {
    /// candle, on its device.
    Candle(Box<BertModel>, Device),
    /// ONNX Runtime, on the graph Leitwerk writes from the weights
    /// ([`crate::bert_onnx`]); a session runs one batch at a time.
    OnnxRuntime(std::sync::Mutex<ort::session::Session>),
}

/// Which engine an [`Embedder`] runs on, as [`Embedder::engine`] names it.
pub const CANDLE: &str = "candle";
/// See [`CANDLE`].
pub const ONNX_RUNTIME: &str = "onnxruntime";

/// What identifies an embedding model: vectors from two identities are never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelIdentity {
    /// The model's name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// `sha256:` digest of the weights file.
    pub weights_digest: String,
    /// `sha256:` digest of the tokenizer file.
    pub tokenizer_digest: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Pooling, `mean` (over the attention mask), followed by L2 normalisation.
    pub pooling: String,
    /// The most word pieces read per input.
    pub max_word_pieces: usize,
}

/// Where an encoder on ONNX Runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxDevice {
    /// The CPU.
    #[default]
    Cpu,
    /// The first CUDA GPU (ONNX Runtime's CUDA execution provider); the CPU when the library
    /// or the machine cannot, with the reason in [`Embedder::fallback`].
    Cuda,
}

/// A loaded embedding model.
pub struct Embedder {
    engine: Engine,
    /// Whether the encoder runs on a GPU.
    on_gpu: bool,
    /// Why it runs on the CPU although a GPU was asked for.
    fallback: Option<String>,
    tokenizer: Tokenizer,
    pieces: WordPieces,
    identity: ModelIdentity,
}

/// What every engine loads the same way: the config, the tokenizer and the weights.
struct Loaded {
    config: Config,
    tokenizer: Tokenizer,
    pieces: WordPieces,
    weights: Vec<u8>,
    identity: ModelIdentity,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|e| EmbedError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (what
    /// `tests/minilm.sh` provides) onto the CPU.
    pub fn load(dir: &Path, name: &str) -> Result<Embedder, EmbedError> {
        Self::load_on(dir, name, Device::Cpu)
    }

    /// Like [`Embedder::load`], on `device`.
    pub fn load_on(dir: &Path, name: &str, device: Device) -> Result<Embedder, EmbedError> {
        let loaded = Self::read(dir, name)?;
        let vb = VarBuilder::from_buffered_safetensors(loaded.weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &loaded.config)?;
        Ok(Embedder {
            on_gpu: !device.is_cpu(),
            fallback: None,
            engine: Engine::Candle(Box::new(model), device),
            tokenizer: loaded.tokenizer,
            pieces: loaded.pieces,
            identity: loaded.identity,
        })
    }

    /// Like [`Embedder::load`], on ONNX Runtime in `environment`: the encoder is written as an
    /// ONNX graph of fused operators from the same weights ([`crate::bert_onnx`]), with
    /// `threads` intra-op threads (one per CPU this process may use, by its affinity and cgroup
    /// quota, when `None`), on
    /// `device`. A GPU that cannot be used (a CPU-only library, no CUDA runtime, no device)
    /// leaves the encoder on the CPU, with the reason in [`Embedder::fallback`].
    pub fn load_onnx(
        dir: &Path,
        name: &str,
        environment: &ort::environment::Environment,
        threads: Option<usize>,
        device: OnnxDevice,
    ) -> Result<Embedder, EmbedError> {
        let loaded = Self::read(dir, name)?;
        let graph = crate::bert_onnx::graph(&loaded.config, &loaded.weights)?;
        // ONNX Runtime's own default counts the machine's cores, not the ones this process may
        // use: pinned to one CPU (or limited to one by a cgroup quota), two intra-op threads
        // embedded a short text in 6.4 ms against one thread's 3.0 ms (benches/README.md).
        let threads = threads.unwrap_or_else(usable_cpus);
        let cpu = || -> Result<ort::session::Session, EmbedError> {
            ort::session::Session::builder(environment)
                .map_err(runtime)?
                .with_intra_threads(threads)
                .map_err(runtime)?
                .commit_from_memory(&graph)
                .map_err(runtime)
        };
        let (session, on_gpu, fallback) = match device {
            OnnxDevice::Cpu => (cpu()?, false, None),
            OnnxDevice::Cuda => match cuda_session(environment, &graph) {
                Ok(session) => (session, true, None),
                Err(why) => (cpu()?, false, Some(why)),
            },
        };
        Ok(Embedder {
            on_gpu,
            fallback,
            engine: Engine::OnnxRuntime(std::sync::Mutex::new(session)),
            tokenizer: loaded.tokenizer,
            pieces: loaded.pieces,
            identity: loaded.identity,
        })
    }

    /// Whether the encoder runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.on_gpu
    }

    /// Why the encoder runs on the CPU although a GPU was asked for.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The engine that runs the encoder: [`CANDLE`] or [`ONNX_RUNTIME`].
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Candle(..) => CANDLE,
            Engine::OnnxRuntime(_) => ONNX_RUNTIME,
        }
    }

    fn read(dir: &Path, name: &str) -> Result<Loaded, EmbedError> {
        let config_path = dir.join("config.json");
        let config: Config =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| EmbedError::Read {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = read(&tokenizer_path)?;
        let mut tokenizer =
            Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| EmbedError::Read {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let pieces = WordPieces::new(tokenizer.clone())?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_WORD_PIECES,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let identity = ModelIdentity {
            name: name.to_string(),
            weights_digest: digest(&weights),
            tokenizer_digest: digest(&tokenizer_bytes),
            dimension: config.hidden_size,
            pooling: "mean".into(),
            max_word_pieces: MAX_WORD_PIECES,
        };
        Ok(Loaded {
            config,
            tokenizer,
            pieces,
            weights,
            identity,
        })
    }

    /// The model's identity.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The word-piece counter of the model's tokenizer: what chunks are measured in.
    pub fn pieces(&self) -> &WordPieces {
        &self.pieces
    }

    /// The unit-length embeddings of `texts`, in order, computed in batches of [`BATCH`].
    ///
    /// Texts are batched longest first (by characters, as sentence-transformers does), so that
    /// a batch pads to a length close to its own texts' rather than the longest text's; the
    /// vectors come back in the order of `texts`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let group: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, v) in batch.iter().zip(self.embed_batch(&group)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let (model, device) = match &self.engine {
            Engine::Candle(model, device) => (model, device),
            Engine::OnnxRuntime(session) => {
                let ids = flat(&|e| e.get_ids());
                let mask = flat(&|e| e.get_attention_mask());
                return onnx_batch(session, rows, width, &ids, &mask);
            }
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), device)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (rows, width), device)?;
        let hidden = model.forward(&ids, &types, Some(&mask))?;
        // Mean over the tokens the mask keeps, then unit length.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// One batch on ONNX Runtime: the graph's last states, mean-pooled over the mask and made unit
/// length here (in f64, as the reference computes them).
fn onnx_batch(
    session: &std::sync::Mutex<ort::session::Session>,
    rows: usize,
    width: usize,
    ids: &[u32],
    mask: &[u32],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    use crate::bert_onnx::{ATTENTION_MASK, HIDDEN, INPUT_IDS};
    let as_i32 = |v: &[u32]| -> Vec<i32> { v.iter().map(|&x| x as i32).collect() };
    let ids = ort::value::Tensor::from_array(([rows, width], as_i32(ids))).map_err(runtime)?;
    let masks = ort::value::Tensor::from_array(([rows, width], as_i32(mask))).map_err(runtime)?;
    let mut session = session
        .lock()
        .map_err(|_| EmbedError::Runtime("a previous batch panicked".into()))?;
    let outputs = session
        .run(ort::inputs![INPUT_IDS => ids, ATTENTION_MASK => masks])
        .map_err(runtime)?;
    let (_, hidden) = outputs[HIDDEN]
        .try_extract_tensor::<f32>()
        .map_err(runtime)?;
    let dim = hidden.len() / (rows * width).max(1);
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut sum = vec![0.0_f64; dim];
        let mut count = 0.0_f64;
        for t in 0..width {
            if mask[r * width + t] == 0 {
                continue;
            }
            count += 1.0;
            let state = &hidden[(r * width + t) * dim..(r * width + t + 1) * dim];
            for (s, &h) in sum.iter_mut().zip(state) {
                *s += f64::from(h);
            }
        }
        let count = count.max(1e-9);
        let norm = sum
            .iter()
            .map(|s| (s / count) * (s / count))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        out.push(sum.iter().map(|s| (s / count / norm) as f32).collect());
    }
    Ok(out)
}

/// How many CPUs this process may use: its affinity mask and cgroup CPU quota, as the standard
/// library reads them; one when they cannot be read.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A session of `graph` on ONNX Runtime's CUDA execution provider, or why there is none: the
/// provider must register (the library is built with it and finds the CUDA runtime) and see a
/// device.
fn cuda_session(
    environment: &ort::environment::Environment,
    graph: &[u8],
) -> Result<ort::session::Session, String> {
    use ort::ep::ExecutionProvider;
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        return Err(format!(
            "this ONNX Runtime library ({}) has no CUDA execution provider: use the one from the onnxruntime-gpu wheel",
            ort::info()
        ));
    }
    ort::session::Session::builder(environment)
        .map_err(|e| e.to_string())?
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| format!("the CUDA execution provider did not start: {e}"))?
        .commit_from_memory(graph)
        .map_err(|e| format!("the encoder did not load on CUDA: {e}"))
}

fn runtime(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Runtime(e.to_string())
}

/// The cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
