//! On-page SEO: headings, the briefing's structure, title and meta description, keywords and
//! entities, internal links from a link map, and schema.org `Article` JSON-LD.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::markdown::Draft;
use crate::style::{Finding, find_phrase};
use crate::text::words;

/// Longest title, in characters.
pub const TITLE_MAX: usize = 60;
/// Meta description length, in characters.
pub const DESCRIPTION_RANGE: std::ops::RangeInclusive<usize> = 120..=160;
/// The primary keyword must appear within this many words of the body's start.
pub const KEYWORD_WITHIN_WORDS: usize = 100;

/// A page: its title, meta description and Markdown body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The `<title>`.
    pub title: String,
    /// The meta description.
    pub description: String,
    /// The body, in Markdown.
    pub markdown: String,
}

/// What the on-page check asks for (from the briefing and its link map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Keywords; the first is the primary one.
    pub keywords: Vec<String>,
    /// Entities the piece must cover.
    pub entities: Vec<String>,
    /// Section headings required, in order.
    pub structure: Vec<String>,
    /// Internal links: anchor text → URL.
    pub link_map: BTreeMap<String, String>,
}

fn finding(rule: &'static str, message: String) -> Finding {
    Finding {
        rule,
        message,
        location: None,
    }
}

/// Whether a link-map URL is one a page may carry: absolute http(s) or site-relative.
pub fn valid_link(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) => host
            .split('/')
            .next()
            .is_some_and(|h| !h.is_empty() && !h.contains(' ')),
        None => url.starts_with('/') && !url.starts_with("//") && !url.contains(' '),
    }
}

/// The link map's problems, naming each entry (checked before a run starts).
pub fn check_link_map(link_map: &BTreeMap<String, String>) -> Vec<String> {
    link_map
        .iter()
        .filter(|(anchor, url)| anchor.trim().is_empty() || !valid_link(url))
        .map(|(anchor, url)| {
            format!("link map entry {anchor:?} → {url:?}: use an absolute http(s) URL or a path starting with /")
        })
        .collect()
}

/// `markdown` with the first unlinked occurrence of each link-map anchor in body text made
/// a link to its URL. Headings, code and existing links are left alone.
pub fn insert_links(markdown: &str, link_map: &BTreeMap<String, String>) -> String {
    let mut lines: Vec<String> = markdown.lines().map(String::from).collect();
    for (anchor, url) in link_map {
        if !valid_link(url) {
            continue;
        }
        let mut in_code = false;
        'lines: for line in lines.iter_mut() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code || trimmed.starts_with('#') {
                continue;
            }
            // Byte ranges of existing links `[text](url)` on the line.
            let mut linked = Vec::new();
            let mut from = 0;
            while let Some(open) = line[from..].find('[').map(|i| i + from) {
                let Some(close) = line[open..].find("](").map(|i| i + open) else {
                    break;
                };
                let end = line[close..]
                    .find(')')
                    .map_or(line.len(), |i| i + close + 1);
                linked.push(open..end);
                from = end;
            }
            for at in find_phrase(line, anchor) {
                if linked.iter().any(|r| r.contains(&at)) {
                    continue;
                }
                let found = &line[at..at + anchor.len()];
                let replacement = format!("[{found}]({url})");
                line.replace_range(at..at + anchor.len(), &replacement);
                break 'lines;
            }
        }
    }
    let mut out = lines.join("\n");
    if markdown.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The on-page findings of a page.
pub fn check(page: &Page, rules: &Rules) -> Vec<Finding> {
    let draft = Draft::parse(&page.markdown);
    let mut findings = Vec::new();
    let headings: Vec<(u8, &crate::markdown::Block)> = draft.headings().collect();
    let h1: Vec<&str> = headings
        .iter()
        .filter(|(l, _)| *l == 1)
        .map(|(_, b)| b.text.as_str())
        .collect();
    if h1.len() != 1 {
        findings.push(finding(
            "h1",
            format!(
                "the page has {} H1 headings: it needs exactly one",
                h1.len()
            ),
        ));
    }
    let mut previous = 0u8;
    for (level, block) in &headings {
        if *level > previous + 1 {
            findings.push(Finding {
                rule: "headingLevels",
                message: format!(
                    "H{level} {:?} follows H{previous}: a level is skipped",
                    block.text
                ),
                location: Some(block.location.clone()),
            });
        }
        previous = *level;
    }
    // The structure's headings, in order, among the headings below the H1.
    let mut next = 0;
    for (_, block) in headings.iter().filter(|(l, _)| *l > 1) {
        if next < rules.structure.len()
            && !find_phrase(&block.text, &rules.structure[next]).is_empty()
        {
            next += 1;
        }
    }
    if let Some(missing) = rules.structure.get(next) {
        findings.push(finding(
            "structure",
            format!(
                "the section {missing:?} of the briefing's structure is missing or out of order ({next} of {} in order)",
                rules.structure.len()
            ),
        ));
    }
    let title_len = page.title.chars().count();
    if title_len > TITLE_MAX || title_len == 0 {
        findings.push(finding(
            "title",
            format!("the title has {title_len} characters: 1 to {TITLE_MAX}"),
        ));
    }
    let description_len = page.description.chars().count();
    if !DESCRIPTION_RANGE.contains(&description_len) {
        findings.push(finding(
            "metaDescription",
            format!(
                "the meta description has {description_len} characters: {} to {}",
                DESCRIPTION_RANGE.start(),
                DESCRIPTION_RANGE.end()
            ),
        ));
    }
    let body: String = draft
        .body()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(primary) = rules.keywords.first() {
        let opening: String = words(&body)
            .into_iter()
            .take(KEYWORD_WITHIN_WORDS)
            .collect::<Vec<_>>()
            .join(" ");
        for (place, text) in [
            ("the title", page.title.as_str()),
            ("the H1", h1.first().copied().unwrap_or_default()),
            ("the first 100 words", opening.as_str()),
        ] {
            if find_phrase(text, primary).is_empty() {
                findings.push(finding(
                    "primaryKeyword",
                    format!("the primary keyword {primary:?} is missing from {place}"),
                ));
            }
        }
    }
    let everything = format!(
        "{}\n{}",
        page.title,
        draft
            .blocks
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (rule, list) in [("keywords", &rules.keywords), ("entities", &rules.entities)] {
        let missing: Vec<&String> = list
            .iter()
            .filter(|k| find_phrase(&everything, k).is_empty())
            .collect();
        if !missing.is_empty() {
            findings.push(finding(
                rule,
                format!(
                    "{} of {} {rule} are not covered: {missing:?}",
                    missing.len(),
                    list.len()
                ),
            ));
        }
    }
    for problem in check_link_map(&rules.link_map) {
        findings.push(finding("linkMap", problem));
    }
    for (anchor, url) in &rules.link_map {
        let mentioned = !find_phrase(&body, anchor).is_empty();
        let linked = draft
            .links
            .iter()
            .any(|l| l.text.eq_ignore_ascii_case(anchor) && &l.url == url);
        if mentioned && !linked {
            findings.push(finding(
                "internalLinks",
                format!("{anchor:?} is mentioned but not linked to {url}"),
            ));
        }
    }
    for link in &draft.links {
        if let Some(url) = rules.link_map.get(&link.text)
            && &link.url != url
        {
            findings.push(Finding {
                rule: "internalLinks",
                message: format!("{:?} links to {} instead of {url}", link.text, link.url),
                location: Some(link.location.clone()),
            });
        }
    }
    findings
}

/// What the JSON-LD says beyond the page itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleMeta {
    /// The canonical URL.
    pub url: String,
    /// The author (a person or the organisation).
    pub author: String,
    /// The publisher organisation.
    pub publisher: String,
    /// ISO 8601 date of publication.
    pub date_published: String,
    /// BCP 47 language.
    pub language: String,
    /// The lead image, when there is one.
    pub image: Option<String>,
}

/// Properties an `Article` carries here: what search engines read for article rich results.
pub const ARTICLE_PROPERTIES: [&str; 7] = [
    "headline",
    "description",
    "author",
    "publisher",
    "datePublished",
    "inLanguage",
    "mainEntityOfPage",
];

/// The schema.org `Article` JSON-LD of a page.
pub fn article_json_ld(page: &Page, meta: &ArticleMeta, keywords: &[String]) -> Value {
    let headline: String = page.title.chars().take(110).collect();
    let mut article = json!({
        "@context": "https://schema.org",
        "@type": "Article",
        "headline": headline,
        "description": page.description,
        "author": {"@type": "Organization", "name": meta.author},
        "publisher": {"@type": "Organization", "name": meta.publisher},
        "datePublished": meta.date_published,
        "inLanguage": meta.language,
        "mainEntityOfPage": {"@type": "WebPage", "@id": meta.url},
        "keywords": keywords.join(", "),
        "wordCount": words(&Draft::parse(&page.markdown).body().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" ")).len(),
    });
    if let (Some(image), Some(obj)) = (&meta.image, article.as_object_mut()) {
        obj.insert("image".into(), json!(image));
    }
    article
}

/// The missing or empty properties of an `Article` JSON-LD.
pub fn check_json_ld(article: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    if article["@type"] != "Article" || article["@context"] != "https://schema.org" {
        findings.push(finding(
            "jsonLd",
            "the JSON-LD is not a schema.org Article".into(),
        ));
    }
    for property in ARTICLE_PROPERTIES {
        let v = &article[property];
        let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
        if empty {
            findings.push(finding("jsonLd", format!("the Article has no {property}")));
        }
    }
    if article["headline"]
        .as_str()
        .is_some_and(|h| h.chars().count() > 110)
    {
        findings.push(finding(
            "jsonLd",
            "the headline is longer than 110 characters".into(),
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            keywords: vec!["lead scoring".into(), "conversion rate".into()],
            entities: vec!["Leitwerk".into(), "HubSpot".into()],
            structure: vec!["Why".into(), "How it works".into(), "Pricing".into()],
            link_map: BTreeMap::from([
                ("pricing page".to_string(), "/pricing".to_string()),
                (
                    "HubSpot".to_string(),
                    "https://example.com/integrations/hubspot".to_string(),
                ),
            ]),
        }
    }

    fn good() -> Page {
        Page {
            title: "Lead scoring for B2B SaaS teams | Leitwerk".into(),
            description: "How lead scoring with Leitwerk lifts the conversion rate of B2B SaaS teams: the data it reads, how it scores, and what it costs per month.".into(),
            markdown: "# Lead scoring that sales trusts\n\nLead scoring ranks every lead by its chance to buy.\n\n## Why it matters\n\nA better conversion rate.\n\n## How it works\n\nLeitwerk reads HubSpot activity.\n\n## Pricing\n\nSee the pricing page.\n".into(),
        }
    }

    #[test]
    fn a_page_with_links_inserted_passes_every_check() {
        let mut page = good();
        page.markdown = insert_links(&page.markdown, &rules().link_map);
        assert!(page.markdown.contains(
            "Leitwerk reads [HubSpot](https://example.com/integrations/hubspot) activity."
        ));
        assert!(page.markdown.contains("See the [pricing page](/pricing)."));
        assert_eq!(check(&page, &rules()), []);
        // Inserting again changes nothing: links are not nested.
        assert_eq!(
            insert_links(&page.markdown, &rules().link_map),
            page.markdown
        );
    }

    #[test]
    fn each_rule_names_what_is_wrong() {
        let page = Page {
            title: "A very long title that goes on and on about everything we have ever done".into(),
            description: "Too short.".into(),
            markdown: "# One\n\n# Two\n\n#### Deep\n\nNothing here mentions the topic. See the pricing page.\n\n## Pricing\n\n## Why\n".into(),
        };
        let rules = rules();
        let got: Vec<&str> = check(&page, &rules).iter().map(|f| f.rule).collect();
        assert_eq!(
            got,
            [
                "h1",
                "headingLevels",
                "structure",
                "title",
                "metaDescription",
                "primaryKeyword",
                "primaryKeyword",
                "primaryKeyword",
                "keywords",
                "entities",
                "internalLinks"
            ]
        );
    }

    #[test]
    fn link_maps_with_invalid_urls_are_named() {
        let map = BTreeMap::from([
            ("docs".to_string(), "javascript:alert(1)".to_string()),
            ("home".to_string(), "/".to_string()),
            ("blog".to_string(), "//evil.example".to_string()),
        ]);
        let problems = check_link_map(&map);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("\"blog\"") && problems[1].contains("\"docs\""));
    }

    #[test]
    fn the_article_json_ld_has_every_property_it_needs() {
        let meta = ArticleMeta {
            url: "https://example.com/blog/lead-scoring".into(),
            author: "Leitwerk".into(),
            publisher: "Leitwerk".into(),
            date_published: "2026-12-06".into(),
            language: "en".into(),
            image: None,
        };
        let ld = article_json_ld(&good(), &meta, &rules().keywords);
        assert_eq!(check_json_ld(&ld), []);
        assert_eq!(
            ld["mainEntityOfPage"]["@id"],
            "https://example.com/blog/lead-scoring"
        );
        let mut broken = ld.clone();
        broken["datePublished"] = json!("");
        let names: Vec<String> = check_json_ld(&broken)
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(names, ["the Article has no datePublished"]);
    }
}
