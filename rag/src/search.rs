//! Retrieval over an index version behind one trait, so that the embedded store and a vector
//! database answer the same questions. [`ExactStore`] scores every chunk (exact search): the
//! reference that approximate stores are measured against.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::embed::cosine;
use crate::index::{Index, StoredChunk, StoredDocument};

/// Fields every chunk can be filtered on, besides its document's metadata keys.
pub const BUILT_IN_FIELDS: [&str; 3] = ["source", "section", "document"];

/// Equality filter: every field must have the given value.
pub type Filter = BTreeMap<String, String>;

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    /// Chunk id.
    pub chunk: String,
    /// Document id.
    pub document: String,
    /// Document title.
    pub title: String,
    /// Document URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Heading path.
    pub section: String,
    /// Chunk text.
    pub text: String,
    /// Cosine similarity.
    pub score: f32,
}

/// A filter naming a field that no chunk has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filter field {field:?} is not known to this index; filter on one of: {known}")]
pub struct UnknownField {
    /// The field.
    pub field: String,
    /// The fields there are.
    pub known: String,
}

/// What answers queries over an index version.
pub trait VectorStore {
    /// The `k` chunks most similar to `query` (a unit vector) that pass `filter`, best first.
    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>, UnknownField>;
    /// Chunks stored.
    fn len(&self) -> usize;
    /// Whether nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Exact search over an index held in memory.
#[derive(Debug, Clone)]
pub struct ExactStore {
    index: Index,
    fields: BTreeSet<String>,
}

impl ExactStore {
    /// A store over `index`.
    pub fn new(index: Index) -> ExactStore {
        let mut fields: BTreeSet<String> = BUILT_IN_FIELDS.iter().map(|f| f.to_string()).collect();
        for doc in index.documents.values() {
            fields.extend(doc.metadata.keys().cloned());
        }
        ExactStore { index, fields }
    }

    /// The index it serves.
    pub fn index(&self) -> &Index {
        &self.index
    }
}

/// Whether a chunk passes a filter (and may serve at all: quarantined chunks never do).
fn passes(doc: &StoredDocument, chunk: &StoredChunk, filter: &Filter) -> bool {
    !chunk.quarantined
        && filter.iter().all(|(field, want)| {
            let have = match field.as_str() {
                "source" => Some(doc.source.as_str()),
                "section" => Some(chunk.section.as_str()),
                "document" => Some(doc.id.as_str()),
                other => doc.metadata.get(other).map(String::as_str),
            };
            have == Some(want.as_str())
        })
}

fn hit(doc: &StoredDocument, chunk: &StoredChunk, score: f32) -> Hit {
    Hit {
        chunk: chunk.id.clone(),
        document: doc.id.clone(),
        title: doc.title.clone(),
        url: doc.url.clone(),
        section: chunk.section.clone(),
        text: chunk.text.clone(),
        score,
    }
}

impl ExactStore {
    fn check_fields(&self, filter: &Filter) -> Result<(), UnknownField> {
        match filter.keys().find(|f| !self.fields.contains(*f)) {
            Some(field) => Err(UnknownField {
                field: field.clone(),
                known: self.fields.iter().cloned().collect::<Vec<_>>().join(", "),
            }),
            None => Ok(()),
        }
    }
}

impl VectorStore for ExactStore {
    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>, UnknownField> {
        self.check_fields(filter)?;
        let mut scored: Vec<(f32, &StoredDocument, &StoredChunk)> = Vec::new();
        for doc in self.index.documents.values() {
            for chunk in &doc.chunks {
                if passes(doc, chunk, filter) {
                    scored.push((cosine(query, &chunk.vector), doc, chunk));
                }
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(score, doc, chunk)| hit(doc, chunk, score))
            .collect())
    }

    fn len(&self) -> usize {
        self.index.chunks().count()
    }
}

/// The constant of reciprocal rank fusion: a result at rank r (from 1) adds 1 / (60 + r).
pub const RRF_K: f32 = 60.0;

/// The least depth each ranking of a hybrid search reaches before fusion.
pub const HYBRID_DEPTH: usize = 200;

/// Dense and keyword retrieval fused by reciprocal rank fusion, for the product names, SKUs
/// and codes that embeddings miss: BM25 (the `bm25` crate: English stemming and stop words)
/// over the chunk texts, beside exact dense search.
pub struct HybridStore {
    dense: ExactStore,
    keywords: bm25::SearchEngine<usize>,
    /// (document id, chunk position) by keyword-engine id.
    chunks: Vec<(String, usize)>,
}

impl std::fmt::Debug for HybridStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridStore")
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl HybridStore {
    /// A hybrid store over `index` (the keyword index is built in memory).
    pub fn new(dense: ExactStore) -> HybridStore {
        let mut chunks = Vec::new();
        let mut docs = Vec::new();
        for doc in dense.index().documents.values() {
            for (i, chunk) in doc.chunks.iter().enumerate() {
                docs.push(bm25::Document::new(chunks.len(), chunk.text.clone()));
                chunks.push((doc.id.clone(), i));
            }
        }
        let keywords =
            bm25::SearchEngineBuilder::<usize>::with_documents(bm25::Language::English, docs)
                .build();
        HybridStore {
            dense,
            keywords,
            chunks,
        }
    }

    /// The dense store inside.
    pub fn dense(&self) -> &ExactStore {
        &self.dense
    }

    /// The `k` best chunks for `text` (embedded as `query`) that pass `filter`: the dense and
    /// the keyword ranking, each to a depth of `max(4k, HYBRID_DEPTH)`, fused by reciprocal
    /// rank (the fixed floor makes the first results the same whatever `k` asks: the
    /// evaluation gate ranks deeper than a user's query and must see the same order); the
    /// score is the fused one.
    pub fn search(
        &self,
        query: &[f32],
        text: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, UnknownField> {
        self.dense.check_fields(filter)?;
        let depth = (k * 4).max(HYBRID_DEPTH);
        let dense = self.dense.search(query, depth, filter)?;
        let index = self.dense.index();
        // Filtered out after ranking: look deeper when a filter may remove most of them.
        let limit = if filter.is_empty() { depth } else { usize::MAX };
        let mut keyword: Vec<(f32, &StoredDocument, &StoredChunk)> = self
            .keywords
            .search(text, limit)
            .into_iter()
            .filter_map(|r| {
                let (doc, i) = self.chunks.get(r.document.id)?;
                let doc = index.documents.get(doc)?;
                let chunk = doc.chunks.get(*i)?;
                passes(doc, chunk, filter).then_some((r.score, doc, chunk))
            })
            .collect();
        keyword.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        keyword.truncate(depth);
        let mut fused: BTreeMap<String, (f32, Hit)> = BTreeMap::new();
        for (rank, h) in dense.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            fused.entry(h.chunk.clone()).or_insert((0.0, h)).0 += add;
        }
        for (rank, (_, doc, chunk)) in keyword.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            fused
                .entry(chunk.id.clone())
                .or_insert_with(|| (0.0, hit(doc, chunk, 0.0)))
                .0 += add;
        }
        let mut out: Vec<(f32, Hit)> = fused.into_values().collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.chunk.cmp(&b.1.chunk)));
        Ok(out
            .into_iter()
            .take(k)
            .map(|(score, mut h)| {
                h.score = score;
                h
            })
            .collect())
    }
}
