//! The arguments of each trainer Job sub-command (the ones [`super::JobCommand`] carries).

use std::path::PathBuf;

use super::flag;
use super::values::{QdrantTarget, SourceMount};
use crate::contract::{LINK_MAP_ENV, TEMPLATES_ENV};
use crate::rag_index::SearchMode;

/// `leitwerk-trainer train`'s own arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TrainArgs {
    /// URL of the FeatureSet snapshot directory to train on.
    #[arg(long)]
    pub snapshot: String,
    /// Version to record, as the operator numbers them (`v3`).
    #[arg(long)]
    pub version: String,
    /// ONNX Runtime shared library for the parity check (the image sets `ORT_DYLIB_PATH`).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub onnxruntime: Option<PathBuf>,
}

/// `leitwerk-trainer score`'s own arguments: one batch scoring run of a Model's version.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ScoreArgs {
    /// The version's ONNX file: `URL#sha256:<hex>` (the digest is checked before scoring).
    #[arg(long)]
    pub model: String,
    /// The version, as the Model's status names it.
    #[arg(long)]
    pub version: String,
    /// URL of the FeatureSet snapshot directory to score (each entity at its newest cutoff).
    #[arg(long, conflicts_with = "source", required_unless_present = "source")]
    pub snapshot: Option<String>,
    /// URL of a Parquet or CSV table to score instead of a snapshot.
    #[arg(long, requires = "entity_column")]
    pub source: Option<String>,
    /// The column of `--source` with the row ids.
    #[arg(long)]
    pub entity_column: Option<String>,
    /// URL of the file to write (`.parquet` or `.csv`).
    #[arg(long)]
    pub output: String,
    /// Attributions per row (0 to 10).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub attributions: u8,
    /// ONNX Runtime shared library (the image sets `ORT_DYLIB_PATH`).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub onnxruntime: Option<PathBuf>,
}

impl ScoreArgs {
    pub(super) fn write(&self, out: &mut Vec<String>) {
        flag(out, "--model", &self.model);
        flag(out, "--version", &self.version);
        if let Some(url) = &self.snapshot {
            flag(out, "--snapshot", url);
        }
        if let Some(url) = &self.source {
            flag(out, "--source", url);
        }
        if let Some(column) = &self.entity_column {
            flag(out, "--entity-column", column);
        }
        flag(out, "--output", &self.output);
        flag(out, "--attributions", &self.attributions);
        if let Some(path) = &self.onnxruntime {
            flag(out, "--onnxruntime", &path.display());
        }
    }
}

/// `leitwerk-trainer lifetime-value`'s own arguments; the transactions and the horizon come
/// from the Model's spec (`lifetimeValue`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LifetimeArgs {
    /// URL of the file to write (`.parquet` or `.csv`).
    #[arg(long)]
    pub output: String,
    /// The run's due day (YYYY-MM-DD): a transaction dated after it is refused.
    #[arg(long)]
    pub not_after: String,
}

/// `leitwerk-trainer index`'s own arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct IndexArgs {
    /// A source and where it is mounted: `NAME=DIR` (a ConfigMap's keys) or `NAME=GLOB`.
    #[arg(long = "source", required = true)]
    pub sources: Vec<SourceMount>,
    /// Directory of the embedding model (`config.json`, `tokenizer.json`,
    /// `model.safetensors`); the image sets `LEITWERK_EMBEDDING_MODEL_DIR`.
    #[arg(long, env = "LEITWERK_EMBEDDING_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// URL of the previous version's index file, to build incrementally from.
    #[arg(long)]
    pub previous: Option<String>,
    /// URL or path of the labelled set (JSON Lines of query and relevant document ids).
    #[arg(long)]
    pub labelled: Option<String>,
    /// The k of recall@k.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Remove the RagIndex's other index files, except those given with --keep.
    #[arg(long)]
    pub prune: bool,
    /// URL of an index file to keep when pruning (repeatable).
    #[arg(long = "keep")]
    pub keep: Vec<String>,
    /// URL of the serving version's index file: measured again on the labelled set, so that
    /// the gate compares figures from the same set.
    #[arg(long)]
    pub serving: Option<String>,
    /// The mode the serving version serves in.
    #[arg(long, default_value_t = SearchMode::Dense)]
    pub serving_mode: SearchMode,
    /// Write the version into a collection of this Qdrant server as well
    /// (`qdrant+URL/COLLECTION`; the API key in [`crate::contract::QDRANT_API_KEY_ENV`]);
    /// with --prune, the collections of versions not kept go.
    #[arg(long)]
    pub qdrant: Option<QdrantTarget>,
    /// Embed on the GPU (ONNX Runtime's CUDA execution provider); on the CPU when it cannot,
    /// with the reason in the summary.
    #[arg(long)]
    pub gpu: bool,
}

impl IndexArgs {
    pub(super) fn write(&self, out: &mut Vec<String>) {
        for s in &self.sources {
            flag(out, "--source", s);
        }
        if let Some(dir) = &self.model_dir {
            flag(out, "--model-dir", &dir.display());
        }
        if let Some(url) = &self.labelled {
            flag(out, "--labelled", url);
        }
        flag(out, "--k", &self.k);
        if let Some(url) = &self.serving {
            flag(out, "--serving", url);
            flag(out, "--serving-mode", &self.serving_mode);
        }
        if let Some(url) = &self.previous {
            flag(out, "--previous", url);
        }
        if self.prune {
            out.push("--prune".into());
        }
        for url in &self.keep {
            flag(out, "--keep", url);
        }
        if let Some(target) = &self.qdrant {
            flag(out, "--qdrant", target);
        }
        if self.gpu {
            out.push("--gpu".into());
        }
    }
}

/// `leitwerk-trainer content`'s own arguments. API keys and the redaction key come from the
/// environment (Secrets the operator maps into the content Job only), never the command line.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ContentArgs {
    /// The run id the operator derived (a digest of what decides the content).
    #[arg(long)]
    pub run_id: String,
    /// URL of the RagIndex version's index file the content is grounded in.
    #[arg(long)]
    pub index: String,
    /// Directory of the index's embedding model; the image sets
    /// `LEITWERK_EMBEDDING_MODEL_DIR`.
    #[arg(long, env = "LEITWERK_EMBEDDING_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// The link map as JSON (anchor text → URL); the operator passes the one it read and
    /// derived the run id from in [`LINK_MAP_ENV`].
    #[arg(long, env = LINK_MAP_ENV, hide_env_values = true)]
    pub link_map: Option<String>,
    /// The prompt templates as JSON (key → template); the operator passes the ConfigMap's
    /// data it derived the run id from in [`TEMPLATES_ENV`].
    #[arg(long, env = TEMPLATES_ENV, hide_env_values = true)]
    pub templates: Option<String>,
}

impl ContentArgs {
    pub(super) fn write(&self, out: &mut Vec<String>) {
        flag(out, "--run-id", &self.run_id);
        flag(out, "--index", &self.index);
        if let Some(dir) = &self.model_dir {
            flag(out, "--model-dir", &dir.display());
        }
        if let Some(links) = &self.link_map {
            flag(out, "--link-map", links);
        }
        if let Some(templates) = &self.templates {
            flag(out, "--templates", templates);
        }
    }
}

/// `leitwerk-trainer publish-content`'s own arguments. The webhook's token and signing key
/// come from the environment (Secrets mapped into the publish Job only).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PublishArgs {
    /// The run whose payload is published.
    #[arg(long)]
    pub run_id: String,
    /// URL of the run's payload.
    #[arg(long)]
    pub payload: String,
    /// `sha256:<hex>` the payload must have (what the content Job reported).
    #[arg(long)]
    pub digest: String,
}

impl PublishArgs {
    pub(super) fn write(&self, out: &mut Vec<String>) {
        flag(out, "--run-id", &self.run_id);
        flag(out, "--payload", &self.payload);
        flag(out, "--digest", &self.digest);
    }
}
