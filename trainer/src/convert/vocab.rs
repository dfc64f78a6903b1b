//! `tokenizer.json` from a GGUF vocabulary, as transformers' GGUF tokenizer converter builds it
//! (`integrations/gguf/gguf_tokenizer_mapping.py`, `GPT2Tokenizer`, `LlamaTokenizer`), so that both
//! encode any text to the same ids.
//!
//! A GGUF stores the vocabulary (`tokenizer.ggml.tokens`), each token's type
//! (`tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte), BPE
//! merges or piece scores, and the special ids. Two kinds are built:
//!
//! - `tokenizer.ggml.model = gpt2`, byte-level BPE (Llama 3, Qwen2, SmolLM, ...): a BPE model over
//!   the vocabulary (tokens outside the byte-level alphabet respelled in it) with the merges as
//!   stored; GPT-2's byte-level pre-tokenizer, or, for the pre-tokenizers llama.cpp names
//!   (`tokenizer.ggml.pre`) and transformers knows, their split regex before a byte-level step
//!   without its own; a byte-level decoder.
//! - `tokenizer.ggml.model = llama`, SentencePiece BPE (Llama 2, Mistral): pieces as stored, bytes
//!   no piece covers as `<0xNN>` tokens, `▁` for spaces with one prepended, merges derived from
//!   the pieces' scores (llama.cpp stores none); bos added unless the file says not to.
//!
//! Both: the control tokens, and the named bos/eos/unk/pad, as special added tokens; user-defined
//! tokens as plain added tokens; a template post-processor adding bos/eos as the file says.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::ConvertError;
use super::gguf::{Gguf, Value as GValue};

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = crate::model::tokenizer::QWEN2_PRETOKENIZE_REGEX;
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex of a `tokenizer.ggml.pre` value, as transformers maps them; `None`: GPT-2's
/// own byte-level regex (transformers' fallback, and what e.g. `smollm`, `gpt2` get).
fn pre_split(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano"
        | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's `bytes_to_unicode`: each byte's printable stand-in in byte-level vocabularies.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).expect("a Latin-1 code point")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("a code point below 512")
        };
    }
    table
}

/// Token types of `tokenizer.ggml.token_type`.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// What the converter makes of a GGUF's tokenizer.
pub struct BuiltTokenizer {
    /// `tokenizer.json`.
    pub json: Value,
    /// The named special tokens (as text) for `tokenizer_config.json`.
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
    pub add_bos: bool,
    pub add_eos: bool,
}

fn strings<'a>(g: &'a Gguf, key: &str) -> Result<Option<Vec<&'a str>>, ConvertError> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let bad = || ConvertError::Invalid(format!("{}: `{key}` must be an array of strings", g.path.display()));
    v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_str().ok_or_else(bad)).collect::<Result<Vec<_>, _>>().map(Some)
}

/// The two kinds of vocabulary a GGUF describes that this converter builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `gpt2`: byte-level BPE.
    ByteLevel,
    /// `llama`: SentencePiece BPE (Llama 2, Mistral), pieces spelled with `▁`, bytes as `<0xNN>`.
    SentencePiece,
}

/// Builds the tokenizer of `g`.
pub fn build(g: &Gguf) -> Result<BuiltTokenizer, ConvertError> {
    let path = g.path.display();
    let kind = match g.get("tokenizer.ggml.model").and_then(GValue::as_str).unwrap_or("") {
        "gpt2" => Kind::ByteLevel,
        "llama" => Kind::SentencePiece,
        "" => return Err(ConvertError::Invalid(format!("{path}: no `tokenizer.ggml.model` in the metadata: the file has no tokenizer"))),
        other => {
            return Err(ConvertError::Unsupported(format!(
                "{path}: tokenizer model `{other}` is not supported (`gpt2`: byte-level BPE, `llama`: SentencePiece BPE)"
            )));
        }
    };
    let tokens = strings(g, "tokenizer.ggml.tokens")?
        .ok_or_else(|| ConvertError::Invalid(format!("{path}: no `tokenizer.ggml.tokens` in the metadata")))?;
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
        None => vec![],
        Some(v) => {
            let bad = || ConvertError::Invalid(format!("{path}: `tokenizer.ggml.token_type` must be an array of integers"));
            v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_i64().ok_or_else(bad)).collect::<Result<_, _>>()?
        }
    };
    let special = |key: &str| -> Result<Option<String>, ConvertError> {
        match g.get(&format!("tokenizer.ggml.{key}")) {
            None => Ok(None),
            Some(v) => {
                let id = v.as_u64().ok_or_else(|| ConvertError::Invalid(format!("{path}: `tokenizer.ggml.{key}` must be a token id")))?;
                let t = tokens.get(id as usize).ok_or_else(|| {
                    ConvertError::Invalid(format!("{path}: `tokenizer.ggml.{key}` is {id} but the vocabulary has {} tokens", tokens.len()))
                })?;
                Ok(Some(t.to_string()))
            }
        }
    };
    let (bos, eos, unk, pad) = (special("bos_token_id")?, special("eos_token_id")?, special("unknown_token_id")?, special("padding_token_id")?);
    // llama.cpp adds bos to a SentencePiece vocabulary that does not say otherwise (transformers
    // follows it); byte-level ones add nothing unless told.
    let flag = |key: &str, default: bool| g.get(&format!("tokenizer.ggml.{key}")).and_then(GValue::as_bool).unwrap_or(default);
    let add_bos = flag("add_bos_token", kind == Kind::SentencePiece) && bos.is_some();
    let add_eos = flag("add_eos_token", false) && eos.is_some();

    let alphabet = byte_alphabet();
    let spelled: HashSet<char> = alphabet.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| spelled.contains(&c));
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        let key = match kind {
            Kind::ByteLevel if !in_alphabet(t) => t.bytes().map(|b| alphabet[b as usize]).collect(),
            _ => t.to_string(),
        };
        // A later duplicate replaces an earlier one, as in the Python dict comprehension.
        vocab.insert(key, id.into());
    }
    let merges: Vec<Value> = match strings(g, "tokenizer.ggml.merges")? {
        Some(merges) => merges
            .iter()
            .map(|m| {
                let parts: Vec<&str> = m.split(' ').collect();
                match parts.as_slice() {
                    [a, b] => Ok(json!([a, b])),
                    _ => Err(ConvertError::Invalid(format!("{path}: merge {m:?} is not two tokens separated by one space"))),
                }
            })
            .collect::<Result<_, _>>()?,
        None if kind == Kind::SentencePiece => {
            let scores = floats(g, "tokenizer.ggml.scores")?.ok_or_else(|| {
                ConvertError::Invalid(format!("{path}: a SentencePiece vocabulary needs `tokenizer.ggml.merges` or `tokenizer.ggml.scores`"))
            })?;
            if scores.len() != tokens.len() {
                return Err(ConvertError::Invalid(format!("{path}: {} scores for {} tokens", scores.len(), tokens.len())));
            }
            merges_from_scores(&tokens, &scores).into_iter().map(|(a, b)| json!([a, b])).collect()
        }
        None => return Err(ConvertError::Unsupported(format!("{path}: a byte-level BPE vocabulary without `tokenizer.ggml.merges` is not supported"))),
    };

    // Added tokens, in the order transformers adds them: the named specials first (all of them
    // special), then the control tokens (special), then the user-defined ones (not special) that
    // are spelled as vocabulary entries. Serialised sorted by id, as the tokenizers library does.
    let mut added: Vec<(u32, String, bool)> = Vec::new();
    let mut seen = HashSet::new();
    let id_of = |t: &str| tokens.iter().position(|x| *x == t).map(|i| i as u32);
    for t in [&bos, &eos, &unk, &pad].into_iter().flatten() {
        if seen.insert(t.clone()) {
            let id = vocab.get(t).and_then(Value::as_u64).map(|i| i as u32).or_else(|| id_of(t)).expect("a token of the vocabulary");
            added.push((id, t.clone(), true));
        }
    }
    for (id, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        // A byte-level control token spelled outside the byte alphabet is a llama.cpp mislabel
        // (transformers skips it: adding it would grow the vocabulary past the model's).
        if ty == CONTROL && (kind == Kind::SentencePiece || in_alphabet(t)) && seen.insert(t.to_string()) {
            added.push((id as u32, t.to_string(), true));
        }
    }
    for (t, &ty) in tokens.iter().zip(&types) {
        if ty == USER_DEFINED && vocab.contains_key(*t) && seen.insert(t.to_string()) {
            let id = vocab[*t].as_u64().expect("ids are integers") as u32;
            added.push((id, t.to_string(), false));
        }
    }
    added.sort_by_key(|a| a.0);
    let added_tokens: Vec<Value> = added
        .iter()
        .map(|(id, t, special)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();

    let post_processor = post_processor(bos.as_deref().filter(|_| add_bos), eos.as_deref().filter(|_| add_eos), &vocab);
    let json = match kind {
        Kind::ByteLevel => {
            let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
            let pre = g.get("tokenizer.ggml.pre").and_then(GValue::as_str).unwrap_or("");
            let pre_tokenizer = match pre_split(pre) {
                Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                    byte_level(false),
                ]}),
                None => byte_level(true),
            };
            json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": added_tokens,
                "normalizer": null,
                "pre_tokenizer": pre_tokenizer,
                "post_processor": post_processor,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {
                    "type": "BPE",
                    "dropout": null,
                    "unk_token": null,
                    "continuing_subword_prefix": "",
                    "end_of_word_suffix": "",
                    "fuse_unk": false,
                    "byte_fallback": false,
                    "ignore_merges": false,
                    "vocab": vocab,
                    "merges": merges,
                },
            })
        }
        // transformers' `LlamaTokenizer`: `▁` for spaces (one prepended to the text), bytes that no
        // piece covers as `<0xNN>` tokens, and a decoder that undoes both and strips the prepended
        // space.
        Kind::SentencePiece => json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false},
            "post_processor": post_processor,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ]},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": true,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges,
            },
        }),
    };
    Ok(BuiltTokenizer { json, bos, eos, unk, pad, add_bos, add_eos })
}

fn floats(g: &Gguf, key: &str) -> Result<Option<Vec<f64>>, ConvertError> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let bad = || ConvertError::Invalid(format!("{}: `{key}` must be an array of numbers", g.path.display()));
    v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_f64().ok_or_else(bad)).collect::<Result<Vec<_>, _>>().map(Some)
}

/// The merges a SentencePiece vocabulary implies (llama.cpp stores none for it), as transformers'
/// `generate_merges` derives them: every split of a token into two tokens of the vocabulary, the
/// splits of one token ordered by the ids of their halves, then all of them by the merged token's
/// score, best first, and by the halves' lengths in characters (a stable sort, as Python's).
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        index.insert(t, i);
    }
    // `dict(zip(tokens, scores))`: a duplicate keeps its first position and its last score.
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (t, &s) in tokens.iter().zip(scores) {
        if score.insert(t, s).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for t in order {
        let mut local: Vec<(&str, &str, f64)> = t
            .char_indices()
            .skip(1)
            .map(|(at, _)| (&t[..at], &t[at..]))
            .filter(|(l, r)| index.contains_key(l) && index.contains_key(r))
            .map(|(l, r)| (l, r, score[t]))
            .collect();
        local.sort_by_key(|(l, r, _)| (index[l], index[r]));
        merges.extend(local);
    }
    let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
    merges.sort_by(|a, b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal));
    merges.into_iter().map(|(l, r, _)| (l.to_string(), r.to_string())).collect()
}

/// transformers' `update_post_processor`: `[bos] $A [eos]`, and for pairs `... [bos] $B [eos]`.
fn post_processor(bos: Option<&str>, eos: Option<&str>, vocab: &serde_json::Map<String, Value>) -> Value {
    let tok = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let side = |id: &str, type_id: u32| -> Vec<Value> {
        let mut v = Vec::new();
        v.extend(bos.map(|b| tok(b, type_id)));
        v.push(seq(id, type_id));
        v.extend(eos.map(|e| tok(e, type_id)));
        v
    };
    let single = side("A", 0);
    let mut pair = single.clone();
    pair.extend(side("B", 1));
    let mut specials = serde_json::Map::new();
    for t in [bos, eos].into_iter().flatten() {
        let id = vocab.get(t).cloned().unwrap_or(Value::Null);
        specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}
