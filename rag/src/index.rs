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
use crate::scan::{InjectionPolicy, PersonalDataPolicy, Pii, Safety};

mod screen;

use screen::{screen_document, screened};

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
    /// Personal data found in it (redacted unless the policy flags it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub personal_data: usize,
    /// Marked for a reviewer: personal data or injection text the policy lets through.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flagged: bool,
    /// Prompt-injection text: kept, never served.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// Words of HTML text hidden from readers, left out of its chunks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hidden_words: usize,
    /// Personal data found in the document (text, title, URL and metadata), by kind: counts
    /// only, never the values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub personal_data: BTreeMap<String, usize>,
    /// Prompt-injection signs found in the document.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub injection: usize,
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
    /// The ingest-safety policy it was built with.
    #[serde(default)]
    pub safety: Safety,
}

/// What a build did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Whether the previous version was ignored (another model, chunking or safety policy, or
    /// none).
    pub from_scratch: bool,
    /// Personal data found in the version's chunks (redacted or flagged, as the policy says).
    pub personal_data: usize,
    /// Chunks flagged for a reviewer.
    pub flagged: usize,
    /// Chunks quarantined from serving (prompt-injection text).
    pub quarantined: usize,
    /// Documents with HTML text hidden from readers (left out of the index).
    pub hidden_html: usize,
    /// Personal data by kind over the version's documents (counts only).
    pub personal_data_by_kind: BTreeMap<String, usize>,
    /// Prompt-injection signs over the version's documents.
    pub injection: usize,
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
    /// Personal data under the `Reject` policy. Names the kinds, never the data.
    #[error(
        "document {id} holds personal data ({kinds}) and spec.safety.personalData is Reject: remove it from the source, or choose Redact or Flag"
    )]
    PersonalData {
        /// The document.
        id: String,
        /// The kinds found.
        kinds: String,
    },
}

/// Builds a version from `documents` under the default safety policy (personal data redacted,
/// injection text quarantined); see [`build_with`].
pub fn build(
    previous: Option<&Index>,
    documents: Vec<Document>,
    settings_of: impl Fn(&Document) -> Settings,
    chunking: ChunkingKey,
    embedder: &Embedder,
) -> Result<(Index, BuildReport), IndexError> {
    build_with(
        previous,
        documents,
        settings_of,
        chunking,
        Safety::default(),
        embedder,
    )
}

/// Builds a version from `documents`, reusing what `previous` has for unchanged documents when
/// it was built with the same model, chunking and safety policy. Every new chunk is scanned
/// for personal data and prompt-injection text first ([`crate::scan`]): redacted, flagged,
/// quarantined or refused as `safety` says; the report counts them over the whole version.
pub fn build_with(
    previous: Option<&Index>,
    documents: Vec<Document>,
    settings_of: impl Fn(&Document) -> Settings,
    chunking: ChunkingKey,
    safety: Safety,
    embedder: &Embedder,
) -> Result<(Index, BuildReport), IndexError> {
    build_reporting(
        previous,
        documents,
        settings_of,
        chunking,
        safety,
        embedder,
        |_, _| {},
    )
}

/// How many chunks are embedded between two progress reports.
pub const EMBED_SLICE: usize = 1024;

/// [`build_with`], telling `progress(documents done, documents in all)` as the embedding goes.
pub fn build_reporting(
    previous: Option<&Index>,
    documents: Vec<Document>,
    settings_of: impl Fn(&Document) -> Settings,
    chunking: ChunkingKey,
    safety: Safety,
    embedder: &Embedder,
    progress: impl Fn(usize, usize),
) -> Result<(Index, BuildReport), IndexError> {
    let reusable = previous.filter(|p| {
        p.model == *embedder.identity() && p.chunking == chunking && p.safety == safety
    });
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
        let mut doc = doc;
        let screen = screen_document(&mut doc, safety)?;
        let mut chunks = Vec::new();
        let mut chunk_injection = 0;
        for c in split(&doc.text, &settings, embedder.pieces())? {
            if c.text.trim().is_empty() {
                continue;
            }
            // The chunk's own text and its section path (headings it sits under, which a
            // later chunk of a section does not repeat in its text).
            let body = screened(&doc.id, c.text, safety)?;
            let section = screened(&doc.id, c.section, safety)?;
            let placeholders = Pii::ALL
                .iter()
                .map(|k| body.text.matches(k.placeholder()).count())
                .sum::<usize>();
            chunk_injection += body.injection;
            chunks.push(StoredChunk {
                id: format!("{}#{}", doc.id, c.index),
                document: doc.id.clone(),
                text: body.text,
                section: section.text,
                word_pieces: c.word_pieces,
                vector: Vec::new(),
                personal_data: body.personal_data + section.personal_data + placeholders,
                flagged: body.flagged || section.flagged,
                quarantined: body.quarantined || section.quarantined,
            });
        }
        // Findings no chunk shows alone (across a boundary, or outside the body) mark every
        // chunk of the document, as the policy says.
        if screen.mark_all || screen.body_injection > chunk_injection {
            for c in &mut chunks {
                match safety.injection {
                    InjectionPolicy::Quarantine => c.quarantined = true,
                    InjectionPolicy::Flag => c.flagged = true,
                }
            }
        }
        let pii_found: usize = screen.personal_data.values().sum();
        let pii_in_chunks: usize = chunks.iter().map(|c| c.personal_data).sum();
        if safety.personal_data == PersonalDataPolicy::Flag && pii_found > pii_in_chunks {
            for c in &mut chunks {
                c.flagged = true;
            }
        }
        let stored = StoredDocument {
            id: doc.id.clone(),
            source: doc.source,
            title: doc.title,
            url: doc.url,
            metadata: doc.metadata,
            digest: doc.digest,
            hidden_words: doc.hidden_words,
            personal_data: screen.personal_data,
            injection: screen.injection,
            chunks,
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
    // Embedded a slice at a time, so that the documents done can be told as they are done: a
    // document is done once its last chunk is (those reused or without chunks, from the start).
    let total = out.len();
    let mut last_chunk: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, (d, _)) in to_embed.iter().enumerate() {
        last_chunk.insert(d.as_str(), n);
    }
    let mut ends: Vec<usize> = last_chunk.values().map(|n| n + 1).collect();
    ends.sort_unstable();
    let already = total - ends.len();
    progress(already, total);
    let mut vectors = Vec::with_capacity(refs.len());
    for slice in refs.chunks(EMBED_SLICE) {
        vectors.extend(embedder.embed(slice)?);
        progress(
            already + ends.partition_point(|&e| e <= vectors.len()),
            total,
        );
    }
    for ((d, i), v) in to_embed.iter().zip(vectors) {
        if let Some(doc) = out.get_mut(d) {
            doc.chunks[*i].vector = v;
        }
    }
    report.embedded = to_embed.len();
    report.chunks = out.values().map(|d| d.chunks.len()).sum();
    let all = || out.values().flat_map(|d| d.chunks.iter());
    for d in out.values() {
        for (kind, n) in &d.personal_data {
            *report
                .personal_data_by_kind
                .entry(kind.clone())
                .or_default() += n;
        }
        report.injection += d.injection;
    }
    // Counted over documents, so that a finding across a chunk boundary counts once; a
    // document of an older version without counts by kind gives its chunks' count.
    report.personal_data = out
        .values()
        .map(|d| match d.personal_data.is_empty() {
            true => d.chunks.iter().map(|c| c.personal_data).sum(),
            false => d.personal_data.values().sum::<usize>(),
        })
        .sum();
    report.flagged = all().filter(|c| c.flagged).count();
    report.quarantined = all().filter(|c| c.quarantined).count();
    report.hidden_html = out.values().filter(|d| d.hidden_words > 0).count();
    Ok((
        Index {
            model: embedder.identity().clone(),
            chunking,
            documents: out,
            safety,
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
            .ok_or_else(|| bad("truncated header length"))?;
        // Every size below comes from the file: checked, so that a tampered length is an
        // error and never a wrap or a panic.
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(16))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                IndexError::Format(format!(
                    "the header claims {len} bytes but the file has {} after the length",
                    bytes.len().saturating_sub(16)
                ))
            })?;
        let header = bytes.get(16..end).ok_or_else(|| bad("truncated header"))?;
        let mut index: Index =
            serde_json::from_slice(header).map_err(|e| IndexError::Format(e.to_string()))?;
        let dim = index.model.dimension;
        let rest = bytes.get(end..).unwrap_or_default();
        let stride = dim
            .checked_mul(4)
            .ok_or_else(|| bad("the model's dimension is out of range"))?;
        let want = index
            .chunks()
            .count()
            .checked_mul(stride)
            .ok_or_else(|| bad("the chunk count times the dimension is out of range"))?;
        if rest.len() != want {
            return Err(IndexError::Format(format!(
                "{} bytes of vectors, {want} expected",
                rest.len()
            )));
        }
        let mut vectors = rest.chunks_exact(stride.max(1));
        for doc in index.documents.values_mut() {
            for chunk in &mut doc.chunks {
                chunk.vector = match stride {
                    0 => Vec::new(),
                    _ => vectors
                        .next()
                        .ok_or_else(|| bad("fewer vectors than chunks"))?
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                };
            }
        }
        Ok(index)
    }

    /// The digest that names the file of this version.
    pub fn digest(&self) -> String {
        digest(&self.to_bytes())
    }
}
