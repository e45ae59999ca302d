//! ONNX Runtime in the trainer: scores raw feature columns with an exported graph, for the
//! parity check that runs before anything is published.

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use crate::pipeline::JobError;
use crate::preprocess::Columns;

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn load(library: &Path) -> Result<Environment, JobError> {
    if !library.is_file() {
        return Err(JobError::Invalid(format!(
            "ONNX Runtime library {} does not exist: pass --onnxruntime or set ORT_DYLIB_PATH",
            library.display()
        )));
    }
    // ONNX Runtime loads once per process; later calls reuse it.
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| {
                format!(
                    "failed to load ONNX Runtime from {}: {e}",
                    library.display()
                )
            })?;
            builder
                .with_name("leitwerk-trainer")
                .build()
                .map_err(|e| format!("failed to start ONNX Runtime: {e}"))
        })
        .clone()
        .map_err(JobError::Invalid)
}

/// Scores rows (raw features) with an ONNX model; returns the `score` output per row.
pub fn score(library: &Path, model: &[u8], rows: &Columns) -> Result<Vec<f64>, JobError> {
    let environment = load(library)?;
    let err = |what: &str, e: &dyn std::fmt::Display| {
        JobError::Invalid(format!("ONNX Runtime failed to {what}: {e}"))
    };
    let mut session = Session::builder(&environment)
        .map_err(|e| err("create a session", &e))?
        .commit_from_memory(model)
        .map_err(|e| err("load the exported model", &e))?;
    let n = rows.rows();
    let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
    for (name, values) in &rows.numeric {
        let data: Vec<f32> = values.iter().map(|v| *v as f32).collect();
        let t = Tensor::from_array(([n, 1], data)).map_err(|e| err("build an input", &e))?;
        inputs.push((Cow::Owned(name.clone()), t.into()));
    }
    for (name, values) in &rows.categorical {
        let t = Tensor::from_string_array(([n, 1], values.as_slice()))
            .map_err(|e| err("build an input", &e))?;
        inputs.push((Cow::Owned(name.clone()), t.into()));
    }
    let outputs = session
        .run(inputs)
        .map_err(|e| err("run the exported model", &e))?;
    let (_, scores) = outputs[crate::onnx::OUTPUT]
        .try_extract_tensor::<f32>()
        .map_err(|e| err("read the score output", &e))?;
    Ok(scores.iter().map(|&s| f64::from(s)).collect())
}

/// The embedding model in `dir`, its encoder on ONNX Runtime when this process has the library
/// (`ORT_DYLIB_PATH`, which the trainer image sets), on candle otherwise or when ONNX Runtime
/// refuses the graph; stderr says which, and why when it falls back.
///
/// With `gpu`, the encoder runs on ONNX Runtime's CUDA execution provider, or on the CPU; the
/// second value is then why.
pub fn embedder(
    dir: &Path,
    name: &str,
    gpu: bool,
) -> Result<(leitwerk_rag::embed::Embedder, Option<String>), JobError> {
    use leitwerk_rag::embed::{Embedder, OnnxDevice};
    let device = if gpu {
        OnnxDevice::Cuda
    } else {
        OnnxDevice::Cpu
    };
    let onnx = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        None => Err("ORT_DYLIB_PATH is not set".to_string()),
        Some(library) => load(Path::new(&library))
            .map_err(|e| e.to_string())
            .and_then(|env| {
                Embedder::load_onnx(dir, name, &env, None, device).map_err(|e| e.to_string())
            }),
    };
    match onnx {
        Ok(embedder) => {
            let on = match (embedder.on_gpu(), embedder.fallback()) {
                (true, _) => "the GPU (CUDA)".to_string(),
                (false, Some(why)) => format!("the CPU, not the GPU asked for: {why}"),
                (false, None) => "the CPU".to_string(),
            };
            eprintln!("leitwerk-trainer: embedding with {name} on ONNX Runtime, on {on}");
            let fallback = embedder.fallback().map(str::to_string);
            Ok((embedder, fallback))
        }
        Err(why) => {
            eprintln!("leitwerk-trainer: embedding with {name} on candle, on the CPU ({why})");
            let embedder = Embedder::load(dir, name)
                .map_err(|e| JobError::Invalid(format!("embedding model: {e}")))?;
            Ok((
                embedder,
                gpu.then(|| format!("ONNX Runtime did not load: {why}")),
            ))
        }
    }
}
