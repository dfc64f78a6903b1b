//! A Hugging Face `config.json` for the two families Keel runs: `qwen2` and `llama`.
//!
//! Both the transformers 4 layout (`rope_theta`, `rope_scaling` at the top level, `torch_dtype`) and
//! the transformers 5 layout (`rope_parameters`, `dtype`) are read. Anything that a forward pass
//! depends on is validated here, so that a bad file fails with a message naming the field, never
//! with a shape error deep inside the model.

use std::path::Path;

use serde_json::Value;

use super::error::{ModelError, Result, io_err};

/// The model family, which decides the bias layout of the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Qwen2 / Qwen2.5 (-Coder): bias on q, k, v; none on o and the MLP.
    Qwen2,
    /// Llama 2/3: biases only when `attention_bias` / `mlp_bias` say so.
    Llama,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Qwen2 => "qwen2",
            Family::Llama => "llama",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "qwen2" => Some(Family::Qwen2),
            "llama" => Some(Family::Llama),
            _ => None,
        }
    }
}

/// How positions are turned into rotary frequencies.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// What the model needs from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub family: Family,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Bias on gate/up/down.
    pub mlp_bias: bool,
    /// `torch_dtype` / `dtype` as written (`float32`, `bfloat16`, `float16`), if any.
    pub dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    /// Every end-of-sequence id (the field may be an int or a list).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

impl Config {
    /// Reads `DIR/config.json`.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Config::parse(&text).map_err(|message| ModelError::Config { path, message })
    }

    /// Parses the text of a `config.json`; the error is a message naming the field at fault.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let model_type = obj.get("model_type").and_then(Value::as_str).ok_or("missing string field `model_type`")?;
        let family = Family::parse(model_type)
            .ok_or_else(|| format!("model_type `{model_type}` is not supported (qwen2 or llama)"))?;
        let int = |k: &str| -> std::result::Result<i64, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Err(format!("missing integer field `{k}`")),
                Some(x) => match x.as_i64() {
                    Some(n) if n > 0 => Ok(n),
                    _ => Err(format!("field `{k}` must be a positive integer, found {x}")),
                },
            }
        };
        let opt_int = |k: &str| -> std::result::Result<Option<i64>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(_) => int(k).map(Some),
            }
        };
        let float = |o: &serde_json::Map<String, Value>, k: &str| -> std::result::Result<Option<f64>, String> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| format!("field `{k}` must be a number, found {x}")),
            }
        };
        let boolean = |k: &str, default: bool| -> std::result::Result<bool, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_bool().ok_or_else(|| format!("field `{k}` must be true or false, found {x}")),
            }
        };
        let token_id = |x: &Value, k: &str| -> std::result::Result<u32, String> {
            x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("field `{k}` must be a token id, found {x}"))
        };
        let hidden_size = int("hidden_size")?;
        let num_attention_heads = int("num_attention_heads")?;
        let num_key_value_heads = opt_int("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(format!(
                "num_attention_heads ({num_attention_heads}) is not a multiple of num_key_value_heads ({num_key_value_heads})"
            ));
        }
        let head_dim = match opt_int("head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(format!(
                        "hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_attention_heads})"
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(format!("head_dim ({head_dim}) must be even for rotary embeddings"));
        }
        // transformers 5 moves rope_theta and rope_scaling into rope_parameters.
        let empty = serde_json::Map::new();
        let rope_params = match obj.get("rope_parameters") {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => &empty,
            Some(x) => return Err(format!("field `rope_parameters` must be an object, found {x}")),
        };
        let rope_theta = float(rope_params, "rope_theta")?.or(float(obj, "rope_theta")?).unwrap_or(10000.0);
        if rope_theta <= 0.0 {
            return Err(format!("rope_theta must be positive, found {rope_theta}"));
        }
        let scaling_obj = match obj.get("rope_scaling") {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => rope_params,
            Some(x) => return Err(format!("field `rope_scaling` must be an object, found {x}")),
        };
        let rope_type = scaling_obj
            .get("rope_type")
            .or_else(|| scaling_obj.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let need = |k: &str| -> std::result::Result<f64, String> {
            float(scaling_obj, k)?.ok_or_else(|| format!("rope scaling `{rope_type}` needs the field `{k}`"))
        };
        let rope_scaling = match rope_type {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")?,
            },
            other => return Err(format!("rope type `{other}` is not supported (default, linear, llama3)")),
        };
        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(format!("hidden_act `{act}` is not supported (silu)"));
        }
        if family == Family::Qwen2 {
            check_no_sliding_window(obj, int("num_hidden_layers")?)?;
        }
        let attention_bias = boolean("attention_bias", false)?;
        let (qkv_bias, o_bias, mlp_bias) = match family {
            Family::Qwen2 => (true, false, false),
            Family::Llama => (attention_bias, attention_bias, boolean("mlp_bias", false)?),
        };
        let eos_token_ids = match obj.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.iter().map(|x| token_id(x, "eos_token_id")).collect::<Result<_, _>>()?,
            Some(x) => vec![token_id(x, "eos_token_id")?],
        };
        let opt_token = |k: &str| -> std::result::Result<Option<u32>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => token_id(x, k).map(Some),
            }
        };
        let rms_norm_eps = float(obj, "rms_norm_eps")?.unwrap_or(1e-6);
        if rms_norm_eps <= 0.0 {
            return Err(format!("rms_norm_eps must be positive, found {rms_norm_eps}"));
        }
        let dtype = obj.get("dtype").or_else(|| obj.get("torch_dtype")).and_then(Value::as_str).map(str::to_string);
        Ok(Config {
            family,
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: opt_int("max_position_embeddings")?.unwrap_or(32768),
            tie_word_embeddings: boolean("tie_word_embeddings", false)?,
            qkv_bias,
            o_bias,
            mlp_bias,
            dtype,
            bos_token_id: opt_token("bos_token_id")?,
            eos_token_ids,
            pad_token_id: opt_token("pad_token_id")?,
        })
    }

    /// The config as a transformers `config.json` (the inverse of [`Config::parse`]).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "architectures": [match self.family { Family::Qwen2 => "Qwen2ForCausalLM", Family::Llama => "LlamaForCausalLM" }],
            "model_type": self.family.as_str(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": self.dtype.clone().unwrap_or_else(|| "float32".into()),
            "bos_token_id": self.bos_token_id,
            "eos_token_id": match self.eos_token_ids.as_slice() { [] => Value::Null, [one] => (*one).into(), many => many.into() },
            "pad_token_id": self.pad_token_id,
            "use_cache": true,
        });
        if self.family == Family::Llama {
            v["attention_bias"] = self.qkv_bias.into();
            v["mlp_bias"] = self.mlp_bias.into();
        }
        v
    }

    /// Query heads per key/value head.
    pub fn kv_groups(&self) -> i64 {
        self.num_attention_heads / self.num_key_value_heads
    }
}

/// Qwen2 configs carry sliding-window fields that transformers honours: a layer attends only to
/// the last `sliding_window` positions when `use_sliding_window` is true and the layer is a
/// `sliding_attention` one (`layer_types` as written, else the layers from `max_window_layers` on,
/// as `Qwen2Config.__post_init__` derives them). Keel's attention is full everywhere, so such a
/// config would score differently past the window without a word: it is refused instead. Every
/// Qwen2 and Qwen2.5 checkpoint ships `use_sliding_window: false`.
fn check_no_sliding_window(obj: &serde_json::Map<String, Value>, layers: i64) -> std::result::Result<(), String> {
    let use_sliding = match obj.get("use_sliding_window") {
        None | Some(Value::Null) => false,
        Some(x) => x.as_bool().ok_or_else(|| format!("field `use_sliding_window` must be true or false, found {x}"))?,
    };
    let window = match obj.get("sliding_window") {
        None | Some(Value::Null) => None,
        Some(x) => Some(x.as_i64().filter(|&n| n > 0).ok_or_else(|| format!("field `sliding_window` must be a positive integer, found {x}"))?),
    };
    let Some(window) = window.filter(|_| use_sliding) else {
        return Ok(());
    };
    let sliding: Vec<i64> = match obj.get("layer_types") {
        Some(Value::Array(types)) => {
            if types.len() as i64 != layers {
                return Err(format!("field `layer_types` has {} entries for {layers} layers", types.len()));
            }
            (0..layers).filter(|&i| types[i as usize].as_str() == Some("sliding_attention")).collect()
        }
        None | Some(Value::Null) => {
            let from = match obj.get("max_window_layers") {
                None | Some(Value::Null) => 28,
                Some(x) => x.as_i64().ok_or_else(|| format!("field `max_window_layers` must be an integer, found {x}"))?,
            };
            (from.max(0)..layers).collect()
        }
        Some(x) => return Err(format!("field `layer_types` must be a list, found {x}")),
    };
    if let Some(first) = sliding.first() {
        return Err(format!(
            "sliding-window attention is not supported (use_sliding_window is true with sliding_window {window}, \
             and {} of {layers} layers slide, from layer {first}); set use_sliding_window to false if the model was \
             trained with full attention",
            sliding.len()
        ));
    }
    Ok(())
}
