//! The real engine: a Hugging Face model folder in tch, with an optional LoRA adapter, batched
//! KV-cache generation, and llguidance-constrained tool calls.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keel_trajectory::{FunctionCall, ToolCall};
use serde_json::Value;

use super::constrain::{CALL_OPEN, Constrainer, parse_calls, with_copied_old_text};
use super::engine::{Engine, GenOutput, GenRequest, ToolChoice};
use crate::model::{Generator, LoadOptions, Model, PrefixCache, SamplingParams};

pub struct TchEngine {
    pub model: Model,
    name: String,
    adapter_hash: Option<String>,
    constrainer: Option<Constrainer>,
    /// Keys and values of recent prompts (cleared when the adapter changes).
    pub prefixes: PrefixCache,
    adapter: Option<PathBuf>,
    /// The cache of the adapter served before this one, kept while an A/B alternates between two.
    stashed: Option<(String, PrefixCache)>,
    /// An edit's `old_text` is constrained to text the agent was shown (`constrain::copy_spans`);
    /// off with `KEEL_FREE_EDITS=1` in the environment.
    pub copy_edits: bool,
}

/// Prompt positions the engine keeps keys and values of (about 46 KB each on SmolLM2-135M in
/// f32: ~1.1 GB).
pub const PREFIX_CACHE_TOKENS: usize = 24_576;

/// `KEEL_FREE_EDITS=1`: edits are not constrained to text the agent was shown.
fn free_edits() -> bool {
    std::env::var("KEEL_FREE_EDITS").is_ok_and(|v| !v.is_empty() && v != "0")
}

impl TchEngine {
    pub fn load(dir: &Path, adapter: Option<&Path>, device: &str, name: &str) -> Result<TchEngine> {
        let device = crate::model::parse_device(device)?;
        let mut model = Model::load(dir, &LoadOptions { device, kind: None }).with_context(|| format!("loading the model in {}", dir.display()))?;
        let constrainer = match Constrainer::new(&dir.join("tokenizer.json"), &model.eos_ids) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("keel-train serve: tool calls will not be constrained: {e:#}");
                None
            }
        };
        let mut adapter_hash = None;
        if let Some(a) = adapter {
            model.load_adapter(a).with_context(|| format!("loading the adapter in {}", a.display()))?;
            adapter_hash = Some(crate::models::adapter_hash(a)?);
        }
        Ok(TchEngine { model, name: name.to_string(), adapter_hash, constrainer, prefixes: PrefixCache::new(PREFIX_CACHE_TOKENS), adapter: adapter.map(Path::to_path_buf), stashed: None, copy_edits: !free_edits() })
    }

    fn prompt_ids(&self, r: &GenRequest) -> Result<Vec<u32>> {
        let text = match &r.prompt {
            Some(p) => p.clone(),
            None => {
                let msgs: Vec<Value> = r.messages.iter().map(crate::pairs::message_json).collect();
                let tools = (!r.tools.is_empty()).then_some(r.tools.as_slice());
                self.model.template()?.render(&msgs, tools, true)?
            }
        };
        tracing::trace!(target: "keel_trainer::prompt", "{text}");
        Ok(self.model.tokenizer.encode(&text)?)
    }
}

impl Engine for TchEngine {
    fn version(&self) -> String {
        format!("{}@{}", self.name, self.adapter_hash.as_deref().unwrap_or("base"))
    }

    fn generate(&mut self, batch: &[GenRequest], on_text: &mut dyn FnMut(usize, &str)) -> Vec<Result<GenOutput>> {
        let mut results: Vec<Option<Result<GenOutput>>> = (0..batch.len()).map(|_| None).collect();
        let mut rows = Vec::new();
        let mut index = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            match self.prompt_ids(r) {
                Ok(ids) => {
                    let max_pos = self.model.config.max_position_embeddings.max(1) as usize;
                    if ids.len() >= max_pos {
                        results[i] = Some(Err(anyhow::anyhow!("the prompt has {} tokens; this model takes at most {max_pos}", ids.len())));
                        continue;
                    }
                    let params = SamplingParams {
                        max_new_tokens: r.max_tokens.min(max_pos - ids.len()),
                        temperature: r.temperature,
                        top_p: r.top_p,
                        top_k: r.top_k,
                        stop: r.stop.clone(),
                        eos_ids: self.model.eos_ids.clone(),
                        seed: r.seed.unwrap_or(0),
                    };
                    rows.push((ids, params));
                    index.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !rows.is_empty() {
            let prompt_lens: Vec<usize> = rows.iter().map(|r| r.0.len()).collect();
            // The copy's spans only where a call will be constrained.
            let copy = self.copy_edits && self.constrainer.is_some();
            let constraint_rows: Vec<Option<(Vec<Value>, ToolChoice)>> = index
                .iter()
                .map(|&i| {
                    let r = &batch[i];
                    (!r.tools.is_empty()).then(|| {
                        let tools = if copy && r.tool_choice != ToolChoice::None { with_copied_old_text(&r.tools, &r.messages) } else { r.tools.clone() };
                        (tools, r.tool_choice.clone())
                    })
                })
                .collect();
            let mut run = || -> Result<Vec<(String, String, usize)>> {
                let mut processor = match &self.constrainer {
                    Some(c) if constraint_rows.iter().any(Option::is_some) => Some(c.processor(constraint_rows.clone(), self.model.eos_ids.clone())?),
                    _ => None,
                };
                let t0 = std::time::Instant::now();
                let reused0 = self.prefixes.reused_tokens;
                let mut g = Generator::with_prefixes(&self.model.transformer, &self.model.tokenizer, rows.clone(), Some(&mut self.prefixes))?;
                let prefill = t0.elapsed();
                let mut streamed: Vec<String> = vec![String::new(); index.len()];
                let mut steps = 0usize;
                while !g.is_done() {
                    steps += 1;
                    let toks = match processor.as_mut() {
                        Some(p) => g.step(Some(p))?,
                        None => g.step(None)?,
                    };
                    for t in toks {
                        // Stream text, but never the raw tool-call markup.
                        streamed[t.row].push_str(&t.text);
                        let is_call = processor.as_ref().is_some_and(|p| p.is_call(t.row)) || streamed[t.row].contains(CALL_OPEN) || CALL_OPEN.starts_with(streamed[t.row].trim_start());
                        if !is_call && !t.text.is_empty() {
                            on_text(index[t.row], &t.text);
                        }
                    }
                }
                tracing::debug!(
                    target: "keel_trainer::engine",
                    rows = rows.len(),
                    prompt_tokens = prompt_lens.iter().sum::<usize>(),
                    reused = self.prefixes.reused_tokens - reused0,
                    prefill_ms = prefill.as_millis() as u64,
                    decode_steps = steps,
                    decode_ms = (t0.elapsed() - prefill).as_millis() as u64,
                    "batch"
                );
                Ok(g.finish().into_iter().map(|o| (o.text, o.finish.openai().to_string(), o.tokens.len())).collect())
            };
            match run() {
                Ok(outs) => {
                    for (k, (text, finish, n)) in outs.into_iter().enumerate() {
                        let i = index[k];
                        tracing::debug!(target: "keel_trainer::generated", finish = %finish, tokens = n, "{text}");
                        let (mut content, mut calls) = if batch[i].tools.is_empty() { (text.clone(), vec![]) } else { parse_calls(&text) };
                        if calls.is_empty() && !batch[i].tools.is_empty() && batch[i].tool_choice != ToolChoice::None {
                            // A call cut short by the token budget still has to parse.
                            if let Some(at) = text.find(CALL_OPEN) {
                                let body = text[at + CALL_OPEN.len()..].replace(super::constrain::CALL_CLOSE, "");
                                if let Some(call) = super::constrain::repair(&body, &batch[i].tools) {
                                    content = text[..at].trim().to_string();
                                    calls.push(call);
                                }
                            }
                        }
                        let tool_calls: Vec<ToolCall> = calls
                            .into_iter()
                            .enumerate()
                            .map(|(j, (name, args))| ToolCall { id: format!("call_{j}"), kind: "function".into(), function: FunctionCall { name, arguments: args.to_string() } })
                            .collect();
                        let finish_reason = if tool_calls.is_empty() { finish } else { "tool_calls".to_string() };
                        results[i] = Some(Ok(GenOutput { content, tool_calls, finish_reason, prompt_tokens: prompt_lens[k], completion_tokens: n }));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for &i in &index {
                        results[i] = Some(Err(anyhow::anyhow!("{msg}")));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("no result")))).collect()
    }

    fn set_adapter(&mut self, adapter: Option<&Path>) -> Result<String> {
        let old = self.version();
        match adapter {
            Some(a) => {
                let hash = crate::models::adapter_hash(a)?;
                self.model.load_adapter(a).with_context(|| format!("loading the adapter in {}", a.display()))?;
                self.adapter_hash = Some(hash);
            }
            None => {
                self.model.remove_adapter();
                self.adapter_hash = None;
            }
        }
        self.adapter = adapter.map(Path::to_path_buf);
        // Keys and values computed with the old weights are not the new model's: the old cache is
        // put aside (an A/B switches back to it), and the new version's taken out if it was there.
        let new = self.version();
        if new != old {
            let restored = match self.stashed.take() {
                Some((v, c)) if v == new => c,
                _ => PrefixCache::new(PREFIX_CACHE_TOKENS),
            };
            let previous = std::mem::replace(&mut self.prefixes, restored);
            self.stashed = Some((old, previous));
        }
        Ok(new)
    }

    fn adapter_path(&self) -> Option<PathBuf> {
        self.adapter.clone()
    }
}
