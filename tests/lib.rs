//! # keel-e2e: support for the end-to-end suites
//!
//! - [`ScriptedModel`]: an OpenAI-compatible chat-completions endpoint on loopback that answers from
//!   a script (tool calls or text, streaming or not) and can misbehave on purpose (garbage, hang,
//!   drop the connection, HTTP errors). It records every request it got.
//! - [`LspClient`]: spawns a language server binary and speaks framed JSON-RPC over its stdio,
//!   answering the server's own requests (`workspace/applyEdit`, `workspace/codeLens/refresh`, ...)
//!   like an editor would.
//! - [`fuzz`]: the structure-aware fuzzer of keel-lsp's input surface and the replay of its corpus
//!   (binary `keel-fuzz`).
//! - [`load`]: the load suite (several editors typing while episodes run and the model streams).
//! - [`wire`]: a lean client that times a server over its stdio (benches and the load suite).
//! - [`bin`]: finds the workspace's built binaries (`target/debug/keel-lsp`, `keel-train`).
//!
//! Plain threads and std networking: usable from any test without an async runtime.

pub mod fuzz;
pub mod load;
pub mod wire;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A built binary of the workspace (`target/<profile>/<name>`), next to the running test binary's
/// profile directory. Fails with a clear message when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --bins` (cargo xtask test does)", p.display());
    p
}

/// A command for a built binary, with the repository's libtorch on `LD_LIBRARY_PATH` when the
/// caller's environment lacks it (`keel-train` links libtorch dynamically; `cargo xtask test` sets
/// this already, a bare `cargo test` does not).
pub fn command(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf();
    let has = std::env::var("LD_LIBRARY_PATH").is_ok_and(|v| v.contains("torch/lib"));
    if !has {
        if let Ok(rd) = std::fs::read_dir(root.join(".venv/lib")) {
            if let Some(lib) = rd.flatten().map(|e| e.path().join("site-packages/torch/lib")).find(|p| p.is_dir()) {
                let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
                c.env("LD_LIBRARY_PATH", if old.is_empty() { lib.display().to_string() } else { format!("{}:{old}", lib.display()) });
            }
        }
    }
    c
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An assistant message with one tool call.
    Tool { name: String, arguments: Value },
    /// An assistant message with text only (for the JSON-in-content fallback).
    Text(String),
    /// Bytes that are not a chat completion, with status 200.
    Garbage(String),
    /// Never answers (until the client gives up).
    Hang,
    /// Closes the connection without answering.
    Drop,
    /// Starts streaming a tool call and closes the connection after `chunks` chunks (the endpoint
    /// dies mid-stream). Streams whether or not it was pushed with `stream`.
    Cut { name: String, arguments: Value, chunks: usize },
    /// An HTTP error with a body.
    Status(u16, String),
}

impl Reply {
    pub fn tool(name: &str, arguments: Value) -> Reply {
        Reply::Tool { name: name.into(), arguments }
    }
}

struct ModelState {
    script: VecDeque<(Reply, bool)>,
    requests: Vec<Value>,
    fingerprint: String,
    /// Refuse requests that carry `tools` (an endpoint without tool support).
    refuse_tools: bool,
}

/// An OpenAI-compatible endpoint on 127.0.0.1 that answers from a script.
pub struct ScriptedModel {
    pub url: String,
    state: Arc<Mutex<ModelState>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedModel {
    pub fn start() -> ScriptedModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ModelState { script: VecDeque::new(), requests: Vec::new(), fingerprint: "scripted@base".into(), refuse_tools: false }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s2.clone();
                std::thread::spawn(move || {
                    let _ = serve_conn(conn, &s);
                });
            }
        });
        ScriptedModel { url, state, stop }
    }

    /// Queues an answer; `stream` answers with server-sent events when the client asked for them.
    pub fn push(&self, reply: Reply, stream: bool) {
        self.state.lock().unwrap().script.push_back((reply, stream));
    }

    pub fn set_fingerprint(&self, f: &str) {
        self.state.lock().unwrap().fingerprint = f.into();
    }

    pub fn refuse_tools(&self, yes: bool) {
        self.state.lock().unwrap().refuse_tools = yes;
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn remaining(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://").trim_end_matches("/v1"));
    }
}

fn serve_conn(mut conn: TcpStream, state: &Arc<Mutex<ModelState>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim().to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        if request_line.starts_with("GET") {
            let b = if request_line.contains("/models") { json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).to_string() } else { "ok".into() };
            write_response(&mut conn, 200, "application/json", b.as_bytes())?;
            continue;
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (next, fingerprint, refuse) = {
            let mut s = state.lock().unwrap();
            s.requests.push(req.clone());
            let refuse = s.refuse_tools && req.get("tools").is_some();
            let next = if refuse { None } else { s.script.pop_front() };
            (next, s.fingerprint.clone(), refuse)
        };
        if refuse {
            write_response(&mut conn, 400, "application/json", br#"{"error":{"message":"tools are not supported by this model"}}"#)?;
            continue;
        }
        let wants_stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let Some((reply, stream)) = next else {
            write_response(&mut conn, 500, "application/json", br#"{"error":{"message":"the script is exhausted"}}"#)?;
            continue;
        };
        let message = match &reply {
            Reply::Tool { name, arguments } => json!({
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]
            }),
            Reply::Text(t) => json!({"role": "assistant", "content": t}),
            Reply::Garbage(g) => {
                write_response(&mut conn, 200, "application/json", g.as_bytes())?;
                continue;
            }
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(600));
                return Ok(());
            }
            Reply::Drop => return Ok(()),
            Reply::Cut { name, arguments, chunks } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
                conn.write_all(head.as_bytes())?;
                let args = arguments.to_string();
                let mut deltas = vec![json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]})];
                let chars: Vec<char> = args.chars().collect();
                deltas.extend(chars.chunks(5).map(|p| json!({"tool_calls": [{"index": 0, "function": {"arguments": p.iter().collect::<String>()}}]})));
                for delta in deltas.into_iter().take(*chunks) {
                    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "scripted", "system_fingerprint": fingerprint, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
                    conn.write_all(format!("data: {c}\n\n").as_bytes())?;
                    conn.flush()?;
                }
                // Dies: no end of stream, the connection closed.
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Reply::Status(code, body) => {
                write_response(&mut conn, *code, "application/json", body.as_bytes())?;
                continue;
            }
        };
        if stream && wants_stream {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
            conn.write_all(head.as_bytes())?;
            let base = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "scripted", "system_fingerprint": fingerprint});
            let mut chunks = Vec::new();
            if let Some(t) = message.get("content").and_then(Value::as_str) {
                for part in t.as_bytes().chunks(7) {
                    chunks.push(json!({"content": String::from_utf8_lossy(part)}));
                }
            }
            if let Some(tc) = message["tool_calls"].get(0) {
                chunks.push(json!({"tool_calls": [{"index": 0, "id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}]}));
                let args = tc["function"]["arguments"].as_str().unwrap_or("").to_string();
                let chars: Vec<char> = args.chars().collect();
                for part in chars.chunks(9) {
                    chunks.push(json!({"tool_calls": [{"index": 0, "function": {"arguments": part.iter().collect::<String>()}}]}));
                }
            }
            for delta in chunks {
                let mut c = base.clone();
                c["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": null}]);
                conn.write_all(format!("data: {c}\n\n").as_bytes())?;
                conn.flush()?;
            }
            let mut c = base.clone();
            c["choices"] = json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]);
            conn.write_all(format!("data: {c}\n\ndata: [DONE]\n\n").as_bytes())?;
            conn.flush()?;
            return Ok(());
        }
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "scripted", "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        });
        write_response(&mut conn, 200, "application/json", body.to_string().as_bytes())?;
    }
}

fn write_response(conn: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n", body.len());
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

/// A body with its `Content-Length` header.
pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Writes one framed JSON-RPC message.
pub fn write_frame(w: &mut impl Write, msg: &Value) -> std::io::Result<()> {
    let s = msg.to_string();
    write!(w, "Content-Length: {}\r\n\r\n{s}", s.len())?;
    w.flush()
}

/// Reads one framed message; `None` at end of stream.
pub fn read_frame(r: &mut impl BufRead) -> Option<Value> {
    let mut len = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("Content-Length:") {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut buf = vec![0; len?];
    r.read_exact(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// How the fake editor answers `workspace/applyEdit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ApplyAnswer {
    Applied,
    Refused,
}

/// A language client over a spawned server's stdio.
pub struct LspClient {
    pub child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    next_id: AtomicI64,
    responses: Arc<Mutex<Vec<Value>>>,
    incoming: Receiver<Value>,
    /// Notifications and server requests, in arrival order.
    pub seen: Vec<Value>,
    pub apply_answer: Arc<Mutex<ApplyAnswer>>,
    /// Edits the server asked the editor to apply.
    pub applied_edits: Arc<Mutex<Vec<Value>>>,
    /// Documents the fake editor keeps (uri → version, text): an applied edit changes the buffer
    /// and is sent as `didChange` before the answer, as real editors do; nothing is saved.
    pub buffers: Arc<Mutex<std::collections::HashMap<String, (i64, String)>>>,
}

impl LspClient {
    pub fn spawn(exe: &Path, envs: &[(&str, &str)]) -> LspClient {
        let mut cmd = Command::new(exe);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", exe.display()));
        let stdin = Arc::new(Mutex::new(child.stdin.take().unwrap()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx): (Sender<Value>, Receiver<Value>) = channel();
        let responses = Arc::new(Mutex::new(Vec::new()));
        let apply_answer = Arc::new(Mutex::new(ApplyAnswer::Applied));
        let applied_edits = Arc::new(Mutex::new(Vec::new()));
        let buffers: Arc<Mutex<std::collections::HashMap<String, (i64, String)>>> = Arc::default();
        let (stdin2, resp2, ans2, edits2, bufs2) = (stdin.clone(), responses.clone(), apply_answer.clone(), applied_edits.clone(), buffers.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            while let Some(msg) = read_frame(&mut r) {
                let is_request = msg.get("method").is_some() && msg.get("id").is_some();
                if is_request {
                    let method = msg["method"].as_str().unwrap_or("");
                    let result = match method {
                        "workspace/applyEdit" => {
                            edits2.lock().unwrap().push(msg["params"].clone());
                            let applied = *ans2.lock().unwrap() == ApplyAnswer::Applied;
                            let edit = &msg["params"]["edit"];
                            let uris: Vec<String> = edit["documentChanges"].as_array().map(|d| d.iter().filter_map(|c| c["textDocument"]["uri"].as_str().map(str::to_string)).collect()).unwrap_or_else(|| edit["changes"].as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default());
                            if applied {
                                let mut bufs = bufs2.lock().unwrap();
                                for uri in uris {
                                    if let Some((version, text)) = bufs.get_mut(&uri) {
                                        *text = apply_workspace_edit(text, edit);
                                        *version += 1;
                                        let change = json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": *version}, "contentChanges": [{"text": text.clone()}]}});
                                        let _ = write_frame(&mut *stdin2.lock().unwrap(), &change);
                                    }
                                }
                            }
                            json!({"applied": applied})
                        }
                        _ => Value::Null,
                    };
                    let _ = write_frame(&mut *stdin2.lock().unwrap(), &json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}));
                    let _ = tx.send(msg);
                } else if msg.get("method").is_some() {
                    let _ = tx.send(msg);
                } else {
                    resp2.lock().unwrap().push(msg);
                }
            }
        });
        LspClient { child, stdin, next_id: AtomicI64::new(1), responses, incoming: rx, seen: Vec::new(), apply_answer, applied_edits, buffers }
    }

    /// Opens a document and keeps its buffer: accepted edits change it (unsaved).
    pub fn open_buffer(&self, uri: &str, language: &str, text: &str) {
        self.buffers.lock().unwrap().insert(uri.to_string(), (1, text.to_string()));
        self.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}));
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        let mut w = self.stdin.lock().unwrap();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    pub fn notify(&self, method: &str, params: Value) {
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        write_frame(&mut *self.stdin.lock().unwrap(), &msg).unwrap();
    }

    /// Sends a request and waits for its response (the whole response object).
    pub fn request_full(&mut self, method: &str, params: Value, timeout: Duration) -> Value {
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        self.request_message(msg, timeout)
    }

    /// Sends `msg` as it is, with the next request id, and waits for its whole response.
    pub fn request_message(&mut self, msg: Value, timeout: Duration) -> Value {
        let method = msg["method"].as_str().unwrap_or("").to_string();
        let id = self.send_request_message(msg);
        self.response(id, timeout).unwrap_or_else(|| panic!("no answer to {method} within {timeout:?}"))
    }

    /// Sends a request without waiting for its response; returns its id (for [`Self::response`]).
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        self.send_request_message(json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    fn send_request_message(&mut self, mut msg: Value) -> i64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        msg["id"] = json!(id);
        write_frame(&mut *self.stdin.lock().unwrap(), &msg).unwrap();
        id
    }

    /// The whole response to request `id`, waiting at most `timeout`.
    pub fn response(&mut self, id: i64, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut r = self.responses.lock().unwrap();
                if let Some(i) = r.iter().position(|m| m["id"] == json!(id)) {
                    return Some(r.remove(i));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.drain(Duration::from_millis(10));
        }
    }

    /// Sends a request and returns its `result`, failing the test on an error response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let r = self.request_full(method, params, Duration::from_secs(30));
        assert!(r.get("error").is_none(), "{method} failed: {}", r["error"]);
        r["result"].clone()
    }

    fn drain(&mut self, wait: Duration) {
        match self.incoming.recv_timeout(wait) {
            Ok(m) => {
                self.seen.push(m);
                while let Ok(m) = self.incoming.try_recv() {
                    self.seen.push(m);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Waits for a notification or server request matching `pred` that arrived after index `from`
    /// of [`Self::seen`]; returns its index.
    pub fn wait_for(&mut self, from: usize, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.seen.iter().skip(from).position(&pred) {
                return Some(from + i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.drain(Duration::from_millis(20));
        }
    }

    /// Waits for a `keel/status` notification with the given state; returns its params.
    pub fn wait_status(&mut self, from: usize, state: &str, timeout: Duration) -> Value {
        let i = self
            .wait_for(from, timeout, |m| m["method"] == "keel/status" && m["params"]["state"] == state)
            .unwrap_or_else(|| panic!("no keel/status `{state}` within {timeout:?}; seen: {:#?}", &self.seen[from.min(self.seen.len())..]));
        self.seen[i]["params"].clone()
    }

    /// `initialize` + `initialized` with the given options and encodings.
    pub fn initialize(&mut self, root: &Path, options: Value, encodings: &[&str]) -> Value {
        let r = self.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": format!("file://{}", root.display()),
                "workspaceFolders": [{"uri": format!("file://{}", root.display()), "name": "w"}],
                "clientInfo": {"name": "keel-e2e", "version": "1"},
                "capabilities": {
                    "general": {"positionEncodings": encodings},
                    "workspace": {"applyEdit": true, "codeLens": {"refreshSupport": true}},
                    "window": {"workDoneProgress": true}
                },
                "initializationOptions": options
            }),
        );
        self.notify("initialized", json!({}));
        r
    }

    pub fn shutdown(mut self) -> std::process::ExitStatus {
        let _ = self.request_full("shutdown", Value::Null, Duration::from_secs(30));
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit after `exit`");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Applies an LSP `WorkspaceEdit` (as the server sent it) to a text, for a fake editor. Positions
/// are UTF-16 unless `utf8` is set. Returns the new text.
pub fn apply_workspace_edit(text: &str, edit: &Value) -> String {
    let mut edits: Vec<Value> = Vec::new();
    if let Some(dc) = edit.get("documentChanges").and_then(Value::as_array) {
        for d in dc {
            edits.extend(d["edits"].as_array().cloned().unwrap_or_default());
        }
    }
    if let Some(ch) = edit.get("changes").and_then(Value::as_object) {
        for v in ch.values() {
            edits.extend(v.as_array().cloned().unwrap_or_default());
        }
    }
    let mut out = text.to_string();
    // Apply from the end so earlier offsets stay valid.
    edits.sort_by_key(|e| std::cmp::Reverse((e["range"]["start"]["line"].as_u64(), e["range"]["start"]["character"].as_u64())));
    for e in edits {
        let a = utf16_offset(&out, &e["range"]["start"]);
        let b = utf16_offset(&out, &e["range"]["end"]);
        out.replace_range(a..b, e["newText"].as_str().unwrap_or(""));
    }
    out
}

/// Byte offset of an LSP position counted in UTF-16 units.
pub fn utf16_offset(text: &str, pos: &Value) -> usize {
    let line = pos["line"].as_u64().unwrap_or(0) as usize;
    let ch = pos["character"].as_u64().unwrap_or(0) as usize;
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == line {
            let mut units = 0;
            for (bi, c) in l.char_indices() {
                if units >= ch || c == '\n' {
                    return off + bi;
                }
                units += c.len_utf16();
            }
            return off + l.len();
        }
        off += l.len();
    }
    text.len()
}
