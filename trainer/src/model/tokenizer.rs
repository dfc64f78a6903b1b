//! `tokenizer.json` through the `tokenizers` crate, plus streaming-safe incremental decoding.
//!
//! A model folder is tokenized the way transformers 5 tokenizes it, which is not always the way
//! `tokenizer.json` says: `AutoTokenizer` picks a tokenizer class from the model type and
//! `tokenizer_config.json`, and some classes rebuild the pipeline from the vocabulary and merges
//! alone, with their own normalizer and pre-tokenizer. For `qwen2` that is always `Qwen2Tokenizer`
//! (NFC, Qwen2's split regex, byte level), whatever `tokenizer.json` and the declared class say; a
//! Llama model whose `tokenizer_config.json` declares `GPT2Tokenizer` (SmolLM2 does) gets GPT-2's
//! plain byte level. Scores are compared with TRL's, which tokenizes through `AutoTokenizer`, so
//! Keel follows it (see [`Pipeline`]).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::config::Family;
use super::error::{ModelError, Result, io_err};

/// Qwen2's pre-tokenizer regex (transformers' `Qwen2Tokenizer`, Qwen2's own `tokenizer.json`).
pub const QWEN2_PRETOKENIZE_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The text pipeline a model folder's tokenizer runs, as transformers 5.24's `AutoTokenizer`
/// chooses it. The vocabulary, merges and added tokens always come from `tokenizer.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// `tokenizer.json` as written (transformers' `TokenizersBackend`).
    AsWritten,
    /// `Qwen2Tokenizer`: NFC, Qwen2's split regex, byte level without its own regex.
    Qwen2 { add_prefix_space: bool },
    /// `GPT2Tokenizer`: byte level with the GPT-2 regex, no normalizer.
    Gpt2 { add_prefix_space: bool },
}

impl Pipeline {
    /// The pipeline transformers gives a model of `family` whose `tokenizer_config.json` is
    /// `tokenizer_config` (`Value::Null` when the folder has none).
    ///
    /// `qwen2` is on transformers' list of model types whose declared tokenizer class is not
    /// trusted (`MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS`): it always gets `Qwen2Tokenizer`. A
    /// Llama model gets the declared class: `GPT2Tokenizer` and `Qwen2Tokenizer` rebuild; `PreTrainedTokenizerFast`,
    /// `TokenizersBackend` and a `LlamaTokenizer` over a byte-level `tokenizer.json` load the file
    /// as written. (A `LlamaTokenizer` over a SentencePiece-style file is rebuilt by transformers
    /// too; Keel reads that file as written.)
    pub fn for_model(family: Family, tokenizer_config: &Value) -> Pipeline {
        let add_prefix_space = tokenizer_config.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(false);
        match family {
            Family::Qwen2 => Pipeline::Qwen2 { add_prefix_space },
            Family::Llama => {
                let class = tokenizer_config.get("tokenizer_class").and_then(Value::as_str).unwrap_or("");
                match class.strip_suffix("Fast").unwrap_or(class) {
                    "GPT2Tokenizer" => Pipeline::Gpt2 { add_prefix_space },
                    "Qwen2Tokenizer" => Pipeline::Qwen2 { add_prefix_space },
                    _ => Pipeline::AsWritten,
                }
            }
        }
    }

    /// `tokenizer.json` (parsed) with this pipeline in place of its own: the normalizer,
    /// pre-tokenizer and decoder the transformers class sets, and the BPE options it builds its
    /// model with. Vocabulary, merges, added tokens and post-processor are kept.
    fn apply(self, mut tj: Value) -> std::result::Result<Value, String> {
        let (normalizer, pre_tokenizer, class) = match self {
            Pipeline::AsWritten => return Ok(tj),
            Pipeline::Qwen2 { add_prefix_space } => (
                json!({"type": "NFC"}),
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN2_PRETOKENIZE_REGEX}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": false},
                ]}),
                "Qwen2Tokenizer",
            ),
            Pipeline::Gpt2 { add_prefix_space } => (
                Value::Null,
                json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": true}),
                "GPT2Tokenizer",
            ),
        };
        let obj = tj.as_object_mut().ok_or("not a JSON object")?;
        let model = obj.get_mut("model").and_then(Value::as_object_mut).ok_or("no `model` object")?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("(untyped)");
        if kind != "BPE" {
            return Err(format!(
                "transformers loads this model's tokenizer as {class}, a byte-level BPE built from the vocabulary and merges, \
                 but tokenizer.json holds a {kind} model"
            ));
        }
        // What the class passes to `BPE(...)`; everything else takes the library's default.
        for (k, v) in [
            ("dropout", Value::Null),
            ("unk_token", Value::Null),
            ("continuing_subword_prefix", json!("")),
            ("end_of_word_suffix", json!("")),
            ("fuse_unk", json!(false)),
            ("byte_fallback", json!(false)),
            ("ignore_merges", json!(false)),
        ] {
            model.insert(k.into(), v);
        }
        obj.insert("normalizer".into(), normalizer);
        obj.insert("pre_tokenizer".into(), pre_tokenizer);
        obj.insert("decoder".into(), json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}));
        Ok(tj)
    }
}

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
    /// The tokenizer of a model folder of `family`: `DIR/tokenizer.json` with the pipeline
    /// transformers gives it ([`Pipeline::for_model`], from `DIR/tokenizer_config.json`).
    pub fn load(dir: &Path, family: Family) -> Result<Tokenizer> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ModelError::Tokenizer { path: cfg_path.clone(), message: format!("not JSON: {e}") })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
            Err(e) => return Err(ModelError::Io { path: cfg_path, source: e }),
        };
        Tokenizer::with_pipeline(&dir.join("tokenizer.json"), Pipeline::for_model(family, &cfg))
    }

    /// `tokenizer.json` at `path` run through `pipeline`.
    pub fn with_pipeline(path: &Path, pipeline: Pipeline) -> Result<Tokenizer> {
        if pipeline == Pipeline::AsWritten {
            return Tokenizer::from_file(path);
        }
        let bad = |message: String| ModelError::Tokenizer { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let tj: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let tj = pipeline.apply(tj).map_err(bad)?;
        let inner: tokenizers::Tokenizer = tj.to_string().parse().map_err(|e: tokenizers::Error| bad(e.to_string()))?;
        Ok(Tokenizer { inner, path: path.to_path_buf() })
    }

    /// `tokenizer.json` exactly as written.
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
