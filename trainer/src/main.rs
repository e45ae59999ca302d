//! `leitwerk-trainer`: the one binary that Leitwerk's Jobs run.
//!
//! Its sub-commands and their arguments are the contract between the operator and its Jobs.
//! `generate` writes seeded synthetic marketing data (see `leitwerk_trainer::datagen`). The
//! work of `materialize`, `train` and `index` (polars, linfa and ONNX export, candle) arrives
//! in the following releases; until then each says so and exits with status 3 instead of
//! pretending to succeed.

use std::{path::PathBuf, process::ExitCode};

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use leitwerk_trainer::datagen::{self, churn::ChurnSpec, leads::LeadsSpec};

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
    /// Write seeded, realistic synthetic marketing data with known effects as CSV files.
    Generate {
        #[command(subcommand)]
        data: Data,
    },
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

/// Data sets `generate` writes.
#[derive(Debug, Subcommand)]
enum Data {
    /// B2B leads: `leads.csv` (firmographics) and `events.csv` (page views, e-mail opens, conversions).
    Leads {
        /// Seed; the same seed writes the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of leads.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// First day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-01-01")]
        start: NaiveDate,
        /// Days covered (at least 30).
        #[arg(long, default_value_t = 240)]
        days: i64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Subscribers: `customers.csv` (monthly snapshots) and `cancellations.csv`.
    Churn {
        /// Seed; the same seed writes the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of customers.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// First month (YYYY-MM-DD, the first of a month).
        #[arg(long, default_value = "2025-01-01")]
        start: NaiveDate,
        /// Months covered (3–600).
        #[arg(long, default_value_t = 18)]
        months: i64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn generate(data: Data) -> Result<String, datagen::Error> {
    let create = |out: &PathBuf| {
        std::fs::create_dir_all(out).map_err(|source| datagen::Error::Create {
            path: out.display().to_string(),
            source,
        })
    };
    match data {
        Data::Leads {
            seed,
            count,
            start,
            days,
            out,
        } => {
            create(&out)?;
            let data = datagen::leads::generate(&LeadsSpec {
                seed,
                leads: count,
                start,
                days,
            })?;
            datagen::write_csv(&out.join("leads.csv"), &data.leads)?;
            datagen::write_csv(&out.join("events.csv"), &data.events)?;
            let conversions = data
                .events
                .iter()
                .filter(|e| e.event_type == "conversion")
                .count();
            Ok(format!(
                r#"{{"leads":{},"events":{},"conversions":{conversions}}}"#,
                data.leads.len(),
                data.events.len()
            ))
        }
        Data::Churn {
            seed,
            count,
            start,
            months,
            out,
        } => {
            create(&out)?;
            let data = datagen::churn::generate(&ChurnSpec {
                seed,
                customers: count,
                start,
                months,
            })?;
            datagen::write_csv(&out.join("customers.csv"), &data.customers)?;
            datagen::write_csv(&out.join("cancellations.csv"), &data.cancellations)?;
            Ok(format!(
                r#"{{"customers":{count},"snapshots":{},"cancellations":{}}}"#,
                data.customers.len(),
                data.cancellations.len()
            ))
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let name = match args.command {
        Command::Generate { data } => {
            return match generate(data) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    let mut message = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(s) = source {
                        message.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    eprintln!("leitwerk-trainer: {message}");
                    ExitCode::FAILURE
                }
            };
        }
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
        for sub in ["generate", "materialize", "train", "index"] {
            assert!(help.contains(sub), "{help}");
        }
    }
}
