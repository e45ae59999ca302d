//! Hybrid search with the real model: SKUs, which embeddings barely tell apart, are found by
//! BM25 and fused with the dense ranking by reciprocal rank; filters and quarantine hold in
//! both rankings.

use leitwerk_rag::chunk::{Settings, Structure};
use leitwerk_rag::documents::Document;
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::{ChunkingKey, build};
use leitwerk_rag::search::{ExactStore, Filter, HybridStore, RRF_K, VectorStore};
use leitwerk_testkit::provided;

mod common;
use common::{COLOURS, ITEMS, catalogue, sku};

#[test]
fn skus_are_found_by_the_keyword_ranking_and_fused_with_the_dense_one() -> anyhow::Result<()> {
    let embedder = Embedder::load(&provided("minilm.sh")?, "all-MiniLM-L6-v2")?;
    let settings = |_: &Document| Settings {
        structure: Structure::Markdown,
        max_word_pieces: 120,
        overlap: 0,
    };
    let key = ChunkingKey {
        max_word_pieces: 120,
        overlap: 0,
    };
    let (index, _) = build(None, catalogue()?, settings, key, &embedder)?;
    let dense = ExactStore::new(index.clone());
    let hybrid = HybridStore::new(ExactStore::new(index));
    let (mut dense_first, mut hybrid_first) = (0, 0);
    let mut total = 0;
    for i in 0..ITEMS.len() {
        for j in 0..COLOURS.len() {
            let code = sku(i, j);
            let want = format!("catalogue/{code}.md");
            let q = embedder.embed(&[code.as_str()])?;
            let d = dense.search(&q[0], 3, &Filter::new())?;
            let h = hybrid.search(&q[0], &code, 3, &Filter::new())?;
            dense_first += usize::from(d[0].document == want);
            hybrid_first += usize::from(h[0].document == want);
            total += 1;
            // Fused scores: at most one first place in each ranking.
            assert!(h[0].score <= 2.0 / (RRF_K + 1.0) + 1e-6, "{}", h[0].score);
        }
    }
    assert_eq!(hybrid_first, total, "hybrid finds every SKU first");
    assert!(
        dense_first < total,
        "dense search alone finds {dense_first}/{total}: the test would not show what BM25 adds"
    );

    // A filter holds in the keyword ranking too.
    let q = embedder.embed(&["water bottle"])?;
    let filter = Filter::from([(
        "document".to_string(),
        format!("catalogue/{}.md", sku(0, 0)),
    )]);
    let h = hybrid.search(&q[0], "water bottle", 5, &filter)?;
    assert!(
        h.iter()
            .all(|x| x.document == format!("catalogue/{}.md", sku(0, 0))),
        "{h:?}"
    );
    assert!(
        hybrid
            .search(
                &q[0],
                "x",
                5,
                &Filter::from([("colour".into(), "red".into())])
            )
            .is_err()
    );
    Ok(())
}
