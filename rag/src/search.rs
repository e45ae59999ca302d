//! Retrieval over an index version behind one trait, so that the embedded store and a vector
//! database answer the same questions. [`ExactStore`] scores every chunk (exact search): the
//! reference that approximate stores are measured against.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::embed::cosine;
use crate::index::Index;

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

impl VectorStore for ExactStore {
    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>, UnknownField> {
        if let Some(field) = filter.keys().find(|f| !self.fields.contains(*f)) {
            return Err(UnknownField {
                field: field.clone(),
                known: self.fields.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let mut scored: Vec<(
            f32,
            &crate::index::StoredDocument,
            &crate::index::StoredChunk,
        )> = Vec::new();
        for doc in self.index.documents.values() {
            for chunk in &doc.chunks {
                let passes = filter.iter().all(|(field, want)| {
                    let have = match field.as_str() {
                        "source" => Some(doc.source.as_str()),
                        "section" => Some(chunk.section.as_str()),
                        "document" => Some(doc.id.as_str()),
                        other => doc.metadata.get(other).map(String::as_str),
                    };
                    have == Some(want.as_str())
                });
                if passes {
                    scored.push((cosine(query, &chunk.vector), doc, chunk));
                }
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(score, doc, chunk)| Hit {
                chunk: chunk.id.clone(),
                document: doc.id.clone(),
                title: doc.title.clone(),
                url: doc.url.clone(),
                section: chunk.section.clone(),
                text: chunk.text.clone(),
                score,
            })
            .collect())
    }

    fn len(&self) -> usize {
        self.index.chunks().count()
    }
}
