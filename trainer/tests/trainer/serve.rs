//! `keel-train serve`'s HTTP protocol and its engine queue: OpenAI-compatible answers (streaming
//! and not, tools, `n`), clear errors for bad requests, and adapter swaps under load that drop no
//! request and never mix adapters within one.
//!
//! The engine here is scripted (it answers from the request) so the protocol is what is tested;
//! the real model behind the same queue is tested in `model.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_trainer::serve::engine::{self, Engine, GenOutput, GenRequest, ToolChoice};
use keel_trajectory::{FunctionCall, Role, ToolCall};
use serde_json::{Value, json};

struct Scripted {
    adapter: String,
    path: Option<std::path::PathBuf>,
    /// (adapter at start, adapter at end) of every generate call.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    batches: Arc<AtomicUsize>,
}

impl Engine for Scripted {
    fn version(&self) -> String {
        format!("tiny@{}", self.adapter)
    }

    fn generate(&mut self, batch: &[GenRequest], on_text: &mut dyn FnMut(usize, &str)) -> Vec<anyhow::Result<GenOutput>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let start = self.adapter.clone();
        std::thread::sleep(Duration::from_millis(20));
        let out = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let last = r.prompt.clone().unwrap_or_else(|| r.messages.iter().rev().find(|m| m.role == Role::User).and_then(|m| m.content.clone()).unwrap_or_default());
                let wants_tool = matches!(r.tool_choice, ToolChoice::Required | ToolChoice::Function(_)) || (!r.tools.is_empty() && last.contains("tool"));
                if wants_tool && r.tool_choice != ToolChoice::None {
                    let name = match &r.tool_choice {
                        ToolChoice::Function(n) => n.clone(),
                        _ => r.tools[0]["function"]["name"].as_str().unwrap_or("x").to_string(),
                    };
                    return Ok(GenOutput {
                        content: String::new(),
                        tool_calls: vec![ToolCall { id: "call_0".into(), kind: "function".into(), function: FunctionCall { name, arguments: json!({"path": "a.py"}).to_string() } }],
                        finish_reason: "tool_calls".into(),
                        prompt_tokens: 3,
                        completion_tokens: 4,
                    });
                }
                let text = format!("echo {last} seed {:?}", r.seed);
                for w in text.split_inclusive(' ') {
                    on_text(i, w);
                }
                Ok(GenOutput { content: text, tool_calls: vec![], finish_reason: "stop".into(), prompt_tokens: 3, completion_tokens: 5 })
            })
            .collect();
        self.seen.lock().unwrap().push((start, self.adapter.clone()));
        out
    }

    fn set_adapter(&mut self, adapter: Option<&std::path::Path>) -> anyhow::Result<String> {
        std::thread::sleep(Duration::from_millis(30));
        match adapter {
            Some(p) if p.to_string_lossy().contains("broken") => anyhow::bail!("adapter {} does not load", p.display()),
            Some(p) => {
                self.adapter = p.file_name().unwrap().to_string_lossy().into_owned();
                self.path = Some(p.to_path_buf());
            }
            None => {
                self.adapter = "base".into();
                self.path = None;
            }
        }
        Ok(self.version())
    }

    fn adapter_path(&self) -> Option<std::path::PathBuf> {
        self.path.clone()
    }
}

struct Server {
    url: String,
    handle: engine::EngineHandle,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _rt: tokio::runtime::Runtime,
}

fn start() -> Server {
    start_with_key(None)
}

fn start_with_key(key: Option<&str>) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let e = Scripted { adapter: "base".into(), path: None, seen: seen.clone(), batches: Arc::new(AtomicUsize::new(0)) };
    let handle = engine::spawn(Box::new(e), 8, Duration::from_millis(5));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut router = keel_trainer::serve::router(handle.clone(), "keel", 64);
    if let Some(k) = key {
        router = keel_trainer::serve::require_api_key(router, k.to_string());
    }
    rt.spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { url, handle, seen, _rt: rt }
}

fn post(url: &str, body: Value) -> (u16, String) {
    let r = reqwest::blocking::Client::new().post(url).json(&body).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn openai_compatible_answers() {
    let s = start();
    let c = reqwest::blocking::Client::new();
    let m: Value = c.get(format!("{}/v1/models", s.url)).send().unwrap().json().unwrap();
    assert_eq!(m["data"][0]["id"], "keel");
    let h: Value = c.get(format!("{}/health", s.url)).send().unwrap().json().unwrap();
    assert_eq!(h["version"], "tiny@base");

    // Plain chat, n = 2 with a seed: two reproducible, different samples.
    let (st, body) = post(&format!("{}/v1/chat/completions", s.url), json!({"model": "keel", "messages": [{"role": "user", "content": "hi"}], "n": 2, "seed": 7}));
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["system_fingerprint"], "tiny@base");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][0]["message"]["content"], "echo hi seed Some(7)");
    assert_eq!(v["choices"][1]["message"]["content"], "echo hi seed Some(8)");
    assert_eq!(v["usage"]["completion_tokens"], 10);

    // Tools: a tool call with JSON-string arguments, as OpenAI clients expect.
    let tools = json!([{"type": "function", "function": {"name": "view_file", "parameters": {"type": "object"}}}]);
    let (st, body) = post(&format!("{}/v1/chat/completions", s.url), json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "required"}));
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "view_file");
    assert!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].is_string());

    // Streaming: the deltas add up to the text; a tool call streams too; [DONE] ends it.
    let (st, body) = post(&format!("{}/v1/chat/completions", s.url), json!({"messages": [{"role": "user", "content": "stream me"}], "stream": true}));
    assert_eq!(st, 200);
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let text: String = events.iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    assert!(text.starts_with("echo stream me seed Some("), "{text}");
    let (_, body) = post(&format!("{}/v1/chat/completions", s.url), json!({"messages": [{"role": "user", "content": "use a tool"}], "tools": tools, "stream": true}));
    assert!(body.contains("\"tool_calls\"") && body.contains("view_file"), "{body}");

    // Completions.
    let (st, body) = post(&format!("{}/v1/completions", s.url), json!({"prompt": "def f(", "max_tokens": 5}));
    assert_eq!(st, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["choices"][0]["text"].as_str().unwrap().starts_with("echo def f( seed Some("));

    // Bad requests: 400 with a message that says what is wrong.
    for (bad, want) in [
        (json!({"messages": "hi"}), "`messages` must be an array"),
        (json!({"messages": []}), "empty"),
        (json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0]"),
        (json!({"messages": [{"role": "user", "content": "x"}], "temperature": 9}), "temperature"),
        (json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}), "requires `tools`"),
        (json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}), "not in `tools`"),
        (json!({"messages": [{"role": "user", "content": "x"}], "n": 99}), "n must be"),
    ] {
        let (st, body) = post(&format!("{}/v1/chat/completions", s.url), bad);
        assert_eq!(st, 400, "{body}");
        assert!(body.contains(want), "`{body}` should say `{want}`");
    }
    let r = reqwest::blocking::Client::new().post(format!("{}/v1/chat/completions", s.url)).header("content-type", "application/json").body("{oops").send().unwrap();
    assert!(r.status().is_client_error());
}

#[test]
fn adapter_swaps_under_load_drop_nothing_and_never_mix() {
    let s = start();
    let url = format!("{}/v1/chat/completions", s.url);
    let ok = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (url, ok, versions) = (url.clone(), ok.clone(), versions.clone());
            scope.spawn(move || {
                for i in 0..12 {
                    let (st, body) = post(&url, json!({"messages": [{"role": "user", "content": format!("{t}-{i}")}]}));
                    assert_eq!(st, 200, "{body}");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    versions.lock().unwrap().push(v["system_fingerprint"].as_str().unwrap().to_string());
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let h = s.handle.clone();
        scope.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for k in 0..5 {
                std::thread::sleep(Duration::from_millis(40));
                let v = rt.block_on(h.swap(Some(format!("/adapters/a{k}").into()))).unwrap();
                assert_eq!(v, format!("tiny@a{k}"));
            }
            // A broken adapter is refused and the old one keeps serving.
            let e = rt.block_on(h.swap(Some("/adapters/broken".into()))).unwrap_err();
            assert!(e.to_string().contains("does not load"));
            assert_eq!(h.version(), "tiny@a4");
        });
    });
    assert_eq!(ok.load(Ordering::SeqCst), 96, "every request answered");
    // No generate call saw its adapter change under it.
    for (a, b) in s.seen.lock().unwrap().iter() {
        assert_eq!(a, b);
    }
    let v = versions.lock().unwrap();
    assert!(v.iter().any(|x| x == "tiny@base") || v.iter().any(|x| x == "tiny@a0"));
    assert!(v.iter().all(|x| x == "tiny@base" || x.starts_with("tiny@a")));
}

#[test]
fn a_non_loopback_host_needs_an_api_key_and_requests_then_need_it() {
    use keel_trainer::serve::{check_bind, constant_time_eq};
    for host in ["127.0.0.1", "127.3.4.5", "::1", "[::1]"] {
        assert!(check_bind(host, None).is_ok(), "{host}");
    }
    for host in ["0.0.0.0", "::", "[::]", "192.168.1.5", "10.0.0.1"] {
        let e = check_bind(host, None).unwrap_err().to_string();
        assert!(e.contains("API key") && e.contains("--api-key-env"), "{host}: {e}");
        assert!(check_bind(host, Some("")).is_err(), "{host}: an empty key is no key");
        assert!(check_bind(host, Some("s3cret")).is_ok(), "{host}");
    }
    assert!(check_bind("example.com", Some("k")).is_err(), "a host name is not an address");
    assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"abcd"));

    // With a key, every route needs it.
    let s = start_with_key(Some("s3cret-key"));
    let c = reqwest::blocking::Client::new();
    let body = json!({"model": "keel", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8});
    for auth in [None, Some("Bearer wrong"), Some("Bearer s3cret-ke"), Some("s3cret-key"), Some("Basic s3cret-key")] {
        let mut r = c.post(format!("{}/v1/chat/completions", s.url)).json(&body);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let text = r.text().unwrap();
        assert!(text.contains("API key") && !text.contains("s3cret"), "{text}");
        assert_eq!(c.get(format!("{}/v1/models", s.url)).send().unwrap().status().as_u16(), 401);
    }
    let r = c.post(format!("{}/v1/chat/completions", s.url)).bearer_auth("s3cret-key").json(&body).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    assert_eq!(c.get(format!("{}/v1/models", s.url)).bearer_auth("s3cret-key").send().unwrap().status().as_u16(), 200);

    // The binary: a non-loopback host without a key is refused before the model loads; a key
    // named by --api-key-env must be set; the key is never printed.
    let refuse = keel_e2e::command("keel-train").args(["serve", "--model", "/nonexistent-model", "--host", "0.0.0.0", "--port", "1"]).env_remove("KEEL_API_KEY").output().unwrap();
    let err = String::from_utf8_lossy(&refuse.stderr);
    assert!(!refuse.status.success() && err.contains("API key") && !err.contains("nonexistent-model"), "{err}");
    let unset = keel_e2e::command("keel-train").args(["serve", "--model", "/nonexistent-model", "--host", "0.0.0.0", "--api-key-env", "KEEL_TEST_NO_SUCH_VAR"]).output().unwrap();
    let err = String::from_utf8_lossy(&unset.stderr);
    assert!(!unset.status.success() && err.contains("KEEL_TEST_NO_SUCH_VAR"), "{err}");
    let keyed = keel_e2e::command("keel-train").args(["serve", "--model", "/nonexistent-model", "--host", "0.0.0.0", "--api-key-env", "KEEL_TEST_KEY"]).env("KEEL_TEST_KEY", "hunter2-secret").output().unwrap();
    let err = String::from_utf8_lossy(&keyed.stderr);
    assert!(!keyed.status.success() && err.contains("nonexistent-model") && !err.contains("hunter2"), "past the check, the model load fails: {err}");
    drop(s);
}

/// A store with a live version (adapter `a1`) and a candidate (`a2`), each a folder with weights.
fn ab_store(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("k.db");
    let mut store = keel_trajectory::Store::open(&db).unwrap();
    for id in ["a1", "a2"] {
        let adapter = dir.join(id);
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_model.safetensors"), id).unwrap();
        store
            .put_model_version(&keel_trajectory::ModelVersion {
                id: format!("tiny@{id}"),
                created_at: keel_trajectory::now_ms(),
                base_model: "tiny".into(),
                adapter_path: Some(adapter.display().to_string()),
                adapter_hash: Some(id.into()),
                parent: None,
                trained_on: json!({}),
                eval: json!({}),
                live: false,
            })
            .unwrap();
    }
    keel_trainer::models::promote(&mut store, "tiny@a1").unwrap();
    db
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_ab_serves_the_candidate_to_a_sticky_share_of_episodes_and_follows_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let db = ab_store(dir.path());
    let s = start();
    s._rt.spawn(keel_trainer::serve::follow_store(s.handle.clone(), db.clone(), Duration::from_millis(30)));
    let health = || -> Value { serde_json::from_str(&reqwest::blocking::get(format!("{}/health", s.url)).unwrap().text().unwrap()).unwrap() };
    wait_for("the live version", || health()["version"] == "tiny@a1");
    assert!(health()["ab"].is_null());

    let store = keel_trajectory::Store::open(&db).unwrap();
    keel_trainer::ab::start(&store, "tiny@a2", &keel_trainer::ab::AbConfig::new(0.5)).unwrap();
    wait_for("the A/B", || health()["ab"]["candidate"] == "tiny@a2");

    // 40 episodes of 3 steps each, from 4 clients at once (so batches hold both arms); the OpenAI
    // `user` field names the episode, as keel-lsp sends it (the header works the same).
    let url = format!("{}/v1/chat/completions", s.url);
    let served = Arc::new(Mutex::new(std::collections::BTreeMap::<String, Vec<String>>::new()));
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (url, served) = (url.clone(), served.clone());
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for e in 0..10 {
                    let ep = format!("episode-{t}-{e}");
                    for step in 0..3 {
                        let mut req = client.post(&url);
                        let mut body = json!({"messages": [{"role": "user", "content": format!("{ep} {step}")}]});
                        if e % 2 == 0 {
                            body["user"] = json!(ep);
                        } else {
                            req = req.header("x-keel-episode", &ep);
                        }
                        let r = req.json(&body).send().unwrap();
                        assert_eq!(r.status(), 200);
                        let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
                        served.lock().unwrap().entry(ep.clone()).or_default().push(v["system_fingerprint"].as_str().unwrap().to_string());
                    }
                }
            });
        }
    });
    let served = served.lock().unwrap();
    for (ep, vs) in served.iter() {
        assert!(vs.iter().all(|v| v == &vs[0]), "every step of {ep} is served by one version: {vs:?}");
        assert!(vs[0] == "tiny@a1" || vs[0] == "tiny@a2", "{vs:?}");
        assert_eq!(vs[0] == "tiny@a2", keel_trainer::ab::in_candidate_arm(ep, "tiny@a2", 0.5), "the arm is the one the hash gives");
    }
    let on_candidate = served.values().filter(|vs| vs[0] == "tiny@a2").count();
    assert!((8..=32).contains(&on_candidate), "about half the episodes on the candidate: {on_candidate} of 40");
    // No generate call saw its adapter change under it.
    for (a, b) in s.seen.lock().unwrap().iter() {
        assert_eq!(a, b);
    }
    // A request that names no episode cannot be kept on one arm: the live version serves it.
    for i in 0..6 {
        let (st, body) = post(&url, json!({"messages": [{"role": "user", "content": format!("anon {i}")}]}));
        assert_eq!(st, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["system_fingerprint"], "tiny@a1");
    }

    // The verdict: promoted. The server follows: the candidate is live for everyone, A/B over.
    let mut store = store;
    let mut cand = store.model_versions().unwrap().into_iter().find(|v| v.id == "tiny@a2").unwrap();
    cand.eval["ab"]["status"] = json!("promoted");
    store.put_model_version(&cand).unwrap();
    keel_trainer::models::promote(&mut store, "tiny@a2").unwrap();
    wait_for("the promotion", || health()["version"] == "tiny@a2" && health()["ab"].is_null());
    for i in 0..6 {
        let (_, body) = post(&url, json!({"messages": [{"role": "user", "content": "x"}], "user": format!("episode-0-{i}")}));
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["system_fingerprint"], "tiny@a2");
    }
}
