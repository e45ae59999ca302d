//! Property tests: the index reader and the document and feed parsers take bytes from files
//! and ConfigMaps that anyone with write access to the store or the namespace can change, so
//! no input may panic them or make them allocate without bound. Cases are bounded (the
//! default 256 per property, small inputs), so the suite stays quick.

use leitwerk_rag::documents;
use leitwerk_rag::feeds::{self, Feed, FeedFormat};
use leitwerk_rag::index::Index;
use proptest::prelude::*;

/// A small valid index file: 2 documents, 3 chunks, 3-dimensional vectors.
#[allow(clippy::expect_used)] // a test helper: a fixture that does not read fails the test
fn valid_file() -> Vec<u8> {
    let chunk = |doc: &str, i: usize| {
        serde_json::json!({
            "id": format!("{doc}#{i}"), "document": doc, "text": format!("text {i}"),
            "section": "", "wordPieces": 2,
        })
    };
    let header = serde_json::json!({
        "model": {"name": "all-MiniLM-L6-v2", "weightsDigest": "sha256:w", "tokenizerDigest": "sha256:t",
                  "dimension": 3, "pooling": "mean", "maxWordPieces": 256},
        "chunking": {"maxWordPieces": 64, "overlap": 0},
        "documents": {
            "s/a.md": {"id": "s/a.md", "source": "s", "title": "A", "digest": "sha256:a",
                       "chunks": [chunk("s/a.md", 0), chunk("s/a.md", 1)]},
            "s/b.md": {"id": "s/b.md", "source": "s", "title": "B", "digest": "sha256:b",
                       "metadata": {"sku": "X-1"}, "chunks": [chunk("s/b.md", 0)]},
        },
    });
    let mut index: Index = serde_json::from_value(header).expect("a valid header");
    for (n, doc) in index.documents.values_mut().enumerate() {
        for chunk in &mut doc.chunks {
            chunk.vector = vec![n as f32, 0.5, -0.5];
        }
    }
    index.to_bytes()
}

/// `bytes` with its JSON header changed by `edit`, the vectors kept.
fn with_header(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[16..16 + len]).unwrap_or_default();
    edit(&mut header);
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[16 + len..]);
    out
}

#[test]
fn the_valid_file_reads_back_and_tampered_lengths_are_errors_not_panics() {
    let bytes = valid_file();
    let index = Index::from_bytes(&bytes).expect("round trip");
    assert_eq!(index.chunks().count(), 3);
    assert_eq!(index.to_bytes(), bytes);
    for len in [u64::MAX, u64::MAX - 15, (usize::MAX - 8) as u64, 1 << 40] {
        let mut tampered = bytes.clone();
        tampered[8..16].copy_from_slice(&len.to_le_bytes());
        let err = Index::from_bytes(&tampered).expect_err("a length past the file");
        assert!(err.to_string().contains("the header claims"), "{err}");
    }
    let truncated = &bytes[..bytes.len() - 5];
    let err = Index::from_bytes(truncated).expect_err("missing vector bytes");
    assert!(err.to_string().contains("bytes of vectors"), "{err}");
    let with_dim = with_header(&bytes, |h| h["model"]["dimension"] = (1u64 << 62).into());
    let err = Index::from_bytes(&with_dim).expect_err("a dimension that overflows");
    assert!(err.to_string().contains("out of range"), "{err}");
}

proptest! {
    #[test]
    fn mutated_index_files_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_file();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = Index::from_bytes(&bytes);
    }

    #[test]
    fn random_bytes_never_panic_the_index_reader(
        mut bytes in prop::collection::vec(any::<u8>(), 0..512),
        magic in any::<bool>(),
    ) {
        if magic && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(b"LWRAG001");
        }
        let _ = Index::from_bytes(&bytes);
    }

    #[test]
    fn random_documents_never_panic_the_parsers(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        text in "(#{1,3} [a-z ]{0,20}\n|<[a-z]{1,6}( hidden| style=\"display:none\")?>|</[a-z]{1,6}>|[a-zA-Z0-9 .@<>&;\n-]{0,40}){0,30}",
    ) {
        for key in ["doc.md", "page.html", "notes.txt"] {
            let _ = documents::read("s", key, &bytes);
            let _ = documents::read("s", key, text.as_bytes());
        }
    }

    #[test]
    fn random_feeds_never_panic_the_feed_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        rows in "(sku,title\n)?([a-zA-Z0-9\",{}:]{0,12},[a-z\"]{0,8}\n){0,20}",
    ) {
        for format in [FeedFormat::Csv, FeedFormat::JsonLines] {
            let feed = Feed {
                format,
                id_field: "sku".into(),
                title_field: Some("title".into()),
                url_field: None,
                template: "# {{ title }}\n{{ sku }}".into(),
            };
            let _ = feeds::read("s", "feed.csv", &bytes, &feed);
            let _ = feeds::read("s", "feed.csv", rows.as_bytes(), &feed);
        }
    }
}
