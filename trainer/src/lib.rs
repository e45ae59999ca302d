//! The trainer's library: the work behind `leitwerk-trainer`'s sub-commands.

pub mod datagen;
pub mod logistic;
pub mod metrics;
pub mod preprocess;
pub mod split;
