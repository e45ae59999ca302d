//! Chunking with `text-splitter`, measured in the embedding model's own word pieces, so that no
//! chunk is longer than what the model reads. Markdown is split on its structure and each chunk
//! carries the heading path it falls under as its `section`.

use std::path::Path;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::embed::{EmbedError, MAX_WORD_PIECES};

/// The most word pieces a chunk may have: what the model reads, less `[CLS]` and `[SEP]`.
pub const MAX_CHUNK_WORD_PIECES: usize = MAX_WORD_PIECES - 2;

/// Counts word pieces as the embedding model's tokenizer makes them (no special tokens, no
/// truncation).
#[derive(Clone)]
pub struct WordPieces(Tokenizer);

impl std::fmt::Debug for WordPieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WordPieces")
    }
}

impl WordPieces {
    /// The counter for a tokenizer (its truncation and padding are switched off).
    pub fn new(mut tokenizer: Tokenizer) -> Result<WordPieces, EmbedError> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(WordPieces(tokenizer))
    }

    /// The counter of the tokenizer in `dir/tokenizer.json`.
    pub fn load(dir: &Path) -> Result<WordPieces, EmbedError> {
        let path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| EmbedError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        WordPieces::new(tokenizer)
    }

    /// Word pieces in `text`.
    pub fn count(&self, text: &str) -> usize {
        // A WordPiece model maps unknown words to [UNK], so encoding does not fail; should it,
        // counting bytes over-estimates, which only makes chunks smaller.
        self.0
            .encode_fast(text, false)
            .map_or(text.len(), |e| e.len())
    }
}

impl ChunkSizer for WordPieces {
    fn size(&self, chunk: &str) -> usize {
        self.count(chunk)
    }
}

/// How text is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Structure {
    /// Markdown: headings, then blocks, then sentences.
    Markdown,
    /// Plain text: paragraphs, then sentences.
    Text,
}

/// Chunking settings (`spec.chunking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How text is split.
    pub structure: Structure,
    /// Largest chunk, in word pieces.
    pub max_word_pieces: usize,
    /// Word pieces shared by neighbouring chunks.
    pub overlap: usize,
}

/// Errors of chunking settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// Longer chunks than the model reads.
    #[error(
        "chunking.maxTokens {0} is more than the embedding model reads ({MAX_CHUNK_WORD_PIECES} word pieces besides [CLS] and [SEP]): lower it"
    )]
    TooLong(usize),
    /// Overlap not smaller than the chunk.
    #[error("chunking.overlapTokens {overlap} must be smaller than chunking.maxTokens {max}")]
    Overlap {
        /// Overlap.
        overlap: usize,
        /// Chunk size.
        max: usize,
    },
}

impl Settings {
    /// Checks the settings against what the model reads.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.max_word_pieces > MAX_CHUNK_WORD_PIECES {
            return Err(SettingsError::TooLong(self.max_word_pieces));
        }
        if self.overlap >= self.max_word_pieces {
            return Err(SettingsError::Overlap {
                overlap: self.overlap,
                max: self.max_word_pieces,
            });
        }
        Ok(())
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub index: usize,
    /// The text.
    pub text: String,
    /// Heading path it falls under (`Pricing > Pro plan`), empty outside any heading.
    pub section: String,
    /// Word pieces in `text`.
    pub word_pieces: usize,
}

/// Splits `text` into chunks of at most `settings.max_word_pieces` word pieces. Markdown is cut
/// at every heading first, so a chunk never spans two sections and its `section` is exact.
pub fn split(
    text: &str,
    settings: &Settings,
    pieces: &WordPieces,
) -> Result<Vec<Chunk>, SettingsError> {
    settings.check()?;
    let config = ChunkConfig::new(settings.max_word_pieces)
        .with_sizer(pieces.clone())
        .with_overlap(settings.overlap)
        .map_err(|_| SettingsError::Overlap {
            overlap: settings.overlap,
            max: settings.max_word_pieces,
        })?;
    let mut chunks = Vec::new();
    let mut push = |piece: &str, section: String| {
        chunks.push(Chunk {
            index: chunks.len(),
            text: piece.to_string(),
            section,
            word_pieces: pieces.count(piece),
        });
    };
    match settings.structure {
        Structure::Text => {
            for piece in TextSplitter::new(config).chunks(text) {
                push(piece, String::new());
            }
        }
        Structure::Markdown => {
            let headings = headings(text);
            let splitter = MarkdownSplitter::new(config);
            let mut cuts: Vec<usize> = headings.iter().map(|(start, _, _)| *start).collect();
            cuts.insert(0, 0);
            cuts.push(text.len());
            for window in cuts.windows(2) {
                let Some(segment) = text.get(window[0]..window[1]) else {
                    continue;
                };
                let section = section_at(&headings, window[0]);
                for piece in splitter.chunks(segment) {
                    push(piece, section.clone());
                }
            }
        }
    }
    Ok(chunks)
}

/// A heading: where it starts, its level and its text.
type Heading = (usize, usize, String);

/// The document's headings, in order.
fn headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, String)> = None;
    for (event, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                open = Some((range.start, level_number(level), String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, title)) = open.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((start, level, title)) = open.take() {
                    out.push((start, level, title.trim().to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

/// A Markdown heading's level as a number, 1 to 6.
pub fn level_number(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The heading path in force at byte `at`: each heading replaces those at its level or deeper.
fn section_at(headings: &[Heading], at: usize) -> String {
    let mut path: Vec<(usize, &str)> = Vec::new();
    for (_, level, title) in headings.iter().take_while(|(start, _, _)| *start <= at) {
        path.retain(|(l, _)| l < level);
        path.push((*level, title));
    }
    path.iter().map(|(_, t)| *t).collect::<Vec<_>>().join(" > ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heading_path_is_the_headings_in_force() {
        let doc = "# Pricing\nintro\n## Pro plan\npro text\n### Seats\nseats\n## Team plan\nteam\n";
        let h = headings(doc);
        assert_eq!(
            h.iter()
                .map(|(_, l, t)| (*l, t.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (1, "Pricing"),
                (2, "Pro plan"),
                (3, "Seats"),
                (2, "Team plan")
            ]
        );
        let at = |needle: &str| section_at(&h, doc.find(needle).unwrap_or(0));
        assert_eq!(at("intro"), "Pricing");
        assert_eq!(at("seats"), "Pricing > Pro plan > Seats");
        assert_eq!(at("team"), "Pricing > Team plan");
        assert_eq!(
            section_at(&h, 0),
            "Pricing",
            "a chunk starting at its heading"
        );
        assert_eq!(section_at(&[], 10), "");
    }

    #[test]
    fn settings_longer_than_the_model_reads_are_refused_naming_the_field() {
        let too_long = Settings {
            structure: Structure::Markdown,
            max_word_pieces: 512,
            overlap: 0,
        };
        let err = too_long.check().unwrap_err().to_string();
        assert!(
            err.contains("chunking.maxTokens 512") && err.contains("254"),
            "{err}"
        );
        let overlap = Settings {
            structure: Structure::Text,
            max_word_pieces: 64,
            overlap: 64,
        };
        assert_eq!(
            overlap.check(),
            Err(SettingsError::Overlap {
                overlap: 64,
                max: 64
            })
        );
    }
}
