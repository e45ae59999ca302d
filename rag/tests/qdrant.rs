//! The Qdrant store against a real Qdrant server (the one the workplace built from Qdrant's
//! public source, started on 127.0.0.1 with an API key): the example corpus written as one
//! collection answers the labelled queries with the embedded exact store's first results;
//! hybrid queries fused inside Qdrant find every SKU; an alias moves between versions; a
//! wrong API key is named as such; deleted collections are gone. Where the server binary is
//! absent the test says so loudly and does not run.

use std::collections::BTreeMap;

use leitwerk_rag::chunk::{Settings, Structure};
use leitwerk_rag::documents::{self, Document};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::eval::parse_labelled;
use leitwerk_rag::index::{ChunkingKey, Index, build};
use leitwerk_rag::qdrant::{Store, StoreError, collection_name};
use leitwerk_rag::search::{ExactStore, Filter, HybridStore, VectorStore};
use leitwerk_testkit::qdrant::{QdrantProcess, absent_notice};
use leitwerk_testkit::{example_config_map, provided};

mod common;

fn config_map(file: &str) -> anyhow::Result<BTreeMap<String, String>> {
    example_config_map(&format!("product-docs-rag/{file}"))
}

fn product_docs(embedder: &Embedder) -> anyhow::Result<Index> {
    let docs: Vec<Document> = config_map("docs-configmap.yaml")?
        .iter()
        .map(|(key, text)| Ok(documents::read("product-docs", key, text.as_bytes())?))
        .collect::<anyhow::Result<_>>()?;
    let settings = |d: &Document| Settings {
        structure: d.structure,
        max_word_pieces: 200,
        overlap: 30,
    };
    let key = ChunkingKey {
        max_word_pieces: 200,
        overlap: 30,
    };
    Ok(build(None, docs, settings, key, embedder)?.0)
}

/// The shared catalogue, indexed; and its SKUs.
fn catalogue(embedder: &Embedder) -> anyhow::Result<(Index, Vec<String>)> {
    let skus = (0..common::ITEMS.len())
        .flat_map(|i| (0..common::COLOURS.len()).map(move |j| common::sku(i, j)))
        .collect();
    let settings = |_: &Document| Settings {
        structure: Structure::Markdown,
        max_word_pieces: 120,
        overlap: 0,
    };
    let key = ChunkingKey {
        max_word_pieces: 120,
        overlap: 0,
    };
    Ok((
        build(None, common::catalogue()?, settings, key, embedder)?.0,
        skus,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qdrant_collection_answers_like_the_exact_store_and_moves_by_alias() -> anyhow::Result<()>
{
    let dir = std::env::temp_dir().join(format!("leitwerk-qdrant-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(server) = QdrantProcess::start(&dir, "test-key-1").await? else {
        eprintln!("{}", absent_notice("the Qdrant store test"));
        return Ok(());
    };
    let embedder = Embedder::load(&provided("minilm.sh")?, "all-MiniLM-L6-v2")?;
    let store = Store::connect(&server.grpc_url, Some(server.api_key.clone()))?;
    let prefix = "lw-team-a-product-docs";
    let v1 = collection_name(prefix, "v1");

    // The example corpus as one collection: every chunk a point.
    let index = product_docs(&embedder)?;
    let chunks = index.chunks().count();
    assert_eq!(store.write(&v1, "v1", &index).await?, chunks);
    assert_eq!(store.count(&v1).await?, chunks as u64);

    // The labelled queries get the exact store's first results, with its scores.
    let exact = ExactStore::new(index.clone());
    let set = parse_labelled(
        config_map("eval-configmap.yaml")?
            .get("queries.jsonl")
            .map_or("", String::as_str),
    )?;
    assert!(set.len() >= 40);
    let queries: Vec<&str> = set.iter().map(|l| l.query.as_str()).collect();
    let vectors = embedder.embed(&queries)?;
    let mut same_top5 = 0;
    for (q, v) in queries.iter().zip(&vectors) {
        let want = exact.search(v, 5, &Filter::new())?;
        let (got, version) = store.search(&v1, v, None, 5, &Filter::new()).await?;
        assert_eq!(version.as_deref(), Some("v1"));
        assert_eq!(got[0].chunk, want[0].chunk, "{q}");
        assert!((got[0].score - want[0].score).abs() < 1e-4, "{q}: {got:?}");
        let ids =
            |h: &[leitwerk_rag::search::Hit]| h.iter().map(|h| h.chunk.clone()).collect::<Vec<_>>();
        same_top5 += usize::from(ids(&got) == ids(&want));
    }
    assert!(
        same_top5 * 10 >= set.len() * 9,
        "{same_top5}/{} same top 5",
        set.len()
    );

    // Hybrid: the same first results as the embedded hybrid store (BM25 with IDF and the same
    // reciprocal-rank constant on both sides).
    let hybrid = HybridStore::new(ExactStore::new(index.clone()));
    let mut same_first = 0;
    for (q, v) in queries.iter().zip(&vectors) {
        let want = hybrid.search(v, q, 5, &Filter::new())?;
        let (got, _) = store.search(&v1, v, Some(q), 5, &Filter::new()).await?;
        same_first += usize::from(got[0].document == want[0].document);
    }
    assert_eq!(same_first, set.len(), "hybrid first results agree");

    // A filter holds on the server as in the exact store.
    let doc = exact.search(&vectors[0], 1, &Filter::new())?[0]
        .document
        .clone();
    let filter = Filter::from([("document".to_string(), doc.clone())]);
    let (got, _) = store.search(&v1, &vectors[1], None, 5, &filter).await?;
    assert!(
        !got.is_empty() && got.iter().all(|h| h.document == doc),
        "{got:?}"
    );

    // A field no chunk has is refused by name, as the embedded store refuses it.
    let unknown = Filter::from([("colour".to_string(), "red".to_string())]);
    let want = exact.search(&vectors[1], 5, &unknown).unwrap_err();
    match store.search(&v1, &vectors[1], None, 5, &unknown).await {
        Err(StoreError::UnknownField(got)) => {
            assert_eq!(got.field, "colour");
            assert_eq!(got.known, want.known, "the same fields are named");
        }
        other => panic!("an unknown filter field gave {other:?}"),
    }

    // Hybrid: the SKUs the dense ranking confuses are found by BM25, fused inside Qdrant.
    let (catalogue, skus) = catalogue(&embedder)?;
    let v2 = collection_name(prefix, "v2");
    store.write(&v2, "v2", &catalogue).await?;
    let mut first = 0;
    for sku in &skus {
        let q = embedder.embed(&[sku.as_str()])?;
        let (hits, _) = store
            .search(&v2, &q[0], Some(sku), 3, &Filter::new())
            .await?;
        first += usize::from(hits[0].document == format!("catalogue/{sku}.md"));
    }
    assert_eq!(first, skus.len(), "hybrid finds every SKU first");

    // The alias serves v1, then moves to v2 in one request; queries through it follow.
    store.point_alias(prefix, &v1).await?;
    assert_eq!(store.alias_target(prefix).await?, Some(v1.clone()));
    let (through, version) = store
        .search(prefix, &vectors[0], None, 1, &Filter::new())
        .await?;
    assert_eq!(through[0].document, doc);
    assert_eq!(version.as_deref(), Some("v1"), "the alias answers as v1");
    let (through, _) = store.search(prefix, &vectors[1], None, 5, &filter).await?;
    assert!(
        through.iter().all(|h| h.document == doc),
        "a filter through the alias: {through:?}"
    );
    store.point_alias(prefix, &v2).await?;
    assert_eq!(store.alias_target(prefix).await?, Some(v2.clone()));
    let (through, version) = store
        .search(prefix, &vectors[0], None, 1, &Filter::new())
        .await?;
    assert!(through[0].document.starts_with("catalogue/"), "{through:?}");
    assert_eq!(version.as_deref(), Some("v2"), "the alias answers as v2");

    // A wrong key is named as a refused key, not a generic failure.
    let wrong = Store::connect(&server.grpc_url, Some("not-the-key".into()))?;
    match wrong.count(&v1).await {
        Err(StoreError::Unauthorized { .. }) => {}
        other => panic!("a wrong API key gave {other:?}"),
    }

    // Deleted versions leave nothing behind, alias included.
    assert_eq!(store.collections(prefix).await?, [v1.clone(), v2.clone()]);
    for c in [&v1, &v2] {
        store.delete(c).await?;
    }
    assert!(store.collections(prefix).await?.is_empty());
    assert_eq!(store.alias_target(prefix).await?, None);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
