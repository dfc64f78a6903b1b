//! The load suite: several editors at once, each with its own keel-lsp over stdio (one server per
//! client, as LSP has it), all on one workspace, one store and one scripted model that streams.
//! Each client opens its documents, keeps an episode running (the model answers with streamed
//! reads and searches, then `finish`; a new episode starts when one ends) and types at a steady
//! rate: every keystroke is a `didChange` followed at once by a code-action request at the edited
//! line, and every few keystrokes a code action is listed on its own. Everything is timed from the
//! write to the answer's arrival ([`crate::wire::WireClient`]).
//!
//! Used by the LSP test (a short run: nothing dropped, every answer right) and by the `load` bench
//! (a long one: the percentiles).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::wire::WireClient;
use crate::{Reply, ScriptedModel};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub clients: usize,
    pub docs: usize,
    pub edits_per_sec: u32,
    pub duration: Duration,
    /// A code action on its own every this many keystrokes.
    pub listing_every: u32,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig { clients: 8, docs: 20, edits_per_sec: 50, duration: Duration::from_secs(3), listing_every: 5 }
    }
}

#[derive(Debug, Default)]
pub struct LoadReport {
    /// Code actions on their own: round trips.
    pub listing: Vec<Duration>,
    /// A `didChange` and the code action right after it: from the change's write to the answer.
    pub change: Vec<Duration>,
    /// Requests sent, and those never answered (within 10 s).
    pub requests: usize,
    pub dropped: usize,
    /// Answers that were errors or not what was asked, and other failures, described.
    pub wrong: Vec<String>,
    pub episodes_started: usize,
    pub episodes_ended: usize,
    pub model_requests: usize,
}

const ANSWER: Duration = Duration::from_secs(10);
const LINES: usize = 120;

fn document(c: usize, d: usize) -> String {
    let mut s = format!("\"\"\"Module {c}-{d}.\"\"\"\n\n");
    let mut i = 0;
    while s.lines().count() < LINES {
        s.push_str(&format!("def f{i}(a, b):\n    # é 😀 {i}\n    return a * {i} + b\n\n"));
        i += 1;
    }
    s
}

/// Runs the load against `exe`, in `dir` (workspace, store and the servers' logs).
pub fn run(exe: &Path, dir: &Path, cfg: &LoadConfig) -> LoadReport {
    let model = ScriptedModel::start();
    // Enough streamed answers for every episode: reads and a search, then the end.
    let per_client = (cfg.duration.as_secs_f64() * 20.0) as usize + 20;
    for _ in 0..cfg.clients * per_client {
        model.push(Reply::tool("view_file", json!({"path": "c0_d0.py", "start_line": 1, "end_line": 20})), true);
        model.push(Reply::tool("search", json!({"pattern": "def f1"})), true);
        model.push(Reply::tool("finish", json!({"summary": "looked"})), true);
    }
    let root = dir.join("ws");
    std::fs::create_dir_all(&root).expect("the workspace");
    for c in 0..cfg.clients {
        for d in 0..cfg.docs {
            std::fs::write(root.join(format!("c{c}_d{d}.py")), document(c, d)).expect("a document");
        }
    }
    let options = json!({
        "model": {"endpoint": model.url, "name": "scripted"},
        "store": dir.join("keel.db"),
        "sandbox": "off",
        "limits": {"request_timeout_secs": 10, "watch_secs": 2}
    });
    let handles: Vec<_> = (0..cfg.clients)
        .map(|c| {
            let (exe, dir, root, options, cfg) = (exe.to_path_buf(), dir.to_path_buf(), root.clone(), options.clone(), cfg.clone());
            std::thread::spawn(move || client(c, &exe, &dir, &root, options, &cfg))
        })
        .collect();
    let mut report = LoadReport::default();
    for h in handles {
        match h.join() {
            Ok(r) => {
                report.listing.extend(r.listing);
                report.change.extend(r.change);
                report.requests += r.requests;
                report.dropped += r.dropped;
                report.wrong.extend(r.wrong);
                report.episodes_started += r.episodes_started;
                report.episodes_ended += r.episodes_ended;
            }
            Err(_) => report.wrong.push("a client thread panicked".into()),
        }
    }
    report.model_requests = model.requests().len();
    report.listing.sort();
    report.change.sort();
    report
}

/// What a code action answer at `uri` must be: a list whose task actions name that document.
fn check_actions(answer: &Value, uri: &str) -> Result<(), String> {
    let Some(list) = answer.get("result").and_then(Value::as_array) else { return Err(format!("not a list of actions: {answer}")) };
    let tasks: Vec<&Value> = list.iter().filter_map(|a| a.pointer("/command/arguments/0")).filter(|a| a.get("kind").is_some()).collect();
    if tasks.is_empty() {
        return Err(format!("no task actions: {answer}"));
    }
    match tasks.iter().find(|a| a["uri"] != uri) {
        Some(a) => Err(format!("an action for another document ({}) in the answer for {uri}", a["uri"])),
        None => Ok(()),
    }
}

fn ended(statuses: &[Value]) -> usize {
    statuses.iter().filter(|s| s["episode"].is_string() && matches!(s["state"].as_str(), Some("finished" | "error" | "cancelled"))).count()
}

fn client(c: usize, exe: &Path, dir: &Path, root: &Path, options: Value, cfg: &LoadConfig) -> LoadReport {
    let mut r = LoadReport::default();
    let mut w = match WireClient::spawn(exe, &[], &[("KEEL_LOG", "warn")], Some(&dir.join(format!("client{c}.log")))) {
        Ok(w) => w,
        Err(e) => {
            r.wrong.push(format!("client {c}: {e}"));
            return r;
        }
    };
    if let Err(e) = w.initialize(root, options) {
        r.wrong.push(format!("client {c}: {e}"));
        return r;
    }
    let uris: Vec<String> = (0..cfg.docs).map(|d| format!("file://{}", root.join(format!("c{c}_d{d}.py")).display())).collect();
    let mut versions = vec![1i64; cfg.docs];
    for (d, uri) in uris.iter().enumerate() {
        let _ = w.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": document(c, d)}}));
    }
    let start = |w: &mut WireClient, r: &mut LoadReport, uri: &str| -> Option<i64> {
        r.episodes_started += 1;
        r.requests += 1;
        w.send_request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": uri, "kind": "implement"}]})).ok()
    };
    let mut starts: Vec<i64> = start(&mut w, &mut r, &uris[0]).into_iter().collect();
    let code_action = |uri: &str, line: u64| json!({"textDocument": {"uri": uri}, "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}}, "context": {"diagnostics": []}});
    let tick = Duration::from_secs_f64(1.0 / cfg.edits_per_sec as f64);
    let t_start = Instant::now();
    let mut seen_ends = 0;
    let mut k: u64 = 0;
    while t_start.elapsed() < cfg.duration {
        let next = t_start + tick * (k as u32 + 1);
        let d = (k as usize) % cfg.docs;
        let line = (k * 7 + c as u64) % LINES as u64;
        versions[d] += 1;
        let change = json!({"textDocument": {"uri": uris[d], "version": versions[d]}, "contentChanges": [{"range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}}, "text": "#"}]});
        let t0 = Instant::now();
        let _ = w.notify("textDocument/didChange", change);
        r.requests += 1;
        match w.send_request("textDocument/codeAction", code_action(&uris[d], line)).ok().and_then(|id| w.wait(id, ANSWER)) {
            Some((a, at)) => {
                r.change.push(at.duration_since(t0));
                if let Err(e) = check_actions(&a, &uris[d]) {
                    r.wrong.push(format!("client {c}: {e}"));
                }
            }
            None => r.dropped += 1,
        }
        if k % cfg.listing_every as u64 == 0 {
            let other = &uris[(d + 1) % cfg.docs];
            r.requests += 1;
            match w.request("textDocument/codeAction", code_action(other, line), ANSWER) {
                Some((a, t)) => {
                    r.listing.push(t);
                    if let Err(e) = check_actions(&a, other) {
                        r.wrong.push(format!("client {c}: {e}"));
                    }
                }
                None => r.dropped += 1,
            }
        }
        // A new episode when the last one ended.
        let ends = ended(&w.statuses.lock().unwrap());
        if ends > seen_ends {
            seen_ends = ends;
            starts.extend(start(&mut w, &mut r, &uris[d]));
        }
        k += 1;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    for id in starts {
        match w.wait(id, ANSWER) {
            Some((a, _)) if a["result"]["episode"].is_string() => {}
            Some((a, _)) => r.wrong.push(format!("client {c}: an episode did not start: {a}")),
            None => r.dropped += 1,
        }
    }
    r.episodes_ended = ended(&w.statuses.lock().unwrap());
    match w.shutdown() {
        Some(s) if s.success() => {}
        other => r.wrong.push(format!("client {c}: keel-lsp exited with {other:?}")),
    }
    r
}
