//! The bytes one token stands for. Decoding a lone token gives U+FFFD for a token that holds
//! part of a UTF-8 character (byte-level BPE pieces of an emoji, SentencePiece's `<0xF0>`
//! byte-fallback tokens), so the log-probability fields that name tokens (OpenAI's `bytes`,
//! `tokens`, `top_logprobs`) need the bytes themselves.

use super::TextTokenizer;

impl TextTokenizer {
    /// The bytes token `id` adds to a text: a byte-fallback token's byte (`<0xF0>`), a
    /// byte-level BPE token's bytes (GPT-2's byte-to-character table, inverted), a
    /// SentencePiece piece's spelling with `▁` as a space (`▁Paris` is " Paris": decoding it
    /// alone drops the space, as a SentencePiece decoder drops a text's first one), else the
    /// UTF-8 of its decoded text. Empty for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if let Some(piece) =
            (self.tok.id_to_token(id)).filter(|p| p.starts_with('\u{2581}') && !self.is_special(id))
        {
            return piece.replace('\u{2581}', " ").into_bytes();
        }
        let decoded = self.tok.decode(&[id], false).unwrap_or_default();
        if !decoded.contains('\u{FFFD}') {
            return decoded.into_bytes();
        }
        let Some(piece) = self.tok.id_to_token(id) else {
            return decoded.into_bytes();
        };
        if let Some(b) = byte_fallback(&piece) {
            return vec![b];
        }
        piece
            .chars()
            .map(byte_level)
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_else(|| decoded.into_bytes())
    }
}

/// A token's name as OpenAI gives it, from its [`TextTokenizer::token_bytes`]: the text when
/// the bytes are UTF-8, else `bytes:` and the bytes escaped (`bytes:\xf0\x9f`), so tokens
/// holding different parts of a character stay apart.
pub fn token_name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            format!("bytes:{hex}")
        }
    }
}

/// `<0xAB>` -> 0xAB (SentencePiece byte-fallback pieces).
fn byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// The byte GPT-2's byte-level alphabet shows as `c`: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100.. in byte order (`bytes_to_unicode` in GPT-2's
/// encoder.py).
fn byte_level(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let c = c as u32;
    if printable(c) {
        return Some(c as u8);
    }
    let n = c.checked_sub(256)?;
    (0..=255u32)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_inverts_gpt2() {
        // GPT-2 shows a space as U+0120, a newline as U+010A, byte 0 as U+0100.
        assert_eq!(byte_level('\u{120}'), Some(b' '));
        assert_eq!(byte_level('\u{10A}'), Some(b'\n'));
        assert_eq!(byte_level('\u{100}'), Some(0));
        assert_eq!(byte_level('a'), Some(b'a'));
        assert_eq!(byte_level('\u{F0}'), Some(0xF0));
        assert_eq!(byte_level('\u{143}'), Some(0xAD)); // the last of the 68
        assert_eq!(byte_level('\u{144}'), None);
        assert_eq!(byte_fallback("<0xF0>"), Some(0xF0));
        assert_eq!(byte_fallback("<0xF>"), None);
        assert_eq!(byte_fallback("<s>"), None);
    }
}
