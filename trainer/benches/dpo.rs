//! DPO training throughput, Keel against TRL's DPOTrainer, side by side in one run.
//!
//! `cargo bench -p keel-trainer --bench dpo -- --small` (CPU): makes a model with `init-model`
//! (preset from `KEEL_BENCH_PRESET`, default `small`) and synthetic pairs, tokenizes them once with
//! Keel, then trains one epoch with Keel (`dpo::run`) and with TRL (`tests/py/dpo_trl.py train`:
//! DPOTrainer, PEFT LoRA on all linear layers, precomputed reference) on the same token ids and
//! hyper-parameters, and prints the training tokens per second of both. Tokens are prompt +
//! completion of the chosen and the rejected sequence, no padding; the time covers the reference
//! pass and the training loop on both sides (not loading the model).
//!
//! `cargo bench -p keel-trainer --bench dpo -- --real [--model DIR --pairs 4 --batch-size 1]`: the
//! default real model (`.keel/models/smollm2-135m-instruct`) on pairs shaped like the agent's (a
//! ~1,000-token prompt of real text, completions of 40–80 tokens), a few steps each side; before
//! the speeds, the first step's losses, the reference log-probs and TRL's loss under Keel's
//! trained adapter are checked against Keel's. With neither `--small` nor `--real` the bench runs
//! both (`--real` only when the model is there).
//!
//! Both: `--rounds N` (default 2) runs Keel and TRL alternately N times each; the best tokens/s of
//! each side counts (the machine is shared: a busy stretch then slows both alike).
//!
//! TRL's configuration (`TRL_FLAGS`), so that both sides do the same work:
//! - `padding_free=True`, as asked of the comparison; TRL 1.16 warns that it is disabled since its
//!   DPO refactor and pads each batch to its longest sequence (it has no other effect there);
//! - the LM head projected only at completion positions (what `use_logits_to_keep` did; TRL 1.16's
//!   DPOConfig no longer has it, and its fused LM head scores only the labelled positions only
//!   where Triton runs: the script makes it take that path on CPU too, with the same torch kernel);
//! - no gradient checkpointing: TRL 1.16 turns it on by default and recomputes activations in the
//!   backward pass; Keel keeps them.
//!
//! `cargo bench -p keel-trainer --bench dpo -- --gpu`: Keel alone on CUDA (bf16), a model of
//! Qwen2.5-0.5B's shape with random weights; prints tokens/s and the model FLOPs utilization.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_trainer::dpo::DpoObjective;
use keel_trainer::init_model::{InitOptions, init_model, random_weights};
use keel_trainer::model::rng::Rng;
use keel_trainer::model::{Config, Family, LoadOptions, Model, weights};
use keel_trainer::train::TrainOptions;
use keel_trainer::train::data::{load_pairs, write_pair_ids};
use serde_json::{Value, json};

const WORDS: [&str; 16] = [
    "parse", "token", "buffer", "index", "return", "value", "error", "match", "iterator", "closure", "struct", "field",
    "option", "result", "string", "vector",
];

/// `n` pairs; prompts of `prompt_words` words and completions of `completion_words` words, each
/// length drawn uniformly from the range.
fn pairs(n: usize, prompt_words: (usize, usize), completion_words: (usize, usize), seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let mut words = |(lo, hi): (usize, usize)| -> String {
        let k = lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
        (0..k).map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
    };
    (0..n)
        .map(|_| {
            let p = words(prompt_words);
            let c = words(completion_words);
            let r = words(completion_words);
            json!({"prompt": format!("fix: {p}\n"), "chosen": format!("{c} done."), "rejected": format!("{r} oops!")})
        })
        .collect()
}

fn write_lines(path: &Path, rows: &[Value]) {
    std::fs::write(path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// Runs `tests/py/dpo_trl.py ARGS` and returns the JSON of its last line, or its standard error.
fn trl(args: &[&str], dir: &Path) -> Result<Value, String> {
    let script = dir.join("dpo_trl.py");
    std::fs::write(&script, include_str!("../tests/py/dpo_trl.py")).unwrap();
    let out = Command::new(python()).arg(&script).args(args).env("TMPDIR", dir).output().expect("running python");
    if !out.status.success() {
        // A process killed for memory says nothing on stderr: the status says it.
        return Err(format!("{}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("")).unwrap())
}

fn opts(model: &Path, data: &Path, out: &Path, device: &str) -> TrainOptions {
    let mut o = TrainOptions::new(model.to_path_buf(), data.to_path_buf(), out.to_path_buf());
    o.lr = 5e-5;
    o.epochs = 1;
    o.batch_size = 8;
    o.save_steps = 0;
    o.device = device.into();
    o
}

/// How TRL runs in every comparison (see the module's doc).
const TRL_FLAGS: [&str; 3] = ["--padding-free", "--completion-logits", "--no-gradient-checkpointing"];

/// The best tokens/s of each side over `rounds` alternating runs, each into a fresh folder.
struct Best {
    keel: keel_trainer::train::Summary,
    trl: Value,
}

fn alternate(rounds: usize, dir: &Path, keel_opts: impl Fn(&Path) -> TrainOptions, trl_args: impl Fn(&Path) -> Vec<String>) -> Result<Best, String> {
    let mut best: Option<Best> = None;
    for r in 0..rounds.max(1) {
        let keel = keel_trainer::dpo::run(&keel_opts(&dir.join(format!("keel{r}")))).unwrap().summary;
        let args = trl_args(&dir.join(format!("trl{r}")));
        let trl = trl(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir)?;
        println!(
            "  round {}: keel {:.0} tokens/s ({:.1} s), trl {:.0} tokens/s ({:.1} s)",
            r + 1,
            keel.tokens_per_second,
            keel.train_runtime,
            trl["tokens_per_second"].as_f64().unwrap(),
            trl["runtime"].as_f64().unwrap()
        );
        best = Some(match best {
            None => Best { keel, trl },
            Some(b) => Best {
                keel: if keel.tokens_per_second > b.keel.tokens_per_second { keel } else { b.keel },
                trl: if trl["tokens_per_second"].as_f64() > b.trl["tokens_per_second"].as_f64() { trl } else { b.trl },
            },
        });
    }
    Ok(best.unwrap())
}

fn report(b: &Best) {
    let tps = b.trl["tokens_per_second"].as_f64().unwrap();
    println!(
        "  keel  {:>9.0} tokens/s  ({:.2} s, {} steps, train_loss {:.4})",
        b.keel.tokens_per_second, b.keel.train_runtime, b.keel.steps, b.keel.train_loss
    );
    println!(
        "  trl   {:>9.0} tokens/s  ({:.2} s, {} steps, last loss {:.4})",
        tps,
        b.trl["runtime"].as_f64().unwrap(),
        b.trl["steps"],
        b.trl["last_loss"].as_f64().unwrap_or(f64::NAN)
    );
    println!("  keel / trl = {:.2}x (best round of each)", b.keel.tokens_per_second / tps);
}

fn cpu(rounds: usize) {
    let preset = std::env::var("KEEL_BENCH_PRESET").unwrap_or_else(|_| "small".into());
    let n: usize = std::env::var("KEEL_BENCH_PAIRS").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    init_model(&model, &InitOptions { preset: preset.clone(), family: Family::Qwen2, seed: 0 }).unwrap();
    // Pairs of even length, then pairs whose prompts vary as recorded states do (a state grows
    // along an episode) with one-action completions.
    side_by_side(&model, &preset, n, rounds, "even lengths", (48, 48), (32, 32), &dir.path().join("even"));
    side_by_side(&model, &preset, n, rounds, "varied lengths", (16, 160), (8, 64), &dir.path().join("varied"));
}

#[allow(clippy::too_many_arguments)]
fn side_by_side(model: &Path, preset: &str, n: usize, rounds: usize, what: &str, prompt: (usize, usize), completion: (usize, usize), dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let model = model.to_path_buf();
    let data = dir.join("pairs.jsonl");
    write_lines(&data, &pairs(n, prompt, completion, 1));
    let m = Model::load(&model, &LoadOptions::default()).unwrap();
    let (encoded, _) = load_pairs(&data, &m, 1024).unwrap();
    let ids = dir.join("ids.jsonl");
    write_pair_ids(&encoded, &ids).unwrap();
    drop(m);
    let mean_len = encoded.iter().map(|p| p.tokens()).sum::<usize>() as f64 / (2 * encoded.len()) as f64;
    let threads = tch::get_num_threads();
    println!(
        "dpo bench (CPU, {threads} threads): preset {preset}, {n} pairs of {what}, mean sequence {mean_len:.0} tokens, batch 8, 1 epoch, LoRA r16 α32 on all linear layers, best of {rounds} rounds"
    );
    let trl_args = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["train", model.to_str().unwrap(), ids.to_str().unwrap(), out.to_str().unwrap()].map(String::from).to_vec();
        v.extend(["--lr", "5e-5", "--epochs", "1", "--batch-size", "8", "--max-length", "1024", "--threads", &threads.to_string()].map(String::from));
        v.extend(TRL_FLAGS.map(String::from));
        v
    };
    match alternate(rounds, dir, |out| opts(&model, &data, out, "cpu"), trl_args) {
        Ok(b) => report(&b),
        Err(e) => println!("  trl   failed: {e}"),
    }
}

/// Qwen2.5-0.5B's shape (494M parameters with the tied embedding), random weights, bf16.
fn gpu() {
    if !tch::Cuda::is_available() {
        println!("dpo bench --gpu: CUDA is not available here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    init_model(&model, &InitOptions { preset: "tiny".into(), family: Family::Qwen2, seed: 0 }).unwrap();
    let mut cfg = Config::load(&model).unwrap();
    cfg.vocab_size = 151_936;
    cfg.hidden_size = 896;
    cfg.intermediate_size = 4864;
    cfg.num_hidden_layers = 24;
    cfg.num_attention_heads = 14;
    cfg.num_key_value_heads = 2;
    cfg.head_dim = 64;
    cfg.dtype = Some("bfloat16".into());
    std::fs::write(model.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap()).unwrap();
    let t: Vec<(String, tch::Tensor)> =
        random_weights(&cfg, 0).into_iter().map(|(n, t)| (n, t.to_kind(tch::Kind::BFloat16))).collect();
    let params: i64 = t.iter().map(|(_, t)| t.numel() as i64).sum();
    weights::save(&model.join("model.safetensors"), &t).unwrap();
    drop(t);

    let n: usize = std::env::var("KEEL_BENCH_PAIRS").ok().and_then(|s| s.parse().ok()).unwrap_or(512);
    let bs: usize = std::env::var("KEEL_BENCH_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let data = dir.path().join("pairs.jsonl");
    write_lines(&data, &pairs(n, (96, 288), (48, 144), 2));
    let mut o = opts(&model, &data, &dir.path().join("keel"), "cuda");
    o.batch_size = bs;
    let m = Model::load(&model, &LoadOptions { device: tch::Device::Cpu, kind: Some(tch::Kind::Float) }).unwrap();
    let (encoded, _) = load_pairs(&data, &m, 1024).unwrap();
    drop(m);
    let tokens: usize = encoded.iter().map(|p| p.tokens()).sum();
    let mean_len = tokens as f64 / (2 * encoded.len()) as f64;
    let s = keel_trainer::dpo::run(&o).unwrap().summary;
    // Matmul FLOPs per token: 2·N forward; with frozen base weights the backward pass computes
    // activation gradients only (another 2·N; LoRA's own are negligible). Attention scores and
    // values add 4·L·T·d forward per token (causal: half of that is work), doubled in backward.
    let (l, d) = (cfg.num_hidden_layers as f64, (cfg.num_attention_heads * cfg.head_dim) as f64);
    let attn = 4.0 * l * mean_len * d * 0.5;
    let fwd = 2.0 * params as f64 + attn;
    let flops = tokens as f64 * (fwd /* reference pass */ + 2.0 * fwd /* policy forward + backward */);
    let name = tch::Cuda::device_count();
    let peak = 989e12; // H100 SXM dense bf16
    println!(
        "dpo bench (CUDA x{name}, bf16 autocast): Qwen2.5-0.5B shape ({:.0}M params), {n} pairs, mean sequence {mean_len:.0} tokens, batch {bs}",
        params as f64 / 1e6
    );
    println!(
        "  keel  {:>9.0} tokens/s  ({:.2} s incl. reference pass, {} steps); {:.1} TFLOP/s = MFU {:.1}% of 989 TFLOP/s",
        s.tokens_per_second,
        s.train_runtime,
        s.steps,
        flops / s.train_runtime / 1e12,
        100.0 * flops / s.train_runtime / peak
    );
}

/// Token ids of [`common::source_text`].
fn source_ids(model: &Model) -> Vec<u32> {
    model.tokenizer.encode(&common::source_text()).unwrap()
}

/// The real model on agent-shaped pairs: Keel's `dpo::run` and TRL's DPOTrainer, after checking
/// that they compute the same loss.
fn real(model: &Path, n: usize, bs: usize, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let m = Model::load(model, &LoadOptions::default()).unwrap();
    // Pairs of real text: a ~1,000-token prompt (a recorded state), completions of 40–80 tokens
    // (one action each); lengths drawn per pair, text taken from consecutive windows.
    let corpus = source_ids(&m);
    let mut rng = Rng::new(7);
    let mut at = 0usize;
    let mut window = |len: usize| -> String {
        let ids: Vec<u32> = (0..len).map(|k| corpus[(at + k) % corpus.len()]).collect();
        at += len;
        m.tokenizer.decode(&ids, false).unwrap()
    };
    let rows: Vec<Value> = (0..n)
        .map(|_| {
            let p = 960 + (rng.next_u64() % 81) as usize;
            let (c, r) = (40 + (rng.next_u64() % 41) as usize, 40 + (rng.next_u64() % 41) as usize);
            json!({"prompt": window(p), "chosen": window(c), "rejected": window(r)})
        })
        .collect();
    let data = dir.join("pairs.jsonl");
    write_lines(&data, &rows);
    let max_length = 2048;
    let (encoded, _) = load_pairs(&data, &m, max_length).unwrap();
    let ids = dir.join("ids.jsonl");
    write_pair_ids(&encoded, &ids).unwrap();
    let tokens: usize = encoded.iter().map(|p| p.tokens()).sum();
    let prompt_mean = encoded.iter().map(|p| p.chosen.prompt.len()).sum::<usize>() as f64 / n as f64;
    let completion_mean = encoded.iter().map(|p| p.chosen.completion.len() + p.rejected.completion.len()).sum::<usize>() as f64 / (2 * n) as f64;
    let threads = tch::get_num_threads();
    println!(
        "dpo bench --real (CPU, {threads} threads): {}, {n} pairs (prompt {prompt_mean:.0} tokens, completions {completion_mean:.0} on average; {tokens} tokens), batch {bs}, 1 epoch, LoRA r16 α32 dropout 0 on all linear layers, best of {rounds} rounds",
        model.display()
    );
    // This process keeps no model while the two train: on the shared machine TRL (no gradient
    // checkpointing, f32) needs several GB, and was killed for memory at batch 2.
    drop(m);
    let keel_opts = |out: &Path| {
        let mut o = opts(model, &data, out, "cpu");
        o.batch_size = bs;
        o.lora_dropout = 0.0;
        o.max_length = max_length;
        o
    };
    let trl_args = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["train", model.to_str().unwrap(), ids.to_str().unwrap(), out.to_str().unwrap()].map(String::from).to_vec();
        v.extend(["--lr", "5e-5", "--epochs", "1", "--batch-size", &bs.to_string(), "--threads", &threads.to_string()].map(String::from));
        v.extend(["--lora-dropout", "0", "--max-length", &max_length.to_string()].map(String::from));
        v.extend(TRL_FLAGS.map(String::from));
        v
    };
    let best = match alternate(rounds, dir, keel_opts, trl_args) {
        Ok(b) => b,
        Err(e) => {
            println!("  trl   failed: {e}");
            return;
        }
    };

    // The same loss before the speeds count: the first step (a fresh adapter, so ln 2 on both
    // sides: this checks the set-up, not the arithmetic), then the reference log-probs and TRL's
    // loss on the first batch under the adapter Keel trained, against Keel's.
    let keel_dir = dir.join("keel0");
    let steps = keel_trainer::metrics::read_steps(&keel_dir.join("metrics.jsonl")).unwrap();
    let keel_first = steps.first().and_then(|s| s.get("loss")).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let trl_first = best.trl["first_loss"].as_f64().unwrap_or(f64::NAN);
    assert!((keel_first - trl_first).abs() < 1e-4, "first-step losses differ: keel {keel_first}, trl {trl_first}");
    let batch: Vec<_> = encoded[..bs.min(n)].to_vec();
    let batch_ids = dir.join("batch.jsonl");
    write_pair_ids(&batch, &batch_ids).unwrap();
    let mut m = Model::load(model, &LoadOptions::default()).unwrap();
    let obj = DpoObjective::new(&m, batch, 0.1).unwrap();
    m.load_adapter(&keel_dir).unwrap();
    m.transformer.set_train(false);
    let all: Vec<usize> = (0..obj.pairs.len()).collect();
    let (_, sums) = tch::no_grad(|| keel_trainer::train::Objective::micro(&obj, &m, &all)).unwrap();
    let keel_loss = sums[0] / all.len() as f64;
    let check_args = [&["loss", model.to_str().unwrap(), keel_dir.to_str().unwrap(), batch_ids.to_str().unwrap(), "--beta", "0.1"][..], &TRL_FLAGS[..]].concat();
    let check = trl(&check_args, dir).unwrap();
    let trl_loss = check["loss"].as_f64().unwrap();
    for (i, (c, r)) in obj.ref_chosen.iter().zip(&obj.ref_rejected).enumerate() {
        let (tc, tr) = (check["ref_chosen_logps"][i].as_f64().unwrap(), check["ref_rejected_logps"][i].as_f64().unwrap());
        assert!((c - tc).abs() < 2e-3 * (1.0 + tc.abs()) && (r - tr).abs() < 2e-3 * (1.0 + tr.abs()), "pair {i}: reference log-probs keel ({c}, {r}) trl ({tc}, {tr})");
    }
    assert!((keel_loss - trl_loss).abs() < 1e-3, "loss under Keel's adapter: keel {keel_loss}, trl {trl_loss}");
    println!(
        "  loss agrees: first step keel {keel_first:.6} / trl {trl_first:.6}; under Keel's trained adapter (first batch) keel {keel_loss:.6} / trl {trl_loss:.6}; reference log-probs within 0.2 %"
    );
    report(&best);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| args.iter().position(|a| a == f).and_then(|i| args.get(i + 1)).cloned();
    if flag("--gpu") {
        gpu();
        return;
    }
    let rounds = value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(2);
    if !flag("--real") {
        cpu(rounds);
    }
    if flag("--real") || !flag("--small") {
        let model = value("--model").map(PathBuf::from).unwrap_or_else(|| root().join(".keel/models/smollm2-135m-instruct"));
        if !model.join("config.json").is_file() {
            println!("dpo bench --real: no model in {} (`cargo xtask setup model` writes it); skipped", model.display());
            return;
        }
        let n = value("--pairs").and_then(|v| v.parse().ok()).unwrap_or(4);
        let bs = value("--batch-size").and_then(|v| v.parse().ok()).unwrap_or(1);
        real(&model, n, bs, rounds);
    }
}
