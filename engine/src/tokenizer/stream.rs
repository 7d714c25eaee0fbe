//! Streaming detokenization: text as ids arrive, whole characters only, and what is still
//! held at the end.

use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Incremental detokenizer: feeds ids one at a time and returns text once it is complete UTF-8
/// (a character split over several byte tokens comes out when its last byte arrives).
/// Special tokens are skipped unless it was made to show them. Bytes still held when the
/// sequence ends come out of [`StreamDecoder::finish`] as U+FFFD, as a whole decode gives them.
pub struct StreamDecoder<'a> {
    inner: tokenizers::DecodeStream<
        'a,
        tokenizers::ModelWrapper,
        tokenizers::NormalizerWrapper,
        PreTokenizerWrapper,
        tokenizers::PostProcessorWrapper,
        tokenizers::DecoderWrapper,
    >,
    tok: &'a Tokenizer,
    skip_special: bool,
    /// Every id pushed, for the final decode.
    ids: Vec<u32>,
    /// The text returned so far.
    emitted: String,
    /// Ids pushed since text last came out.
    held: usize,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder of `tok`'s ids; `skip_special` drops special tokens (`<|im_end|>`, ...).
    pub(super) fn new(tok: &'a Tokenizer, skip_special: bool) -> Self {
        StreamDecoder {
            inner: tok.decode_stream(skip_special),
            tok,
            skip_special,
            ids: Vec::new(),
            emitted: String::new(),
            held: 0,
        }
    }

    /// Adds one generated id; returns the newly completed text, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let piece = match self.inner.step(id) {
            Ok(piece) => {
                self.held = if piece.is_some() { 0 } else { self.held + 1 };
                piece
            }
            Err(_) => self.restart(id)?,
        };
        if let Some(p) = &piece {
            self.emitted.push_str(p);
        }
        Ok(piece)
    }

    /// After the stream failed at `id`: a fresh one takes the ids not yet out. tokenizers'
    /// `DecodeStream` fails ("Invalid prefix") where the text already out changes, as with a
    /// byte-fallback vocabulary (Llama 2's, Mistral's) when a lone invalid byte follows a
    /// byte token that was out (`<0x0A>` then `<0xE6>`: both become U+FFFD in a whole
    /// decode); vLLM resets the stream there too. What was out stays as it was.
    fn restart(&mut self, id: u32) -> Result<Option<String>> {
        self.inner = self.tok.decode_stream(self.skip_special);
        let pending = &self.ids[self.ids.len() - 1 - self.held..];
        let (mut out, mut held) = (None::<String>, 0);
        for &i in pending {
            match self.inner.step(i) {
                Ok(Some(p)) => {
                    out.get_or_insert_with(String::new).push_str(&p);
                    held = 0;
                }
                Ok(None) => held += 1,
                Err(e) => return Err(Error::invalid(format!("detokenizing id {id}: {e}"))),
            }
        }
        self.held = held;
        Ok(out)
    }

    /// The text of the ids still held at the end of the sequence (an incomplete character:
    /// a byte token of a cut emoji, a lone byte), with U+FFFD for what is not UTF-8, as
    /// decoding the whole sequence gives it; None when nothing is held. Without it a trailing
    /// run of such tokens vanished from the text while counting as completion tokens. The
    /// sequence ends here: push nothing after it.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.held == 0 {
            return Ok(None);
        }
        let decode = |ids: &[u32]| {
            self.tok
                .decode(ids, self.skip_special)
                .map_err(|e| Error::invalid(format!("detokenizing failed: {e}")))
        };
        let full = decode(&self.ids)?;
        // The whole decode extends what came out; else (a decoder that reads a window
        // differently) the held ids alone.
        let tail = match full.strip_prefix(self.emitted.as_str()) {
            Some(t) => t.to_string(),
            None => decode(&self.ids[self.ids.len() - self.held..])?,
        };
        self.held = 0;
        self.emitted.push_str(&tail);
        Ok((!tail.is_empty()).then_some(tail))
    }
}
