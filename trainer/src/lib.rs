//! The trainer's library: the work behind `leitwerk-trainer`'s sub-commands.

pub mod boosting;
pub mod clv;
pub mod content;
pub mod datagen;
pub mod explain;
pub mod index;
pub mod logistic;
pub mod materialize;
pub mod metrics;
pub mod onnx;
pub mod pipeline;
pub mod preprocess;
pub mod progress;
pub mod runtime;
pub mod split;
pub mod store;
pub mod tree;
