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
}

impl TextOffset {
    /// Adds a token's bytes.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        // Whole characters leave `partial`; bytes that can never be UTF-8 count as the one
        // U+FFFD the text shows for them; an unfinished character waits for more.
        let mut done = 0;
        while let Err(e) = std::str::from_utf8(&self.partial[done..]) {
            self.chars += utf8_chars(&self.partial[done..done + e.valid_up_to()]);
            done += e.valid_up_to();
            match e.error_len() {
                Some(n) => (self.chars, done) = (self.chars + 1, done + n),
                None => {
                    self.partial.drain(..done);
                    return;
                }
            }
        }
        self.chars += utf8_chars(&self.partial[done..]);
        self.partial.clear();
    }
}

/// Characters in bytes known to be UTF-8.
fn utf8_chars(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c & 0xC0 != 0x80).count()
}
