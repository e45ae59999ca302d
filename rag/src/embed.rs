//! Sentence embeddings with all-MiniLM-L6-v2 (a BERT encoder) in candle: word pieces, the
//! encoder, mean pooling over the attention mask and L2 normalisation, as sentence-transformers
//! computes them.

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
}

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

/// A loaded embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pieces: WordPieces,
    device: Device,
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
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Embedder {
            model,
            tokenizer,
            pieces,
            device,
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
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), &self.device)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, width),
            &self.device,
        )?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the tokens the mask keeps, then unit length.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// The cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
