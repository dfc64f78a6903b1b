//! `keel-train convert`: a GGUF file (what Ollama and llama.cpp run) to a Hugging Face model folder
//! that Keel, transformers, PEFT and vLLM load.
//!
//! The result is what transformers' own GGUF loader makes of the file (`from_pretrained(...,
//! gguf_file=...)`), tensor for tensor and token for token: the tests compare the two on the real
//! default model and on small synthetic files. In order:
//!
//! 1. [`gguf`] parses the container (v2/v3) and maps the tensor data.
//! 2. The metadata becomes a `config.json` (llama and qwen2 families, Keel's two); every tensor the
//!    config implies must be there with the shape it implies, before anything is written.
//! 3. Each tensor is dequantized to f32 ([`dequant`], exactly as ggml computes it), renamed to the
//!    transformers name, and for llama's `attn_q`/`attn_k` un-permuted: llama.cpp's converter
//!    interleaves the two rotary halves of each head's rows, transformers' loader undoes it. Then
//!    it is written to `model.safetensors` (f32, or bf16), one tensor at a time, so memory holds one
//!    tensor, never the model.
//! 4. The vocabulary (byte-level BPE or SentencePiece) becomes `tokenizer.json` ([`vocab`]);
//!    bos/eos/pad go to `tokenizer_config.json` and `generation_config.json`, the chat template to
//!    `chat_template.jinja`.
//!
//! Everything is written into a temporary folder (0700, files 0600) beside the destination and
//! renamed into place at the end, so a failure leaves nothing behind.

pub mod dequant;
pub mod gguf;
pub mod vocab;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::model::config::{Config, Family, RopeScaling};
use gguf::{Gguf, TensorInfo, Value as GValue, ggml_type_name};

/// What can go wrong, one variant per kind of bad input.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path} is not a GGUF file (it does not start with the bytes `GGUF`)")]
    NotGguf { path: PathBuf },
    #[error("{path} is truncated: {message}")]
    Truncated { path: PathBuf, message: String },
    #[error("{path}: unknown architecture `{arch}` (keel-train convert supports llama and qwen2)")]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("{path}: tensor `{tensor}` has unsupported tensor type {ty} (supported: {supported})", supported = dequant::SUPPORTED)]
    UnsupportedTensorType { path: PathBuf, tensor: String, ty: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The precision of the written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutDtype {
    #[default]
    F32,
    BF16,
}

impl OutDtype {
    pub fn parse(s: &str) -> Option<OutDtype> {
        match s {
            "f32" | "float32" => Some(OutDtype::F32),
            "bf16" | "bfloat16" => Some(OutDtype::BF16),
            _ => None,
        }
    }

    fn safetensors(self) -> &'static str {
        match self {
            OutDtype::F32 => "F32",
            OutDtype::BF16 => "BF16",
        }
    }

    fn torch(self) -> &'static str {
        match self {
            OutDtype::F32 => "float32",
            OutDtype::BF16 => "bfloat16",
        }
    }

    fn width(self) -> usize {
        match self {
            OutDtype::F32 => 4,
            OutDtype::BF16 => 2,
        }
    }
}

/// What was converted.
#[derive(Debug, Clone)]
pub struct Report {
    pub architecture: String,
    pub config: Config,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors of the file per ggml type (`Q4_1` → 210, ...).
    pub types: BTreeMap<String, usize>,
    /// Tensors of the file that have no place in the model (transformers drops them too).
    pub skipped: Vec<String>,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
}

/// Converts the GGUF file `gguf` into the model folder `out` (which must not exist, or be empty).
pub fn convert(gguf: &Path, out: &Path, dtype: OutDtype) -> Result<Report, ConvertError> {
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(ConvertError::Invalid(format!("{} already exists and is not an empty folder; remove it or choose another", out.display())));
    }
    let g = Gguf::open(gguf)?;
    let arch = g.architecture()?.to_string();
    let family = match arch.as_str() {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        _ => return Err(ConvertError::UnknownArchitecture { path: g.path.clone(), arch }),
    };
    let mut config = config_of(&g, &arch, family, dtype)?;
    let mut plan = plan(&g, &config, &arch)?;
    if let Some(scaling) = llama3_scaling(&g, &config)? {
        config.rope_scaling = scaling;
        plan.skipped.retain(|n| n != "rope_freqs.weight");
    }
    let tok = vocab::build(&g)?;
    let template = match g.get("tokenizer.chat_template") {
        None => None,
        Some(t) => Some(t.as_str().ok_or_else(|| ConvertError::Invalid(format!("{}: `tokenizer.chat_template` must be a string", g.path.display())))?),
    };
    let tok_vocab = g.get("tokenizer.ggml.tokens").and_then(GValue::as_array).map_or(0, <[GValue]>::len) as i64;
    if tok_vocab > config.vocab_size {
        return Err(ConvertError::Invalid(format!(
            "{}: the vocabulary has {tok_vocab} tokens but the embedding only {} rows",
            g.path.display(),
            config.vocab_size
        )));
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    keel_trajectory::private::create_dir_all(&parent).map_err(|source| ConvertError::Io { path: parent.clone(), source })?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let tmp = TempDir::new(&parent, &name)?;

    let bytes = write_safetensors(&g, &plan, &tmp.path.join("model.safetensors"), dtype)?;
    let mut cfg_json = config.to_json();
    match config.rope_scaling {
        RopeScaling::Default => {}
        RopeScaling::Linear { factor } => cfg_json["rope_scaling"] = json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            cfg_json["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings as i64,
            });
        }
    }
    write_json(&tmp.path.join("config.json"), &cfg_json)?;
    let mut gen_cfg = serde_json::Map::new();
    for (k, v) in [("bos_token_id", config.bos_token_id), ("eos_token_id", config.eos_token_ids.first().copied()), ("pad_token_id", config.pad_token_id)] {
        if let Some(v) = v {
            gen_cfg.insert(k.into(), v.into());
        }
    }
    write_json(&tmp.path.join("generation_config.json"), &Value::Object(gen_cfg))?;
    write_file(&tmp.path.join("tokenizer.json"), serde_json::to_string(&tok.json).expect("JSON").as_bytes())?;
    write_json(
        &tmp.path.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": tok.bos,
            "eos_token": tok.eos,
            "unk_token": tok.unk,
            "pad_token": tok.pad,
            "add_bos_token": tok.add_bos,
            "add_eos_token": tok.add_eos,
            "clean_up_tokenization_spaces": false,
            "model_max_length": config.max_position_embeddings,
        }),
    )?;
    if let Some(t) = template {
        write_file(&tmp.path.join("chat_template.jinja"), t.as_bytes())?;
    }
    tmp.commit(out)?;

    let mut types = BTreeMap::new();
    for t in &g.tensors {
        *types.entry(ggml_type_name(t.ggml_type)).or_insert(0) += 1;
    }
    Ok(Report { architecture: arch, config, tensors: plan.tensors.len(), types, skipped: plan.skipped, bytes })
}

/// The config the metadata states, with transformers' defaults for what it leaves out.
fn config_of(g: &Gguf, arch: &str, family: Family, dtype: OutDtype) -> Result<Config, ConvertError> {
    let path = g.path.display();
    let get = |k: &str| g.get(&format!("{arch}.{k}"));
    let int = |k: &str| -> Result<Option<i64>, ConvertError> {
        match get(k) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(ConvertError::Invalid(format!("{path}: `{arch}.{k}` must be a positive integer, found {v:?}"))),
            },
        }
    };
    let need = |k: &str| int(k)?.ok_or_else(|| ConvertError::Invalid(format!("{path}: no `{arch}.{k}` in the metadata")));
    let float = |k: &str| -> Result<Option<f64>, ConvertError> {
        match get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| ConvertError::Invalid(format!("{path}: `{arch}.{k}` must be a number, found {v:?}"))),
        }
    };
    let token = |k: &str| -> Result<Option<u32>, ConvertError> {
        match g.get(&format!("tokenizer.ggml.{k}")) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ConvertError::Invalid(format!("{path}: `tokenizer.ggml.{k}` must be a token id, found {v:?}"))),
        }
    };
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = int("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = match family {
        // transformers reads llama's head_dim from the rotary width; Qwen2 has none of its own.
        Family::Llama => int("rope.dimension_count")?,
        Family::Qwen2 => None,
    };
    let head_dim = match head_dim {
        Some(d) => d,
        None if hidden % heads == 0 => hidden / heads,
        None => return Err(ConvertError::Invalid(format!("{path}: embedding_length {hidden} is not a multiple of head_count {heads}"))),
    };
    if heads % kv_heads != 0 || head_dim % 2 != 0 {
        return Err(ConvertError::Invalid(format!("{path}: {heads} heads, {kv_heads} key/value heads, head size {head_dim}: not a valid attention")));
    }
    let tokens = g.get("tokenizer.ggml.tokens").and_then(GValue::as_array).map(<[GValue]>::len);
    let vocab_size = match (int("vocab_size")?, tokens) {
        (Some(v), _) => v,
        (None, Some(n)) if n > 0 => n as i64,
        _ => return Err(ConvertError::Invalid(format!("{path}: neither `{arch}.vocab_size` nor a vocabulary in the metadata"))),
    };
    let rope_scaling = match g.get(&format!("{arch}.rope.scaling.type")).map(|v| v.as_str().unwrap_or("?")) {
        None | Some("none") => RopeScaling::Default,
        Some("linear") => RopeScaling::Linear {
            factor: float("rope.scaling.factor")?
                .ok_or_else(|| ConvertError::Invalid(format!("{path}: linear rope scaling without `{arch}.rope.scaling.factor`")))?,
        },
        Some(other) => return Err(ConvertError::Unsupported(format!("{path}: rope scaling `{other}` is not supported (none, linear)"))),
    };
    let has = |n: &str| g.tensors.iter().any(|t| t.name == n);
    let attention_bias = has("blk.0.attn_q.bias");
    let default_ctx = match family {
        Family::Llama => 2048,
        Family::Qwen2 => 32768,
    };
    Ok(Config {
        family,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        rope_theta: float("rope.freq_base")?.unwrap_or(10000.0),
        rope_scaling,
        max_position_embeddings: int("context_length")?.unwrap_or(default_ctx),
        // llama.cpp writes `output.weight` only when it is not the embedding matrix.
        tie_word_embeddings: !has("output.weight"),
        qkv_bias: family == Family::Qwen2 || attention_bias,
        o_bias: family == Family::Llama && has("blk.0.attn_output.bias"),
        mlp_bias: false,
        dtype: Some(dtype.torch().into()),
        bos_token_id: token("bos_token_id")?,
        eos_token_ids: token("eos_token_id")?.into_iter().collect(),
        pad_token_id: token("padding_token_id")?,
    })
}

/// One tensor to write.
struct Planned<'a> {
    info: &'a TensorInfo,
    hf_name: String,
    /// llama.cpp's rotary permutation to undo: the head count of the rows.
    unpermute_heads: Option<usize>,
}

struct Plan<'a> {
    tensors: Vec<Planned<'a>>,
    skipped: Vec<String>,
}

/// The transformers name of a GGUF tensor name (llama.cpp's `tensor_mapping.py`, both families).
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let module = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{suffix}"))
}

/// Maps every tensor, and checks that the model's tensors are all there with the shapes the config
/// implies and of types this converter reads, before anything is written.
fn plan<'a>(g: &'a Gguf, cfg: &Config, arch: &str) -> Result<Plan<'a>, ConvertError> {
    let path = g.path.display();
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for t in &g.tensors {
        let Some(hf) = hf_name(&t.name) else {
            skipped.push(t.name.clone());
            continue;
        };
        if !dequant::supported(t.ggml_type) {
            return Err(ConvertError::UnsupportedTensorType { path: g.path.clone(), tensor: t.name.clone(), ty: ggml_type_name(t.ggml_type) });
        }
        // transformers' LlamaTensorProcessor: only the llama architecture permutes q and k.
        let unpermute_heads = match (arch, t.name.contains(".attn_q."), t.name.contains(".attn_k.")) {
            ("llama", true, _) => Some(cfg.num_attention_heads as usize),
            ("llama", _, true) => Some(cfg.num_key_value_heads as usize),
            _ => None,
        };
        tensors.push(Planned { info: t, hf_name: hf, unpermute_heads });
    }
    let (h, i, v, hd) = (cfg.hidden_size as u64, cfg.intermediate_size as u64, cfg.vocab_size as u64, cfg.head_dim as u64);
    let (q, kv) = (cfg.num_attention_heads as u64 * hd, cfg.num_key_value_heads as u64 * hd);
    let mut want: Vec<(String, Vec<u64>)> = vec![("model.embed_tokens.weight".into(), vec![v, h]), ("model.norm.weight".into(), vec![h])];
    if !cfg.tie_word_embeddings {
        want.push(("lm_head.weight".into(), vec![v, h]));
    }
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        want.push((format!("{p}.input_layernorm.weight"), vec![h]));
        want.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        want.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        want.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        want.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        want.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        if cfg.qkv_bias {
            want.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            want.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            want.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        if cfg.o_bias {
            want.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        want.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        want.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        want.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    for (name, shape) in &want {
        match tensors.iter().find(|t| &t.hf_name == name) {
            None => {
                return Err(ConvertError::Invalid(format!("{path}: the model needs tensor `{name}` but the file has no GGUF tensor for it")));
            }
            Some(t) if &t.info.shape != shape => {
                return Err(ConvertError::Invalid(format!(
                    "{path}: tensor `{}` has shape {:?} but the metadata implies {shape:?}",
                    t.info.name, t.info.shape
                )));
            }
            Some(_) => {}
        }
    }
    // Anything else mapped (say, a bias the config does not use) would be dropped by the loader:
    // keep the folder to what the model reads.
    tensors.retain(|t| {
        let keep = want.iter().any(|(n, _)| *n == t.hf_name);
        if !keep {
            skipped.push(t.info.name.clone());
        }
        keep
    });
    tensors.sort_by(|a, b| a.hf_name.cmp(&b.hf_name));
    Ok(Plan { tensors, skipped })
}

/// Llama 3.1-style rope scaling, which llama.cpp stores as the per-frequency divisors of tensor
/// `rope_freqs.weight` rather than as metadata. Meta's parameters (low/high frequency factors 1
/// and 4, original context 8192) are the only ones released; the factor is the largest divisor.
/// The divisors are recomputed from those, as llama.cpp's converter computes them, and must match
/// the file's, else the file's scaling is not one Keel can express and conversion stops.
fn llama3_scaling(g: &Gguf, cfg: &Config) -> Result<Option<RopeScaling>, ConvertError> {
    let Some(t) = g.tensors.iter().find(|t| t.name == "rope_freqs.weight") else { return Ok(None) };
    let path = g.path.display();
    let n = (cfg.head_dim / 2) as usize;
    if t.shape != [n as u64] {
        return Err(ConvertError::Invalid(format!("{path}: rope_freqs.weight has shape {:?}, expected [{n}]", t.shape)));
    }
    let mut stored = Vec::new();
    dequant::dequantize(t.ggml_type, g.data(t), n, &mut stored)
        .map_err(|_| ConvertError::UnsupportedTensorType { path: g.path.clone(), tensor: t.name.clone(), ty: ggml_type_name(t.ggml_type) })?;
    let factor = stored.iter().copied().fold(f32::MIN, f32::max) as f64;
    let (low, high, original) = (1.0f64, 4.0f64, 8192.0f64);
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    let matches = stored.iter().enumerate().all(|(i, &s)| {
        let freq = 1.0 / cfg.rope_theta.powf((2 * i) as f64 / cfg.head_dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let want = if wavelen < high_wavelen {
            1.0
        } else if wavelen > low_wavelen {
            factor
        } else {
            let smooth = (original / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        };
        ((want as f32) - s).abs() <= 1e-5 * s.abs().max(1.0)
    });
    if !matches {
        return Err(ConvertError::Unsupported(format!(
            "{path}: rope_freqs.weight holds rope scaling factors that are not Llama 3's (factor {factor}, low/high frequency factors 1/4, original context 8192)"
        )));
    }
    Ok(Some(RopeScaling::Llama3 { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: original }))
}

/// Writes the planned tensors as one safetensors file, streaming: header first (sizes are known),
/// then each tensor dequantized, un-permuted and converted in turn.
fn write_safetensors(g: &Gguf, plan: &Plan, path: &Path, dtype: OutDtype) -> Result<u64, ConvertError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for t in &plan.tensors {
        let size = t.info.numel() * dtype.width() as u64;
        header.insert(
            t.hf_name.clone(),
            json!({"dtype": dtype.safetensors(), "shape": t.info.shape, "data_offsets": [offset, offset + size]}),
        );
        offset += size;
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("JSON");
    // The data starts 8-aligned, as the safetensors library writes it.
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let io = |source| ConvertError::Io { path: path.to_path_buf(), source };
    let file = create_file(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(head.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&head).map_err(io)?;
    let mut values = Vec::new();
    let mut halves: Vec<u16> = Vec::new();
    for t in &plan.tensors {
        values.clear();
        let n = t.info.numel() as usize;
        dequant::dequantize(t.info.ggml_type, g.data(t.info), n, &mut values).map_err(|_| ConvertError::UnsupportedTensorType {
            path: g.path.clone(),
            tensor: t.info.name.clone(),
            ty: ggml_type_name(t.info.ggml_type),
        })?;
        if let Some(heads) = t.unpermute_heads {
            values = unpermute(&values, t.info.shape[0] as usize, heads).ok_or_else(|| {
                ConvertError::Invalid(format!("{}: tensor `{}` has {} rows, not a multiple of 2 × {heads} heads", g.path.display(), t.info.name, t.info.shape[0]))
            })?;
        }
        match dtype {
            OutDtype::F32 => w.write_all(le_bytes(&values)).map_err(io)?,
            OutDtype::BF16 => {
                halves.clear();
                halves.extend(values.iter().map(|&v| dequant::f32_to_bf16(v)));
                w.write_all(le_bytes(&halves)).map_err(io)?;
            }
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(8 + head.len() as u64 + offset)
}

/// The bytes of a slice of numbers, which safetensors stores little-endian: on a little-endian
/// machine, the slice's own memory. (A per-value `to_le_bytes` costs ten times the dequantization
/// in a debug build.)
#[cfg(target_endian = "little")]
fn le_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: T is f32 or u16 (plain numbers, no padding); the byte view covers exactly the
    // slice's memory and borrows it.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// Undoes llama.cpp's `permute` of q/k rows: within each head, GGUF row `2i + j` (i < dim, j < 2)
/// is row `j * dim + i` of the original, where dim is half the head's rows. transformers'
/// `_reverse_permute_weights`: `reshape(heads, dim, 2, cols).swapaxes(1, 2)`.
pub fn unpermute(values: &[f32], rows: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) || !values.len().is_multiple_of(rows) {
        return None;
    }
    let cols = values.len() / rows;
    let dim = rows / heads / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for i in 0..dim {
            for j in 0..2 {
                let src = (h * 2 * dim + 2 * i + j) * cols;
                let dst = (h * 2 * dim + j * dim + i) * cols;
                out[dst..dst + cols].copy_from_slice(&values[src..src + cols]);
            }
        }
    }
    Some(out)
}

/// The output folder while it is being written: removed unless committed.
struct TempDir {
    path: PathBuf,
    committed: bool,
}

impl TempDir {
    fn new(parent: &Path, name: &str) -> Result<TempDir, ConvertError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = parent.join(format!(".{name}.convert-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|source| ConvertError::Io { path: path.clone(), source })?;
        Ok(TempDir { path, committed: false })
    }

    fn commit(mut self, to: &Path) -> Result<(), ConvertError> {
        // An empty destination folder is replaced (rename(2) does that); a non-empty one was refused.
        std::fs::rename(&self.path, to).map_err(|source| ConvertError::Io { path: to.to_path_buf(), source })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn create_file(path: &Path) -> Result<std::fs::File, ConvertError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ConvertError> {
    let mut f = create_file(path)?;
    f.write_all(bytes).map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })
}

fn write_json(path: &Path, v: &Value) -> Result<(), ConvertError> {
    write_file(path, (serde_json::to_string_pretty(v).expect("JSON") + "\n").as_bytes())
}
