//! The agent loop. An episode runs in its own task: it asks the model for one action at a time,
//! carries out read-only actions at once, turns `edit` and `run` into pending steps that wait for
//! the user, and records every step and decision.
//!
//! Who records what: the command handlers record the user's decisions (accepted, rejected,
//! another, not applied) the moment they are made; this loop records the steps, the automatic
//! decisions (auto, invalid tool call, loop, empty edit, ...), the observations and the end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_trajectory::action::{locate_edit, next_messages, parse_output, tools_schema, workspace_path};
use keel_trajectory::*;
use tokio::sync::{oneshot, watch};
use tower_lsp::Client;
use tower_lsp::lsp_types::Url;

use crate::model::{Completion, JSON_FALLBACK_INSTRUCTION, ModelClient, ModelError};
use crate::state::{EpisodeHandle, Pending, PendingKind, State, UserDecision, lock};
use crate::ui;

/// Automatic rejections answered by sampling again at the same state before the model is shown
/// the error.
pub const AUTO_RESAMPLES: u32 = 2;

pub const SYSTEM_PROMPT: &str = "You are Keel, a coding agent working inside the user's editor. \
Complete the task by calling one tool at a time: view_file and search to read the code, edit to change a file \
(old_text must occur exactly once in the file), run to run a command in a sandbox, and finish when the task is done. \
Paths are relative to the workspace root. The user reviews every edit and command; keep edits small and focused.";

/// What a code action asked for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub uri: String,
    pub range: Option<Range>,
    pub kind: TaskKind,
    pub instruction: Option<String>,
    pub diagnostics: Vec<TaskDiagnostic>,
}

fn default_instruction(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::FixDiagnostic => "Fix the diagnostics in the selected range.",
        TaskKind::Implement => "Implement the code at the selected range.",
        TaskKind::Refactor => "Refactor the selected code without changing its behaviour.",
        TaskKind::WriteTest => "Write a test for the selected code.",
        TaskKind::Instruction => "Follow the user's instruction.",
    }
}

pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    Url::parse(uri).ok()?.to_file_path().ok()
}

pub fn path_to_uri(p: &Path) -> String {
    Url::from_file_path(p).map(|u| u.to_string()).unwrap_or_else(|_| format!("file://{}", p.display()))
}

/// Starts an episode in the background and returns its id at once.
pub fn start(state: &State, client: &Client, req: StartRequest) -> Result<uuid::Uuid, String> {
    let cfg = state.config();
    let Some(endpoint) = cfg.endpoint.clone() else {
        return Err("no model endpoint is configured: set `keel.model.endpoint` (initializationOptions or settings)".into());
    };
    if req.kind == TaskKind::Instruction && req.instruction.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err("instruction required: `keel.episode.start` with kind `instruction` needs an `instruction` argument".into());
    }
    // Snapshot of the document (O(1) rope clone) and its last syntax tree.
    let (text, language, tree, version) = {
        let inner = lock(&state.inner);
        match inner.docs.get(&req.uri) {
            Some(e) => (e.doc.text.clone(), e.doc.language.clone(), e.syntax.tree.clone(), Some(e.doc.version)),
            None => {
                let path = uri_to_path(&req.uri).ok_or_else(|| format!("`{}` is not an open document or a file", req.uri))?;
                let t = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                (ropey::Rope::from_str(&t), String::new(), None, None)
            }
        }
    };
    let root = lock(&state.root)
        .clone()
        .or_else(|| uri_to_path(&req.uri).and_then(|p| p.parent().map(Path::to_path_buf)))
        .ok_or("no workspace root: open a folder")?;
    let id = new_id();
    let (cancel, cancel_rx) = watch::channel(false);
    let (call_cancel, call_cancel_rx) = watch::channel(0u64);
    lock(&state.inner).episodes.insert(id, EpisodeHandle { cancel, reading: Vec::new(), call_cancel, uri: Some(req.uri.clone()) });
    let state = state.clone();
    let client = client.clone();
    let model = cfg.model.clone();
    tokio::spawn(async move {
        let ep = Ep { state: state.clone(), client: client.clone(), id, root, endpoint, model, cancel: cancel_rx, call_cancel: call_cancel_rx };
        let end = ep.run(req, text, language, tree, version).await;
        ep.finish(end).await;
    });
    Ok(id)
}

struct Ep {
    state: State,
    client: Client,
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

    fn record(&self, r: Record) -> bool {
        match self.state.record(r) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    async fn run(&self, req: StartRequest, text: ropey::Rope, language: String, tree: Option<tree_sitter::Tree>, version: Option<i32>) -> EpisodeEnd {
        let cfg = self.state.config();
        let enc = self.state.encoding();
        // Task, context and workspace snapshot, all off the main loop.
        let (start_char, end_char) = match req.range {
            Some(r) => {
                let a = crate::document::offset(&text, enc, crate::document::Pos { line: r.start_line, character: r.start_character });
                let b = crate::document::offset(&text, enc, crate::document::Pos { line: r.end_line, character: r.end_character });
                (a.min(b), a.max(b))
            }
            None => (0, 0),
        };
        let selected = (end_char > start_char).then(|| text.slice(start_char..end_char).to_string());
        let lang_id = if language.is_empty() { req.uri.rsplit('.').next().unwrap_or("").to_string() } else { language.clone() };
        let budget = cfg.limits.context_tokens * 4;
        let uri = req.uri.clone();
        let (start_byte, end_byte) = (text.char_to_byte(start_char), text.char_to_byte(end_char));
        let ctx_task = tokio::task::spawn_blocking(move || {
            let s = text.to_string();
            let lang = crate::syntax::language(&lang_id, &uri);
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
            if let Some(e) = inner.docs.get_mut(&req.uri) {
                if e.doc.version == v {
                    e.syntax.tree = Some(t);
                    e.syntax.stale = false;
                }
            }
        }
        let vcs = git_snapshot(&self.root).await;
        let file_rel = uri_to_path(&req.uri)
            .and_then(|p| p.strip_prefix(&self.root).ok().map(|r| r.display().to_string()))
            .unwrap_or_else(|| req.uri.clone());
        let instruction = req.instruction.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default_instruction(req.kind).to_string());
        let task = Task {
            kind: req.kind,
            instruction: instruction.clone(),
            uri: Some(req.uri.clone()),
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
        };
        if !self.record(Record::Episode(episode)) {
            ui::error(&self.client, "cannot write to the Keel store; see the server log").await;
            return EpisodeEnd::Failed { error: "store unavailable".into() };
        }
        let user = task_message(&task, &file_rel, &ctx);
        let mut prompt = Prompt { messages: vec![Message::system(SYSTEM_PROMPT), Message::user(user)], tools: tools_schema() };
        let mut parent: Option<uuid::Uuid> = None;
        let mut steps = 0u32;
        let mut auto_run = 0u32;
        let mut same_state = 0u32;
        let mut seen: HashSet<String> = HashSet::new();
        let task_lines = req.range.map(|r| (r.start_line.saturating_sub(2), r.end_line + 2)).unwrap_or((0, u32::MAX));
        let mut reading: Vec<(String, u32, u32)> = vec![(req.uri.clone(), task_lines.0, task_lines.1)];
        let model_client = ModelClient::new(&self.endpoint, &self.model, cfg.api_key(), Duration::from_secs(cfg.limits.request_timeout_secs.max(1)));
        loop {
            if self.cancelled() {
                return EpisodeEnd::Cancelled;
            }
            if steps >= cfg.limits.max_steps {
                return EpisodeEnd::Exhausted;
            }
            if auto_run >= cfg.limits.max_auto_steps {
                ui::error(&self.client, &format!("the agent took {auto_run} steps without proposing anything; the episode stops")).await;
                return EpisodeEnd::Exhausted;
            }
            // Ask the model.
            let fallback = lock(&self.state.no_tools).contains(&self.endpoint);
            let sent = if fallback { fallback_prompt(&prompt) } else { prompt.clone() };
            if let Some(h) = lock(&self.state.inner).episodes.get_mut(&self.id) {
                h.reading = reading.clone();
            }
            ui::status(&self.client, Some(self.id), "thinking", "Keel is thinking…", Some(&self.model), None, None).await;
            let progress = ui::Progress::begin(&self.client, &self.state, "Keel").await;
            let call = self.call(&model_client, &sent, cfg.limits.temperature, !fallback).await;
            if let Some(h) = lock(&self.state.inner).episodes.get_mut(&self.id) {
                h.reading.clear();
            }
            progress.end(&self.client, "done").await;
            let completion = match call {
                Call::Done(c) => c,
                Call::Cancelled => return EpisodeEnd::Cancelled,
                Call::DocumentChanged => {
                    ui::error(&self.client, "the code the model was reading changed; the episode stops (start it again)").await;
                    return EpisodeEnd::Cancelled;
                }
                Call::Failed(ModelError::NoToolSupport(msg)) => {
                    tracing::info!("endpoint {} has no tool support ({msg}); using JSON actions", self.endpoint);
                    lock(&self.state.no_tools).insert(self.endpoint.clone());
                    continue;
                }
                Call::Failed(e) => {
                    let msg = e.to_string();
                    ui::error(&self.client, &msg).await;
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
            let advance = |obs: &Observation| Prompt {
                messages: next_messages(&sent.messages, &parsed, &completion.output, &format!("call_{}", steps), obs),
                tools: sent.tools.clone(),
            };
            let action = match &parsed {
                Parsed::Error { error } => {
                    let msg = error.message.clone();
                    self.auto_reject(&step, error.cause(), &msg);
                    let obs = Observation { output: format!("error: {msg}. Call exactly one of the tools with valid arguments."), exit_code: Some(2), ..Default::default() };
                    self.observe(&step, &obs);
                    // An automatic rejection: sample again at the same state (a sibling, so the rejected
                    // step and a valid one make a pair), then, if it keeps failing, show the model the error.
                    if same_state < AUTO_RESAMPLES {
                        same_state += 1;
                    } else {
                        prompt = strip_fallback(advance(&obs), fallback);
                        parent = Some(step.id);
                        same_state = 0;
                    }
                    auto_run += 1;
                    continue;
                }
                Parsed::Action { action, .. } => action.clone(),
            };
            let key = format!("{}:{}", action.tool_name(), action.arguments());
            if !seen.insert(key) {
                self.auto_reject(&step, RejectCause::Loop, "the same action as an earlier step");
                let obs = Observation { output: "You already did exactly this. Do something different.".into(), exit_code: Some(2), ..Default::default() };
                self.observe(&step, &obs);
                // An automatic rejection: sample again at the same state (a sibling, so the rejected
                // step and a valid one make a pair), then, if it keeps failing, show the model the error.
                if same_state < AUTO_RESAMPLES {
                    same_state += 1;
                } else {
                    prompt = strip_fallback(advance(&obs), fallback);
                    parent = Some(step.id);
                    same_state = 0;
                }
                auto_run += 1;
                continue;
            }
            if let Some(p) = action.path().filter(|_| !matches!(action, Action::Edit { .. })) {
                if let Err(e) = workspace_path(&self.root, p) {
                    let msg = e.to_string();
                    self.auto_reject(&step, RejectCause::OutsideWorkspace, &msg);
                    let obs = Observation { output: format!("refused: {msg}"), exit_code: Some(2), ..Default::default() };
                    self.observe(&step, &obs);
                    // An automatic rejection: sample again at the same state (a sibling, so the rejected
                    // step and a valid one make a pair), then, if it keeps failing, show the model the error.
                    if same_state < AUTO_RESAMPLES {
                        same_state += 1;
                    } else {
                        prompt = strip_fallback(advance(&obs), fallback);
                        parent = Some(step.id);
                        same_state = 0;
                    }
                    auto_run += 1;
                    continue;
                }
            }
            match action {
                Action::ViewFile { .. } | Action::Search { .. } => {
                    let open = self.open_texts();
                    let root = self.root.clone();
                    let cap = cfg.limits.max_observation_bytes;
                    let a = action.clone();
                    let t0 = std::time::Instant::now();
                    let mut obs = tokio::task::spawn_blocking(move || match a {
                        Action::ViewFile { path, start_line, end_line } => crate::tools::view_file(&root, &path, start_line, end_line, &open, cap),
                        Action::Search { pattern, path } => crate::tools::search(&root, &pattern, path.as_deref(), &open, cap),
                        _ => Observation::default(),
                    })
                    .await
                    .unwrap_or_else(|e| Observation { output: format!("the tool failed: {e}"), exit_code: Some(1), ..Default::default() });
                    obs.duration_ms = Some(t0.elapsed().as_millis() as u64);
                    if let Action::ViewFile { path, start_line, end_line } = &action {
                        if let Ok(p) = workspace_path(&self.root, path) {
                            reading.push((path_to_uri(&p), start_line.unwrap_or(1).saturating_sub(1), end_line.unwrap_or(u32::MAX)));
                        }
                    }
                    let _ = self.state.decide(step.id, Decision::Auto);
                    self.observe(&step, &obs);
                    prompt = strip_fallback(advance(&obs), fallback);
                    parent = Some(step.id);
                    same_state = 0;
                    auto_run += 1;
                }
                Action::Finish { summary } => {
                    let _ = self.state.decide(step.id, Decision::Auto);
                    return EpisodeEnd::Finished { summary: Some(summary) };
                }
                Action::Edit { path, old_text, new_text } => {
                    let pending = match self.prepare_edit(&step, &path, &old_text, &new_text, version.clone()) {
                        Ok(p) => p,
                        Err((cause, msg)) => {
                            self.auto_reject(&step, cause, &msg);
                            let obs = Observation { output: format!("The edit was not proposed: {msg}"), exit_code: Some(1), ..Default::default() };
                            self.observe(&step, &obs);
                            // An automatic rejection: sample again at the same state (a sibling, so the rejected
                            // step and a valid one make a pair), then, if it keeps failing, show the model the error.
                            if same_state < AUTO_RESAMPLES {
                                same_state += 1;
                            } else {
                                prompt = strip_fallback(advance(&obs), fallback);
                                parent = Some(step.id);
                                same_state = 0;
                            }
                            auto_run += 1;
                            continue;
                        }
                    };
                    auto_run = 0;
                    match self.wait(pending).await {
                        Next::Advance(obs) => {
                            self.observe(&step, &obs);
                            prompt = strip_fallback(advance(&obs), fallback);
                            parent = Some(step.id);
                            same_state = 0;
                        }
                        Next::Again => {} // a sibling at the same state
                        Next::Stop => return EpisodeEnd::Cancelled,
                    }
                }
                Action::Run { command } => {
                    let pending = self.prepare_run(&step, &command, &req.uri, (start_char, end_char), version.clone());
                    auto_run = 0;
                    match self.wait(pending).await {
                        Next::Advance(obs) => {
                            self.observe(&step, &obs);
                            prompt = strip_fallback(advance(&obs), fallback);
                            parent = Some(step.id);
                            same_state = 0;
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
        tokio::select! {
            r = m.complete(prompt, temperature, true, tools) => match r {
                Ok(c) => Call::Done(c),
                Err(e) => Call::Failed(e),
            },
            _ = cancel.wait_for(|c| *c) => Call::Cancelled,
            _ = doc.changed() => Call::DocumentChanged,
        }
    }

    fn auto_reject(&self, step: &Step, cause: RejectCause, msg: &str) {
        let _ = self.state.decide(step.id, Decision::Rejected { cause, reason: Some(msg.to_string()) });
    }

    fn observe(&self, step: &Step, obs: &Observation) {
        self.record(Record::Observation { step_id: step.id, at: now_ms(), observation: obs.clone() });
    }

    fn open_texts(&self) -> crate::tools::OpenTexts {
        let inner = lock(&self.state.inner);
        inner.docs.values().filter_map(|e| Some((uri_to_path(&e.doc.uri)?, e.doc.text.to_string()))).collect()
    }

    fn prepare_edit(&self, step: &Step, path: &str, old_text: &str, new_text: &str, version: Option<String>) -> Result<(Pending, oneshot::Receiver<UserDecision>), (RejectCause, String)> {
        let abs = workspace_path(&self.root, path).map_err(|e| (RejectCause::OutsideWorkspace, e.to_string()))?;
        let uri = path_to_uri(&abs);
        let current = {
            let inner = lock(&self.state.inner);
            inner.docs.get(&uri).map(|e| e.doc.text.to_string())
        };
        let text = match current {
            Some(t) => t,
            None if abs.exists() => std::fs::read_to_string(&abs).map_err(|e| (RejectCause::OldTextNotFound, format!("cannot read `{path}`: {e}")))?,
            None if old_text.is_empty() => String::new(),
            None => return Err((RejectCause::OldTextNotFound, format!("`{path}` does not exist"))),
        };
        let edit = locate_edit(&text, old_text, new_text).map_err(|e| (e.cause(), e.to_string()))?;
        let proposed = edit.apply(&text);
        let rope = ropey::Rope::from_str(&text);
        let a = rope.byte_to_char(edit.start);
        let b = rope.byte_to_char(edit.end);
        let (tx, rx) = oneshot::channel();
        let title = format!("edit {path}");
        Ok((
            Pending {
                step: step.clone(),
                episode: self.id,
                kind: PendingKind::Edit { path: abs, old_text: text[edit.start..edit.end].to_string(), new_text: edit.new_text.clone() },
                uri,
                range_chars: (a, b),
                title,
                original: Some(text),
                proposed: Some(proposed),
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
        let uri = pending.uri.clone();
        let step = pending.step.id;
        let title = pending.title.clone();
        let version = pending.model_version.clone();
        lock(&self.state.inner).pending.push(pending);
        ui::refresh(&self.client, &self.state, &uri).await;
        ui::status(&self.client, Some(self.id), "pending", &format!("Keel proposes: {title}"), Some(&self.model), version.as_deref(), Some(step)).await;
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
        ui::refresh(&self.client, &self.state, &uri).await;
        match decision {
            UserDecision::Accepted(obs) => Next::Advance(obs),
            UserDecision::AutoRejected { message, .. } => Next::Advance(Observation { output: message, exit_code: Some(1), ..Default::default() }),
            UserDecision::Rejected { reason } => Next::Advance(Observation {
                output: match reason {
                    Some(r) if !r.trim().is_empty() => format!("The user rejected this. Reason: {r}"),
                    _ => "The user rejected this.".to_string(),
                },
                exit_code: Some(1),
                ..Default::default()
            }),
            UserDecision::Retry => Next::Again,
            UserDecision::Cancelled => {
                if leftover {
                    let _ = self.state.decide(step, Decision::Superseded { reason: Some("the episode was cancelled".into()) });
                }
                Next::Stop
            }
        }
    }

    async fn finish(&self, end: EpisodeEnd) {
        let (uris, leftovers): (Vec<String>, Vec<uuid::Uuid>) = {
            let mut inner = lock(&self.state.inner);
            inner.episodes.remove(&self.id);
            let mine: Vec<(String, uuid::Uuid)> = inner.pending.iter().filter(|p| p.episode == self.id).map(|p| (p.uri.clone(), p.step.id)).collect();
            inner.pending.retain(|p| p.episode != self.id);
            mine.into_iter().unzip()
        };
        for s in leftovers {
            let _ = self.state.decide(s, Decision::Superseded { reason: Some("the episode ended".into()) });
        }
        for u in uris {
            ui::refresh(&self.client, &self.state, &u).await;
        }
        let (state, msg) = match &end {
            EpisodeEnd::Finished { summary } => ("finished", format!("Keel finished: {}", summary.as_deref().unwrap_or(""))),
            EpisodeEnd::Cancelled => ("cancelled", "Keel: episode cancelled".to_string()),
            EpisodeEnd::Failed { error } => ("error", format!("Keel: {error}")),
            EpisodeEnd::Exhausted => ("finished", "Keel stopped: the step budget ran out".to_string()),
        };
        self.record(Record::EpisodeEnd(EpisodeEndEvent { episode_id: self.id, at: now_ms(), end }));
        ui::status(&self.client, Some(self.id), state, &msg, Some(&self.model), None, None).await;
    }
}

enum Next {
    Advance(Observation),
    Again,
    Stop,
}

fn task_message(task: &Task, file: &str, ctx: &crate::syntax::Context) -> String {
    let mut s = format!("Task ({}): {}\nFile: {file}\n", task.kind.as_str(), task.instruction);
    if let Some(r) = task.range {
        s.push_str(&format!("Range: lines {}-{}\n", r.start_line + 1, r.end_line + 1));
    }
    for d in &task.diagnostics {
        let line = d.range.map(|r| format!(" (line {})", r.start_line + 1)).unwrap_or_default();
        s.push_str(&format!("Diagnostic{line}: {} {}\n", d.severity.as_deref().unwrap_or(""), d.message));
    }
    if let Some(sel) = &task.selected_text {
        if sel.len() < 4000 {
            s.push_str(&format!("Selected text:\n```\n{sel}\n```\n"));
        }
    }
    if !ctx.imports.is_empty() {
        s.push_str(&format!("Imports:\n```\n{}\n```\n", ctx.imports.join("\n")));
    }
    if let Some((kind, line, body)) = &ctx.enclosing {
        s.push_str(&format!("Enclosing {kind} (from line {line}):\n```\n{body}\n```\n"));
    } else if let Some((line, body)) = &ctx.nearby {
        s.push_str(&format!("Code around it (from line {line}):\n```\n{body}\n```\n"));
    }
    s
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

/// Keeps the next state's system message free of the fallback text (it is added per call).
fn strip_fallback(mut p: Prompt, fallback: bool) -> Prompt {
    if fallback {
        if let Some(m) = p.messages.first_mut() {
            if let Some(c) = m.content.as_mut() {
                if let Some(i) = c.find("\n\nTools: ") {
                    c.truncate(i);
                }
            }
        }
    }
    p
}

/// Commit, uncommitted changes and untracked files, so a container can rebuild the workspace.
pub async fn git_snapshot(root: &Path) -> Option<VcsState> {
    async fn git(root: &Path, args: &[&str]) -> Option<Vec<u8>> {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new("git").arg("-C").arg(root).args(args).stdin(std::process::Stdio::null()).kill_on_drop(true).output(),
        )
        .await
        .ok()?
        .ok()?;
        out.status.success().then_some(out.stdout)
    }
    let commit = String::from_utf8(git(root, &["rev-parse", "HEAD"]).await?).ok()?.trim().to_string();
    let patch = git(root, &["diff", "--binary", "HEAD"]).await.unwrap_or_default();
    let patch = if patch.len() > 2 * 1024 * 1024 { String::new() } else { String::from_utf8_lossy(&patch).into_owned() };
    let list = git(root, &["ls-files", "--others", "--exclude-standard", "-z"]).await.unwrap_or_default();
    let mut untracked = Vec::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()).take(64) {
        let name = String::from_utf8_lossy(name).into_owned();
        let p = root.join(&name);
        if std::fs::metadata(&p).is_ok_and(|m| m.len() <= 256 * 1024) {
            if let Ok(content) = std::fs::read_to_string(&p) {
                untracked.push(FileSnapshot { path: name, content });
            }
        }
    }
    Some(VcsState { kind: "git".into(), commit, patch, untracked })
}
