//! Reading documents from what the indexing Job sees: a mounted ConfigMap (one file per key)
//! or files matching a glob on a mounted volume.

use std::path::{Path, PathBuf};

use crate::documents::{self, Document};

/// Why a source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory or pattern does not exist or cannot be listed.
    #[error("source {source_name}: cannot read {path}: {message}")]
    Unreadable {
        /// The source.
        source_name: String,
        /// What was read.
        path: String,
        /// Why.
        message: String,
    },
    /// The pattern is not a glob.
    #[error("source {source_name}: {pattern:?} is not a valid glob: {message}")]
    Pattern {
        /// The source.
        source_name: String,
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A document (or a feed) cannot be read.
    #[error("source {source_name}: {message}")]
    Read {
        /// The source.
        source_name: String,
        /// The problem, naming the document or the feed row.
        message: String,
    },
}

fn unreadable(source: &str, path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unreadable {
        source_name: source.to_string(),
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Turns a file's bytes (with its key) into documents: one document, or a feed's rows.
pub type Reader<'a> = &'a dyn Fn(&str, &[u8]) -> Result<Vec<Document>, String>;

/// The reader of plain documents (Markdown, HTML, text): one document a file.
pub fn plain(source: &str) -> impl Fn(&str, &[u8]) -> Result<Vec<Document>, String> + '_ {
    move |key, bytes| {
        documents::read(source, key, bytes)
            .map(|d| vec![d])
            .map_err(|e| e.to_string())
    }
}

/// The reader of a product feed: every row a document.
pub fn feed<'a>(
    source: &'a str,
    feed: &'a crate::feeds::Feed,
) -> impl Fn(&str, &[u8]) -> Result<Vec<Document>, String> + 'a {
    move |key, bytes| crate::feeds::read(source, key, bytes, feed).map_err(|e| e.to_string())
}

fn read_one(
    source: &str,
    key: &str,
    path: &Path,
    reader: Reader<'_>,
) -> Result<Vec<Document>, SourceError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(source, path, e))?;
    reader(key, &bytes).map_err(|message| SourceError::Read {
        source_name: source.to_string(),
        message,
    })
}

/// The documents of a ConfigMap mounted at `dir`: every key is a file. The kubelet's own
/// entries (`..data`, `..<timestamp>`) are skipped.
pub fn config_map(
    source: &str,
    dir: &Path,
    reader: Reader<'_>,
) -> Result<Vec<Document>, SourceError> {
    let mut keys: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(source, dir, e))? {
        let entry = entry.map_err(|e| unreadable(source, dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            keys.push((name, path));
        }
    }
    keys.sort();
    let mut docs = Vec::new();
    for (key, path) in &keys {
        docs.extend(read_one(source, key, path, reader)?);
    }
    Ok(docs)
}

/// The documents of the files matching `pattern` (e.g. `/docs/**/*.md`); a key is the path
/// below the pattern's fixed prefix (`guides/setup.md`).
pub fn files(
    source: &str,
    pattern: &str,
    reader: Reader<'_>,
) -> Result<Vec<Document>, SourceError> {
    let base: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            let s = c.as_os_str().to_string_lossy();
            !s.contains(['*', '?', '['])
        })
        .collect();
    let paths = glob::glob(pattern).map_err(|e| SourceError::Pattern {
        source_name: source.to_string(),
        pattern: pattern.to_string(),
        message: e.to_string(),
    })?;
    let mut found = Vec::new();
    for path in paths {
        let path = path.map_err(|e| unreadable(source, Path::new(pattern), e))?;
        if path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    let mut docs = Vec::new();
    for path in &found {
        let key = path
            .strip_prefix(&base)
            .unwrap_or(path)
            .to_string_lossy()
            .to_string();
        docs.extend(read_one(source, &key, path, reader)?);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leitwerk-rag-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    #[test]
    fn a_mounted_config_map_reads_its_keys_and_skips_the_kubelets_entries() {
        let dir = scratch("cm");
        let _ = std::fs::create_dir_all(dir.join("..2026_12_02"));
        let _ = std::fs::write(dir.join("..2026_12_02/faq.md"), "# FAQ");
        let _ = std::fs::write(dir.join("faq.md"), "# FAQ\nAnswers");
        let _ = std::fs::write(dir.join("about.txt"), "About us");
        let docs = config_map("docs", &dir, &plain("docs")).unwrap_or_default();
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["docs/about.txt", "docs/faq.md"]);
        let missing = config_map("docs", &dir.join("nope"), &plain("docs"))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("source docs: cannot read"), "{missing}");
    }

    #[test]
    fn files_are_keyed_below_the_pattern_and_a_bad_file_names_itself() {
        let dir = scratch("files");
        let _ = std::fs::create_dir_all(dir.join("guides"));
        let _ = std::fs::write(dir.join("guides/setup.md"), "# Setup");
        let _ = std::fs::write(dir.join("index.md"), "# Home");
        let _ = std::fs::write(dir.join("logo.png"), b"\x89PNG\0");
        let pattern = format!("{}/**/*.md", dir.display());
        let docs = files("site", &pattern, &plain("site")).unwrap_or_default();
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["site/guides/setup.md", "site/index.md"]);
        let all = format!("{}/*", dir.display());
        let err = files("site", &all, &plain("site")).unwrap_err().to_string();
        assert!(err.contains("site/logo.png: unknown format"), "{err}");
    }

    #[test]
    fn a_feed_source_reads_every_row_of_its_files() {
        let dir = scratch("feed");
        let _ = std::fs::write(dir.join("shop.csv"), "sku,name\nA1,Tote\nB2,Bottle\n");
        let feed = crate::feeds::Feed {
            format: crate::feeds::FeedFormat::Csv,
            id_field: "sku".into(),
            title_field: Some("name".into()),
            url_field: None,
            template: "# {{ name }} ({{ sku }})".into(),
        };
        let docs = config_map("shop", &dir, &super::feed("shop", &feed)).unwrap_or_default();
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["shop/A1", "shop/B2"]);
    }
}
