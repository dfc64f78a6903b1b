//! The Keel agent, once: the system prompt and the tools schema, the state (messages) and its
//! hash, the tools `view_file`, `search`, `edit`, `run` and `finish`, observation formatting, the
//! automatic-rejection rules, and the step loop — over a [`Workspace`] with two implementations:
//! the editor's ([`EditorWorkspace`]: files on disk overlaid by the open buffers, `run` in the
//! sandbox) and a container's ([`ContainerWorkspace`]: search rollouts, evaluation).
//!
//! keel-lsp and keel-train both drive this crate, so a state recorded in the editor and the same
//! state rebuilt in a container are byte-identical (same `state_hash`). It knows nothing of LSP
//! and never links libtorch.

pub mod container;
pub mod editor;
pub mod rules;
pub mod task;
pub mod tools;
pub mod workspace;

pub use container::ContainerWorkspace;
pub use editor::{EditorWorkspace, SandboxSpec, git_snapshot};
pub use rules::{AUTO_RESAMPLES, AfterRejection, Agent, LoopGuard, Review, RunEnd, Unattended, Verdict, turn_call_id, run_reviewed, run_unattended};
pub use workspace::{DEFAULT_OBSERVATION_BYTES, FileRead, Workspace, normalize_path};

use keel_trajectory::action::tools_schema;
use keel_trajectory::{Message, Prompt, Task, TaskKind};

pub use keel_trajectory::action::{next_messages, observation_text, parse_output};
pub use keel_trajectory::state_hash;

/// The agent's instructions: the tools in one line each, the way of working, and one worked
/// example (small models follow an example far better than a description; larger ones lose
/// nothing by it). The example is a task of its own, in no suite.
pub const SYSTEM_PROMPT: &str = "You are Keel, a coding agent working inside the user's editor. You change the user's code by calling tools, one tool call per answer:
- view_file: read a file, with line numbers.
- search: find the lines that match a pattern.
- edit: replace old_text with new_text in a file. Copy old_text exactly from the file (whole lines, same indentation); it must occur exactly once.
- run: run a shell command (for example the tests) in a sandbox.
- finish: end the task with a short summary.
Paths are relative to the workspace root. Work in small steps: read what you need, change the code with edit, run the tests to check the change, and finish when they pass. Never repeat a call that did not work.

Example. Task: The tests in test_area.py fail. Fix the bug in area.py.
Good calls, in order, and what they showed:
{\"name\": \"run\", \"arguments\": {\"command\": \"python3 test_area.py\"}} -> area(2, 3) returned 5, expected 6
{\"name\": \"view_file\", \"arguments\": {\"path\": \"area.py\"}} ->
    1| def area(width, height):
    2|     return width + height
{\"name\": \"edit\", \"arguments\": {\"path\": \"area.py\", \"old_text\": \"    return width + height\", \"new_text\": \"    return width * height\"}} -> The edit to area.py was applied.
{\"name\": \"run\", \"arguments\": {\"command\": \"python3 test_area.py\"}} -> all checks passed
{\"name\": \"finish\", \"arguments\": {\"summary\": \"area added width and height instead of multiplying them.\"}}";

/// The instruction of a task kind when the user gave none.
pub fn default_instruction(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::FixDiagnostic => "Fix the diagnostics in the selected range.",
        TaskKind::Implement => "Implement the code at the selected range.",
        TaskKind::Refactor => "Refactor the selected code without changing its behaviour.",
        TaskKind::WriteTest => "Write a test for the selected code.",
        TaskKind::Instruction => "Follow the user's instruction.",
    }
}

/// The code around the task, as the editor's syntax layer found it.
#[derive(Debug, Clone, Default)]
pub struct TaskContext {
    pub imports: Vec<String>,
    /// The innermost definition around the range: kind, first line (1-based), text.
    pub enclosing: Option<(String, usize, String)>,
    /// Numbered lines around the range (first line, text) when no definition fits.
    pub nearby: Option<(usize, String)>,
}

/// The user message that states the task (`file` relative to the workspace root).
pub fn task_message(task: &Task, file: &str, ctx: &TaskContext) -> String {
    let mut s = format!("Task ({}): {}\n", task.kind.as_str(), task.instruction);
    if !file.is_empty() {
        s.push_str(&format!("File: {file}\n"));
    }
    if let Some(r) = task.range {
        s.push_str(&format!("Range: lines {}-{}\n", r.start_line.saturating_add(1), r.end_line.saturating_add(1)));
    }
    for d in &task.diagnostics {
        let line = d.range.map(|r| format!(" (line {})", r.start_line.saturating_add(1))).unwrap_or_default();
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

/// The first state of an episode: the system message with the tools, and the task. Secrets in the
/// task are redacted here, before the state is hashed, so the recorded state and its hash agree.
pub fn initial_prompt(task: &Task, file: &str, ctx: &TaskContext) -> Prompt {
    let mut user = task_message(task, file, ctx);
    keel_trajectory::redact::redact_in_place(&mut user);
    Prompt { messages: vec![Message::system(SYSTEM_PROMPT), Message::user(user)], tools: tools_schema() }
}
