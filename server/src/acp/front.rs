//! How an episode looks over ACP: `session/update` notifications (agent messages, a thought while
//! the model works, tool calls for reads and proposals) and a `session/request_permission` per
//! proposal, whose answer is recorded exactly as the LSP commands record theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use keel_trajectory::action::{Action, workspace_path};
use keel_trajectory::{Decision, Observation, Parsed, RejectCause, Step};
use serde_json::{Value, json};
use uuid::Uuid;

use super::rpc::Peer;
use super::{ClientCaps, Conn};
use crate::decisions;
use crate::episode::{Front, Shown};
use crate::state::{PendingKind, State, UserDecision, lock};

/// Permission option ids (ACP leaves them to the agent).
pub const ALLOW: &str = "allow";
pub const REJECT: &str = "reject";
pub const ANOTHER: &str = "another";

/// The most text of a tool's output shown in a tool call (the model gets its own bounded copy).
const SHOWN_OUTPUT_BYTES: usize = 16 * 1024;

/// One prompt's episode, as an ACP session shows it.
pub struct AcpFront {
    state: State,
    peer: Arc<Peer>,
    caps: ClientCaps,
    session: String,
    root: PathBuf,
    overlay: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl AcpFront {
    pub fn new(conn: &Conn, session: &str, root: PathBuf, overlay: Arc<Mutex<HashMap<PathBuf, String>>>) -> AcpFront {
        AcpFront { state: conn.state.clone(), peer: conn.peer.clone(), caps: *lock(&conn.caps), session: session.to_string(), root, overlay }
    }

    fn update(&self, update: Value) {
        self.peer.notify("session/update", json!({"sessionId": self.session, "update": update}));
    }

    /// An agent message (text the user reads in the thread).
    pub fn message(&self, text: &str) {
        self.update(json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": format!("{text}\n")}}));
    }

    fn tool_update(&self, step: Uuid, status: &str, text: Option<&str>) {
        let mut u = json!({"sessionUpdate": "tool_call_update", "toolCallId": step.to_string(), "status": status});
        if let Some(t) = text {
            u["content"] = json!([text_content(t)]);
        }
        self.update(u);
    }

    fn abs(&self, path: &str) -> Option<PathBuf> {
        let rel = keel_agent::normalize_path(path, self.root.to_str()).ok()?;
        workspace_path(&self.root, &rel).ok()
    }

    /// The text of a file inside the root as the editor has it: through `fs/read_text_file` when
    /// the client offers it, else `None` (the disk is read by the agent's workspace).
    async fn client_text(&self, abs: &Path) -> Result<Option<String>, String> {
        if !self.caps.read_text_file {
            return Ok(None);
        }
        let r = self.peer.request("fs/read_text_file", json!({"sessionId": self.session, "path": abs})).await;
        match r {
            Ok(v) => Ok(v.get("content").and_then(Value::as_str).map(str::to_string)),
            Err(e) => Err(format!("the editor could not read {}: {}", abs.display(), e.message)),
        }
    }

    fn sandbox(&self) -> Option<keel_agent::SandboxSpec> {
        let cfg = self.state.config();
        cfg.sandbox.map(|socket| keel_agent::SandboxSpec { socket, image: cfg.sandbox_image.clone() })
    }

    fn editor_workspace(&self) -> keel_agent::EditorWorkspace {
        let open: Vec<(PathBuf, String)> = lock(&self.overlay).iter().map(|(p, t)| (p.clone(), t.clone())).collect();
        keel_agent::EditorWorkspace::new(&self.root, open).with_sandbox(self.sandbox())
    }
}

fn text_content(text: &str) -> Value {
    let mut t = text.to_string();
    if t.len() > SHOWN_OUTPUT_BYTES {
        let mut cut = SHOWN_OUTPUT_BYTES;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push_str("\n…");
    }
    json!({"type": "content", "content": {"type": "text", "text": t}})
}

/// The ACP tool kind and title of a step.
fn describe(parsed: &Parsed) -> (&'static str, String) {
    match parsed.action() {
        Some(Action::ViewFile { path, start_line, end_line }) => {
            let lines = match (start_line, end_line) {
                (Some(a), Some(b)) => format!(" (lines {a}-{b})"),
                (Some(a), None) => format!(" (from line {a})"),
                _ => String::new(),
            };
            ("read", format!("Read {path}{lines}"))
        }
        Some(Action::Search { pattern, path }) => ("search", format!("Search `{pattern}`{}", path.as_ref().map(|p| format!(" in {p}")).unwrap_or_default())),
        Some(Action::Edit { path, .. }) => ("edit", format!("Edit {path}")),
        Some(Action::Run { command }) => ("execute", format!("Run `{command}`")),
        Some(Action::Finish { .. }) => ("other", "Finish".to_string()),
        None => ("other", "Invalid tool call".to_string()),
    }
}

#[tower_lsp::async_trait]
impl Front for AcpFront {
    async fn status(&self, _episode: Uuid, state: &str, message: &str, _model: &str, _version: Option<&str>, _step: Option<Uuid>) {
        if state == "finished" {
            self.message(message);
        }
    }

    async fn error(&self, message: &str) {
        tracing::warn!("{message}");
        self.message(&format!("Keel: {message}"));
    }

    async fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        self.message(&format!("Keel: {message}"));
    }

    async fn thinking(&self, on: bool) {
        if on {
            self.update(json!({"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "Keel is asking the model…\n"}}));
        }
    }

    async fn workspace(&self, _root: &Path, parsed: &Parsed) -> keel_agent::EditorWorkspace {
        // The file a read or an edit is about, as the editor has it (an unsaved buffer wins).
        let path = match parsed.action() {
            Some(Action::ViewFile { path, .. } | Action::Edit { path, .. }) => Some(path.clone()),
            _ => None,
        };
        if let Some(abs) = path.and_then(|p| self.abs(&p)) {
            // Only an existing regular file is asked for: a new file is empty, and the agent's own
            // checks (directories, links) come first.
            let a = abs.clone();
            let regular = tokio::task::spawn_blocking(move || std::fs::symlink_metadata(&a).is_ok_and(|m| m.is_file())).await.unwrap_or(false);
            // `abs` is inside the root: `workspace_path` checked it, links followed.
            if regular {
                match self.client_text(&abs).await {
                    Ok(Some(t)) => {
                        lock(&self.overlay).insert(abs, t);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{e}; reading the disk"),
                }
            }
        }
        self.editor_workspace()
    }

    async fn step_done(&self, step: &Step, observation: &Observation, rejected: bool) {
        let (kind, title) = describe(&step.parsed);
        let mut call = json!({
            "sessionUpdate": "tool_call", "toolCallId": step.id.to_string(), "title": title, "kind": kind,
            "status": if rejected { "failed" } else { "completed" },
            "content": [text_content(&observation.output)],
        });
        if let Some(a) = step.parsed.action() {
            call["rawInput"] = a.arguments();
            if let Some(p) = a.path().and_then(|p| self.abs(p)) {
                call["locations"] = json!([{"path": p}]);
            }
        }
        self.update(call);
    }

    async fn proposed(&self, shown: &Shown) {
        let found = {
            let inner = lock(&self.state.inner);
            inner.pending.iter().find(|p| p.step.id == shown.step).map(|p| (p.kind.clone(), p.original.clone(), p.proposed.clone(), p.step.parsed.clone(), p.episode))
        };
        let Some((kind, original, proposed, parsed, episode)) = found else { return };
        let (tool_kind, title) = describe(&parsed);
        let (content, locations) = match &kind {
            PendingKind::Edit { path, .. } => (
                json!([{"type": "diff", "path": path, "oldText": original, "newText": proposed.unwrap_or_default()}]),
                json!([{"path": path}]),
            ),
            PendingKind::Run { command } => (json!([text_content(&format!("```sh\n{command}\n```\nIt runs in Keel's sandbox (a container), never on this machine."))]), json!([])),
        };
        let mut call = json!({
            "toolCallId": shown.step.to_string(), "title": title, "kind": tool_kind, "status": "pending",
            "content": content, "locations": locations,
        });
        if let Some(a) = parsed.action() {
            call["rawInput"] = a.arguments();
        }
        let mut announce = call.clone();
        announce["sessionUpdate"] = json!("tool_call");
        self.update(announce);
        let options = json!([
            {"optionId": ALLOW, "name": "Allow", "kind": "allow_once"},
            {"optionId": REJECT, "name": "Reject", "kind": "reject_once"},
            {"optionId": ANOTHER, "name": "Another (ask for a different proposal)", "kind": "reject_once"},
        ]);
        let me = AcpFront { state: self.state.clone(), peer: self.peer.clone(), caps: self.caps, session: self.session.clone(), root: self.root.clone(), overlay: self.overlay.clone() };
        let step = shown.step;
        let params = json!({"sessionId": self.session, "toolCall": call, "options": options});
        // The answer comes in its own task: the episode waits on the pending step's channel (and on
        // a cancel) meanwhile.
        tokio::spawn(async move {
            let answer = me.peer.request("session/request_permission", params).await;
            me.answered(episode, step, answer).await;
        });
    }

    async fn withdrawn(&self, _shown: &Shown) {}
}

/// What a permission answer chose.
#[derive(Debug, PartialEq)]
pub enum Choice {
    Allow,
    Reject(Option<String>),
    Another,
    /// The prompt turn was cancelled (or the client could not ask).
    Cancelled,
}

/// Reads a `session/request_permission` result. A reason for a rejection may come in the result's
/// `_meta` (`{"keel": {"reason": "..."}}` or `{"reason": "..."}`): ACP's options carry no text.
pub fn choice(result: &Value) -> Choice {
    let outcome = &result["outcome"];
    if outcome["outcome"].as_str() != Some("selected") {
        return Choice::Cancelled;
    }
    let meta = &result["_meta"];
    let reason = meta["keel"]["reason"].as_str().or_else(|| meta["reason"].as_str()).map(str::to_string);
    match outcome["optionId"].as_str() {
        Some(ALLOW) => Choice::Allow,
        Some(ANOTHER) => Choice::Another,
        // An option we did not offer is not consent.
        _ => Choice::Reject(reason),
    }
}

impl AcpFront {
    fn cancel_episode(&self, episode: Uuid) {
        if let Some(h) = lock(&self.state.inner).episodes.get(&episode) {
            let _ = h.cancel.send(true);
        }
    }

    async fn answered(&self, episode: Uuid, step: Uuid, answer: Result<Value, super::rpc::RpcError>) {
        let choice = match answer {
            Ok(v) => choice(&v),
            Err(e) => {
                tracing::warn!("the permission request for step {step} failed: {e}; the episode stops");
                Choice::Cancelled
            }
        };
        // Cancelled: the episode's own cancel path takes the pending step out and records it as
        // superseded; taking it here would race with that.
        if choice == Choice::Cancelled {
            self.cancel_episode(episode);
            return;
        }
        let Some(mut p) = self.state.take_pending(step) else { return };
        match choice {
            Choice::Reject(reason) => {
                decisions::rejected(&self.state, &mut p, reason.clone(), false);
                self.tool_update(step, "failed", Some(&format!("Rejected{}", reason.map(|r| format!(": {r}")).unwrap_or_default())));
            }
            Choice::Another => {
                decisions::rejected(&self.state, &mut p, None, true);
                self.tool_update(step, "failed", Some("Rejected: Keel proposes another"));
            }
            Choice::Allow => match p.kind.clone() {
                PendingKind::Edit { path, rel, old_text, new_text, .. } => match self.apply(&path, &old_text, &new_text).await {
                    Ok(()) => {
                        decisions::accepted(&self.state, &mut p, keel_agent::tools::edit_applied(&rel));
                        self.tool_update(step, "completed", None);
                    }
                    Err(NotApplied { cause, reason, told }) => {
                        decisions::not_carried_out(&self.state, &mut p, cause, reason.clone(), RejectCause::NotApplied, told);
                        self.message(&format!("Keel: {reason}"));
                        self.tool_update(step, "failed", Some(&reason));
                    }
                },
                PendingKind::Run { command } => {
                    if self.state.config().sandbox.is_none() {
                        let msg = decisions::run_without_sandbox(&self.state, &mut p, &command);
                        self.message(&format!("Keel: {msg}"));
                        self.tool_update(step, "failed", Some(&msg));
                        return;
                    }
                    self.state.decide(step, Decision::Accepted);
                    self.tool_update(step, "in_progress", None);
                    let obs = decisions::run_in_sandbox(Some(self.editor_workspace()), command).await;
                    let ok = obs.exit_code == Some(0);
                    self.tool_update(step, if ok { "completed" } else { "failed" }, Some(&obs.output));
                    if let Some(tx) = p.tx.take() {
                        let _ = tx.send(UserDecision::Accepted(obs));
                    }
                }
            },
            Choice::Cancelled => unreachable!("handled above"),
        }
    }

    /// Applies an accepted edit to the file as it is now: read through the client (else the
    /// disk), located again, written through the client (else to the disk, inside the root).
    async fn apply(&self, path: &Path, old_text: &str, new_text: &str) -> Result<(), NotApplied> {
        let not_applied = |reason: String| NotApplied { cause: RejectCause::NotApplied, told: format!("the editor did not apply it: {reason}"), reason };
        // The file may have left the root (a directory replaced by a link out) since it was proposed.
        if let Err(msg) = crate::files::check_inside_root(self.root.clone(), path.to_path_buf()).await {
            return Err(NotApplied { cause: RejectCause::OutsideWorkspace, reason: msg.clone(), told: msg });
        }
        let exists = {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || p.exists()).await.unwrap_or(false)
        };
        let text = match (exists, self.client_text(path).await) {
            (true, Ok(Some(t))) => t,
            (true, Err(e)) => return Err(not_applied(e)),
            _ => crate::files::read_text(path.to_path_buf()).await.map_err(not_applied)?.unwrap_or_default(),
        };
        let content = decisions::apply_edit(&text, old_text, new_text).map_err(|(cause, e)| NotApplied { cause, reason: format!("the edit no longer applies: {e}"), told: e })?;
        if self.caps.write_text_file {
            self.peer
                .request("fs/write_text_file", json!({"sessionId": self.session, "path": path, "content": content}))
                .await
                .map_err(|e| not_applied(format!("the editor could not write {}: {}", path.display(), e.message)))?;
        } else {
            crate::files::write_text(self.root.clone(), path.to_path_buf(), content.clone()).await.map_err(not_applied)?;
        }
        lock(&self.overlay).insert(path.to_path_buf(), content);
        Ok(())
    }
}

/// An accepted edit that could not be carried out: recorded as `cause` with `reason`; the model is
/// told `told`.
struct NotApplied {
    cause: RejectCause,
    reason: String,
    told: String,
}

/// Store failures over ACP: logged, and told in every session as an agent message.
pub struct AcpReport {
    pub conn: Weak<Conn>,
}

impl AcpReport {
    fn tell(&self, text: &str) {
        let Some(conn) = self.conn.upgrade() else { return };
        let sessions: Vec<String> = lock(&conn.sessions).keys().cloned().collect();
        for s in sessions {
            conn.peer.notify("session/update", json!({"sessionId": s, "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": format!("Keel: {text}\n")}}}));
        }
    }
}

#[tower_lsp::async_trait]
impl crate::recorder::Report for AcpReport {
    async fn failing(&self, why: &str, message: &str) {
        tracing::error!("{message} ({why})");
        self.tell(message);
    }

    async fn recovered(&self, message: &str) {
        tracing::info!("{message}");
        self.tell(message);
    }

    async fn notice(&self, message: &str) {
        tracing::warn!("{message}");
        self.tell(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_answers() {
        assert_eq!(choice(&json!({"outcome": {"outcome": "selected", "optionId": "allow"}})), Choice::Allow);
        assert_eq!(choice(&json!({"outcome": {"outcome": "selected", "optionId": "another"}})), Choice::Another);
        assert_eq!(choice(&json!({"outcome": {"outcome": "selected", "optionId": "reject"}})), Choice::Reject(None));
        assert_eq!(
            choice(&json!({"outcome": {"outcome": "selected", "optionId": "reject"}, "_meta": {"keel": {"reason": "use +"}}})),
            Choice::Reject(Some("use +".into()))
        );
        assert_eq!(choice(&json!({"outcome": {"outcome": "selected", "optionId": "reject"}, "_meta": {"reason": "no"}})), Choice::Reject(Some("no".into())));
        assert_eq!(choice(&json!({"outcome": {"outcome": "selected", "optionId": "allow_always"}})), Choice::Reject(None));
        assert_eq!(choice(&json!({"outcome": {"outcome": "cancelled"}})), Choice::Cancelled);
        assert_eq!(choice(&json!({})), Choice::Cancelled);
    }

    #[test]
    fn long_output_is_cut_at_a_char_boundary() {
        let t = "é".repeat(SHOWN_OUTPUT_BYTES);
        let c = text_content(&t);
        let s = c["content"]["text"].as_str().unwrap();
        assert!(s.len() <= SHOWN_OUTPUT_BYTES + 4 && s.ends_with('…'));
    }
}
