//! Retrieval quality on a labelled set: recall@k, mean reciprocal rank and nDCG@k, over
//! document ids (a document is found when any of its chunks is retrieved).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One labelled query: its text and the ids of the documents that answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelled {
    /// The query.
    pub query: String,
    /// Ids of the relevant documents.
    pub relevant: Vec<String>,
}

/// Errors of a labelled set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelledError {
    /// A line is not a labelled query.
    #[error(
        "line {line} of the labelled set is not {{\"query\": \"…\", \"relevant\": [\"doc id\", …]}}: {message}"
    )]
    Line {
        /// Line number, from 1.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A query names no relevant document.
    #[error("line {0} of the labelled set names no relevant document")]
    NoRelevant(usize),
    /// The set is empty.
    #[error("the labelled set has no queries")]
    Empty,
}

/// Parses a labelled set in JSON Lines (blank lines are skipped).
pub fn parse_labelled(text: &str) -> Result<Vec<Labelled>, LabelledError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let labelled: Labelled = serde_json::from_str(line).map_err(|e| LabelledError::Line {
            line: i + 1,
            message: e.to_string(),
        })?;
        if labelled.relevant.is_empty() {
            return Err(LabelledError::NoRelevant(i + 1));
        }
        out.push(labelled);
    }
    if out.is_empty() {
        return Err(LabelledError::Empty);
    }
    Ok(out)
}

/// The relevant ids that are not among `known`: a labelled set that names documents the
/// index does not have measures nothing about them.
pub fn unknown_ids<'a>(set: &'a [Labelled], known: &BTreeSet<String>) -> Vec<&'a str> {
    let mut out: Vec<&str> = set
        .iter()
        .flat_map(|l| l.relevant.iter())
        .filter(|id| !known.contains(*id))
        .map(String::as_str)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Retrieval quality over a labelled set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    /// The cut-off.
    pub k: usize,
    /// Mean over queries of the share of relevant documents in the top k.
    pub recall_at_k: f64,
    /// Mean over queries of 1 / rank of the first relevant document (0 when none is found).
    pub mrr: f64,
    /// Mean over queries of nDCG@k with binary relevance.
    pub ndcg_at_k: f64,
    /// Queries whose first result is relevant.
    pub first_relevant: usize,
    /// Queries evaluated.
    pub queries: usize,
}

/// The distinct document ids of ranked results, in order of first appearance.
pub fn distinct(ranked: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ranked
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Scores rankings: `ranked[i]` is the ranked document ids retrieved for `set[i]`.
pub fn evaluate(set: &[Labelled], ranked: &[Vec<String>], k: usize) -> Quality {
    let mut q = Quality {
        k,
        recall_at_k: 0.0,
        mrr: 0.0,
        ndcg_at_k: 0.0,
        first_relevant: 0,
        queries: set.len(),
    };
    if set.is_empty() || k == 0 {
        return q;
    }
    for (labelled, ranking) in set.iter().zip(ranked) {
        let relevant: BTreeSet<&str> = labelled.relevant.iter().map(String::as_str).collect();
        let docs = distinct(ranking);
        let top = &docs[..docs.len().min(k)];
        let hits = top.iter().filter(|d| relevant.contains(d.as_str())).count();
        q.recall_at_k += hits as f64 / relevant.len() as f64;
        if let Some(rank) = docs.iter().position(|d| relevant.contains(d.as_str())) {
            q.mrr += 1.0 / (rank + 1) as f64;
            if rank == 0 {
                q.first_relevant += 1;
            }
        }
        let dcg: f64 = top
            .iter()
            .enumerate()
            .filter(|(_, d)| relevant.contains(d.as_str()))
            .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(k))
            .map(|i| 1.0 / ((i + 2) as f64).log2())
            .sum();
        q.ndcg_at_k += dcg / ideal;
    }
    let n = set.len() as f64;
    q.recall_at_k /= n;
    q.mrr /= n;
    q.ndcg_at_k /= n;
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let set = vec![
            Labelled {
                query: "a".into(),
                relevant: ids(&["d1"]),
            },
            Labelled {
                query: "b".into(),
                relevant: ids(&["d2", "d3"]),
            },
            Labelled {
                query: "c".into(),
                relevant: ids(&["d9"]),
            },
        ];
        // Chunks of one document count once: d1 twice is one hit at rank 1.
        let ranked = vec![
            ids(&["d1", "d1", "d4"]),
            ids(&["d4", "d3", "d2"]),
            ids(&["d4", "d5", "d6"]),
        ];
        let q = evaluate(&set, &ranked, 2);
        // recall@2: 1, 1/2 (d3 at 2, d2 at 3), 0.
        assert!((q.recall_at_k - 0.5).abs() < 1e-12, "{q:?}");
        // MRR: 1, 1/2, 0.
        assert!((q.mrr - 0.5).abs() < 1e-12, "{q:?}");
        // nDCG@2: 1; (1/log2 3) / (1 + 1/log2 3); 0.
        let second = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((q.ndcg_at_k - (1.0 + second) / 3.0).abs() < 1e-12, "{q:?}");
        assert_eq!((q.first_relevant, q.queries), (1, 3));
    }

    #[test]
    fn labelled_sets_name_the_line_and_unknown_documents() {
        let set = parse_labelled(
            "{\"query\": \"price of pro\", \"relevant\": [\"docs/pricing\"]}\n\n{\"query\": \"sso\", \"relevant\": [\"docs/sso\", \"docs/gone\"]}\n",
        )
        .unwrap_or_default();
        assert_eq!(set.len(), 2);
        let known = BTreeSet::from(["docs/pricing".to_string(), "docs/sso".to_string()]);
        assert_eq!(unknown_ids(&set, &known), vec!["docs/gone"]);
        assert!(matches!(
            parse_labelled("{\"query\": 1}"),
            Err(LabelledError::Line { line: 1, .. })
        ));
        assert_eq!(
            parse_labelled("{\"query\": \"q\", \"relevant\": []}"),
            Err(LabelledError::NoRelevant(1))
        );
        assert_eq!(parse_labelled("\n"), Err(LabelledError::Empty));
    }
}
