//! Keel's model layer side by side with transformers, in one run, on the same model folder, ids and
//! machine: scoring throughput (the `score` / DPO reference pass) and batched greedy generation.
//!
//! `cargo bench -p keel-trainer --bench model [-- --small | --real] [--model DIR --device cpu --rounds 3 --reps 2 --vocab N]`
//!
//! - `--small`: a model made with `init-model --preset small` (hidden 256, 4 layers, GQA 8/2, vocab
//!   2048; `--vocab N` widens its vocabulary), random ids, batch 8.
//! - `--real`: the default real model (`.keel/models/smollm2-135m-instruct`, or `--model DIR`) on
//!   sequences shaped like an agent step: a 1,000-token prompt and a 60-token completion, batch 1
//!   and 4, ids of real text (this crate's sources), so greedy generations are comparable.
//! - Neither: `--small`, then `--real` when the real model is there (`cargo xtask setup` writes it);
//!   `--model DIR` alone runs the small shape on that folder.
//!
//! Equal work on both sides: transformers computes logits only for the completion positions
//! (`logits_to_keep`), as Keel does, and generates with `model.generate` (the last position only).
//! The Python side is `benches/model_reference.py`, run with `$KEEL_PYTHON` (else the repository's
//! `.venv/bin/python`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use keel_trainer::init_model::{InitOptions, init_model, random_weights};
use keel_trainer::model::rng::Rng;
use keel_trainer::model::{Config, Family, LoadOptions, Model, SamplingParams, Sequence, completion_logps, generate, pair_logps, parse_device, weights};
use serde_json::{Value, json};

/// The work both sides do.
#[derive(Clone)]
struct Shape {
    /// Scoring: `2 × pairs` sequences, sequences 2i and 2i + 1 sharing their prompt.
    pairs: usize,
    prompt_len: usize,
    completion_len: usize,
    /// Batch sizes of scoring and of generation (one generation batch of each size).
    batches: Vec<usize>,
    gen_prompt: usize,
    gen_new: usize,
    /// Ids of real text instead of random ids.
    text: bool,
    rounds: usize,
    reps: usize,
}

struct Args {
    small: bool,
    real: bool,
    model: Option<PathBuf>,
    device: String,
    /// Widen the made model's vocabulary to this many ids (new weights drawn at random), e.g.
    /// 151936 for Qwen2.5's; the tokenizer stays the small one (its ids are a subset).
    vocab: Option<i64>,
    /// Overrides of either shape.
    rounds: Option<usize>,
    reps: Option<usize>,
    pairs: Option<usize>,
    batches: Option<Vec<usize>>,
    gen_new: Option<usize>,
}

fn args() -> Args {
    let mut a = Args { small: false, real: false, model: None, device: "cpu".into(), vocab: None, rounds: None, reps: None, pairs: None, batches: None, gen_new: None };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = || v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--small" => a.small = true,
            "--real" => a.real = true,
            "--model" => a.model = Some(next().into()),
            "--device" => a.device = next(),
            "--vocab" => a.vocab = next().parse().ok(),
            "--rounds" => a.rounds = next().parse().ok(),
            "--reps" => a.reps = next().parse().ok(),
            "--pairs" => a.pairs = next().parse().ok(),
            "--batches" | "--batch-size" => a.batches = Some(next().split(',').filter_map(|s| s.trim().parse().ok()).collect()),
            "--gen-new" => a.gen_new = next().parse().ok(),
            _ => {
                i += 1;
                continue; // cargo's own flags (--bench)
            }
        }
        i += if matches!(v[i].as_str(), "--small" | "--real") { 1 } else { 2 };
    }
    a
}

impl Args {
    fn apply(&self, mut s: Shape) -> Shape {
        s.rounds = self.rounds.unwrap_or(s.rounds);
        s.reps = self.reps.unwrap_or(s.reps);
        s.pairs = self.pairs.unwrap_or(s.pairs);
        s.batches = self.batches.clone().filter(|b| !b.is_empty() && b.iter().all(|&b| b > 0)).unwrap_or(s.batches);
        s.gen_new = self.gen_new.unwrap_or(s.gen_new);
        s
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn main() {
    let a = args();
    // `--model DIR` alone is the small shape on that folder.
    let (run_small, run_real) = (!a.real, a.real || (!a.small && a.model.is_none()));
    if run_small {
        let shape = a.apply(Shape {
            pairs: 64,
            prompt_len: 192,
            completion_len: 64,
            batches: vec![8],
            gen_prompt: 64,
            gen_new: 64,
            text: false,
            rounds: 3,
            reps: 2,
        });
        let tmp = tempfile::tempdir().unwrap();
        let dir = match &a.model {
            Some(d) => d.clone(),
            None => {
                let d = tmp.path().join("model");
                init_model(&d, &InitOptions { preset: "small".into(), family: Family::Qwen2, seed: 1 }).unwrap();
                if let Some(v) = a.vocab {
                    let mut cfg = Config::load(&d).unwrap();
                    cfg.vocab_size = v;
                    std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap()).unwrap();
                    weights::save(&d.join("model.safetensors"), &random_weights(&cfg, 1)).unwrap();
                }
                d
            }
        };
        compare(&dir, &a.device, &shape);
    }
    if run_real {
        let dir = a.model.clone().unwrap_or_else(|| root().join(".keel/models/smollm2-135m-instruct"));
        if !dir.join("config.json").is_file() {
            println!("model bench --real: no model in {} (`cargo xtask setup model` writes it); skipped", dir.display());
            return;
        }
        // An agent step: the state (~1,000 tokens) and one action (~60). Few sequences: on the
        // 2-core machine one pass over 4 of them takes ~20 s a side.
        let shape = a.apply(Shape {
            pairs: 2,
            prompt_len: 1000,
            completion_len: 60,
            batches: vec![1, 4],
            gen_prompt: 1000,
            gen_new: 60,
            text: true,
            rounds: 2,
            reps: 1,
        });
        compare(&dir, &a.device, &shape);
    }
}

/// Token ids of [`common::source_text`].
fn source_ids(model: &Model) -> Vec<u32> {
    model.tokenizer.encode(&common::source_text()).unwrap()
}

fn compare(dir: &Path, device_name: &str, s: &Shape) {
    let device = parse_device(device_name).unwrap();
    let model = Model::load(dir, &LoadOptions { device, kind: None }).unwrap();
    let vocab = model.config.vocab_size as u64;
    let mut rng = Rng::new(42);
    let corpus = if s.text { source_ids(&model) } else { vec![] };
    let mut cursor = 0usize;
    // Random ids, or the next `n` ids of the text (wrapping around).
    let mut ids = |n: usize| -> Vec<u32> {
        if corpus.is_empty() {
            (0..n).map(|_| (rng.next_u64() % vocab) as u32).collect()
        } else {
            let out = (0..n).map(|k| corpus[(cursor + k) % corpus.len()]).collect();
            cursor += n;
            out
        }
    };
    let seqs: Vec<Sequence> = (0..s.pairs)
        .flat_map(|_| {
            let prompt = ids(s.prompt_len);
            [Sequence { prompt: prompt.clone(), completion: ids(s.completion_len) }, Sequence { prompt, completion: ids(s.completion_len) }]
        })
        .collect();
    let big = *s.batches.iter().max().unwrap();
    // One generation batch per size; prompt lengths differ a little so that batches are padded.
    let gen_prompts: BTreeMap<usize, Vec<Vec<u32>>> = s.batches.iter().map(|&b| (b, (0..b).map(|i| ids(s.gen_prompt - (i % 4) * 4)).collect())).collect();
    // `big` samples of one prompt, as a search expansion or `n` > 1 asks for (Keel prefills it once).
    let same: Vec<Vec<u32>> = vec![ids(s.prompt_len); big];
    let same_new = s.gen_new / 2;
    let params = SamplingParams { max_new_tokens: s.gen_new, ..Default::default() };
    let same_params = SamplingParams { max_new_tokens: same_new, ..Default::default() };

    let score_plain = |bs: usize| -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(bs) {
            let t = tch::no_grad(|| completion_logps(&model.transformer, chunk)).unwrap();
            out.extend(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu)).unwrap());
        }
        out
    };
    // What `keel-train score` does with pairs: each shared prompt once (`pair_logps`).
    let score_pairs = |bs: usize| -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(bs.max(2)) {
            let pairs: Vec<(&Sequence, &Sequence)> = chunk.chunks(2).map(|p| (&p[0], &p[1])).collect();
            let t = tch::no_grad(|| pair_logps(&model.transformer, &pairs)).unwrap();
            let v = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu)).unwrap();
            let b = pairs.len();
            for k in 0..b {
                out.extend([v[k], v[b + k]]);
            }
        }
        out
    };
    let run_gen = |prompts: &[Vec<u32>], p: &SamplingParams| generate(&model.transformer, &model.tokenizer, prompts.iter().map(|x| (x.clone(), p.clone())).collect(), None).unwrap();

    // transformers gets the same ids.
    let mut gen_spec: Vec<Value> = gen_prompts.iter().map(|(b, p)| json!({"name": format!("b{b}"), "prompts": p, "max_new_tokens": s.gen_new})).collect();
    gen_spec.push(json!({"name": "same", "prompts": same, "max_new_tokens": same_new}));
    let spec = json!({
        "device": device_name,
        "reps": s.reps,
        "score": seqs.iter().map(|x| json!([x.prompt, x.completion])).collect::<Vec<_>>(),
        "score_batches": s.batches,
        "generate": gen_spec,
    });
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/model_reference.py");
    let python_round = || -> Value {
        let out = Command::new(python()).arg(&script).arg(dir).arg(&spec_path).output().expect("running python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap()).unwrap()
    };

    // A short warm-up (first allocations, thread pools); the rounds' best time discounts the rest.
    run_gen(&[ids(32)], &SamplingParams { max_new_tokens: 2, ..Default::default() });
    let best = |m: &mut BTreeMap<String, f64>, k: &str, t: f64| {
        let e = m.entry(k.to_string()).or_insert(f64::INFINITY);
        *e = e.min(t);
    };
    // Rounds alternate between Keel and transformers (best time of each side counts), so that a
    // busy machine slows both alike.
    let mut keel: BTreeMap<String, f64> = BTreeMap::new();
    let mut py_t: BTreeMap<String, f64> = BTreeMap::new();
    let mut scores: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let mut pair_scores = vec![];
    let mut generated: BTreeMap<usize, Vec<Vec<u32>>> = BTreeMap::new();
    let mut py = Value::Null;
    for _ in 0..s.rounds {
        for _ in 0..s.reps {
            for &b in &s.batches {
                let t = Instant::now();
                scores.insert(b, score_plain(b));
                best(&mut keel, &format!("score b{b}"), t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            pair_scores = score_pairs(big);
            best(&mut keel, "pairs", t.elapsed().as_secs_f64());
            for (&b, prompts) in &gen_prompts {
                let t = Instant::now();
                generated.insert(b, run_gen(prompts, &params).into_iter().map(|g| g.tokens).collect());
                best(&mut keel, &format!("gen b{b}"), t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            run_gen(&same, &same_params);
            best(&mut keel, "gen same", t.elapsed().as_secs_f64());
        }
        py = python_round();
        for &b in &s.batches {
            best(&mut py_t, &format!("score b{b}"), py["score_s"][b.to_string()].as_f64().unwrap());
        }
        for name in gen_prompts.keys().map(|b| format!("b{b}")).chain(["same".to_string()]) {
            best(&mut py_t, &format!("gen {name}"), py["generate_s"][&name].as_f64().unwrap());
        }
    }

    // The two agree before their speeds are compared.
    for &b in &s.batches {
        let py_scores: Vec<f64> = serde_json::from_value(py["scores"][b.to_string()].clone()).unwrap();
        assert_eq!(py_scores.len(), seqs.len());
        for (i, (k, p)) in scores[&b].iter().zip(&py_scores).enumerate() {
            assert!((*k as f64 - p).abs() < 1e-2 * p.abs().max(1.0), "batch {b}, sequence {i}: keel {k}, transformers {p}");
        }
    }
    let plain = &scores[&big];
    for (i, (a, b)) in plain.iter().zip(&pair_scores).enumerate() {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "sequence {i}: the shared-prompt path gives {b}, the plain one {a}");
    }
    // Greedy generations: the first token of every row must agree (the argmax after the same
    // prefill); later tokens may part where two logits are within rounding of each other (f32,
    // different kernels and batch shapes), so those are counted, not asserted.
    let (mut same_rows, mut rows_n, mut common, mut first_diff) = (0, 0, 0, vec![]);
    for (&b, rows) in &generated {
        let py_rows: Vec<Vec<u32>> = serde_json::from_value(py["generated"][format!("b{b}")].clone()).unwrap();
        assert_eq!(rows.len(), py_rows.len());
        for (i, (k, p)) in rows.iter().zip(&py_rows).enumerate() {
            assert_eq!(k.len(), p.len(), "batch {b}, row {i}: keel generated {} tokens, transformers {}", k.len(), p.len());
            assert_eq!(k.first(), p.first(), "batch {b}, row {i}: the first greedy token differs");
            let c = k.iter().zip(p).take_while(|(x, y)| x == y).count();
            common += c;
            same_rows += usize::from(c == k.len());
            rows_n += 1;
            if c < k.len() {
                first_diff.push(c);
            }
        }
    }

    let threads = tch::get_num_threads();
    println!(
        "model: {} (hidden {}, {} layers, vocab {}), device {device_name}, torch threads: keel {threads} / python {}, best of {} rounds x {} reps",
        dir.display(),
        model.config.hidden_size,
        model.config.num_hidden_layers,
        model.config.vocab_size,
        py["threads"],
        s.rounds,
        s.reps,
    );
    println!("scoring: {} sequences of {}+{} tokens; generation: prompts of {}-{} tokens, {} new tokens", seqs.len(), s.prompt_len, s.completion_len, s.gen_prompt - 12.min(s.gen_prompt - 1), s.gen_prompt, s.gen_new);
    println!("| | Keel (tch) | transformers | Keel / transformers |");
    println!("|---|---|---|---|");
    let n = seqs.len() as f64;
    // Three significant figures: the real model's rates are fractions of a sequence per second.
    let fig = |x: f64| if x >= 100.0 { format!("{x:.0}") } else if x >= 10.0 { format!("{x:.1}") } else if x >= 1.0 { format!("{x:.2}") } else { format!("{x:.3}") };
    let row = |what: String, k: f64, p: f64, unit: &str| println!("| {what}, {unit} | {} | {} | {:.2}x |", fig(k), fig(p), k / p);
    for &b in &s.batches {
        let key = format!("score b{b}");
        row(format!("scoring, batch {b}"), n / keel[&key], n / py_t[&key], "sequences/s");
    }
    let key = format!("score b{big}");
    row(format!("scoring as pairs (`score`: each shared prompt once; transformers scores each sequence whole), batch {big}"), n / keel["pairs"], n / py_t[&key], "sequences/s");
    for &b in &s.batches {
        let key = format!("gen b{b}");
        let tokens = (b * s.gen_new) as f64;
        row(format!("greedy generation, batch {b}, {} new tokens", s.gen_new), tokens / keel[&key], tokens / py_t[&key], "new tokens/s (prefill included)");
    }
    let tokens = (big * same_new) as f64;
    row(format!("{big} greedy samples of one {}-token prompt, {same_new} new tokens each (Keel prefills it once, transformers each copy)", s.prompt_len), tokens / keel["gen same"], tokens / py_t["gen same"], "new tokens/s (prefill included)");
    let secs = |m: &BTreeMap<String, f64>| m.iter().map(|(k, v)| format!("{k} {v:.2}")).collect::<Vec<_>>().join(", ");
    println!("best times, s: keel {}; transformers {}", secs(&keel), secs(&py_t));
    println!(
        "scores agree within 1 %; greedy generations identical to transformers: {same_rows} of {rows_n} rows ({:.0} % of tokens before the first difference; rows that differ part at tokens {first_diff:?})",
        100.0 * common as f64 / (rows_n * s.gen_new) as f64
    );
}
