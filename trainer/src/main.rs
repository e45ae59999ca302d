//! `leitwerk-trainer`: the one binary that Leitwerk's Jobs run.
//!
//! Its sub-commands and their arguments are the contract between the operator and its Jobs.
//! This release declares them; the work itself (materialization with polars, training with
//! linfa and ONNX export, indexing with candle) arrives in the following releases. Until then
//! each sub-command says so and exits with status 3 instead of pretending to succeed.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Exit status of a sub-command that this release does not implement yet.
const NOT_IMPLEMENTED: u8 = 3;

/// Runs Leitwerk's batch work: FeatureSet materialization, model training and RagIndex
/// indexing. The operator starts it as a Kubernetes Job; a short JSON summary goes to the
/// pod's termination message and the artifacts go to the artifact store.
#[derive(Debug, Parser)]
#[command(name = "leitwerk-trainer", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Materialize a FeatureSet into a versioned, point-in-time-correct snapshot with statistics.
    Materialize {
        /// The FeatureSet spec as JSON (the operator writes it into the Job).
        #[arg(long)]
        spec: PathBuf,
        /// Artifact store URL for the snapshot (`file://`, `s3://`, `gs://`, `az://`).
        #[arg(long)]
        artifact_store: String,
    },
    /// Train a Model on a FeatureSet snapshot, evaluate it and export one ONNX graph.
    Train {
        /// The Model spec as JSON.
        #[arg(long)]
        spec: PathBuf,
        /// URL of the FeatureSet snapshot to train on.
        #[arg(long)]
        snapshot: String,
        /// Artifact store URL for the model and its model card.
        #[arg(long)]
        artifact_store: String,
    },
    /// Chunk, embed and upsert the documents of a RagIndex.
    Index {
        /// The RagIndex spec as JSON.
        #[arg(long)]
        spec: PathBuf,
        /// Artifact store URL for the index metadata (and the embedded vector store).
        #[arg(long)]
        artifact_store: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let name = match args.command {
        Command::Materialize { .. } => "materialize",
        Command::Train { .. } => "train",
        Command::Index { .. } => "index",
    };
    eprintln!(
        "leitwerk-trainer: `{name}` is not implemented in {} yet; nothing was done",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(NOT_IMPLEMENTED)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn usage_names_every_sub_command() {
        let help = Args::command().render_long_help().to_string();
        for sub in ["materialize", "train", "index"] {
            assert!(help.contains(sub), "{help}");
        }
    }
}
