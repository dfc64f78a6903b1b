//! The records of a trajectory: episodes, steps, decisions, observations, model versions.
//!
//! Everything here is plain serde data. The JSON forms are part of the contract with the trainer and
//! with anyone who reads a dump, so fields are only ever added (with `#[serde(default)]`), never renamed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::{Action, ActionError};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new time-ordered id (UUIDv7).
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// One run of the agent on one task, from the code action that started it to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub id: Uuid,
    pub created_at: Millis,
    pub workspace: Workspace,
    pub task: Task,
    /// The model the episode was started with (each step names the version that produced it).
    pub model: ModelRef,
    /// The editor, as it names itself in `initialize` (`clientInfo`).
    #[serde(default)]
    pub client: Option<String>,
    /// A command that verifies the task (for example the project's tests); used by search rollouts.
    #[serde(default)]
    pub verify: Option<String>,
    /// Files restored to their text at the start before `verify` runs (a task's tests: editing
    /// them never passes). Workspace-relative.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
}

/// Where the episode ran, and the state of its files when it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    /// Absolute path of the workspace root on the machine that recorded it.
    pub root: String,
    #[serde(default)]
    pub vcs: Option<VcsState>,
}

/// A snapshot that lets a container rebuild the workspace: a commit plus the uncommitted changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcsState {
    /// `git` for now.
    pub kind: String,
    pub commit: String,
    /// `git diff --binary HEAD` of the uncommitted changes (stored as a content-addressed blob).
    #[serde(default)]
    pub patch: String,
    /// Untracked files that are not ignored, with their contents.
    #[serde(default)]
    pub untracked: Vec<FileSnapshot>,
    /// What the snapshot leaves out (a patch or untracked files over the size limits), one line
    /// each; empty when it is complete. A replay of a partial snapshot does not rebuild the
    /// workspace the user had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSnapshot {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    FixDiagnostic,
    Implement,
    Refactor,
    WriteTest,
    Instruction,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::FixDiagnostic => "fix_diagnostic",
            TaskKind::Implement => "implement",
            TaskKind::Refactor => "refactor",
            TaskKind::WriteTest => "write_test",
            TaskKind::Instruction => "instruction",
        }
    }
}

/// What the user asked for, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub kind: TaskKind,
    pub instruction: String,
    #[serde(default)]
    pub uri: Option<String>,
    /// The document's language id (`rust`, `python`, ...).
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub range: Option<Range>,
    #[serde(default)]
    pub diagnostics: Vec<TaskDiagnostic>,
    #[serde(default)]
    pub selected_text: Option<String>,
}

/// A zero-based line/character range, characters counted in the encoding the client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start_line: u32,
    pub start_character: u32,
    pub end_line: u32,
    pub end_character: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDiagnostic {
    pub message: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub range: Option<Range>,
}

/// The model an episode or step talked to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelRef {
    /// The model id the endpoint was asked for.
    pub name: String,
    /// The version that answered: for Keel's own server the model id plus adapter hash, else whatever
    /// the endpoint reported (the `model` field of its response).
    #[serde(default)]
    pub version: Option<String>,
}

/// An OpenAI-style chat message; the state the model sees is a list of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Role::Assistant, content)
    }
    pub fn tool(tool_call_id: impl Into<String>, name: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            name: Some(name.into()),
        }
    }
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: Some(content.into()), tool_calls: Vec::new(), tool_call_id: None, name: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A function call as the OpenAI API carries it: `arguments` is a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// Exactly what was sent to the model for one step: the messages and the tool schema.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Prompt {
    pub messages: Vec<Message>,
    /// Shared: every step of a session carries the same schema, so cloning a prompt, comparing
    /// schemas and dropping a step stay cheap.
    #[serde(default)]
    pub tools: Tools,
}

/// An OpenAI `tools` array.
pub type Tools = std::sync::Arc<Vec<serde_json::Value>>;

/// What the model answered, before parsing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelOutput {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// One action proposed by the model at one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: Uuid,
    pub episode_id: Uuid,
    /// The step whose action led to this step's state; `None` for the first state of an episode.
    /// Steps with the same parent and the same `state_hash` are siblings: alternatives at one state.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// Hash of the exact prompt (messages and tools), see [`crate::state_hash`].
    pub state_hash: String,
    pub created_at: Millis,
    pub prompt: Prompt,
    pub output: ModelOutput,
    /// The parsed action, or why the output did not parse.
    pub parsed: Parsed,
    /// The model version that produced this step.
    pub model: ModelRef,
    #[serde(default)]
    pub timings: Timings,
}

/// The parse of a model output: an action, or the error that made it unusable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Parsed {
    Action {
        action: Action,
        /// The id of the tool call it came from (used for the tool result message).
        #[serde(default)]
        call_id: Option<String>,
    },
    Error {
        error: ActionError,
    },
}

impl Parsed {
    pub fn action(&self) -> Option<&Action> {
        match self {
            Parsed::Action { action, .. } => Some(action),
            Parsed::Error { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Request sent to last byte received.
    #[serde(default)]
    pub model_ms: u64,
    /// Request sent to first byte of the answer (streaming).
    #[serde(default)]
    pub first_token_ms: Option<u64>,
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

/// What became of a step. A step can collect several over time (accepted, then edited or reverted);
/// the last one is the step's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// A read-only tool that ran without asking.
    Auto,
    Accepted,
    Rejected {
        cause: RejectCause,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Accepted, then the user changed the edited text; `final_text` is what they left.
    Edited { final_text: String },
    /// Accepted, then undone.
    Reverted,
    /// Carried out with nobody to review it (`eval`, `collect`, search rollouts): not a human
    /// judgement, so it is worth nothing by itself; the episode's outcome gives it a value.
    Unreviewed,
    /// Never decided: the episode was cancelled or its document changed under it.
    Superseded {
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Decision {
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Auto => "auto",
            Decision::Accepted => "accepted",
            Decision::Unreviewed => "unreviewed",
            Decision::Rejected { .. } => "rejected",
            Decision::Edited { .. } => "edited",
            Decision::Reverted => "reverted",
            Decision::Superseded { .. } => "superseded",
        }
    }

    /// A rejection the server made on its own (bad tool call, loop, empty edit, ...).
    pub fn is_automatic_rejection(&self) -> bool {
        matches!(self, Decision::Rejected { cause, .. } if cause.is_automatic())
    }

    /// A rejection by the person (including "another").
    pub fn is_human_rejection(&self) -> bool {
        matches!(self, Decision::Rejected { cause, .. } if !cause.is_automatic())
    }
}

/// Why a step was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCause {
    /// The user rejected it.
    User,
    /// The user asked for another action at the same state.
    Retry,
    /// The client refused to apply the accepted edit.
    NotApplied,
    /// The output was not a well-formed tool call.
    InvalidToolCall,
    /// A tool that does not exist.
    UnknownTool,
    /// An edit whose `old_text` does not occur in the file.
    OldTextNotFound,
    /// An edit whose `old_text` occurs more than once.
    OldTextAmbiguous,
    /// A path outside the workspace root.
    OutsideWorkspace,
    /// An edit that changes nothing.
    EmptyEdit,
    /// The same action as an earlier step of the episode.
    Loop,
    /// `run` with no sandbox to run it in.
    NoSandbox,
}

impl RejectCause {
    pub fn is_automatic(self) -> bool {
        !matches!(self, RejectCause::User | RejectCause::Retry | RejectCause::NotApplied)
    }
}

/// A decision with the time it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub step_id: Uuid,
    pub at: Millis,
    pub decision: Decision,
}

/// The result of running a step's action: the tool output the model sees next.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    pub output: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// How an episode ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EpisodeEnd {
    Finished {
        #[serde(default)]
        summary: Option<String>,
    },
    Cancelled,
    Failed { error: String },
    /// The step budget ran out.
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeEndEvent {
    pub episode_id: Uuid,
    pub at: Millis,
    pub end: EpisodeEnd,
    /// The task's verification after the episode (`collect`, `eval`): a reward for search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// What the verification command said of an episode's final workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub command: String,
    pub passed: bool,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The start of its output (redacted).
    #[serde(default)]
    pub output: String,
}

/// A trained (or base) model version, as the trainer records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The id steps carry in `ModelRef::version`.
    pub id: String,
    pub created_at: Millis,
    /// The base model (a path or Hugging Face id).
    pub base_model: String,
    #[serde(default)]
    pub adapter_path: Option<String>,
    #[serde(default)]
    pub adapter_hash: Option<String>,
    /// The version this one was trained from.
    #[serde(default)]
    pub parent: Option<String>,
    /// What it was trained on (pair files, counts, hyper-parameters).
    #[serde(default)]
    pub trained_on: serde_json::Value,
    /// Its evaluation figures.
    #[serde(default)]
    pub eval: serde_json::Value,
    #[serde(default)]
    pub live: bool,
}

/// What a caller appends to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Episode(Episode),
    Step(Step),
    Decision(DecisionEvent),
    Observation { step_id: Uuid, at: Millis, observation: Observation },
    EpisodeEnd(EpisodeEndEvent),
}
