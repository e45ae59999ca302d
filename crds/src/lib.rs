//! Leitwerk's API: the `leitwerk.dev/v1alpha1` resources, their shared types and the CRD
//! definitions generated from them.
//!
//! This crate has no I/O and no controller logic. The operator, the trainer and the inference
//! server all depend on it; it depends on none of them.

pub mod card;
pub mod command;
pub mod common;
pub mod content_pipeline;
pub mod contract;
pub mod crd;
pub mod experiment;
pub mod feature_set;
pub mod filter;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod progress;
pub mod rag_index;
pub mod summary;
pub mod versions;

pub use common::{Condition, LocalObjectReference, ResourceStatus, SecretKeyReference};
pub use content_pipeline::{ContentPipeline, ContentPipelineSpec, ContentPipelineStatus};
pub use experiment::{Experiment, ExperimentSpec, ExperimentStatus};
pub use feature_set::{FeatureSet, FeatureSetSpec, FeatureSetStatus};
pub use model::{Model, ModelSpec, ModelStatus};
pub use policy::{LeitwerkPolicy, LeitwerkPolicySpec, LeitwerkPolicyStatus};
pub use rag_index::{RagIndex, RagIndexSpec, RagIndexStatus};

/// The API group of every Leitwerk resource.
pub const GROUP: &str = "leitwerk.dev";
/// The API version served by this crate.
pub const VERSION: &str = "v1alpha1";
/// The category that `kubectl get leitwerk` lists.
pub const CATEGORY: &str = "leitwerk";
/// The field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "leitwerk.dev/operator";
