//! A real Qdrant server as the vector store of an index that outgrows one pod. Each index version is a collection of its own: the chunks' dense vectors
//! (cosine) beside BM25 sparse vectors whose IDF Qdrant computes itself (`Modifier::Idf`), the
//! chunk's fields as payload with a keyword index on every field a filter may name. Hybrid
//! queries fuse the dense and the keyword ranking inside Qdrant (its query API, reciprocal rank
//! fusion); an alias names the version that serves and moves in one request on promotion.

use std::collections::{BTreeMap, BTreeSet};

use qdrant_client::qdrant::{
    Condition, CreateAliasBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance, FieldType, Filter as QdrantFilter, Modifier, NamedVectors, PointStruct,
    PrefetchQueryBuilder, Query, QueryPointsBuilder, RrfBuilder, ScoredPoint, SearchParamsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector,
    VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use crate::index::Index;
use crate::search::{BUILT_IN_FIELDS, Filter, HYBRID_DEPTH, Hit, RRF_K, UnknownField};

/// The dense vector's name in a collection.
pub const DENSE: &str = "dense";
/// The BM25 sparse vector's name in a collection.
pub const SPARSE: &str = "bm25";
/// The payload field that names the index version a point belongs to (a query through an
/// alias answers which version it reached).
pub const VERSION_FIELD: &str = "_version";
/// Results fetched beyond those asked for, to order equal scores like the embedded store.
const TIE_MARGIN: usize = 8;
/// Points written per request.
const BATCH: usize = 256;
/// HNSW's candidate list at query time (Qdrant's default follows `ef_construct`, 100): wider
/// for the recall an evaluation gate expects; at least four times the results asked for.
const HNSW_EF: u64 = 256;

/// What went wrong talking to Qdrant, with what the operator should tell the user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server refused the API key.
    #[error("Qdrant at {url} refused the API key: {source}")]
    Unauthorized {
        /// The server.
        url: String,
        /// Its answer.
        source: QdrantError,
    },
    /// The query filters on a field the collection has no index for (no chunk has it).
    #[error(transparent)]
    UnknownField(#[from] UnknownField),
    /// Anything else the server or the connection answered.
    #[error("Qdrant at {url}: {what}: {source}")]
    Server {
        /// The server.
        url: String,
        /// What was being done.
        what: String,
        /// Its answer.
        source: QdrantError,
    },
}

/// Where a collection's optimizer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Points stored.
    pub points: u64,
    /// Vectors in the HNSW index (a small collection is searched exactly and has none).
    pub indexed: u64,
    /// The optimizer has nothing left to do.
    pub green: bool,
}

/// A connection to one Qdrant server.
pub struct Store {
    client: Qdrant,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The keyword tokens of `text` as a sparse vector: the BM25 part of each distinct token
/// (its term frequency saturated by `avgdl`). The embedder gives every occurrence of a token
/// that token's whole value, so each index is taken once (indices are 32-bit token hashes; two
/// tokens that collide count as one).
fn sparse(embedder: &bm25::Embedder, text: &str) -> (Vec<u32>, Vec<f32>) {
    let mut by_index: BTreeMap<u32, f32> = BTreeMap::new();
    for token in embedder.embed(text).iter() {
        by_index.entry(token.index).or_insert(token.value);
    }
    by_index.into_iter().unzip()
}

fn payload_text(point: &ScoredPoint, key: &str) -> String {
    point
        .payload
        .get(key)
        .cloned()
        .map(serde_json::Value::from)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn conditions(filter: &Filter) -> Option<QdrantFilter> {
    (!filter.is_empty()).then(|| {
        QdrantFilter::must(
            filter
                .iter()
                .map(|(field, value)| Condition::matches(field.clone(), value.clone())),
        )
    })
}

impl Store {
    /// Connects to the gRPC `url` (e.g. `http://qdrant.vectors:6334`) with `api_key`.
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Store, StoreError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .skip_compatibility_check()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| StoreError::Server {
                url: url.into(),
                what: "connecting".into(),
                source,
            })?;
        Ok(Store {
            client,
            url: url.into(),
        })
    }

    fn fail(&self, what: impl Into<String>) -> impl FnOnce(QdrantError) -> StoreError + '_ {
        let what = what.into();
        move |source| {
            let refused = matches!(
                &source,
                QdrantError::ResponseError { status }
                    if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
            );
            if refused {
                StoreError::Unauthorized {
                    url: self.url.clone(),
                    source,
                }
            } else {
                StoreError::Server {
                    url: self.url.clone(),
                    what,
                    source,
                }
            }
        }
    }

    /// Writes `index`, version `version`, as the collection `name` (replacing one of that
    /// name: a build of the same version again), with a keyword payload index on every field a
    /// filter may name. Returns the points written.
    pub async fn write(
        &self,
        name: &str,
        version: &str,
        index: &Index,
    ) -> Result<usize, StoreError> {
        if self
            .client
            .collection_exists(name)
            .await
            .map_err(self.fail("checking for the collection"))?
        {
            self.client
                .delete_collection(name)
                .await
                .map_err(self.fail(format!("deleting the collection {name}")))?;
        }
        let dims = index
            .documents
            .values()
            .flat_map(|d| d.chunks.iter())
            .map(|c| c.vector.len())
            .next()
            .unwrap_or(1) as u64;
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(DENSE, VectorParamsBuilder::new(dims, Distance::Cosine));
        let mut sparse_config = SparseVectorsConfigBuilder::default();
        sparse_config.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        self.client
            .create_collection(
                CreateCollectionBuilder::new(name)
                    .vectors_config(vectors)
                    .sparse_vectors_config(sparse_config),
            )
            .await
            .map_err(self.fail(format!("creating the collection {name}")))?;
        let mut fields: BTreeSet<String> = BUILT_IN_FIELDS.iter().map(|f| f.to_string()).collect();
        for doc in index.documents.values() {
            fields.extend(doc.metadata.keys().cloned());
        }
        for field in &fields {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword)
                        .wait(true),
                )
                .await
                .map_err(self.fail(format!("indexing the payload field {field}")))?;
        }
        let texts: Vec<&str> = index
            .documents
            .values()
            .flat_map(|d| d.chunks.iter().map(|c| c.text.as_str()))
            .collect();
        let embedder =
            bm25::EmbedderBuilder::<u32>::with_fit_to_corpus(bm25::Language::English, &texts)
                .build();
        let mut points = Vec::new();
        for doc in index.documents.values() {
            for chunk in doc.chunks.iter().filter(|c| !c.quarantined) {
                let (indices, values) = sparse(&embedder, &chunk.text);
                let vectors = NamedVectors::default()
                    .add_vector(DENSE, chunk.vector.clone())
                    .add_vector(SPARSE, Vector::new_sparse(indices, values));
                let mut payload = Payload::new();
                payload.insert("chunk", chunk.id.clone());
                payload.insert("document", doc.id.clone());
                payload.insert("title", doc.title.clone());
                payload.insert("url", doc.url.clone().unwrap_or_default());
                payload.insert("section", chunk.section.clone());
                payload.insert("source", doc.source.clone());
                payload.insert("text", chunk.text.clone());
                payload.insert(VERSION_FIELD, version.to_string());
                for (key, value) in &doc.metadata {
                    if !BUILT_IN_FIELDS.contains(&key.as_str()) {
                        payload.insert(key.clone(), value.clone());
                    }
                }
                points.push(PointStruct::new(points.len() as u64, vectors, payload));
            }
        }
        let written = points.len();
        self.client
            .upsert_points_chunked(UpsertPointsBuilder::new(name, points).wait(true), BATCH)
            .await
            .map_err(self.fail(format!("writing the points of {name}")))?;
        Ok(written)
    }

    /// The `k` chunks of `collection` (or an alias) most similar to `query` that pass
    /// `filter`; with `text`, the dense and the BM25 ranking (each to `max(4k, HYBRID_DEPTH)`)
    /// fused by reciprocal rank inside Qdrant, the score being the fused one. Also the version
    /// the hits belong to (`None` without hits).
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        text: Option<&str>,
        k: usize,
        filter: &Filter,
    ) -> Result<(Vec<Hit>, Option<String>), StoreError> {
        if !filter.is_empty() {
            self.check_fields(collection, filter).await?;
        }
        let filter = conditions(filter);
        let ef = HNSW_EF.max(4 * k as u64);
        // A few more than asked: equal scores (frequent after fusion) are ordered here as the
        // embedded store orders them, by chunk id, which Qdrant does not promise.
        let mut request = QueryPointsBuilder::new(collection)
            .limit((k + TIE_MARGIN) as u64)
            .with_payload(true);
        match text {
            None => {
                request = request
                    .using(DENSE)
                    .query(Query::new_nearest(query.to_vec()))
                    .params(SearchParamsBuilder::default().hnsw_ef(ef));
                if let Some(f) = filter {
                    request = request.filter(f);
                }
            }
            Some(text) => {
                let depth = (k * 4).max(HYBRID_DEPTH) as u64;
                let tokens = bm25::EmbedderBuilder::<u32>::with_avgdl(1.0)
                    .language_mode(bm25::Language::English)
                    .build();
                // A query counts each of its tokens once; Qdrant weighs them by IDF.
                let (indices, _) = sparse(&tokens, text);
                let ones = vec![1.0; indices.len()];
                let mut dense = PrefetchQueryBuilder::default()
                    .using(DENSE)
                    .query(Query::new_nearest(query.to_vec()))
                    .params(SearchParamsBuilder::default().hnsw_ef(ef.max(depth)))
                    .limit(depth);
                let mut keywords = PrefetchQueryBuilder::default()
                    .using(SPARSE)
                    .query(Query::new_nearest(VectorInput::new_sparse(indices, ones)))
                    .limit(depth);
                if let Some(f) = filter {
                    dense = dense.filter(f.clone());
                    keywords = keywords.filter(f);
                }
                request = request
                    .add_prefetch(dense)
                    .add_prefetch(keywords)
                    // Qdrant adds 1/(k + rank) from rank 0, the embedded store 1/(RRF_K + rank)
                    // from rank 1: with k = RRF_K + 1 both fuse alike.
                    .query(Query::new_rrf(RrfBuilder::with_k(RRF_K as u32 + 1)));
            }
        }
        let answer = self
            .client
            .query(request)
            .await
            .map_err(self.fail(format!("querying {collection}")))?;
        let version = answer
            .result
            .first()
            .map(|p| payload_text(p, VERSION_FIELD));
        let mut hits: Vec<Hit> = answer
            .result
            .iter()
            .map(|p| {
                let url = payload_text(p, "url");
                Hit {
                    chunk: payload_text(p, "chunk"),
                    document: payload_text(p, "document"),
                    title: payload_text(p, "title"),
                    url: (!url.is_empty()).then_some(url),
                    section: payload_text(p, "section"),
                    text: payload_text(p, "text"),
                    score: p.score,
                }
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk.cmp(&b.chunk))
        });
        hits.truncate(k);
        Ok((hits, version))
    }

    /// Refuses a filter on a field that `collection` indexes no payload for, as the embedded
    /// store refuses one (Qdrant itself would answer nothing), naming the fields there are.
    async fn check_fields(&self, collection: &str, filter: &Filter) -> Result<(), StoreError> {
        let info = self
            .client
            .collection_info(collection)
            .await
            .map_err(self.fail(format!("reading the collection {collection}")))?
            .result
            .unwrap_or_default();
        let mut known: Vec<&String> = info
            .payload_schema
            .keys()
            .filter(|f| f.as_str() != VERSION_FIELD)
            .collect();
        known.sort();
        match filter.keys().find(|f| !known.contains(f)) {
            Some(field) => Err(StoreError::UnknownField(UnknownField {
                field: field.clone(),
                known: known
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })),
            None => Ok(()),
        }
    }

    /// Points `alias` at `collection` in one request (Qdrant replaces an alias of that name
    /// atomically): a query through the alias sees the old collection or the new one, never
    /// none.
    pub async fn point_alias(&self, alias: &str, collection: &str) -> Result<(), StoreError> {
        self.client
            .create_alias(CreateAliasBuilder::new(collection, alias))
            .await
            .map_err(self.fail(format!("pointing the alias {alias} at {collection}")))?;
        Ok(())
    }

    /// The collection `alias` points at, if any.
    pub async fn alias_target(&self, alias: &str) -> Result<Option<String>, StoreError> {
        let aliases = self
            .client
            .list_aliases()
            .await
            .map_err(self.fail("listing the aliases"))?;
        Ok(aliases
            .aliases
            .into_iter()
            .find(|a| a.alias_name == alias)
            .map(|a| a.collection_name))
    }

    /// The collections whose names start with `prefix`, sorted.
    pub async fn collections(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let all = self
            .client
            .list_collections()
            .await
            .map_err(self.fail("listing the collections"))?;
        let mut names: Vec<String> = all
            .collections
            .into_iter()
            .map(|c| c.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the collection `name` (and with it any alias to it); none of that name is no
    /// error.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .delete_collection(name)
            .await
            .map_err(self.fail(format!("deleting the collection {name}")))?;
        Ok(())
    }

    /// The points of collection `name`.
    pub async fn count(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.state(name).await?.points)
    }

    /// Points, vectors in the HNSW index, and whether the optimizer is done (green).
    pub async fn state(&self, name: &str) -> Result<State, StoreError> {
        let info = self
            .client
            .collection_info(name)
            .await
            .map_err(self.fail(format!("reading the collection {name}")))?
            .result
            .unwrap_or_default();
        Ok(State {
            points: info.points_count.unwrap_or(0),
            indexed: info.indexed_vectors_count.unwrap_or(0),
            green: info.status == qdrant_client::qdrant::CollectionStatus::Green as i32,
        })
    }
}

/// The collection of one index version: `<prefix>-<version>`, where the prefix names the
/// namespace and the RagIndex (Qdrant allows letters, digits, `-` and `_`).
pub fn collection_name(prefix: &str, version: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}-{}", clean(prefix), clean(version))
}
