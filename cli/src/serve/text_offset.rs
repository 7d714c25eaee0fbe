//! OpenAI's `text_offset` of completions' logprobs: characters, not bytes, with tokens that
//! split a character.

/// Where the next token starts in a choice's text, in characters (OpenAI's `text_offset`):
/// tokens that hold part of a character add nothing until it is whole.
#[derive(Default)]
pub(super) struct TextOffset {
    /// Whole characters so far.
    pub(super) chars: usize,
    /// The start of a character not yet whole.
    partial: Vec<u8>,
    /// An answer token was pushed ([`TextOffset::push_answer`]).
    answer_started: bool,
}

impl TextOffset {
    /// Adds a token's bytes; returns where the token's text starts. That is after the U+FFFD of
    /// bytes before it that its own bytes show can never be UTF-8 (`e6 97` then `The` reads
    /// `\u{FFFD}The`: `The` starts at 1), and before a character it completes.
    pub(super) fn push(&mut self, bytes: &[u8]) -> usize {
        let before = self.partial.len();
        self.partial.extend_from_slice(bytes);
        let mut start = self.chars;
        // Whole characters leave `partial`; bytes that can never be UTF-8 count as the one
        // U+FFFD the text shows for them; an unfinished character waits for more.
        let mut done = 0;
        while let Err(e) = std::str::from_utf8(&self.partial[done..]) {
            self.chars += utf8_chars(&self.partial[done..done + e.valid_up_to()]);
            done += e.valid_up_to();
            match e.error_len() {
                Some(n) => {
                    (self.chars, done) = (self.chars + 1, done + n);
                    if done <= before {
                        start = self.chars;
                    }
                }
                None => {
                    self.partial.drain(..done);
                    return start;
                }
            }
        }
        self.chars += utf8_chars(&self.partial[done..]);
        self.partial.clear();
        start
    }
}

impl TextOffset {
    /// As [`TextOffset::push`] for a token of the answer: the answer's first one may bring a
    /// space its text does not show (a SentencePiece decoder drops a text's first space:
    /// `▁Paris` answers "Paris"; `drops_space` says whether this token's does), which then
    /// moves no later token's start.
    pub(super) fn push_answer(
        &mut self,
        bytes: &[u8],
        drops_space: impl FnOnce() -> bool,
    ) -> usize {
        let first = !std::mem::replace(&mut self.answer_started, true);
        let start = self.push(bytes);
        if first && bytes.first() == Some(&b' ') && self.chars > start && drops_space() {
            self.chars -= 1;
        }
        start
    }
}

/// Characters in bytes known to be UTF-8.
fn utf8_chars(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c & 0xC0 != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::TextOffset;

    /// Each token's start, in characters, as the text decoded with U+FFFD for bad bytes shows it.
    fn starts(tokens: &[&[u8]]) -> Vec<usize> {
        let mut o = TextOffset::default();
        tokens.iter().map(|t| o.push(t)).collect()
    }

    #[test]
    fn a_token_starts_where_the_decoded_text_shows_it() {
        // Whole characters: one per byte or several bytes.
        assert_eq!(starts(&[b"ab", "é".as_bytes(), b"c"]), [0, 2, 3]);
        // A character split over tokens: the one that completes it starts before it.
        assert_eq!(starts(&[b"x", b"\xe6", b"\x97\xa5", b"y"]), [0, 1, 1, 2]);
        // Bytes that never form one: "\u{FFFD}The", so `The` starts at 1.
        assert_eq!(starts(&[b"\xe6\x97", b"The", b"C"]), [0, 1, 4]);
        // The bad sequence runs into the token: it starts before the U+FFFD.
        assert_eq!(starts(&[b"\xe6", b"\x97T", b"u"]), [0, 0, 2]);
        // A lone continuation byte is bad at once.
        assert_eq!(starts(&[b"\x80", b"a"]), [0, 1]);
    }

    /// A SentencePiece answer "Paris is" from " Paris" and " is": its first token's space is
    /// not in the text, the others' are; a byte-level answer keeps its first space.
    #[test]
    fn an_answer_s_dropped_first_space_moves_no_token() {
        let answer = |drops: bool, tokens: &[&[u8]]| {
            let mut o = TextOffset::default();
            // An echoed prompt first: its tokens count as they are.
            let prompt = o.push(b"The");
            let mut v = vec![prompt];
            v.extend(tokens.iter().map(|t| o.push_answer(t, || drops)));
            v
        };
        assert_eq!(answer(true, &[b" Paris", b" is"]), [0, 3, 8]);
        assert_eq!(answer(false, &[b" Paris", b" is"]), [0, 3, 9]);
        // A lone space piece, then the word: both start where the word does.
        assert_eq!(answer(true, &[b" ", b"Paris"]), [0, 3, 3]);
        // Only the first answer token's space.
        assert_eq!(answer(true, &[b"A", b" B"]), [0, 3, 4]);
    }
}
