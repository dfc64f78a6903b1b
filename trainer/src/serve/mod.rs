//! `keel-train serve`: the policy over an OpenAI-compatible API.
//!
//! - `POST /v1/chat/completions` — messages, `tools` with `tool_choice`, `n`, `seed`, `stream`
//!   (server-sent events); the answer's `system_fingerprint` is the version that produced it
//!   (`<model>@<adapter hash>`), which `keel-lsp` records on every step.
//! - `POST /v1/completions` — a raw prompt.
//! - `GET /v1/models`, `GET /health`.
//!
//! Access: the server binds to loopback by default. A non-loopback `--host` is refused unless an API
//! key is configured (`--api-key-env NAME`, else `KEEL_API_KEY`); with a key every request needs
//! `Authorization: Bearer <key>` (compared in constant time; 401 otherwise). The key is never logged.
//!
//! Requests go to one engine thread that batches them ([`engine`]). With `--store`, the server
//! follows the store's live model version and swaps adapters between batches: no request is
//! dropped, and none is served by a half-loaded adapter.

pub mod constrain;
pub mod engine;
pub mod tch_engine;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{EngineHandle, GenOutput, GenRequest, ToolChoice};
use keel_trajectory::Message;
use serde_json::{Value, json};

pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// The model id clients ask for (`/v1/models` lists it; any id is accepted).
    pub model_id: String,
    /// Follow this store's live model version.
    pub store: Option<PathBuf>,
    pub poll: Duration,
    pub max_tokens: usize,
    /// Requests must carry `Authorization: Bearer <key>`. Required for a non-loopback host.
    pub api_key: Option<String>,
}

/// Whether `host` may be served on with the given key: loopback always; any other address only
/// with a key (the API runs the model for whoever reaches it, and answers with what it learned from
/// the store).
pub fn check_bind(host: &str, api_key: Option<&str>) -> Result<()> {
    let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().with_context(|| format!("--host must be an IP address, not `{host}`"))?;
    if ip.is_loopback() || api_key.is_some_and(|k| !k.is_empty()) {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {host}, which is not a loopback address, without an API key: set one in an environment variable and pass --api-key-env NAME (or set KEEL_API_KEY); clients then send `Authorization: Bearer <key>`"
    )
}

/// `router` behind a bearer-key check: a request without `Authorization: Bearer <key>` gets 401.
pub fn require_api_key(router: Router, key: String) -> Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(key), check_key))
}

async fn check_key(State(key): State<Arc<String>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let given = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "invalid_request_error", "missing or wrong API key: send `Authorization: Bearer <key>`");
    r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    r
}

/// Equal bytes, in a time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[derive(Clone)]
struct App {
    engine: EngineHandle,
    model_id: String,
    max_tokens: usize,
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

/// The router, for embedding and tests.
pub fn router(engine: EngineHandle, model_id: &str, max_tokens: usize) -> Router {
    let app = App { engine, model_id: model_id.to_string(), max_tokens };
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(Arc::new(app))
}

/// Serves until interrupted.
pub async fn run(engine: EngineHandle, cfg: ServeConfig) -> Result<()> {
    if let Some(store) = cfg.store.clone() {
        tokio::spawn(follow_store(engine.clone(), store, cfg.poll));
    }
    check_bind(&cfg.host, cfg.api_key.as_deref())?;
    let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().with_context(|| format!("bad address {}", cfg.host))?;
    let addr = SocketAddr::new(ip, cfg.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let auth = if cfg.api_key.is_some() { ", API key required" } else { "" };
    eprintln!("keel-train serve: {} on http://{}/v1 (version {}{auth})", cfg.model_id, listener.local_addr()?, engine.version());
    let mut app = router(engine, &cfg.model_id, cfg.max_tokens);
    if let Some(key) = cfg.api_key {
        app = require_api_key(app, key);
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Polls the store's live version and swaps the adapter when it changes; serves a running A/B's
/// candidate to its share of episodes ([`crate::ab`]).
pub async fn follow_store(engine: EngineHandle, store: PathBuf, poll: Duration) {
    let mut current: Option<(String, Option<String>)> = None;
    let mut current_ab: Option<(String, f64)> = None;
    loop {
        let read = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || keel_trajectory::Store::open(&store).and_then(|s| s.model_versions())).await
        };
        let live = read.map(|r| {
            r.map(|versions| {
                let ab = crate::ab::running(&versions).map(|(v, share)| (v.id.clone(), v.adapter_path.clone(), share));
                (versions.into_iter().find(|v| v.live), ab)
            })
        });
        let live = match live {
            Ok(Ok((v, ab))) => {
                let want = ab.as_ref().map(|(id, _, share)| (id.clone(), *share));
                if want != current_ab {
                    let arg = ab.and_then(|(id, path, share)| path.map(|p| (PathBuf::from(p), engine::AbRoute { id, share })));
                    match engine.set_candidate(arg).await {
                        Ok(()) => {
                            match &want {
                                Some((id, share)) => eprintln!("keel-train serve: A/B: {id} serves {:.0}% of episodes", share * 100.0),
                                None if current_ab.is_some() => eprintln!("keel-train serve: A/B ended"),
                                None => {}
                            }
                            current_ab = want;
                        }
                        Err(e) => eprintln!("keel-train serve: cannot serve the A/B candidate: {e:#}"),
                    }
                }
                Ok(Ok(v))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        match live {
            Ok(Ok(Some(v))) => {
                let key = (v.id.clone(), v.adapter_path.clone());
                if current.as_ref() != Some(&key) {
                    match engine.swap(v.adapter_path.as_ref().map(PathBuf::from)).await {
                        Ok(ver) => {
                            eprintln!("keel-train serve: now serving {} ({ver})", v.id);
                            current = Some(key);
                        }
                        Err(e) => eprintln!("keel-train serve: cannot load {}: {e:#}; still serving {}", v.id, engine.version()),
                    }
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => eprintln!("keel-train serve: reading the store: {e}"),
            Err(e) => eprintln!("keel-train serve: {e}"),
        }
        tokio::time::sleep(poll).await;
    }
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    let ab = app.engine.ab().map(|a| json!({"candidate": a.id, "share": a.share}));
    Json(json!({"status": "ok", "version": app.engine.version(), "ab": ab}))
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": app.model_id, "object": "model", "owned_by": "keel", "version": app.engine.version()}]}))
}

fn parse_common(body: &Value, default_max: usize) -> Result<GenRequest, String> {
    let num = |k: &str, d: f64| body.get(k).and_then(Value::as_f64).unwrap_or(d);
    let temperature = num("temperature", 1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(format!("temperature must be in [0, 2], got {temperature}"));
    }
    let top_p = num("top_p", 1.0);
    if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        return Err(format!("top_p must be in (0, 1], got {top_p}"));
    }
    let max_tokens = body.get("max_completion_tokens").or_else(|| body.get("max_tokens")).and_then(Value::as_u64).map(|m| m as usize).unwrap_or(default_max);
    if max_tokens == 0 {
        return Err("max_tokens must be positive".into());
    }
    let stop = match body.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
        Some(other) => return Err(format!("bad `stop`: {other}")),
    };
    Ok(GenRequest {
        messages: vec![],
        prompt: None,
        tools: vec![],
        tool_choice: ToolChoice::Auto,
        temperature,
        top_p,
        top_k: body.get("top_k").and_then(Value::as_u64).unwrap_or(0) as usize,
        max_tokens,
        stop,
        // No seed: a fresh one per request (OpenAI's semantics: sampling is not reproducible).
        seed: Some(body.get("seed").and_then(Value::as_u64).unwrap_or_else(fresh_seed)),
    })
}

fn parse_chat(body: &Value, default_max: usize) -> Result<(GenRequest, usize, bool), String> {
    let mut req = parse_common(body, default_max)?;
    let msgs = body.get("messages").and_then(Value::as_array).ok_or("`messages` must be an array")?;
    if msgs.is_empty() {
        return Err("`messages` is empty".into());
    }
    req.messages = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // Tool-call arguments may come as JSON strings (OpenAI) or objects; keep strings.
            let mut m = m.clone();
            if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for c in calls {
                    if let Some(a) = c.pointer_mut("/function/arguments") {
                        if !a.is_string() {
                            *a = Value::String(a.to_string());
                        }
                    }
                }
            }
            if m.get("content").is_some_and(Value::is_array) {
                // Content parts: keep the text ones.
                let text: String = m["content"].as_array().unwrap().iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("");
                m["content"] = Value::String(text);
            }
            serde_json::from_value::<Message>(m).map_err(|e| format!("messages[{i}]: {e}"))
        })
        .collect::<Result<_, _>>()?;
    req.tools = match body.get("tools") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(t)) => t.clone(),
        Some(_) => return Err("`tools` must be an array".into()),
    };
    req.tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(n) if req.tools.iter().any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(n)) => ToolChoice::Function(n.to_string()),
            Some(n) => return Err(format!("tool_choice names `{n}`, which is not in `tools`")),
            None => return Err(format!("bad tool_choice: {v}")),
        },
    };
    if req.tools.is_empty() && matches!(req.tool_choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err("tool_choice requires `tools`".into());
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1) as usize;
    if n == 0 || n > 16 {
        return Err(format!("n must be in 1..=16, got {n}"));
    }
    Ok((req, n, body.get("stream").and_then(Value::as_bool).unwrap_or(false)))
}

fn fresh_seed() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let h = blake3::hash(&[t.to_le_bytes(), n.to_le_bytes()].concat());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn chat_message(o: &GenOutput) -> Value {
    let mut m = json!({"role": "assistant", "content": if o.tool_calls.is_empty() { Value::String(o.content.clone()) } else if o.content.trim().is_empty() { Value::Null } else { Value::String(o.content.clone()) }});
    if !o.tool_calls.is_empty() {
        m["tool_calls"] = serde_json::to_value(&o.tool_calls).unwrap_or(Value::Null);
    }
    m
}

/// The episode a request belongs to, for sticky A/B routing: the `x-keel-episode` header, else
/// the OpenAI `user` field (keel-lsp sends its episode id there).
fn episode_key(headers: &axum::http::HeaderMap, body: &Value) -> Option<String> {
    headers
        .get("x-keel-episode")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| body.get("user").and_then(Value::as_str).map(str::to_string))
        .filter(|k| !k.trim().is_empty())
}

async fn chat(State(app): State<Arc<App>>, headers: axum::http::HeaderMap, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the body must be JSON") };
    let (req, n, stream) = match parse_chat(&body, app.max_tokens) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    let arm = app.engine.route(episode_key(&headers, &body).as_deref());
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    if stream {
        if n != 1 {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", "stream supports n = 1");
        }
        return stream_chat(app, req, id, arm).await;
    }
    // n samples: n requests in one batch, seeds offset so they differ but stay reproducible.
    let futs = (0..n).map(|i| {
        let mut r = req.clone();
        r.seed = r.seed.map(|s| s.wrapping_add(i as u64));
        app.engine.generate_on(arm, r, None)
    });
    let results = futures::future::join_all(futs).await;
    let mut choices = Vec::new();
    let (mut pt, mut ct) = (0, 0);
    let mut version = app.engine.version();
    for (i, (r, v)) in results.into_iter().enumerate() {
        version = v;
        match r {
            Ok(o) => {
                pt = o.prompt_tokens;
                ct += o.completion_tokens;
                choices.push(json!({"index": i, "message": chat_message(&o), "finish_reason": o.finish_reason}));
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}")),
        }
    }
    Json(json!({
        "id": id, "object": "chat.completion", "created": now(), "model": app.model_id,
        "system_fingerprint": version, "choices": choices,
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
    }))
    .into_response()
}

async fn stream_chat(app: Arc<App>, req: GenRequest, id: String, arm: engine::Arm) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel::<Result<Event, std::convert::Infallible>>();
    let model = app.model_id.clone();
    let created = now();
    tokio::spawn(async move {
        // Until the answer says which version served it, the chunks name the one routed to.
        let version = match (arm, app.engine.ab()) {
            (engine::Arm::Candidate, Some(ab)) => ab.id,
            _ => app.engine.version(),
        };
        let chunk = |delta: Value, finish: Value, version: &str| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": version,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let _ = ev_tx.send(Ok(Event::default().data(chunk(json!({"role": "assistant", "content": ""}), Value::Null, &version).to_string())));
        let gen_fut = app.engine.generate_on(arm, req, Some(tx));
        tokio::pin!(gen_fut);
        let (result, version) = loop {
            tokio::select! {
                r = &mut gen_fut => break r,
                Some(delta) = rx.recv() => {
                    let _ = ev_tx.send(Ok(Event::default().data(chunk(json!({"content": delta}), Value::Null, &version).to_string())));
                }
            }
        };
        while let Ok(delta) = rx.try_recv() {
            let _ = ev_tx.send(Ok(Event::default().data(chunk(json!({"content": delta}), Value::Null, &version).to_string())));
        }
        match result {
            Ok(o) => {
                if !o.tool_calls.is_empty() {
                    let calls: Vec<Value> = o
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| json!({"index": i, "id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}))
                        .collect();
                    let _ = ev_tx.send(Ok(Event::default().data(chunk(json!({"tool_calls": calls}), Value::Null, &version).to_string())));
                }
                let mut last = chunk(json!({}), json!(o.finish_reason), &version);
                last["usage"] = json!({"prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens, "total_tokens": o.prompt_tokens + o.completion_tokens});
                let _ = ev_tx.send(Ok(Event::default().data(last.to_string())));
            }
            Err(e) => {
                let _ = ev_tx.send(Ok(Event::default().data(json!({"error": {"message": format!("{e:#}"), "type": "server_error"}}).to_string())));
            }
        }
        let _ = ev_tx.send(Ok(Event::default().data("[DONE]")));
    });
    let stream = futures::stream::unfold(ev_rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn completions(State(app): State<Arc<App>>, headers: axum::http::HeaderMap, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the body must be JSON") };
    let mut req = match parse_common(&body, app.max_tokens) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "`prompt` must be a string");
    };
    req.prompt = Some(prompt.to_string());
    let arm = app.engine.route(episode_key(&headers, &body).as_deref());
    let (r, version) = app.engine.generate_on(arm, req, None).await;
    match r {
        Ok(o) => Json(json!({
            "id": format!("cmpl-{}", uuid::Uuid::now_v7().simple()), "object": "text_completion", "created": now(),
            "model": app.model_id, "system_fingerprint": version,
            "choices": [{"index": 0, "text": o.content, "finish_reason": o.finish_reason}],
            "usage": {"prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens, "total_tokens": o.prompt_tokens + o.completion_tokens},
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}")),
    }
}
