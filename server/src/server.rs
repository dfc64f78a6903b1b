//! `impl LanguageServer`: thin handlers that translate LSP into the server's own calls.
//!
//! Document notifications change state synchronously (no `.await` between reading and writing the
//! document map), so they apply in the order they arrived even though tower-lsp runs handlers
//! concurrently. Nothing here waits on the model or the disk.

use std::sync::Arc;

use keel_trajectory::{Decision, RejectCause, TaskDiagnostic, TaskKind};
use serde_json::{Value, json};
use tower_lsp::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp::lsp_types::*;
use tower_lsp::{Client, LanguageServer, LspService};
use uuid::Uuid;

use crate::decisions;
use crate::document::{Change, Document, Encoding};
use crate::episode::{self, StartRequest};
use crate::hunks::Choice;
use crate::state::{DocEntry, PendingKind, Shared, State, UserDecision, lock};
use crate::ui;
use crate::watch::{Outcome, Watch};

/// Set when the client sent `shutdown`: the exit code is 0 only then (LSP's rule).
pub static SHUTDOWN_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub const COMMANDS: [&str; 5] = ["keel.episode.start", "keel.step.accept", "keel.step.reject", "keel.step.retry", "keel.episode.cancel"];

pub struct Backend {
    pub client: Client,
    pub state: State,
}

/// Runs the server on stdin/stdout until the client exits; `base`: the options before the client's.
pub async fn serve_stdio(base: crate::config::Config) {
    let (service, socket) = build_with(base);
    crate::transport::serve(std::io::stdin(), std::io::stdout(), CatchPanic(service), socket, std::time::Duration::from_secs(2)).await;
}

/// The service behind a guard: a handler that panics answers its request with an internal error
/// (a notification is dropped) and the server goes on serving. Without it the panic unwinds through
/// tower-lsp's message loop and the server answers nothing more, not even `shutdown`. The panic is
/// still printed (and the fuzzer's oracle still sees it): it is a bug to fix, not a way to run.
pub struct CatchPanic<S>(pub S);

impl<S> tower_service::Service<tower_lsp::jsonrpc::Request> for CatchPanic<S>
where
    S: tower_service::Service<tower_lsp::jsonrpc::Request, Response = Option<tower_lsp::jsonrpc::Response>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Option<tower_lsp::jsonrpc::Response>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, std::result::Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tower_lsp::jsonrpc::Request) -> Self::Future {
        use futures::FutureExt;
        let id = req.id().cloned();
        let method = req.method().to_string();
        let caught = |id: Option<tower_lsp::jsonrpc::Id>, method: &str| {
            tracing::error!("the handler of {method} panicked; the server goes on");
            let e = Error { code: ErrorCode::InternalError, message: format!("internal error in keel-lsp while handling {method}").into(), data: None };
            Ok(id.map(|id| tower_lsp::jsonrpc::Response::from_error(id, e)))
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.call(req))) {
            Ok(fut) => Box::pin(async move {
                match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(r) => r,
                    Err(_) => caught(id, &method),
                }
            }),
            Err(_) => Box::pin(std::future::ready(caught(id, &method))),
        }
    }
}

pub fn build() -> (LspService<Backend>, tower_lsp::ClientSocket) {
    build_with(crate::config::Config::default())
}

pub fn build_with(base: crate::config::Config) -> (LspService<Backend>, tower_lsp::ClientSocket) {
    LspService::build(move |client| {
        let state: State = Arc::new(Shared::default());
        *lock(&state.config) = base;
        let b = Backend { client, state };
        b.spawn_watch_timer();
        crate::state::background().spawn(crate::recorder::run(Arc::downgrade(&b.state), b.client.clone()));
        b
    })
    .custom_method("keel/pending", Backend::pending)
    .finish()
}

fn invalid(msg: impl Into<String>) -> Error {
    Error { code: ErrorCode::InvalidParams, message: msg.into().into(), data: None }
}

fn range_of(r: Range) -> keel_trajectory::Range {
    keel_trajectory::Range { start_line: r.start.line, start_character: r.start.character, end_line: r.end.line, end_character: r.end.character }
}

/// Ends the watches `pick` chooses: each records what the user did to its edit so far (`edited`),
/// if anything (an undo was recorded when it happened).
fn end_watches(state: &crate::state::Shared, pick: impl Fn(&Watch) -> bool) {
    let gone: Vec<Watch> = {
        let mut inner = lock(&state.inner);
        let (gone, keep): (Vec<Watch>, Vec<Watch>) = std::mem::take(&mut inner.watches).into_iter().partition(|w| pick(w));
        inner.watches = keep;
        gone
    };
    for w in gone {
        if let Some(d) = w.final_decision() {
            state.decide(w.step, d);
        }
    }
}

impl Backend {
    fn spawn_watch_timer(&self) {
        let state = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else { break };
                let now = std::time::Instant::now();
                end_watches(&state, |w| w.deadline <= now);
            }
        });
    }

    /// Ends all watches (at shutdown): edits still changed are recorded as edited.
    fn close_watches(&self, episode: Option<Uuid>) {
        end_watches(&self.state, |w| episode.is_none_or(|e| w.episode == e));
    }

    /// `keel/pending`: the pending steps (optionally of one document), for diff views and commands.
    pub async fn pending(&self, params: Value) -> Result<Value> {
        let uri = params.get("uri").and_then(Value::as_str).map(str::to_string);
        let inner = lock(&self.state.inner);
        let list: Vec<Value> = inner
            .pending
            .iter()
            .filter(|p| uri.as_ref().is_none_or(|u| *u == p.uri))
            .map(|p| {
                let (tool, command) = match &p.kind {
                    PendingKind::Edit { .. } => ("edit", None),
                    PendingKind::Run { command } => ("run", Some(command.clone())),
                };
                let range = inner.docs.get(&p.uri).map(|e| {
                    json!({"start": ui::lsp_pos(e.doc.position(p.range_chars.0)), "end": ui::lsp_pos(e.doc.position(p.range_chars.1))})
                });
                // The hunks' lines in the document as it is now (the edit's span moves with typing).
                let hunks = match &p.kind {
                    PendingKind::Edit { review, .. } => {
                        let first = match inner.docs.get(&p.uri) {
                            Some(e) => e.doc.text.char_to_line(p.range_chars.0.min(e.doc.text.len_chars())),
                            None => {
                                let rope = ropey::Rope::from_str(p.original.as_deref().unwrap_or(""));
                                rope.char_to_line(p.range_chars.0.min(rope.len_chars()))
                            }
                        };
                        review.to_json(u32::try_from(first).unwrap_or(u32::MAX))
                    }
                    PendingKind::Run { .. } => json!([]),
                };
                json!({
                    "step": p.step.id, "episode": p.episode, "tool": tool, "uri": p.uri, "range": range,
                    "title": p.title, "original": p.original, "proposed": p.proposed, "command": command,
                    "model_version": p.model_version, "hunks": hunks,
                })
            })
            .collect();
        Ok(Value::Array(list))
    }

    /// Finds the pending step a command is about: by id, else the one at `{uri, position}`, else
    /// the most recent.
    fn find_pending(&self, args: &Value) -> Option<Uuid> {
        let inner = lock(&self.state.inner);
        if let Some(id) = args.get("step").and_then(Value::as_str) {
            let id = Uuid::parse_str(id).ok()?;
            return inner.pending.iter().find(|p| p.step.id == id).map(|p| p.step.id);
        }
        if let (Some(uri), Some(pos)) = (args.get("uri").and_then(Value::as_str), args.get("position")) {
            if let Ok(pos) = serde_json::from_value::<Position>(pos.clone()) {
                if let Some(e) = inner.docs.get(uri) {
                    let at = e.doc.offset(ui::keel_pos(pos));
                    let line = e.doc.text.char_to_line(at.min(e.doc.text.len_chars()));
                    if let Some(p) = inner.pending.iter().rev().find(|p| {
                        p.uri == uri && {
                            let a = e.doc.text.char_to_line(p.range_chars.0.min(e.doc.text.len_chars()));
                            let b = e.doc.text.char_to_line(p.range_chars.1.min(e.doc.text.len_chars()));
                            line + 1 >= a && line <= b + 1
                        }
                    }) {
                        return Some(p.step.id);
                    }
                }
            }
        }
        inner.pending.iter().max_by_key(|p| p.created).map(|p| p.step.id)
    }

    fn take_pending(&self, step: Uuid) -> Option<crate::state::Pending> {
        self.state.take_pending(step)
    }

    /// What `hunks` (the indices kept, when the user reviewed hunk by hunk) makes of the pending
    /// `step`: checked before the step is taken, so a bad list loses nothing.
    fn hunk_choice(&self, step: Uuid, args: &Value) -> Result<Option<Choice>> {
        let kept = match args.get("hunks") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| invalid(format!("`hunks` must list hunk indices (integers from 0), not {v}"))))
                .collect::<Result<Vec<usize>>>()?,
            Some(v) => return Err(invalid(format!("`hunks` must be an array of hunk indices, not {v}"))),
        };
        let inner = lock(&self.state.inner);
        let Some(p) = inner.pending.iter().find(|p| p.step.id == step) else { return Err(invalid("that step is no longer pending")) };
        match &p.kind {
            PendingKind::Edit { review, .. } => review.choose(&kept).map(Some).map_err(|e| invalid(e.0)),
            PendingKind::Run { .. } if kept.is_empty() => Ok(Some(Choice::None)),
            PendingKind::Run { .. } => Err(invalid("a command has no hunks: accept or reject it whole")),
        }
    }

    async fn accept(&self, args: &Value) -> Result<Value> {
        let Some(step) = self.find_pending(args) else { return Err(invalid("no pending Keel step to accept")) };
        let part = match self.hunk_choice(step, args)? {
            Some(Choice::None) => {
                // Every hunk rejected: the step is rejected.
                self.reject(&json!({"step": step}), false).await?;
                return Ok(json!({"applied": false, "rejected": true}));
            }
            Some(Choice::Part { final_text, kept, of }) => Some((final_text, kept, of)),
            Some(Choice::All) | None => None,
        };
        let Some(mut p) = self.take_pending(step) else { return Err(invalid("that step is no longer pending")) };
        match p.kind.clone() {
            PendingKind::Run { command } => {
                if self.state.config().sandbox.is_none() {
                    let msg = decisions::run_without_sandbox(&self.state, &mut p, &command);
                    self.client.show_message(MessageType::WARNING, format!("Keel: {msg}")).await;
                    return Ok(json!({"applied": false, "reason": msg}));
                }
                // Accepted: it runs in a container made from a copy of the workspace as the editor
                // shows it (unsaved buffers included), never here.
                let root = lock(&self.state.root).clone();
                let state = self.state.clone();
                let client = self.client.clone();
                self.state.decide(step, Decision::Accepted);
                tokio::spawn(async move {
                    let ws = root.map(|r| crate::episode::editor_workspace(&state, &r));
                    let obs = decisions::run_in_sandbox(ws, command).await;
                    if decisions::sandbox_failed(&obs) {
                        client.show_message(MessageType::WARNING, format!("Keel: {}", obs.output.lines().next().unwrap_or(""))).await;
                    }
                    if let Some(tx) = p.tx.take() {
                        let _ = tx.send(UserDecision::Accepted(obs));
                    }
                });
                Ok(json!({"applied": true, "sandbox": true}))
            }
            PendingKind::Edit { path, rel, old_text, new_text, .. } => {
                // A partial accept writes the kept hunks in place of the model's text.
                let new_text = part.as_ref().map_or(new_text, |(t, _, _)| t.clone());
                // Locate the edit in the text as it is now (the user may have typed since).
                let uri = p.uri.clone();
                // The file may have become a link out of the workspace since it was proposed.
                let root = lock(&self.state.root).clone();
                let checked = match root {
                    Some(r) => Some(crate::files::check_inside_root(r, path.clone()).await),
                    None => None,
                };
                if let Some(Err(msg)) = checked {
                    decisions::not_carried_out(&self.state, &mut p, RejectCause::OutsideWorkspace, msg.clone(), RejectCause::OutsideWorkspace, msg.clone());
                    ui::error(&self.client, &msg).await;
                    return Ok(json!({"applied": false, "reason": msg}));
                }
                let open = {
                    let inner = lock(&self.state.inner);
                    inner.docs.get(&uri).map(|e| (e.doc.text.to_string(), e.doc.version))
                };
                let (text, version) = match open {
                    Some((t, v)) => (t, Some(v)),
                    // Not open: the file on disk (a new file when missing), read off the main loop.
                    None => match crate::files::read_text(path.clone()).await {
                        Ok(t) => (t.unwrap_or_default(), None),
                        Err(msg) => {
                            decisions::not_carried_out(&self.state, &mut p, RejectCause::NotApplied, msg.clone(), RejectCause::NotApplied, msg.clone());
                            ui::error(&self.client, &msg).await;
                            return Ok(json!({"applied": false, "reason": msg}));
                        }
                    },
                };
                let located = keel_trajectory::action::locate_edit(&text, &old_text, &new_text);
                let edit = match located {
                    Ok(e) => e,
                    Err(e) => {
                        let msg = format!("the edit no longer applies: {e}");
                        decisions::not_carried_out(&self.state, &mut p, e.cause(), msg.clone(), RejectCause::NotApplied, e.to_string());
                        ui::error(&self.client, &msg).await;
                        return Ok(json!({"applied": false, "reason": msg}));
                    }
                };
                let doc = Document::new(uri.clone(), "", 0, &text, self.state.encoding());
                let a = doc.text.byte_to_char(edit.start);
                let b = doc.text.byte_to_char(edit.end);
                let range = Range { start: ui::lsp_pos(doc.position(a)), end: ui::lsp_pos(doc.position(b)) };
                // The agent's next edit of this document is not the user's change of an earlier
                // one: the watches of earlier steps on it end here, with what the user did so far
                // (else an edit next to an earlier one would be recorded as the user editing it).
                end_watches(&self.state, |w| w.uri == uri);
                let watch = Watch::new(step, p.episode, uri.clone(), &text, a, b - a, &edit.new_text, std::time::Duration::from_secs(self.state.config().limits.watch_secs));
                if let Some(w) = watch.clone() {
                    lock(&self.state.inner).watches.push(w);
                }
                let Ok(url) = Url::parse(&uri) else { return Err(invalid(format!("bad uri {uri}"))) };
                let text_edit = TextEdit { range, new_text: edit.new_text.clone() };
                let we = match version {
                    Some(v) => WorkspaceEdit {
                        document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                            text_document: OptionalVersionedTextDocumentIdentifier { uri: url, version: Some(v) },
                            edits: vec![OneOf::Left(text_edit)],
                        }])),
                        ..Default::default()
                    },
                    None => WorkspaceEdit { changes: Some([(url, vec![text_edit])].into_iter().collect()), ..Default::default() },
                };
                let resp = self.client.apply_edit(we).await;
                let (applied, reason) = match resp {
                    Ok(r) => (r.applied, r.failure_reason),
                    Err(e) => (false, Some(e.to_string())),
                };
                if applied {
                    match part {
                        Some((final_text, kept, of)) => decisions::accepted_in_part(&self.state, &mut p, &rel, final_text, kept, of),
                        None => decisions::accepted(&self.state, &mut p, keel_agent::tools::edit_applied(&rel)),
                    }
                } else {
                    lock(&self.state.inner).watches.retain(|w| w.step != step);
                    let why = reason.unwrap_or_else(|| "the editor did not apply it".into());
                    let told = format!("the editor did not apply it: {why}");
                    decisions::not_carried_out(&self.state, &mut p, RejectCause::NotApplied, why, RejectCause::NotApplied, told);
                }
                Ok(json!({"applied": applied}))
            }
        }
    }

    async fn reject(&self, args: &Value, retry: bool) -> Result<Value> {
        let Some(step) = self.find_pending(args) else { return Err(invalid("no pending Keel step")) };
        let Some(mut p) = self.take_pending(step) else { return Err(invalid("that step is no longer pending")) };
        let reason = args.get("reason").and_then(Value::as_str).map(str::to_string);
        decisions::rejected(&self.state, &mut p, reason, retry);
        Ok(Value::Null)
    }

    async fn cancel(&self, args: &Value) -> Result<Value> {
        let id = args.get("episode").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
        let n = {
            let inner = lock(&self.state.inner);
            let mut n = 0;
            for (eid, h) in &inner.episodes {
                if id.is_none_or(|i| i == *eid) {
                    let _ = h.cancel.send(true);
                    n += 1;
                }
            }
            n
        };
        Ok(json!({"cancelled": n}))
    }

    async fn start_episode(&self, args: &Value) -> Result<Value> {
        let uri = args.get("uri").and_then(Value::as_str).ok_or_else(|| invalid("keel.episode.start needs `uri`"))?.to_string();
        let range: Option<Range> = match args.get("range") {
            Some(r) if !r.is_null() => Some(serde_json::from_value(r.clone()).map_err(|e| invalid(format!("bad `range`: {e}")))?),
            _ => None,
        };
        let kind: TaskKind = match args.get("kind") {
            Some(k) => serde_json::from_value(k.clone()).map_err(|_| invalid(format!("unknown task kind {k}")))?,
            None => TaskKind::Instruction,
        };
        let diagnostics: Vec<TaskDiagnostic> = args
            .get("diagnostics")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| serde_json::from_value::<Diagnostic>(d.clone()).ok())
                    .map(|d| TaskDiagnostic {
                        message: d.message,
                        severity: d.severity.map(|s| format!("{s:?}").to_lowercase()),
                        source: d.source,
                        code: d.code.map(|c| match c {
                            NumberOrString::Number(n) => n.to_string(),
                            NumberOrString::String(s) => s,
                        }),
                        range: Some(range_of(d.range)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let req = StartRequest {
            uri: Some(uri),
            range: range.map(range_of),
            kind,
            instruction: args.get("instruction").and_then(Value::as_str).map(str::to_string),
            diagnostics,
        };
        match episode::start(&self.state, &self.client, req).await {
            Ok(id) => Ok(json!({ "episode": id })),
            Err(e) => {
                ui::error(&self.client, &e).await;
                ui::status(&self.client, None, "error", &e, None, None, None).await;
                Err(invalid(e))
            }
        }
    }
}

#[tower_lsp::async_trait]
impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let enc = Encoding::negotiate(
            params.capabilities.general.as_ref().and_then(|g| g.position_encodings.as_ref()).map(|v| v.iter().map(|k| k.as_str().to_string()).collect::<Vec<_>>()).as_deref(),
        );
        *lock(&self.state.encoding) = enc;
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .and_then(|f| f.uri.to_file_path().ok())
            .or_else(|| params.root_uri.as_ref().and_then(|u| u.to_file_path().ok()));
        *lock(&self.state.root) = root;
        *lock(&self.state.client_name) = params.client_info.as_ref().map(|c| match &c.version {
            Some(v) => format!("{} {v}", c.name),
            None => c.name.clone(),
        });
        let ws = params.capabilities.workspace.as_ref();
        *lock(&self.state.lens_refresh) = ws.and_then(|w| w.code_lens.as_ref()).and_then(|c| c.refresh_support).unwrap_or(false);
        *lock(&self.state.work_done_progress) = params.capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
        if let Some(opts) = &params.initialization_options {
            let root = lock(&self.state.root).clone();
            let merged = self.state.config().merged_at(opts, root.as_deref());
            match merged {
                Ok(c) => *lock(&self.state.config) = c,
                Err(e) => self.client.show_message(MessageType::ERROR, format!("Keel: {e}")).await,
            }
        }
        Ok(InitializeResult {
            server_info: Some(ServerInfo { name: "keel-lsp".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
            capabilities: ServerCapabilities {
                position_encoding: Some(PositionEncodingKind::new(enc.as_str())),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
                code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                    code_action_kinds: Some(vec![CodeActionKind::QUICKFIX, CodeActionKind::REFACTOR]),
                    resolve_provider: Some(true),
                    ..Default::default()
                })),
                code_lens_provider: Some(CodeLensOptions { resolve_provider: Some(false) }),
                execute_command_provider: Some(ExecuteCommandOptions { commands: COMMANDS.iter().map(|s| s.to_string()).collect(), ..Default::default() }),
                ..Default::default()
            },
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let cfg = self.state.config();
        tracing::info!("keel-lsp ready: model {} at {:?}, store {}", cfg.model, cfg.endpoint, crate::recorder::shown(&cfg.store));
    }

    async fn shutdown(&self) -> Result<()> {
        SHUTDOWN_REQUESTED.store(true, std::sync::atomic::Ordering::SeqCst);
        self.close_watches(None);
        let ids: Vec<Uuid> = lock(&self.state.inner).episodes.keys().copied().collect();
        for h in lock(&self.state.inner).episodes.values() {
            let _ = h.cancel.send(true);
        }
        // Give cancelled episodes a moment to record their end, then make everything durable.
        for _ in 0..50 {
            if ids.iter().all(|i| !lock(&self.state.inner).episodes.contains_key(i)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if let Err(n) = self.state.flush(std::time::Duration::from_secs(5)).await {
            let why = self.state.recording.failing().unwrap_or_else(|| "it did not finish in time".into());
            ui::error(&self.client, &format!("{n} record(s) could not be written to the Keel store before shutdown: {why}")).await;
        }
        Ok(())
    }

    async fn did_open(&self, p: DidOpenTextDocumentParams) {
        let d = p.text_document;
        let enc = self.state.encoding();
        let doc = Document::new(d.uri.to_string(), d.language_id, d.version, &d.text, enc);
        lock(&self.state.inner).docs.insert(d.uri.to_string(), DocEntry { doc, syntax: Default::default() });
    }

    async fn did_change(&self, p: DidChangeTextDocumentParams) {
        let uri = p.text_document.uri.to_string();
        let changes: Vec<Change> = p.content_changes.into_iter().map(|c| Change { range: c.range.map(|r| (ui::keel_pos(r.start), ui::keel_pos(r.end))), text: c.text }).collect();
        // Synchronous from here to the end of the state change: notifications apply in order.
        let mut reverted = Vec::new();
        let mut own = false;
        let mut touched_lines: Vec<(u32, u32)> = Vec::new();
        {
            let mut guard = lock(&self.state.inner);
            let inner = &mut *guard;
            let Some(entry) = inner.docs.get_mut(&uri) else {
                tracing::warn!("didChange for a document that is not open: {uri}");
                return;
            };
            // A client that sends the whole text (full sync) changed only part of it: narrowed to
            // that part, a change elsewhere is not taken for a change of a watched edit, does not
            // cancel a model call that read other lines, and re-parses only what changed.
            let changes: Vec<Change> = match changes.as_slice() {
                [only] if only.range.is_none() => vec![crate::document::narrow_full_change(&entry.doc, &only.text)],
                _ => changes,
            };
            for c in &changes {
                if let Some((a, b)) = c.range {
                    // A client's line numbers go up to u32::MAX: saturate, never overflow.
                    let added = u32::try_from(c.text.matches('\n').count()).unwrap_or(u32::MAX);
                    touched_lines.push((a.line.min(b.line), a.line.max(b.line).saturating_add(added)));
                } else {
                    touched_lines.push((0, u32::MAX));
                }
            }
            let applied = match entry.doc.apply(p.text_document.version, &changes) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("{uri}: {e}");
                    return;
                }
            };
            let len_bytes = entry.doc.text.len_bytes();
            for a in &applied {
                entry.syntax.edit(a, len_bytes);
            }
            // Pending steps shown in this document follow the text.
            for pend in inner.pending.iter_mut().filter(|x| x.uri == uri) {
                for a in &applied {
                    pend.range_chars = shift_range(pend.range_chars, a);
                }
            }
            let watched = inner.watches.iter().any(|w| w.uri == uri);
            if watched {
                let cur = &entry.doc.text;
                for w in inner.watches.iter_mut().filter(|w| w.uri == uri) {
                    for (a, c) in applied.iter().zip(&changes) {
                        w.change(a, &c.text);
                    }
                    let was_armed = w.armed();
                    if w.check(cur) == Outcome::Reverted {
                        reverted.push(w.step);
                    } else if !was_armed && w.armed() {
                        // This change is our own accepted edit landing.
                        own = true;
                    }
                }
                inner.watches.retain(|w| !reverted.contains(&w.step));
            }
            // A change to the code an in-flight model call read cancels that call (but not the
            // change our own accepted edit makes).
            if !own {
                for h in inner.episodes.values() {
                    let hit = h.reading.iter().any(|(u, a, b)| *u == uri && touched_lines.iter().any(|(x, y)| !(y < a || x > b)));
                    if hit {
                        h.call_cancel.send_modify(|n| *n += 1);
                    }
                }
            }
        }
        for s in reverted {
            self.state.decide(s, Decision::Reverted);
        }
    }

    async fn did_close(&self, p: DidCloseTextDocumentParams) {
        lock(&self.state.inner).docs.remove(p.text_document.uri.as_str());
    }

    async fn did_change_configuration(&self, p: DidChangeConfigurationParams) {
        let root = lock(&self.state.root).clone();
        let merged = self.state.config().merged_at(&p.settings, root.as_deref());
        match merged {
            Ok(c) => *lock(&self.state.config) = c,
            Err(e) => ui::error(&self.client, &e).await,
        }
    }

    async fn code_action(&self, p: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let CodeActionParams { text_document, range: r, context, .. } = p;
        let mut out = ui::step_actions(&self.state, text_document.uri.as_str(), r);
        // Every action starts an episode with the document and the range; built once, each action
        // adds its kind (and the fix its diagnostics).
        let mut base = serde_json::Map::new();
        base.insert("uri".into(), Value::String(text_document.uri.into()));
        base.insert("range".into(), json!(r));
        let mk = |title: &str, kind: CodeActionKind, task: &str, extra: Option<(&str, Value)>| {
            let mut args = base.clone();
            args.insert("kind".into(), Value::String(task.into()));
            if let Some((k, v)) = extra {
                args.insert(k.into(), v);
            }
            CodeAction {
                title: title.into(),
                kind: Some(kind),
                command: Some(Command { title: title.into(), command: "keel.episode.start".into(), arguments: Some(vec![Value::Object(args)]) }),
                ..Default::default()
            }
        };
        let diags: Vec<Diagnostic> = context.diagnostics.into_iter().filter(|d| d.source.as_deref() != Some("keel")).collect();
        if !diags.is_empty() {
            let mut a = mk("Keel: fix this diagnostic", CodeActionKind::QUICKFIX, "fix_diagnostic", Some(("diagnostics", json!(diags))));
            a.diagnostics = Some(diags);
            a.is_preferred = Some(false);
            out.push(CodeActionOrCommand::CodeAction(a));
        }
        out.push(CodeActionOrCommand::CodeAction(mk("Keel: implement", CodeActionKind::REFACTOR, "implement", None)));
        if r.start != r.end {
            out.push(CodeActionOrCommand::CodeAction(mk("Keel: refactor selection", CodeActionKind::REFACTOR, "refactor", None)));
        }
        out.push(CodeActionOrCommand::CodeAction(mk("Keel: write a test", CodeActionKind::REFACTOR, "write_test", None)));
        out.push(CodeActionOrCommand::CodeAction(mk("Keel: ask…", CodeActionKind::REFACTOR, "instruction", None)));
        Ok(Some(out))
    }

    async fn code_action_resolve(&self, action: CodeAction) -> Result<CodeAction> {
        // An action with a command and no edit is handed back unchanged (see ARCHITECTURE.md).
        Ok(action)
    }

    async fn code_lens(&self, p: CodeLensParams) -> Result<Option<Vec<CodeLens>>> {
        Ok(Some(ui::lenses(&self.state, p.text_document.uri.as_str())))
    }

    async fn execute_command(&self, p: ExecuteCommandParams) -> Result<Option<Value>> {
        let args = p.arguments.into_iter().next().unwrap_or(Value::Null);
        let args = if args.is_object() { args } else { json!({}) };
        let r = match p.command.as_str() {
            "keel.episode.start" => self.start_episode(&args).await,
            "keel.step.accept" => self.accept(&args).await,
            "keel.step.reject" => self.reject(&args, false).await,
            "keel.step.retry" => self.reject(&args, true).await,
            "keel.episode.cancel" => {
                let r = self.cancel(&args).await;
                let id = args.get("episode").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
                self.close_watches(id);
                r
            }
            other => Err(invalid(format!("unknown command `{other}`"))),
        };
        r.map(Some)
    }
}

/// Moves a char range through a change (edits inside it stretch it).
fn shift_range((s, e): (usize, usize), a: &crate::document::Applied) -> (usize, usize) {
    let delta = a.new_end_char as isize - a.old_end_char as isize;
    let mv = |x: usize| -> usize {
        if x >= a.old_end_char {
            (x as isize + delta).max(0) as usize
        } else if x > a.start_char {
            a.start_char.max(x.min(a.new_end_char))
        } else {
            x
        }
    };
    let (ns, ne) = (mv(s), mv(e));
    (ns.min(ne), ne.max(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_lsp::jsonrpc::{Id, Request, Response};
    use tower_service::Service;

    /// A service whose handler panics on `boom` (in the future, as tower-lsp's handlers run) and on
    /// `boom/now` (in `call` itself).
    struct Panicky;

    impl Service<Request> for Panicky {
        type Response = Option<Response>;
        type Error = std::convert::Infallible;
        type Future = futures::future::BoxFuture<'static, std::result::Result<Option<Response>, std::convert::Infallible>>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<std::result::Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request) -> Self::Future {
            if req.method() == "boom/now" {
                panic!("boom in call");
            }
            Box::pin(async move {
                if req.method() == "boom" {
                    panic!("boom in the handler");
                }
                Ok(req.id().cloned().map(|id| Response::from_ok(id, serde_json::json!("fine"))))
            })
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_an_internal_error_and_the_service_goes_on() {
        let mut s = CatchPanic(Panicky);
        for method in ["boom", "boom/now"] {
            let r = s.call(Request::build(method).id(7).finish()).await.unwrap().unwrap();
            assert_eq!((r.id(), r.error().map(|e| e.code)), (&Id::Number(7), Some(ErrorCode::InternalError)), "{method}");
            // A notification that panics is dropped.
            assert!(s.call(Request::build(method).finish()).await.unwrap().is_none());
        }
        let r = s.call(Request::build("fine").id(8).finish()).await.unwrap().unwrap();
        assert_eq!(r.result(), Some(&serde_json::json!("fine")));
    }
}
