//! Retrieval for Leitwerk: documents, chunking measured in the embedding model's word pieces,
//! all-MiniLM-L6-v2 embeddings (ONNX Runtime on a graph of fused operators, or candle), and the evaluation of an index on labelled queries.
//!
//! No I/O beyond reading model files: the trainer's `index` command and the inference server
//! both build on this crate.

pub mod bert_onnx;
pub mod chunk;
pub mod documents;
pub mod embed;
pub mod eval;
pub mod feeds;
pub mod index;
pub mod qdrant;
pub mod scan;
pub mod search;
pub mod sources;
