//! Sentence segmentation for per-sentence routing.
//!
//! A sentence ends at `.`, `!` or `?` (a run of them, plus closing quotes/brackets) that is
//! followed by whitespace or the end of the text, and at every line break. A `.` does not end a
//! sentence inside a number (`3.14`: no whitespace follows) or after an abbreviation (`e.g.`,
//! `Mr.`, `U.S.`, a single-capital initial like `J.`), nor after a list number that opens its
//! line (`1. Preheat the oven.`).
//!
//! The returned byte ranges cover the whole text, contiguously and in order. Whitespace between
//! two sentences belongs to the **following** sentence: byte-level BPE and SentencePiece
//! tokenizers put the space before a word into that word's token (`" How"`), so a token never
//! straddles a boundary and the engine can assign each token to the sentence holding its first
//! byte. Leading whitespace of the text belongs to the first sentence, trailing whitespace to
//! the last; a range never holds whitespace alone unless the whole text is whitespace.
//!
//! For streaming, call [`split_sentences`] on the text generated since the last boundary: a
//! sentence is complete once a second range has begun (its terminator was followed by
//! whitespace).

use std::ops::Range;

/// Words ending in `.` that do not end a sentence (compared lower-case).
const ABBREVIATIONS: &[&str] = &[
    "mr.", "mrs.", "ms.", "dr.", "prof.", "sr.", "jr.", "st.", "mt.", "vs.", "e.g.", "i.e.", "cf.",
    "al.", "fig.", "approx.", "inc.", "ltd.", "no.", "vol.",
];

/// Splits `text` into sentences; returns their byte ranges (see the module docs for the rules).
/// Empty text gives no ranges.
pub fn split_sentences(text: &str) -> Vec<Range<usize>> {
    if text.is_empty() {
        return Vec::new();
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |j: usize| chars.get(j).map_or(text.len(), |c| c.0);
    // Candidate ends: byte offsets just past a sentence's last non-whitespace character.
    let mut ends = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c == '\n' {
            // End after the line's last non-whitespace byte ("\r\n" and trailing spaces go on).
            ends.push(text[..pos].trim_end().len());
        } else if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len() && matches!(chars[j].1, '.' | '!' | '?') {
                j += 1;
            }
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '"' | '\'' | ')' | ']' | '\u{201d}' | '\u{2019}' | '\u{bb}'
                )
            {
                j += 1;
            }
            let at_break = j == chars.len() || chars[j].1.is_whitespace();
            let single_dot = j == i + 1 && c == '.';
            if at_break && !(single_dot && is_abbreviation(&text[..pos + 1])) {
                ends.push(byte_at(j));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    // Keep an end only if the sentence it closes holds some non-whitespace; the text after it
    // (whitespace first) starts the next sentence.
    let mut starts = vec![0];
    for e in ends {
        let last = *starts.last().expect("non-empty");
        if e > last && !text[last..e].trim().is_empty() {
            starts.push(e);
        }
    }
    // Trailing whitespace (or nothing) after the last end joins the last sentence.
    if starts.len() > 1 && text[*starts.last().expect("non-empty")..].trim().is_empty() {
        starts.pop();
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(text.len()))
        .collect()
}

/// The sentences of `text` as string slices (same ranges as [`split_sentences`]).
pub fn sentences(text: &str) -> Vec<&str> {
    split_sentences(text)
        .into_iter()
        .map(|r| &text[r])
        .collect()
}

/// Whether the word ending `prefix` (which ends in `.`) is an abbreviation or an initial.
fn is_abbreviation(prefix: &str) -> bool {
    let word_start = prefix.rfind(char::is_whitespace).map_or(0, |p| p + 1);
    let word =
        prefix[word_start..].trim_start_matches(['(', '[', '"', '\'', '\u{201c}', '\u{2018}']);
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    let body = &word[..word.len() - 1];
    // A list marker: "1." or "12." as the first word of its line ("1. Preheat the oven").
    let line_start = prefix[..word_start].rfind('\n').map_or(0, |p| p + 1);
    if !body.is_empty()
        && body.len() <= 3
        && body.chars().all(|c| c.is_ascii_digit())
        && prefix[line_start..word_start].trim().is_empty()
    {
        return true;
    }
    // An initial: "J." (one upper-case letter).
    let mut it = body.chars();
    if let (Some(c), None) = (it.next(), it.next()) {
        if c.is_uppercase() {
            return true;
        }
    }
    // Dotted letters: "U.S.", "a.m.", "Ph.D." (but not "3.14.", which ends a sentence).
    body.contains('.') && body.chars().all(|c| c == '.' || c.is_alphabetic())
}
