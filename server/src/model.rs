//! The model client: an OpenAI-compatible `/chat/completions` endpoint with the `tools` API,
//! streaming (server-sent events, tool-call deltas assembled), and a fallback for endpoints without
//! tool support (the action then comes as JSON in the message content).
//!
//! Cancelling is dropping the future: callers race it against their cancel signal.

use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_trajectory::{FunctionCall, Message, ModelOutput, Prompt, Timings, ToolCall};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ModelClient {
    http: reqwest::Client,
    pub endpoint: String,
    pub model: String,
    api_key: Option<String>,
    timeout: Duration,
}

/// A model answer with what the endpoint said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub output: ModelOutput,
    /// `system_fingerprint` when given (Keel's server puts the adapter version there), else `model`.
    pub version: Option<String>,
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    Unreachable(String),
    Timeout(u64),
    Http { status: u16, body: String },
    /// The endpoint answered something that is not a chat completion.
    Garbage(String),
    /// The endpoint rejected the `tools` parameter (retried without it).
    NoToolSupport(String),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Unreachable(e) => write!(f, "the model endpoint is unreachable: {e}"),
            ModelError::Timeout(s) => write!(f, "the model did not answer within {s} s"),
            ModelError::Http { status, body } => write!(f, "the model endpoint answered HTTP {status}: {}", short(body)),
            ModelError::Garbage(e) => write!(f, "the model endpoint sent an unreadable answer: {}", short(e)),
            ModelError::NoToolSupport(e) => write!(f, "the model endpoint does not support tools: {}", short(e)),
        }
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s.to_string() }
}

/// The instruction appended to the system message when the endpoint has no tool support.
pub const JSON_FALLBACK_INSTRUCTION: &str = "\n\nThis endpoint cannot call tools directly. Answer with exactly one JSON object and nothing else: {\"name\": <tool name>, \"arguments\": {...}} using the tools described above.";

impl ModelClient {
    pub fn new(endpoint: &str, model: &str, api_key: Option<String>, timeout: Duration) -> ModelClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        ModelClient { http, endpoint: endpoint.trim_end_matches('/').to_string(), model: model.to_string(), api_key, timeout }
    }

    /// One completion. `tools: false` sends no `tools` (the JSON-in-content fallback; the caller adds
    /// [`JSON_FALLBACK_INSTRUCTION`] to the prompt it records). `episode` names the episode in the
    /// OpenAI `user` field: `keel-train serve` routes every step of one episode to the same version
    /// while an A/B runs; other endpoints take it as an opaque end-user id.
    pub async fn complete(&self, prompt: &Prompt, temperature: f64, stream: bool, tools: bool, episode: Option<&str>) -> Result<Completion, ModelError> {
        let started = Instant::now();
        let mut body = json!({
            "model": self.model,
            "messages": prompt.messages,
            "temperature": temperature,
            "stream": stream,
        });
        if let Some(e) = episode {
            body["user"] = json!(e);
        }
        if tools && !prompt.tools.is_empty() {
            body["tools"] = Value::Array(prompt.tools.as_ref().clone());
            // Every step is exactly one tool call (finish ends the episode).
            body["tool_choice"] = json!("required");
        }
        let mut req = self.http.post(format!("{}/chat/completions", self.endpoint)).json(&body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let fut = async {
            let resp = req.send().await.map_err(|e| ModelError::Unreachable(error_chain(&e)))?;
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                if tools && status.as_u16() < 500 && text.to_lowercase().contains("tool") {
                    return Err(ModelError::NoToolSupport(text));
                }
                return Err(ModelError::Http { status: status.as_u16(), body: text });
            }
            let is_sse = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream"));
            if is_sse { read_stream(resp, started).await } else { read_whole(resp, started).await }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ModelError::Timeout(self.timeout.as_secs())),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

async fn read_whole(resp: reqwest::Response, started: Instant) -> Result<Completion, ModelError> {
    let bytes = resp.bytes().await.map_err(|e| ModelError::Unreachable(error_chain(&e)))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| ModelError::Garbage(String::from_utf8_lossy(&bytes).into_owned()))?;
    let msg = v.pointer("/choices/0/message").ok_or_else(|| ModelError::Garbage(v.to_string()))?;
    let m: Message = serde_json::from_value(msg.clone()).map_err(|e| ModelError::Garbage(format!("{e}: {msg}")))?;
    let ms = started.elapsed().as_millis() as u64;
    Ok(Completion {
        output: ModelOutput { content: m.content, tool_calls: m.tool_calls },
        version: version_of(&v),
        timings: Timings {
            model_ms: ms,
            first_token_ms: None,
            prompt_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
            completion_tokens: v.pointer("/usage/completion_tokens").and_then(Value::as_u64),
        },
    })
}

fn version_of(v: &Value) -> Option<String> {
    v.get("system_fingerprint")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| v.get("model").and_then(Value::as_str))
        .map(str::to_string)
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

async fn read_stream(resp: reqwest::Response, started: Instant) -> Result<Completion, ModelError> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut content = String::new();
    let mut calls: Vec<PartialCall> = Vec::new();
    let mut version = None;
    let mut first = None;
    let mut usage = (None, None);
    let mut done = false;
    let mut events = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ModelError::Unreachable(format!("the stream broke: {}", error_chain(&e))))?;
        if first.is_none() {
            first = Some(started.elapsed().as_millis() as u64);
        }
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let v: Value = serde_json::from_str(data).map_err(|_| ModelError::Garbage(data.to_string()))?;
            events += 1;
            if version.is_none() {
                version = version_of(&v);
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = (u.get("prompt_tokens").and_then(Value::as_u64), u.get("completion_tokens").and_then(Value::as_u64));
            }
            let Some(delta) = v.pointer("/choices/0/delta") else { continue };
            if let Some(c) = delta.get("content").and_then(Value::as_str) {
                content.push_str(c);
            }
            if let Some(tcs) = delta.get("tool_calls").and_then(Value::as_array) {
                for tc in tcs {
                    let idx = tc.get("index").and_then(Value::as_u64).unwrap_or(calls.len().saturating_sub(1) as u64) as usize;
                    if idx > 64 {
                        return Err(ModelError::Garbage(format!("tool call index {idx}")));
                    }
                    while calls.len() <= idx {
                        calls.push(PartialCall::default());
                    }
                    let pc = &mut calls[idx];
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        pc.id.push_str(id);
                    }
                    if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str) {
                        pc.name.push_str(n);
                    }
                    if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                        pc.arguments.push_str(a);
                    }
                }
            }
        }
        if done {
            break;
        }
    }
    if !done && events == 0 {
        return Err(ModelError::Garbage("the stream ended without any event".into()));
    }
    if !done {
        return Err(ModelError::Unreachable("the stream ended before [DONE]".into()));
    }
    let tool_calls = calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: if c.id.is_empty() { format!("call_{i}") } else { c.id },
            kind: "function".into(),
            function: FunctionCall { name: c.name, arguments: c.arguments },
        })
        .collect();
    Ok(Completion {
        output: ModelOutput { content: (!content.is_empty()).then_some(content), tool_calls },
        version,
        timings: Timings {
            model_ms: started.elapsed().as_millis() as u64,
            first_token_ms: first,
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
        },
    })
}
