//! What the user sees of an episode: `keel/status`, code lenses and hint diagnostics for pending
//! steps, messages, and `$/progress`.

use serde_json::{Value, json};
use tower_lsp::Client;
use tower_lsp::lsp_types::notification::Notification;
use tower_lsp::lsp_types::*;
use uuid::Uuid;

use crate::document::{self, Pos};
use crate::state::{Pending, State, lock};

pub enum KeelStatus {}

impl Notification for KeelStatus {
    type Params = Value;
    const METHOD: &'static str = "keel/status";
}

pub async fn status(client: &Client, episode: Option<Uuid>, state: &str, message: &str, model: Option<&str>, version: Option<&str>, step: Option<Uuid>) {
    client
        .send_notification::<KeelStatus>(json!({
            "episode": episode, "state": state, "message": message,
            "model": model, "model_version": version, "step": step,
        }))
        .await;
}

/// Whether steps reach the store: `failing` while they cannot be written (state
/// `recording_failed`), `None` once they are written again (state `recording`).
pub async fn recording_status(client: &Client, failing: Option<&str>, message: &str) {
    let (state, recording) = if failing.is_some() { ("recording_failed", "failing") } else { ("recording", "ok") };
    client
        .send_notification::<KeelStatus>(json!({
            "episode": null, "state": state, "message": message, "recording": recording, "error": failing,
        }))
        .await;
}

pub async fn error(client: &Client, message: &str) {
    tracing::warn!("{message}");
    client.show_message(MessageType::ERROR, format!("Keel: {message}")).await;
}

pub fn lsp_pos(p: Pos) -> Position {
    Position { line: p.line, character: p.character }
}

pub fn keel_pos(p: Position) -> Pos {
    Pos { line: p.line, character: p.character }
}

/// Lenses for the pending steps of one document.
pub fn lenses(state: &State, uri: &str) -> Vec<CodeLens> {
    let inner = lock(&state.inner);
    let mut out = Vec::new();
    for p in inner.pending.iter().filter(|p| p.uri == uri) {
        let range = range_in(state, &inner, p);
        let arg = json!({ "step": p.step.id });
        for (label, cmd) in [("Keel: Accept", "keel.step.accept"), ("Keel: Reject", "keel.step.reject"), ("Keel: Another", "keel.step.retry")] {
            let title = if cmd == "keel.step.accept" { format!("{label} — {}", p.title) } else { label.to_string() };
            out.push(CodeLens {
                range: Range { start: range.start, end: range.start },
                command: Some(Command { title, command: cmd.into(), arguments: Some(vec![arg.clone()]) }),
                data: None,
            });
        }
    }
    out
}

fn range_in(state: &State, inner: &crate::state::Inner, p: &Pending) -> Range {
    match inner.docs.get(&p.uri) {
        Some(e) => Range { start: lsp_pos(e.doc.position(p.range_chars.0)), end: lsp_pos(e.doc.position(p.range_chars.1)) },
        None => {
            let rope = ropey::Rope::from_str(p.original.as_deref().unwrap_or(""));
            let enc = state.encoding();
            Range {
                start: lsp_pos(document::position(&rope, enc, p.range_chars.0)),
                end: lsp_pos(document::position(&rope, enc, p.range_chars.1)),
            }
        }
    }
}

/// Code actions at a pending step's range (accept, reject, another).
pub fn step_actions(state: &State, uri: &str, range: Range) -> Vec<CodeActionOrCommand> {
    let inner = lock(&state.inner);
    let mut out = Vec::new();
    for p in inner.pending.iter().filter(|p| p.uri == uri) {
        let r = range_in(state, &inner, p);
        let touches = !(r.end.line < range.start.line || r.start.line > range.end.line);
        if !touches {
            continue;
        }
        let arg = json!({ "step": p.step.id });
        for (title, cmd) in [("Keel: accept", "keel.step.accept"), ("Keel: reject", "keel.step.reject"), ("Keel: another", "keel.step.retry")] {
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("{title} ({})", p.title),
                kind: Some(CodeActionKind::QUICKFIX),
                command: Some(Command { title: title.into(), command: cmd.into(), arguments: Some(vec![arg.clone()]) }),
                ..Default::default()
            }));
        }
    }
    out
}

/// Republishes the hint diagnostics of a document's pending steps and refreshes lenses.
pub async fn refresh(client: &Client, state: &State, uri: &str) {
    let diags: Vec<Diagnostic> = {
        let inner = lock(&state.inner);
        inner
            .pending
            .iter()
            .filter(|p| p.uri == uri)
            .map(|p| Diagnostic {
                range: range_in(state, &inner, p),
                severity: Some(DiagnosticSeverity::HINT),
                source: Some("keel".into()),
                message: format!("Keel proposes: {} (accept, reject or ask for another)", p.title),
                data: Some(json!({ "step": p.step.id })),
                ..Default::default()
            })
            .collect()
    };
    if let Ok(u) = Url::parse(uri) {
        client.publish_diagnostics(u, diags, None).await;
    }
    if *lock(&state.lens_refresh) {
        // Not awaited inline by handlers that hold anything; failures only mean an older client.
        let _ = client.code_lens_refresh().await;
    }
}

/// `$/progress` for a model call, when the client supports it.
pub struct Progress {
    token: Option<NumberOrString>,
}

impl Progress {
    pub async fn begin(client: &Client, state: &State, title: &str) -> Progress {
        if !*lock(&state.work_done_progress) {
            return Progress { token: None };
        }
        let token = NumberOrString::String(format!("keel-{}", Uuid::now_v7()));
        let created = client
            .send_request::<request::WorkDoneProgressCreate>(WorkDoneProgressCreateParams { token: token.clone() })
            .await
            .is_ok();
        if !created {
            return Progress { token: None };
        }
        client
            .send_notification::<notification::Progress>(ProgressParams {
                token: token.clone(),
                value: ProgressParamsValue::WorkDone(WorkDoneProgress::Begin(WorkDoneProgressBegin {
                    title: title.into(),
                    cancellable: Some(false),
                    message: Some("waiting for the model".into()),
                    percentage: None,
                })),
            })
            .await;
        Progress { token: Some(token) }
    }

    pub async fn end(self, client: &Client, message: &str) {
        if let Some(token) = self.token {
            client
                .send_notification::<notification::Progress>(ProgressParams {
                    token,
                    value: ProgressParamsValue::WorkDone(WorkDoneProgress::End(WorkDoneProgressEnd { message: Some(message.into()) })),
                })
                .await;
        }
    }
}
