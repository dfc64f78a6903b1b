//! `keel-train init-model`: a small random model in the Hugging Face layout, for tests and the demo.
//!
//! The folder holds `config.json`, `model.safetensors` (f32, normal(0, 0.02) weights, unit norms,
//! zero biases, deterministic per seed), `generation_config.json`, a real byte-level BPE
//! `tokenizer.json` trained with the `tokenizers` crate on a small embedded corpus of code and
//! English plus Qwen's special tokens, and `tokenizer_config.json` with a Qwen2.5-style ChatML chat
//! template that supports tools. transformers' `AutoModelForCausalLM` / `AutoTokenizer` load it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tch::Tensor;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::models::TrainerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::model::config::{Config, Family, RopeScaling};
use crate::model::rng::Rng;
use crate::model::tokenizer::QWEN2_PRETOKENIZE_REGEX;
use crate::model::weights;

/// Qwen's special tokens: (text, special).
pub const SPECIAL_TOKENS: [(&str, bool); 5] =
    [("<|endoftext|>", true), ("<|im_start|>", true), ("<|im_end|>", true), ("<tool_call>", false), ("</tool_call>", false)];

/// Qwen2.5's chat template (ChatML with tools): tools go into the system message as JSON schemas,
/// tool calls are `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, tool results come back
/// as `<tool_response>` in a user turn.
pub const CHAT_TEMPLATE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful coding assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a helpful coding assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// The corpus the tokenizer is trained on: a little English and code of the kinds Keel edits.
const CORPUS: &str = include_str!("init_model_corpus.txt");

/// Sizes of a preset.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub vocab_target: usize,
}

pub fn preset(name: &str) -> Result<Preset> {
    Ok(match name {
        "tiny" => Preset {
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            vocab_target: 1024,
        },
        "small" => Preset {
            hidden_size: 256,
            intermediate_size: 688,
            num_hidden_layers: 4,
            num_attention_heads: 8,
            num_key_value_heads: 2,
            vocab_target: 2048,
        },
        other => bail!("unknown preset `{other}` (tiny, small)"),
    })
}

/// Options of `init-model`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub preset: String,
    pub family: Family,
    pub seed: u64,
}

/// Trains the byte-level BPE tokenizer on the embedded corpus and adds Qwen's special tokens.
pub fn train_tokenizer(vocab_target: usize) -> Result<Tokenizer> {
    // Qwen2's pipeline exactly (as its tokenizer.json and transformers' Qwen2Tokenizer build it):
    // NFC, the Qwen split regex, then byte-level without its own regex.
    let mut tk = Tokenizer::new(ModelWrapper::BPE(BPE::default()));
    tk.with_normalizer(Some(NFC));
    let split = Split::new(SplitPattern::Regex(QWEN2_PRETOKENIZE_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| anyhow::anyhow!("pre-tokenizer regex: {e}"))?;
    let byte_level = ByteLevel::default().add_prefix_space(false).trim_offsets(false).use_regex(false);
    tk.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ])));
    tk.with_decoder(Some(ByteLevel::default()));
    tk.with_post_processor(Some(byte_level));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_target - SPECIAL_TOKENS.len())
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tk.train(&mut trainer, CORPUS.split("\n\n")).map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    for (t, special) in SPECIAL_TOKENS {
        let tok = AddedToken::from(t, special).normalized(false);
        if special {
            tk.add_special_tokens(&[tok]);
        } else {
            tk.add_tokens(&[tok]);
        }
    }
    Ok(tk)
}

/// Writes a random model of `opts.preset` into `out`.
pub fn init_model(out: &Path, opts: &InitOptions) -> Result<()> {
    let p = preset(&opts.preset)?;
    keel_trajectory::private::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tk = train_tokenizer(p.vocab_target)?;
    let vocab = tk.get_vocab_size(true) as i64;
    let id = |t: &str| tk.token_to_id(t).expect("special token added");
    let (eot, im_end) = (id("<|endoftext|>"), id("<|im_end|>"));
    let cfg = Config {
        family: opts.family,
        vocab_size: vocab,
        hidden_size: p.hidden_size,
        intermediate_size: p.intermediate_size,
        num_hidden_layers: p.num_hidden_layers,
        num_attention_heads: p.num_attention_heads,
        num_key_value_heads: p.num_key_value_heads,
        head_dim: p.hidden_size / p.num_attention_heads,
        rms_norm_eps: 1e-6,
        rope_theta: 1_000_000.0,
        rope_scaling: RopeScaling::Default,
        max_position_embeddings: 4096,
        tie_word_embeddings: opts.family == Family::Qwen2,
        qkv_bias: opts.family == Family::Qwen2,
        o_bias: false,
        mlp_bias: false,
        dtype: Some("float32".into()),
        bos_token_id: Some(eot),
        eos_token_ids: vec![im_end],
        pad_token_id: Some(eot),
    };
    write_json(&out.join("config.json"), &cfg.to_json())?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot, "do_sample": false}),
    )?;
    tk.save(out.join("tokenizer.json"), true).map_err(|e| anyhow::anyhow!("writing tokenizer.json: {e}"))?;
    keel_trajectory::private::restrict(&out.join("tokenizer.json"))?;
    write_json(
        &out.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": null,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": null,
            "add_bos_token": false,
            "add_prefix_space": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": cfg.max_position_embeddings,
            "chat_template": CHAT_TEMPLATE,
        }),
    )?;
    let tensors = random_weights(&cfg, opts.seed);
    weights::save(&out.join("model.safetensors"), &tensors)?;
    Ok(())
}

/// Weights in transformers' names: normal(0, 0.02) matrices, unit norms, zero biases.
pub fn random_weights(cfg: &Config, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = Rng::new(seed);
    let (h, i, v, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim);
    let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let mut out = Vec::new();
    let mut normal = |name: String, shape: &[i64], out: &mut Vec<(String, Tensor)>| {
        let n: i64 = shape.iter().product();
        out.push((name, Tensor::from_slice(&rng.normal_vec(n as usize, 0.02)).view(shape)));
    };
    normal("model.embed_tokens.weight".into(), &[v, h], &mut out);
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (m, o, inp) in [("self_attn.q_proj", nh * hd, h), ("self_attn.k_proj", nkv * hd, h), ("self_attn.v_proj", nkv * hd, h)] {
            normal(format!("{p}.{m}.weight"), &[o, inp], &mut out);
            if cfg.qkv_bias {
                out.push((format!("{p}.{m}.bias"), Tensor::zeros([o], (tch::Kind::Float, tch::Device::Cpu))));
            }
        }
        normal(format!("{p}.self_attn.o_proj.weight"), &[h, nh * hd], &mut out);
        normal(format!("{p}.mlp.gate_proj.weight"), &[i, h], &mut out);
        normal(format!("{p}.mlp.up_proj.weight"), &[i, h], &mut out);
        normal(format!("{p}.mlp.down_proj.weight"), &[h, i], &mut out);
        for n in ["input_layernorm", "post_attention_layernorm"] {
            out.push((format!("{p}.{n}.weight"), Tensor::ones([h], (tch::Kind::Float, tch::Device::Cpu))));
        }
    }
    out.push(("model.norm.weight".into(), Tensor::ones([h], (tch::Kind::Float, tch::Device::Cpu))));
    if !cfg.tie_word_embeddings {
        normal("lm_head.weight".into(), &[v, h], &mut out);
    }
    out
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    keel_trajectory::private::write(path, serde_json::to_string_pretty(v)? + "\n").with_context(|| format!("writing {}", path.display()))
}
