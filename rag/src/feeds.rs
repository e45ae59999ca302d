//! Product feeds: CSV or JSON Lines rows, each rendered into one document by a template
//! (minijinja: `# {{ name }}\n\nSKU {{ sku }} …`), its fields kept as the document's metadata
//! (so that queries can filter on them). A row's id field names the document:
//! `<source>/<id>`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::chunk::Structure;
use crate::documents::{Document, MAX_DOCUMENT_BYTES, digest};

/// How a feed's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedFormat {
    /// Comma-separated, a header row first.
    Csv,
    /// One JSON object a line.
    JsonLines,
}

/// How rows become documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    /// The format.
    pub format: FeedFormat,
    /// The field that identifies a row (a SKU).
    pub id_field: String,
    /// The field of the title; the id when unset.
    pub title_field: Option<String>,
    /// The field of the URL, if any.
    pub url_field: Option<String>,
    /// A minijinja template over the row's fields: the document's Markdown text.
    pub template: String,
}

/// Why a feed cannot be read. Each names the file and the row (from 1, after any header).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    /// A row that does not parse.
    #[error("feed {file}, row {row}: {message}")]
    Row {
        /// The feed file.
        file: String,
        /// The row.
        row: usize,
        /// Why.
        message: String,
    },
    /// The template does not parse.
    #[error("feed template of source {source_name}: {message}")]
    Template {
        /// The source.
        source_name: String,
        /// Why.
        message: String,
    },
    /// Two rows with one id.
    #[error(
        "feed {file}: rows {first} and {second} have the same {field} {id:?}; ids must be unique"
    )]
    Duplicate {
        /// The feed file.
        file: String,
        /// The id field.
        field: String,
        /// The id.
        id: String,
        /// The first row.
        first: usize,
        /// The second row.
        second: usize,
    },
}

/// The rows of a feed file as field maps (values as text).
fn parse_rows(
    file: &str,
    bytes: &[u8],
    format: FeedFormat,
) -> Result<Vec<BTreeMap<String, String>>, FeedError> {
    let row_error = |row: usize, message: String| FeedError::Row {
        file: file.to_string(),
        row,
        message,
    };
    match format {
        FeedFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| row_error(0, format!("the header does not parse: {e}")))?
                .iter()
                .map(str::to_string)
                .collect();
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let record = record.map_err(|e| row_error(i + 1, e.to_string()))?;
                rows.push(
                    header
                        .iter()
                        .cloned()
                        .zip(record.iter().map(str::to_string))
                        .collect(),
                );
            }
            Ok(rows)
        }
        FeedFormat::JsonLines => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| row_error(0, "the file is not UTF-8 text".into()))?;
            let mut rows = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                    .map_err(|e| row_error(i + 1, format!("not a JSON object: {e}")))?;
                rows.push(
                    value
                        .into_iter()
                        .map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => s,
                                serde_json::Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (k, text)
                        })
                        .collect(),
                );
            }
            Ok(rows)
        }
    }
}

/// The documents of one feed file of source `source` stored under `key`.
pub fn read(
    source: &str,
    key: &str,
    bytes: &[u8],
    feed: &Feed,
) -> Result<Vec<Document>, FeedError> {
    let file = format!("{source}/{key}");
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("row", &feed.template)
        .map_err(|e| FeedError::Template {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
    let template = env.get_template("row").map_err(|e| FeedError::Template {
        source_name: source.to_string(),
        message: e.to_string(),
    })?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut docs = Vec::new();
    for (i, row) in parse_rows(&file, bytes, feed.format)?
        .into_iter()
        .enumerate()
    {
        let n = i + 1;
        let row_error = |message: String| FeedError::Row {
            file: file.clone(),
            row: n,
            message,
        };
        let id = row
            .get(&feed.id_field)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| row_error(format!("no {} (the feed's idField)", feed.id_field)))?;
        if let Some(first) = seen.insert(id.clone(), n) {
            return Err(FeedError::Duplicate {
                file,
                field: feed.id_field.clone(),
                id,
                first,
                second: n,
            });
        }
        let text = template
            .render(minijinja::Value::from_serialize(&row))
            .map_err(|e| row_error(format!("the template cannot be rendered: {e}")))?;
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(row_error(format!(
                "the rendered document has {} bytes, more than the {MAX_DOCUMENT_BYTES} a document may have",
                text.len()
            )));
        }
        let field = |name: &Option<String>| name.as_ref().and_then(|f| row.get(f)).cloned();
        let title = field(&feed.title_field).unwrap_or_else(|| id.clone());
        let url = field(&feed.url_field).filter(|u| !u.is_empty());
        // The digest covers the text and the fields: a changed price re-embeds the row even
        // when the template does not show it, because filters read the metadata.
        let fields: BTreeSet<(&String, &String)> = row.iter().collect();
        let digest = digest(format!("{text}\u{0}{fields:?}").as_bytes());
        docs.push(Document {
            id: format!("{source}/{id}"),
            source: source.to_string(),
            key: id,
            title,
            url,
            metadata: row,
            text,
            structure: Structure::Markdown,
            digest,
            hidden_words: 0,
        });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(format: FeedFormat) -> Feed {
        Feed {
            format,
            id_field: "sku".into(),
            title_field: Some("name".into()),
            url_field: Some("url".into()),
            template: "# {{ name }}\n\nSKU {{ sku }}, {{ price }} EUR. {{ description }}".into(),
        }
    }

    #[test]
    fn csv_and_json_lines_rows_become_documents_with_their_fields_as_metadata() {
        let csv = "sku,name,price,description,url\nLM-1,Tote bag,12.50,Cotton tote.,https://shop.example/lm-1\nLM-2,Bottle,19,Steel bottle.,\n";
        let docs = read(
            "catalogue",
            "feed.csv",
            csv.as_bytes(),
            &feed(FeedFormat::Csv),
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].id, "catalogue/LM-1");
        assert_eq!(docs[0].title, "Tote bag");
        assert_eq!(docs[0].url.as_deref(), Some("https://shop.example/lm-1"));
        assert_eq!(docs[1].url, None);
        assert_eq!(
            docs[0].text,
            "# Tote bag\n\nSKU LM-1, 12.50 EUR. Cotton tote."
        );
        assert_eq!(docs[0].metadata["price"], "12.50");
        let jsonl = "{\"sku\": \"LM-1\", \"name\": \"Tote bag\", \"price\": 12.5, \"description\": \"Cotton tote.\", \"url\": null}\n";
        let docs = read(
            "catalogue",
            "feed.jsonl",
            jsonl.as_bytes(),
            &feed(FeedFormat::JsonLines),
        )
        .unwrap();
        assert_eq!(docs[0].metadata["price"], "12.5");
        assert_eq!(docs[0].url, None);
    }

    #[test]
    fn a_changed_field_changes_the_digest_even_when_the_template_hides_it() {
        let mut f = feed(FeedFormat::Csv);
        f.template = "# {{ name }}".into();
        let a = read("c", "f.csv", b"sku,name,stock\nLM-1,Tote,3\n", &f).unwrap();
        let b = read("c", "f.csv", b"sku,name,stock\nLM-1,Tote,4\n", &f).unwrap();
        assert_eq!(a[0].text, b[0].text);
        assert_ne!(a[0].digest, b[0].digest);
    }

    #[test]
    fn bad_rows_name_the_file_the_row_and_the_field() {
        let f = feed(FeedFormat::Csv);
        let missing = read(
            "c",
            "f.csv",
            b"sku,name,price,description,url\n,Tote,1,x,\n",
            &f,
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("feed c/f.csv, row 1: no sku"),
        );
        let dup = read(
            "c",
            "f.csv",
            b"sku,name,price,description,url\nA,T,1,x,\nA,U,2,y,\n",
            &f,
        )
        .unwrap_err()
        .to_string();
        assert!(
            dup.contains("rows 1 and 2") && dup.contains("\"A\""),
            "{dup}"
        );
        let undefined = read("c", "f.csv", b"sku,name,url\nA,T,\n", &f)
            .unwrap_err()
            .to_string();
        assert!(
            undefined.contains("row 1") && undefined.contains("template"),
            "{undefined}"
        );
        let mut broken = feed(FeedFormat::Csv);
        broken.template = "{{ name ".into();
        assert!(matches!(
            read("c", "f.csv", b"sku\nA\n", &broken),
            Err(FeedError::Template { .. })
        ));
        let jsonl = read(
            "c",
            "f.jsonl",
            b"{\"sku\": \"A\"}\nnot json\n",
            &feed(FeedFormat::JsonLines),
        )
        .unwrap_err()
        .to_string();
        assert!(jsonl.contains("row 2"), "{jsonl}");
    }
}
