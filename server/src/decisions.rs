//! The user's answers to a pending step, with one meaning whichever front end carried them (an LSP
//! command, an ACP permission answer): each is recorded the moment it is made, then handed to the
//! episode through the step's channel.

use keel_trajectory::{Decision, Observation, RejectCause};

use crate::state::{Pending, Shared, UserDecision};

fn send(p: &mut Pending, d: UserDecision) {
    if let Some(tx) = p.tx.take() {
        let _ = tx.send(d);
    }
}

/// Accepted and carried out: the observation goes back to the model.
pub fn accepted(state: &Shared, p: &mut Pending, observation: Observation) {
    state.decide(p.step.id, Decision::Accepted);
    send(p, UserDecision::Accepted(observation));
}

/// Accepted in part: the user kept `kept` of the edit's `of` hunks, so the text that replaced the
/// edit's `old_text` is `final_text` — recorded as `edited`, the user's text over the model's.
pub fn accepted_in_part(state: &Shared, p: &mut Pending, rel: &str, final_text: String, kept: usize, of: usize) {
    let output = format!("The user applied {kept} of the {of} hunks of the edit to {rel} and rejected the others; the text that replaced old_text is:\n{final_text}");
    // In a CRLF file the text has the file's line ends; the record pairs it with the model's text.
    let model_crlf = matches!(p.step.parsed.action(), Some(keel_trajectory::Action::Edit { new_text, .. }) if new_text.contains('\r'));
    let final_text = if model_crlf { final_text } else { final_text.replace("\r\n", "\n") };
    state.decide(p.step.id, Decision::Edited { final_text });
    send(p, UserDecision::Accepted(Observation { output, exit_code: Some(0), ..Default::default() }));
}

/// Rejected by the user (`retry`: "another", a sibling is sampled at the same state).
pub fn rejected(state: &Shared, p: &mut Pending, reason: Option<String>, retry: bool) {
    let reason = reason.filter(|r| !r.trim().is_empty());
    let cause = if retry { RejectCause::Retry } else { RejectCause::User };
    state.decide(p.step.id, Decision::Rejected { cause, reason: reason.clone() });
    send(p, if retry { UserDecision::Retry } else { UserDecision::Rejected { reason } });
}

/// Accepted by the user but not carried out (the file left the root, the edit no longer applies,
/// the editor refused it, no sandbox): recorded as `cause` with `reason`; the model is told
/// `told` with `told_cause`.
pub fn not_carried_out(state: &Shared, p: &mut Pending, cause: RejectCause, reason: String, told_cause: RejectCause, told: String) {
    state.decide(p.step.id, Decision::Rejected { cause, reason: Some(reason) });
    send(p, UserDecision::AutoRejected { cause: told_cause, message: told });
}

/// An accepted `run` with no sandbox configured: declined, never run here. Returns the message
/// the user is shown.
pub fn run_without_sandbox(state: &Shared, p: &mut Pending, command: &str) -> String {
    let msg = format!("`{command}` was not run: no sandbox is configured, and Keel never runs commands on your machine");
    not_carried_out(state, p, RejectCause::NoSandbox, msg.clone(), RejectCause::NoSandbox, msg.clone());
    msg
}

/// Runs an accepted command in a container made from the workspace at `root` as `ws` shows it
/// (open buffers included), never here.
pub async fn run_in_sandbox(ws: Option<keel_agent::EditorWorkspace>, command: String) -> Observation {
    match ws {
        Some(ws) => tokio::task::spawn_blocking(move || keel_agent::Workspace::run(&ws, &command))
            .await
            .unwrap_or_else(|e| Observation { output: format!("sandbox error: {e}"), exit_code: None, ..Default::default() }),
        None => Observation { output: "no workspace root to copy into the sandbox".into(), exit_code: Some(1), ..Default::default() },
    }
}

/// Whether a `run` observation is the sandbox failing (the user is told) rather than the command.
pub fn sandbox_failed(obs: &Observation) -> bool {
    obs.exit_code.is_none() || obs.output.starts_with("sandbox error")
}

/// The text of `path` with an accepted edit applied, located again in `text` as it is now (the
/// user may have typed since it was proposed). `Err((recorded cause, message))`.
pub fn apply_edit(text: &str, old_text: &str, new_text: &str) -> Result<String, (RejectCause, String)> {
    let e = keel_trajectory::action::locate_edit(text, old_text, new_text).map_err(|e| (e.cause(), e.to_string()))?;
    Ok(format!("{}{}{}", &text[..e.start], e.new_text, &text[e.end..]))
}
