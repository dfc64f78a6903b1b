//! keel-lsp over the wire, side by side with lsp-ai: `cargo bench -p keel-server --bench wire`
//! (also run by `cargo xtask bench`).
//!
//! Both binaries are spawned in one run, with the same client (`keel_e2e::wire`), on the same
//! 20,000-line Rust file, in alternating rounds:
//! - the code-action round trip (request written → answer read), 20,000 calls at lines spread over
//!   the file, after 2,000 to warm up: p50, p99, max;
//! - edits absorbed per second: 20,000 incremental `didChange`s (a character typed at a random
//!   line, then deleted) written as fast as the server takes them, then a code action; the count
//!   over the time until its answer;
//! - resident memory after that.
//!
//! lsp-ai (crates.io, `cargo install lsp-ai --locked`) is found through `LSP_AI` (a path), else
//! `lsp-ai` on `PATH`, else `~/.cargo/bin/lsp-ai`. It gets a file-store memory, one OpenAI-style
//! model that is never called, and as many code actions as keel-lsp lists, so both answer with
//! the same number of actions. Without it the bench says so and measures keel-lsp alone.
//! `WIRE_ROUNDS` (default 3) and `WIRE_CALLS` (default 20,000) change the amount of work;
//! `KEEL_LSP` measures another keel-lsp binary instead of this build's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_e2e::wire::{WireClient, percentile, rust_file};
use serde_json::{Value, json};

const LINES: usize = 20_000;

struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
    edits_per_sec: f64,
    rss_kib: u64,
    actions: usize,
}

enum Server {
    Keel(PathBuf),
    LspAi(PathBuf, usize),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Keel(_) => "keel-lsp",
            Server::LspAi(..) => "lsp-ai",
        }
    }
}

fn find_lsp_ai() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LSP_AI") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("lsp-ai")).find(|p| p.is_file()));
    on_path.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/lsp-ai")).filter(|p| p.is_file()))
}

fn code_action(uri: &str, line: u32) -> Value {
    json!({
        "textDocument": {"uri": uri},
        "range": {"start": {"line": line, "character": 4}, "end": {"line": line, "character": 12}},
        "context": {"diagnostics": [{"range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 1}}, "message": "mismatched types"}]}
    })
}

fn measure(server: &Server, dir: &Path, text: &str, calls: usize) -> Result<Figures, String> {
    let root = dir.join("ws");
    let file = root.join("big.rs");
    let uri = format!("file://{}", file.display());
    let (mut c, options) = match server {
        Server::Keel(exe) => {
            let c = WireClient::spawn(exe, &[], &[("KEEL_LOG", "error")], None)?;
            let store = dir.join("keel.db");
            (c, json!({"model": {"endpoint": "http://127.0.0.1:9/v1", "name": "m"}, "store": store, "sandbox": "off"}))
        }
        Server::LspAi(exe, actions) => {
            let c = WireClient::spawn(exe, &[], &[], None)?;
            let actions: Vec<Value> = (0..*actions).map(|i| json!({"action_display_name": format!("Action {i}"), "model": "m", "parameters": {"max_tokens": 64}})).collect();
            let options = json!({
                "memory": {"file_store": {}},
                "models": {"m": {"type": "open_ai", "chat_endpoint": "http://127.0.0.1:9/v1/chat/completions", "model": "m", "auth_token": "none"}},
                "actions": actions
            });
            (c, options)
        }
    };
    c.initialize(&root, options)?;
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "rust", "version": 1, "text": text}})).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(30);
    let mut actions = 0;
    for i in 0..2_000u32 {
        let (r, _) = c.request("textDocument/codeAction", code_action(&uri, (i * 7919) % LINES as u32), timeout).ok_or("no answer to a code action")?;
        actions = r["result"].as_array().map_or(0, Vec::len);
    }
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls as u32 {
        let (r, t) = c.request("textDocument/codeAction", code_action(&uri, (i * 7919) % LINES as u32), timeout).ok_or("no answer to a code action")?;
        if r.get("result").is_none() {
            return Err(format!("a code action failed: {r}"));
        }
        times.push(t);
    }
    times.sort();

    // Typing: as fast as the server takes it, then one request after the last change. Each pair of
    // changes types a character at column 2 of a random line with at least 3 characters and deletes
    // it again, so every change is valid and the text stays as it was.
    let long: Vec<u64> = text.lines().enumerate().filter(|(_, l)| l.chars().count() >= 3).map(|(i, _)| i as u64).collect();
    let mut seed = 12345u64;
    let mut line = 0;
    let t0 = Instant::now();
    for v in 0..calls as u64 {
        let change = if v % 2 == 0 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            line = long[((seed >> 33) % long.len() as u64) as usize];
            json!({"range": {"start": {"line": line, "character": 2}, "end": {"line": line, "character": 2}}, "text": "x"})
        } else {
            json!({"range": {"start": {"line": line, "character": 2}, "end": {"line": line, "character": 3}}, "text": ""})
        };
        c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": v + 2}, "contentChanges": [change]})).map_err(|e| e.to_string())?;
    }
    c.request("textDocument/codeAction", code_action(&uri, 1), Duration::from_secs(120)).ok_or("no answer after the edits")?;
    let edits_per_sec = calls as f64 / t0.elapsed().as_secs_f64();
    let rss_kib = c.rss_kib();
    c.shutdown();
    Ok(Figures { p50: percentile(&times, 50.0), p99: percentile(&times, 99.0), max: times[times.len() - 1], edits_per_sec, rss_kib, actions })
}

fn report(round: usize, name: &str, f: &Figures) {
    println!(
        "  round {round} {name:<9} code action p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  ({} actions)  edits {:>8.0}/s  resident {:>6} KiB",
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.max.as_secs_f64() * 1e3,
        f.actions,
        f.edits_per_sec,
        f.rss_kib
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to configure from it.
    let rounds: usize = std::env::var("WIRE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let calls: usize = std::env::var("WIRE_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    // `KEEL_LSP`: another build of keel-lsp to measure (an older commit's, say).
    let keel = std::env::var_os("KEEL_LSP").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keel-lsp")), PathBuf::from);
    let lsp_ai = find_lsp_ai();
    if lsp_ai.is_none() {
        println!("wire: lsp-ai not found (LSP_AI, PATH, ~/.cargo/bin; `cargo install lsp-ai --locked`): measuring keel-lsp alone");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("ws")).expect("the workspace");
    let text = rust_file(LINES);
    std::fs::write(dir.path().join("ws/big.rs"), &text).expect("the file");
    println!("wire: {} lines, {} KiB; {rounds} rounds of {calls} code actions and {calls} edits per server", text.lines().count(), text.len() / 1024);

    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    let mut actions = None;
    for round in 0..rounds {
        let mut servers = vec![Server::Keel(keel.clone())];
        if let (Some(p), Some(n)) = (&lsp_ai, actions) {
            servers.push(Server::LspAi(p.clone(), n));
        }
        // Alternate which goes first.
        if round % 2 == 1 {
            servers.reverse();
        }
        for s in &servers {
            match measure(s, dir.path(), &text, calls) {
                Ok(f) => {
                    report(round, s.name(), &f);
                    if matches!(s, Server::Keel(_)) {
                        actions.get_or_insert(f.actions);
                    }
                    results.push((s.name(), f));
                }
                Err(e) => println!("  round {round} {}: failed: {e}", s.name()),
            }
        }
        // In the first round lsp-ai goes second, once keel-lsp's number of actions is known.
        if let (0, Some(p), Some(n)) = (round, &lsp_ai, actions) {
            match measure(&Server::LspAi(p.clone(), n), dir.path(), &text, calls) {
                Ok(f) => {
                    report(round, "lsp-ai", &f);
                    results.push(("lsp-ai", f));
                }
                Err(e) => println!("  round {round} lsp-ai: failed: {e}"),
            }
        }
    }
    println!("wire: median over the rounds");
    for name in ["keel-lsp", "lsp-ai"] {
        let mut of: Vec<&Figures> = results.iter().filter(|(n, _)| *n == name).map(|(_, f)| f).collect();
        if of.is_empty() {
            continue;
        }
        let med = |key: &dyn Fn(&Figures) -> f64, of: &mut Vec<&Figures>| {
            of.sort_by(|a, b| key(a).total_cmp(&key(b)));
            key(of[of.len() / 2])
        };
        println!(
            "  {name:<9} code action p50 {:.3} ms  p99 {:.3} ms  edits {:.0}/s  resident {:.0} KiB",
            med(&|f| f.p50.as_secs_f64() * 1e3, &mut of),
            med(&|f| f.p99.as_secs_f64() * 1e3, &mut of),
            med(&|f| f.edits_per_sec, &mut of),
            med(&|f| f.rss_kib as f64, &mut of),
        );
    }
}
