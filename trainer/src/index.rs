//! `leitwerk-trainer index`: reads a RagIndex's sources, builds the next index version
//! (incrementally from the previous one when the model and chunking are the same), writes it
//! to the artifact store under its digest, and measures it on the labelled set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use leitwerk_crds::command::QdrantTarget;
use leitwerk_crds::contract::{index_key, is_index_file};
use leitwerk_crds::rag_index::{
    ChunkingStrategy, InjectionPolicy, PersonalDataPolicy, RagIndexSpec, SearchMode,
};
use leitwerk_crds::summary::{EmbeddingModelIdentity, IndexSummary, RetrievalQuality};
use leitwerk_rag::chunk::{Settings, Structure};
use leitwerk_rag::documents::Document;
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::eval::{self, Labelled, parse_labelled};
use leitwerk_rag::index::{self, ChunkingKey, Index};
use leitwerk_rag::search::{ExactStore, Filter, HybridStore, VectorStore};
use leitwerk_rag::sources;

use crate::pipeline::JobError;
use crate::store::{Store, read_url};

/// A source as the Job sees it (`--source NAME=PATH`): the contract in `leitwerk_crds`.
pub use leitwerk_crds::command::SourceMount;

/// What `index` is asked to do besides the spec.
#[derive(Debug, Clone)]
pub struct IndexJob {
    /// Namespace of the RagIndex.
    pub namespace: String,
    /// Name of the RagIndex.
    pub name: String,
    /// Artifact store URL.
    pub store: String,
    /// The sources, mounted.
    pub sources: Vec<SourceMount>,
    /// Directory of the embedding model (`config.json`, `tokenizer.json`,
    /// `model.safetensors`).
    pub model_dir: PathBuf,
    /// URL of the previous version's index file, to build incrementally from.
    pub previous: Option<String>,
    /// URL or path of the labelled set (JSON Lines).
    pub labelled: Option<String>,
    /// The k of recall@k.
    pub k: usize,
    /// Remove the RagIndex's other index files, except these URLs (the versions the status
    /// keeps); `None` removes nothing.
    pub keep: Option<Vec<String>>,
    /// The serving version's index file and the mode it serves in: measured again on the
    /// labelled set, so that the gate compares two figures from the same set.
    pub serving: Option<(String, SearchMode)>,
    /// The Qdrant server and collection to write the version to as well, with its API key;
    /// with `keep`, the collections of versions not kept are deleted.
    pub qdrant: Option<(QdrantTarget, Option<String>)>,
    /// Embed on the GPU (ONNX Runtime's CUDA execution provider) when it can.
    pub gpu: bool,
}

pub use leitwerk_crds::contract::index_prefix;

/// Reads every source's documents: a directory (a mounted ConfigMap's keys), a glob of files,
/// or an object-store prefix (`s3://bucket/docs/`; credentials from the environment). A
/// source with a `feed` in the spec reads its files as product feeds, a document a row.
pub async fn read_sources(
    spec: &RagIndexSpec,
    mounts: &[SourceMount],
) -> Result<Vec<Document>, JobError> {
    let mut out = Vec::new();
    for m in mounts {
        let feed = spec
            .sources
            .iter()
            .find(|s| s.name == m.name)
            .and_then(|s| s.feed.as_ref())
            .map(feed_of);
        let plain = sources::plain(&m.name);
        let rows;
        let reader: sources::Reader<'_> = match &feed {
            Some(f) => {
                rows = sources::feed(&m.name, f);
                &rows
            }
            None => &plain,
        };
        let docs = if m.path.contains("://") {
            read_objects(&m.name, &m.path, reader).await?
        } else if m.path.contains(['*', '?', '[']) {
            sources::files(&m.name, &m.path, reader)
                .map_err(|e| JobError::Invalid(e.to_string()))?
        } else {
            sources::config_map(&m.name, std::path::Path::new(&m.path), reader)
                .map_err(|e| JobError::Invalid(e.to_string()))?
        };
        out.extend(docs);
    }
    if out.is_empty() {
        return Err(JobError::Invalid(
            "the sources hold no documents: add .md, .html or .txt documents to them".into(),
        ));
    }
    Ok(out)
}

fn feed_of(feed: &leitwerk_crds::rag_index::DocumentFeed) -> leitwerk_rag::feeds::Feed {
    leitwerk_rag::feeds::Feed {
        format: match feed.format {
            leitwerk_crds::rag_index::FeedFormat::Csv => leitwerk_rag::feeds::FeedFormat::Csv,
            leitwerk_crds::rag_index::FeedFormat::JsonLines => {
                leitwerk_rag::feeds::FeedFormat::JsonLines
            }
        },
        id_field: feed.id_field.clone(),
        title_field: feed.title_field.clone(),
        url_field: feed.url_field.clone(),
        template: feed.template.clone(),
    }
}

/// The documents under an object-store prefix: every object whose name ends in a known
/// format (`.md`, `.html`, `.txt`, …); a key is the path below the prefix. Objects of other
/// kinds (images, PDFs) are skipped and counted on stderr.
async fn read_objects(
    source: &str,
    url: &str,
    reader: sources::Reader<'_>,
) -> Result<Vec<Document>, JobError> {
    let store = Store::open(url)?;
    let mut docs = Vec::new();
    let mut skipped = 0;
    for key in store.list("").await? {
        let feed_file = key.ends_with(".csv") || key.ends_with(".jsonl");
        if leitwerk_rag::documents::Format::of(&key).is_none() && !feed_file {
            skipped += 1;
            continue;
        }
        let bytes = store.get(&key).await?;
        let read =
            reader(&key, &bytes).map_err(|e| JobError::Invalid(format!("source {source}: {e}")))?;
        for mut doc in read {
            // A document file's own URL; a feed row keeps the URL its row gives.
            if doc.url.is_none() && !feed_file {
                doc.url = Some(store.url_of(&key));
            }
            docs.push(doc);
        }
    }
    if skipped > 0 {
        eprintln!(
            "leitwerk-trainer: source {source}: skipped {skipped} objects under {url} that are not Markdown, HTML or text"
        );
    }
    Ok(docs)
}

async fn read_text(url: &str) -> Result<Vec<u8>, JobError> {
    if url.contains("://") {
        Ok(read_url(url).await?)
    } else {
        std::fs::read(url).map_err(|e| JobError::Invalid(format!("cannot read {url}: {e}")))
    }
}

/// Runs `leitwerk-trainer index`.
pub async fn run_index(spec: &RagIndexSpec, job: &IndexJob) -> Result<IndexSummary, JobError> {
    let documents = read_sources(spec, &job.sources).await?;
    let (embedder, gpu_fallback) =
        crate::runtime::embedder(&job.model_dir, &spec.embedding.model, job.gpu)?;
    let previous = match &job.previous {
        Some(url) => Some(
            Index::from_bytes(&read_text(url).await?)
                .map_err(|e| JobError::Invalid(format!("previous version {url}: {e}")))?,
        ),
        None => None,
    };
    let max = usize::try_from(spec.chunking.max_tokens).unwrap_or(0);
    let overlap = usize::try_from(spec.chunking.overlap_tokens).unwrap_or(0);
    let strategy = spec.chunking.strategy;
    let settings = move |d: &Document| Settings {
        structure: match strategy {
            ChunkingStrategy::Markdown => d.structure,
            ChunkingStrategy::Text => Structure::Text,
        },
        max_word_pieces: max,
        overlap,
    };
    let key = ChunkingKey {
        max_word_pieces: max,
        overlap,
    };
    let safety = leitwerk_rag::scan::Safety {
        personal_data: match spec.safety.personal_data {
            PersonalDataPolicy::Redact => leitwerk_rag::scan::PersonalDataPolicy::Redact,
            PersonalDataPolicy::Flag => leitwerk_rag::scan::PersonalDataPolicy::Flag,
            PersonalDataPolicy::Reject => leitwerk_rag::scan::PersonalDataPolicy::Reject,
        },
        injection: match spec.safety.injection {
            InjectionPolicy::Quarantine => leitwerk_rag::scan::InjectionPolicy::Quarantine,
            InjectionPolicy::Flag => leitwerk_rag::scan::InjectionPolicy::Flag,
        },
    };
    let embedding = crate::progress::stage("embedding", Some(documents.len() as u64), "documents");
    let (built, report) = index::build_reporting(
        previous.as_ref(),
        documents,
        settings,
        key,
        safety,
        &embedder,
        |done, _| embedding.set(done as u64),
    )
    .map_err(|e| JobError::Invalid(e.to_string()))?;
    embedding.finish();
    let judged = match &job.labelled {
        Some(url) => {
            let queries = LabelledQueries::read(&built, &embedder, &read_text(url).await?)?;
            let serving = match &job.serving {
                None => None,
                Some((url, mode)) => {
                    let index = match (&previous, &job.previous) {
                        (Some(p), Some(p_url)) if p_url == url => p.clone(),
                        _ => Index::from_bytes(&read_text(url).await?).map_err(|e| {
                            JobError::Invalid(format!("serving version {url}: {e}"))
                        })?,
                    };
                    Some(measure(&index, &queries, job.k, *mode)?)
                }
            };
            judge(&built, &queries, job.k, spec.search.mode, serving)?
        }
        None => Judged {
            mode: spec.search.mode.unwrap_or_default(),
            ..Judged::default()
        },
    };
    let bytes = built.to_bytes();
    let digest = crate::store::digest(&bytes);
    let hex = digest.trim_start_matches("sha256:");
    let prefix = index_prefix(&job.namespace, &job.name);
    let key = index_key(&job.namespace, &job.name, hex);
    let store = Store::open(&job.store)?;
    if !store.exists(&key).await? {
        store.put(&key, bytes).await?;
    }
    if let Some(keep) = &job.keep {
        for old in store.list(&prefix).await? {
            let url = store.url_of(&old);
            if old != key && is_index_file(&old) && !keep.contains(&url) {
                store.delete(&old).await?;
            }
        }
    }
    let version: String = hex.chars().take(12).collect();
    let collection = match &job.qdrant {
        Some((target, api_key)) => Some(
            write_collection(
                target,
                api_key.clone(),
                &version,
                &built,
                job.keep.as_deref(),
            )
            .await?,
        ),
        None => None,
    };
    let id = embedder.identity();
    Ok(IndexSummary {
        version,
        digest: digest.clone(),
        url: store.url_of(&key),
        collection,
        embedded_on_gpu: embedder.on_gpu(),
        gpu_fallback,
        documents: built.documents.len() as i64,
        chunks: report.chunks as i64,
        added: report.added as i64,
        changed: report.changed as i64,
        removed: report.removed as i64,
        unchanged: report.unchanged as i64,
        embedded: report.embedded as i64,
        from_scratch: report.from_scratch,
        model: EmbeddingModelIdentity {
            name: id.name.clone(),
            weights_digest: id.weights_digest.clone(),
            tokenizer_digest: id.tokenizer_digest.clone(),
            dimension: id.dimension as i64,
            pooling: id.pooling.clone(),
        },
        quality: judged.quality,
        search_mode: judged.mode,
        quality_by_mode: judged.by_mode,
        serving_quality: judged.serving,
        personal_data: report.personal_data as i64,
        personal_data_by_kind: report
            .personal_data_by_kind
            .iter()
            .map(|(k, n)| (k.clone(), *n as i64))
            .collect(),
        injection: report.injection as i64,
        flagged: report.flagged as i64,
        quarantined: report.quarantined as i64,
        hidden_html: report.hidden_html as i64,
    })
}

/// The version of an index file URL (`…/<hex>.lwrag`): the first 12 digits of its digest.
fn version_of_url(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect()
}

/// Writes version `version` of `index` into its own collection of the Qdrant server; with
/// `keep` (the index file URLs of the versions the status keeps), deletes the collections of
/// the target's other versions. Returns the collection's name.
pub async fn write_collection(
    target: &QdrantTarget,
    api_key: Option<String>,
    version: &str,
    index: &Index,
    keep: Option<&[String]>,
) -> Result<String, JobError> {
    let refused = |e: leitwerk_rag::qdrant::StoreError| match e {
        leitwerk_rag::qdrant::StoreError::Unauthorized { .. } => JobError::Invalid(format!(
            "{e}; the key comes from spec.vectorStore.qdrant.apiKeySecretRef ({})",
            leitwerk_crds::contract::QDRANT_API_KEY_ENV
        )),
        other => JobError::Invalid(other.to_string()),
    };
    let store = leitwerk_rag::qdrant::Store::connect(&target.url, api_key).map_err(refused)?;
    let collection = target.version_collection(version);
    let stage = crate::progress::stage("writing to Qdrant", None, "points");
    let points = store
        .write(&collection, version, index)
        .await
        .map_err(refused)?;
    stage.set(points as u64);
    stage.finish();
    if let Some(keep) = keep {
        let kept: Vec<String> = keep.iter().map(|u| version_of_url(u)).collect();
        let prefix = format!("{}-", target.collection);
        for name in store.collections(&prefix).await.map_err(refused)? {
            if let Some(v) = target.version_of(&name)
                && v != version
                && !kept.contains(&v)
            {
                store.delete(&name).await.map_err(refused)?;
            }
        }
    }
    Ok(collection)
}

/// Removes every index file of a RagIndex (it was deleted); returns how many there were.
pub async fn delete_index(store_url: &str, namespace: &str, name: &str) -> Result<usize, JobError> {
    let store = Store::open(store_url)?;
    let files = store.list(&index_prefix(namespace, name)).await?;
    for key in &files {
        store.delete(key).await?;
    }
    Ok(files.len())
}

/// A labelled set with its queries embedded once, for every index and mode measured.
pub struct LabelledQueries {
    set: Vec<Labelled>,
    vectors: Vec<Vec<f32>>,
}

impl LabelledQueries {
    /// Reads and embeds a labelled set; it must only name documents `index` has.
    pub fn read(index: &Index, embedder: &Embedder, labelled: &[u8]) -> Result<Self, JobError> {
        let text = std::str::from_utf8(labelled)
            .map_err(|_| JobError::Invalid("the labelled set is not UTF-8 text".into()))?;
        let set = parse_labelled(text).map_err(|e| JobError::Invalid(e.to_string()))?;
        let unknown = eval::unknown_ids(&set, &index.document_ids());
        if !unknown.is_empty() {
            return Err(JobError::Invalid(format!(
                "the labelled set names documents the sources do not have: {}; fix the ids (they are <source>/<key>)",
                unknown.join(", ")
            )));
        }
        let queries: Vec<&str> = set.iter().map(|l| l.query.as_str()).collect();
        let vectors = embedder
            .embed(&queries)
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        Ok(LabelledQueries { set, vectors })
    }
}

/// Quality of `index` on the labelled queries, ranked as the retrieval server ranks in `mode`.
pub fn measure(
    index: &Index,
    queries: &LabelledQueries,
    k: usize,
    mode: SearchMode,
) -> Result<RetrievalQuality, JobError> {
    let store = HybridStore::new(ExactStore::new(index.clone()));
    // Enough chunks to reach k distinct documents in all but pathological cases.
    let depth = k * 8;
    let mut ranked = Vec::new();
    for (labelled, v) in queries.set.iter().zip(&queries.vectors) {
        let hits = match mode {
            SearchMode::Dense => store.dense().search(v, depth, &Filter::new()),
            SearchMode::Hybrid => store.search(v, &labelled.query, depth, &Filter::new()),
        }
        .map_err(|e| JobError::Invalid(e.to_string()))?;
        ranked.push(hits.into_iter().map(|h| h.document).collect());
    }
    let q = eval::evaluate(&queries.set, &ranked, k);
    Ok(RetrievalQuality {
        k: k as i64,
        recall_at_k: q.recall_at_k,
        mrr: q.mrr,
        ndcg_at_k: q.ndcg_at_k,
        first_relevant: q.first_relevant as i64,
        queries: q.queries as i64,
    })
}

/// What the evaluation of a new version found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// The mode the version serves in.
    pub mode: SearchMode,
    /// Its quality in that mode.
    pub quality: Option<RetrievalQuality>,
    /// Its quality in each mode, when the spec left the mode open.
    pub by_mode: BTreeMap<SearchMode, RetrievalQuality>,
    /// The serving version's quality on the same set, in the mode it serves.
    pub serving: Option<RetrievalQuality>,
}

/// Measures `index` in the spec's mode, or in both modes when the spec names none, and picks
/// the mode it serves in.
pub fn judge(
    index: &Index,
    queries: &LabelledQueries,
    k: usize,
    mode: Option<SearchMode>,
    serving: Option<RetrievalQuality>,
) -> Result<Judged, JobError> {
    let modes = match mode {
        Some(m) => vec![m],
        None => SearchMode::ALL.to_vec(),
    };
    let mut by_mode = BTreeMap::new();
    for m in modes {
        by_mode.insert(m, measure(index, queries, k, m)?);
    }
    let chosen = mode.unwrap_or_else(|| better_mode(&by_mode));
    Ok(Judged {
        mode: chosen,
        quality: by_mode.get(&chosen).cloned(),
        by_mode: if mode.is_some() {
            BTreeMap::new()
        } else {
            by_mode
        },
        serving,
    })
}

/// The mode with the higher recall@k, then the higher MRR; Dense on a tie (it needs no
/// keyword index).
pub fn better_mode(by_mode: &BTreeMap<SearchMode, RetrievalQuality>) -> SearchMode {
    let key = |q: &RetrievalQuality| (q.recall_at_k, q.mrr);
    match (
        by_mode.get(&SearchMode::Dense),
        by_mode.get(&SearchMode::Hybrid),
    ) {
        (Some(d), Some(h)) if key(h) > key(d) => SearchMode::Hybrid,
        (None, Some(_)) => SearchMode::Hybrid,
        _ => SearchMode::Dense,
    }
}

#[cfg(test)]
mod tests {
    use leitwerk_crds::rag_index::MINILM;

    use super::*;

    #[test]
    fn the_shipped_model_the_operator_validates_against_is_the_one_rag_reads() {
        assert_eq!(MINILM.max_word_pieces, leitwerk_rag::embed::MAX_WORD_PIECES);
        assert_eq!(
            MINILM.max_chunk_tokens(),
            leitwerk_rag::chunk::MAX_CHUNK_WORD_PIECES
        );
    }

    fn q(recall: f64, mrr: f64) -> RetrievalQuality {
        RetrievalQuality {
            k: 5,
            recall_at_k: recall,
            mrr,
            ndcg_at_k: 0.0,
            first_relevant: 0,
            queries: 44,
        }
    }

    #[test]
    fn the_better_mode_has_the_higher_recall_then_mrr_and_a_tie_stays_dense() {
        let both = |d: RetrievalQuality, h: RetrievalQuality| {
            better_mode(&BTreeMap::from([
                (SearchMode::Dense, d),
                (SearchMode::Hybrid, h),
            ]))
        };
        assert_eq!(both(q(0.90, 0.8), q(0.95, 0.7)), SearchMode::Hybrid);
        assert_eq!(both(q(0.95, 0.8), q(0.90, 0.9)), SearchMode::Dense);
        assert_eq!(both(q(0.95, 0.8), q(0.95, 0.9)), SearchMode::Hybrid);
        assert_eq!(both(q(0.95, 0.9), q(0.95, 0.9)), SearchMode::Dense);
    }
}
