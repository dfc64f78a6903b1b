//! `keel-lsp --acp`: Keel's agent over the Agent Client Protocol (the protocol Zed and other
//! editors start agents with: newline-delimited JSON-RPC on stdio).
//!
//! The same agent, episode loop and store as over LSP: a prompt starts an episode
//! ([`crate::episode::launch`], kind `instruction`, the session's `cwd` as the workspace root), and
//! the episode is presented by [`front::AcpFront`]: reads are reported as tool calls, each `edit`
//! and `run` becomes a `session/request_permission` (allow, reject, another) whose answer is the
//! recorded decision ([`crate::decisions`], as the LSP commands record it).
//!
//! Hand-written over `serde_json` (the [`rpc`] module) rather than the `agent-client-protocol`
//! crate: the crate's API changed shape from release to release, and its releases through 0.10
//! drive the connection with `LocalBoxFuture`s (not `Send`: a single-threaded `LocalSet`), while
//! the episode loop runs on tokio's multi-threaded runtime next to tower-lsp; and Keel uses six
//! methods of the schema, all plain JSON. The official TypeScript SDK checks the wire format in
//! the end-to-end test (`server/tests/lsp/acp.rs`).

pub mod front;
pub mod rpc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_trajectory::{EpisodeEnd, TaskKind};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use uuid::Uuid;

use crate::config::Config;
use crate::episode::{self, StartRequest};
use crate::state::{Shared, State, lock};
use rpc::{Incoming, Peer, RpcError};

/// The ACP protocol version spoken here.
pub const PROTOCOL_VERSION: u64 = 1;

/// What the client said it can do (`initialize`'s `clientCapabilities`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientCaps {
    pub read_text_file: bool,
    pub write_text_file: bool,
}

/// One ACP session: a working directory and the prompt running in it.
pub struct Session {
    pub cwd: PathBuf,
    /// The episode of the prompt in progress.
    pub running: Option<Uuid>,
    /// `session/cancel` arrived for the prompt in progress.
    pub cancelled: bool,
    /// Files read or written through the client, by absolute path: the editor's view of them
    /// (unsaved buffers included), laid over the disk for the agent's reads and the sandbox.
    pub overlay: Arc<Mutex<HashMap<PathBuf, String>>>,
}

/// The connection: the server's shared state (config, pending steps, recorder) and the sessions.
pub struct Conn {
    pub state: State,
    pub peer: Arc<Peer>,
    pub caps: Mutex<ClientCaps>,
    pub sessions: Mutex<HashMap<String, Session>>,
}

/// Runs the agent on stdin/stdout until the client closes stdin. Returns whether every record
/// reached the store.
pub async fn serve_stdio(base: Config) -> bool {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(rpc::write_lines(tokio::io::stdout(), rx));
    let ok = serve(base, tokio::io::stdin(), tx).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    ok
}

/// Serves one connection reading lines from `input` and writing through `out`.
pub async fn serve(base: Config, input: impl tokio::io::AsyncRead + Unpin, out: tokio::sync::mpsc::UnboundedSender<String>) -> bool {
    let state: State = Arc::new(Shared::default());
    *lock(&state.config) = base;
    let peer = Arc::new(Peer::new(out));
    let conn = Arc::new(Conn { state: state.clone(), peer: peer.clone(), caps: Mutex::new(ClientCaps::default()), sessions: Mutex::new(HashMap::new()) });
    crate::state::background().spawn(crate::recorder::run(Arc::downgrade(&state), front::AcpReport { conn: Arc::downgrade(&conn) }));
    let mut lines = tokio::io::BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        let line = match read_line(&mut lines, &mut buf, MAX_LINE_BYTES).await {
            Line::End => break,
            Line::TooLong => {
                tracing::warn!("an ACP message over {MAX_LINE_BYTES} bytes was skipped");
                peer.respond(Value::Null, Err(RpcError::new(rpc::INVALID_REQUEST, format!("message too large (over {MAX_LINE_BYTES} bytes)"))));
                continue;
            }
            Line::Text(Ok(t)) => t,
            Line::Text(Err(_)) => {
                // Not UTF-8: answered like any unreadable frame, and the connection goes on.
                peer.respond(Value::Null, Err(RpcError::new(rpc::PARSE_ERROR, "parse error: the message is not UTF-8")));
                continue;
            }
        };
        match rpc::classify(&peer, line) {
            Some(Incoming::Request { id, method, params }) => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let r = handle(&conn, &method, params).await;
                    conn.peer.respond(id, r);
                });
            }
            Some(Incoming::Notification { method, params }) => notification(&conn, &method, &params),
            None => {}
        }
    }
    shutdown(&conn).await
}

/// The largest message read (a file of the 8 MiB Keel reads, escaped, fits).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

enum Line<'a> {
    Text(Result<&'a str, std::str::Utf8Error>),
    TooLong,
    End,
}

/// The next line, without its newline; a longer one than `max` is skipped without being kept.
async fn read_line<'a>(r: &mut (impl tokio::io::AsyncBufRead + Unpin), buf: &'a mut Vec<u8>, max: usize) -> Line<'a> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("reading the ACP stream: {e}");
                return Line::End;
            }
        };
        if chunk.is_empty() {
            return if buf.is_empty() && !too_long { Line::End } else if too_long { Line::TooLong } else { Line::Text(std::str::from_utf8(buf)) };
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let newline = done > part.len();
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        r.consume(done);
        if newline {
            return if too_long { Line::TooLong } else { Line::Text(std::str::from_utf8(buf)) };
        }
    }
}

/// stdin closed: end the episodes (their pending steps are recorded as superseded), then make
/// every record durable.
async fn shutdown(conn: &Arc<Conn>) -> bool {
    let ids: Vec<Uuid> = {
        let inner = lock(&conn.state.inner);
        for h in inner.episodes.values() {
            let _ = h.cancel.send(true);
        }
        inner.episodes.keys().copied().collect()
    };
    for _ in 0..100 {
        if ids.iter().all(|i| !lock(&conn.state.inner).episodes.contains_key(i)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.peer.close();
    match conn.state.flush(Duration::from_secs(5)).await {
        Ok(()) => true,
        Err(n) => {
            let why = conn.state.recording.failing().unwrap_or_else(|| "it did not finish in time".into());
            tracing::error!("{n} record(s) could not be written to the Keel store before exit: {why}");
            false
        }
    }
}

fn notification(conn: &Arc<Conn>, method: &str, params: &Value) {
    match method {
        "session/cancel" => {
            let Some(sid) = params.get("sessionId").and_then(Value::as_str) else { return };
            cancel(conn, sid);
        }
        other => tracing::debug!("ignored ACP notification {other}"),
    }
}

/// Cancels the prompt in progress in a session (if any).
pub fn cancel(conn: &Conn, session: &str) {
    let running = {
        let mut sessions = lock(&conn.sessions);
        let Some(s) = sessions.get_mut(session) else { return };
        if s.running.is_some() {
            s.cancelled = true;
        }
        s.running
    };
    if let Some(id) = running {
        if let Some(h) = lock(&conn.state.inner).episodes.get(&id) {
            let _ = h.cancel.send(true);
        }
    }
}

async fn handle(conn: &Arc<Conn>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        "initialize" => Ok(initialize(conn, &params)),
        "authenticate" => Ok(json!({})),
        "session/new" => new_session(conn, &params).await,
        "session/prompt" => prompt(conn, &params).await,
        other => Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("method not found: {other}"))),
    }
}

fn initialize(conn: &Conn, params: &Value) -> Value {
    let fs = &params["clientCapabilities"]["fs"];
    *lock(&conn.caps) = ClientCaps {
        read_text_file: fs["readTextFile"].as_bool().unwrap_or(false),
        write_text_file: fs["writeTextFile"].as_bool().unwrap_or(false),
    };
    let info = &params["clientInfo"];
    *lock(&conn.state.client_name) = info["name"].as_str().map(|n| match info["version"].as_str() {
        Some(v) => format!("{n} {v}"),
        None => n.to_string(),
    });
    let cfg = conn.state.config();
    tracing::info!("keel-lsp --acp ready: model {} at {:?}, store {}", cfg.model, cfg.endpoint, crate::recorder::shown(&cfg.store));
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": false,
            "promptCapabilities": {"image": false, "audio": false, "embeddedContext": true},
            "mcpCapabilities": {"http": false, "sse": false}
        },
        "authMethods": [],
        "agentInfo": {"name": "keel-lsp", "title": "Keel", "version": env!("CARGO_PKG_VERSION")}
    })
}

async fn new_session(conn: &Conn, params: &Value) -> Result<Value, RpcError> {
    let cwd = params.get("cwd").and_then(Value::as_str).ok_or_else(|| RpcError::invalid_params("session/new needs `cwd`"))?;
    let cwd = PathBuf::from(cwd);
    if !cwd.is_absolute() {
        return Err(RpcError::invalid_params(format!("`cwd` must be an absolute path, got `{}`", cwd.display())));
    }
    let c = cwd.clone();
    let is_dir = tokio::task::spawn_blocking(move || c.is_dir()).await.unwrap_or(false);
    if !is_dir {
        return Err(RpcError::invalid_params(format!("`cwd` {} is not a directory", cwd.display())));
    }
    let id = Uuid::now_v7().to_string();
    lock(&conn.sessions).insert(id.clone(), Session { cwd, running: None, cancelled: false, overlay: Default::default() });
    Ok(json!({"sessionId": id}))
}

/// The user's message as one instruction: text blocks in order; embedded resources as fenced text
/// under their URI; links by URI.
pub fn instruction(blocks: &[Value]) -> String {
    let mut parts = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => parts.push(b["text"].as_str().unwrap_or("").to_string()),
            Some("resource_link") => parts.push(format!("(see {})", b["uri"].as_str().unwrap_or(""))),
            Some("resource") => {
                let r = &b["resource"];
                match r["text"].as_str() {
                    Some(t) => parts.push(format!("{}:\n```\n{t}\n```", r["uri"].as_str().unwrap_or(""))),
                    None => parts.push(format!("(see {})", r["uri"].as_str().unwrap_or(""))),
                }
            }
            _ => {}
        }
    }
    parts.iter().map(|p| p.trim_end()).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n")
}

async fn prompt(conn: &Arc<Conn>, params: &Value) -> Result<Value, RpcError> {
    let sid = params.get("sessionId").and_then(Value::as_str).ok_or_else(|| RpcError::invalid_params("session/prompt needs `sessionId`"))?.to_string();
    let blocks = params.get("prompt").and_then(Value::as_array).cloned().unwrap_or_default();
    let text = instruction(&blocks);
    if text.trim().is_empty() {
        return Err(RpcError::invalid_params("the prompt holds no text for Keel"));
    }
    let (cwd, overlay) = {
        let sessions = lock(&conn.sessions);
        let s = sessions.get(&sid).ok_or_else(|| RpcError::new(rpc::RESOURCE_NOT_FOUND, format!("no session `{sid}`")))?;
        if s.running.is_some() {
            return Err(RpcError::invalid_params("a prompt is already running in this session"));
        }
        (s.cwd.clone(), s.overlay.clone())
    };
    let front = Arc::new(front::AcpFront::new(conn, &sid, cwd.clone(), overlay));
    let req = StartRequest { uri: None, range: None, kind: TaskKind::Instruction, instruction: Some(text), diagnostics: vec![] };
    let (id, ended) = episode::launch(&conn.state, front.clone(), cwd, req, None).map_err(|e| {
        front.message(&format!("Keel: {e}"));
        RpcError::new(rpc::INTERNAL_ERROR, format!("Keel: {e}"))
    })?;
    if let Some(s) = lock(&conn.sessions).get_mut(&sid) {
        s.running = Some(id);
        s.cancelled = false;
    }
    let end = ended.await.unwrap_or(EpisodeEnd::Cancelled);
    let cancelled = {
        let mut sessions = lock(&conn.sessions);
        let s = sessions.get_mut(&sid);
        let c = s.as_ref().is_some_and(|s| s.cancelled);
        if let Some(s) = s {
            s.running = None;
            s.cancelled = false;
        }
        c
    };
    // ACP: after `session/cancel` the answer is `cancelled`, whatever else went wrong.
    if cancelled {
        return Ok(json!({"stopReason": "cancelled"}));
    }
    match end {
        EpisodeEnd::Finished { .. } => Ok(json!({"stopReason": "end_turn"})),
        EpisodeEnd::Exhausted => Ok(json!({"stopReason": "max_turn_requests"})),
        EpisodeEnd::Cancelled => Ok(json!({"stopReason": "cancelled"})),
        EpisodeEnd::Failed { error } => Err(RpcError { code: rpc::INTERNAL_ERROR, message: format!("Keel: {error}"), data: Some(json!({"episode": id})) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r = tokio::io::BufReader::with_capacity(4, &b"ab\n0123456789\n\xff\nlast"[..]);
        let mut buf = Vec::new();
        assert!(matches!(read_line(&mut r, &mut buf, 5).await, Line::Text(Ok("ab"))));
        assert!(matches!(read_line(&mut r, &mut buf, 5).await, Line::TooLong));
        assert!(matches!(read_line(&mut r, &mut buf, 5).await, Line::Text(Err(_))));
        assert!(matches!(read_line(&mut r, &mut buf, 5).await, Line::Text(Ok("last"))));
        assert!(matches!(read_line(&mut r, &mut buf, 5).await, Line::End));
    }

    #[test]
    fn a_prompt_is_one_instruction() {
        let blocks = vec![
            json!({"type": "text", "text": "Fix add in calc.py"}),
            json!({"type": "resource_link", "uri": "file:///w/calc.py", "name": "calc.py"}),
            json!({"type": "resource", "resource": {"uri": "file:///w/notes.md", "text": "add must add"}}),
            json!({"type": "image", "data": "", "mimeType": "image/png"}),
        ];
        assert_eq!(instruction(&blocks), "Fix add in calc.py\n(see file:///w/calc.py)\nfile:///w/notes.md:\n```\nadd must add\n```");
        assert_eq!(instruction(&[json!({"type": "text", "text": "  "})]), "");
    }
}
