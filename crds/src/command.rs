//! The command lines that cross a process boundary: the operator builds them into Jobs and
//! Deployments, `leitwerk-trainer` and `leitwerk-inference-server` parse them with clap. One
//! type per command line serves both directions (`to_args` writes what `clap` parses), and a
//! round-trip test parses what the builder writes, so a flag cannot be renamed on one side
//! only.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::contract::SPEC_ENV;
use crate::rag_index::SearchMode;

mod job_args;
mod values;

pub use job_args::{ContentArgs, IndexArgs, LifetimeArgs, PublishArgs, ScoreArgs, TrainArgs};
pub use values::{
    IndexArg, MetricLabel, ModelArg, QdrantTarget, RESERVED_METRIC_LABELS, SourceMount,
};

/// What every trainer Job sub-command takes.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct JobArgs {
    /// The resource's spec as JSON, or `@PATH` to read it from a file. The operator passes it
    /// in the environment ([`SPEC_ENV`]): specs outgrow comfortable command lines.
    #[arg(long, env = SPEC_ENV, hide_env_values = true)]
    pub spec: String,
    /// Namespace of the resource.
    #[arg(long, env = "LEITWERK_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Name of the resource.
    #[arg(long, env = "LEITWERK_NAME")]
    pub name: String,
    /// Artifact store URL (`file:///…`, `s3://…`, `gs://…`, `az://…`).
    #[arg(long, env = "LEITWERK_ARTIFACT_STORE")]
    pub artifact_store: String,
    /// Where the JSON summary goes besides stdout (Kubernetes reads it as the termination
    /// message).
    #[arg(
        long,
        env = "LEITWERK_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
    /// Scratch directory (downloads of object-store sources).
    #[arg(long, default_value = "/tmp")]
    pub work_dir: PathBuf,
}

impl JobArgs {
    /// The arguments of a Job the operator starts for `namespace`/`name`. The spec is left
    /// empty: the operator puts it in the environment ([`SPEC_ENV`]), which `to_args` never
    /// writes.
    pub fn new(namespace: &str, name: &str, artifact_store: &str) -> JobArgs {
        JobArgs {
            spec: String::new(),
            namespace: namespace.into(),
            name: name.into(),
            artifact_store: artifact_store.into(),
            termination_log: PathBuf::from("/dev/termination-log"),
            work_dir: PathBuf::from("/tmp"),
        }
    }

    fn write(&self, out: &mut Vec<String>) {
        flag(out, "--namespace", &self.namespace);
        flag(out, "--name", &self.name);
        flag(out, "--artifact-store", &self.artifact_store);
        if self.termination_log.as_os_str() != "/dev/termination-log" {
            flag(out, "--termination-log", &self.termination_log.display());
        }
        if self.work_dir.as_os_str() != "/tmp" {
            flag(out, "--work-dir", &self.work_dir.display());
        }
    }
}

/// The trainer's Job sub-commands: the ones the operator starts.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum JobCommand {
    /// Materialize a FeatureSet into a versioned, point-in-time-correct snapshot with statistics.
    Materialize {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
    },
    /// Train a Model on a FeatureSet snapshot, evaluate it and export one ONNX graph.
    Train {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// What to train.
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Score a table with a Model's version: one file with the entity id, the score, the
    /// version and the largest attributions of each row.
    Score {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// What to score, with which version, and where to write.
        #[command(flatten)]
        score: ScoreArgs,
    },
    /// Fit BG/NBD and Gamma-Gamma on a Model's transactions and score every customer's
    /// lifetime value over its horizon into one file.
    LifetimeValue {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// Where to write, and the newest day allowed.
        #[command(flatten)]
        lifetime: LifetimeArgs,
    },
    /// Chunk, embed and write the next version of a RagIndex.
    Index {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// The sources and the versions.
        #[command(flatten)]
        index: IndexArgs,
    },
    /// Remove every index file of a RagIndex (the operator runs this when one is deleted).
    DeleteIndex {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
    },
    /// Run a ContentPipeline's stages once: retrieve, outline, draft, fact check, style and
    /// on-page checks, with revisions and fallbacks; write the run's artifacts.
    Content {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// The run.
        #[command(flatten)]
        content: ContentArgs,
    },
    /// Publish an approved run's payload to the ContentPipeline's target.
    PublishContent {
        /// The Job's resource and store.
        #[command(flatten)]
        job: JobArgs,
        /// The run and its payload.
        #[command(flatten)]
        publish: PublishArgs,
    },
}

impl JobCommand {
    /// The common arguments.
    pub fn job(&self) -> &JobArgs {
        match self {
            JobCommand::Materialize { job }
            | JobCommand::Train { job, .. }
            | JobCommand::Score { job, .. }
            | JobCommand::LifetimeValue { job, .. }
            | JobCommand::Index { job, .. }
            | JobCommand::DeleteIndex { job }
            | JobCommand::Content { job, .. }
            | JobCommand::PublishContent { job, .. } => job,
        }
    }

    /// The command line (sub-command first) that `leitwerk-trainer` parses back into `self`,
    /// given the spec in [`SPEC_ENV`].
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            JobCommand::Materialize { job } => {
                out.push("materialize".into());
                job.write(&mut out);
            }
            JobCommand::Train { job, train } => {
                out.push("train".into());
                job.write(&mut out);
                flag(&mut out, "--version", &train.version);
                flag(&mut out, "--snapshot", &train.snapshot);
                if let Some(path) = &train.onnxruntime {
                    flag(&mut out, "--onnxruntime", &path.display());
                }
            }
            JobCommand::Score { job, score } => {
                out.push("score".into());
                job.write(&mut out);
                score.write(&mut out);
            }
            JobCommand::LifetimeValue { job, lifetime } => {
                out.push("lifetime-value".into());
                job.write(&mut out);
                flag(&mut out, "--output", &lifetime.output);
                flag(&mut out, "--not-after", &lifetime.not_after);
            }
            JobCommand::Index { job, index } => {
                out.push("index".into());
                job.write(&mut out);
                index.write(&mut out);
            }
            JobCommand::DeleteIndex { job } => {
                out.push("delete-index".into());
                job.write(&mut out);
            }
            JobCommand::Content { job, content } => {
                out.push("content".into());
                job.write(&mut out);
                content.write(&mut out);
            }
            JobCommand::PublishContent { job, publish } => {
                out.push("publish-content".into());
                job.write(&mut out);
                publish.write(&mut out);
            }
        }
        out
    }
}

/// `leitwerk-inference-server`'s command line: serves Leitwerk models (ONNX, with
/// preprocessing inside the graph) over the Open Inference Protocol v2, REST and gRPC,
/// RagIndex versions for retrieval, and per-version Prometheus metrics.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(name = "leitwerk-inference-server", version)]
pub struct ServerArgs {
    /// Model to serve as NAME=VERSION=URL[#sha256:HEX] (repeat for several models and
    /// versions; the first version of a name is its default).
    #[arg(
        long = "model",
        value_name = "NAME=VERSION=URL",
        required_unless_present_any = ["embedding_model_dir", "generator_model"]
    )]
    pub models: Vec<ModelArg>,
    /// RagIndex version to serve as NAME=URL of its index file (repeatable); needs
    /// --embedding-model-dir, the model it was built with.
    #[arg(
        long = "index",
        value_name = "NAME=URL",
        requires = "embedding_model_dir"
    )]
    pub indexes: Vec<IndexArg>,
    /// Directory of the embedding model (`config.json`, `tokenizer.json`,
    /// `model.safetensors`; `tests/minilm.sh` provides all-MiniLM-L6-v2): serves
    /// `/v1/embeddings` and the indexes' `/v1/indexes/{name}/query`.
    #[arg(long, env = "LEITWERK_EMBEDDING_MODEL_DIR")]
    pub embedding_model_dir: Option<PathBuf>,
    /// A GGUF model (llama architecture, byte-level BPE vocabulary, e.g. SmolLM2-135M-Instruct
    /// from `tests/smollm2.sh`) to serve OpenAI-compatible chat completions with
    /// (`/v1/chat/completions`, streamed or whole).
    #[arg(long, env = "LEITWERK_GENERATOR_MODEL")]
    pub generator_model: Option<PathBuf>,
    /// How index queries that name no `mode` rank chunks.
    #[arg(long, default_value_t = SearchMode::Dense)]
    pub search_mode: SearchMode,
    /// Embed on the GPU (ONNX Runtime's CUDA execution provider); on the CPU when it cannot,
    /// said on stderr with the reason.
    #[arg(long)]
    pub embedding_gpu: bool,
    /// Address of the REST endpoint (and /metrics).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Address of the gRPC endpoint.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub grpc_addr: SocketAddr,
    /// Path of ONNX Runtime's shared library (libonnxruntime.so, e.g. from the onnxruntime
    /// wheel: `tests/onnxruntime.sh` provides one).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Largest dynamic batch in rows; 1 disables batching.
    #[arg(long, default_value_t = 1)]
    pub max_batch_size: usize,
    /// Extra wait for a batch to fill, in milliseconds. 0 (the default) never waits: a
    /// request that finds a runner idle runs at once, and a batch is what queued while the
    /// runners were busy.
    #[arg(long, default_value_t = 0)]
    pub max_batch_delay_ms: u64,
    /// Predictions remembered for the feedback endpoint (oldest forgotten first).
    #[arg(long, default_value_t = 100_000)]
    pub feedback_capacity: usize,
    /// Seconds to keep serving after SIGTERM with readiness failing, so that load balancers
    /// and Service endpoints stop sending before the listeners close; in-flight requests then
    /// finish. Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 10)]
    pub drain_seconds: u64,
    /// Shadow mode: mirror every REST inference request to the candidate at this base URL
    /// (`http://host:port`) after answering it, and compare the answers in metrics.
    #[arg(long)]
    pub shadow: Option<String>,
    /// The threshold shadow mode compares decisions at.
    #[arg(long, default_value_t = 0.5)]
    pub shadow_threshold: f64,
    /// The model name the shadow candidate serves under, where it is another Model; the
    /// request's model name when left out.
    #[arg(long, requires = "shadow")]
    pub shadow_model: Option<String>,
    /// Constant label on every metric as KEY=VALUE (repeatable), e.g. `variant=canary`; the
    /// operator sets namespace, experiment and variant.
    #[arg(long = "metric-label", value_name = "KEY=VALUE")]
    pub metric_labels: Vec<MetricLabel>,
}

impl Default for ServerArgs {
    fn default() -> Self {
        ServerArgs {
            models: Vec::new(),
            indexes: Vec::new(),
            embedding_model_dir: None,
            generator_model: None,
            search_mode: SearchMode::Dense,
            embedding_gpu: false,
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            onnxruntime: None,
            max_batch_size: 1,
            max_batch_delay_ms: 0,
            feedback_capacity: 100_000,
            drain_seconds: 10,
            shadow: None,
            shadow_threshold: 0.5,
            shadow_model: None,
            metric_labels: Vec::new(),
        }
    }
}

impl ServerArgs {
    /// The command line (without the program name) that parses back into `self`. Values
    /// equal to their defaults are left out, so that a Deployment's arguments say only what
    /// the operator chose.
    pub fn to_args(&self) -> Vec<String> {
        let d = ServerArgs::default();
        let mut out = Vec::new();
        for m in &self.models {
            flag(&mut out, "--model", m);
        }
        for i in &self.indexes {
            flag(&mut out, "--index", i);
        }
        if let Some(dir) = &self.embedding_model_dir {
            flag(&mut out, "--embedding-model-dir", &dir.display());
        }
        if let Some(path) = &self.generator_model {
            flag(&mut out, "--generator-model", &path.display());
        }
        if self.search_mode != d.search_mode || !self.indexes.is_empty() {
            flag(&mut out, "--search-mode", &self.search_mode);
        }
        if self.embedding_gpu {
            out.push("--embedding-gpu".into());
        }
        if self.http_addr != d.http_addr {
            flag(&mut out, "--http-addr", &self.http_addr);
        }
        if self.grpc_addr != d.grpc_addr {
            flag(&mut out, "--grpc-addr", &self.grpc_addr);
        }
        if let Some(path) = &self.onnxruntime {
            flag(&mut out, "--onnxruntime", &path.display());
        }
        if self.max_batch_size != d.max_batch_size
            || self.max_batch_delay_ms != d.max_batch_delay_ms
        {
            flag(&mut out, "--max-batch-size", &self.max_batch_size);
            flag(&mut out, "--max-batch-delay-ms", &self.max_batch_delay_ms);
        }
        if self.feedback_capacity != d.feedback_capacity {
            flag(&mut out, "--feedback-capacity", &self.feedback_capacity);
        }
        flag(&mut out, "--drain-seconds", &self.drain_seconds);
        if let Some(url) = &self.shadow {
            flag(&mut out, "--shadow", url);
            flag(&mut out, "--shadow-threshold", &self.shadow_threshold);
            if let Some(model) = &self.shadow_model {
                flag(&mut out, "--shadow-model", model);
            }
        }
        for l in &self.metric_labels {
            flag(&mut out, "--metric-label", l);
        }
        out
    }
}

fn flag(out: &mut Vec<String>, name: &str, value: &dyn fmt::Display) {
    out.push(name.to_string());
    out.push(value.to_string());
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// The trainer's Job sub-commands as its binary parses them.
    #[derive(Debug, Parser)]
    struct Trainer {
        #[command(subcommand)]
        command: JobCommand,
    }

    fn parse_job(command: &JobCommand) -> JobCommand {
        let mut args = vec!["leitwerk-trainer".to_string()];
        args.extend(command.to_args());
        // The spec travels in the environment; given as a flag it parses the same.
        args.extend(["--spec".to_string(), command.job().spec.clone()]);
        match Trainer::try_parse_from(&args) {
            Ok(t) => t.command,
            Err(e) => panic!("{args:?} does not parse: {e}"),
        }
    }

    #[test]
    fn every_trainer_command_the_operator_builds_parses_back_to_itself() {
        let job = JobArgs {
            spec: "{}".into(),
            ..JobArgs::new("marketing", "docs", "file:///artifacts")
        };
        let commands = [
            JobCommand::Materialize { job: job.clone() },
            JobCommand::Train {
                job: job.clone(),
                train: TrainArgs {
                    snapshot: "file:///artifacts/featuresets/x/".into(),
                    version: "v3".into(),
                    onnxruntime: Some("/opt/ort/libonnxruntime.so".into()),
                },
            },
            JobCommand::Score {
                job: job.clone(),
                score: ScoreArgs {
                    model: "file:///artifacts/models/x/model.onnx#sha256:ab".into(),
                    version: "v4".into(),
                    snapshot: Some("file:///artifacts/featuresets/x/".into()),
                    source: None,
                    entity_column: None,
                    output: "s3://crm/scores/x-v4-20261206T0500Z.parquet".into(),
                    attributions: 3,
                    onnxruntime: None,
                },
            },
            JobCommand::LifetimeValue {
                job: job.clone(),
                lifetime: LifetimeArgs {
                    output: "s3://crm/clv/shop-20261206T0500Z.csv".into(),
                    not_after: "2026-12-06".into(),
                },
            },
            JobCommand::Score {
                job: job.clone(),
                score: ScoreArgs {
                    model: "file:///artifacts/models/x/model.onnx".into(),
                    version: "v1".into(),
                    snapshot: None,
                    source: Some("gs://crm/leads.csv".into()),
                    entity_column: Some("lead_id".into()),
                    output: "file:///out/x.csv".into(),
                    attributions: 0,
                    onnxruntime: Some("/opt/ort/libonnxruntime.so".into()),
                },
            },
            JobCommand::Index {
                job: JobArgs {
                    termination_log: "/tmp/term".into(),
                    work_dir: "/scratch".into(),
                    ..job.clone()
                },
                index: IndexArgs {
                    sources: vec![
                        "docs=/sources/docs".parse().unwrap(),
                        "pdfs=/data/*.md".parse().unwrap(),
                    ],
                    model_dir: Some("/models/minilm".into()),
                    previous: Some("file:///a/x.lwrag".into()),
                    labelled: Some("/evaluation/queries.jsonl".into()),
                    k: 10,
                    prune: true,
                    keep: vec!["file:///a/x.lwrag".into(), "file:///a/y.lwrag".into()],
                    serving: Some("file:///a/w.lwrag".into()),
                    serving_mode: SearchMode::Hybrid,
                    qdrant: Some("qdrant+http://qdrant:6334/docs".parse().unwrap()),
                    gpu: true,
                },
            },
            JobCommand::Index {
                job: job.clone(),
                index: IndexArgs {
                    sources: vec!["docs=/sources/docs".parse().unwrap()],
                    model_dir: None,
                    previous: None,
                    labelled: None,
                    k: 5,
                    prune: false,
                    keep: Vec::new(),
                    serving: None,
                    serving_mode: SearchMode::Dense,
                    qdrant: None,
                    gpu: false,
                },
            },
            JobCommand::Content {
                job: job.clone(),
                content: ContentArgs {
                    run_id: "0123456789ab".into(),
                    index: "file:///a/x.lwrag".into(),
                    model_dir: Some("/models/minilm".into()),
                    link_map: Some(r#"{"Pro plan":"/pricing"}"#.into()),
                    templates: Some(r#"{"system":"Be brief."}"#.into()),
                },
            },
            JobCommand::PublishContent {
                job: job.clone(),
                publish: PublishArgs {
                    run_id: "0123456789ab".into(),
                    payload: "file:///a/content/payload.json".into(),
                    digest: format!("sha256:{}", "ab".repeat(32)),
                },
            },
            JobCommand::DeleteIndex { job },
        ];
        for command in commands {
            assert_eq!(parse_job(&command), command);
        }
        assert!(
            JobCommand::augment_subcommands(clap::Command::new("t"))
                .get_subcommands()
                .any(|c| c.get_name() == "delete-index")
        );
    }

    #[test]
    fn every_server_command_line_the_operator_builds_parses_back_to_itself() {
        let servers = [
            ServerArgs {
                models: vec![
                    format!(
                        "lead-scoring=v3=file:///m/v3.onnx#sha256:{}",
                        "ab".repeat(32)
                    )
                    .parse()
                    .unwrap(),
                    "lead-scoring=v4=s3://bucket/v4.onnx".parse().unwrap(),
                ],
                max_batch_size: 32,
                max_batch_delay_ms: 2,
                shadow: Some("http://lead-scoring-candidate.marketing.svc:8080".into()),
                shadow_model: Some("lead-scoring-rules".into()),
                shadow_threshold: 0.4,
                metric_labels: vec![
                    "namespace=marketing".parse().unwrap(),
                    "variant=canary".parse().unwrap(),
                ],
                ..ServerArgs::default()
            },
            ServerArgs {
                indexes: vec!["docs=file:///i/ab.lwrag".parse().unwrap()],
                embedding_model_dir: Some("/models/minilm".into()),
                search_mode: SearchMode::Hybrid,
                embedding_gpu: true,
                http_addr: "127.0.0.1:9000".parse().unwrap(),
                grpc_addr: "127.0.0.1:9001".parse().unwrap(),
                onnxruntime: Some("/ort/lib.so".into()),
                generator_model: Some("/models/smollm2.gguf".into()),
                feedback_capacity: 10,
                drain_seconds: 3,
                ..ServerArgs::default()
            },
        ];
        for server in servers {
            let mut args = vec!["leitwerk-inference-server".to_string()];
            args.extend(server.to_args());
            match ServerArgs::try_parse_from(&args) {
                Ok(parsed) => assert_eq!(parsed, server, "{args:?}"),
                Err(e) => panic!("{args:?} does not parse: {e}"),
            }
        }
    }

    #[test]
    fn malformed_values_are_refused_naming_the_flag() {
        assert!("x".parse::<SourceMount>().unwrap_err().contains("--source"));
        assert!("a=v1".parse::<ModelArg>().unwrap_err().contains("--model"));
        assert!("docs".parse::<IndexArg>().unwrap_err().contains("--index"));
        assert!(
            "1x=y"
                .parse::<MetricLabel>()
                .unwrap_err()
                .contains("label name")
        );
        assert!(
            "model=x"
                .parse::<MetricLabel>()
                .unwrap_err()
                .contains("sets itself")
        );
    }
}
