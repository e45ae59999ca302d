//! A Markdown draft as the checks read it: blocks of text (headings, paragraphs, list items)
//! and links, each with its location.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use serde::Serialize;

/// Where a finding is: the line in the draft and the heading of the section around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// 1-based line of the block's start.
    pub line: usize,
    /// Text of the nearest heading above (empty before the first).
    pub section: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.section.is_empty() {
            write!(f, "line {}", self.line)
        } else {
            write!(f, "line {} (section {:?})", self.line, self.section)
        }
    }
}

/// What a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A heading of level 1–6.
    Heading(u8),
    /// A paragraph.
    Paragraph,
    /// A list item's own text.
    ListItem,
}

/// A block of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What it is.
    pub kind: BlockKind,
    /// Its text, inline markup removed.
    pub text: String,
    /// Where it is.
    pub location: Location,
}

/// A link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its anchor text.
    pub text: String,
    /// Its target.
    pub url: String,
    /// Where it is.
    pub location: Location,
}

/// A parsed draft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// Headings, paragraphs and list items in order; code is left out.
    pub blocks: Vec<Block>,
    /// Links in order.
    pub links: Vec<Link>,
}

impl Draft {
    /// Parses Markdown.
    pub fn parse(markdown: &str) -> Draft {
        let line_of =
            |offset: usize| markdown[..offset.min(markdown.len())].matches('\n').count() + 1;
        let mut draft = Draft::default();
        let mut open: Vec<(BlockKind, usize, String)> = Vec::new();
        let mut link: Option<(String, usize, String)> = None;
        let mut section = String::new();
        let mut in_code = false;
        for (event, range) in Parser::new(markdown).into_offset_iter() {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    open.push((
                        BlockKind::Heading(level_number(level)),
                        range.start,
                        String::new(),
                    ));
                }
                Event::Start(Tag::Paragraph) => {
                    open.push((BlockKind::Paragraph, range.start, String::new()));
                }
                Event::Start(Tag::Item) => {
                    open.push((BlockKind::ListItem, range.start, String::new()))
                }
                Event::Start(Tag::CodeBlock(_)) => in_code = true,
                Event::End(TagEnd::CodeBlock) => in_code = false,
                Event::Start(Tag::Link { dest_url, .. }) => {
                    link = Some((dest_url.to_string(), range.start, String::new()));
                }
                Event::End(TagEnd::Link) => {
                    if let Some((url, start, text)) = link.take() {
                        draft.links.push(Link {
                            text,
                            url,
                            location: Location {
                                line: line_of(start),
                                section: section.clone(),
                            },
                        });
                    }
                }
                Event::Text(t) | Event::Code(t) if !in_code => {
                    if let Some((_, _, text)) = open.last_mut() {
                        text.push_str(&t);
                    }
                    if let Some((_, _, text)) = link.as_mut() {
                        text.push_str(&t);
                    }
                }
                Event::SoftBreak | Event::HardBreak => {
                    if let Some((_, _, text)) = open.last_mut() {
                        text.push(' ');
                    }
                }
                Event::End(TagEnd::Heading(_) | TagEnd::Paragraph | TagEnd::Item) => {
                    let Some((kind, start, text)) = open.pop() else {
                        continue;
                    };
                    let text = text.trim().to_string();
                    if text.is_empty() {
                        continue;
                    }
                    if matches!(kind, BlockKind::Heading(_)) {
                        section = text.clone();
                    }
                    draft.blocks.push(Block {
                        kind,
                        text,
                        location: Location {
                            line: line_of(start),
                            section: section.clone(),
                        },
                    });
                }
                _ => {}
            }
        }
        draft
    }

    /// The headings: level and text, in order.
    pub fn headings(&self) -> impl Iterator<Item = (u8, &Block)> {
        self.blocks.iter().filter_map(|b| match b.kind {
            BlockKind::Heading(level) => Some((level, b)),
            _ => None,
        })
    }

    /// Blocks of body text (paragraphs and list items).
    pub fn body(&self) -> impl Iterator<Item = &Block> {
        self.blocks
            .iter()
            .filter(|b| !matches!(b.kind, BlockKind::Heading(_)))
    }
}

fn level_number(level: HeadingLevel) -> u8 {
    u8::try_from(leitwerk_rag::chunk::level_number(level)).unwrap_or(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_know_their_line_and_section_and_code_is_left_out() {
        let md = "# Lead scoring\n\nIntro with a [link](https://x.example/a).\n\n## Setup\n\n- one\n- two\n\n```\nnot text\n```\n";
        let d = Draft::parse(md);
        let texts: Vec<(&str, usize, &str)> = d
            .blocks
            .iter()
            .map(|b| {
                (
                    b.text.as_str(),
                    b.location.line,
                    b.location.section.as_str(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("Lead scoring", 1, "Lead scoring"),
                ("Intro with a link.", 3, "Lead scoring"),
                ("Setup", 5, "Setup"),
                ("one", 7, "Setup"),
                ("two", 8, "Setup"),
            ]
        );
        assert_eq!(d.links.len(), 1);
        assert_eq!(
            (d.links[0].text.as_str(), d.links[0].url.as_str()),
            ("link", "https://x.example/a")
        );
        assert_eq!(d.headings().map(|(l, _)| l).collect::<Vec<_>>(), [1, 2]);
    }
}
