//! A loaded model: its ONNX Runtime session, its inputs and the model card's reference buckets.

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use sha2::{Digest, Sha256};

/// Largest number of rows one request may carry.
pub const MAX_ROWS: usize = 10_000;
/// Longest string (in bytes) one `BYTES` element may hold.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Largest request body over REST, and largest message over gRPC, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest a request may take before the server answers that it gave up.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Errors a caller can fix (400 / INVALID_ARGUMENT) or the server's own (500 / INTERNAL).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The request does not match the model's inputs.
    #[error("{0}")]
    Invalid(String),
    /// No such model or version.
    #[error("{0}")]
    NotFound(String),
    /// The model failed to run.
    #[error("{0}")]
    Internal(String),
    /// The caller did not prove who it is (the feedback token is missing or wrong).
    #[error("{0}")]
    Unauthenticated(String),
    /// The request repeats one already done (an outcome reported twice).
    #[error("{0}")]
    Conflict(String),
    /// The request is larger than a limit of the server (413 / RESOURCE_EXHAUSTED).
    #[error("{0}")]
    TooLarge(String),
    /// The request took longer than the server's limit (503 / DEADLINE_EXCEEDED).
    #[error("{0}")]
    Timeout(String),
}

/// What an input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `FP32` (FP64, INT32 and INT64 are converted).
    Number,
    /// `BYTES` (UTF-8 strings).
    Text,
}

impl InputKind {
    /// The OIP v2 datatype.
    pub fn datatype(self) -> &'static str {
        match self {
            InputKind::Number => "FP32",
            InputKind::Text => "BYTES",
        }
    }
}

/// Tensor data as a request carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Numbers of any numeric datatype.
    Numbers(Vec<f64>),
    /// Strings.
    Text(Vec<String>),
}

/// One input tensor of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorIn {
    /// Input name.
    pub name: String,
    /// OIP v2 datatype as sent.
    pub datatype: String,
    /// Shape as sent.
    pub shape: Vec<i64>,
    /// Flattened data.
    pub data: Data,
}

/// The numbers of input `name` as FP32, by the documented policy: NaN is a missing value (the
/// graph imputes it as training did, and it counts in the feature's `missing` bucket);
/// infinities and numbers beyond FP32's range (about ±3.4e38) are refused, naming the row.
fn numbers(name: &str, values: Vec<f64>) -> Result<Vec<f32>, InferError> {
    values
        .into_iter()
        .enumerate()
        .map(|(row, x)| {
            let y = x as f32;
            if x.is_nan() || y.is_finite() {
                Ok(y)
            } else {
                Err(InferError::Invalid(format!(
                    "input {name:?} row {row} is {x}, which is infinite or beyond FP32's range (±3.4e38); send a finite number, or NaN for a missing value"
                )))
            }
        })
        .collect()
}

/// A column of validated rows, in model input order.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers.
    Number(Vec<f32>),
    /// Strings.
    Text(Vec<String>),
}

/// Validated rows for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Row count.
    pub n: usize,
    /// Columns in model input order.
    pub columns: Vec<Column>,
}

impl Rows {
    /// Appends another batch's rows.
    pub fn extend(&mut self, other: Rows) {
        self.n += other.n;
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            match (mine, theirs) {
                (Column::Number(a), Column::Number(b)) => a.extend(b),
                (Column::Text(a), Column::Text(b)) => a.extend(b),
                _ => {}
            }
        }
    }
}

pub use leitwerk_crds::card::{ModelCard as Card, Reference};

/// A model version ready to serve.
#[derive(Debug)]
pub struct Model {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Inputs in session order.
    pub inputs: Vec<(String, InputKind)>,
    /// The output tensor served.
    pub output: String,
    /// Reference buckets per input (None when the card lacks the feature or there is no card).
    pub references: Vec<Option<Reference>>,
    /// `sha256:<hex>` of the ONNX file.
    pub digest: String,
    /// The explainer the file carries, or why the model cannot explain.
    explaining: Result<crate::explain::Explaining, String>,
    session: Mutex<Session>,
    /// Recent nanoseconds per row, by the run's size (rows 1, 2–3, 4–7, …: the floor of its
    /// base-2 logarithm): a moving average of the last runs of that size, 0 before the first.
    /// A run of one row mostly pays what every run pays, so its time per row says little about
    /// a batch's.
    nanos_per_row: [AtomicU64; SIZE_CLASSES],
}

/// A run expected to take at most this long runs on the thread that took the request. Handing
/// it to a blocking thread and back costs two thread wake-ups, more than such a run itself;
/// an async thread may be held this long without starving the others.
pub const INLINE_RUN: Duration = Duration::from_micros(50);

/// Size classes of runs measured apart: 1, 2–3, 4–7, … up to 2¹⁵ rows and more.
const SIZE_CLASSES: usize = 16;

fn size_class(rows: usize) -> usize {
    (rows.max(1).ilog2() as usize).min(SIZE_CLASSES - 1)
}

/// `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

impl Model {
    /// Builds a model from ONNX bytes and an optional card.
    pub fn new(
        environment: &Environment,
        name: &str,
        version: &str,
        bytes: &[u8],
        card: Option<Card>,
    ) -> Result<Model, String> {
        let session = Session::builder(environment)
            .map_err(|e| e.to_string())?
            .with_intra_threads(1)
            .map_err(|e| e.to_string())?
            .commit_from_memory(bytes)
            .map_err(|e| format!("ONNX Runtime cannot load model {name} {version}: {e}"))?;
        let mut inputs = Vec::new();
        for input in session.inputs() {
            let kind = match input.dtype() {
                ValueType::Tensor {
                    ty: TensorElementType::String,
                    ..
                } => InputKind::Text,
                ValueType::Tensor {
                    ty: TensorElementType::Float32,
                    ..
                } => InputKind::Number,
                other => {
                    return Err(format!(
                        "model {name} {version}: input {} has type {other}; Leitwerk serves float and string inputs",
                        input.name()
                    ));
                }
            };
            inputs.push((input.name().to_string(), kind));
        }
        let output = session
            .outputs()
            .iter()
            .find(|o| {
                matches!(
                    o.dtype(),
                    ValueType::Tensor {
                        ty: TensorElementType::Float32,
                        ..
                    }
                )
            })
            .map(|o| o.name().to_string())
            .ok_or_else(|| format!("model {name} {version} has no float output"))?;
        let explainer = session
            .metadata()
            .ok()
            .and_then(|m| m.custom(leitwerk_explain::METADATA_KEY));
        let explaining = crate::explain::Explaining::new(explainer, &inputs);
        let card = card.unwrap_or_default();
        let references = inputs
            .iter()
            .map(|(n, _)| card.reference.iter().find(|r| &r.name == n).cloned())
            .collect();
        Ok(Model {
            name: name.into(),
            version: version.into(),
            inputs,
            output,
            references,
            digest: digest(bytes),
            explaining,
            session: Mutex::new(session),
            nanos_per_row: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// Attributions of validated rows (blocking; call from a blocking thread).
    pub fn explain(&self, rows: &Rows) -> Result<crate::explain::Explained, InferError> {
        match &self.explaining {
            Ok(e) => e.explain(rows),
            Err(why) => Err(InferError::Invalid(format!(
                "model {} {} cannot explain: {why}",
                self.name, self.version
            ))),
        }
    }

    /// Validates request tensors against the inputs: names, shapes and datatypes.
    /// Each refusal names the input and what was expected; long because there are that many
    /// ways a request can be wrong.
    pub fn prepare(&self, tensors: Vec<TensorIn>) -> Result<Rows, InferError> {
        let bad = InferError::Invalid;
        let mut slots: Vec<Option<Column>> = vec![None; self.inputs.len()];
        let mut n: Option<usize> = None;
        for t in tensors {
            let Some(i) = self.inputs.iter().position(|(name, _)| *name == t.name) else {
                return Err(bad(format!(
                    "unknown input {:?}; model {} {} takes {}",
                    t.name,
                    self.name,
                    self.version,
                    self.inputs
                        .iter()
                        .map(|(n, k)| format!("{n} ({})", k.datatype()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if slots[i].is_some() {
                return Err(bad(format!("input {:?} is given twice", t.name)));
            }
            let kind = self.inputs[i].1;
            let rows = match t.shape.as_slice() {
                [r] | [r, 1] if *r >= 0 => *r as usize,
                _ => {
                    return Err(bad(format!(
                        "input {:?} has shape {:?}; expected [N] or [N, 1]",
                        t.name, t.shape
                    )));
                }
            };
            let len = match &t.data {
                Data::Numbers(v) => v.len(),
                Data::Text(v) => v.len(),
            };
            if len != rows {
                return Err(bad(format!(
                    "input {:?} has shape {:?} but {len} values",
                    t.name, t.shape
                )));
            }
            let column = match (kind, t.datatype.as_str(), t.data) {
                (
                    InputKind::Number,
                    "FP32" | "FP64" | "INT32" | "INT64" | "INT16" | "INT8" | "UINT8" | "UINT16"
                    | "UINT32" | "UINT64",
                    Data::Numbers(v),
                ) => Column::Number(numbers(&t.name, v)?),
                (InputKind::Text, "BYTES", Data::Text(v)) => {
                    if let Some((row, s)) = v
                        .iter()
                        .enumerate()
                        .find(|(_, s)| s.len() > MAX_STRING_BYTES)
                    {
                        return Err(bad(format!(
                            "input {:?} row {row} is {} bytes long; the server's limit is {MAX_STRING_BYTES} bytes a string",
                            t.name,
                            s.len()
                        )));
                    }
                    // ONNX Runtime's strings are C strings: a NUL would fail the run (500).
                    if let Some(row) = v.iter().position(|s| s.contains('\0')) {
                        return Err(bad(format!(
                            "input {:?} row {row} contains a NUL character, which a model's string input cannot hold",
                            t.name
                        )));
                    }
                    Column::Text(v)
                }
                (kind, datatype, _) => {
                    return Err(bad(format!(
                        "input {:?} has datatype {datatype} (or data of another type); the model expects {}",
                        t.name,
                        kind.datatype()
                    )));
                }
            };
            match n {
                Some(prev) if prev != rows => {
                    return Err(bad(format!(
                        "input {:?} has {rows} rows but others have {prev}",
                        t.name
                    )));
                }
                _ => n = Some(rows),
            }
            slots[i] = Some(column);
        }
        let missing: Vec<&str> = self
            .inputs
            .iter()
            .zip(&slots)
            .filter(|(_, s)| s.is_none())
            .map(|((n, _), _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!("missing input(s): {}", missing.join(", "))));
        }
        let n = n.unwrap_or(0);
        if n == 0 || n > MAX_ROWS {
            return Err(bad(format!(
                "a request carries 1 to {MAX_ROWS} rows, not {n}"
            )));
        }
        Ok(Rows {
            n,
            columns: slots.into_iter().flatten().collect(),
        })
    }

    /// Whether a run of `rows` rows is expected to take at most [`INLINE_RUN`], by the model's
    /// recent runs of that size: such a run may stay on an async thread. A size not run yet is
    /// estimated from the nearest smaller size that was (per row, which overestimates a
    /// larger batch), and is unknown, so not short, before the first run.
    pub fn runs_inline(&self, rows: usize) -> bool {
        let per_row = (0..=size_class(rows))
            .rev()
            .map(|c| self.nanos_per_row[c].load(Ordering::Relaxed))
            .find(|&n| n > 0)
            .unwrap_or(0);
        let limit = u64::try_from(INLINE_RUN.as_nanos()).unwrap_or(u64::MAX);
        per_row > 0 && per_row.saturating_mul(rows as u64) <= limit
    }

    /// Runs the model (blocking: call from a blocking thread unless
    /// [`Model::runs_inline`] says it is short).
    pub fn run(&self, rows: &Rows) -> Result<Vec<f32>, InferError> {
        let started = Instant::now();
        let scores = self.run_session(rows);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let per_row = (nanos / rows.n.max(1) as u64).max(1);
        // A moving average over about the last eight runs of this size; concurrent runs may
        // lose an update, which only delays the average.
        let average = &self.nanos_per_row[size_class(rows.n)];
        let old = average.load(Ordering::Relaxed);
        let new = if old == 0 {
            per_row
        } else {
            old - old / 8 + per_row / 8
        };
        average.store(new, Ordering::Relaxed);
        scores
    }

    fn run_session(&self, rows: &Rows) -> Result<Vec<f32>, InferError> {
        let internal = |e: &dyn std::fmt::Display| {
            InferError::Internal(format!("model {} {} failed: {e}", self.name, self.version))
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(rows.columns.len());
        for ((name, _), column) in self.inputs.iter().zip(&rows.columns) {
            let value: SessionInputValue<'_> = match column {
                Column::Number(v) => Tensor::from_array(([rows.n, 1], v.clone()))
                    .map_err(|e| internal(&e))?
                    .into(),
                Column::Text(v) => Tensor::from_string_array(([rows.n, 1], v.as_slice()))
                    .map_err(|e| internal(&e))?
                    .into(),
            };
            inputs.push((Cow::Borrowed(name.as_str()), value));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| InferError::Internal("session lock poisoned".into()))?;
        let outputs = session.run(inputs).map_err(|e| internal(&e))?;
        let (_, scores) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| internal(&e))?;
        // A two-column output ([N, 2], e.g. class probabilities exported from scikit-learn)
        // serves P(class 1).
        if scores.len() == 2 * rows.n {
            return Ok(scores.iter().skip(1).step_by(2).copied().collect());
        }
        if scores.len() < rows.n {
            return Err(InferError::Internal(format!(
                "model {} {} returned {} scores for {} rows",
                self.name,
                self.version,
                scores.len(),
                rows.n
            )));
        }
        Ok(scores[..rows.n].to_vec())
    }
}
