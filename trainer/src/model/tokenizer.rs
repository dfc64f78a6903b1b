//! `tokenizer.json` through the `tokenizers` crate, plus streaming-safe incremental decoding.

use std::path::{Path, PathBuf};

use super::error::{ModelError, Result};

/// A model's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("path", &self.path).field("vocab", &self.vocab_size()).finish()
    }
}

impl Tokenizer {
    /// Reads `DIR/tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Tokenizer> {
        Tokenizer::from_file(&dir.join("tokenizer.json"))
    }

    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(Tokenizer { inner, path: path.to_path_buf() })
    }

    pub fn from_inner(inner: tokenizers::Tokenizer) -> Tokenizer {
        Tokenizer { inner, path: PathBuf::from("<memory>") }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Every id the tokenizer can produce must be a row of the model's embedding.
    pub fn check_vocab(&self, model_vocab: i64) -> Result<()> {
        let max_id = self.inner.get_vocab(true).values().copied().max().unwrap_or(0) as i64;
        if max_id >= model_vocab {
            let name = self.inner.id_to_token(max_id as u32).unwrap_or_default();
            return Err(ModelError::VocabMismatch(format!(
                "{} has token id {max_id} (`{name}`) but the model's vocab_size is {model_vocab}",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Token ids of `text`, no special tokens added (special-token text such as `<|im_start|>` is
    /// still recognised, as in transformers).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// Text of `ids`; special tokens kept unless `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// The id of a token written out (e.g. `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Turns a growing list of ids into text pieces without splitting a UTF-8 character or a
/// multi-token grapheme: text is only released once decoding more tokens cannot change it.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special: bool,
}

impl IncrementalDecoder {
    pub fn new(skip_special: bool) -> IncrementalDecoder {
        IncrementalDecoder { skip_special, ..Default::default() }
    }

    /// Adds one token; returns the text it completes (maybe empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special)?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let piece = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Whatever is still held back (at the end of generation).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special)?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(if full.len() > prefix.len() && full.is_char_boundary(prefix.len()) {
            full[prefix.len()..].to_string()
        } else {
            String::new()
        })
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
