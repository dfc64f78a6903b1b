//! `keel-train dpo` and `keel-train sft` on a tiny model: the first step, the loss against TRL's
//! DPOTrainer, learning a rule (and doing no worse than TRL), resuming a killed run exactly, SFT,
//! and bad data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use keel_trainer::dpo::{DPO_STATS, DpoObjective};
use keel_trainer::init_model::{InitOptions, init_model};
use keel_trainer::model::rng::Rng;
use keel_trainer::model::{Family, LoadOptions, LoraConfig, Model, Weights};
use keel_trainer::score::{read_pairs, score_pairs};
use keel_trainer::train::Objective;
use keel_trainer::train::data::{self, load_pairs, write_pair_ids};
use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor};

const TRL_SCRIPT: &str = include_str!("../py/dpo_trl.py");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel-train")
}

/// The tiny model, made once per test run.
fn tiny() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("tiny");
        init_model(&m, &InitOptions { preset: "tiny".into(), family: Family::Qwen2, seed: 11 }).unwrap();
        (d, m)
    })
    .1
}

const WORDS: [&str; 12] = ["alpha", "beta", "gamma", "delta", "omega", "zeta", "theta", "kappa", "sigma", "tau", "rho", "phi"];

/// Pairs with a learnable rule: both completions share a random body; the chosen one ends with
/// ` done.`, the rejected one with ` oops!`.
fn rule_pairs(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let word = |rng: &mut Rng| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
    (0..n)
        .map(|_| {
            let prompt: Vec<&str> = (0..5).map(|_| word(&mut rng)).collect();
            let body: Vec<&str> = (0..4).map(|_| word(&mut rng)).collect();
            let body = body.join(" ");
            json!({"prompt": format!("fix {}:", prompt.join(" ")), "chosen": format!(" {body} done."), "rejected": format!(" {body} oops!")})
        })
        .collect()
}

fn write_lines(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn steps(out: &Path) -> Vec<Map<String, Value>> {
    keel_trainer::metrics::read_steps(&out.join("metrics.jsonl")).unwrap()
}

fn summary(out: &Path) -> Map<String, Value> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    v.as_object().unwrap().clone()
}

fn adapter_tensors(dir: &Path) -> Vec<(String, Tensor)> {
    let w = Weights::open_files(&[dir.join("adapter_model.safetensors")]).unwrap();
    let mut names: Vec<String> = w.names().into_iter().map(str::to_string).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), w.load(&n, Kind::Float, Device::Cpu).unwrap())).collect()
}

fn python_trl(args: &[&str], dir: &Path) -> Value {
    let script = dir.join("dpo_trl.py");
    std::fs::write(&script, TRL_SCRIPT).unwrap();
    let out = Command::new(python()).arg(&script).args(args).env("TMPDIR", dir).output().expect("running python");
    assert!(out.status.success(), "python {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn first_step_is_ln2_with_zero_rewards_and_bad_lines_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    let mut rows = rule_pairs(12, 1);
    let long_prompt = "alpha ".repeat(200);
    let mut text: String = rows.drain(..6).map(|r| format!("{r}\n")).collect();
    text.push_str("{not json\n"); // line 7
    text.push_str(&format!("{}\n", json!({"prompt": "fix it:", "chosen": "", "rejected": " no"}))); // 8
    text.push_str(&format!("{}\n", json!({"prompt": long_prompt, "chosen": " a", "rejected": " b"}))); // 9
    text.push_str(&format!("{}\n", json!({"prompt": "fix it:", "chosen": " yes"}))); // 10
    text.push('\n'); // blank lines are not data
    text.push_str(&format!("{}\n", json!({"prompt": "fix:", "chosen": " a long long long long long long completion", "rejected": " b"}))); // 12
    text.extend(rows.iter().map(|r| format!("{r}\n")));
    std::fs::write(&pairs, text).unwrap();

    let out = dir.path().join("out");
    let o = run_bin(&[
        "dpo", "--model", tiny().to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--batch-size", "4", "--epochs", "2", "--lr", "1e-3", "--max-length", "64", "--save-steps", "2",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // The report names every skip and the truncation.
    assert!(stderr.contains("17 lines: 13 used, 4 skipped"), "{stderr}");
    assert!(stderr.contains("1 not JSON (line 7)"), "{stderr}");
    assert!(stderr.contains("1 empty completion (line 8)"), "{stderr}");
    assert!(stderr.contains("1 prompt fills --max-length (line 9)"), "{stderr}");
    assert!(stderr.contains("1 missing `rejected` (line 10)"), "{stderr}");

    let s = steps(&out);
    assert_eq!(s.len(), 8, "13 pairs, batches of 4, 2 epochs");
    let first = &s[0];
    assert!((first["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6, "{first:?}");
    // The policy is the reference at step 0; the reference was computed in other batches, so
    // the rewards are zero up to the rounding of differently padded matmuls.
    for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert!(first[k].as_f64().unwrap().abs() < 1e-4, "{k}: {first:?}");
    }
    for k in DPO_STATS.iter().chain(&["learning_rate", "grad_norm", "epoch", "step"]) {
        assert!(s.iter().all(|l| l[*k].is_number()), "every step has {k}");
    }
    assert!(first["logps/chosen"].as_f64().unwrap() < 0.0);
    let lr0 = first["learning_rate"].as_f64().unwrap();
    assert!(lr0 > 0.0 && lr0 < 1e-3, "warm-up starts low but not at 0 (a zero-rate step trains nothing): {lr0}");
    assert_eq!(s.last().unwrap()["epoch"].as_f64().unwrap(), 2.0);
    let sum = summary(&out);
    for k in ["train_runtime", "train_tokens_per_second", "train_loss"] {
        assert!(sum[k].as_f64().unwrap() > 0.0, "{k} in {sum:?}");
    }
    // Adapter in PEFT's layout, the plot, the checkpoint.
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert!(adapter_tensors(&out).iter().any(|(n, _)| n == "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"));
    assert!(std::fs::metadata(out.join("plot.png")).unwrap().len() > 1000);
    assert!(out.join("checkpoint/state.json").exists());

    // The truncated pair is reported.
    let m = Model::load(tiny(), &LoadOptions::default()).unwrap();
    let (_, report) = load_pairs(&pairs, &m, 12).unwrap();
    assert!(report.truncated.contains(&12), "{report}");
    assert!(report.to_string().contains("truncated to --max-length"), "{report}");

    // One pair, one epoch: a run of one optimizer step still moves the adapter (its only step
    // once had a learning rate of 0, and the candidate came out identical to the base).
    let one = dir.path().join("one.jsonl");
    write_lines(&one, &rule_pairs(1, 3));
    let o1 = dir.path().join("o1");
    let o = run_bin(&["dpo", "--model", tiny().to_str().unwrap(), "--pairs", one.to_str().unwrap(), "--out", o1.to_str().unwrap(), "--epochs", "1", "--max-length", "64"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(steps(&o1).len(), 1);
    let moved: f64 = adapter_tensors(&o1)
        .iter()
        .filter(|(n, _)| n.contains("lora_B"))
        .map(|(_, t)| t.abs().sum(tch::Kind::Double).double_value(&[]))
        .sum();
    assert!(moved > 0.0, "one step of DPO left every lora_B at zero");

    // Nothing usable: a clear error, not an empty run.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "nope\n{\"prompt\": \"x\", \"chosen\": \"\", \"rejected\": \"\"}\n").unwrap();
    let o = run_bin(&["dpo", "--model", tiny().to_str().unwrap(), "--pairs", bad.to_str().unwrap(), "--out", dir.path().join("o2").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("no usable pairs") && stderr.contains("1 not JSON (line 1)") && stderr.contains("1 empty completion (line 2)"), "{stderr}");
}

#[test]
fn conversational_pairs_with_tools_train() {
    // The format `keel-train pairs` writes: message lists, tools, meta.
    let dir = tempfile::tempdir().unwrap();
    let tools = json!([{"type": "function", "function": {"name": "edit", "description": "Edit a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    let rows: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "prompt": [{"role": "system", "content": "You edit code."}, {"role": "user", "content": format!("fix bug {i}")}],
                "chosen": [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "edit", "arguments": {"path": format!("src/{i}.rs")}}}]}],
                "rejected": [{"role": "assistant", "content": "I cannot."}],
                "tools": tools,
                "meta": {"source": "human", "episode": format!("e{i}")},
            })
        })
        .collect();
    let pairs = dir.path().join("pairs.jsonl");
    write_lines(&pairs, &rows);
    let out = dir.path().join("out");
    let o = run_bin(&["dpo", "--model", tiny().to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--batch-size", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = steps(&out);
    assert_eq!(s.len(), 2);
    assert!((s[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6);
}

/// A non-trivial adapter: a fresh one with B drawn at random.
fn random_adapter(model: &mut Model, dir: &Path) {
    random_adapter_with(model, dir, 5, 0.2);
}

/// A LoRA adapter (r 4) whose B matrices are drawn from `seed`, scaled by `scale`, saved to `dir`.
fn random_adapter_with(model: &mut Model, dir: &Path, seed: i64, scale: f64) {
    let lora = model.add_lora(LoraConfig { r: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() }, 3).unwrap();
    tch::manual_seed(seed);
    tch::no_grad(|| {
        for (name, mut t) in lora.vs.variables() {
            if name.ends_with("lora_B") {
                t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * scale));
            }
        }
    });
    model.save_adapter(dir).unwrap();
}

#[test]
fn batch_loss_equals_trl_dpo_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = rule_pairs(5, 2);
    // Conversational pairs with tools too.
    rows.push(json!({
        "prompt": [{"role": "user", "content": "rename x"}],
        "chosen": [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "edit", "arguments": {"path": "a.rs"}}}]}],
        "rejected": [{"role": "assistant", "content": "no"}],
        "tools": [{"type": "function", "function": {"name": "edit", "description": "Edit", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
    }));
    let pairs_path = dir.path().join("pairs.jsonl");
    write_lines(&pairs_path, &rows);
    let mut model = Model::load(tiny(), &LoadOptions::default()).unwrap();
    let (pairs, _) = load_pairs(&pairs_path, &model, 1024).unwrap();
    let ids = dir.path().join("ids.jsonl");
    write_pair_ids(&pairs, &ids).unwrap();
    let beta = 0.3;
    let obj = DpoObjective::new(&model, pairs, beta).unwrap();
    let adapter = dir.path().join("adapter");
    random_adapter(&mut model, &adapter);
    model.transformer.set_train(false);
    let all: Vec<usize> = (0..obj.len()).collect();
    let (_, sums) = tch::no_grad(|| obj.micro(&model, &all)).unwrap();
    let n = all.len() as f64;
    let keel: Map<String, Value> = DPO_STATS.iter().zip(&sums).map(|(k, s)| (k.to_string(), json!(s / n))).collect();

    let loss = keel["loss"].as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() > 1e-3, "the adapter must move the loss off ln 2: {loss}");
    // TRL as it comes, and as the real-model bench times it (`padding_free`, and the LM head
    // projected only at completion positions on CPU, a patch of TRL's choice of path): the same
    // numbers, so the patch changes TRL's work, not its result.
    let (model, beta_s) = (tiny(), beta.to_string());
    for flags in [&[][..], &["--padding-free", "--completion-logits"][..]] {
        let args = [&["loss", model.to_str().unwrap(), adapter.to_str().unwrap(), ids.to_str().unwrap(), "--beta", &beta_s][..], flags].concat();
        let trl = python_trl(&args, dir.path());
        // Same reference log-probs, pair by pair.
        for (i, (c, r)) in obj.ref_chosen.iter().zip(&obj.ref_rejected).enumerate() {
            let (tc, tr) = (trl["ref_chosen_logps"][i].as_f64().unwrap(), trl["ref_rejected_logps"][i].as_f64().unwrap());
            assert!((c - tc).abs() < 1e-3 && (r - tr).abs() < 1e-3, "{flags:?} pair {i}: keel ({c}, {r}) trl ({tc}, {tr})");
        }
        for k in DPO_STATS {
            let (a, b) = (keel[k].as_f64().unwrap(), trl[k].as_f64().unwrap());
            let tol = if k.starts_with("logps") { 1e-3 } else { 1e-5 };
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{flags:?} {k}: keel {a} vs trl {b}\nkeel {keel:?}\ntrl {trl}");
        }
    }
}

/// Held-out implicit-reward accuracy of `adapter` (ties count half): the reward of a completion is
/// its log-prob with the adapter minus without.
fn implicit_accuracy(pairs: &Path, adapter: Option<&Path>) -> f64 {
    let mut model = Model::load(tiny(), &LoadOptions::default()).unwrap();
    let p = read_pairs(pairs).unwrap();
    let base = score_pairs(&model, &p, 16).unwrap();
    let Some(a) = adapter else { return 0.5 };
    model.load_adapter(a).unwrap();
    let tuned = score_pairs(&model, &p, 16).unwrap();
    let score: f64 = base
        .iter()
        .zip(&tuned)
        .map(|((bc, br), (tc, tr))| {
            let m = (tc - bc) - (tr - br);
            if m > 0.0 { 1.0 } else if m == 0.0 { 0.5 } else { 0.0 }
        })
        .sum();
    score / p.len() as f64
}

#[test]
fn learns_a_rule_and_is_no_worse_than_trl() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let held = dir.path().join("held.jsonl");
    write_lines(&train, &rule_pairs(48, 10));
    write_lines(&held, &rule_pairs(32, 20));
    let (lr, epochs, bs, r, alpha) = ("2e-3", "3", "8", "8", "16");

    // Before training: a fresh adapter gives every completion reward 0, chance.
    let fresh = dir.path().join("fresh");
    let mut m = Model::load(tiny(), &LoadOptions::default()).unwrap();
    m.add_lora(LoraConfig { r: 8, alpha: 16.0, ..LoraConfig::default() }, 0).unwrap();
    m.save_adapter(&fresh).unwrap();
    let before = implicit_accuracy(&held, Some(&fresh));
    assert_eq!(before, 0.5);

    let out = dir.path().join("keel");
    let o = run_bin(&[
        "dpo", "--model", tiny().to_str().unwrap(), "--pairs", train.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--lr", lr, "--epochs", epochs, "--batch-size", bs, "--lora-r", r, "--lora-alpha", alpha, "--seed", "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keel_acc = implicit_accuracy(&held, Some(&out));
    let s = steps(&out);
    let last = s.last().unwrap();
    assert!(last["loss"].as_f64().unwrap() < 0.6 && last["rewards/margins"].as_f64().unwrap() > 0.0, "{last:?}");

    // TRL's DPOTrainer on the same token ids and hyper-parameters.
    let m = Model::load(tiny(), &LoadOptions::default()).unwrap();
    let (pairs, _) = load_pairs(&train, &m, 1024).unwrap();
    let ids = dir.path().join("ids.jsonl");
    write_pair_ids(&pairs, &ids).unwrap();
    let trl_out = dir.path().join("trl");
    let trl = python_trl(
        &[
            "train", tiny().to_str().unwrap(), ids.to_str().unwrap(), trl_out.to_str().unwrap(), "--lr", lr, "--epochs", epochs,
            "--batch-size", bs, "--lora-r", r, "--lora-alpha", alpha, "--seed", "1",
        ],
        dir.path(),
    );
    let trl_acc = implicit_accuracy(&held, Some(&trl_out));
    eprintln!("held-out implicit-reward accuracy: before {before}, keel {keel_acc}, trl {trl_acc}; trl run {trl}");
    assert!(keel_acc >= 0.9, "keel reached {keel_acc}");
    assert!(keel_acc >= trl_acc, "keel {keel_acc} < trl {trl_acc}");
    assert_eq!(trl["steps"].as_u64().unwrap(), s.len() as u64, "same number of optimizer steps");
}

#[test]
fn a_killed_run_resumes_to_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    write_lines(&pairs, &rule_pairs(40, 4));
    let args = |out: &Path| -> Vec<String> {
        [
            "dpo", "--model", tiny().to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(),
            "--batch-size", "2", "--grad-accum", "2", "--epochs", "3", "--lr", "1e-3", "--save-steps", "4", "--seed", "9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = dir.path().join("full");
    let o = Command::new(bin()).args(args(&full)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let total = steps(&full).len();
    assert_eq!(total, 30);

    // Start again, kill it once its first checkpoint is there.
    let cut = dir.path().join("cut");
    let mut child = Command::new(bin()).args(args(&cut)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let state = cut.join("checkpoint/state.json");
    loop {
        if state.exists() {
            child.kill().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint was seen");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed");
    let done_before = steps(&cut).len();
    assert!(done_before < total, "the run was killed part-way ({done_before} of {total} steps)");
    assert!(!cut.join("adapter_model.safetensors").exists(), "no final adapter yet");

    let mut resume = args(&cut);
    resume.push("--resume".into());
    let o = Command::new(bin()).args(&resume).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from step"), "{stderr}");

    let (a, b) = (adapter_tensors(&full), adapter_tensors(&cut));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let d = (ta - tb).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{na}: max |diff| {d}");
    }
    // The metrics continue exactly: one line per step, the same losses.
    let (sa, sb) = (steps(&full), steps(&cut));
    assert_eq!(sb.len(), total);
    for (x, y) in sa.iter().zip(&sb) {
        assert_eq!(x["step"], y["step"]);
        assert!((x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs() < 1e-6, "step {}", x["step"]);
    }

    // A resume with other options is refused, naming what differs.
    let mut other = args(&cut);
    other.extend(["--resume".into(), "--beta".into(), "0.5".into()]);
    let o = Command::new(bin()).args(&other).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("beta"), "{stderr}");
}

#[test]
fn sft_lowers_the_completion_loss() {
    let dir = tempfile::tempdir().unwrap();
    // prompt/completion lines, and a pairs line (its chosen side).
    let mut rows: Vec<Value> = rule_pairs(16, 7).into_iter().map(|p| json!({"prompt": p["prompt"], "completion": p["chosen"]})).collect();
    rows.push(rule_pairs(1, 8)[0].clone());
    rows.push(json!({"prompt": "x", "completion": "  "}));
    let data_path = dir.path().join("sft.jsonl");
    write_lines(&data_path, &rows);
    let out = dir.path().join("sft");
    let o = run_bin(&[
        "sft", "--data", data_path.to_str().unwrap(), "--model", tiny().to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--lr", "1e-2", "--epochs", "8", "--batch-size", "4", "--warmup-ratio", "0", "--lora-dropout", "0",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("18 lines: 17 used, 1 skipped; 1 empty completion (line 18)"), "{stderr}");
    let s = steps(&out);
    assert_eq!(s.len(), 40);
    let (first, last) = (s[0]["loss"].as_f64().unwrap(), s.last().unwrap()["loss"].as_f64().unwrap());
    // A random tiny model starts at ln(vocab) ≈ 6.93 nats per token.
    assert!(last < first - 0.5, "loss {first} → {last}");
    assert!(s.iter().all(|l| l["learning_rate"].is_number() && l["grad_norm"].is_number()));
    assert!(out.join("adapter_model.safetensors").exists() && out.join("plot.png").exists());

    // The SFT adapter starts DPO, and is DPO's reference: the first loss is ln 2 again (the SFT
    // adapter has no dropout, so the policy equals the reference exactly).
    let pairs = dir.path().join("pairs.jsonl");
    write_lines(&pairs, &rule_pairs(8, 9));
    let dpo = dir.path().join("dpo");
    let o = run_bin(&[
        "dpo", "--model", tiny().to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--out", dpo.to_str().unwrap(),
        "--init-adapter", out.to_str().unwrap(), "--batch-size", "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = &steps(&dpo)[0];
    assert!((first["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6, "{first:?}");
    assert!(first["rewards/chosen"].as_f64().unwrap().abs() < 1e-4, "{first:?}");
}

/// An episode's SFT lines: step k's prompt is the conversation so far, its completion the answer.
fn episode_lines(task: &str, answers: &[&str]) -> Vec<Value> {
    let mut convo = vec![json!({"role": "system", "content": "You fix code."}), json!({"role": "user", "content": format!("fix {task}")})];
    let mut rows = Vec::new();
    for (k, a) in answers.iter().enumerate() {
        let answer = json!({"role": "assistant", "content": a});
        rows.push(json!({"prompt": convo.clone(), "completion": [answer.clone()]}));
        convo.push(answer);
        convo.push(json!({"role": "user", "content": format!("result {k}: {}", WORDS[k % WORDS.len()])}));
    }
    rows
}

#[test]
fn packed_episode_steps_have_the_loss_of_the_separate_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = episode_lines("alpha beta", &["read gamma", "edit delta omega", "run zeta", "finish theta"]);
    rows.extend(episode_lines("kappa", &["read sigma", "run tau"]));
    // Not the next step of anything: its prompt does not start with the line before.
    rows.push(json!({"prompt": "fix rho", "completion": " phi done."}));
    let data_path = dir.path().join("sft.jsonl");
    write_lines(&data_path, &rows);
    let model = Model::load(tiny(), &LoadOptions { device: Device::Cpu, kind: Some(Kind::Float) }).unwrap();
    let (examples, report) = data::load_sft(&data_path, &model, 1024).unwrap();
    assert_eq!(report.used, 7);
    let packed = data::pack_steps(examples.clone(), 1024);
    assert_eq!(packed.iter().map(|e| e.steps).collect::<Vec<_>>(), vec![4, 2, 1], "the two episodes each become one sequence");
    assert_eq!(packed.iter().map(|e| e.line).collect::<Vec<_>>(), vec![1, 5, 7]);
    let scored = |v: &[data::EncodedExample]| v.iter().map(|e| e.scored_tokens()).sum::<usize>();
    assert_eq!(scored(&packed), scored(&examples), "every completion token is trained on, and nothing else");
    let tokens = |v: &[data::EncodedExample]| v.iter().map(|e| data::seq_len(&e.seq)).sum::<usize>();
    assert!(tokens(&packed) * 2 < tokens(&examples), "{} packed tokens against {}", tokens(&packed), tokens(&examples));

    // The same log-probabilities: each completion token sees the same tokens at the same positions.
    let t = &model.transformer;
    let seqs: Vec<keel_trainer::model::Sequence> = examples.iter().map(|e| e.seq.clone()).collect();
    let separate = tch::no_grad(|| keel_trainer::model::completion_logps(t, &seqs)).unwrap();
    let pseqs: Vec<keel_trainer::model::Sequence> = packed.iter().map(|e| e.seq.clone()).collect();
    let masks: Vec<Option<&[bool]>> = packed.iter().map(|e| e.scored.as_deref()).collect();
    let together = tch::no_grad(|| keel_trainer::model::scored_completion_logps(t, &pseqs, &masks)).unwrap();
    let sep: Vec<f64> = Vec::<f32>::try_from(&separate).unwrap().into_iter().map(f64::from).collect();
    let tog: Vec<f64> = Vec::<f32>::try_from(&together).unwrap().into_iter().map(f64::from).collect();
    for (got, want) in tog.iter().zip([sep[..4].iter().sum::<f64>(), sep[4..6].iter().sum(), sep[6]]) {
        assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "packed {got} against the steps' sum {want}");
    }
    // Unmasked, the scored path is the plain one.
    let plain = tch::no_grad(|| keel_trainer::model::scored_completion_logps(t, &seqs, &vec![None; seqs.len()])).unwrap();
    assert!(f64::try_from((plain - &separate).abs().max()).unwrap() < 1e-4);

    // A packed sequence never outgrows --max-length: then the steps stay apart.
    let longest = examples[..4].iter().map(|e| data::seq_len(&e.seq)).max().unwrap();
    let capped = data::pack_steps(examples.clone(), longest - 1);
    assert_eq!(capped.iter().map(|e| e.steps).collect::<Vec<_>>(), vec![3, 1, 2, 1]);
    assert!(capped.iter().all(|e| e.steps == 1 || data::seq_len(&e.seq) < longest));

    // `sft --pack` trains on the packed sequences and says so; with stderr not a terminal it
    // writes a progress line (here every step).
    let out = dir.path().join("sft");
    let o = Command::new(bin())
        .args([
            "sft", "--data", data_path.to_str().unwrap(), "--model", tiny().to_str().unwrap(), "--out", out.to_str().unwrap(),
            "--pack", "--batch-size", "1", "--lr", "1e-2", "--epochs", "8", "--warmup-ratio", "0", "--lora-dropout", "0",
        ])
        .env("KEEL_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("sft: step 1/24, loss ") && stderr.contains("sft: step 24/24, loss ") && stderr.contains(" s/step, "), "{stderr}");
    assert!(stderr.contains(&format!("sft: packed 7 examples into 3 sequences ({} tokens instead of {})", tokens(&packed), tokens(&examples))), "{stderr}");
    let s = steps(&out);
    assert_eq!(s.len(), 24, "3 sequences × 8 epochs");
    // Each step is one sequence: compare the first epoch's mean loss with the last one's.
    let mean = |v: &[Map<String, Value>]| v.iter().map(|l| l["loss"].as_f64().unwrap()).sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&s[..3]), mean(&s[21..]));
    assert!(last < first - 0.5, "loss {first} → {last}");
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    write_lines(&pairs, &rule_pairs(8, 12));
    let out = dir.path().join("out");
    // An absurd learning rate sends the adapter to infinity after the first update.
    let o = run_bin(&[
        "dpo", "--model", tiny().to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--lr", "1e30", "--warmup-ratio", "0", "--batch-size", "2", "--save-steps", "1",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("step 2: the loss is not finite"), "{stderr}");
    assert!(stderr.contains("the last checkpoint, step 1"), "{stderr}");
    assert!(!out.join("adapter_model.safetensors").exists(), "no adapter is written from a diverged run");
}

#[test]
fn empty_completion_detection() {
    assert!(data::is_empty_completion(&json!("  ")));
    assert!(data::is_empty_completion(&json!([{"role": "assistant", "content": ""}])));
    assert!(!data::is_empty_completion(&json!([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "x"}}]}])));
    assert!(!data::is_empty_completion(&json!({"role": "assistant", "content": "ok"})));
}

/// The shared-prompt forward (each pair's prompt run once for both completions) gives the same
/// log-probs and the same adapter gradients as running every prompt + completion on its own, with
/// prompts and completions of different lengths in one batch; pairs whose prompts differ take the
/// plain path.
#[test]
fn shared_prompt_forward_equals_the_plain_forward() {
    use keel_trainer::model::{Sequence, completion_logps, pair_logps};
    let mut model = Model::load(tiny(), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    random_adapter(&mut model, &dir.path().join("a"));
    let mut rng = Rng::new(9);
    let vocab = model.config.vocab_size as u64;
    let mut ids = |n: usize| (0..n).map(|_| (rng.next_u64() % vocab) as u32).collect::<Vec<u32>>();
    let mut pairs = Vec::new();
    for (p, c, r) in [(7, 5, 9), (1, 3, 1), (20, 2, 6), (12, 11, 11)] {
        let prompt = ids(p);
        pairs.push((Sequence { prompt: prompt.clone(), completion: ids(c) }, Sequence { prompt, completion: ids(r) }));
    }
    let grads = |model: &Model, shared: bool| -> (Vec<f32>, Vec<Tensor>) {
        let vars: Vec<Tensor> = model.lora.as_ref().unwrap().vs.trainable_variables();
        for v in &vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let batch: Vec<(&Sequence, &Sequence)> = pairs.iter().map(|(c, r)| (c, r)).collect();
        let out = if shared {
            pair_logps(&model.transformer, &batch).unwrap()
        } else {
            let seqs: Vec<Sequence> = pairs.iter().map(|p| p.0.clone()).chain(pairs.iter().map(|p| p.1.clone())).collect();
            completion_logps(&model.transformer, &seqs).unwrap()
        };
        // A loss that weighs every sequence differently, so a mix-up between rows shows.
        let w = Tensor::arange(out.size()[0], (Kind::Float, Device::Cpu)) + 1.0;
        (&out * w).sum(Kind::Float).backward();
        (Vec::try_from(out.detach()).unwrap(), vars.iter().map(|v| v.grad().copy()).collect())
    };
    let (plain, g_plain) = grads(&model, false);
    let (shared, g_shared) = grads(&model, true);
    assert_eq!(plain.len(), 8);
    for (a, b) in plain.iter().zip(&shared) {
        assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "log-probs differ: plain {plain:?} shared {shared:?}");
    }
    for (a, b) in g_plain.iter().zip(&g_shared) {
        let diff = (a - b).abs().max().double_value(&[]);
        let scale = a.abs().max().double_value(&[]);
        assert!(scale > 0.0 && diff <= 1e-4 * (1.0 + scale), "gradients differ by {diff} (scale {scale})");
    }
    // Different prompts: the plain path, the same numbers.
    let odd = (Sequence { prompt: ids(4), completion: ids(3) }, Sequence { prompt: ids(5), completion: ids(3) });
    let a = tch::no_grad(|| pair_logps(&model.transformer, &[(&odd.0, &odd.1)])).unwrap();
    let b = tch::no_grad(|| completion_logps(&model.transformer, &[odd.0.clone(), odd.1.clone()])).unwrap();
    assert!((a - b).abs().max().double_value(&[]) < 1e-5);
}

/// `export-train` → TRL (SFTTrainer then DPOTrainer, PEFT LoRA) under `accelerate launch`, one CPU
/// process → `models add --judge --promote`: the exported folder is private and says what Keel
/// would use, the adapter TRL writes scores the same in Keel as in PEFT, and the gate judges it on
/// held-out pairs like a local candidate.
#[test]
fn exported_training_runs_under_accelerate_and_its_adapter_comes_back_through_the_gate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rows = rule_pairs(40, 9);
    let (train, held) = rows.split_at(28);
    let (train_p, held_p) = (dir.path().join("train.jsonl"), dir.path().join("heldout.jsonl"));
    write_lines(&train_p, train);
    write_lines(&held_p, held);
    let x = dir.path().join("export");
    let tiny = tiny().to_str().unwrap();
    let o = run_bin(&[
        "export-train", "--model", tiny, "--pairs", train_p.to_str().unwrap(), "--sft", train_p.to_str().unwrap(), "--out", x.to_str().unwrap(),
        "--batch-size", "4", "--epochs", "4", "--lr", "2e-3", "--max-length", "64", "--sft-lr", "1e-3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&x).unwrap().permissions().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&x).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o077, 0, "{} is private", e.path().display());
    }
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(x.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["pairs"].as_u64(), cfg["sft_examples"].as_u64(), cfg["lr"].as_f64(), cfg["lora_r"].as_i64()), (Some(28), Some(28), Some(2e-3), Some(16)));
    assert_eq!(std::fs::read_to_string(x.join("pairs_ids.jsonl")).unwrap().lines().count(), 28);

    let accelerate = python().parent().unwrap().join("accelerate");
    let out = Command::new(&accelerate)
        .args(["launch", "--config_file"])
        .arg(x.join("accelerate-cpu.yaml"))
        .arg(x.join("train.py"))
        .arg("--cpu")
        .env("TMPDIR", dir.path())
        .output()
        .expect("running accelerate");
    assert!(out.status.success(), "accelerate launch failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let adapter = x.join("adapter");
    assert!(adapter.join("adapter_model.safetensors").is_file());

    // The adapter in Keel and in PEFT: the same log-probabilities of the held-out pairs.
    let h = dir.path().join("held_export");
    let o = run_bin(&["export-train", "--model", tiny, "--pairs", held_p.to_str().unwrap(), "--out", h.to_str().unwrap(), "--max-length", "64"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peft = python_trl(&["loss", tiny, adapter.to_str().unwrap(), h.join("pairs_ids.jsonl").to_str().unwrap()], dir.path());
    let mut model = Model::load(Path::new(tiny), &LoadOptions { device: Device::Cpu, kind: None }).unwrap();
    model.load_adapter(&adapter).unwrap();
    let keel = score_pairs(&model, &read_pairs(&held_p).unwrap(), 4).unwrap();
    let mean = |f: fn(&(f64, f64)) -> f64| keel.iter().map(f).sum::<f64>() / keel.len() as f64;
    for (k, ours) in [("logps/chosen", mean(|s| s.0)), ("logps/rejected", mean(|s| s.1))] {
        let theirs = peft[k].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-3 * theirs.abs().max(1.0), "{k}: Keel {ours} vs PEFT {theirs}");
    }

    // Back into the store as a candidate; the gate judges it on the held-out pairs.
    let store = dir.path().join("k.db");
    let o = run_bin(&[
        "models", "--store", store.to_str().unwrap(), "add", "--adapter", adapter.to_str().unwrap(), "--base", tiny, "--judge", held_p.to_str().unwrap(), "--promote",
    ]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "the gate promotes what TRL learned (the rule is learnable): {text}");
    let s = keel_trajectory::Store::open(&store).unwrap();
    let live = s.live_model_version().unwrap().expect("live");
    assert!(live.id.starts_with("keel@") && text.contains(&format!("live: {}", live.id)), "{text}");
    let fig = |who: &str, k: &str| live.eval[who][k].as_f64().unwrap();
    assert!(fig("candidate", "accuracy") >= fig("live", "accuracy") && fig("candidate", "margin") > fig("live", "margin") + 1.0, "{}", live.eval);
    let copied = std::path::PathBuf::from(live.adapter_path.unwrap());
    assert!(copied.starts_with(dir.path().join("adapters")), "the store keeps its own copy: {}", copied.display());

    // A second add of a worse adapter (the base's own: LoRA B = 0 everywhere) is refused.
    let zero = dir.path().join("zero");
    let o = run_bin(&["export-train", "--model", tiny, "--pairs", train_p.to_str().unwrap(), "--out", zero.to_str().unwrap(), "--max-length", "64", "--epochs", "1", "--lr", "1e-9"]);
    assert!(o.status.success());
    let out = Command::new(&accelerate).args(["launch", "--config_file"]).arg(zero.join("accelerate-cpu.yaml")).arg(zero.join("train.py")).arg("--cpu").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let o = run_bin(&[
        "models", "--store", store.to_str().unwrap(), "add", "--adapter", zero.join("adapter").to_str().unwrap(), "--base", tiny, "--judge", held_p.to_str().unwrap(), "--promote",
    ]);
    assert!(!o.status.success(), "an adapter that learned nothing is refused against the live one");
    assert!(String::from_utf8_lossy(&o.stderr).contains("the gate refused"));
    assert_eq!(keel_trajectory::Store::open(&store).unwrap().live_model_version().unwrap().unwrap().id, live.id);
}

/// An adapter of the tiny model with random weights, different for each seed.
fn seeded_adapter(dir: &Path, seed: i64) {
    random_adapter_with(&mut Model::load(tiny(), &LoadOptions::default()).unwrap(), dir, seed, 0.5);
}

#[test]
fn an_ab_on_the_real_engine_serves_each_arm_its_own_adapter_and_keeps_each_ones_prompt_cache() {
    use keel_trainer::serve::engine::{self, AbRoute, Arm, Engine, GenRequest, ToolChoice};
    use keel_trainer::serve::tch_engine::TchEngine;
    let d = tempfile::tempdir().unwrap();
    let (a1, a2) = (d.path().join("a1"), d.path().join("a2"));
    seeded_adapter(&a1, 1);
    seeded_adapter(&a2, 2);
    let prompt = WORDS.iter().cycle().take(60).copied().collect::<Vec<_>>().join(" ");
    let req = || GenRequest {
        messages: vec![],
        prompt: Some(prompt.clone()),
        tools: vec![],
        tool_choice: ToolChoice::Auto,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        max_tokens: 8,
        stop: vec![],
        seed: Some(1),
    };
    let answer = |e: &mut TchEngine| e.generate(&[req()], &mut |_, _| {}).remove(0).unwrap().content;
    // Each adapter alone: the answers each arm must give.
    let alone = |a: &Path| answer(&mut TchEngine::load(tiny(), Some(a), "cpu", "tiny").unwrap());
    let (r1, r2) = (alone(&a1), alone(&a2));
    assert_ne!(r1, r2, "the two adapters must answer differently for this test to mean anything");
    let (v1, v2) = (format!("tiny@{}", keel_trainer::models::adapter_hash(&a1).unwrap()), format!("tiny@{}", keel_trainer::models::adapter_hash(&a2).unwrap()));

    // One engine switching back and forth: each version's cached prompt comes back with it.
    let mut e = TchEngine::load(tiny(), Some(&a1), "cpu", "tiny").unwrap();
    assert_eq!(answer(&mut e), r1);
    assert_eq!(e.set_adapter(Some(&a2)).unwrap(), v2);
    assert_eq!(answer(&mut e), r2, "no keys or values of the other adapter are reused");
    assert_eq!(e.set_adapter(Some(&a1)).unwrap(), v1);
    let reused = e.prefixes.reused_tokens;
    assert_eq!(answer(&mut e), r1);
    assert!(e.prefixes.reused_tokens > reused, "a1's prompt cache was kept aside and restored");

    // Through the engine thread, both arms in one batch: each answered by its own adapter.
    let h = engine::spawn(Box::new(TchEngine::load(tiny(), Some(&a1), "cpu", "tiny").unwrap()), 8, Duration::from_millis(100));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(h.set_candidate(Some((a2.clone(), AbRoute { id: v2.clone(), share: 0.5 })))).unwrap();
    let arms = [Arm::Live, Arm::Candidate, Arm::Live, Arm::Candidate];
    let outs = rt.block_on(futures::future::join_all(arms.iter().map(|&arm| h.generate_on(arm, req(), None))));
    for (arm, (out, version)) in arms.iter().zip(outs) {
        let (want, wv) = if *arm == Arm::Live { (&r1, &v1) } else { (&r2, &v2) };
        assert_eq!((&out.unwrap().content, &version), (want, wv), "{arm:?}");
    }
    assert_eq!(h.version(), v1, "the live version is still the live one");
    // The A/B over: a request routed to the candidate before it ended is served by the live one.
    rt.block_on(h.set_candidate(None)).unwrap();
    let (out, version) = rt.block_on(h.generate_on(Arm::Candidate, req(), None));
    assert_eq!((out.unwrap().content, version), (r1.clone(), v1.clone()));
    // A candidate folder without weights is refused, and nothing changes.
    assert!(rt.block_on(h.set_candidate(Some((d.path().join("nothing"), AbRoute { id: "x".into(), share: 0.5 })))).is_err());
    assert!(h.ab().is_none());
}

/// Decoding on the real engine: once the agent has read a file, an edit's `old_text` is whole lines
/// of what it read (so the edit applies), whatever the model; `KEEL_FREE_EDITS` (here the field)
/// turns that off, and the random model then writes text the file does not hold.
#[test]
fn an_edit_on_the_real_engine_replaces_text_the_agent_read() {
    use keel_trainer::serve::engine::{Engine, GenRequest, ToolChoice};
    use keel_trainer::serve::tch_engine::TchEngine;
    use keel_trajectory::{Action, Message};
    let file = "def area(width, height):\n    return width + height\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n";
    let view = file.lines().enumerate().map(|(i, l)| format!("{:>5}| {l}\n", i + 1)).collect::<String>();
    let read = Action::ViewFile { path: "area.py".into(), start_line: None, end_line: None };
    let messages = vec![
        Message::system(keel_agent::SYSTEM_PROMPT),
        Message::user("Task (instruction): The tests fail. Fix the bug in area.py."),
        Message { role: keel_trajectory::Role::Assistant, content: None, tool_calls: vec![read.to_tool_call("c1")], tool_call_id: None, name: None },
        Message::tool("c1", "view_file", view),
    ];
    // The path fixed (a random model's free string runs to the token budget before old_text).
    let mut tools = keel_trajectory::action::tools_schema().as_ref().clone();
    for t in &mut tools {
        if t["function"]["name"] == "edit" {
            t["function"]["parameters"]["properties"]["path"] = json!({"const": "area.py"});
            t["function"]["parameters"]["properties"]["new_text"] = json!({"type": "string", "maxLength": 8});
        }
    }
    let batch: Vec<GenRequest> = (0..6)
        .map(|seed| GenRequest {
            messages: messages.clone(),
            prompt: None,
            tools: tools.clone(),
            tool_choice: ToolChoice::Function("edit".into()),
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 96,
            stop: vec![],
            seed: Some(seed),
        })
        .collect();
    let old_texts = |e: &mut TchEngine| -> Vec<String> {
        e.generate(&batch, &mut |_, _| {})
            .into_iter()
            .map(|o| {
                let o = o.unwrap();
                assert_eq!(o.finish_reason, "tool_calls", "{o:?}");
                let call = &o.tool_calls[0].function;
                assert_eq!(call.name, "edit");
                let args: Value = serde_json::from_str(&call.arguments).unwrap();
                args["old_text"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let mut e = TchEngine::load(tiny(), None, "cpu", "tiny").unwrap();
    assert!(e.copy_edits, "on by default");
    let copied = old_texts(&mut e);
    for t in &copied {
        let lines: Vec<&str> = file.lines().collect();
        let whole_lines = t.is_empty() || lines.windows(t.split('\n').count()).any(|w| w.join("\n") == *t);
        assert!(whole_lines && (t.is_empty() || file.matches(t.as_str()).count() == 1), "{t:?} is not whole lines the file holds once");
    }
    assert!(copied.iter().any(|t| !t.is_empty()), "{copied:?}");
    e.copy_edits = false;
    let free = old_texts(&mut e);
    assert!(free.iter().any(|t| !t.is_empty() && !file.contains(t.as_str())), "the random model, unconstrained, should write text the file does not hold: {free:?}");
}

/// `keel-train serve` on the real engine: 32 clients at once while the adapter is swapped every
/// second. Every request is answered, and each answer is exactly what the version it names gives
/// alone (greedy): no request is served by a mix of two adapters.
#[test]
fn serve_answers_32_concurrent_clients_through_adapter_swaps_every_second_never_mixed() {
    use keel_trainer::serve::engine::{self, Engine, GenRequest, ToolChoice};
    use keel_trainer::serve::tch_engine::TchEngine;
    use std::collections::HashMap;
    let d = tempfile::tempdir().unwrap();
    let (a1, a2) = (d.path().join("a1"), d.path().join("a2"));
    seeded_adapter(&a1, 3);
    seeded_adapter(&a2, 4);
    let prompts: Vec<String> = (0..32).map(|i| format!("{} {}", WORDS[i % WORDS.len()], WORDS.iter().cycle().skip(i).take(12).copied().collect::<Vec<_>>().join(" "))).collect();
    let req = |p: &str| GenRequest { messages: vec![], prompt: Some(p.to_string()), tools: vec![], tool_choice: ToolChoice::Auto, temperature: 0.0, top_p: 1.0, top_k: 0, max_tokens: 6, stop: vec![], seed: Some(1) };
    // What each version answers alone.
    let mut want: HashMap<String, HashMap<String, String>> = HashMap::new();
    for a in [&a1, &a2] {
        let mut e = TchEngine::load(tiny(), Some(a), "cpu", "tiny").unwrap();
        let v = e.version();
        let batch: Vec<GenRequest> = prompts.iter().map(|p| req(p)).collect();
        let outs = e.generate(&batch, &mut |_, _| {});
        want.insert(v, prompts.iter().cloned().zip(outs.into_iter().map(|o| o.unwrap().content)).collect());
    }
    assert!(prompts.iter().any(|p| want.values().map(|m| &m[p]).collect::<std::collections::HashSet<_>>().len() == 2), "the adapters must answer differently somewhere");

    let handle = engine::spawn(Box::new(TchEngine::load(tiny(), Some(&a1), "cpu", "tiny").unwrap()), 16, Duration::from_millis(10));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1/completions", listener.local_addr().unwrap());
    let router = keel_trainer::serve::router(handle.clone(), "tiny", 64);
    rt.spawn(async move { axum::serve(listener, router).await.unwrap() });
    let done = std::sync::atomic::AtomicBool::new(false);
    let (answers, swaps) = std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut swaps = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                let to = if swaps % 2 == 0 { &a2 } else { &a1 };
                rt.block_on(handle.swap(Some(to.clone()))).unwrap();
                swaps += 1;
            }
            swaps
        });
        let clients: Vec<_> = prompts
            .iter()
            .map(|p| {
                let url = url.clone();
                s.spawn(move || {
                    let c = reqwest::blocking::Client::new();
                    (0..6)
                        .map(|k| {
                            // Spread over three seconds, so that requests meet every swap.
                            std::thread::sleep(Duration::from_millis(if k == 0 { 0 } else { 500 }));
                            let r = c.post(&url).json(&json!({"prompt": p, "temperature": 0, "max_tokens": 6, "seed": 1})).send().unwrap();
                            assert_eq!(r.status(), 200);
                            let v: Value = r.json().unwrap();
                            (p.clone(), v["system_fingerprint"].as_str().unwrap().to_string(), v["choices"][0]["text"].as_str().unwrap().to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let answers: Vec<(String, String, String)> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (answers, swapper.join().unwrap())
    });
    assert_eq!(answers.len(), 32 * 6, "every request answered");
    assert!(swaps >= 2, "the adapter was swapped under load ({swaps} swaps)");
    let versions: std::collections::HashSet<&str> = answers.iter().map(|(_, v, _)| v.as_str()).collect();
    assert_eq!(versions.len(), 2, "both versions served: {versions:?}");
    for (p, v, text) in &answers {
        assert_eq!(text, &want[v][p], "the answer is the one {v} gives alone, for {p:?}");
    }
}
