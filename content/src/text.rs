//! Words, sentences and syllables: what the checks count.

use unicode_segmentation::UnicodeSegmentation;

/// The sentences of a block of text (Unicode sentence boundaries), trimmed, without empty
/// ones.
pub fn sentences(text: &str) -> Vec<&str> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}

/// The words of a text (Unicode word boundaries, alphanumeric words only).
pub fn words(text: &str) -> Vec<&str> {
    text.unicode_words().collect()
}

/// Lower-cased words, for matching.
pub fn folded_words(text: &str) -> Vec<String> {
    words(text).into_iter().map(str::to_lowercase).collect()
}

/// Syllables of one word: groups of vowels (with `y` and the German umlauts), a silent final
/// `e` in English dropped, at least one. The estimate readability formulas are defined with.
pub fn syllables(word: &str, language: &str) -> usize {
    let w = word.to_lowercase();
    let german = language.starts_with("de");
    let is_vowel = |c: char| "aeiouyäöü".contains(c);
    let chars: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
    if chars.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut previous = false;
    for &c in &chars {
        let vowel = is_vowel(c);
        // German diphthongs (ei, ie, au, eu, äu) are one syllable, as vowel groups are anyway.
        if vowel && !previous {
            count += 1;
        }
        previous = vowel;
    }
    if !german && count > 1 && silent_ending(&chars) {
        count -= 1;
    }
    count.max(1)
}

/// English endings whose vowel is not spoken: a final `e` (`score`, but not `table`), `es`
/// and `ed` (`scores`, `used`, but not `places`' or `created`'s).
fn silent_ending(chars: &[char]) -> bool {
    let n = chars.len();
    let last = chars[n - 1];
    let before = |k: usize| (n > k).then(|| chars[n - 1 - k]);
    match (before(1), last) {
        (Some(p), 'e') => p != 'l' && !"aeiouy".contains(p),
        (Some('e'), 's') => before(2).is_some_and(|c| !"aeiouyclsxz".contains(c)),
        (Some('e'), 'd') => before(2).is_some_and(|c| !"aeiouytd".contains(c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_keep_decimals_and_abbreviations_together() {
        let s =
            sentences("Leitwerk cut the cost by 1.5 percent, e.g. for B2B teams. Then what? Done.");
        assert_eq!(
            s,
            [
                "Leitwerk cut the cost by 1.5 percent, e.g. for B2B teams.",
                "Then what?",
                "Done."
            ]
        );
    }

    #[test]
    fn syllables_follow_the_usual_estimate() {
        for (word, n) in [
            ("the", 1),
            ("table", 2),
            ("readability", 5),
            ("scores", 1),
            ("used", 1),
            ("wanted", 2),
            ("places", 2),
            ("a", 1),
        ] {
            assert_eq!(syllables(word, "en"), n, "{word}");
        }
        for (word, n) in [
            ("Leitwerk", 2),
            ("Lesbarkeit", 3),
            ("Kunde", 2),
            ("Bäume", 2),
        ] {
            assert_eq!(syllables(word, "de"), n, "{word}");
        }
    }
}
