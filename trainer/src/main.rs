//! `leitwerk-trainer`: the one binary that Leitwerk's Jobs run.
//!
//! Its sub-commands and their arguments are the contract between the operator and its Jobs.
//! `generate` writes seeded synthetic marketing data (see `leitwerk_trainer::datagen`);
//! `materialize` and `train` are the Jobs of FeatureSets and Models (see
//! `leitwerk_trainer::pipeline`); `index` builds a RagIndex version (see
//! `leitwerk_trainer::index`).

use std::{path::PathBuf, process::ExitCode};

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use leitwerk_crds::{FeatureSetSpec, ModelSpec, RagIndexSpec, summary};
use leitwerk_trainer::datagen::{self, churn::ChurnSpec, leads::LeadsSpec};
use leitwerk_trainer::{index, pipeline};

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
        #[command(flatten)]
        job: JobArgs,
    },
    /// Train a Model on a FeatureSet snapshot, evaluate it and export one ONNX graph.
    Train {
        #[command(flatten)]
        job: JobArgs,
        /// URL of the FeatureSet snapshot directory to train on.
        #[arg(long)]
        snapshot: String,
        /// Version to record, as the operator numbers them (`v3`).
        #[arg(long)]
        version: String,
        /// ONNX Runtime shared library for the parity check.
        #[arg(long, env = "ORT_DYLIB_PATH")]
        onnxruntime: PathBuf,
    },
    /// Print one Open Inference Protocol v2 infer request (JSON, one per line) per row of a
    /// snapshot: traffic from the training distribution, to replay against a server.
    Requests {
        /// URL of the FeatureSet snapshot directory.
        #[arg(long)]
        snapshot: String,
        /// Which rows: those training fits on, those it validates on, or all.
        #[arg(long, value_enum, default_value = "train")]
        split: pipeline::Split,
        /// The validation fraction the Model trains with.
        #[arg(long, default_value_t = 0.2)]
        validation_fraction: f64,
        /// At most this many requests: a random sample of the rows, in random order.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Seed of the sample; the same seed prints the same requests.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Chunk, embed and upsert the documents of a RagIndex.
    Index {
        #[command(flatten)]
        job: JobArgs,
        /// A source and where it is mounted: `NAME=DIR` (a ConfigMap's keys) or `NAME=GLOB`.
        #[arg(long = "source", required = true)]
        sources: Vec<index::SourceMount>,
        /// Directory of the embedding model (`config.json`, `tokenizer.json`,
        /// `model.safetensors`).
        #[arg(long, env = "LEITWERK_EMBEDDING_MODEL_DIR")]
        model_dir: PathBuf,
        /// URL of the previous version's index file, to build incrementally from.
        #[arg(long)]
        previous: Option<String>,
        /// URL or path of the labelled set (JSON Lines of query and relevant document ids).
        #[arg(long)]
        labelled: Option<String>,
        /// The k of recall@k.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Remove the RagIndex's other index files, except those given with --keep.
        #[arg(long)]
        prune: bool,
        /// URL of an index file to keep when pruning (repeatable).
        #[arg(long = "keep")]
        keep: Vec<String>,
    },
    /// Remove every index file of a RagIndex (the operator runs this when one is deleted).
    DeleteIndex {
        #[command(flatten)]
        job: JobArgs,
    },
}

/// Data sets `generate` writes.
/// What every Job sub-command takes.
#[derive(Debug, clap::Args)]
struct JobArgs {
    /// The resource's spec as JSON, or `@PATH` to read it from a file.
    #[arg(long, env = "LEITWERK_SPEC")]
    spec: String,
    /// Namespace of the resource.
    #[arg(long, env = "LEITWERK_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Name of the resource.
    #[arg(long, env = "LEITWERK_NAME")]
    name: String,
    /// Artifact store URL (`file:///…`, `s3://…`, `gs://…`, `az://…`).
    #[arg(long, env = "LEITWERK_ARTIFACT_STORE")]
    artifact_store: String,
    /// Where the JSON summary goes besides stdout (Kubernetes reads it as the termination
    /// message).
    #[arg(
        long,
        env = "LEITWERK_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    termination_log: PathBuf,
    /// Scratch directory (downloads of object-store sources).
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
}

impl JobArgs {
    fn spec<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let text = match self.spec.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --spec {path}: {e}"))?,
            None => self.spec.clone(),
        };
        serde_json::from_str(&text).map_err(|e| format!("--spec is not a valid spec: {e}"))
    }

    /// Prints the summary and writes it where Kubernetes reads the termination message.
    fn report(&self, summary: &str) {
        println!("{summary}");
        if let Err(e) = std::fs::write(&self.termination_log, summary) {
            eprintln!(
                "leitwerk-trainer: could not write the termination message to {}: {e}",
                self.termination_log.display()
            );
        }
    }
}

/// The error chain as one line.
fn chain(err: &dyn std::error::Error) -> String {
    pipeline::error_chain(err)
}

fn run_job(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leitwerk-trainer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (job, outcome) = match command {
        Command::Materialize { job } => {
            let outcome = job.spec::<FeatureSetSpec>().and_then(|spec| {
                runtime
                    .block_on(pipeline::run_materialize(
                        &spec,
                        &job.namespace,
                        &job.name,
                        &job.artifact_store,
                        &job.work_dir,
                    ))
                    .map(|s| summary::encode_materialize(&s))
                    .map_err(|e| chain(&e))
            });
            (job, outcome)
        }
        Command::Train {
            job,
            snapshot,
            version,
            onnxruntime,
        } => {
            let outcome = job.spec::<ModelSpec>().and_then(|spec| {
                let train = pipeline::TrainJob {
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                    version,
                    snapshot,
                    store: job.artifact_store.clone(),
                    onnxruntime,
                };
                runtime
                    .block_on(pipeline::run_train(&spec, &train))
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .map_err(|e| chain(&e))
            });
            (job, outcome)
        }
        Command::Index {
            job,
            sources,
            model_dir,
            previous,
            labelled,
            k,
            prune,
            keep,
        } => {
            let outcome = job.spec::<RagIndexSpec>().and_then(|spec| {
                let index_job = index::IndexJob {
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                    store: job.artifact_store.clone(),
                    sources,
                    model_dir,
                    previous,
                    labelled,
                    k,
                    keep: prune.then_some(keep),
                };
                runtime
                    .block_on(index::run_index(&spec, &index_job))
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .map_err(|e| chain(&e))
            });
            (job, outcome)
        }
        Command::DeleteIndex { job } => {
            let outcome = runtime
                .block_on(index::delete_index(
                    &job.artifact_store,
                    &job.namespace,
                    &job.name,
                ))
                .map(|n| format!(r#"{{"deleted":{n}}}"#))
                .map_err(|e| chain(&e));
            (job, outcome)
        }
        _ => return ExitCode::FAILURE,
    };
    match outcome {
        Ok(summary) => {
            job.report(&summary);
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("leitwerk-trainer: {problem}");
            job.report(&summary::encode_error(&problem));
            ExitCode::FAILURE
        }
    }
}

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
            let data = datagen::leads::write(
                &LeadsSpec {
                    seed,
                    leads: count,
                    start,
                    days,
                },
                &out,
            )?;
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
    match args.command {
        Command::Generate { data } => match generate(data) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("leitwerk-trainer: {}", chain(&err));
                ExitCode::FAILURE
            }
        },
        Command::Requests {
            snapshot,
            split,
            validation_fraction,
            limit,
            seed,
        } => {
            let requests = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(pipeline::infer_requests(
                        &snapshot,
                        split,
                        validation_fraction,
                        limit,
                        seed,
                    ))
                    .map_err(|e| chain(&e))
                });
            match requests {
                Ok(requests) => {
                    for r in requests {
                        println!("{r}");
                    }
                    ExitCode::SUCCESS
                }
                Err(problem) => {
                    eprintln!("leitwerk-trainer: {problem}");
                    ExitCode::FAILURE
                }
            }
        }
        job => run_job(job),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn usage_names_every_sub_command() {
        let help = Args::command().render_long_help().to_string();
        for sub in [
            "generate",
            "materialize",
            "train",
            "requests",
            "index",
            "delete-index",
        ] {
            assert!(help.contains(sub), "{help}");
        }
    }
}
