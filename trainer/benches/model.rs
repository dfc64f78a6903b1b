//! Keel's model layer side by side with transformers, in one run, on the same model folder, ids and
//! machine: scoring throughput (the `score` / DPO reference pass) and batched greedy generation.
//!
//! `cargo bench -p keel-trainer --bench model [-- --preset small --device cpu --rounds 3 --reps 2 --vocab N]`
//!
//! The model is `init-model --preset small` (hidden 256, 4 layers, GQA 8/2, vocab 2048) unless
//! `--model DIR` names another folder. The Python side is `benches/model_reference.py`, run with
//! `$KEEL_PYTHON` (else the repository's `.venv/bin/python`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use keel_trainer::init_model::{InitOptions, init_model, random_weights};
use keel_trainer::model::rng::Rng;
use keel_trainer::model::{Config, Family, LoadOptions, Model, SamplingParams, Sequence, completion_logps, generate, pair_logps, parse_device, weights};
use serde_json::{Value, json};

struct Args {
    preset: String,
    model: Option<PathBuf>,
    device: String,
    reps: usize,
    rounds: usize,
    pairs: usize,
    prompt_len: usize,
    completion_len: usize,
    batch_size: usize,
    gen_batch: usize,
    gen_prompt: usize,
    gen_new: usize,
    /// Widen the made model's vocabulary to this many ids (new weights drawn at random), e.g.
    /// 151936 for Qwen2.5's; the tokenizer stays the small one (its ids are a subset).
    vocab: Option<i64>,
}

fn args() -> Args {
    let mut a = Args {
        preset: "small".into(),
        model: None,
        device: "cpu".into(),
        reps: 2,
        rounds: 3,
        pairs: 64,
        prompt_len: 192,
        completion_len: 64,
        batch_size: 8,
        gen_batch: 8,
        gen_prompt: 64,
        gen_new: 64,
        vocab: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = || v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--preset" => a.preset = next(),
            "--model" => a.model = Some(next().into()),
            "--device" => a.device = next(),
            "--reps" => a.reps = next().parse().unwrap_or(2),
            "--rounds" => a.rounds = next().parse().unwrap_or(3),
            "--pairs" => a.pairs = next().parse().unwrap_or(64),
            "--batch-size" => a.batch_size = next().parse().unwrap_or(8),
            "--gen-batch" => a.gen_batch = next().parse().unwrap_or(8),
            "--gen-new" => a.gen_new = next().parse().unwrap_or(64),
            "--vocab" => a.vocab = next().parse().ok(),
            _ => {
                i += 1;
                continue; // cargo's own flags (--bench)
            }
        }
        i += 2;
    }
    a
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = match &a.model {
        Some(d) => d.clone(),
        None => {
            let d = tmp.path().join("model");
            init_model(&d, &InitOptions { preset: a.preset.clone(), family: Family::Qwen2, seed: 1 }).unwrap();
            if let Some(v) = a.vocab {
                let mut cfg = Config::load(&d).unwrap();
                cfg.vocab_size = v;
                std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap()).unwrap();
                weights::save(&d.join("model.safetensors"), &random_weights(&cfg, 1)).unwrap();
            }
            d
        }
    };
    let device = parse_device(&a.device).unwrap();
    let model = Model::load(&dir, &LoadOptions { device, kind: None }).unwrap();
    let vocab = model.config.vocab_size as u64;
    let mut rng = Rng::new(42);
    let mut ids = |n: usize| -> Vec<u32> { (0..n).map(|_| (rng.next_u64() % vocab) as u32).collect() };
    // Pairs: sequences 2i and 2i + 1 share their prompt, as a preference pair's chosen and rejected
    // sides do.
    let seqs: Vec<Sequence> = (0..a.pairs)
        .flat_map(|_| {
            let prompt = ids(a.prompt_len);
            [Sequence { prompt: prompt.clone(), completion: ids(a.completion_len) }, Sequence { prompt, completion: ids(a.completion_len) }]
        })
        .collect();
    let prompts: Vec<Vec<u32>> = (0..a.gen_batch).map(|i| ids(a.gen_prompt - (i % 4) * 4)).collect();

    // Keel.
    let score_all = || -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(a.batch_size) {
            let t = tch::no_grad(|| completion_logps(&model.transformer, chunk)).unwrap();
            out.extend(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu)).unwrap());
        }
        out
    };
    // What `keel-train score` does with pairs: each shared prompt once (`pair_logps`).
    let score_pairs = || -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in seqs.chunks(a.batch_size) {
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
    let params = SamplingParams { max_new_tokens: a.gen_new, ..Default::default() };
    // n samples of one long prompt, as a search expansion asks for (Keel prefills it once).
    let same: Vec<Vec<u32>> = vec![ids(a.prompt_len); a.gen_batch];
    let same_new = a.gen_new / 2;
    let same_params = SamplingParams { max_new_tokens: same_new, ..Default::default() };
    let gen_same = || generate(&model.transformer, &model.tokenizer, same.iter().map(|p| (p.clone(), same_params.clone())).collect(), None).unwrap();
    let gen_all = || generate(&model.transformer, &model.tokenizer, prompts.iter().map(|p| (p.clone(), params.clone())).collect(), None).unwrap();
    // transformers gets the same ids.
    let spec = json!({
        "device": a.device,
        "batch_size": a.batch_size,
        "reps": a.reps,
        "score": seqs.iter().map(|s| json!([s.prompt, s.completion])).collect::<Vec<_>>(),
        "generate": {"prompts": prompts, "max_new_tokens": a.gen_new},
        "generate_same": {"prompts": same, "max_new_tokens": same_new},
    });
    let spec_path = tmp.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/model_reference.py");
    let python_round = || -> Value {
        let out = Command::new(python()).arg(&script).arg(&dir).arg(&spec_path).output().expect("running python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap()).unwrap()
    };

    // Rounds alternate between Keel and transformers (best time of each side counts), so that a
    // busy machine slows both alike.
    score_all();
    gen_all();
    let (mut keel_score_s, mut keel_gen_s, mut keel_pairs_s) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let (mut keel_same_s, mut py_same_s) = (f64::INFINITY, f64::INFINITY);
    let mut pair_scores = vec![];
    let (mut py_score_s, mut py_gen_s) = (f64::INFINITY, f64::INFINITY);
    let mut scores = vec![];
    let mut generated = vec![];
    let mut py = Value::Null;
    for _ in 0..a.rounds {
        for _ in 0..a.reps {
            let t = Instant::now();
            scores = score_all();
            keel_score_s = keel_score_s.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            pair_scores = score_pairs();
            keel_pairs_s = keel_pairs_s.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            generated = gen_all();
            keel_gen_s = keel_gen_s.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            gen_same();
            keel_same_s = keel_same_s.min(t.elapsed().as_secs_f64());
        }
        py = python_round();
        py_score_s = py_score_s.min(py["score_s"].as_f64().unwrap());
        py_gen_s = py_gen_s.min(py["generate_s"].as_f64().unwrap());
        py_same_s = py_same_s.min(py["generate_same_s"].as_f64().unwrap());
    }

    // The two agree before their speeds are compared.
    let py_scores: Vec<f64> = serde_json::from_value(py["scores"].clone()).unwrap();
    for (k, p) in scores.iter().zip(&py_scores) {
        assert!((*k as f64 - p).abs() < 1e-2 * p.abs().max(1.0), "scores differ: keel {k} python {p}");
    }
    for (i, (a, b)) in scores.iter().zip(&pair_scores).enumerate() {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "sequence {i}: the shared-prompt path gives {b}, the plain one {a}");
    }
    let py_gen: Vec<Vec<u32>> = serde_json::from_value(py["generated"].clone()).unwrap();
    let same_gen = py_gen.iter().zip(&generated).all(|(p, k)| *p == k.tokens);

    let score_tokens = (seqs.len() * (a.prompt_len + a.completion_len)) as f64;
    let gen_tokens = (a.gen_batch * a.gen_new) as f64;
    println!(
        "model: {} (hidden {}, {} layers, vocab {}), device {}, torch threads: keel {} / python {}",
        dir.display(),
        model.config.hidden_size,
        model.config.num_hidden_layers,
        model.config.vocab_size,
        a.device,
        tch::get_num_threads(),
        py["threads"]
    );
    println!(
        "scoring: {} sequences of {}+{} tokens, batch {}",
        seqs.len(),
        a.prompt_len,
        a.completion_len,
        a.batch_size
    );
    println!("| | Keel (tch) | transformers | Keel / transformers |");
    println!("|---|---|---|---|");
    println!(
        "| scoring, sequences/s | {:.1} | {:.1} | {:.2}x |",
        seqs.len() as f64 / keel_score_s,
        seqs.len() as f64 / py_score_s,
        py_score_s / keel_score_s
    );
    println!("| scoring, tokens/s | {:.0} | {:.0} | |", score_tokens / keel_score_s, score_tokens / py_score_s);
    println!(
        "| scoring as pairs (`score`: each shared prompt once), sequences/s | {:.1} | {:.1} | {:.2}x |",
        seqs.len() as f64 / keel_pairs_s,
        seqs.len() as f64 / py_score_s,
        py_score_s / keel_pairs_s
    );
    println!(
        "| generation (batch {}, {} new tokens), tokens/s | {:.0} | {:.0} | {:.2}x |",
        a.gen_batch,
        a.gen_new,
        gen_tokens / keel_gen_s,
        gen_tokens / py_gen_s,
        py_gen_s / keel_gen_s
    );
    let same_tokens = (a.gen_batch * same_new) as f64;
    println!(
        "| generation, {} samples of one {}-token prompt ({} new tokens each), tokens/s | {:.0} | {:.0} | {:.2}x |",
        a.gen_batch,
        a.prompt_len,
        same_new,
        same_tokens / keel_same_s,
        same_tokens / py_same_s,
        py_same_s / keel_same_s
    );
    println!("greedy tokens identical to transformers: {same_gen}");
}
