//! The step loop's rules, once for every driver: what a model's answer is worth at a state (an
//! automatic rejection, a read carried out at once, a proposal for the user, the end), how the
//! state moves on, and when an action is a loop.
//!
//! **Loops.** An action is a loop when it is the same action (tool and arguments) as an earlier
//! step of the episode *at the same workspace state*: no edit has been applied since. Reading a
//! file again after an accepted edit, or running the tests again after a fix, is therefore not a
//! loop; the same read or the same command twice with nothing changed in between is. `finish` is
//! never a loop.
//!
//! **Automatic rejections** (invalid tool calls, unknown tools, loops, paths outside the workspace,
//! edits that cannot be located or change nothing) are sampled again at the same state up to
//! [`AUTO_RESAMPLES`] times, so the rejected step and a valid sibling make a pair; after that the
//! model is shown the error and the state moves on.

use std::collections::HashSet;

use keel_trajectory::action::next_messages;
use keel_trajectory::{Action, Decision, ModelOutput, Observation, Parsed, Prompt, RejectCause, Role};

use crate::tools::{self, PreparedEdit};
use crate::workspace::{Workspace, normalize_path};

/// Automatic rejections answered by sampling again at the same state before the model is shown
/// the error.
pub const AUTO_RESAMPLES: u32 = 2;

/// The actions done since the workspace last changed.
#[derive(Debug, Clone, Default)]
pub struct LoopGuard {
    seen: HashSet<String>,
}

impl LoopGuard {
    fn key(a: &Action) -> String {
        format!("{}:{}", a.tool_name(), a.arguments_json())
    }
    /// Notes `a`; `true` when it was already done at this workspace state.
    pub fn repeat(&mut self, a: &Action) -> bool {
        !matches!(a, Action::Finish { .. }) && !self.seen.insert(Self::key(a))
    }
    /// The workspace changed (an edit was applied): earlier actions may mean something new.
    pub fn changed(&mut self) {
        self.seen.clear();
    }
}

/// What an answer is, at the current state.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Rejected automatically.
    Rejected { cause: RejectCause, message: String },
    /// A read (`view_file`, `search`), carried out at once (decision `auto`).
    Observed(Observation),
    /// An edit located in the file as it is now (`path` normalised); it waits for the user.
    Edit { path: String, prepared: PreparedEdit },
    /// A command; it waits for the user, then runs in the sandbox.
    Run { command: String },
    Finish { summary: String },
}

/// After an automatic rejection.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterRejection {
    /// Sample again at the same state (a sibling).
    Resample,
    /// The state moved on, showing the model this.
    Advanced(Observation),
}

/// What one step came to when nobody reviews it (search rollouts, evaluation): every proposal is
/// carried out.
#[derive(Debug, Clone)]
pub struct Unattended {
    pub parsed: Parsed,
    /// `auto` for reads and `finish`, `unreviewed` for carried-out proposals (nobody accepted
    /// them), or the automatic rejection.
    pub decision: Decision,
    pub observation: Option<Observation>,
    /// The state moved on (`false`: the next sample is at the same state, or the episode ended).
    pub advanced: bool,
    pub finished: bool,
}

/// One episode's agent: its state (the messages the model sees) and the loop rules' memory.
#[derive(Debug, Clone)]
pub struct Agent {
    prompt: Prompt,
    same_state: u32,
    loops: LoopGuard,
    /// Observations of reads are cut at this many bytes.
    pub cap: usize,
}

/// The id of the call the next assistant turn adds to this state: the number of the turn, whatever
/// id the answer carried (none, when the call was JSON in the content), so equal steps make equal
/// states in every episode, from every model and endpoint, and the editor and a rebuild agree.
pub fn turn_call_id(prompt: &Prompt) -> String {
    format!("call_{}", prompt.messages.iter().filter(|m| m.role == Role::Assistant).count() + 1)
}

impl Agent {
    pub fn new(prompt: Prompt, cap: usize) -> Agent {
        Agent { prompt, same_state: 0, loops: LoopGuard::default(), cap }
    }

    /// The state: what the model is asked at next.
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// Judges an answer at the current state, carrying out reads at once. Notes the action for the
    /// loop rule.
    pub fn judge(&mut self, parsed: &Parsed, ws: &dyn Workspace) -> Verdict {
        let action = match parsed {
            Parsed::Error { error } => return Verdict::Rejected { cause: error.cause(), message: error.message.clone() },
            Parsed::Action { action, .. } => action,
        };
        if self.loops.repeat(action) {
            return Verdict::Rejected { cause: RejectCause::Loop, message: "the same action as an earlier step".into() };
        }
        let path = match action.path() {
            Some(p) => match normalize_path(p, ws.root_hint()).map_err(|e| e.to_string()).and_then(|rel| ws.check(&rel)) {
                Ok(rel) => Some(rel),
                Err(message) => return Verdict::Rejected { cause: RejectCause::OutsideWorkspace, message },
            },
            None => None,
        };
        let path = path.unwrap_or_default();
        match action {
            Action::ViewFile { start_line, end_line, .. } => Verdict::Observed(tools::view_file(ws, &path, *start_line, *end_line, self.cap)),
            Action::Search { pattern, .. } => Verdict::Observed(tools::search(ws, pattern, &path, self.cap)),
            Action::Edit { old_text, new_text, .. } => match tools::prepare_edit(ws, &path, old_text, new_text) {
                Ok(prepared) => Verdict::Edit { path, prepared },
                Err((cause, message)) => Verdict::Rejected { cause, message },
            },
            Action::Run { command } => Verdict::Run { command: command.clone() },
            Action::Finish { summary } => Verdict::Finish { summary: summary.clone() },
        }
    }

    /// The state moves on: the step's call and its (redacted) observation join the messages.
    pub fn advance(&mut self, parsed: &Parsed, output: &ModelOutput, observation: &Observation) {
        let mut obs = observation.clone();
        keel_trajectory::redact::redact_in_place(&mut obs.output);
        let id = turn_call_id(&self.prompt);
        self.prompt = Prompt { messages: next_messages(&self.prompt.messages, parsed, output, &id, &obs), tools: self.prompt.tools.clone() };
        self.same_state = 0;
    }

    /// After an automatic rejection: sample again at this state, or (after [`AUTO_RESAMPLES`]) move
    /// on showing the model the error.
    pub fn rejected(&mut self, parsed: &Parsed, output: &ModelOutput, cause: RejectCause, message: &str) -> AfterRejection {
        if self.same_state < AUTO_RESAMPLES {
            self.same_state += 1;
            return AfterRejection::Resample;
        }
        let obs = tools::rejected(cause, message);
        self.advance(parsed, output, &obs);
        AfterRejection::Advanced(obs)
    }

    /// An edit was applied: the workspace changed.
    pub fn edit_applied(&mut self) {
        self.loops.changed();
    }

    /// One step with nobody to review it: reads and proposals are carried out in `ws` (edits
    /// written, commands run), automatic rejections follow the same rules as in the editor.
    pub fn step_unattended(&mut self, output: &ModelOutput, ws: &dyn Workspace) -> Unattended {
        self.step_reviewed(output, ws, &mut |_| Review::Unreviewed)
    }

    /// One step judged by a reviewer (a simulated user) where the editor would ask the user: an edit
    /// or a command the rules let through is accepted, sent back for another, or rejected with a
    /// reason — recorded as keel-lsp records the user's decision (`accepted`, `rejected`/`retry`,
    /// `rejected`/`user`), and the model is shown what keel-lsp shows it.
    pub fn step_reviewed(&mut self, output: &ModelOutput, ws: &dyn Workspace, review: &mut dyn FnMut(&Action) -> Review) -> Unattended {
        let parsed = keel_trajectory::action::parse_output(output);
        let verdict = self.judge(&parsed, ws);
        let asks = matches!(verdict, Verdict::Edit { .. } | Verdict::Run { .. });
        let accepted = match (asks, parsed.action()) {
            (true, Some(action)) => match review(action) {
                Review::Unreviewed => Decision::Unreviewed,
                Review::Accept => Decision::Accepted,
                Review::Another(reason) => {
                    let decision = Decision::Rejected { cause: RejectCause::Retry, reason };
                    return Unattended { parsed, decision, observation: None, advanced: false, finished: false };
                }
                Review::Reject(reason) => {
                    let obs = tools::user_rejected(reason.as_deref());
                    self.advance(&parsed, output, &obs);
                    let decision = Decision::Rejected { cause: RejectCause::User, reason };
                    return Unattended { parsed, decision, observation: Some(obs), advanced: true, finished: false };
                }
            },
            _ => Decision::Unreviewed,
        };
        let (decision, observation, finished) = match verdict {
            Verdict::Rejected { cause, message } => {
                let decision = Decision::Rejected { cause, reason: Some(message.clone()) };
                return match self.rejected(&parsed, output, cause, &message) {
                    AfterRejection::Resample => Unattended { parsed, decision, observation: None, advanced: false, finished: false },
                    AfterRejection::Advanced(obs) => Unattended { parsed, decision, observation: Some(obs), advanced: true, finished: false },
                };
            }
            Verdict::Observed(obs) => (Decision::Auto, obs, false),
            Verdict::Edit { path, prepared } => match ws.write(&path, &prepared.proposed()) {
                Ok(()) => {
                    self.edit_applied();
                    (accepted, tools::edit_applied(&path), false)
                }
                Err(e) => {
                    let decision = Decision::Rejected { cause: RejectCause::NotApplied, reason: Some(e.clone()) };
                    let obs = tools::rejected(RejectCause::NotApplied, &e);
                    self.advance(&parsed, output, &obs);
                    return Unattended { parsed, decision, observation: Some(obs), advanced: true, finished: false };
                }
            },
            Verdict::Run { command } => (accepted, ws.run(&command), false),
            Verdict::Finish { .. } => (Decision::Auto, Observation::default(), true),
        };
        if finished {
            return Unattended { parsed, decision, observation: None, advanced: false, finished: true };
        }
        self.advance(&parsed, output, &observation);
        Unattended { parsed, decision, observation: Some(observation), advanced: true, finished: false }
    }
}

/// A reviewer's answer to a proposed edit or command ([`Agent::step_reviewed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Nobody reviews it: carried out, recorded `unreviewed`.
    Unreviewed,
    Accept,
    /// "Another": not carried out, a sibling is sampled at the same state.
    Another(Option<String>),
    /// Rejected: the state moves on, the model is told (with the reason).
    Reject(Option<String>),
}

/// How an unattended episode ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Finished,
    /// The step budget ran out.
    Exhausted,
}

/// Runs the agent unattended from its state until it calls `finish` or `max_steps` answers were
/// taken; `sample` answers at a state (its second argument counts the answers so far).
pub fn run_unattended<E>(
    agent: &mut Agent,
    ws: &dyn Workspace,
    max_steps: usize,
    sample: impl FnMut(&Prompt, usize) -> Result<ModelOutput, E>,
    each: impl FnMut(&Prompt, &ModelOutput, &Unattended),
) -> Result<RunEnd, E> {
    run_reviewed(agent, ws, max_steps, sample, &mut |_: &Prompt, _: &Action| Review::Unreviewed, each)
}

/// [`run_unattended`] with a reviewer deciding each edit and command the rules let through (it is
/// given the state it was proposed at).
pub fn run_reviewed<E>(
    agent: &mut Agent,
    ws: &dyn Workspace,
    max_steps: usize,
    mut sample: impl FnMut(&Prompt, usize) -> Result<ModelOutput, E>,
    review: &mut dyn FnMut(&Prompt, &Action) -> Review,
    mut each: impl FnMut(&Prompt, &ModelOutput, &Unattended),
) -> Result<RunEnd, E> {
    for n in 0..max_steps {
        let prompt = agent.prompt().clone();
        let output = sample(&prompt, n)?;
        let u = agent.step_reviewed(&output, ws, &mut |a| review(&prompt, a));
        each(&prompt, &output, &u);
        if u.finished {
            return Ok(RunEnd::Finished);
        }
    }
    Ok(RunEnd::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EditorWorkspace;
    use keel_trajectory::{FunctionCall, Message, ToolCall, state_hash};
    use serde_json::json;

    fn call(a: &Action) -> ModelOutput {
        ModelOutput { content: None, tool_calls: vec![a.to_tool_call("c")] }
    }

    /// A workspace holding `a.py` (`x = 1`), and a first state.
    fn one_file_workspace() -> (tempfile::TempDir, EditorWorkspace, Prompt) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "x = 1\n").unwrap();
        let ws = EditorWorkspace::new(dir.path(), vec![]);
        let prompt = Prompt { messages: vec![Message::system("s"), Message::user("u")], tools: keel_trajectory::action::tools_schema() };
        (dir, ws, prompt)
    }

    #[test]
    fn a_loop_is_the_same_action_at_the_same_workspace_state() {
        let (_dir, ws, prompt) = one_file_workspace();
        let mut agent = Agent::new(prompt, 10_000);
        let view = Action::ViewFile { path: "a.py".into(), start_line: None, end_line: None };
        let run = Action::Run { command: "python3 test.py".into() };
        let p = |a: &Action| Parsed::Action { action: a.clone(), call_id: Some("c".into()) };
        assert!(matches!(agent.judge(&p(&view), &ws), Verdict::Observed(_)));
        assert!(matches!(agent.judge(&p(&run), &ws), Verdict::Run { .. }));
        // Nothing changed: the same read and the same command are loops.
        assert!(matches!(agent.judge(&p(&view), &ws), Verdict::Rejected { cause: RejectCause::Loop, .. }));
        assert!(matches!(agent.judge(&p(&run), &ws), Verdict::Rejected { cause: RejectCause::Loop, .. }));
        // After an applied edit they are not.
        agent.edit_applied();
        assert!(matches!(agent.judge(&p(&view), &ws), Verdict::Observed(_)));
        assert!(matches!(agent.judge(&p(&run), &ws), Verdict::Run { .. }));
        let out = call(&view);
        // Two resamples at the same state, then the state moves on with the error.
        assert_eq!(agent.rejected(&p(&view), &out, RejectCause::Loop, "x"), AfterRejection::Resample);
        assert_eq!(agent.rejected(&p(&view), &out, RejectCause::Loop, "x"), AfterRejection::Resample);
        assert!(matches!(agent.rejected(&p(&view), &out, RejectCause::Loop, "x"), AfterRejection::Advanced(_)));
        assert_eq!(agent.prompt().messages.len(), 4);
        let outside = Action::ViewFile { path: "../x".into(), start_line: None, end_line: None };
        assert!(matches!(agent.judge(&p(&outside), &ws), Verdict::Rejected { cause: RejectCause::OutsideWorkspace, .. }));
    }

    /// The same steps with the same results make the same states, whatever ids the answers' calls
    /// came with (Keel's engine says `call_0`, other endpoints a random id, a demonstration `demo0`,
    /// a call written as JSON in the content none): search puts episodes together by state.
    #[test]
    fn equal_steps_make_equal_states_whatever_the_call_ids() {
        let (_dir, ws, prompt) = one_file_workspace();
        let view = Action::ViewFile { path: "a.py".into(), start_line: None, end_line: None };
        let in_content = ModelOutput { content: Some(json!({"name": "view_file", "arguments": {"path": "a.py"}}).to_string()), tool_calls: vec![] };
        let mut agent = Agent::new(prompt.clone(), 10_000);
        assert!(agent.step_unattended(&in_content, &ws).advanced);
        let after_view = state_hash(agent.prompt());
        let mut after_bad = Vec::new();
        for id in ["call_0", "demo0", "call_9f8e7d"] {
            let mut agent = Agent::new(prompt.clone(), 10_000);
            let u = agent.step_unattended(&ModelOutput { content: None, tool_calls: vec![view.to_tool_call(id)] }, &ws);
            assert!(u.advanced, "{u:?}");
            assert_eq!(state_hash(agent.prompt()), after_view, "{id}: {:?}", agent.prompt().messages);
            // A call whose arguments do not parse, until the state moves on with the error.
            let bad = ModelOutput { content: None, tool_calls: vec![ToolCall { id: format!("{id}b"), kind: "function".into(), function: FunctionCall { name: "edit".into(), arguments: "{\"path\": ".into() } }] };
            while !agent.step_unattended(&bad, &ws).advanced {}
            after_bad.push(state_hash(agent.prompt()));
        }
        assert!(after_bad.windows(2).all(|w| w[0] == w[1]), "{after_bad:?}");
    }

    /// `view_file` and `edit` through a link out of the root, `..`, an absolute path elsewhere, a
    /// look-alike of `..` or `/`, or another case of a link's name: refused with an observation that
    /// says why, and nothing outside is read or changed.
    #[test]
    fn paths_that_leave_the_workspace_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("ws"), dir.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
        std::fs::write(root.join("a.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("file_link")).unwrap();
        let ws = EditorWorkspace::new(&root, vec![]);
        let prompt = Prompt { messages: vec![Message::system("s"), Message::user("u")], tools: keel_trajectory::action::tools_schema() };
        let abs = outside.join("secret.txt").display().to_string();
        let paths = [
            "link/secret.txt",
            "link/new.py",
            "file_link",
            "../outside/secret.txt",
            abs.as_str(),
            "LINK/secret.txt",
            "Link/new.py",
            "..\u{FF0F}outside\u{FF0F}secret.txt",
            "\u{FF0E}\u{FF0E}/outside/secret.txt",
            "\u{2025}/outside/secret.txt",
            "..\\outside\\secret.txt",
        ];
        for path in paths {
            for action in [
                Action::ViewFile { path: path.into(), start_line: None, end_line: None },
                Action::Edit { path: path.into(), old_text: String::new(), new_text: "pwned\n".into() },
                Action::Edit { path: path.into(), old_text: "secret".into(), new_text: "pwned".into() },
            ] {
                let mut agent = Agent::new(prompt.clone(), 10_000);
                let u = agent.step_unattended(&call(&action), &ws);
                let Decision::Rejected { cause: RejectCause::OutsideWorkspace, reason: Some(r) } = &u.decision else {
                    panic!("{action:?} was not refused: {:?} {:?}", u.decision, u.observation);
                };
                assert!(r.contains(path), "{path:?}: {r}");
                // What the model is shown once the resamples are spent.
                let shown = tools::rejected(RejectCause::OutsideWorkspace, r);
                assert!(shown.output.starts_with("refused: `"), "{}", shown.output);
            }
        }
        // A name that differs only by case from an existing file is refused too, and says which.
        let mut agent = Agent::new(prompt.clone(), 10_000);
        let v = agent.judge(&Parsed::Action { action: Action::ViewFile { path: "A.py".into(), start_line: None, end_line: None }, call_id: None }, &ws);
        assert!(matches!(&v, Verdict::Rejected { cause: RejectCause::OutsideWorkspace, message } if message.contains("`a.py`")), "{v:?}");
        // The exact names still work, and nothing outside changed.
        let v = agent.judge(&Parsed::Action { action: Action::ViewFile { path: "a.py".into(), start_line: None, end_line: None }, call_id: None }, &ws);
        assert!(matches!(&v, Verdict::Observed(o) if o.output.contains("x = 1")), "{v:?}");
        assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "secret\n");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }

    /// A path in another Unicode form than the name on disk (NFD `café` from macOS for an NFC
    /// `café`): the tools use the name on disk, so the model reads and edits that file and never
    /// makes a look-alike second one; the same spelling of a link out of the root is refused as
    /// the link is, and a spelling that matches two entries is refused.
    #[test]
    fn a_path_in_another_unicode_form_means_the_file_on_disk_and_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("ws"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("caf\u{e9}")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
        std::fs::write(root.join("caf\u{e9}/na\u{ef}ve.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("r\u{e9}sum\u{e9}")).unwrap();
        // Two names with the same NFC form (different orders of the same marks).
        std::fs::write(root.join("\u{1ead}.py"), "a\n").unwrap();
        std::fs::write(root.join("a\u{323}\u{302}.py"), "b\n").unwrap();
        let ws = EditorWorkspace::new(&root, vec![]);
        let prompt = Prompt { messages: vec![Message::system("s"), Message::user("u")], tools: keel_trajectory::action::tools_schema() };
        let judge = |action: Action| {
            let mut agent = Agent::new(prompt.clone(), 10_000);
            agent.judge(&Parsed::Action { action, call_id: None }, &ws)
        };
        let nfd = "cafe\u{301}/nai\u{308}ve.py";
        let v = judge(Action::ViewFile { path: nfd.into(), start_line: None, end_line: None });
        assert!(matches!(&v, Verdict::Observed(o) if o.output.contains("x = 1")), "{v:?}");
        let v = judge(Action::Edit { path: nfd.into(), old_text: "x = 1".into(), new_text: "x = 2".into() });
        assert!(matches!(&v, Verdict::Edit { path, .. } if path == "caf\u{e9}/na\u{ef}ve.py"), "{v:?}");
        // A new file in an NFD directory goes into the NFC one.
        let v = judge(Action::Edit { path: "cafe\u{301}/new.py".into(), old_text: String::new(), new_text: "y = 1\n".into() });
        assert!(matches!(&v, Verdict::Edit { path, .. } if path == "caf\u{e9}/new.py"), "{v:?}");
        for path in ["re\u{301}sume\u{301}/secret.txt", "re\u{301}sume\u{301}/new.py"] {
            for action in [
                Action::ViewFile { path: path.into(), start_line: None, end_line: None },
                Action::Edit { path: path.into(), old_text: String::new(), new_text: "pwned\n".into() },
            ] {
                let v = judge(action);
                assert!(matches!(v, Verdict::Rejected { cause: RejectCause::OutsideWorkspace, .. }), "{path:?}: {v:?}");
            }
        }
        let v = judge(Action::ViewFile { path: "a\u{302}\u{323}.py".into(), start_line: None, end_line: None });
        assert!(matches!(&v, Verdict::Rejected { cause: RejectCause::OutsideWorkspace, message } if message.contains("several entries")), "{v:?}");
        // Exact names still mean themselves.
        let v = judge(Action::ViewFile { path: "a\u{323}\u{302}.py".into(), start_line: None, end_line: None });
        assert!(matches!(&v, Verdict::Observed(o) if o.output.contains('b')), "{v:?}");
        assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "secret\n");
    }
}
