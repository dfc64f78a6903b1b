//! A simulated user for `eval` and `collect`: proposals are decided by a stated rule where the
//! editor would ask the person, and recorded as keel-lsp records a person's decisions — so the
//! loop can be run on user decisions, on `verify` alone, or on both, and a rule's being learned
//! can be measured on held-out tasks.
//!
//! The one rule (`--user-rule tests`), a user who wants the tests run and left alone:
//! - a `run` is accepted when it runs a test file of the task with Python (`python3 test_x.py`,
//!   `python test_x.py`, `python3 -m pytest [test_x.py]`); otherwise the user asks for another;
//! - an `edit` of a protected file (the task's tests) gets "another"; other edits are accepted;
//! - after two "another"s at one state the user rejects the third proposal, with the reason.
//!
//! Reads and `finish` are not asked about (keel-lsp runs them without asking), and automatic
//! rejections happen before the user sees anything, as in the editor.

use std::collections::HashMap;

use anyhow::{Result, bail};
use keel_agent::Review;
use keel_agent::task::TaskSpec;
use keel_trajectory::{Action, Prompt, state_hash};

/// "Another" this many times at one state, then reject.
pub const ANOTHER_PER_STATE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRule {
    Tests,
}

impl UserRule {
    pub fn parse(s: &str) -> Result<UserRule> {
        match s {
            "tests" => Ok(UserRule::Tests),
            other => bail!("unknown user rule `{other}` (known: tests)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UserRule::Tests => "tests",
        }
    }

    /// What the rule says of `action` in `task`: `None` to accept, or why not.
    pub fn objection(self, task: &TaskSpec, root: Option<&str>, action: &Action) -> Option<String> {
        match (self, action) {
            (UserRule::Tests, Action::Run { command }) => {
                if runs_a_test(task, command) {
                    None
                } else {
                    Some("run the tests, e.g. `python3 test_….py`".into())
                }
            }
            (UserRule::Tests, Action::Edit { path, .. }) => {
                let rel = keel_agent::normalize_path(path, root).unwrap_or_else(|_| path.clone());
                task.protected.iter().any(|p| *p == rel).then(|| "do not change the tests".to_string())
            }
            _ => None,
        }
    }
}

fn runs_a_test(task: &TaskSpec, command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let is_test = |w: &str| {
        let name = w.trim_start_matches("./");
        name.rsplit('/').next().is_some_and(|f| f.starts_with("test") && f.ends_with(".py")) && task.original(name).is_some()
    };
    match words.as_slice() {
        [py, file] if matches!(*py, "python3" | "python") => is_test(file),
        [py, "-m", "pytest", rest @ ..] if matches!(*py, "python3" | "python") => rest.iter().all(|w| w.starts_with('-') || is_test(w)),
        _ => false,
    }
}

/// One episode's simulated user: the rule, and how often it asked for another at each state.
pub struct SimulatedUser<'a> {
    rule: UserRule,
    task: &'a TaskSpec,
    root: Option<String>,
    another: HashMap<String, u32>,
}

impl<'a> SimulatedUser<'a> {
    /// `root`: the workspace root paths are relative to (the container's).
    pub fn new(rule: UserRule, task: &'a TaskSpec, root: Option<&str>) -> Self {
        SimulatedUser { rule, task, root: root.map(str::to_string), another: HashMap::new() }
    }

    pub fn review(&mut self, state: &Prompt, action: &Action) -> Review {
        let Some(why) = self.rule.objection(self.task, self.root.as_deref(), action) else { return Review::Accept };
        let n = self.another.entry(state_hash(state)).or_default();
        if *n < ANOTHER_PER_STATE {
            *n += 1;
            Review::Another(Some(why))
        } else {
            Review::Reject(Some(why))
        }
    }
}
