//! Recovery demonstrations: what to do *after* a wrong step.
//!
//! A demonstration starts at a task's first state, so the only decision it teaches is the first one
//! where the model and the fix part ways (SEAlign's critical decision at the edit). A small model
//! then still has nothing to go by once its own edit failed the tests: it runs them again, finishes
//! with a wrong patch, or edits another wrong line (loops and empty patches on held-out tasks).
//!
//! A recovery is a demonstration that starts where a failed model episode went wrong after its
//! first edit. The [`Expert`] knows the task's fix and, at any state, reads from the state alone
//! what the workspace holds (the starting files and every edit the agent was told was applied):
//! after an edit it runs the tests; then it reads the file it must change (unless it read it since
//! the last change); then it makes one edit that turns what is there into the fixed text (undoing
//! the model's wrong change with it); then it runs the tests again and finishes. The recovery
//! episode replays the model's recorded answers up to the first state (after the model's first
//! edit) where the expert would do something else, then follows the expert; it is recorded like
//! any episode (model `recovery`) and kept only if the replay reached that state unchanged and
//! `verify` passed. Search then sees, at that state, the model's step (its episode failed) beside
//! the expert's (it passed): a critical decision after a failed test run, which the demonstrations
//! from the first state never reach. Each recovery is searched with its own model episode only, so
//! an expert's later success never raises the value of the model's earlier steps.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use keel_agent::task::TaskSpec;
use keel_trajectory::action::locate_edit;
use keel_trajectory::{Action, EpisodeTree, ModelOutput, Parsed, Prompt, Role, state_hash};

use crate::search::Policy;

/// The summary the expert finishes with (the demonstrations' too).
pub const FINISH_SUMMARY: &str = "Fixed the bug; the tests pass.";

/// A task's expert: its verify command, starting files and fixed files.
#[derive(Debug, Clone)]
pub struct Expert {
    verify: String,
    /// The files the fix changes: path → (starting text, fixed text), in the fix's order.
    files: Vec<(String, String, String)>,
    start: HashMap<String, String>,
}

/// A step of the agent as the state shows it: the action and what it was told.
struct Shown {
    action: Option<Action>,
    result: String,
}

fn shown_steps(prompt: &Prompt) -> Vec<Shown> {
    let mut out: Vec<Shown> = Vec::new();
    let mut pending: HashMap<String, usize> = HashMap::new();
    for m in &prompt.messages {
        match m.role {
            Role::Assistant => {
                for c in &m.tool_calls {
                    pending.insert(c.id.clone(), out.len());
                    out.push(Shown { action: Action::from_call(&c.function.name, &c.function.arguments).ok(), result: String::new() });
                }
            }
            Role::Tool => {
                if let Some(i) = m.tool_call_id.as_ref().and_then(|id| pending.get(id)) {
                    out[*i].result = m.content.clone().unwrap_or_default();
                }
            }
            _ => {}
        }
    }
    out
}

/// The file an applied edit changed, from what the agent was told ([`keel_agent::tools::edit_applied`]).
fn applied_to(s: &Shown) -> Option<&str> {
    matches!(s.action, Some(Action::Edit { .. })).then_some(())?;
    keel_agent::tools::applied_edit_path(&s.result)
}

impl Expert {
    /// `None` when the task has no fix, or its fix does not apply to its own files.
    pub fn new(task: &TaskSpec) -> Option<Expert> {
        if task.fix.is_empty() {
            return None;
        }
        let start: HashMap<String, String> = task.files.iter().cloned().collect();
        let mut files: Vec<(String, String, String)> = Vec::new();
        for f in &task.fix {
            let i = match files.iter().position(|(p, _, _)| *p == f.path) {
                Some(i) => i,
                None => {
                    let text = start.get(&f.path)?.clone();
                    files.push((f.path.clone(), text.clone(), text));
                    files.len() - 1
                }
            };
            let e = locate_edit(&files[i].2, &f.old_text, &f.new_text).ok()?;
            files[i].2 = e.apply(&files[i].2);
        }
        Some(Expert { verify: task.verify.clone(), files, start })
    }

    /// The workspace's text of `path` at `prompt`: the starting text with every edit the agent was
    /// told was applied (`None` when an applied edit does not apply to it: the state is not one this
    /// expert can read).
    fn current(&self, steps: &[Shown], path: &str) -> Option<String> {
        let mut text = self.start.get(path)?.clone();
        for s in steps {
            if let (Some(Action::Edit { old_text, new_text, .. }), Some(true)) = (&s.action, applied_to(s).map(|p| p == path)) {
                text = locate_edit(&text, old_text, new_text).ok()?.apply(&text);
            }
        }
        Some(text)
    }

    /// The expert's action at `prompt`, or `None` when it cannot read the state (a file it must fix
    /// was changed in a way it cannot replay, or the fixed text cannot be reached in one edit).
    pub fn action(&self, prompt: &Prompt) -> Option<Action> {
        let steps = shown_steps(prompt);
        // The loop rule forgets what was done before the last change: the steps since then.
        let since = steps.iter().rposition(|s| applied_to(s).is_some()).map(|i| i + 1).unwrap_or(0);
        let recent = &steps[since..];
        let ran = recent.iter().any(|s| matches!(&s.action, Some(Action::Run { command }) if command.trim() == self.verify.trim()));
        let mut wrong = None;
        for (path, _, fixed) in &self.files {
            let cur = self.current(&steps, path)?;
            if cur != *fixed {
                wrong = Some((path, cur, fixed));
                break;
            }
        }
        let Some((path, cur, fixed)) = wrong else {
            return Some(if ran { Action::Finish { summary: FINISH_SUMMARY.into() } } else { Action::Run { command: self.verify.clone() } });
        };
        if !ran {
            return Some(Action::Run { command: self.verify.clone() });
        }
        let view = Action::ViewFile { path: path.clone(), start_line: None, end_line: None };
        if !recent.iter().any(|s| s.action.as_ref() == Some(&view)) {
            return Some(view);
        }
        let (old_text, new_text) = one_edit(&cur, fixed)?;
        Some(Action::Edit { path: path.clone(), old_text, new_text })
    }
}

/// One edit that turns `cur` into `fixed`: the lines that differ (between the common first and
/// last lines), widened by a line of context at a time until they occur once in `cur`.
pub fn one_edit(cur: &str, fixed: &str) -> Option<(String, String)> {
    let a: Vec<&str> = cur.split('\n').collect();
    let b: Vec<&str> = fixed.split('\n').collect();
    let mut pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut suf = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    let m = a.len().min(b.len());
    suf = suf.min(m - pre);
    loop {
        let old = a[pre..a.len() - suf].join("\n");
        let new = b[pre..b.len() - suf].join("\n");
        let ok = locate_edit(cur, &old, &new).ok().filter(|e| e.apply(cur) == fixed).is_some();
        if ok && !old.trim().is_empty() {
            return Some((old, new));
        }
        if pre == 0 && suf == 0 {
            return None;
        }
        // Widen above first (the line that opens the block), then below.
        if pre > 0 {
            pre -= 1;
        } else {
            suf -= 1;
        }
    }
}

/// Where a failed model episode gets a recovery: the steps to replay (their states and answers, in
/// order) and the state the expert takes over at.
#[derive(Debug, Clone)]
pub struct Branch {
    pub prefix: Vec<(String, ModelOutput)>,
    pub state_hash: String,
    /// The model's action at that state (what the expert's is preferred to), for the report.
    pub model_action: String,
    pub expert_action: String,
}

/// The first state after the model's first edit where the expert would act otherwise (`None`: the
/// episode passed, never edited, or the expert cannot read it).
pub fn branch(t: &EpisodeTree, expert: &Expert) -> Option<Branch> {
    if t.end.as_ref().and_then(|e| e.outcome.as_ref()).is_none_or(|o| o.passed) {
        return None;
    }
    // The recorded steps in the order they were recorded (the store's), resamples included.
    let steps: Vec<&keel_trajectory::Step> = t.steps.iter().map(|s| &s.step).collect();
    let first_edit = steps.iter().position(|s| matches!(s.parsed, Parsed::Action { action: Action::Edit { .. }, .. }))?;
    for (i, s) in steps.iter().enumerate().skip(first_edit + 1) {
        let e = expert.action(&s.prompt)?;
        if s.parsed.action() != Some(&e) {
            // A state the model was asked at more than once (an automatic rejection, then a
            // resample): the expert answers its first ask.
            if i > 0 && steps[i - 1].state_hash == s.state_hash {
                continue;
            }
            let model_action = match &s.parsed {
                Parsed::Action { action, .. } => format!("{} {}", action.tool_name(), action.arguments_json()),
                Parsed::Error { error } => format!("(invalid: {})", error.message),
            };
            return Some(Branch {
                prefix: steps[..i].iter().map(|p| (p.state_hash.clone(), p.output.clone())).collect(),
                state_hash: s.state_hash.clone(),
                model_action,
                expert_action: format!("{} {}", e.tool_name(), e.arguments_json()),
            });
        }
    }
    None
}

/// Replays each task's branch prefix, then answers as the expert. A state off the prefix before its
/// end marks the task `diverged` (its episode is not a recovery of the model's).
pub struct RecoveryPolicy {
    /// Initial user message → (expert, prefix, cursor, diverged).
    tasks: HashMap<String, (Expert, Vec<(String, ModelOutput)>, Mutex<(usize, bool)>)>,
}

fn user_message(p: &Prompt) -> Option<&str> {
    p.messages.iter().find(|m| m.role == Role::User)?.content.as_deref()
}

impl RecoveryPolicy {
    /// `tasks`: each task with its expert and branch.
    pub fn new(tasks: Vec<(&TaskSpec, Expert, Branch)>) -> RecoveryPolicy {
        let tasks = tasks
            .into_iter()
            .filter_map(|(t, e, b)| {
                let user = t.initial_prompt().messages.into_iter().find(|m| m.role == Role::User)?.content?;
                Some((user, (e, b.prefix, Mutex::new((0, false)))))
            })
            .collect();
        RecoveryPolicy { tasks }
    }

    /// Whether the task's replay left the recorded prefix.
    pub fn diverged(&self, task: &TaskSpec) -> bool {
        let user = task.initial_prompt().messages.into_iter().find(|m| m.role == Role::User).and_then(|m| m.content);
        user.and_then(|u| self.tasks.get(&u)).is_none_or(|(_, _, c)| c.lock().unwrap_or_else(|e| e.into_inner()).1)
    }
}

impl Policy for RecoveryPolicy {
    fn sample(&self, prompt: &Prompt, k: usize, _seed: u64) -> Result<Vec<ModelOutput>> {
        let (expert, prefix, cursor) = user_message(prompt).and_then(|u| self.tasks.get(u)).context("the recovery policy does not know this task")?;
        let mut c = cursor.lock().unwrap_or_else(|e| e.into_inner());
        let h = state_hash(prompt);
        if c.0 < prefix.len() {
            if prefix[c.0].0 == h {
                c.0 += 1;
                return Ok(vec![prefix[c.0 - 1].1.clone(); k.max(1)]);
            }
            c.1 = true;
            c.0 = prefix.len();
        }
        let a = expert.action(prompt).context("the expert cannot read this state")?;
        Ok((0..k.max(1)).map(|i| ModelOutput { content: None, tool_calls: vec![a.to_tool_call(format!("expert{i}"))] }).collect())
    }
    fn version(&self) -> Option<String> {
        Some("recovery".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_edit_undoes_a_wrong_change_and_makes_the_fix() {
        let start = "def f(x):\n    y = 0\n    if x >= 1:\n        y = 1\n    return y\n";
        let fixed = "def f(x):\n    y = 0\n    if x > 1:\n        y = 1\n    return y\n";
        // The model changed another line; the one edit covers both lines.
        let cur = "def f(x):\n    y = 1\n    if x >= 1:\n        y = 1\n    return y\n";
        let (old, new) = one_edit(cur, fixed).unwrap();
        assert_eq!(old, "    y = 1\n    if x >= 1:");
        assert_eq!(new, "    y = 0\n    if x > 1:");
        // Only the fix's line differs: the edit is that line.
        let (old, new) = one_edit(start, fixed).unwrap();
        assert_eq!((old.as_str(), new.as_str()), ("    if x >= 1:", "    if x > 1:"));
        // A differing line that occurs twice is widened until it is unique.
        let cur = "a\nb\nb\nc\n";
        let (old, new) = one_edit(cur, "a\nb\nx\nc\n").unwrap();
        assert_eq!(locate_edit(cur, &old, &new).unwrap().apply(cur), "a\nb\nx\nc\n");
        assert!(one_edit("same", "same").is_none());
    }

    fn out(a: &Action) -> ModelOutput {
        ModelOutput { content: None, tool_calls: vec![a.to_tool_call("m")] }
    }

    /// The expert read off states the shared agent built: run, read, one edit that also undoes the
    /// model's wrong change, run, finish; and the branch of a failed episode is the first state after
    /// the model's edit where the expert acts otherwise.
    #[test]
    fn the_expert_reads_the_state_and_recovers_from_a_wrong_edit() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/bugfix/train/apply_orders-comparison-1");
        let task = keel_agent::task::load_task(&dir, "apply_orders-comparison-1").unwrap();
        let expert = Expert::new(&task).unwrap();
        let ws = ws_at_start(&task);
        let mut agent = keel_agent::Agent::new(task.initial_prompt(), 16_000);
        let run = Action::Run { command: task.verify.clone() };
        let view = Action::ViewFile { path: "apply_orders.py".into(), start_line: None, end_line: None };
        // At the first state: run the tests (the demonstration's first step).
        assert_eq!(expert.action(agent.prompt()), Some(run.clone()));
        // The model's steps: run, read, a wrong edit (another line), run. (The workspace
        // in memory runs nothing: a command's answer does not matter to the expert.)
        let wrong = Action::Edit { path: "apply_orders.py".into(), old_text: "    remaining = dict(stock)".into(), new_text: "    remaining = stock".into() };
        for a in [&run, &view, &wrong] {
            let u = agent.step_unattended(&out(a), &ws);
            assert!(u.advanced, "{a:?}: {:?}", u.decision);
        }
        // After the edit: run the tests before anything else.
        assert_eq!(expert.action(agent.prompt()), Some(run.clone()));
        agent.step_unattended(&out(&run), &ws);
        // After the failed run: read the file again (it changed), then one edit to the fixed text.
        assert_eq!(expert.action(agent.prompt()), Some(view.clone()));
        agent.step_unattended(&out(&view), &ws);
        let Some(Action::Edit { old_text, new_text, .. }) = expert.action(agent.prompt()) else { panic!("an edit") };
        assert!(old_text.contains("remaining = stock") && old_text.contains(">= remaining[item]"), "{old_text}");
        assert!(new_text.contains("remaining = dict(stock)") && new_text.contains("> remaining[item]:") && !new_text.contains(">="), "{new_text}");
        let fix = Action::Edit { path: "apply_orders.py".into(), old_text, new_text };
        assert!(agent.step_unattended(&out(&fix), &ws).advanced);
        let fixed = ws.0.lock().unwrap()["apply_orders.py"].clone();
        assert_eq!(fixed, expert.files[0].2, "the workspace holds the fixed text");
        assert!(fixed.contains("if quantity > remaining[item]:") && fixed.contains("dict(stock)"));
        assert_eq!(expert.action(agent.prompt()), Some(run.clone()));
        agent.step_unattended(&out(&run), &ws);
        assert_eq!(expert.action(agent.prompt()), Some(Action::Finish { summary: FINISH_SUMMARY.into() }));
        // An edit the agent was not told was applied (its old text is not there) changes nothing.
        let ws2 = ws_at_start(&task);
        let mut agent = keel_agent::Agent::new(task.initial_prompt(), 16_000);
        let missing = Action::Edit { path: "apply_orders.py".into(), old_text: "not in the file".into(), new_text: "x".into() };
        for a in [&run, &view] {
            agent.step_unattended(&out(a), &ws2);
        }
        while !agent.step_unattended(&out(&missing), &ws2).advanced {}
        let Some(Action::Edit { old_text, new_text, .. }) = expert.action(agent.prompt()) else { panic!("an edit") };
        assert_eq!((old_text.as_str(), new_text.as_str()), ("        if quantity >= remaining[item]:", "        if quantity > remaining[item]:"));
    }

    /// The task's files in memory; commands are not run (their answer does not matter here).
    struct Mem(Mutex<HashMap<String, String>>);

    impl keel_agent::Workspace for Mem {
        fn read(&self, rel: &str) -> Result<keel_agent::FileRead, String> {
            Ok(self.0.lock().unwrap().get(rel).cloned().map(keel_agent::FileRead::Text).unwrap_or(keel_agent::FileRead::Missing))
        }
        fn files(&self, _base: &str) -> Result<Vec<(String, u64)>, String> {
            Ok(self.0.lock().unwrap().iter().map(|(p, t)| (p.clone(), t.len() as u64)).collect())
        }
        fn write(&self, rel: &str, text: &str) -> Result<(), String> {
            self.0.lock().unwrap().insert(rel.to_string(), text.to_string());
            Ok(())
        }
        fn run(&self, _command: &str) -> keel_trajectory::Observation {
            keel_trajectory::Observation { output: "FAILED".into(), exit_code: Some(1), ..Default::default() }
        }
    }

    fn ws_at_start(task: &TaskSpec) -> Mem {
        Mem(Mutex::new(task.files.iter().cloned().collect()))
    }
}
