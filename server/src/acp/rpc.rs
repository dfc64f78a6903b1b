//! JSON-RPC 2.0 as ACP frames it: one message per line (newline-delimited JSON) on stdio, requests
//! both ways. [`Peer`] sends requests and notifications and routes the answers to their callers;
//! [`classify`] sorts what comes in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::state::lock;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// ACP: a resource (a session) that does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into(), data: None }
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// The other side of the connection, as seen from here.
pub struct Peer {
    out: mpsc::UnboundedSender<String>,
    next_id: AtomicI64,
    waiting: Mutex<HashMap<i64, oneshot::Sender<Result<Value, RpcError>>>>,
}

impl Peer {
    pub fn new(out: mpsc::UnboundedSender<String>) -> Peer {
        Peer { out, next_id: AtomicI64::new(0), waiting: Mutex::new(HashMap::new()) }
    }

    fn send(&self, msg: Value) {
        // Compact JSON never holds a raw newline: one message, one line.
        let _ = self.out.send(msg.to_string());
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and waits for its answer (an error when the connection closes first).
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        rx.await.unwrap_or_else(|_| Err(RpcError::new(INTERNAL_ERROR, "the connection closed")))
    }

    pub fn respond(&self, id: Value, result: Result<Value, RpcError>) {
        match result {
            Ok(r) => self.send(json!({"jsonrpc": "2.0", "id": id, "result": r})),
            Err(e) => self.send(json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})),
        }
    }

    /// Fails every request still waiting (the connection closed).
    pub fn close(&self) {
        lock(&self.waiting).clear();
    }

    fn answered(&self, msg: &Value) {
        let Some(id) = msg.get("id").and_then(Value::as_i64) else {
            tracing::warn!("an answer to no request of ours: {msg}");
            return;
        };
        let Some(tx) = lock(&self.waiting).remove(&id) else {
            tracing::warn!("an answer to request {id}, which is not waiting");
            return;
        };
        let r = match msg.get("error") {
            Some(e) => Err(RpcError {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(INTERNAL_ERROR),
                message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                data: e.get("data").cloned(),
            }),
            None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(r);
    }
}

/// A message for this side to handle.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Request { id: Value, method: String, params: Value },
    Notification { method: String, params: Value },
}

/// One line from the client: a request or notification for us, or `None` when it was an answer
/// (handed to its waiting request), blank, or malformed (answered with the spec's error).
pub fn classify(peer: &Peer, line: &str) -> Option<Incoming> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let msg: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            peer.respond(Value::Null, Err(RpcError::new(PARSE_ERROR, format!("parse error: {e}"))));
            return None;
        }
    };
    let id = msg.get("id").filter(|i| i.is_string() || i.is_number()).cloned();
    let method = msg.get("method").and_then(Value::as_str).map(str::to_string);
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match (msg.is_object(), method, id) {
        (true, Some(method), Some(id)) => Some(Incoming::Request { id, method, params }),
        (true, Some(method), None) if msg.get("id").is_none() => Some(Incoming::Notification { method, params }),
        (true, None, Some(_)) if msg.get("result").is_some() || msg.get("error").is_some() => {
            peer.answered(&msg);
            None
        }
        _ => {
            let id = msg.get("id").cloned().filter(|i| i.is_string() || i.is_number()).unwrap_or(Value::Null);
            peer.respond(id, Err(RpcError::new(INVALID_REQUEST, "invalid request: not a JSON-RPC request, notification or response")));
            None
        }
    }
}

/// Writes the outgoing messages, one per line, until every sender is gone.
pub async fn write_lines(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if w.write_all(line.as_bytes()).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_notifications_answers_and_garbage() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let peer = std::sync::Arc::new(Peer::new(tx));
        assert_eq!(
            classify(&peer, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1}}"#),
            Some(Incoming::Request { id: json!(1), method: "initialize".into(), params: json!({"protocolVersion": 1}) })
        );
        assert_eq!(
            classify(&peer, r#"{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s"}}"#),
            Some(Incoming::Notification { method: "session/cancel".into(), params: json!({"sessionId": "s"}) })
        );
        assert_eq!(classify(&peer, "   "), None);
        assert_eq!(classify(&peer, "{not json"), None);
        let e: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(e["error"]["code"], PARSE_ERROR);
        assert_eq!(e["id"], Value::Null);
        assert_eq!(classify(&peer, r#"[1,2]"#), None);
        let e: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(e["error"]["code"], INVALID_REQUEST);

        // A request of ours and its answer.
        let p = peer.clone();
        let asked = tokio::spawn(async move { p.request("fs/read_text_file", json!({"path": "/a"})).await });
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(sent["method"], "fs/read_text_file");
        let answer = json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": "x"}}).to_string();
        assert_eq!(classify(&peer, &answer), None);
        assert_eq!(asked.await.unwrap(), Ok(json!({"content": "x"})));
        let p = peer.clone();
        let asked = tokio::spawn(async move { p.request("fs/read_text_file", json!({})).await });
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        let answer = json!({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32002, "message": "no such file"}}).to_string();
        classify(&peer, &answer);
        assert_eq!(asked.await.unwrap().unwrap_err().message, "no such file");
        // Closing fails what still waits.
        let p = peer.clone();
        let asked = tokio::spawn(async move { p.request("session/request_permission", json!({})).await });
        rx.recv().await.unwrap();
        peer.close();
        assert!(asked.await.unwrap().unwrap_err().message.contains("closed"));
    }
}
