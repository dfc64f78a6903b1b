//! The model layer against transformers, PEFT and the Python tokenizer, on tiny random models of
//! both families made by transformers itself (see `model_fixtures.py`), and on `init-model`'s
//! output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use keel_trainer::init_model::{InitOptions, init_model};
use keel_trainer::model::{
    Config, Family, IncrementalDecoder, LoadOptions, LogitsProcessor, LoraConfig, Model, ModelError, Pipeline,
    SamplingParams, Sequence, Tokenizer, Weights, completion_logps, generate, pair_logps, weights,
};
use keel_trainer::score::{read_pairs, score_pairs};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const SCRIPT: &str = include_str!("model_fixtures.py");

struct Fixtures {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixtures {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn expect(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(&format!("expect_{name}.json"))).unwrap()).unwrap()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

fn run_python(args: &[&str]) -> String {
    let dir = fixtures_dir_for_script();
    let out = Command::new(python()).arg(dir.join("model_fixtures.py")).args(args).output().expect("running python");
    assert!(out.status.success(), "python {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fixtures_dir_for_script() -> &'static Path {
    &fx().root
}

/// Built once per test run: `init-model` (its tokenizer is shared by the transformers models),
/// then the Python fixtures.
fn fx() -> &'static Fixtures {
    static FX: OnceLock<Fixtures> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("model_fixtures.py"), SCRIPT).unwrap();
        let init = root.join("init");
        init_model(&init, &InitOptions { preset: "tiny".into(), family: Family::Qwen2, seed: 7 }).unwrap();
        let out = Command::new(python())
            .arg(root.join("model_fixtures.py"))
            .args(["fixtures", root.to_str().unwrap(), init.to_str().unwrap()])
            .output()
            .expect("running python");
        assert!(out.status.success(), "fixtures failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Fixtures { _dir: dir, root }
    })
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap()
}

fn ids_tensor(rows: &[Vec<i64>]) -> Tensor {
    let n = rows[0].len() as i64;
    Tensor::from_slice(&rows.concat()).view([rows.len() as i64, n])
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn json_ids(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).unwrap()
}

const IDS: [[i64; 12]; 2] = [[5, 17, 42, 99, 100, 7, 3, 250, 31, 64, 11, 2], [300, 1, 2, 3, 400, 8, 9, 77, 66, 55, 44, 33]];

fn check_logits(name: &str, dir: &str) {
    let f = fx();
    let exp = f.expect(name);
    let m = load(&f.path(dir));
    let ids = ids_tensor(&IDS.map(|r| r.to_vec()));
    let logits = tch::no_grad(|| m.transformer.forward(&ids, &Tensor::ones([2, 12], (Kind::Int64, Device::Cpu)), None));
    let shape: Vec<i64> = serde_json::from_value(exp["logits_shape"].clone()).unwrap();
    assert_eq!(logits.size(), shape);
    let want: Vec<f32> = serde_json::from_value(exp["logits"].clone()).unwrap();
    let d = max_diff(&to_vec(&logits), &want);
    assert!(d < 1e-4, "{name}: max |Δlogit| = {d}");
    // Not trivially small: the models are random but their logits spread.
    assert!(want.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.5);
}

#[test]
fn logits_match_transformers_qwen2_sharded_tied_with_bias() {
    check_logits("qwen2", "hf_qwen2");
}

#[test]
fn logits_match_transformers_llama_bf16_llama3_rope() {
    check_logits("llama", "hf_llama");
}

#[test]
fn logits_of_init_model_match_transformers() {
    check_logits("init", "init");
}

#[test]
fn padded_batches_give_each_row_its_own_logits() {
    let m = load(&fx().path("hf_qwen2"));
    let a: Vec<i64> = IDS[0].to_vec();
    let b: Vec<i64> = IDS[1][..7].to_vec();
    let single = |r: &Vec<i64>| {
        let n = r.len() as i64;
        tch::no_grad(|| m.transformer.forward(&ids_tensor(&[r.clone()]), &Tensor::ones([1, n], (Kind::Int64, Device::Cpu)), None))
    };
    let (la, lb) = (single(&a), single(&b));
    // Left padding.
    let left = vec![a.clone(), [vec![0; 5], b.clone()].concat()];
    let mask = ids_tensor(&[vec![1; 12], [vec![0; 5], vec![1; 7]].concat()]);
    let l = tch::no_grad(|| m.transformer.forward(&ids_tensor(&left), &mask, None));
    assert!(max_diff(&to_vec(&l.get(0)), &to_vec(&la.get(0))) < 1e-4);
    assert!(max_diff(&to_vec(&l.get(1).narrow(0, 5, 7)), &to_vec(&lb.get(0))) < 1e-4);
    // Right padding.
    let right = vec![a.clone(), [b.clone(), vec![0; 5]].concat()];
    let mask = ids_tensor(&[vec![1; 12], [vec![1; 7], vec![0; 5]].concat()]);
    let r = tch::no_grad(|| m.transformer.forward(&ids_tensor(&right), &mask, None));
    assert!(max_diff(&to_vec(&r.get(1).narrow(0, 0, 7)), &to_vec(&lb.get(0))) < 1e-4);
    assert!(l.isnan().any().int64_value(&[]) == 0, "padding rows must not produce NaN");
}

#[test]
fn kv_cache_steps_give_the_full_forward_logits() {
    let m = load(&fx().path("hf_llama"));
    let ids = ids_tensor(&[IDS[0].to_vec()]);
    let full = tch::no_grad(|| m.transformer.forward(&ids, &Tensor::ones([1, 12], (Kind::Int64, Device::Cpu)), None));
    let mut cache = m.transformer.new_cache(1, 16);
    let first = tch::no_grad(|| {
        m.transformer.forward(&ids.narrow(1, 0, 8), &Tensor::ones([1, 8], (Kind::Int64, Device::Cpu)), Some(&mut cache))
    });
    assert!(max_diff(&to_vec(&first), &to_vec(&full.narrow(1, 0, 8))) < 1e-4);
    for t in 8..12 {
        let step = tch::no_grad(|| {
            m.transformer.forward(&ids.narrow(1, t, 1), &Tensor::ones([1, t + 1], (Kind::Int64, Device::Cpu)), Some(&mut cache))
        });
        assert!(max_diff(&to_vec(&step), &to_vec(&full.narrow(1, t, 1))) < 1e-4, "step {t}");
    }
    assert_eq!(cache.len(), 12);
}

fn check_greedy(name: &str, dir: &str) {
    let f = fx();
    let exp = f.expect(name);
    let m = load(&f.path(dir));
    let prompts: Vec<Vec<u32>> = vec![vec![10, 20, 30, 40, 50, 60, 70], vec![11, 22, 33]];
    let params = SamplingParams { max_new_tokens: 12, ..Default::default() };
    let out = generate(&m.transformer, &m.tokenizer, prompts.iter().map(|p| (p.clone(), params.clone())).collect(), None).unwrap();
    let got: Vec<Vec<i64>> = out.iter().map(|g| g.tokens.iter().map(|&t| t as i64).collect()).collect();
    assert_eq!(got, json_ids(&exp["greedy"]), "{name}: greedy generation differs from transformers");
    // Repeated prompts (prefilled once, their keys and values shared by the rows): the same tokens.
    let repeated = [&prompts[0], &prompts[1], &prompts[0], &prompts[0], &prompts[1]];
    let out = generate(&m.transformer, &m.tokenizer, repeated.iter().map(|p| ((*p).clone(), params.clone())).collect(), None).unwrap();
    let again: Vec<Vec<i64>> = out.iter().map(|g| g.tokens.iter().map(|&t| t as i64).collect()).collect();
    assert_eq!(again, [0, 1, 0, 0, 1].map(|i| got[i].clone()), "{name}: repeated prompts");
}

#[test]
fn greedy_generation_matches_transformers_both_families() {
    check_greedy("qwen2", "hf_qwen2");
    check_greedy("llama", "hf_llama");
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let f = fx();
    let exp = f.expect("init");
    let m = load(&f.path("init"));
    assert!((1000..=2048).contains(&m.tokenizer.vocab_size()), "vocab {}", m.tokenizer.vocab_size());
    for pair in exp["encode"].as_array().unwrap() {
        let text = pair[0].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(pair[1].clone()).unwrap();
        let ids = m.tokenizer.encode(text).unwrap();
        assert_eq!(ids, want, "encoding {text:?}");
        assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text);
        // Streaming decode gives the same text, never a broken character.
        let mut dec = IncrementalDecoder::new(false);
        let mut s = String::new();
        for &t in &ids {
            let piece = dec.push(&m.tokenizer, t).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
            s.push_str(&piece);
        }
        s.push_str(&dec.finish(&m.tokenizer).unwrap());
        assert_eq!(s, text);
    }
    let pairs = read_pairs(&f.path("pairs.jsonl")).unwrap();
    let t = m.template().unwrap();
    let mut msgs = pairs[1].prompt.as_array().unwrap().clone();
    msgs.extend(pairs[1].chosen.as_array().unwrap().iter().cloned());
    assert_eq!(t.render(&msgs, pairs[1].tools.as_deref(), false).unwrap(), exp["chat"].as_str().unwrap());
    assert_eq!(t.render(pairs[2].prompt.as_array().unwrap(), None, true).unwrap(), exp["chat_gen"].as_str().unwrap());
    assert!(m.eos_ids.contains(&m.tokenizer.token_id("<|im_end|>").unwrap()));
}

fn assert_scores(got: &[(f64, f64)], want: &Value, what: &str) {
    let want: Vec<(f64, f64)> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g.0 - w.0).abs() < 2e-3 && (g.1 - w.1).abs() < 2e-3, "{what}: keel {g:?} vs python {w:?}");
    }
}

#[test]
fn scores_match_the_trl_convention_in_python() {
    let f = fx();
    let pairs = read_pairs(&f.path("pairs.jsonl")).unwrap();
    for (name, dir) in [("qwen2", "hf_qwen2"), ("llama", "hf_llama"), ("init", "init")] {
        let m = load(&f.path(dir));
        for bs in [1, 3] {
            assert_scores(&score_pairs(&m, &pairs, bs).unwrap(), &f.expect(name)["scores"], name);
        }
    }
}

/// (chosen, rejected) log-probs from `keel-train score`'s JSON lines.
fn score_lines(stdout: &[u8]) -> Vec<(f64, f64)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["chosen_logp"].as_f64().unwrap(), v["rejected_logp"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn score_command_prints_one_line_per_pair() {
    let f = fx();
    let out = keel_e2e::command("keel-train")
        .args(["score", "--model", f.path("hf_llama").to_str().unwrap(), "--pairs", f.path("pairs.jsonl").to_str().unwrap()])
        .args(["--adapter", f.path("peft_llama").to_str().unwrap(), "--batch-size", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = score_lines(&out.stdout);
    assert_scores(&got, &f.expect("llama")["peft_scores"], "score --adapter");
}

#[test]
fn peft_adapters_load_in_keel() {
    let f = fx();
    let pairs = read_pairs(&f.path("pairs.jsonl")).unwrap();
    for name in ["qwen2", "llama"] {
        let mut m = load(&f.path(&format!("hf_{name}")));
        m.load_adapter(&f.path(&format!("peft_{name}"))).unwrap();
        assert_scores(&score_pairs(&m, &pairs, 2).unwrap(), &f.expect(name)["peft_scores"], name);
        // Adapters off: the reference model, same weights.
        m.transformer.set_lora_enabled(false);
        assert_scores(&score_pairs(&m, &pairs, 2).unwrap(), &f.expect(name)["scores"], name);
    }
}

#[test]
fn keel_adapters_load_in_peft_with_the_same_logps() {
    let f = fx();
    let pairs = read_pairs(&f.path("pairs.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["qwen2", "llama"] {
        let model_dir = f.path(&format!("hf_{name}"));
        let mut m = load(&model_dir);
        let base = score_pairs(&m, &pairs, 4).unwrap();
        let lora = m.add_lora(LoraConfig { r: 4, alpha: 16.0, dropout: 0.1, ..Default::default() }, 3).unwrap();
        assert_eq!(lora.vs.trainable_variables().len(), 2 * 7 * 2);
        // A fresh adapter (B = 0) changes nothing.
        let fresh = score_pairs(&m, &pairs, 4).unwrap();
        for (a, b) in fresh.iter().zip(&base) {
            assert!((a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4);
        }
        // Give B non-zero values, as training would.
        let mut g = keel_trainer::model::rng::Rng::new(11);
        for (n, mut t) in m.lora.as_ref().unwrap().vs.variables() {
            if n.ends_with("lora_B") {
                let v = Tensor::from_slice(&g.normal_vec(t.numel(), 0.05)).view(t.size().as_slice());
                tch::no_grad(|| t.copy_(&v));
            }
        }
        let keel = score_pairs(&m, &pairs, 4).unwrap();
        assert!((keel[1].0 - base[1].0).abs() > 1e-2, "the adapter must change the scores");
        let out = dir.path().join(name);
        m.save_adapter(&out).unwrap();
        let cfg: Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        let w = Weights::open_files(&[out.join("adapter_model.safetensors")]).unwrap();
        assert_eq!(w.shape("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"), Some(&[4i64, 64][..]));
        assert_eq!(w.shape("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"), Some(&[64i64, 4][..]));
        // PEFT reads it and gives the same log-probs.
        let py = run_python(&["peft", model_dir.to_str().unwrap(), out.to_str().unwrap(), f.path("pairs.jsonl").to_str().unwrap()]);
        let py: Value = serde_json::from_str(py.trim().lines().last().unwrap()).unwrap();
        assert_scores(&keel, &py, name);
        // And Keel reads it back.
        let mut again = load(&model_dir);
        again.load_adapter(&out).unwrap();
        assert_scores(&score_pairs(&again, &pairs, 4).unwrap(), &serde_json::to_value(&keel).unwrap(), name);
        assert_eq!(again.lora.as_ref().unwrap().digest(), m.lora.as_ref().unwrap().digest());
    }
}

#[test]
fn sampling_is_seeded_stops_and_can_be_constrained() {
    let m = load(&fx().path("init"));
    let prompt = m.tokenizer.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n").unwrap();
    let p = SamplingParams { max_new_tokens: 16, temperature: 1.0, top_p: 0.9, top_k: 50, seed: 5, ..Default::default() };
    let run = |p: &SamplingParams, n: usize| generate(&m.transformer, &m.tokenizer, vec![(prompt.clone(), p.clone()); n], None).unwrap();
    let a = run(&p, 1);
    let b = run(&p, 3);
    assert_eq!(a[0].tokens, b[0].tokens, "same seed, same tokens, alone or batched");
    assert_eq!(b[0].tokens, b[2].tokens);
    let c = run(&SamplingParams { seed: 6, ..p.clone() }, 1);
    assert_ne!(a[0].tokens, c[0].tokens, "another seed samples differently");
    // top_k = 1 is greedy.
    let greedy = run(&SamplingParams { max_new_tokens: 16, ..Default::default() }, 1);
    let k1 = run(&SamplingParams { top_k: 1, ..p.clone() }, 1);
    assert_eq!(greedy[0].tokens, k1[0].tokens);
    // A stop string cuts the text and ends the row.
    let text = &a[0].text;
    if let Some(stop) = text.get(2..4).filter(|s| !s.trim().is_empty()) {
        let s = run(&SamplingParams { stop: vec![stop.to_string()], ..p.clone() }, 1);
        assert_eq!(s[0].finish, keel_trainer::model::FinishReason::Stop);
        assert!(!s[0].text.contains(stop) && text.starts_with(&s[0].text));
    }
    // An eos id ends the row.
    let e = run(&SamplingParams { eos_ids: vec![a[0].tokens[3]], ..p.clone() }, 1);
    assert_eq!(e[0].finish, keel_trainer::model::FinishReason::Eos);
    assert!(e[0].tokens.len() <= 4);
    // A processor that allows only digits.
    struct Digits(Vec<bool>);
    impl LogitsProcessor for Digits {
        fn process(&mut self, _row: usize, _generated: &[u32], logits: &mut [f32]) {
            for (l, ok) in logits.iter_mut().zip(&self.0) {
                if !ok {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
    let allowed: Vec<bool> = (0..m.config.vocab_size as u32)
        .map(|i| m.tokenizer.decode(&[i], false).is_ok_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())))
        .collect();
    let mut d = Digits(allowed);
    let out = generate(&m.transformer, &m.tokenizer, vec![(prompt.clone(), p.clone())], Some(&mut d)).unwrap();
    assert!(!out[0].text.is_empty() && out[0].text.chars().all(|c| c.is_ascii_digit()), "{:?}", out[0].text);
}

// ----- errors: one clear message each -----

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    copy_dir(&fx().path("init"), &d);
    let cfg_path = d.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["num_attention_heads"] = "four".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load_err(&d);
    assert!(e.contains("malformed config") && e.contains("`num_attention_heads` must be a positive integer"), "{e}");
    std::fs::write(&cfg_path, "{not json").unwrap();
    let e = load_err(&d);
    assert!(e.contains("malformed config") && e.contains("not JSON"), "{e}");
}

fn rewrite_weights(d: &Path, f: impl Fn(&str, Tensor) -> Option<Tensor>) {
    let w = Weights::open(d).unwrap();
    let tensors: Vec<(String, Tensor)> = w
        .names()
        .into_iter()
        .filter_map(|n| f(n, w.load(n, Kind::Float, Device::Cpu).unwrap()).map(|t| (n.to_string(), t)))
        .collect();
    drop(w);
    weights::save(&d.join("model.safetensors"), &tensors).unwrap();
}

#[test]
fn missing_and_misshaped_tensors_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("missing");
    copy_dir(&fx().path("init"), &d);
    rewrite_weights(&d, |n, t| (n != "model.layers.1.self_attn.k_proj.weight").then_some(t));
    let e = load_err(&d);
    assert!(e.contains("missing tensor `model.layers.1.self_attn.k_proj.weight`"), "{e}");

    let d = tmp.path().join("shape");
    copy_dir(&fx().path("init"), &d);
    rewrite_weights(&d, |n, t| Some(if n == "model.layers.0.mlp.up_proj.weight" { t.narrow(0, 0, 100) } else { t }));
    let e = load_err(&d);
    assert!(e.contains("`model.layers.0.mlp.up_proj.weight` has shape [100, 64] but the config wants [128, 64]"), "{e}");
}

#[test]
fn tokenizer_that_does_not_fit_the_vocabulary_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    copy_dir(&fx().path("init"), &d);
    let cfg_path = d.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["vocab_size"] = 600.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load_err(&d);
    assert!(e.contains("tokenizer does not match the model") && e.contains("vocab_size is 600"), "{e}");
    assert!(matches!(Model::load(&d, &LoadOptions::default()), Err(ModelError::VocabMismatch(_))));
}

#[test]
fn adapter_for_another_base_is_a_clear_error() {
    let f = fx();
    // The transformers Qwen2 fixture has intermediate size 96; init-model's tiny has 128.
    let mut m = load(&f.path("init"));
    let e = m.load_adapter(&f.path("peft_qwen2")).unwrap_err().to_string();
    assert!(e.contains("was made for another base model") && e.contains("down_proj"), "{e}");
    assert!(m.lora.is_none());
    // A bad adapter_config.json.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a");
    copy_dir(&f.path("peft_qwen2"), &d);
    std::fs::write(d.join("adapter_config.json"), r#"{"peft_type": "PREFIX_TUNING"}"#).unwrap();
    let e = m.load_adapter(&d).unwrap_err().to_string();
    assert!(e.contains("peft_type must be LORA"), "{e}");
}

// ----- the parity grid: both families, tied and untied, with and without bias, rope theta
// 1e4/1e5/1e6, lengths up to each model's context (see GRID in model_fixtures.py) -----

const GRID: [&str; 4] = ["qwen2_issue", "qwen2_untied", "llama_smol", "llama_bias"];

/// A grid model and its expectations. Also puts libtorch on one intra-op thread: these models are
/// tiny, and on two cores shared with the other test thread (and other builds) OpenMP teams of two
/// spend most of their time waiting; the grid tests run 4-10x faster. libtorch keeps the setting
/// for the calling thread and for threads that start later in this test binary.
fn grid(name: &str) -> (Model, Value) {
    tch::set_num_threads(1);
    let f = fx();
    (load(&f.path(&format!("grid_{name}"))), f.expect(&format!("grid_{name}")))
}

fn ids_u32(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn grid_seqs(exp: &Value) -> Vec<Sequence> {
    let seqs = exp["seqs"].as_array().unwrap();
    seqs.iter().map(|s| Sequence { prompt: ids_u32(&s["prompt"]), completion: ids_u32(&s["completion"]) }).collect()
}

fn grid_pairs(exp: &Value) -> Vec<(Sequence, Sequence)> {
    let pairs = exp["pairs"].as_array().unwrap();
    let seq = |p: &Value, k: &str| Sequence { prompt: ids_u32(&p["prompt"]), completion: ids_u32(&p[k]) };
    pairs.iter().map(|p| (seq(p, "chosen"), seq(p, "rejected"))).collect()
}

/// A summed log-prob against transformers': f32 rounding grows with the number of tokens summed,
/// a modelling error (a wrong position, mask or weight) moves every token by far more.
fn assert_logp(got: f64, want: f64, tokens: usize, what: &str) {
    let tol = 1e-4 + 2e-6 * tokens as f64;
    assert!((got - want).abs() <= tol, "{what}: keel {got} vs transformers {want} (Δ {:e} > {tol:e}, {tokens} tokens)", (got - want).abs());
}

/// Runs `f` on `items` in chunks of `bs` and concatenates what it returns.
fn chunked<T, R>(items: &[T], bs: usize, f: impl Fn(&[T]) -> Vec<R>) -> Vec<R> {
    items.chunks(bs).flat_map(f).collect()
}

fn plain_scores(m: &Model, seqs: &[Sequence], bs: usize) -> Vec<f64> {
    chunked(seqs, bs, |c| {
        let t = tch::no_grad(|| completion_logps(&m.transformer, c).unwrap());
        to_vec(&t).into_iter().map(f64::from).collect()
    })
}

/// (chosen, rejected) per pair through the shared-prompt path.
fn shared_scores(m: &Model, pairs: &[(Sequence, Sequence)], bs: usize) -> Vec<(f64, f64)> {
    chunked(pairs, bs, |c| {
        let refs: Vec<(&Sequence, &Sequence)> = c.iter().map(|(a, b)| (a, b)).collect();
        let v = to_vec(&tch::no_grad(|| pair_logps(&m.transformer, &refs).unwrap()));
        (0..c.len()).map(|i| (v[i] as f64, v[c.len() + i] as f64)).collect()
    })
}

fn check_grid_scores(m: &Model, exp: &Value, seq_key: &str, pair_key: &str, sizes: &[usize], what: &str) {
    let seqs = grid_seqs(exp);
    let pairs = grid_pairs(exp);
    let want_seqs: Vec<f64> = serde_json::from_value(exp[seq_key].clone()).unwrap();
    let want_pairs: Vec<(f64, f64)> = serde_json::from_value(exp[pair_key].clone()).unwrap();
    let ctx = exp["context"].as_u64().unwrap() as usize;
    assert!(seqs.iter().any(|s| s.prompt.len() + s.completion.len() == ctx), "a sequence fills the context");
    for &bs in sizes {
        for (i, got) in plain_scores(m, &seqs, bs).into_iter().enumerate() {
            let s = &seqs[i];
            let what = format!("{what}, plain path, batch size {bs}, sequence {i} ({}+{})", s.prompt.len(), s.completion.len());
            assert_logp(got, want_seqs[i], s.completion.len(), &what);
        }
        for (i, got) in shared_scores(m, &pairs, bs).into_iter().enumerate() {
            let (c, r) = &pairs[i];
            let what = format!("{what}, shared-prompt path, batch size {bs}, pair {i} ({}+{}/{})", c.prompt.len(), c.completion.len(), r.completion.len());
            assert_logp(got.0, want_pairs[i].0, c.completion.len(), &format!("{what} chosen"));
            assert_logp(got.1, want_pairs[i].1, r.completion.len(), &format!("{what} rejected"));
        }
    }
}

#[test]
fn grid_logprobs_match_transformers_at_every_position_up_to_the_context() {
    for name in GRID {
        let (m, exp) = grid(name);
        let ids: Vec<i64> = serde_json::from_value(exp["long_ids"].clone()).unwrap();
        let n = ids.len() as i64;
        assert_eq!(n, m.config.max_position_embeddings, "{name}: the sequence fills the context");
        let logits = tch::no_grad(|| m.transformer.forward(&ids_tensor(std::slice::from_ref(&ids)), &Tensor::ones([1, n], (Kind::Int64, Device::Cpu)), None));
        let targets = Tensor::from_slice(&ids[1..]).view([n - 1, 1]);
        let got = to_vec(&logits.get(0).narrow(0, 0, n - 1).log_softmax(-1, Kind::Float).gather(1, &targets, false));
        let want: Vec<f32> = serde_json::from_value(exp["token_logps"].clone()).unwrap();
        let (worst, d) = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |w, (i, d)| if d > w.1 { (i, d) } else { w });
        assert!(d <= 1e-5, "{name}: max |Δ log p| = {d:e} at position {} of {n}", worst + 1);
    }
}

#[test]
fn grid_scores_match_transformers_at_every_batch_size_on_both_paths() {
    for name in GRID {
        let (m, exp) = grid(name);
        // Every batch size where contexts are short; on the long-context model (its batches pad to
        // 576 tokens) one sequence at a time and all eight in one batch.
        let sizes: &[usize] = if m.config.max_position_embeddings > 128 { &[1, 8] } else { &[1, 2, 3, 4, 5, 6, 7, 8] };
        check_grid_scores(&m, &exp, "seq_scores", "pair_scores", sizes, name);
    }
}

#[test]
fn grid_lora_scores_match_peft_on_both_paths() {
    // Adapters act per token, the same at every position: one model, every linear layer adapted.
    let (mut m, exp) = grid("qwen2_issue");
    m.load_adapter(&fx().path("grid_peft_qwen2_issue")).unwrap();
    check_grid_scores(&m, &exp, "peft_seq_scores", "peft_pair_scores", &[1, 3, 8], "qwen2_issue + PEFT adapter");
    // Adapter off: the base model's scores again.
    m.transformer.set_lora_enabled(false);
    check_grid_scores(&m, &exp, "seq_scores", "pair_scores", &[8], "qwen2_issue, adapter off");
}

#[test]
fn grid_greedy_generation_matches_transformers_past_21_tokens() {
    for name in GRID {
        let (m, exp) = grid(name);
        let prompts: Vec<Vec<u32>> = serde_json::from_value(exp["gen_prompts"].clone()).unwrap();
        let want: Vec<Vec<u32>> = serde_json::from_value(exp["greedy"].clone()).unwrap();
        let params = SamplingParams { max_new_tokens: want[0].len(), ..Default::default() };
        assert!(prompts.iter().all(|p| p.len() + params.max_new_tokens > 21));
        let out = generate(&m.transformer, &m.tokenizer, prompts.iter().map(|p| (p.clone(), params.clone())).collect(), None).unwrap();
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.tokens, want[i], "{name}: greedy tokens of prompt {i} ({} tokens) differ from transformers", prompts[i].len());
        }
    }
}

#[test]
fn tokenization_follows_the_tokenizer_class_transformers_picks() {
    // transformers 5 rebuilds a qwen2 model's tokenizer as Qwen2Tokenizer whatever tokenizer.json
    // says, a Llama model's declaring GPT2Tokenizer as GPT2Tokenizer, and loads the rest as written.
    let f = fx();
    for (name, class, pipeline) in [
        ("qwen2_issue", "Qwen2Tokenizer", Pipeline::Qwen2 { add_prefix_space: false }),
        ("qwen2_untied", "Qwen2Tokenizer", Pipeline::Qwen2 { add_prefix_space: false }),
        ("llama_smol", "GPT2Tokenizer", Pipeline::Gpt2 { add_prefix_space: false }),
        ("llama_bias", "TokenizersBackend", Pipeline::AsWritten),
    ] {
        let (m, exp) = grid(name);
        assert_eq!(exp["tokenizer_class"], class, "{name}");
        let dir = f.path(&format!("grid_{name}"));
        let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(Pipeline::for_model(m.config.family, &cfg), pipeline, "{name}");
        let as_written = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let mut differs = false;
        for pair in exp["encode"].as_array().unwrap() {
            let text = pair[0].as_str().unwrap();
            let want = ids_u32(&pair[1]);
            assert_eq!(m.tokenizer.encode(text).unwrap(), want, "{name}: encoding {text:?}");
            differs |= as_written.encode(text).unwrap() != want;
        }
        // The texts are chosen so that a rebuilt pipeline shows: tokenizer.json read as written
        // would not match transformers.
        assert_eq!(differs, pipeline != Pipeline::AsWritten, "{name}");
    }
}

#[test]
fn scores_of_text_pairs_match_trl_on_qwen2_with_a_foreign_pre_tokenizer() {
    // The issue: a qwen2 model whose tokenizer.json was trained with a plain byte-level
    // pre-tokenizer; TRL tokenizes through Qwen2Tokenizer.
    let f = fx();
    let pairs = read_pairs(&f.path("grid_pairs.jsonl")).unwrap();
    for name in GRID {
        let (m, exp) = grid(name);
        for bs in [1, 3] {
            assert_scores(&score_pairs(&m, &pairs, bs).unwrap(), &exp["text_scores"], &format!("{name}, batch size {bs}"));
        }
    }
    let out = keel_e2e::command("keel-train")
        .args(["score", "--model", f.path("grid_qwen2_issue").to_str().unwrap(), "--pairs", f.path("grid_pairs.jsonl").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = score_lines(&out.stdout);
    assert_scores(&got, &grid("qwen2_issue").1["text_scores"], "keel-train score on the issue's model");
}

#[test]
fn the_pipeline_follows_family_and_declared_class() {
    let cfg = |class: Option<&str>, aps: Option<bool>| {
        let mut v = serde_json::json!({});
        if let Some(c) = class {
            v["tokenizer_class"] = c.into();
        }
        if let Some(a) = aps {
            v["add_prefix_space"] = a.into();
        }
        v
    };
    let qwen = Pipeline::Qwen2 { add_prefix_space: false };
    // qwen2: Qwen2Tokenizer whatever is declared, or with no tokenizer_config.json at all.
    for c in [None, Some("PreTrainedTokenizerFast"), Some("TokenizersBackend"), Some("Qwen2TokenizerFast"), Some("GPT2Tokenizer"), Some("LlamaTokenizerFast")] {
        assert_eq!(Pipeline::for_model(Family::Qwen2, &cfg(c, None)), qwen, "{c:?}");
    }
    assert_eq!(Pipeline::for_model(Family::Qwen2, &Value::Null), qwen);
    assert_eq!(Pipeline::for_model(Family::Qwen2, &cfg(None, Some(true))), Pipeline::Qwen2 { add_prefix_space: true });
    // llama: the declared class.
    assert_eq!(Pipeline::for_model(Family::Llama, &cfg(Some("GPT2TokenizerFast"), Some(true))), Pipeline::Gpt2 { add_prefix_space: true });
    assert_eq!(Pipeline::for_model(Family::Llama, &cfg(Some("Qwen2Tokenizer"), None)), qwen);
    for c in [None, Some("PreTrainedTokenizerFast"), Some("TokenizersBackend"), Some("LlamaTokenizerFast")] {
        assert_eq!(Pipeline::for_model(Family::Llama, &cfg(c, None)), Pipeline::AsWritten, "{c:?}");
    }
}

#[test]
fn a_non_bpe_tokenizer_under_a_rebuilding_class_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    let wordlevel = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"},
    });
    std::fs::write(&path, wordlevel.to_string()).unwrap();
    assert_eq!(Tokenizer::with_pipeline(&path, Pipeline::AsWritten).unwrap().encode("hello").unwrap(), [1]);
    let e = Tokenizer::with_pipeline(&path, Pipeline::Qwen2 { add_prefix_space: false }).unwrap_err().to_string();
    assert!(e.contains("as Qwen2Tokenizer, a byte-level BPE") && e.contains("holds a WordLevel model"), "{e}");
}

#[test]
fn sliding_window_attention_is_a_clear_error() {
    let base = serde_json::json!({
        "model_type": "qwen2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
    });
    let parse = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Config::parse(&v.to_string())
    };
    // What Qwen2.5 checkpoints and transformers 5 write: no layer slides.
    parse(serde_json::json!({"use_sliding_window": false, "sliding_window": 4096, "max_window_layers": 2})).unwrap();
    parse(serde_json::json!({"use_sliding_window": false, "sliding_window": null, "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention"]})).unwrap();
    parse(serde_json::json!({"use_sliding_window": true, "sliding_window": 4096, "max_window_layers": 28})).unwrap();
    // Layers from max_window_layers on slide.
    let e = parse(serde_json::json!({"use_sliding_window": true, "sliding_window": 16, "max_window_layers": 1})).unwrap_err();
    assert!(e.contains("sliding-window attention is not supported") && e.contains("sliding_window 16") && e.contains("3 of 4 layers slide, from layer 1"), "{e}");
    // layer_types as written wins over max_window_layers.
    let types = serde_json::json!(["full_attention", "full_attention", "full_attention", "sliding_attention"]);
    let e = parse(serde_json::json!({"use_sliding_window": true, "sliding_window": 16, "max_window_layers": 0, "layer_types": types})).unwrap_err();
    assert!(e.contains("1 of 4 layers slide, from layer 3"), "{e}");
    let e = parse(serde_json::json!({"use_sliding_window": true, "sliding_window": 16, "layer_types": ["full_attention"]})).unwrap_err();
    assert!(e.contains("`layer_types` has 1 entries for 4 layers"), "{e}");
    let e = parse(serde_json::json!({"use_sliding_window": "yes"})).unwrap_err();
    assert!(e.contains("`use_sliding_window` must be true or false"), "{e}");
}
