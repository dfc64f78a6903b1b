//! `keel-train score`: the log-probabilities of each pair's chosen and rejected completions.
//!
//! One JSON line per pair, `{"chosen_logp": …, "rejected_logp": …}`, each the sum of log-softmax
//! over the completion's tokens given the prompt, in TRL's convention: prompt and completion are
//! tokenized separately without special tokens and concatenated; conversational pairs (message
//! lists, as `keel-train pairs` writes them, with `tools`) go through the chat template, the
//! prompt with the generation prompt and the completion as the rendering of prompt + completion
//! minus the prompt's rendering. Plain string pairs are tokenized as they are.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::model::{LoadOptions, Model, Sequence, pair_logps, parse_device};

/// Options of `score`.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub pairs: PathBuf,
    pub device: String,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

/// A pair read from a pairs file.
#[derive(Debug, Clone)]
pub struct PairInput {
    pub prompt: Value,
    pub chosen: Value,
    pub rejected: Value,
    pub tools: Option<Vec<Value>>,
}

/// Reads a pairs JSONL file (blank lines skipped); an error names the line.
pub fn read_pairs(path: &Path) -> Result<Vec<PairInput>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let field = |k: &str| -> Result<Value> {
            match v.get(k) {
                Some(x @ (Value::String(_) | Value::Array(_) | Value::Object(_))) => Ok(x.clone()),
                _ => bail!("{}:{}: `{k}` must be a string or a message list", path.display(), n + 1),
            }
        };
        let tools = match v.get("tools") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.clone()),
            // TRL accepts tools as a JSON string too.
            Some(Value::String(s)) => Some(
                serde_json::from_str::<Vec<Value>>(s).with_context(|| format!("{}:{}: `tools` is not a JSON list", path.display(), n + 1))?,
            ),
            Some(_) => bail!("{}:{}: `tools` must be a list", path.display(), n + 1),
        };
        out.push(PairInput { prompt: field("prompt")?, chosen: field("chosen")?, rejected: field("rejected")?, tools });
    }
    Ok(out)
}

/// (chosen_logp, rejected_logp) of every pair, `batch_size` pairs per forward pass.
pub fn score_pairs(model: &Model, pairs: &[PairInput], batch_size: usize) -> Result<Vec<(f64, f64)>> {
    let mut seqs: Vec<(Sequence, Sequence)> = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let tools = p.tools.as_deref();
        let c = model.encode_pair(&p.prompt, &p.chosen, tools).with_context(|| format!("pair {}: chosen", i + 1))?;
        let r = model.encode_pair(&p.prompt, &p.rejected, tools).with_context(|| format!("pair {}: rejected", i + 1))?;
        seqs.push((c, r));
    }
    // Sort by length so that each batch pads little; scores go back to their places. Each pair's
    // prompt goes through the model once (`pair_logps`).
    let len = |s: &Sequence| s.prompt.len() + s.completion.len();
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| len(&seqs[i].0).max(len(&seqs[i].1)));
    let mut out = vec![(0f64, 0f64); seqs.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<(&Sequence, &Sequence)> = chunk.iter().map(|&i| (&seqs[i].0, &seqs[i].1)).collect();
        let t = tch::no_grad(|| pair_logps(&model.transformer, &batch))?;
        let v: Vec<f32> = Vec::try_from(t.to_device(tch::Device::Cpu))?;
        let b = chunk.len();
        for (k, &i) in chunk.iter().enumerate() {
            out[i] = (v[k] as f64, v[b + k] as f64);
        }
    }
    Ok(out)
}

/// Runs `score`, writing JSON lines to `out`.
pub fn run(opts: &ScoreOptions, out: &mut dyn Write) -> Result<()> {
    let device = parse_device(&opts.device)?;
    let mut model = Model::load(&opts.model, &LoadOptions { device, kind: None })
        .with_context(|| format!("loading model {}", opts.model.display()))?;
    if let Some(a) = &opts.adapter {
        model.load_adapter(a).with_context(|| format!("loading adapter {}", a.display()))?;
    }
    let pairs = read_pairs(&opts.pairs)?;
    for (c, r) in score_pairs(&model, &pairs, opts.batch_size)? {
        writeln!(out, "{}", json!({"chosen_logp": c, "rejected_logp": r}))?;
    }
    out.flush()?;
    Ok(())
}
