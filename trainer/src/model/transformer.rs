//! The decoder-only transformer of the Qwen2 and Llama families, in the layout and numerics of
//! Hugging Face transformers (`modeling_qwen2.py`, `modeling_llama.py`).
//!
//! - RMSNorm in f32, cast back to the activation dtype before the weight (as transformers does).
//! - Rotary embeddings with the `rotate_half` convention, positions taken from the attention mask
//!   (`cumsum(mask) - 1`), so left- and right-padded batches give the same logits per row as the
//!   rows alone.
//! - Attention with grouped-query heads through `scaled_dot_product_attention`, a causal + padding
//!   boolean mask (or `is_causal` when nothing is padded), and an optional preallocated KV cache.
//! - SiLU-gated MLP; untied or tied `lm_head`.
//!
//! The base weights are plain tensors that never require grad. LoRA adapters (see `lora.rs`) hang
//! off the linear layers and live in their own `nn::VarStore`, which is all an optimizer sees.

use tch::{Device, Kind, Tensor};

use super::config::{Config, RopeScaling};
use super::error::Result;
use super::weights::Weights;

/// The LoRA pair of one linear layer: `y += dropout(x) A^T B^T * scaling`.
#[derive(Debug)]
pub(crate) struct LoraWeights {
    /// (r, in), a shallow clone of the adapter's VarStore variable.
    pub a: Tensor,
    /// (out, r).
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
}

/// A linear layer with frozen weight, optional bias and optional LoRA.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub(crate) lora: Option<LoraWeights>,
}

impl Linear {
    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    fn forward(&self, x: &Tensor, m: &Mode) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(l) if m.lora => {
                let x = if m.train && l.dropout > 0.0 { x.dropout(l.dropout, true) } else { x.shallow_clone() };
                let d = x.to_kind(l.a.kind()).linear::<&Tensor>(&l.a, None).linear::<&Tensor>(&l.b, None) * l.scaling;
                y + d.to_kind(self.weight.kind())
            }
            _ => y,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    lora: bool,
    train: bool,
}

#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

/// The linear layers of one decoder layer that LoRA may target, by their Hugging Face names.
pub const LINEAR_NAMES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

#[derive(Debug)]
pub struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Layer {
    /// The second half of a decoder layer: `x + down(silu(gate(norm x)) * up(norm x))`.
    fn mlp_block(&self, x: Tensor, mode: &Mode) -> Tensor {
        let hs = self.post_attention_layernorm.forward(&x);
        let gate = self.gate_proj.forward(&hs, mode).silu();
        let up = self.up_proj.forward(&hs, mode);
        x + self.down_proj.forward(&(gate * up), mode)
    }

    /// A linear layer by its Hugging Face name (`q_proj`, ..., `down_proj`).
    pub fn linear(&self, name: &str) -> Option<&Linear> {
        Some(match name {
            "q_proj" => &self.q_proj,
            "k_proj" => &self.k_proj,
            "v_proj" => &self.v_proj,
            "o_proj" => &self.o_proj,
            "gate_proj" => &self.gate_proj,
            "up_proj" => &self.up_proj,
            "down_proj" => &self.down_proj,
            _ => return None,
        })
    }

    pub(crate) fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        Some(match name {
            "q_proj" => &mut self.q_proj,
            "k_proj" => &mut self.k_proj,
            "v_proj" => &mut self.v_proj,
            "o_proj" => &mut self.o_proj,
            "gate_proj" => &mut self.gate_proj,
            "up_proj" => &mut self.up_proj,
            "down_proj" => &mut self.down_proj,
            _ => return None,
        })
    }
}

/// The module path of a linear layer inside a decoder layer (`self_attn.q_proj`, `mlp.up_proj`).
pub fn linear_path(name: &str) -> &'static str {
    match name {
        "q_proj" => "self_attn.q_proj",
        "k_proj" => "self_attn.k_proj",
        "v_proj" => "self_attn.v_proj",
        "o_proj" => "self_attn.o_proj",
        "gate_proj" => "mlp.gate_proj",
        "up_proj" => "mlp.up_proj",
        _ => "mlp.down_proj",
    }
}

/// Keys and values of every layer for generation, preallocated to a capacity.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// An empty cache for `batch` rows of up to `capacity` positions.
    pub fn new(cfg: &Config, batch: i64, capacity: i64, kind: Kind, device: Device) -> KvCache {
        let shape = [batch, cfg.num_key_value_heads, capacity, cfg.head_dim];
        let n = cfg.num_hidden_layers as usize;
        KvCache {
            k: (0..n).map(|_| Tensor::zeros(shape, (kind, device))).collect(),
            v: (0..n).map(|_| Tensor::zeros(shape, (kind, device))).collect(),
            len: 0,
            capacity,
        }
    }

    /// Positions filled so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Row `row`'s keys and values at positions `start..start + len` of every layer, each
    /// `(1, kv_heads, len, head_dim)` (copies).
    pub fn row_slice(&self, row: i64, start: i64, len: i64) -> (Vec<Tensor>, Vec<Tensor>) {
        let cut = |t: &Tensor| t.narrow(0, row, 1).narrow(2, start, len).copy();
        (self.k.iter().map(cut).collect(), self.v.iter().map(cut).collect())
    }

    /// Writes keys and values (as [`KvCache::row_slice`] gives them) into row `row` at position
    /// `at`; the cache's length becomes at least `at + len`.
    pub fn write_row(&mut self, row: i64, at: i64, k: &[Tensor], v: &[Tensor]) {
        let len = k.first().map_or(0, |t| t.size()[2]);
        for (dst, src) in self.k.iter_mut().zip(k).chain(self.v.iter_mut().zip(v)) {
            dst.narrow(0, row, 1).narrow(2, at, len).copy_(src);
        }
        self.len = self.len.max(at + len);
    }

    /// Keeps the given batch rows, in that order; a row may repeat (rows that share a prefilled
    /// prompt).
    pub fn select_rows(&mut self, rows: &Tensor) {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.index_select(0, rows);
        }
    }
}

/// The model: embeddings, decoder layers, final norm and head.
#[derive(Debug)]
pub struct Transformer {
    pub cfg: Config,
    embed_tokens: Tensor,
    pub layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
    kind: Kind,
    device: Device,
    lora_enabled: bool,
    train: bool,
}

impl Transformer {
    /// Builds the model from a checkpoint, every tensor checked against the config's shapes.
    pub fn load(cfg: &Config, w: &Weights, kind: Kind, device: Device) -> Result<Transformer> {
        let (h, i, v, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let get = |name: &str, shape: &[i64]| w.get(name, shape, kind, device);
        let linear = |p: &str, out: i64, inp: i64, bias: bool| -> Result<Linear> {
            Ok(Linear {
                weight: get(&format!("{p}.weight"), &[out, inp])?,
                bias: if bias { Some(get(&format!("{p}.bias"), &[out])?) } else { None },
                lora: None,
            })
        };
        let norm = |name: &str| -> Result<RmsNorm> { Ok(RmsNorm { weight: get(name, &[h])?, eps: cfg.rms_norm_eps }) };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers as usize);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                q_proj: linear(&format!("{p}.self_attn.q_proj"), nh * hd, h, cfg.qkv_bias)?,
                k_proj: linear(&format!("{p}.self_attn.k_proj"), nkv * hd, h, cfg.qkv_bias)?,
                v_proj: linear(&format!("{p}.self_attn.v_proj"), nkv * hd, h, cfg.qkv_bias)?,
                o_proj: linear(&format!("{p}.self_attn.o_proj"), h, nh * hd, cfg.o_bias)?,
                gate_proj: linear(&format!("{p}.mlp.gate_proj"), i, h, cfg.mlp_bias)?,
                up_proj: linear(&format!("{p}.mlp.up_proj"), i, h, cfg.mlp_bias)?,
                down_proj: linear(&format!("{p}.mlp.down_proj"), h, i, cfg.mlp_bias)?,
            });
        }
        let embed_tokens = get("model.embed_tokens.weight", &[v, h])?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(get("lm_head.weight", &[v, h])?) };
        Ok(Transformer {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            inv_freq: Tensor::from_slice(&inv_freq(cfg)).to_device(device),
            kind,
            device,
            lora_enabled: true,
            train: false,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether LoRA adapters (if any) take part in the forward pass. Off gives the reference model.
    pub fn set_lora_enabled(&mut self, on: bool) {
        self.lora_enabled = on;
    }

    pub fn lora_enabled(&self) -> bool {
        self.lora_enabled
    }

    /// Training mode: LoRA dropout active.
    pub fn set_train(&mut self, on: bool) {
        self.train = on;
    }

    /// A KV cache sized for this model.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(&self.cfg, batch, capacity, self.kind, self.device)
    }

    /// Logits `(b, t, vocab)` for `input_ids` `(b, t)`.
    ///
    /// `attention_mask` is `(b, past + t)` with 1 for real tokens and 0 for padding (left or right);
    /// it covers the cached positions as well as the new ones. With a cache, the new keys and values
    /// are appended to it.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let h = self.forward_hidden(input_ids, attention_mask, cache);
        self.logits(&h)
    }

    /// The head applied to final hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<&Tensor>(self.lm_head.as_ref().unwrap_or(&self.embed_tokens), None)
    }

    /// Final (normed) hidden states `(b, t, hidden)`.
    pub fn forward_hidden(&self, input_ids: &Tensor, attention_mask: &Tensor, mut cache: Option<&mut KvCache>) -> Tensor {
        let (b, t) = input_ids.size2().expect("input_ids must be (batch, seq)");
        let past = cache.as_ref().map_or(0, |c| c.len);
        let mask = attention_mask.to_device(self.device);
        let total = past + t;
        assert_eq!(mask.size(), [b, total], "attention_mask must be (batch, past + seq)");
        if let Some(c) = cache.as_ref() {
            assert!(total <= c.capacity, "KV cache full: {total} positions > capacity {}", c.capacity);
        }
        let mode = Mode { lora: self.lora_enabled, train: self.train };

        // Positions from the mask, as transformers' generate does.
        let positions = (mask.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1).clamp_min(0).narrow(1, past, t);
        let (cos, sin) = self.rope(&positions);

        // A padding mask only when something is padded; else plain causal attention.
        let padded = i64::try_from(mask.min()).unwrap_or(0) == 0;
        let attn_mask = if padded || past > 0 {
            let key_ok = mask.to_kind(Kind::Bool).view([b, 1, 1, total]);
            let q_pos = Tensor::arange_start(past, total, (Kind::Int64, self.device)).view([1, 1, t, 1]);
            let k_pos = Tensor::arange(total, (Kind::Int64, self.device)).view([1, 1, 1, total]);
            let causal = k_pos.le_tensor(&q_pos);
            // The diagonal stays visible so that a padding query row never attends to nothing (NaN).
            Some(causal.logical_and(&key_ok).logical_or(&k_pos.eq_tensor(&q_pos)))
        } else {
            None
        };

        let mut x = Tensor::embedding(&self.embed_tokens, &input_ids.to_device(self.device), -1, false, false);
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        for (li, layer) in self.layers.iter().enumerate() {
            let residual = x.shallow_clone();
            let hs = layer.input_layernorm.forward(&x);
            let q = layer.q_proj.forward(&hs, &mode).view([b, t, nh, hd]).transpose(1, 2);
            let k = layer.k_proj.forward(&hs, &mode).view([b, t, nkv, hd]).transpose(1, 2);
            let v = layer.v_proj.forward(&hs, &mode).view([b, t, nkv, hd]).transpose(1, 2);
            let q = apply_rope(&q, &cos, &sin);
            let k = apply_rope(&k, &cos, &sin);
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => {
                    c.k[li].narrow(2, past, t).copy_(&k);
                    c.v[li].narrow(2, past, t).copy_(&v);
                    (c.k[li].narrow(2, 0, total), c.v[li].narrow(2, 0, total))
                }
                None => (k, v),
            };
            let scale = 1.0 / (hd as f64).sqrt();
            let attn = match &attn_mask {
                // One new token per row (generation): the query heads of a group attend to their
                // shared key/value head by broadcasting, without copying the cache per head
                // (repeat_kv copied every cached position of every layer at every token).
                Some(m) if t == 1 && nh != nkv => {
                    let g = nh / nkv;
                    let scores = q.reshape([b, nkv, g, hd]).matmul(&k.transpose(-1, -2)) * scale;
                    let scores = scores.masked_fill(&m.logical_not(), f64::NEG_INFINITY);
                    scores.softmax(-1, scores.kind()).matmul(&v).reshape([b, nh, 1, hd])
                }
                // With a mask the fused kernels want equal head counts (as transformers' repeat_kv).
                Some(m) => {
                    let (k, v) = (repeat_kv(&k, nh / nkv), repeat_kv(&v, nh / nkv));
                    Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, scale, false)
                }
                // Without one, SDPA groups the heads itself (no copies of K and V).
                None => Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, t > 1, scale, nh != nkv),
            };
            let attn = attn.transpose(1, 2).reshape([b, t, nh * hd]);
            x = residual + layer.o_proj.forward(&attn, &mode);
            x = layer.mlp_block(x, &mode);
        }
        if let Some(c) = cache {
            c.len = total;
        }
        self.norm.forward(&x)
    }
}

impl Transformer {
    /// cos and sin of the rotary embedding at `positions` `(b, t)`, shaped `(b, 1, t, head_dim)`.
    fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(self.kind).unsqueeze(1), emb.sin().to_kind(self.kind).unsqueeze(1))
    }

    /// Final (normed) hidden states of prompts and of completions that continue them, with each
    /// prompt run once however many completions share it (DPO's chosen and rejected do).
    ///
    /// `prompt_ids`/`prompt_mask` are `(p, tp)`, right-padded; `completion_ids`/`completion_mask`
    /// are `(r, tc)`, right-padded; `prompt_of` `(r,)` names the prompt row each completion
    /// continues. Completion `i` sits at positions `len(prompt) ..` and attends to its prompt's
    /// real tokens and to its own earlier tokens: the same arithmetic as running every
    /// prompt + completion on its own, with the prompt's share done once. Returns
    /// `(prompt hidden (p, tp, h), completion hidden (r, tc, h))`. Runs with grad when the caller
    /// has it on: the prompt's keys and values get gradient from every completion that reads them.
    pub fn forward_shared_prefix(&self, prompt_ids: &Tensor, prompt_mask: &Tensor, completion_ids: &Tensor, completion_mask: &Tensor, prompt_of: &Tensor) -> (Tensor, Tensor) {
        let dev = self.device;
        let (p, tp) = prompt_ids.size2().expect("prompt_ids must be (prompts, seq)");
        let (r, tc) = completion_ids.size2().expect("completion_ids must be (completions, seq)");
        let pmask = prompt_mask.to_device(dev).to_kind(Kind::Int64);
        let cmask = completion_mask.to_device(dev).to_kind(Kind::Int64);
        let prompt_of = prompt_of.to_device(dev);
        assert_eq!(pmask.size(), [p, tp], "prompt_mask must be (prompts, seq)");
        assert_eq!(cmask.size(), [r, tc], "completion_mask must be (completions, seq)");
        let mode = Mode { lora: self.lora_enabled, train: self.train };

        let plen = pmask.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        let (cos_p, sin_p) = self.rope(&Tensor::arange(tp, (Kind::Int64, dev)).view([1, tp]).expand([p, tp], false));
        let c_pos = plen.index_select(0, &prompt_of).view([r, 1]) + Tensor::arange(tc, (Kind::Int64, dev)).view([1, tc]);
        let (cos_c, sin_c) = self.rope(&c_pos);

        // Prompt rows: causal, padding keys hidden (the diagonal stays visible, so a padding row
        // never attends to nothing).
        let qp_pos = Tensor::arange(tp, (Kind::Int64, dev)).view([1, 1, tp, 1]);
        let kp_pos = Tensor::arange(tp, (Kind::Int64, dev)).view([1, 1, 1, tp]);
        let p_padded = i64::try_from(pmask.min()).unwrap_or(0) == 0;
        let p_attn = p_padded.then(|| kp_pos.le_tensor(&qp_pos).logical_and(&pmask.to_kind(Kind::Bool).view([p, 1, 1, tp])).logical_or(&kp_pos.eq_tensor(&qp_pos)));
        // Completion rows: their prompt's real tokens, then causal over their own.
        let qc_pos = Tensor::arange(tc, (Kind::Int64, dev)).view([1, 1, tc, 1]);
        let kc_pos = Tensor::arange(tc, (Kind::Int64, dev)).view([1, 1, 1, tc]);
        let own = kc_pos.le_tensor(&qc_pos).logical_and(&cmask.to_kind(Kind::Bool).view([r, 1, 1, tc])).logical_or(&kc_pos.eq_tensor(&qc_pos));
        let prefix = pmask.index_select(0, &prompt_of).to_kind(Kind::Bool).view([r, 1, 1, tp]).expand([r, 1, tc, tp], false);
        let c_attn = Tensor::cat(&[prefix, own.expand([r, 1, tc, tc], false)], 3);

        let (np, nc) = (p * tp, r * tc);
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        let ids = Tensor::cat(&[prompt_ids.to_device(dev).reshape([np]), completion_ids.to_device(dev).reshape([nc])], 0);
        // Both streams as one matrix of tokens for every projection and the MLP; only attention
        // tells them apart.
        let mut x = Tensor::embedding(&self.embed_tokens, &ids, -1, false, false);
        for layer in &self.layers {
            let residual = x.shallow_clone();
            let hs = layer.input_layernorm.forward(&x);
            let q = layer.q_proj.forward(&hs, &mode);
            let k = layer.k_proj.forward(&hs, &mode);
            let v = layer.v_proj.forward(&hs, &mode);
            let split = |t: &Tensor, heads: i64| {
                (t.narrow(0, 0, np).view([p, tp, heads, hd]).transpose(1, 2), t.narrow(0, np, nc).view([r, tc, heads, hd]).transpose(1, 2))
            };
            let (qp, qc) = split(&q, nh);
            let (kp, kc) = split(&k, nkv);
            let (vp, vc) = split(&v, nkv);
            let (qp, kp) = (apply_rope(&qp, &cos_p, &sin_p), apply_rope(&kp, &cos_p, &sin_p));
            let (qc, kc) = (apply_rope(&qc, &cos_c, &sin_c), apply_rope(&kc, &cos_c, &sin_c));
            let ap = match &p_attn {
                Some(m) => Tensor::scaled_dot_product_attention(&qp, &repeat_kv(&kp, nh / nkv), &repeat_kv(&vp, nh / nkv), Some(m), 0.0, false, scale, false),
                None => Tensor::scaled_dot_product_attention::<Tensor>(&qp, &kp, &vp, None, 0.0, tp > 1, scale, nh != nkv),
            };
            let kc = Tensor::cat(&[kp.index_select(0, &prompt_of), kc], 2);
            let vc = Tensor::cat(&[vp.index_select(0, &prompt_of), vc], 2);
            let ac = Tensor::scaled_dot_product_attention(&qc, &repeat_kv(&kc, nh / nkv), &repeat_kv(&vc, nh / nkv), Some(&c_attn), 0.0, false, scale, false);
            let attn = Tensor::cat(&[ap.transpose(1, 2).reshape([np, nh * hd]), ac.transpose(1, 2).reshape([nc, nh * hd])], 0);
            x = residual + layer.o_proj.forward(&attn, &mode);
            x = layer.mlp_block(x, &mode);
        }
        let x = self.norm.forward(&x);
        let h = x.size()[1];
        (x.narrow(0, 0, np).view([p, tp, h]), x.narrow(0, np, nc).view([r, tc, h]))
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = x.size()[x.dim() - 1];
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}

fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    x * cos + rotate_half(x) * sin
}

fn repeat_kv(x: &Tensor, n: i64) -> Tensor {
    if n == 1 {
        return x.shallow_clone();
    }
    let (b, kvh, t, d) = x.size4().expect("kv must be 4-d");
    x.unsqueeze(2).expand([b, kvh, n, t, d], false).reshape([b, kvh * n, t, d])
}

/// Rotary inverse frequencies, with the config's scaling applied (as transformers' `rope_init_fn`s).
fn inv_freq(cfg: &Config) -> Vec<f32> {
    let d = cfg.head_dim as usize;
    let base: Vec<f64> = (0..d).step_by(2).map(|i| 1.0 / cfg.rope_theta.powf(i as f64 / d as f64)).collect();
    let scaled: Vec<f64> = match &cfg.rope_scaling {
        RopeScaling::Default => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = std::f64::consts::TAU / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    };
    scaled.into_iter().map(|f| f as f32).collect()
}
