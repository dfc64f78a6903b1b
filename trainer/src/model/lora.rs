//! LoRA adapters in PEFT's layout.
//!
//! An adapter is a set of (A, B) pairs on chosen linear layers of every decoder layer, held in its
//! own `nn::VarStore` (the only trainable parameters), with `y = W x + b + (B A dropout(x)) * alpha / r`
//! (`alpha / sqrt(r)` with rsLoRA). New adapters are initialised as PEFT does: A kaiming-uniform with
//! `a = sqrt(5)` (uniform in ±1/sqrt(in)), B zero, so a fresh adapter leaves the model unchanged.
//!
//! On disk: `adapter_config.json` (PEFT `LoraConfig`) and `adapter_model.safetensors` with the names
//! PEFT writes, `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (r, in) and
//! `...lora_B.weight` (out, r), so PEFT, vLLM and Ollama read what Keel writes and the reverse.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tch::{Device, Kind, Tensor, nn};

use super::error::{ModelError, Result, io_err};
use super::rng::Rng;
use super::transformer::{LINEAR_NAMES, LoraWeights, Transformer, linear_path};
use super::weights::{self, Weights};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The adapter's hyper-parameters (PEFT's `LoraConfig` fields Keel uses).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Linear layer names, e.g. `q_proj`; see [`LINEAR_NAMES`].
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            target_modules: LINEAR_NAMES.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        if self.use_rslora { self.alpha / (self.r as f64).sqrt() } else { self.alpha / self.r as f64 }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.r <= 0 {
            return Err(format!("r must be positive, found {}", self.r));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("lora_dropout must be in [0, 1), found {}", self.dropout));
        }
        if self.target_modules.is_empty() {
            return Err("target_modules is empty".into());
        }
        for m in &self.target_modules {
            if !LINEAR_NAMES.contains(&m.as_str()) {
                return Err(format!("target module `{m}` is not one of {}", LINEAR_NAMES.join(", ")));
            }
        }
        Ok(())
    }

    /// PEFT's `adapter_config.json`.
    pub fn to_peft_json(&self, base_model_name_or_path: &str) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": self.use_rslora,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Reads PEFT's `adapter_config.json`, refusing what Keel cannot apply faithfully.
    pub fn from_peft_json(v: &Value) -> std::result::Result<LoraConfig, String> {
        let peft_type = v.get("peft_type").and_then(Value::as_str).unwrap_or("");
        if peft_type != "LORA" {
            return Err(format!("peft_type must be LORA, found `{peft_type}`"));
        }
        let r = v.get("r").and_then(Value::as_i64).ok_or("missing integer `r`")?;
        let alpha = v.get("lora_alpha").and_then(Value::as_f64).ok_or("missing number `lora_alpha`")?;
        let dropout = v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
        let target_modules = match v.get("target_modules") {
            Some(Value::Array(a)) => {
                a.iter().map(|x| x.as_str().map(str::to_string).ok_or("target_modules must be strings")).collect::<Result<Vec<_>, _>>()?
            }
            Some(Value::String(s)) if s == "all-linear" => LINEAR_NAMES.iter().map(|s| s.to_string()).collect(),
            Some(other) => return Err(format!("target_modules {other} is not supported (a list of names or \"all-linear\")")),
            None => return Err("missing `target_modules`".into()),
        };
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("use_dora") {
            return Err("DoRA adapters are not supported".into());
        }
        if flag("fan_in_fan_out") {
            return Err("fan_in_fan_out adapters are not supported".into());
        }
        if v.get("bias").and_then(Value::as_str).is_some_and(|b| b != "none") {
            return Err("adapters that train biases are not supported (bias must be \"none\")".into());
        }
        for k in ["rank_pattern", "alpha_pattern"] {
            if v.get(k).and_then(Value::as_object).is_some_and(|o| !o.is_empty()) {
                return Err(format!("`{k}` is not supported"));
            }
        }
        if v.get("modules_to_save").is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty())) {
            return Err("`modules_to_save` is not supported".into());
        }
        let cfg = LoraConfig { r, alpha, dropout, target_modules, use_rslora: flag("use_rslora") };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// PEFT's tensor name for a LoRA matrix (`which` is `lora_A` or `lora_B`).
pub fn peft_name(layer: usize, module: &str, which: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{which}.weight", linear_path(module))
}

/// An adapter attached to a [`Transformer`]: its config and the trainable variables.
pub struct Lora {
    pub config: LoraConfig,
    /// The adapter's parameters, all trainable; give this to an optimizer.
    pub vs: nn::VarStore,
    /// Where it was loaded from, if it was.
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Lora {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lora").field("config", &self.config).field("source", &self.source).finish()
    }
}

impl Lora {
    /// A fresh adapter on `model` (PEFT init; deterministic for a seed). Replaces any attached one.
    /// Adapter parameters are f32 whatever the base dtype, as PEFT keeps them.
    pub fn attach_new(model: &mut Transformer, config: LoraConfig, seed: u64) -> Result<Lora> {
        config.validate().map_err(ModelError::Invalid)?;
        let mut rng = Rng::new(seed);
        let mut tensors = Vec::new();
        for (li, layer) in model.layers.iter().enumerate() {
            for m in &config.target_modules {
                let lin = layer.linear(m).expect("validated module name");
                let (out, inp) = (lin.out_features(), lin.in_features());
                let bound = 1.0 / (inp as f64).sqrt();
                let a = Tensor::from_slice(&rng.uniform_vec((config.r * inp) as usize, bound)).view([config.r, inp]);
                let b = Tensor::zeros([out, config.r], (Kind::Float, Device::Cpu));
                tensors.push((li, m.clone(), a, b));
            }
        }
        Ok(Lora::attach(model, config, tensors, None))
    }

    /// Loads a PEFT adapter folder onto `model`, checking every tensor against the model's layers.
    pub fn load(model: &mut Transformer, dir: &Path) -> Result<Lora> {
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Adapter { path: cfg_path.clone(), message: format!("not JSON: {e}") })?;
        let config = LoraConfig::from_peft_json(&v).map_err(|message| ModelError::Adapter { path: cfg_path.clone(), message })?;
        let wpath = dir.join(ADAPTER_WEIGHTS);
        let w = Weights::open_files(std::slice::from_ref(&wpath))?;
        let n_layers = model.layers.len();
        // Every tensor in the file must belong to a layer and module of this model.
        let mut expected = BTreeSet::new();
        for li in 0..n_layers {
            for m in &config.target_modules {
                expected.insert(peft_name(li, m, "lora_A"));
                expected.insert(peft_name(li, m, "lora_B"));
            }
        }
        for name in w.names() {
            if !expected.contains(name) {
                let other_layer = name
                    .strip_prefix("base_model.model.model.layers.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|l| l >= n_layers);
                let message = if other_layer {
                    format!("it has tensor `{name}` but the model has {n_layers} layers")
                } else {
                    format!("unexpected tensor `{name}` (not a lora_A/lora_B of target_modules {:?})", config.target_modules)
                };
                return Err(if other_layer {
                    ModelError::AdapterBase { path: dir.to_path_buf(), message }
                } else {
                    ModelError::Adapter { path: wpath.clone(), message }
                });
            }
        }
        let mut tensors = Vec::new();
        for (li, layer) in model.layers.iter().enumerate() {
            for m in &config.target_modules {
                let lin = layer.linear(m).expect("validated module name");
                let (out, inp) = (lin.out_features(), lin.in_features());
                let read = |which: &str, shape: [i64; 2]| -> Result<Tensor> {
                    let name = peft_name(li, m, which);
                    match w.shape(&name) {
                        None => Err(ModelError::Adapter {
                            path: wpath.clone(),
                            message: format!("missing tensor `{name}` (target_modules lists {m})"),
                        }),
                        Some(s) if s != shape => Err(ModelError::AdapterBase {
                            path: dir.to_path_buf(),
                            message: format!(
                                "tensor `{name}` has shape {s:?} but this model's {m} of layer {li} needs {shape:?} (r = {}, in = {inp}, out = {out})",
                                config.r
                            ),
                        }),
                        Some(_) => w.load(&name, Kind::Float, Device::Cpu),
                    }
                };
                let a = read("lora_A", [config.r, inp])?;
                let b = read("lora_B", [out, config.r])?;
                tensors.push((li, m.clone(), a, b));
            }
        }
        let base = v.get("base_model_name_or_path").and_then(Value::as_str).unwrap_or("");
        tracing::debug!(adapter = %dir.display(), base, "loaded LoRA adapter");
        Ok(Lora::attach(model, config, tensors, Some(dir.to_path_buf())))
    }

    fn attach(model: &mut Transformer, config: LoraConfig, tensors: Vec<(usize, String, Tensor, Tensor)>, source: Option<PathBuf>) -> Lora {
        detach(model);
        let device = model.device();
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let scaling = config.scaling();
        for (li, m, a, b) in tensors {
            let p = &root / "layers" / li / m.as_str();
            let a = p.var_copy("lora_A", &a);
            let b = p.var_copy("lora_B", &b);
            let lin = model.layers[li].linear_mut(&m).expect("validated module name");
            lin.lora = Some(LoraWeights { a, b, scaling, dropout: config.dropout });
        }
        Lora { config, vs, source }
    }

    /// The adapter's tensors under PEFT's names (f32, CPU).
    pub fn peft_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| {
                // layers.{i}.{module}.lora_A
                let parts: Vec<&str> = name.split('.').collect();
                let li: usize = parts[1].parse().expect("variable names are ours");
                (peft_name(li, parts[2], parts[3]), t.detach().to_kind(Kind::Float).to_device(Device::Cpu))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: &Path, base_model_name_or_path: &str) -> Result<()> {
        keel_trajectory::private::create_dir_all(dir).map_err(io_err(dir))?;
        weights::save(&dir.join(ADAPTER_WEIGHTS), &self.peft_tensors())?;
        let cfg = serde_json::to_string_pretty(&self.config.to_peft_json(base_model_name_or_path)).expect("json");
        let path = dir.join(ADAPTER_CONFIG);
        keel_trajectory::private::write(&path, cfg + "\n").map_err(io_err(&path))?;
        Ok(())
    }

    /// Hash of the adapter's weights (hex BLAKE3 over names, shapes and f32 values): a version id.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (name, t) in self.peft_tensors() {
            h.update(name.as_bytes());
            for d in t.size() {
                h.update(&d.to_le_bytes());
            }
            let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap_or_default();
            for x in v {
                h.update(&x.to_le_bytes());
            }
        }
        h.finalize().to_hex().to_string()
    }
}

/// Removes every LoRA pair from the model (the adapter's VarStore is left to its owner).
pub fn detach(model: &mut Transformer) {
    for layer in &mut model.layers {
        for m in LINEAR_NAMES {
            if let Some(l) = layer.linear_mut(m) {
                l.lora = None;
            }
        }
    }
}
