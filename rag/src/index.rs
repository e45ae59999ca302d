//! An index version: the documents it was built from (with their digests), their chunks and
//! vectors, the embedding model's identity and the chunking settings. Builds are incremental:
//! a document whose digest did not change keeps its chunks and vectors, and a change of model
//! or chunking builds from scratch, so vectors of two models are never mixed.
//!
//! An index is written as one immutable file whose name is its digest: a header (JSON) and the
//! vectors (little-endian `f32`, in chunk order).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::chunk::{Settings, SettingsError, split};
use crate::documents::{Document, digest};
use crate::embed::{EmbedError, Embedder, ModelIdentity};

/// The first bytes of an index file.
const MAGIC: &[u8; 8] = b"LWRAG001";

/// Chunking as recorded in an index (structure is per document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkingKey {
    /// Largest chunk, in word pieces.
    pub max_word_pieces: usize,
    /// Overlap, in word pieces.
    pub overlap: usize,
}

/// One chunk with what a result shows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredChunk {
    /// `<document id>#<index>`.
    pub id: String,
    /// The document's id.
    pub document: String,
    /// The text.
    pub text: String,
    /// Heading path.
    pub section: String,
    /// Word pieces.
    pub word_pieces: usize,
    /// Its vector (kept out of the header when written).
    #[serde(skip)]
    pub vector: Vec<f32>,
}

/// One document of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDocument {
    /// Id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Title.
    pub title: String,
    /// URL, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Content digest.
    pub digest: String,
    /// Its chunks.
    pub chunks: Vec<StoredChunk>,
}

/// An index version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// The embedding model.
    pub model: ModelIdentity,
    /// The chunking it was built with.
    pub chunking: ChunkingKey,
    /// Documents by id.
    pub documents: BTreeMap<String, StoredDocument>,
}

/// What a build did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildReport {
    /// New documents.
    pub added: usize,
    /// Documents whose digest changed.
    pub changed: usize,
    /// Documents no longer in the sources.
    pub removed: usize,
    /// Documents kept as they were.
    pub unchanged: usize,
    /// Chunks in the new version.
    pub chunks: usize,
    /// Chunks embedded by this build.
    pub embedded: usize,
    /// Whether the previous version was ignored (another model or chunking, or none).
    pub from_scratch: bool,
}

/// Errors of a build or of reading an index file.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Chunking settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Embedding.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Two documents with one id.
    #[error("two documents have the id {0}: give each source a distinct name")]
    DuplicateId(String),
    /// An index file that is not one.
    #[error("not a Leitwerk index file: {0}")]
    Format(String),
}

/// Builds a version from `documents`, reusing what `previous` has for unchanged documents when
/// it was built with the same model and chunking.
pub fn build(
    previous: Option<&Index>,
    documents: Vec<Document>,
    settings_of: impl Fn(&Document) -> Settings,
    chunking: ChunkingKey,
    embedder: &Embedder,
) -> Result<(Index, BuildReport), IndexError> {
    let reusable = previous.filter(|p| p.model == *embedder.identity() && p.chunking == chunking);
    let mut report = BuildReport {
        from_scratch: reusable.is_none(),
        ..BuildReport::default()
    };
    let mut out = BTreeMap::new();
    let mut to_embed: Vec<(String, usize)> = Vec::new();
    for doc in documents {
        if out.contains_key(&doc.id) {
            return Err(IndexError::DuplicateId(doc.id));
        }
        let before = reusable.and_then(|p| p.documents.get(&doc.id));
        match before {
            Some(b) if b.digest == doc.digest => {
                report.unchanged += 1;
                out.insert(doc.id.clone(), b.clone());
                continue;
            }
            Some(_) => report.changed += 1,
            None => report.added += 1,
        }
        let settings = settings_of(&doc);
        let chunks = split(&doc.text, &settings, embedder.pieces())?;
        let stored = StoredDocument {
            id: doc.id.clone(),
            source: doc.source,
            title: doc.title,
            url: doc.url,
            metadata: doc.metadata,
            digest: doc.digest,
            chunks: chunks
                .into_iter()
                .filter(|c| !c.text.trim().is_empty())
                .map(|c| StoredChunk {
                    id: format!("{}#{}", doc.id, c.index),
                    document: doc.id.clone(),
                    text: c.text,
                    section: c.section,
                    word_pieces: c.word_pieces,
                    vector: Vec::new(),
                })
                .collect(),
        };
        to_embed.extend((0..stored.chunks.len()).map(|i| (doc.id.clone(), i)));
        out.insert(doc.id, stored);
    }
    if let Some(p) = previous {
        report.removed = p
            .documents
            .keys()
            .filter(|id| !out.contains_key(*id))
            .count();
    }
    let texts: Vec<String> = to_embed
        .iter()
        .filter_map(|(d, i)| out.get(d).map(|doc| doc.chunks[*i].text.clone()))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs)?;
    for ((d, i), v) in to_embed.iter().zip(vectors) {
        if let Some(doc) = out.get_mut(d) {
            doc.chunks[*i].vector = v;
        }
    }
    report.embedded = to_embed.len();
    report.chunks = out.values().map(|d| d.chunks.len()).sum();
    Ok((
        Index {
            model: embedder.identity().clone(),
            chunking,
            documents: out,
        },
        report,
    ))
}

impl Index {
    /// Chunks in document order.
    pub fn chunks(&self) -> impl Iterator<Item = &StoredChunk> {
        self.documents.values().flat_map(|d| d.chunks.iter())
    }

    /// The ids of its documents.
    pub fn document_ids(&self) -> BTreeSet<String> {
        self.documents.keys().cloned().collect()
    }

    /// The file: magic, header length (u64 LE), header JSON, vectors.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + header.len() + self.chunks().count() * 4 * 384);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for c in self.chunks() {
            for x in &c.vector {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out
    }

    /// Reads a file written by [`Index::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, IndexError> {
        let bad = |m: &str| IndexError::Format(m.to_string());
        if bytes.get(..8) != Some(MAGIC.as_slice()) {
            return Err(bad("no Leitwerk index header"));
        }
        let len = bytes
            .get(8..16)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| bad("truncated header length"))? as usize;
        let header = bytes
            .get(16..16 + len)
            .ok_or_else(|| bad("truncated header"))?;
        let mut index: Index =
            serde_json::from_slice(header).map_err(|e| IndexError::Format(e.to_string()))?;
        let dim = index.model.dimension;
        let mut rest = bytes.get(16 + len..).unwrap_or_default();
        let want = index.chunks().count() * dim * 4;
        if rest.len() != want {
            return Err(IndexError::Format(format!(
                "{} bytes of vectors, {want} expected",
                rest.len()
            )));
        }
        for doc in index.documents.values_mut() {
            for chunk in &mut doc.chunks {
                let (head, tail) = rest.split_at(dim * 4);
                chunk.vector = head
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                rest = tail;
            }
        }
        Ok(index)
    }

    /// The digest that names the file of this version.
    pub fn digest(&self) -> String {
        digest(&self.to_bytes())
    }
}
