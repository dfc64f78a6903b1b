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
    /// The adapter it serves now (`None`: the base model), so that it can be loaded again after
    /// serving another one (an A/B candidate).
    fn adapter_path(&self) -> Option<PathBuf> {
        None
    }
}

/// Which version serves a request while an A/B runs ([`crate::ab`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Live,
    Candidate,
}

pub enum Job {
    Generate { req: GenRequest, arm: Arm, stream: Option<mpsc::UnboundedSender<String>>, done: oneshot::Sender<(Result<GenOutput>, String)> },
    /// A new live adapter.
    Swap { adapter: Option<PathBuf>, done: oneshot::Sender<Result<String>> },
    /// The A/B candidate's adapter (`None`: no A/B).
    Candidate { adapter: Option<PathBuf>, done: oneshot::Sender<Result<()>> },
}

/// The running A/B as the router sees it: the candidate's id (the routing salt) and share.
#[derive(Debug, Clone, PartialEq)]
pub struct AbRoute {
    pub id: String,
    pub share: f64,
}

/// The handle the HTTP side talks to.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Job>,
    version: std::sync::Arc<std::sync::Mutex<String>>,
    ab: std::sync::Arc<std::sync::Mutex<Option<AbRoute>>>,
}

impl EngineHandle {
    pub fn version(&self) -> String {
        self.version.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn generate(&self, req: GenRequest, stream: Option<mpsc::UnboundedSender<String>>) -> (Result<GenOutput>, String) {
        self.generate_on(Arm::Live, req, stream).await
    }

    /// The running A/B, if any.
    pub fn ab(&self) -> Option<AbRoute> {
        self.ab.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The arm that serves the episode `key` (sticky: the same key, the same arm, for one
    /// candidate). A request that names no episode is served by the live version.
    pub fn route(&self, key: Option<&str>) -> Arm {
        match (self.ab(), key.filter(|k| !k.is_empty())) {
            (Some(ab), Some(k)) if crate::ab::in_candidate_arm(k, &ab.id, ab.share) => Arm::Candidate,
            _ => Arm::Live,
        }
    }

    pub async fn generate_on(&self, arm: Arm, req: GenRequest, stream: Option<mpsc::UnboundedSender<String>>) -> (Result<GenOutput>, String) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Generate { req, arm, stream, done }).is_err() {
            return (Err(anyhow::anyhow!("the engine has stopped")), self.version());
        }
        rx.await.unwrap_or_else(|_| (Err(anyhow::anyhow!("the engine stopped during the request")), self.version()))
    }

    pub async fn swap(&self, adapter: Option<PathBuf>) -> Result<String> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Job::Swap { adapter, done }).map_err(|_| anyhow::anyhow!("the engine has stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("the engine stopped during the swap"))?
    }

    /// Starts serving `candidate` (its adapter, id and share) to its share of episodes, or stops
    /// (`None`). Routing changes only once the engine holds the adapter's path.
    pub async fn set_candidate(&self, candidate: Option<(PathBuf, AbRoute)>) -> Result<()> {
        let (done, rx) = oneshot::channel();
        let (adapter, route) = match candidate {
            Some((a, r)) => (Some(a), Some(r)),
            None => (None, None),
        };
        if route.is_none() {
            // Stop routing first: no new request goes to a candidate being removed.
            *self.ab.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.tx.send(Job::Candidate { adapter, done }).map_err(|_| anyhow::anyhow!("the engine has stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("the engine stopped while taking the candidate"))??;
        *self.ab.lock().unwrap_or_else(|e| e.into_inner()) = route;
        Ok(())
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
            let mut pending: Option<Job> = None;
            // The live adapter (to load again after serving the candidate), the candidate's, and
            // which of the two the engine holds now.
            let mut live_adapter = engine.adapter_path();
            let mut candidate: Option<PathBuf> = None;
            let mut loaded = Arm::Live;
            loop {
                let first = match pending.take() {
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
                            live_adapter = adapter;
                            loaded = Arm::Live;
                        }
                        let _ = done.send(r);
                        continue;
                    }
                    Job::Candidate { adapter, done } => {
                        // Checked now (a clear error to the follower), loaded when a request needs it.
                        let r = match &adapter {
                            Some(a) if !a.join("adapter_model.safetensors").is_file() => Err(anyhow::anyhow!("no adapter_model.safetensors in {}", a.display())),
                            _ => Ok(()),
                        };
                        if r.is_ok() {
                            if candidate.is_some() && loaded == Arm::Candidate {
                                // Whatever is loaded is no longer the candidate.
                                match engine.set_adapter(live_adapter.as_deref()) {
                                    Ok(_) => loaded = Arm::Live,
                                    Err(e) => tracing::warn!("reloading the live adapter: {e:#}"),
                                }
                            }
                            candidate = adapter;
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
                        Ok(s) => {
                            // A swap waits until this batch is done.
                            pending = Some(s);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut groups: [(Arm, Vec<GenRequest>, Vec<Sink>); 2] = [(Arm::Live, vec![], vec![]), (Arm::Candidate, vec![], vec![])];
                for j in batch {
                    if let Job::Generate { req, arm, stream, done } = j {
                        // No candidate (the A/B just ended): the live version serves.
                        let g = if arm == Arm::Candidate && candidate.is_some() { 1 } else { 0 };
                        groups[g].1.push(req);
                        groups[g].2.push((stream, done));
                    }
                }
                // The arm already loaded first: one adapter load per batch at most.
                if loaded == Arm::Candidate {
                    groups.swap(0, 1);
                }
                for (arm, reqs, sinks) in groups {
                    if reqs.is_empty() {
                        continue;
                    }
                    if arm != loaded {
                        let target = if arm == Arm::Candidate { candidate.as_deref() } else { live_adapter.as_deref() };
                        if let Err(e) = engine.set_adapter(target) {
                            let msg = format!("loading the {} adapter: {e:#}", if arm == Arm::Candidate { "candidate" } else { "live" });
                            for (_, done) in sinks {
                                let _ = done.send((Err(anyhow::anyhow!("{msg}")), engine.version()));
                            }
                            continue;
                        }
                        loaded = arm;
                    }
                    run_batch(engine.as_mut(), reqs, sinks);
                }
            }
        })
        .expect("spawning the engine thread");
    EngineHandle { tx, version, ab: Default::default() }
}

type Sink = (Option<mpsc::UnboundedSender<String>>, oneshot::Sender<(Result<GenOutput>, String)>);

/// Runs one batch on whatever adapter the engine holds and answers each request with that version.
fn run_batch(engine: &mut dyn Engine, reqs: Vec<GenRequest>, sinks: Vec<Sink>) {
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
