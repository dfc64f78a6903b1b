//! Human preference pairs straight from the store.
//!
//! The rules, at one state (the siblings of a decision tree node):
//! - `human`: a step the user accepted (or accepted and then edited) is chosen over each sibling the
//!   user rejected (including "another").
//! - `edit`: a step the user edited after accepting: the same call with the user's final text is
//!   chosen over the model's own text.
//! - `revert`: a step the user undid is rejected against the sibling that replaced it (the next one
//!   at that state that was accepted or edited).
//! - `auto`: a step the server rejected on its own (bad tool call, unknown tool, loop, empty edit,
//!   ...) is rejected against the next valid action at that state (accepted, edited, or run
//!   automatically — but not a read that failed, such as `view_file` of a file that is not there,
//!   nor a `finish` unless the episode's verification passed: giving up is no better an answer).
//!
//! Pairs are conversational, in TRL's format: the state's messages as `prompt`, one assistant
//! message each as `chosen` and `rejected`, and the `tools` schema.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use keel_trajectory::{
    Action, Decision, EpisodeFilter, EpisodeTree, Message, Millis, Parsed, Role, StepRecord, Store,
};
use serde_json::{Value, json};

/// Where a pair's preference came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Human,
    Edit,
    Revert,
    Auto,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Human => "human",
            Source::Edit => "edit",
            Source::Revert => "revert",
            Source::Auto => "auto",
        }
    }
}

/// One preference pair, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub prompt: Vec<Message>,
    pub tools: Vec<Value>,
    pub chosen: Value,
    pub rejected: Value,
    pub source: Source,
    pub meta: Value,
}

impl Pair {
    /// The JSONL line (TRL conversational format plus `meta`).
    pub fn to_json(&self) -> Value {
        json!({
            "prompt": self.prompt.iter().map(message_json).collect::<Vec<_>>(),
            "chosen": [self.chosen],
            "rejected": [self.rejected],
            "tools": self.tools,
            "meta": self.meta,
        })
    }
}

/// Counts of what an export found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub episodes: usize,
    pub steps: usize,
    pub human: usize,
    pub edit: usize,
    pub revert: usize,
    pub auto: usize,
}

impl Stats {
    pub fn pairs(&self) -> usize {
        self.human + self.edit + self.revert + self.auto
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pairs from {} episodes ({} steps): {} human, {} edit, {} revert, {} auto",
            self.pairs(),
            self.episodes,
            self.steps,
            self.human,
            self.edit,
            self.revert,
            self.auto
        )
    }
}

/// Mine the pairs of every episode created at or after `since` and write them to `out` (JSONL;
/// `-` for standard output). The file is written whole or not at all.
pub fn export(store: &Store, since: Option<Millis>, out: &Path) -> Result<Stats> {
    let mut stats = Stats::default();
    let mut lines = Vec::new();
    for e in store.episodes(&EpisodeFilter { since, ..Default::default() })? {
        let Some(tree) = store.tree(e.id)? else { continue };
        stats.episodes += 1;
        stats.steps += tree.steps.len();
        for p in mine(&tree) {
            match p.source {
                Source::Human => stats.human += 1,
                Source::Edit => stats.edit += 1,
                Source::Revert => stats.revert += 1,
                Source::Auto => stats.auto += 1,
            }
            serde_json::to_writer(&mut lines, &p.to_json())?;
            lines.push(b'\n');
        }
    }
    if out == Path::new("-") {
        std::io::stdout().write_all(&lines)?;
    } else {
        write_atomic(out, &lines).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(stats)
}

/// Write a file through a temporary sibling, fsync and rename, so a reader never sees half of it.
/// The file is 0600, as the store: pairs and trees hold the same (redacted) trajectories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    keel_trajectory::private::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The pairs of one episode.
pub fn mine(tree: &EpisodeTree) -> Vec<Pair> {
    let mut pairs = Vec::new();
    // Giving up is no better an answer than a rejected one: `finish` is the chosen side of an
    // automatic rejection only in an episode whose verification passed.
    let passed = tree.end.as_ref().and_then(|e| e.outcome.as_ref()).is_some_and(|o| o.passed);
    for (depth, state) in tree.states().into_iter().enumerate() {
        let steps = &state.steps;
        for (i, s) in steps.iter().enumerate() {
            match s.decision() {
                Some(Decision::Accepted | Decision::Edited { .. }) => {
                    for r in steps.iter().filter(|r| r.decision().is_some_and(Decision::is_human_rejection)) {
                        if !matches!(r.decision(), Some(Decision::Rejected { cause: keel_trajectory::RejectCause::NotApplied, .. })) {
                            pairs.push(pair(tree, depth, s, assistant(s), r, Source::Human));
                        }
                    }
                    if let Some(Decision::Edited { final_text }) = s.decision()
                        && let Some(chosen) = edited(s, final_text)
                    {
                        pairs.push(pair(tree, depth, s, chosen, s, Source::Edit));
                    }
                }
                Some(Decision::Reverted) => {
                    let replacement = steps[i + 1..]
                        .iter()
                        .find(|c| matches!(c.decision(), Some(Decision::Accepted | Decision::Edited { .. })));
                    if let Some(c) = replacement {
                        pairs.push(pair(tree, depth, c, assistant(c), s, Source::Revert));
                    }
                }
                Some(d) if d.is_automatic_rejection() => {
                    let valid = steps[i + 1..].iter().find(|c| {
                        matches!(c.step.parsed, Parsed::Action { .. })
                            && matches!(c.decision(), Some(Decision::Accepted | Decision::Edited { .. } | Decision::Auto))
                            && !failed_read(c)
                            && !(matches!(c.step.parsed.action(), Some(Action::Finish { .. })) && !passed)
                    });
                    if let Some(c) = valid {
                        pairs.push(pair(tree, depth, c, assistant(c), s, Source::Auto));
                    }
                }
                _ => {}
            }
        }
    }
    pairs
}

/// A read the tool could not carry out (`view_file` of a file that is not there, `search` with a
/// bad base path): it ran, but it is no better an answer than the rejected one, so it is never the
/// chosen side of a pair. (A search with no match, exit 1, is a fine answer.)
fn failed_read(s: &StepRecord) -> bool {
    let code = s.observation.as_ref().and_then(|o| o.exit_code).unwrap_or(0);
    match s.step.parsed.action() {
        Some(Action::ViewFile { .. }) => code != 0,
        Some(Action::Search { .. }) => code > 1,
        _ => false,
    }
}

fn pair(tree: &EpisodeTree, depth: usize, chosen_step: &StepRecord, chosen: Value, rejected_step: &StepRecord, source: Source) -> Pair {
    let (cause, reason) = match rejected_step.decision() {
        Some(Decision::Rejected { cause, reason }) => (serde_json::to_value(cause).ok(), reason.clone()),
        _ => (None, None),
    };
    let task = &tree.episode.task;
    Pair {
        prompt: rejected_step.step.prompt.messages.clone(),
        tools: rejected_step.step.prompt.tools.to_vec(),
        chosen,
        rejected: assistant(rejected_step),
        source,
        meta: json!({
            "source": source.as_str(),
            "episode": tree.episode.id,
            "chosen_step": chosen_step.step.id,
            "rejected_step": rejected_step.step.id,
            "state_hash": rejected_step.step.state_hash,
            "depth": depth,
            "model_version": rejected_step.step.model.version,
            "chosen_model_version": chosen_step.step.model.version,
            "rejected_cause": cause,
            "rejected_reason": reason,
            "task_kind": task.kind.as_str(),
            "language": task.language,
            "created_at": rejected_step.step.created_at,
        }),
    }
}

/// The assistant message a step's output amounts to, with tool-call arguments as objects (as chat
/// templates and TRL expect). An output that did not parse is kept as the model wrote it.
pub fn assistant(s: &StepRecord) -> Value {
    match &s.step.parsed {
        Parsed::Action { action, .. } => tool_call_message(action),
        Parsed::Error { .. } => {
            let calls: Vec<Value> = s
                .step
                .output
                .tool_calls
                .iter()
                .map(|c| {
                    let args = serde_json::from_str::<Value>(&c.function.arguments)
                        .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
                    json!({"type": "function", "function": {"name": c.function.name, "arguments": args}})
                })
                .collect();
            let mut m = json!({"role": "assistant", "content": s.step.output.content.clone().unwrap_or_default()});
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            m
        }
    }
}

fn tool_call_message(action: &Action) -> Value {
    json!({
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": action.tool_name(), "arguments": action.arguments()}}],
    })
}

/// The user's version of an edited step: the same edit with their final text.
fn edited(s: &StepRecord, final_text: &str) -> Option<Value> {
    match s.step.parsed.action()? {
        Action::Edit { path, old_text, new_text } if new_text != final_text => Some(tool_call_message(&Action::Edit {
            path: path.clone(),
            old_text: old_text.clone(),
            new_text: final_text.to_string(),
        })),
        _ => None,
    }
}

/// A chat message as JSON, tool-call arguments as objects.
pub fn message_json(m: &Message) -> Value {
    let mut v = json!({
        "role": match m.role { Role::System => "system", Role::User => "user", Role::Assistant => "assistant", Role::Tool => "tool" },
        "content": m.content.clone().unwrap_or_default(),
    });
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                let args = serde_json::from_str::<Value>(&c.function.arguments)
                    .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
                json!({"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": args}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    if let Some(name) = &m.name {
        v["name"] = json!(name);
    }
    v
}
