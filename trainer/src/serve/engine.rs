//! The engine thread behind `keel-train serve`: it owns the model, takes requests from a queue,
//! runs them in batches, and swaps adapters between batches.
//!
//! Because a swap is just another message on the same queue, a request is always served entirely
//! by one adapter (never a half-loaded one), and requests that arrive during a swap wait in the
//! queue instead of being dropped.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::Result;
use keel_trajectory::ToolCall;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// `tool_choice` as the OpenAI API has it.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// One named function.
    Function(String),
}

/// One generation request (a chat, or a raw prompt for `/v1/completions`).
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub messages: Vec<keel_trajectory::Message>,
    /// Raw prompt text (`/v1/completions`); when set, `messages` and `tools` are ignored.
    pub prompt: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: ToolChoice,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenOutput {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What serves: a model plus its current adapter.
pub trait Engine: Send {
    /// The id steps will carry: `<model>@<adapter hash (12 hex)>`, or `<model>@base`.
    fn version(&self) -> String;
    /// Runs a batch. `on_text(i, delta)` streams the content text of request `i` as it is made.
    fn generate(&mut self, batch: &[GenRequest], on_text: &mut dyn FnMut(usize, &str)) -> Vec<Result<GenOutput>>;
    /// Loads an adapter (or none: the base model) and returns the new version.
    fn set_adapter(&mut self, adapter: Option<&std::path::Path>) -> Result<String>;
}

pub enum Job {
    Generate { req: GenRequest, stream: Option<mpsc::UnboundedSender<String>>, done: oneshot::Sender<(Result<GenOutput>, String)> },
    Swap { adapter: Option<PathBuf>, done: oneshot::Sender<Result<String>> },
}

/// The handle the HTTP side talks to.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Job>,
    version: std::sync::Arc<std::sync::Mutex<String>>,
}

impl EngineHandle {
    pub fn version(&self) -> String {
        self.version.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn generate(&self, req: GenRequest, stream: Option<mpsc::UnboundedSender<String>>) -> (Result<GenOutput>, String) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Generate { req, stream, done }).is_err() {
            return (Err(anyhow::anyhow!("the engine has stopped")), self.version());
        }
        rx.await.unwrap_or_else(|_| (Err(anyhow::anyhow!("the engine stopped during the request")), self.version()))
    }

    pub async fn swap(&self, adapter: Option<PathBuf>) -> Result<String> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Job::Swap { adapter, done }).map_err(|_| anyhow::anyhow!("the engine has stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("the engine stopped during the swap"))?
    }
}

/// Starts the engine thread. Up to `max_batch` queued requests run together; the thread waits
/// `batch_window` after the first for more to arrive.
pub fn spawn(mut engine: Box<dyn Engine>, max_batch: usize, batch_window: Duration) -> EngineHandle {
    let (tx, rx) = std_mpsc::channel::<Job>();
    let version = std::sync::Arc::new(std::sync::Mutex::new(engine.version()));
    let v2 = version.clone();
    std::thread::Builder::new()
        .name("keel-engine".into())
        .spawn(move || {
            let mut pending_swap: Option<Job> = None;
            loop {
                let first = match pending_swap.take() {
                    Some(j) => j,
                    None => match rx.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    },
                };
                let mut batch = Vec::new();
                match first {
                    Job::Swap { adapter, done } => {
                        let r = engine.set_adapter(adapter.as_deref());
                        if let Ok(v) = &r {
                            *v2.lock().unwrap_or_else(|e| e.into_inner()) = v.clone();
                        }
                        let _ = done.send(r);
                        continue;
                    }
                    g @ Job::Generate { .. } => batch.push(g),
                }
                let deadline = std::time::Instant::now() + batch_window;
                while batch.len() < max_batch {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(j @ Job::Generate { .. }) => batch.push(j),
                        Ok(s @ Job::Swap { .. }) => {
                            // The swap waits until this batch is done.
                            pending_swap = Some(s);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut reqs = Vec::with_capacity(batch.len());
                let mut sinks = Vec::with_capacity(batch.len());
                for j in batch {
                    if let Job::Generate { req, stream, done } = j {
                        reqs.push(req);
                        sinks.push((stream, done));
                    }
                }
                let version = engine.version();
                let outs = {
                    let mut on_text = |i: usize, delta: &str| {
                        if let Some((Some(s), _)) = sinks.get(i) {
                            let _ = s.send(delta.to_string());
                        }
                    };
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.generate(&reqs, &mut on_text)))
                        .unwrap_or_else(|_| reqs.iter().map(|_| Err(anyhow::anyhow!("the model failed on this batch"))).collect())
                };
                for ((_, done), out) in sinks.into_iter().zip(outs) {
                    let _ = done.send((out, version.clone()));
                }
            }
        })
        .expect("spawning the engine thread");
    EngineHandle { tx, version }
}
