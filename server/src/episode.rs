//! The agent loop. An episode runs in its own task: it asks the model for one action at a time,
//! carries out read-only actions at once, turns `edit` and `run` into pending steps that wait for
//! the user, and records every step and decision. It is the only episode driver: the LSP and ACP
//! front ends present it through [`Front`] ([`LspFront`], `crate::acp::front::AcpFront`) and start
//! it with [`launch`].
//!
//! Who records what: the command handlers record the user's decisions (accepted, rejected,
//! another, not applied) the moment they are made; this loop records the steps, the automatic
//! decisions (auto, invalid tool call, loop, empty edit, ...), the observations and the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_agent::{AfterRejection, Verdict};
use keel_trajectory::action::{parse_output, workspace_path};
use keel_trajectory::*;
use tokio::sync::{oneshot, watch};
use tower_lsp::Client;
use tower_lsp::lsp_types::Url;

use crate::model::{Completion, JSON_FALLBACK_INSTRUCTION, ModelClient, ModelError};
use crate::state::{EpisodeHandle, Pending, PendingKind, State, UserDecision, lock};
use crate::ui;

/// What a front end (LSP, ACP) shows of an episode, and the view of the files the agent judges an
/// action against. The loop below is the only episode driver; a front end only presents it.
#[tower_lsp::async_trait]
pub trait Front: Send + Sync + 'static {
    /// The episode's state: `thinking`, `pending`, `finished`, `cancelled`, `error`.
    async fn status(&self, episode: uuid::Uuid, state: &str, message: &str, model: &str, version: Option<&str>, step: Option<uuid::Uuid>);
    /// Something the user must see.
    async fn error(&self, message: &str);
    async fn warn(&self, message: &str);
    /// A model call starts (`true`) or ends (`false`).
    async fn thinking(&self, on: bool);
    /// The workspace `parsed` is judged against (and a read carried out in): the disk overlaid by
    /// the files the editor has open.
    async fn workspace(&self, root: &Path, parsed: &Parsed) -> keel_agent::EditorWorkspace;
    /// A step that does not wait for the user was carried out or rejected automatically.
    async fn step_done(&self, _step: &Step, _observation: &Observation, _rejected: bool) {}
    /// A proposal was added to the pending steps (`State::inner.pending`): show it. The user's
    /// answer reaches the episode through the pending step's channel.
    async fn proposed(&self, shown: &Shown);
    /// A proposal left the pending steps (answered, superseded or cancelled).
    async fn withdrawn(&self, shown: &Shown);
}

/// A pending step as a front end shows it.
#[derive(Debug, Clone)]
pub struct Shown {
    pub step: uuid::Uuid,
    pub uri: String,
    pub title: String,
    pub model_version: Option<String>,
}

/// The language server's front end: `keel/status`, `$/progress`, lenses, hint diagnostics.
pub struct LspFront {
    pub client: Client,
    pub state: State,
    progress: tokio::sync::Mutex<Option<ui::Progress>>,
}

impl LspFront {
    pub fn new(client: Client, state: State) -> LspFront {
        LspFront { client, state, progress: tokio::sync::Mutex::new(None) }
    }
}

#[tower_lsp::async_trait]
impl Front for LspFront {
    async fn status(&self, episode: uuid::Uuid, state: &str, message: &str, model: &str, version: Option<&str>, step: Option<uuid::Uuid>) {
        ui::status(&self.client, Some(episode), state, message, Some(model), version, step).await;
    }

    async fn error(&self, message: &str) {
        ui::error(&self.client, message).await;
    }

    async fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        self.client.show_message(tower_lsp::lsp_types::MessageType::WARNING, format!("Keel: {message}")).await;
    }

    async fn thinking(&self, on: bool) {
        let mut p = self.progress.lock().await;
        if on {
            *p = Some(ui::Progress::begin(&self.client, &self.state, "Keel").await);
        } else if let Some(p) = p.take() {
            p.end(&self.client, "done").await;
        }
    }

    async fn workspace(&self, root: &Path, _parsed: &Parsed) -> keel_agent::EditorWorkspace {
        editor_workspace(&self.state, root)
    }

    async fn proposed(&self, shown: &Shown) {
        ui::refresh(&self.client, &self.state, &shown.uri).await;
    }

    async fn withdrawn(&self, shown: &Shown) {
        ui::refresh(&self.client, &self.state, &shown.uri).await;
    }
}

/// The task's document, as the editor has it (or as it is on disk).
pub struct TaskDocument {
    pub text: ropey::Rope,
    pub language: String,
    pub tree: Option<tree_sitter::Tree>,
    /// The open buffer's version; `None` for a file read from disk.
    pub version: Option<i32>,
}

/// What a code action asked for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The task's document; `None` for a task that names none (an ACP prompt).
    pub uri: Option<String>,
    pub range: Option<Range>,
    pub kind: TaskKind,
    pub instruction: Option<String>,
    pub diagnostics: Vec<TaskDiagnostic>,
}

pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    Url::parse(uri).ok()?.to_file_path().ok()
}

pub fn path_to_uri(p: &Path) -> String {
    Url::from_file_path(p).map(|u| u.to_string()).unwrap_or_else(|_| format!("file://{}", p.display()))
}

/// Starts an episode in the background and returns its id once the task's document is read: the
/// open buffer, or the file on disk (inside the root, off the runtime's workers, bounded).
/// How long the end of an episode waits for its records to be durable before it is told anyway.
const END_DURABLE: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn start(state: &State, client: &Client, req: StartRequest) -> Result<uuid::Uuid, String> {
    check_request(state, &req)?;
    let uri = req.uri.clone().ok_or("the task names no document")?;
    let path = uri_to_path(&uri);
    let root = lock(&state.root)
        .clone()
        .or_else(|| path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf)))
        .ok_or("no workspace root: open a folder")?;
    // The agent works on the workspace: a file outside it is neither read nor shown to the model.
    if let Some(p) = &path {
        crate::files::check_inside_root(root.clone(), p.clone()).await?;
    }
    // Snapshot of the document (O(1) rope clone) and its last syntax tree.
    let open = {
        let inner = lock(&state.inner);
        inner.docs.get(&uri).map(|e| TaskDocument { text: e.doc.text.clone(), language: e.doc.language.clone(), tree: e.syntax.tree.clone(), version: Some(e.doc.version) })
    };
    let doc = match open {
        Some(x) => x,
        None => {
            let path = path.ok_or_else(|| format!("`{uri}` is not an open document or a file"))?;
            let t = crate::files::read_text(path.clone()).await?.ok_or_else(|| format!("cannot read {}: it does not exist", path.display()))?;
            TaskDocument { text: ropey::Rope::from_str(&t), language: String::new(), tree: None, version: None }
        }
    };
    let front = Arc::new(LspFront::new(client.clone(), state.clone()));
    Ok(launch(state, front, root, req, Some(doc))?.0)
}

/// Checks what every front end must: an endpoint, and an instruction for kind `instruction`.
fn check_request(state: &State, req: &StartRequest) -> Result<(), String> {
    if state.config().endpoint.is_none() {
        return Err("no model endpoint is configured: set `keel.model.endpoint` (initializationOptions or settings)".into());
    }
    if req.kind == TaskKind::Instruction && req.instruction.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err("instruction required: `keel.episode.start` with kind `instruction` needs an `instruction` argument".into());
    }
    // Memory stays bounded while the store cannot be written: what waits is kept, nothing new starts.
    let (waiting, cap) = (state.recording.unwritten(), state.config().limits.max_unwritten_records);
    if waiting >= cap {
        let why = state.recording.failing().unwrap_or_else(|| "it is slow to take them".into());
        return Err(format!(
            "Keel is not starting an episode: {waiting} record(s) are waiting in memory for the store ({why}); they are kept and written when it is back, and episodes start again then (limits.max_unwritten_records = {cap})"
        ));
    }
    Ok(())
}

/// Runs an episode in its own task, presented by `front`, over the workspace at `root`. Returns its
/// id and how it ended, once it has (its end is recorded by then).
pub fn launch(state: &State, front: Arc<dyn Front>, root: PathBuf, req: StartRequest, doc: Option<TaskDocument>) -> Result<(uuid::Uuid, oneshot::Receiver<EpisodeEnd>), String> {
    check_request(state, &req)?;
    let cfg = state.config();
    let endpoint = cfg.endpoint.clone().ok_or("no model endpoint is configured")?;
    let id = new_id();
    let (cancel, cancel_rx) = watch::channel(false);
    let (call_cancel, call_cancel_rx) = watch::channel(0u64);
    lock(&state.inner).episodes.insert(id, EpisodeHandle { cancel, reading: Vec::new(), call_cancel, uri: req.uri.clone() });
    let state = state.clone();
    let model = cfg.model.clone();
    let (done, ended) = oneshot::channel();
    // On the agent's runtime, behind the editor's requests (`crate::state::background`).
    crate::state::background().spawn(async move {
        let ep = Ep { state: state.clone(), front, id, root, endpoint, model, cancel: cancel_rx, call_cancel: call_cancel_rx };
        let end = ep.run(req, doc).await;
        ep.finish(end.clone()).await;
        let _ = done.send(end);
    });
    Ok((id, ended))
}

struct Ep {
    state: State,
    front: Arc<dyn Front>,
    id: uuid::Uuid,
    root: PathBuf,
    endpoint: String,
    model: String,
    cancel: watch::Receiver<bool>,
    call_cancel: watch::Receiver<u64>,
}

enum Call {
    Done(Completion),
    Failed(ModelError),
    Cancelled,
    DocumentChanged,
}

impl Ep {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    fn record(&self, r: Record) -> u64 {
        self.state.record(r)
    }

    /// The code around the task's range (tree-sitter, off the main loop), the selected text and the
    /// range in chars; all empty without a document.
    async fn context(&self, req: &StartRequest, doc: Option<TaskDocument>) -> (crate::syntax::Context, Option<String>, (usize, usize)) {
        let (Some(uri), Some(TaskDocument { text, language, tree, version })) = (req.uri.clone(), doc) else {
            return (Default::default(), None, (0, 0));
        };
        let cfg = self.state.config();
        let enc = self.state.encoding();
        let (start_char, end_char) = match req.range {
            Some(r) => {
                let a = crate::document::offset(&text, enc, crate::document::Pos { line: r.start_line, character: r.start_character });
                let b = crate::document::offset(&text, enc, crate::document::Pos { line: r.end_line, character: r.end_character });
                (a.min(b), a.max(b))
            }
            None => (0, 0),
        };
        let selected = (end_char > start_char).then(|| text.slice(start_char..end_char).to_string());
        let lang_id = if language.is_empty() { uri.rsplit('.').next().unwrap_or("").to_string() } else { language.clone() };
        let budget = cfg.limits.context_tokens.saturating_mul(4);
        let (start_byte, end_byte) = (text.char_to_byte(start_char), text.char_to_byte(end_char));
        let u = uri.clone();
        let ctx_task = tokio::task::spawn_blocking(move || {
            let s = text.to_string();
            let lang = crate::syntax::language(&lang_id, &u);
            let tree = lang.as_ref().and_then(|l| crate::syntax::parse(l, &s, tree.as_ref()));
            let ctx = crate::syntax::context(&s, tree.as_ref(), start_byte, end_byte, budget);
            (ctx, tree)
        });
        let (ctx, new_tree) = match ctx_task.await {
            Ok(x) => x,
            Err(_) => (Default::default(), None),
        };
        if let (Some(t), Some(v)) = (new_tree, version) {
            let mut inner = lock(&self.state.inner);
            if let Some(e) = inner.docs.get_mut(&uri) {
                if e.doc.version == v {
                    e.syntax.tree = Some(t);
                    e.syntax.stale = false;
                }
            }
        }
        (ctx, selected, (start_char, end_char))
    }

    async fn run(&self, req: StartRequest, doc: Option<TaskDocument>) -> EpisodeEnd {
        let cfg = self.state.config();
        let language = doc.as_ref().map(|d| d.language.clone()).unwrap_or_default();
        // Task, context and workspace snapshot, all off the main loop.
        let (ctx, selected, (start_char, end_char)) = self.context(&req, doc).await;
        let vcs = {
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || keel_agent::git_snapshot(&root)).await.ok().flatten()
        };
        if let Some(v) = vcs.as_ref().filter(|v| !v.left_out.is_empty()) {
            let msg = format!("the snapshot of the workspace recorded with this episode is partial (a replay will not match it): it leaves out {}", v.left_out.join("; "));
            self.front.warn(&msg).await;
        }
        let file_rel = match &req.uri {
            Some(uri) => uri_to_path(uri).and_then(|p| p.strip_prefix(&self.root).ok().map(|r| r.display().to_string())).unwrap_or_else(|| uri.clone()),
            None => String::new(),
        };
        let instruction = req.instruction.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| keel_agent::default_instruction(req.kind).to_string());
        let task = Task {
            kind: req.kind,
            instruction: instruction.clone(),
            uri: req.uri.clone(),
            language: (!language.is_empty()).then(|| language.clone()),
            range: req.range,
            diagnostics: req.diagnostics.clone(),
            selected_text: selected.clone(),
        };
        let episode = Episode {
            id: self.id,
            created_at: now_ms(),
            workspace: Workspace { root: self.root.display().to_string(), vcs },
            task: task.clone(),
            model: ModelRef { name: self.model.clone(), version: None },
            client: lock(&self.state.client_name).clone(),
            verify: cfg.verify.clone(),
            protected: vec![],
        };
        self.record(Record::Episode(episode));
        let agent_ctx = keel_agent::TaskContext { imports: ctx.imports, enclosing: ctx.enclosing, nearby: ctx.nearby };
        let mut agent = keel_agent::Agent::new(keel_agent::initial_prompt(&task, &file_rel, &agent_ctx), cfg.limits.max_observation_bytes);
        let mut parent: Option<uuid::Uuid> = None;
        let mut steps = 0u32;
        let mut auto_run = 0u32;
        let task_lines = req.range.map(|r| (r.start_line.saturating_sub(2), r.end_line.saturating_add(2))).unwrap_or((0, u32::MAX));
        let mut reading: Vec<(String, u32, u32)> = req.uri.iter().map(|u| (u.clone(), task_lines.0, task_lines.1)).collect();
        let model_client = ModelClient::new(&self.endpoint, &self.model, cfg.api_key(), Duration::from_secs(cfg.limits.request_timeout_secs.max(1)));
        loop {
            if self.cancelled() {
                return EpisodeEnd::Cancelled;
            }
            if steps >= cfg.limits.max_steps {
                return EpisodeEnd::Exhausted;
            }
            if auto_run >= cfg.limits.max_auto_steps {
                self.front.error(&format!("the agent took {auto_run} steps without proposing anything; the episode stops")).await;
                return EpisodeEnd::Exhausted;
            }
            // Ask the model.
            let fallback = lock(&self.state.no_tools).contains(&self.endpoint);
            let sent = if fallback { fallback_prompt(agent.prompt()) } else { agent.prompt().clone() };
            if let Some(h) = lock(&self.state.inner).episodes.get_mut(&self.id) {
                h.reading = reading.clone();
            }
            self.front.status(self.id, "thinking", "Keel is thinking…", &self.model, None, None).await;
            self.front.thinking(true).await;
            let call = self.call(&model_client, &sent, cfg.limits.temperature, !fallback).await;
            if let Some(h) = lock(&self.state.inner).episodes.get_mut(&self.id) {
                h.reading.clear();
            }
            self.front.thinking(false).await;
            let completion = match call {
                Call::Done(c) => c,
                Call::Cancelled => return EpisodeEnd::Cancelled,
                Call::DocumentChanged => {
                    self.front.error("the code the model was reading changed; the episode stops (start it again)").await;
                    return EpisodeEnd::Cancelled;
                }
                Call::Failed(ModelError::NoToolSupport(msg)) => {
                    tracing::info!("endpoint {} has no tool support ({msg}); using JSON actions", self.endpoint);
                    lock(&self.state.no_tools).insert(self.endpoint.clone());
                    continue;
                }
                Call::Failed(e) => {
                    let msg = e.to_string();
                    self.front.error(&msg).await;
                    return EpisodeEnd::Failed { error: msg };
                }
            };
            steps += 1;
            let parsed = parse_output(&completion.output);
            let version = completion.version.clone();
            let step = Step {
                id: new_id(),
                episode_id: self.id,
                parent_id: parent,
                state_hash: state_hash(&sent),
                created_at: now_ms(),
                prompt: sent.clone(),
                output: completion.output.clone(),
                parsed: parsed.clone(),
                model: ModelRef { name: self.model.clone(), version: version.clone() },
                timings: completion.timings,
            };
            self.record(Record::Step(step.clone()));
            // The rules and the read-only tools run off the main loop, over the editor's workspace
            // (the disk overlaid by the open buffers).
            let ws = self.front.workspace(&self.root, &parsed).await;
            let t0 = std::time::Instant::now();
            let judged = {
                let mut a = agent.clone();
                let p = parsed.clone();
                tokio::task::spawn_blocking(move || {
                    let v = a.judge(&p, &ws);
                    (a, v, ws)
                })
                .await
            };
            let (judged_agent, verdict, ws) = match judged {
                Ok(x) => x,
                Err(e) => {
                    let msg = format!("the agent's tools failed: {e}");
                    self.front.error(&msg).await;
                    return EpisodeEnd::Failed { error: msg };
                }
            };
            agent = judged_agent;
            match verdict {
                Verdict::Rejected { cause, message } => {
                    self.auto_reject(&step, cause, &message);
                    let obs = keel_agent::tools::rejected(cause, &message);
                    self.observe(&step, &obs);
                    self.front.step_done(&step, &obs, true).await;
                    // An automatic rejection: sample again at the same state (a sibling, so the rejected
                    // step and a valid one make a pair), then, if it keeps failing, show the model the error.
                    if let AfterRejection::Advanced(_) = agent.rejected(&parsed, &completion.output, cause, &message) {
                        parent = Some(step.id);
                    }
                    auto_run += 1;
                }
                Verdict::Observed(mut obs) => {
                    obs.duration_ms = Some(t0.elapsed().as_millis() as u64);
                    if let Parsed::Action { action: Action::ViewFile { path, start_line, end_line }, .. } = &parsed {
                        if let Ok(p) = workspace_path(&self.root, path) {
                            reading.push((path_to_uri(&p), start_line.unwrap_or(1).saturating_sub(1), end_line.unwrap_or(u32::MAX)));
                        }
                    }
                    self.decide(step.id, Decision::Auto);
                    self.observe(&step, &obs);
                    self.front.step_done(&step, &obs, false).await;
                    agent.advance(&parsed, &completion.output, &obs);
                    parent = Some(step.id);
                    auto_run += 1;
                }
                Verdict::Finish { summary } => {
                    self.decide(step.id, Decision::Auto);
                    return EpisodeEnd::Finished { summary: Some(summary) };
                }
                Verdict::Edit { path, prepared } => {
                    let pending = match self.prepare_edit(&step, &ws, &path, &prepared, version.clone()) {
                        Ok(p) => p,
                        Err(msg) => {
                            let cause = RejectCause::OutsideWorkspace;
                            self.auto_reject(&step, cause, &msg);
                            let obs = keel_agent::tools::rejected(cause, &msg);
                            self.observe(&step, &obs);
                            self.front.step_done(&step, &obs, true).await;
                            if let AfterRejection::Advanced(_) = agent.rejected(&parsed, &completion.output, cause, &msg) {
                                parent = Some(step.id);
                            }
                            auto_run += 1;
                            continue;
                        }
                    };
                    auto_run = 0;
                    match self.wait(pending).await {
                        Next::Advance(obs, applied) => {
                            if applied {
                                agent.edit_applied();
                            }
                            self.observe(&step, &obs);
                            agent.advance(&parsed, &completion.output, &obs);
                            parent = Some(step.id);
                        }
                        Next::Again => {} // a sibling at the same state
                        Next::Stop => return EpisodeEnd::Cancelled,
                    }
                }
                Verdict::Run { command } => {
                    let shown_at = req.uri.clone().unwrap_or_else(|| path_to_uri(&self.root));
                    let pending = self.prepare_run(&step, &command, &shown_at, (start_char, end_char), version.clone());
                    auto_run = 0;
                    match self.wait(pending).await {
                        Next::Advance(obs, _) => {
                            self.observe(&step, &obs);
                            agent.advance(&parsed, &completion.output, &obs);
                            parent = Some(step.id);
                        }
                        Next::Again => {}
                        Next::Stop => return EpisodeEnd::Cancelled,
                    }
                }
            }
        }
    }

    async fn call(&self, m: &ModelClient, prompt: &Prompt, temperature: f64, tools: bool) -> Call {
        let mut cancel = self.cancel.clone();
        let mut doc = self.call_cancel.clone();
        doc.mark_unchanged();
        let episode = self.id.to_string();
        tokio::select! {
            r = m.complete(prompt, temperature, true, tools, Some(&episode)) => match r {
                Ok(c) => Call::Done(c),
                Err(e) => Call::Failed(e),
            },
            _ = cancel.wait_for(|c| *c) => Call::Cancelled,
            _ = doc.changed() => Call::DocumentChanged,
        }
    }

    fn auto_reject(&self, step: &Step, cause: RejectCause, msg: &str) {
        self.decide(step.id, Decision::Rejected { cause, reason: Some(msg.to_string()) });
    }

    fn observe(&self, step: &Step, obs: &Observation) {
        self.record(Record::Observation { step_id: step.id, at: now_ms(), observation: obs.clone() });
    }

    fn decide(&self, step: uuid::Uuid, decision: Decision) {
        self.state.decide(step, decision);
    }

    fn prepare_edit(&self, step: &Step, ws: &keel_agent::EditorWorkspace, path: &str, prepared: &keel_agent::tools::PreparedEdit, version: Option<String>) -> Result<(Pending, oneshot::Receiver<UserDecision>), String> {
        let abs = ws.abs(path)?;
        let uri = path_to_uri(&abs);
        let text = &prepared.original;
        let edit = &prepared.edit;
        let rope = ropey::Rope::from_str(text);
        let a = rope.byte_to_char(edit.start);
        let b = rope.byte_to_char(edit.end);
        let (tx, rx) = oneshot::channel();
        let title = format!("edit {path}");
        Ok((
            Pending {
                step: step.clone(),
                episode: self.id,
                kind: PendingKind::Edit {
                    path: abs,
                    rel: path.to_string(),
                    old_text: text[edit.start..edit.end].to_string(),
                    new_text: edit.new_text.clone(),
                    review: crate::hunks::Review::new(text, edit.start, edit.end, &edit.new_text),
                },
                uri,
                range_chars: (a, b),
                title,
                original: Some(text.clone()),
                proposed: Some(prepared.proposed()),
                model_version: version,
                created: std::time::Instant::now(),
                tx: Some(tx),
            },
            rx,
        ))
    }

    fn prepare_run(&self, step: &Step, command: &str, uri: &str, range: (usize, usize), version: Option<String>) -> (Pending, oneshot::Receiver<UserDecision>) {
        let (tx, rx) = oneshot::channel();
        let short: String = command.chars().take(60).collect();
        (
            Pending {
                step: step.clone(),
                episode: self.id,
                kind: PendingKind::Run { command: command.to_string() },
                uri: uri.to_string(),
                range_chars: range,
                title: format!("run `{short}`"),
                original: None,
                proposed: None,
                model_version: version,
                created: std::time::Instant::now(),
                tx: Some(tx),
            },
            rx,
        )
    }

    /// Shows a pending step and waits for the user.
    async fn wait(&self, (pending, rx): (Pending, oneshot::Receiver<UserDecision>)) -> Next {
        let step = pending.step.id;
        let shown = Shown { step, uri: pending.uri.clone(), title: pending.title.clone(), model_version: pending.model_version.clone() };
        lock(&self.state.inner).pending.push(pending);
        self.front.proposed(&shown).await;
        self.front.status(self.id, "pending", &format!("Keel proposes: {}", shown.title), &self.model, shown.model_version.as_deref(), Some(step)).await;
        let mut cancel = self.cancel.clone();
        let decision = tokio::select! {
            d = rx => d.unwrap_or(UserDecision::Cancelled),
            _ = cancel.wait_for(|c| *c) => UserDecision::Cancelled,
        };
        // The handler took it out already, except on cancel.
        let leftover = {
            let mut inner = lock(&self.state.inner);
            let before = inner.pending.len();
            inner.pending.retain(|p| p.step.id != step);
            before != inner.pending.len()
        };
        self.front.withdrawn(&shown).await;
        match decision {
            UserDecision::Accepted(obs) => Next::Advance(obs, true),
            UserDecision::AutoRejected { cause, message } => Next::Advance(keel_agent::tools::rejected(cause, &message), false),
            UserDecision::Rejected { reason } => Next::Advance(keel_agent::tools::user_rejected(reason.as_deref()), false),
            UserDecision::Retry => Next::Again,
            UserDecision::Cancelled => {
                if leftover {
                    self.decide(step, Decision::Superseded { reason: Some("the episode was cancelled".into()) });
                }
                Next::Stop
            }
        }
    }

    async fn finish(&self, end: EpisodeEnd) {
        let leftovers: Vec<Shown> = {
            let mut inner = lock(&self.state.inner);
            inner.episodes.remove(&self.id);
            let mine = inner
                .pending
                .iter()
                .filter(|p| p.episode == self.id)
                .map(|p| Shown { step: p.step.id, uri: p.uri.clone(), title: p.title.clone(), model_version: p.model_version.clone() })
                .collect();
            inner.pending.retain(|p| p.episode != self.id);
            mine
        };
        for s in &leftovers {
            self.decide(s.step, Decision::Superseded { reason: Some("the episode ended".into()) });
        }
        for s in &leftovers {
            self.front.withdrawn(s).await;
        }
        let (state, msg) = match &end {
            EpisodeEnd::Finished { summary } => ("finished", format!("Keel finished: {}", summary.as_deref().unwrap_or(""))),
            EpisodeEnd::Cancelled => ("cancelled", "Keel: episode cancelled".to_string()),
            EpisodeEnd::Failed { error } => ("error", format!("Keel: {error}")),
            EpisodeEnd::Exhausted => ("finished", "Keel stopped: the step budget ran out".to_string()),
        };
        let last = self.record(Record::EpisodeEnd(EpisodeEndEvent { episode_id: self.id, at: now_ms(), end, outcome: None }));
        // The end is told once the episode is in the store, so an episode the user saw end survives
        // the server being killed. Not while the store cannot be written: the user has been told
        // that, and the records wait in memory.
        if self.state.recording.failing().is_none() && !self.state.recording.durable(last, END_DURABLE).await {
            tracing::warn!("episode {} ended before its records reached the store (waited {END_DURABLE:?})", self.id);
        }
        self.front.status(self.id, state, &msg, &self.model, None, None).await;
    }
}

enum Next {
    /// The state moves on; `true` when the step was carried out (an applied edit changes the workspace).
    Advance(Observation, bool),
    Again,
    Stop,
}

/// The prompt for endpoints without tool support: the tools described in the system message.
fn fallback_prompt(p: &Prompt) -> Prompt {
    let mut p = p.clone();
    if let Some(m) = p.messages.first_mut() {
        if m.role == Role::System {
            let tools = serde_json::to_string(p.tools.as_ref()).unwrap_or_default();
            let c = m.content.get_or_insert_with(String::new);
            c.push_str(&format!("\n\nTools: {tools}{JSON_FALLBACK_INSTRUCTION}"));
        }
    }
    p
}

/// The editor's workspace for `root`: the disk overlaid by the open documents, `run` in the
/// configured sandbox and image.
pub fn editor_workspace(state: &State, root: &Path) -> keel_agent::EditorWorkspace {
    // Rope clones under the lock (O(1) each); the texts are made after it is released.
    let open: Vec<(String, ropey::Rope)> = {
        let inner = lock(&state.inner);
        inner.docs.values().map(|e| (e.doc.uri.clone(), e.doc.text.clone())).collect()
    };
    let open: Vec<(PathBuf, String)> = open.into_iter().filter_map(|(uri, text)| Some((uri_to_path(&uri)?, text.to_string()))).collect();
    let cfg = state.config();
    let sandbox = cfg.sandbox.map(|socket| keel_agent::SandboxSpec { socket, image: cfg.sandbox_image.clone() });
    keel_agent::EditorWorkspace::new(root, open).with_sandbox(sandbox)
}
