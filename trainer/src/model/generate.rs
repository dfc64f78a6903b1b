//! Batched KV-cache generation.
//!
//! Prompts are left-padded into one batch, prefilled in one forward pass, then extended one token
//! per step for every unfinished row. Each row has its own [`SamplingParams`] (temperature, top-k,
//! top-p, stop strings, end-of-sequence ids, a token budget and a seed), so a server can batch
//! unrelated requests. Sampling is deterministic for a seed: each row draws from its own SplitMix64
//! stream, so a row samples the same tokens alone or in a batch.
//!
//! [`Generator`] is the step-by-step form (for streaming and for constrained decoding, which plugs
//! in through [`LogitsProcessor`]); [`generate`] runs it to the end.

use tch::{Kind, Tensor};

use super::error::{ModelError, Result};
use super::rng::Rng;
use super::tokenizer::{IncrementalDecoder, Tokenizer};
use super::transformer::{KvCache, Transformer};

/// How one row samples and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// 1.0 disables nucleus sampling.
    pub top_p: f64,
    /// 0 disables top-k.
    pub top_k: usize,
    /// Stop when the generated text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Stop after one of these tokens (not part of the text).
    pub eos_ids: Vec<u32>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { max_new_tokens: 256, temperature: 0.0, top_p: 1.0, top_k: 0, stop: vec![], eos_ids: vec![], seed: 0 }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// A stop string.
    Stop,
    /// `max_new_tokens`, or the processor ended it.
    Length,
}

impl FinishReason {
    /// The OpenAI name (`stop` for both eos and stop strings).
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Eos | FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A per-step hook on the logits of each row, for constrained decoding.
pub trait LogitsProcessor {
    /// Called before row `row` picks its next token; may change `logits` (e.g. set forbidden
    /// tokens to `f32::NEG_INFINITY`). `generated` is what the row produced so far.
    fn process(&mut self, row: usize, generated: &[u32], logits: &mut [f32]);

    /// Called after row `row` picked `token`; returning false ends the row.
    fn accept(&mut self, _row: usize, _token: u32) -> bool {
        true
    }
}

/// What one row produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Every sampled token (an eos token included, text after a stop string included).
    pub tokens: Vec<u32>,
    /// The decoded text (special tokens skipped), cut before a stop string.
    pub text: String,
    pub finish: FinishReason,
}

struct Row {
    params: SamplingParams,
    rng: Rng,
    tokens: Vec<u32>,
    decoder: IncrementalDecoder,
    text: String,
    /// Text already handed out by `step` (for streaming); never past a possible stop string.
    emitted: usize,
    finish: Option<FinishReason>,
}

/// Keys and values of recent prompts, so a prompt that starts like one of them (the next step of
/// an agent episode: the same conversation and one more turn; another sample of the same task)
/// prefills only what is new. Prefilling dominates an agent step on a CPU: a 1,000-token state
/// costs about as much as generating 40 tokens of the answer. The cache holds a model's keys and
/// values: whoever changes the weights (an adapter swap) must [`PrefixCache::clear`] it.
#[derive(Debug, Default)]
pub struct PrefixCache {
    entries: Vec<PrefixEntry>,
    /// Positions held at most (all entries together).
    pub max_tokens: usize,
    clock: u64,
    /// Prompt tokens served from the cache, and prefilled, so far.
    pub reused_tokens: u64,
    pub prefilled_tokens: u64,
}

#[derive(Debug)]
struct PrefixEntry {
    ids: Vec<u32>,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    used: u64,
}

/// The shortest prefix worth reusing (below it, prefilling afresh costs about as much as the copy).
const MIN_REUSE: usize = 32;

impl PrefixCache {
    pub fn new(max_tokens: usize) -> PrefixCache {
        PrefixCache { max_tokens, ..Default::default() }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entry sharing the longest start with `p`, and how many positions to reuse (always
    /// leaving at least the last token of `p` to run, whose logits are needed).
    fn longest(&self, p: &[u32]) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let n = e.ids.iter().zip(p).take_while(|(a, b)| a == b).count().min(p.len() - 1);
            if n >= MIN_REUSE && best.is_none_or(|(_, m)| n > m) {
                best = Some((i, n));
            }
        }
        best
    }

    fn entry(&self, i: usize, n: usize) -> (Vec<Tensor>, Vec<Tensor>) {
        let e = &self.entries[i];
        let cut = |t: &Tensor| t.narrow(2, 0, n as i64);
        (e.k.iter().map(cut).collect(), e.v.iter().map(cut).collect())
    }

    fn insert(&mut self, ids: Vec<u32>, k: Vec<Tensor>, v: Vec<Tensor>) {
        self.clock += 1;
        // An entry that is a start of the new one is redundant.
        self.entries.retain(|e| !(e.ids.len() <= ids.len() && ids[..e.ids.len()] == e.ids[..]));
        if ids.len() > self.max_tokens {
            return;
        }
        self.entries.push(PrefixEntry { ids, k, v, used: self.clock });
        while self.entries.iter().map(|e| e.ids.len()).sum::<usize>() > self.max_tokens {
            let oldest = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i).expect("not empty");
            self.entries.remove(oldest);
        }
    }

    fn touch(&mut self, i: usize) {
        self.clock += 1;
        self.entries[i].used = self.clock;
    }
}

/// One token of one row, as [`Generator::step`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepToken {
    pub row: usize,
    pub token: u32,
    /// New text that is safe to show (no partial character, no prefix of a stop string).
    pub text: String,
    pub finish: Option<FinishReason>,
}

/// A batch being generated.
pub struct Generator<'m> {
    model: &'m Transformer,
    tok: &'m Tokenizer,
    rows: Vec<Row>,
    cache: KvCache,
    mask: Tensor,
    /// Logits of the last position of every row (b, vocab), f32 on the model's device.
    next_logits: Tensor,
}

impl<'m> Generator<'m> {
    /// Prefills the batch. Every prompt must be non-empty.
    pub fn new(model: &'m Transformer, tok: &'m Tokenizer, requests: Vec<(Vec<u32>, SamplingParams)>) -> Result<Generator<'m>> {
        Generator::with_prefixes(model, tok, requests, None)
    }

    /// [`Generator::new`], reusing the keys and values of earlier prompts that start the same way
    /// (and keeping this batch's prompts in `prefixes` for later ones).
    pub fn with_prefixes(model: &'m Transformer, tok: &'m Tokenizer, requests: Vec<(Vec<u32>, SamplingParams)>, prefixes: Option<&mut PrefixCache>) -> Result<Generator<'m>> {
        if requests.is_empty() {
            return Err(ModelError::Invalid("no prompts to generate from".into()));
        }
        let vocab = model.cfg.vocab_size;
        for (i, (p, _)) in requests.iter().enumerate() {
            if p.is_empty() {
                return Err(ModelError::Invalid(format!("prompt {i} is empty")));
            }
            if let Some(&t) = p.iter().find(|&&t| t as i64 >= vocab) {
                return Err(ModelError::Invalid(format!("prompt {i} has token {t} outside the vocabulary ({vocab})")));
            }
        }
        let b = requests.len() as i64;
        // Identical prompts (n samples of one request, K expansions of one search state) are
        // prefilled once; their rows share the keys and values by copy afterwards.
        let mut uniq: Vec<&[u32]> = Vec::new();
        let mut row_of: Vec<i64> = Vec::with_capacity(requests.len());
        for (p, _) in &requests {
            let i = match uniq.iter().position(|u| *u == p.as_slice()) {
                Some(i) => i,
                None => {
                    uniq.push(p);
                    uniq.len() - 1
                }
            };
            row_of.push(i as i64);
        }
        let u = uniq.len() as i64;
        let plen = requests.iter().map(|(p, _)| p.len()).max().unwrap_or(0) as i64;
        let max_new = requests.iter().map(|(_, s)| s.max_new_tokens).max().unwrap_or(0) as i64;
        let capacity = plen + max_new.max(1);
        if capacity > model.cfg.max_position_embeddings {
            tracing::warn!(capacity, max = model.cfg.max_position_embeddings, "generation runs past max_position_embeddings");
        }
        let pad = 0i64;
        let mut mask = vec![0i64; (u * plen) as usize];
        for (r, p) in uniq.iter().enumerate() {
            let off = r * plen as usize + (plen as usize - p.len());
            mask[off..off + p.len()].fill(1);
        }
        let device = model.device();
        let mut mask = Tensor::from_slice(&mask).view([u, plen]).to_device(device);
        let mut cache = model.new_cache(u, capacity);
        let reuse: Vec<Option<(usize, usize)>> = match prefixes.as_deref() {
            Some(pc) => uniq.iter().map(|p| pc.longest(p)).collect(),
            None => vec![None; uniq.len()],
        };
        let mut next_logits = if reuse.iter().all(Option::is_none) {
            // Every prompt from scratch: one left-padded batch.
            let mut ids = vec![pad; (u * plen) as usize];
            for (r, p) in uniq.iter().enumerate() {
                let off = r * plen as usize + (plen as usize - p.len());
                for (j, &t) in p.iter().enumerate() {
                    ids[off + j] = t as i64;
                }
            }
            let ids = Tensor::from_slice(&ids).view([u, plen]).to_device(device);
            tch::no_grad(|| {
                let h = model.forward_hidden(&ids, &mask, Some(&mut cache));
                model.logits(&h.narrow(1, plen - 1, 1)).squeeze_dim(1).to_kind(Kind::Float)
            })
        } else {
            // A prompt whose start was prefilled before (the previous step of the same episode,
            // another sample of the same task) runs only its new tokens, row by row, and its keys
            // and values are placed into the left-padded batch.
            let pc = prefixes.as_deref().expect("reuse implies a prefix cache");
            let mut logits = Vec::with_capacity(uniq.len());
            for (r, p) in uniq.iter().enumerate() {
                let len = p.len() as i64;
                let mut one = model.new_cache(1, len);
                let start = match reuse[r] {
                    Some((e, n)) => {
                        let (k, v) = pc.entry(e, n);
                        one.write_row(0, 0, &k, &v);
                        n as i64
                    }
                    None => 0,
                };
                let ids = Tensor::from_slice(&p[start as usize..].iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, len - start]).to_device(device);
                let ones = Tensor::ones([1, len], (Kind::Int64, device));
                let l = tch::no_grad(|| {
                    let h = model.forward_hidden(&ids, &ones, Some(&mut one));
                    model.logits(&h.narrow(1, len - start - 1, 1)).squeeze_dim(1).to_kind(Kind::Float)
                });
                let (k, v) = one.row_slice(0, 0, len);
                cache.write_row(r as i64, plen - len, &k, &v);
                logits.push(l);
            }
            tch::no_grad(|| Tensor::cat(&logits, 0))
        };
        if let Some(pc) = prefixes {
            for (r, p) in uniq.iter().enumerate() {
                let n = reuse[r].map_or(0, |(_, n)| n);
                pc.reused_tokens += n as u64;
                pc.prefilled_tokens += (p.len() - n) as u64;
            }
            for &(e, _) in reuse.iter().flatten() {
                pc.touch(e);
            }
            // What this batch prefilled is there for the next prompts that start with it.
            for (r, p) in uniq.iter().enumerate() {
                let len = p.len() as i64;
                let (k, v) = cache.row_slice(r as i64, plen - len, len);
                pc.insert(p.to_vec(), k, v);
            }
        }
        if u < b {
            let rows = Tensor::from_slice(&row_of).to_device(device);
            cache.select_rows(&rows);
            mask = mask.index_select(0, &rows);
            next_logits = next_logits.index_select(0, &rows);
        }
        let rows = requests
            .into_iter()
            .map(|(_, params)| Row {
                rng: Rng::new(params.seed),
                params,
                tokens: vec![],
                decoder: IncrementalDecoder::new(true),
                text: String::new(),
                emitted: 0,
                finish: None,
            })
            .collect();
        Ok(Generator { model, tok, rows, cache, mask, next_logits })
    }

    pub fn is_done(&self) -> bool {
        self.rows.iter().all(|r| r.finish.is_some())
    }

    /// Picks one token for every unfinished row and runs the model on them.
    pub fn step<'p>(&mut self, mut processor: Option<&mut (dyn LogitsProcessor + 'p)>) -> Result<Vec<StepToken>> {
        if self.is_done() {
            return Ok(vec![]);
        }
        let b = self.rows.len();
        let all_greedy = processor.is_none() && self.rows.iter().all(|r| r.params.temperature <= 0.0);
        let choices: Vec<u32> = if all_greedy {
            let am = self.next_logits.argmax(-1, false).to_device(tch::Device::Cpu);
            Vec::<i64>::try_from(&am)?.into_iter().map(|t| t as u32).collect()
        } else {
            let logits = self.next_logits.to_device(tch::Device::Cpu).contiguous();
            let vocab = logits.size()[1] as usize;
            let flat: Vec<f32> = Vec::try_from(logits.view(-1))?;
            let mut out = Vec::with_capacity(b);
            for (r, row) in self.rows.iter_mut().enumerate() {
                if row.finish.is_some() {
                    out.push(0);
                    continue;
                }
                let mut l = flat[r * vocab..(r + 1) * vocab].to_vec();
                if let Some(p) = processor.as_deref_mut() {
                    p.process(r, &row.tokens, &mut l);
                }
                out.push(sample(&mut l, &row.params, &mut row.rng));
            }
            out
        };
        let mut events = Vec::new();
        for (r, row) in self.rows.iter_mut().enumerate() {
            if row.finish.is_some() {
                continue;
            }
            let t = choices[r];
            row.tokens.push(t);
            let mut finish = None;
            if let Some(p) = processor.as_deref_mut()
                && !p.accept(r, t)
            {
                finish = Some(FinishReason::Length);
            }
            if row.params.eos_ids.contains(&t) {
                finish = Some(FinishReason::Eos);
            } else {
                let piece = row.decoder.push(self.tok, t)?;
                let before = row.text.len();
                row.text.push_str(&piece);
                if let Some(cut) = find_stop(&row.text, &row.params.stop, before) {
                    row.text.truncate(cut);
                    finish = Some(FinishReason::Stop);
                }
            }
            if finish.is_none() && row.tokens.len() >= row.params.max_new_tokens {
                finish = Some(FinishReason::Length);
            }
            if finish.is_some() && finish != Some(FinishReason::Stop) && finish != Some(FinishReason::Eos) {
                let rest = row.decoder.finish(self.tok)?;
                row.text.push_str(&rest);
            }
            row.finish = finish;
            // Hold back a tail that could still become a stop string.
            let safe = if finish.is_some() { row.text.len() } else { safe_len(&row.text, &row.params.stop) };
            let text = if safe > row.emitted { row.text[row.emitted..safe].to_string() } else { String::new() };
            row.emitted = row.emitted.max(safe);
            events.push(StepToken { row: r, token: t, text, finish });
        }
        if !self.is_done() {
            let device = self.model.device();
            let ids = Tensor::from_slice(&choices.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([b as i64, 1]).to_device(device);
            self.mask = Tensor::cat(&[&self.mask, &Tensor::ones([b as i64, 1], (Kind::Int64, device))], 1);
            if self.cache.len() >= self.cache.capacity() {
                return Err(ModelError::Invalid("KV cache capacity exceeded".into()));
            }
            self.next_logits = tch::no_grad(|| {
                self.model.forward(&ids, &self.mask, Some(&mut self.cache)).squeeze_dim(1).to_kind(Kind::Float)
            });
        }
        Ok(events)
    }

    /// Runs to the end and returns every row.
    pub fn run<'p>(mut self, mut processor: Option<&mut (dyn LogitsProcessor + 'p)>) -> Result<Vec<Generation>> {
        while !self.is_done() {
            self.step(processor.as_deref_mut())?;
        }
        Ok(self.finish())
    }

    /// The rows as they stand.
    pub fn finish(self) -> Vec<Generation> {
        self.rows
            .into_iter()
            .map(|r| Generation { tokens: r.tokens, text: r.text, finish: r.finish.unwrap_or(FinishReason::Length) })
            .collect()
    }
}

/// Generates for every request to the end.
pub fn generate(
    model: &Transformer,
    tok: &Tokenizer,
    requests: Vec<(Vec<u32>, SamplingParams)>,
    processor: Option<&mut (dyn LogitsProcessor + '_)>,
) -> Result<Vec<Generation>> {
    Generator::new(model, tok, requests)?.run(processor)
}

/// The byte offset of the first stop string that ends after `from` - its length.
fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let mut start = from.saturating_sub(s.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            text[start..].find(s.as_str()).map(|i| start + i)
        })
        .min()
}

/// The length of text that can be shown: all but a tail that is a prefix of some stop string.
fn safe_len(text: &str, stops: &[String]) -> usize {
    let mut safe = text.len();
    for s in stops {
        for k in (1..s.len()).rev() {
            if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                safe = safe.min(text.len() - k);
                break;
            }
        }
    }
    safe
}

/// Picks a token from one row of logits: argmax at temperature 0, else temperature, top-k, top-p
/// (as transformers' warpers, in that order) and a draw from `rng`.
pub fn sample(logits: &mut [f32], p: &SamplingParams, rng: &mut Rng) -> u32 {
    if p.temperature <= 0.0 {
        return argmax(logits);
    }
    let t = p.temperature as f32;
    if p.top_k == 0 && p.top_p >= 1.0 {
        // Plain temperature sampling needs no order: one pass for the maximum, one for the draw
        // (sorting the whole vocabulary for every token of every row cost more than the draw).
        let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        let weight = |l: f32| if l.is_finite() { (((l - max) / t) as f64).exp() } else { 0.0 };
        let sum: f64 = logits.iter().map(|&l| weight(l)).sum();
        let u = rng.uniform() * sum;
        let mut cum = 0.0;
        let mut last = 0;
        for (i, &l) in logits.iter().enumerate() {
            let w = weight(l);
            if w > 0.0 {
                cum += w;
                last = i;
                if u < cum {
                    return i as u32;
                }
            }
        }
        return last as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
    if idx.is_empty() {
        return argmax(logits);
    }
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if p.top_k > 0 && p.top_k < idx.len() {
        idx.truncate(p.top_k);
    }
    let max = logits[idx[0]] / t;
    let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] / t - max) as f64).exp()).collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= sum);
    if p.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (j, &q) in probs.iter().enumerate() {
            cum += q;
            if cum >= p.top_p {
                keep = j + 1;
                break;
            }
        }
        idx.truncate(keep);
        probs.truncate(keep);
        let s: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= s);
    }
    let u = rng.uniform();
    let mut cum = 0.0;
    for (j, &q) in probs.iter().enumerate() {
        cum += q;
        if u < cum {
            return idx[j] as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}
