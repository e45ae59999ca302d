//! `leitwerk-trainer`: the one binary that Leitwerk's Jobs run.
//!
//! Its sub-commands and their arguments are the contract between the operator and its Jobs.
//! `generate` writes seeded synthetic marketing data (see `leitwerk_trainer::datagen`);
//! `materialize` and `train` are the Jobs of FeatureSets and Models (see
//! `leitwerk_trainer::pipeline`); `index` builds a RagIndex version (see
//! `leitwerk_trainer::index`); `clv` scores customer lifetime value in batch (see
//! `leitwerk_trainer::clv`).

use std::{path::PathBuf, process::ExitCode};

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use leitwerk_crds::command::{JobArgs, JobCommand};
use leitwerk_crds::{ContentPipelineSpec, FeatureSetSpec, ModelSpec, RagIndexSpec, summary};
use leitwerk_trainer::datagen::{self, churn::ChurnSpec, leads::LeadsSpec};
use leitwerk_trainer::{content, index, pipeline};

/// Runs Leitwerk's batch work: FeatureSet materialization, model training and RagIndex
/// indexing. The operator starts it as a Kubernetes Job; a short JSON summary goes to the
/// pod's termination message and the artifacts go to the artifact store.
#[derive(Debug, Parser)]
#[command(name = "leitwerk-trainer", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the Job variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Write seeded, realistic synthetic marketing data with known effects as CSV files.
    Generate {
        #[command(subcommand)]
        data: Data,
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
    /// Customer lifetime value in batch: fit BG/NBD and Gamma-Gamma on a transactions CSV and
    /// write one row per customer (expected purchases and value over the horizon, P(alive),
    /// CLV) as CSV or Parquet; prints the fitted parameters as JSON.
    Clv(leitwerk_trainer::clv::cli::ClvArgs),
    /// The Jobs the operator starts: their command lines are the contract in
    /// `leitwerk_crds::command`, built by the operator and parsed here.
    #[command(flatten)]
    Job(JobCommand),
}

/// Data sets `generate` writes.
/// The Job's resource spec, from `--spec` (JSON, or `@PATH`).
fn spec_of<T: serde::de::DeserializeOwned>(job: &JobArgs) -> Result<T, String> {
    let text = match job.spec.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read --spec {path}: {e}"))?
        }
        None => job.spec.clone(),
    };
    serde_json::from_str(&text).map_err(|e| format!("--spec is not a valid spec: {e}"))
}

/// Prints the summary and writes it where Kubernetes reads the termination message.
fn report(job: &JobArgs, summary: &str) {
    println!("{summary}");
    if let Err(e) = std::fs::write(&job.termination_log, summary) {
        eprintln!(
            "leitwerk-trainer: could not write the termination message to {}: {e}",
            job.termination_log.display()
        );
    }
}

/// The error chain as one line.
fn chain(err: &dyn std::error::Error) -> String {
    pipeline::error_chain(err)
}

fn run_job(command: JobCommand) -> ExitCode {
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
    let job = command.job().clone();
    let outcome = match command {
        JobCommand::Materialize { job } => spec_of::<FeatureSetSpec>(&job).and_then(|spec| {
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
        }),
        JobCommand::Train { job, train } => spec_of::<ModelSpec>(&job).and_then(|spec| {
            let onnxruntime = train.onnxruntime.ok_or_else(|| {
                "train needs ONNX Runtime for its parity check: set --onnxruntime or ORT_DYLIB_PATH"
                    .to_string()
            })?;
            let train = pipeline::TrainJob {
                namespace: job.namespace.clone(),
                name: job.name.clone(),
                version: train.version,
                snapshot: train.snapshot,
                store: job.artifact_store.clone(),
                onnxruntime,
            };
            runtime
                .block_on(pipeline::run_train(&spec, &train))
                .map(|s| summary::encode_train(&s))
                .map_err(|e| chain(&e))
        }),
        JobCommand::LifetimeValue { job, lifetime } => spec_of::<ModelSpec>(&job).and_then(|spec| {
            runtime
                .block_on(leitwerk_trainer::clv::job::run_lifetime_value(
                    &spec,
                    &lifetime.output,
                    &lifetime.not_after,
                    &job.work_dir,
                ))
                .map(|s| serde_json::to_string(&s).unwrap_or_default())
                .map_err(|e| e.to_string())
        }),
        JobCommand::Score { job, score } => {
            let onnxruntime = score.onnxruntime.ok_or_else(|| {
                "score needs ONNX Runtime: set --onnxruntime or ORT_DYLIB_PATH".to_string()
            });
            onnxruntime.and_then(|onnxruntime| {
                let score_job = pipeline::ScoreJob {
                    model: score.model,
                    version: score.version,
                    snapshot: score.snapshot,
                    source: score.source,
                    entity_column: score.entity_column,
                    output: score.output,
                    attributions: usize::from(score.attributions),
                    onnxruntime,
                    work_dir: job.work_dir.clone(),
                };
                runtime
                    .block_on(pipeline::run_score(&score_job))
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .map_err(|e| chain(&e))
            })
        }
        JobCommand::Index { job, index: args } => spec_of::<RagIndexSpec>(&job).and_then(|spec| {
            let model_dir = args.model_dir.ok_or_else(|| {
                "index needs the embedding model: set --model-dir or LEITWERK_EMBEDDING_MODEL_DIR"
                    .to_string()
            })?;
            let index_job = index::IndexJob {
                namespace: job.namespace.clone(),
                name: job.name.clone(),
                store: job.artifact_store.clone(),
                sources: args.sources,
                model_dir,
                previous: args.previous,
                labelled: args.labelled,
                k: args.k,
                keep: args.prune.then_some(args.keep),
                serving: args.serving.map(|url| (url, args.serving_mode)),
                qdrant: args.qdrant.map(|target| {
                    let key = std::env::var(leitwerk_crds::contract::QDRANT_API_KEY_ENV)
                        .ok()
                        .filter(|k| !k.is_empty());
                    (target, key)
                }),
                gpu: args.gpu,
            };
            runtime
                .block_on(index::run_index(&spec, &index_job))
                .map(|s| serde_json::to_string(&s).unwrap_or_default())
                .map_err(|e| chain(&e))
        }),
        JobCommand::Content { job, content: args } => {
            spec_of::<ContentPipelineSpec>(&job).and_then(|spec| {
                let model_dir = args.model_dir.ok_or_else(|| {
                    "content needs the index's embedding model: set --model-dir or LEITWERK_EMBEDDING_MODEL_DIR"
                        .to_string()
                })?;
                let link_map = match &args.link_map {
                    Some(text) => serde_json::from_str(text)
                        .map_err(|e| format!("--link-map is not a JSON object of anchor text to URL: {e}"))?,
                    None => Default::default(),
                };
                let templates = match &args.templates {
                    Some(text) => serde_json::from_str(text).map_err(|e| {
                        format!("--templates is not a JSON object of template key to text: {e}")
                    })?,
                    None => Default::default(),
                };
                let content_job = content::ContentJob {
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                    store: job.artifact_store.clone(),
                    run_id: args.run_id,
                    index: args.index,
                    model_dir,
                    link_map,
                    templates,
                };
                runtime
                    .block_on(content::run_content(&spec, &content_job))
                    .map(|s| summary::encode_content(&s))
                    .map_err(|e| chain(&e))
            })
        }
        JobCommand::PublishContent { job, publish } => {
            spec_of::<ContentPipelineSpec>(&job).and_then(|spec| {
                let publish_job = content::PublishJob {
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                    run_id: publish.run_id,
                    payload: publish.payload,
                    digest: publish.digest,
                };
                runtime
                    .block_on(content::run_publish(&spec, &publish_job))
                    .map(|to| {
                        serde_json::to_string(&leitwerk_crds::content_pipeline::PublishSummary {
                            published_to: to,
                        })
                        .unwrap_or_default()
                    })
                    .map_err(|e| chain(&e))
            })
        }
        JobCommand::DeleteIndex { job } => runtime
            .block_on(index::delete_index(
                &job.artifact_store,
                &job.namespace,
                &job.name,
            ))
            .map(|n| format!(r#"{{"deleted":{n}}}"#))
            .map_err(|e| chain(&e)),
    };
    match outcome {
        Ok(summary) => {
            report(&job, &summary);
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("leitwerk-trainer: {problem}");
            report(&job, &summary::encode_error(&problem));
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
    /// A shop's purchases, drawn from BG/NBD and Gamma-Gamma: `transactions.csv`.
    Transactions {
        /// Seed; the same seed writes the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of customers.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// First day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-01-01")]
        start: NaiveDate,
        /// Days covered (28–3650).
        #[arg(long, default_value_t = 364)]
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
        Data::Transactions {
            seed,
            count,
            start,
            days,
            out,
        } => {
            create(&out)?;
            let rows = datagen::transactions::write(
                &datagen::transactions::TransactionsSpec {
                    seed,
                    customers: count,
                    start,
                    days,
                },
                &out,
            )?;
            Ok(format!(r#"{{"customers":{count},"transactions":{rows}}}"#))
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

/// Prints a command's JSON summary, or its error on standard error, and the exit code.
fn printed(outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("leitwerk-trainer: {err}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Generate { data } => printed(generate(data).map_err(|e| chain(&e))),
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
        Command::Clv(args) => printed(leitwerk_trainer::clv::cli::clv(args)),
        Command::Job(job) => run_job(job),
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
            "clv",
        ] {
            assert!(help.contains(sub), "{help}");
        }
    }
}
