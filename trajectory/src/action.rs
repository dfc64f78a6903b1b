//! The agent's action contract: the five tools, their JSON schema, parsing a model's answer into an
//! [`Action`], and the pure parts of carrying one out (text edits, workspace paths).
//!
//! The server and the trainer's search both parse and apply actions through this module, so a step
//! recorded in the editor and a step replayed in a container mean the same thing.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::types::{FunctionCall, Message, ModelOutput, Observation, Parsed, Role, ToolCall};

/// One tool call the agent can make. Paths are relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "tool", content = "arguments", rename_all = "snake_case")]
pub enum Action {
    ViewFile {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_line: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_line: Option<u32>,
    },
    Search {
        pattern: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    Edit {
        path: String,
        old_text: String,
        new_text: String,
    },
    Run {
        command: String,
    },
    Finish {
        summary: String,
    },
}

/// The tool names, in schema order.
pub const TOOL_NAMES: [&str; 5] = ["view_file", "search", "edit", "run", "finish"];

impl Action {
    pub fn tool_name(&self) -> &'static str {
        match self {
            Action::ViewFile { .. } => "view_file",
            Action::Search { .. } => "search",
            Action::Edit { .. } => "edit",
            Action::Run { .. } => "run",
            Action::Finish { .. } => "finish",
        }
    }

    /// The arguments object, as the tool schema names them.
    pub fn arguments(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("arguments").unwrap_or_else(|| json!({})),
            _ => json!({}),
        }
    }

    /// `edit` and `run` change things and wait for the user; the others run at once.
    pub fn needs_user(&self) -> bool {
        matches!(self, Action::Edit { .. } | Action::Run { .. })
    }

    /// The file the action is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Action::ViewFile { path, .. } | Action::Edit { path, .. } => Some(path),
            Action::Search { path, .. } => path.as_deref(),
            Action::Run { .. } | Action::Finish { .. } => None,
        }
    }

    /// The arguments as the JSON string a tool call carries, in the order of the tool's schema:
    /// the order constrained decoding writes them in, so the history shows the model its calls as
    /// it writes them. Written field by field, so every binary writes the same bytes whatever map
    /// order serde_json was built with (the string is part of the state a step's hash covers).
    pub fn arguments_json(&self) -> String {
        let mut fields: Vec<(&str, Value)> = Vec::with_capacity(3);
        match self {
            Action::ViewFile { path, start_line, end_line } => {
                fields.push(("path", json!(path)));
                if let Some(s) = start_line {
                    fields.push(("start_line", json!(s)));
                }
                if let Some(e) = end_line {
                    fields.push(("end_line", json!(e)));
                }
            }
            Action::Search { pattern, path } => {
                fields.push(("pattern", json!(pattern)));
                if let Some(p) = path {
                    fields.push(("path", json!(p)));
                }
            }
            Action::Edit { path, old_text, new_text } => {
                fields.push(("path", json!(path)));
                fields.push(("old_text", json!(old_text)));
                fields.push(("new_text", json!(new_text)));
            }
            Action::Run { command } => fields.push(("command", json!(command))),
            Action::Finish { summary } => fields.push(("summary", json!(summary))),
        }
        let mut out = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String((*k).to_string()).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }

    /// The action as an OpenAI tool call with the given id.
    pub fn to_tool_call(&self, id: impl Into<String>) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall { name: self.tool_name().into(), arguments: self.arguments_json() },
        }
    }

    /// Parse one function call (name and JSON-string arguments).
    pub fn from_call(name: &str, arguments: &str) -> Result<Action, ActionError> {
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                ActionError::new(ActionErrorKind::InvalidJson, format!("arguments of `{name}` are not JSON: {e}"))
                    .with_tool(name)
            })?
        };
        Self::from_value(name, &args)
    }

    /// Parse a tool name and an arguments object.
    pub fn from_value(name: &str, args: &Value) -> Result<Action, ActionError> {
        let obj = args.as_object().ok_or_else(|| {
            ActionError::new(ActionErrorKind::InvalidArguments, format!("arguments of `{name}` must be an object"))
                .with_tool(name)
        })?;
        let a = Args { tool: name, obj };
        let action = match name {
            "view_file" => Action::ViewFile {
                path: a.string("path")?,
                start_line: a.opt_line("start_line")?,
                end_line: a.opt_line("end_line")?,
            },
            "search" => Action::Search { pattern: a.string("pattern")?, path: a.opt_string("path")? },
            "edit" => {
                Action::Edit { path: a.string("path")?, old_text: a.string("old_text")?, new_text: a.string("new_text")? }
            }
            // Whitespace around a command means nothing to the shell: `pytest` and `pytest ` are one
            // action (one edge in search, a loop when repeated), not two.
            "run" => Action::Run { command: a.string("command")?.trim().to_string() },
            "finish" => Action::Finish { summary: a.opt_string("summary")?.unwrap_or_default() },
            other => {
                return Err(ActionError::new(
                    ActionErrorKind::UnknownTool,
                    format!("unknown tool `{other}`; the tools are {}", TOOL_NAMES.join(", ")),
                )
                .with_tool(other));
            }
        };
        if let Action::ViewFile { start_line: Some(s), end_line: Some(e), .. } = &action
            && e < s
        {
            return Err(ActionError::new(
                ActionErrorKind::InvalidArguments,
                format!("view_file: end_line {e} is before start_line {s}"),
            )
            .with_tool(name));
        }
        if let Action::Search { pattern, .. } = &action
            && pattern.is_empty()
        {
            return Err(ActionError::new(ActionErrorKind::InvalidArguments, "search: empty pattern").with_tool(name));
        }
        if let Action::Run { command } = &action
            && command.trim().is_empty()
        {
            return Err(ActionError::new(ActionErrorKind::InvalidArguments, "run: empty command").with_tool(name));
        }
        Ok(action)
    }
}

struct Args<'a> {
    tool: &'a str,
    obj: &'a serde_json::Map<String, Value>,
}

impl Args<'_> {
    fn err(&self, msg: String) -> ActionError {
        ActionError::new(ActionErrorKind::InvalidArguments, format!("{}: {msg}", self.tool)).with_tool(self.tool)
    }
    fn string(&self, key: &str) -> Result<String, ActionError> {
        self.opt_string(key)?.ok_or_else(|| self.err(format!("missing argument `{key}`")))
    }
    fn opt_string(&self, key: &str) -> Result<Option<String>, ActionError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(format!("`{key}` must be a string, got {other}"))),
        }
    }
    fn opt_line(&self, key: &str) -> Result<Option<u32>, ActionError> {
        let bad = || self.err(format!("`{key}` must be a positive line number"));
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= 1 && v <= u32::MAX as u64 => Ok(Some(v as u32)),
                _ => Err(bad()),
            },
            // Small models often quote numbers; accept a string that is one.
            Some(Value::String(s)) => match s.trim().parse::<u32>() {
                Ok(v) if v >= 1 => Ok(Some(v)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

/// Why a model's answer could not be used as an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub kind: ActionErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

impl ActionError {
    pub fn new(kind: ActionErrorKind, message: impl Into<String>) -> Self {
        ActionError { kind, message: message.into(), tool: None }
    }
    fn with_tool(mut self, tool: &str) -> Self {
        self.tool = Some(tool.to_string());
        self
    }
    /// The rejection cause this error is recorded with.
    pub fn cause(&self) -> crate::types::RejectCause {
        match self.kind {
            ActionErrorKind::UnknownTool => crate::types::RejectCause::UnknownTool,
            _ => crate::types::RejectCause::InvalidToolCall,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionErrorKind {
    /// The answer held no tool call at all.
    NoAction,
    /// A tool call whose JSON does not parse.
    InvalidJson,
    /// A tool that does not exist.
    UnknownTool,
    /// Missing or mistyped arguments.
    InvalidArguments,
}

/// Parse a model's answer: the first tool call if there is one, else a JSON action in the content
/// (for endpoints without tool support), accepting `{"name"|"tool": .., "arguments": {..}}`, bare or
/// inside a code fence or `<tool_call>` tags.
pub fn parse_output(output: &ModelOutput) -> Parsed {
    if let Some(call) = output.tool_calls.first() {
        return match Action::from_call(&call.function.name, &call.function.arguments) {
            Ok(action) => Parsed::Action { action, call_id: Some(call.id.clone()) },
            Err(error) => Parsed::Error { error },
        };
    }
    let content = output.content.as_deref().unwrap_or("");
    match parse_content(content) {
        Ok(action) => Parsed::Action { action, call_id: None },
        Err(error) => Parsed::Error { error },
    }
}

/// Find a JSON action in free text.
pub fn parse_content(content: &str) -> Result<Action, ActionError> {
    let mut first_error = None;
    for (start, _) in content.match_indices('{') {
        let Some(candidate) = balanced_object(&content[start..]) else { continue };
        let Ok(value) = serde_json::from_str::<Value>(candidate) else { continue };
        let Some(obj) = value.as_object() else { continue };
        let name = obj.get("name").or_else(|| obj.get("tool")).and_then(Value::as_str);
        let Some(name) = name else { continue };
        let args = obj.get("arguments").or_else(|| obj.get("parameters")).cloned().unwrap_or_else(|| json!({}));
        // Some models put the arguments in a JSON string, as the OpenAI wire format does.
        let args = match args {
            Value::String(s) => match serde_json::from_str(&s) {
                Ok(v) => v,
                Err(e) => {
                    first_error.get_or_insert(
                        ActionError::new(ActionErrorKind::InvalidJson, format!("arguments of `{name}` are not JSON: {e}"))
                            .with_tool(name),
                    );
                    continue;
                }
            },
            v => v,
        };
        match Action::from_value(name, &args) {
            Ok(a) => return Ok(a),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        let kind = if content.contains('{') { ActionErrorKind::InvalidJson } else { ActionErrorKind::NoAction };
        ActionError::new(kind, "the answer holds no tool call")
    }))
}

/// The prefix of `s` (which starts with `{`) up to its matching `}`, respecting JSON strings.
fn balanced_object(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The OpenAI `tools` array describing the five tools (one shared copy).
pub fn tools_schema() -> crate::types::Tools {
    static SCHEMA: std::sync::LazyLock<crate::types::Tools> = std::sync::LazyLock::new(|| std::sync::Arc::new(build_tools_schema()));
    SCHEMA.clone()
}

fn build_tools_schema() -> Vec<Value> {
    let f = |name: &str, description: &str, properties: Value, required: &[&str]| {
        json!({
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false
                }
            }
        })
    };
    vec![
        f(
            "view_file",
            "Show a file of the workspace with line numbers, optionally only lines start_line..=end_line (1-based).",
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace root.", "minLength": 1},
                "start_line": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "end_line": {"type": "integer", "minimum": 1, "maximum": 1000000}
            }),
            &["path"],
        ),
        f(
            "search",
            "Search the workspace (or one path in it) for a regular expression; returns matching lines as path:line: text.",
            json!({
                "pattern": {"type": "string", "description": "A regular expression.", "minLength": 1, "maxLength": 200},
                "path": {"type": "string", "description": "A file or directory relative to the workspace root."}
            }),
            &["pattern"],
        ),
        f(
            "edit",
            "Replace old_text, which must occur exactly once in the file, with new_text. An empty old_text creates a new file.",
            json!({
                "path": {"type": "string", "description": "Path relative to the workspace root.", "minLength": 1},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"}
            }),
            &["path", "old_text", "new_text"],
        ),
        f(
            "run",
            "Run a shell command in a sandbox copy of the workspace (after the user allows it).",
            json!({"command": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\S"}}),
            &["command"],
        ),
        f(
            "finish",
            "End the task with a short summary of what was done.",
            json!({"summary": {"type": "string", "maxLength": 300}}),
            &["summary"],
        ),
    ]
}

/// Where an edit lands in a text, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub start: usize,
    pub end: usize,
    pub new_text: String,
}

impl TextEdit {
    pub fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + self.new_text.len());
        out.push_str(&text[..self.start]);
        out.push_str(&self.new_text);
        out.push_str(&text[self.end..]);
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("old_text and new_text are the same: the edit changes nothing")]
    Empty,
    #[error("old_text was not found in the file")]
    NotFound,
    #[error("old_text occurs {0} times in the file; it must occur exactly once")]
    Ambiguous(usize),
    #[error("old_text is empty but the file is not; give the text to replace")]
    EmptyOldText,
}

impl EditError {
    pub fn cause(&self) -> crate::types::RejectCause {
        use crate::types::RejectCause;
        match self {
            EditError::Empty => RejectCause::EmptyEdit,
            EditError::NotFound => RejectCause::OldTextNotFound,
            EditError::Ambiguous(_) | EditError::EmptyOldText => RejectCause::OldTextAmbiguous,
        }
    }
}

/// Locate an `edit` in `text`: `old_text` must occur exactly once. Line endings are forgiven: an
/// `old_text` written with `\n` matches a file that uses `\r\n` (and the new text follows the file).
pub fn locate_edit(text: &str, old_text: &str, new_text: &str) -> Result<TextEdit, EditError> {
    if old_text == new_text {
        return Err(EditError::Empty);
    }
    if old_text.is_empty() {
        return if text.is_empty() {
            Ok(TextEdit { start: 0, end: 0, new_text: new_text.to_string() })
        } else {
            Err(EditError::EmptyOldText)
        };
    }
    let find = |needle: &str, replacement: String| -> Result<TextEdit, EditError> {
        let mut it = text.match_indices(needle);
        let Some((start, _)) = it.next() else { return Err(EditError::NotFound) };
        let more = it.count();
        if more > 0 {
            return Err(EditError::Ambiguous(more + 1));
        }
        Ok(TextEdit { start, end: start + needle.len(), new_text: replacement })
    };
    match find(old_text, new_text.to_string()) {
        Err(EditError::NotFound) if text.contains("\r\n") && !old_text.contains('\r') => {
            find(&old_text.replace('\n', "\r\n"), new_text.replace("\r\n", "\n").replace('\n', "\r\n"))
        }
        r => r,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` is outside the workspace")]
pub struct OutsideWorkspace {
    pub path: String,
}

/// Resolve a path the model gave against the workspace root, refusing anything that leaves it
/// (`..`, absolute paths elsewhere, symbolic links that point out).
pub fn workspace_path(root: &Path, path: &str) -> Result<PathBuf, OutsideWorkspace> {
    let outside = || OutsideWorkspace { path: path.to_string() };
    if path.is_empty() || path.contains('\0') {
        return Err(outside());
    }
    let p = Path::new(path);
    let joined = if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    // Lexical normalisation first: `..` may not climb above the root.
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(outside());
                }
            }
            Component::CurDir => {}
            other => normal.push(other.as_os_str()),
        }
    }
    let root_real = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let root_lex = root.to_path_buf();
    if !normal.starts_with(&root_lex) && !normal.starts_with(&root_real) {
        return Err(outside());
    }
    // Then follow links on the part that exists.
    let mut existing = normal.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|s| s.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    if let Ok(real) = existing.canonicalize() {
        if !real.starts_with(&root_real) {
            return Err(outside());
        }
        let mut full = real;
        for name in rest.into_iter().rev() {
            full.push(name);
        }
        return Ok(full);
    }
    Ok(normal)
}

/// The assistant message that carries a step's action into the conversation. Its call has the id
/// the state gives that turn (`call_id`), not the id the answer came with: ids are assigned by
/// whoever served the answer (`call_0` from Keel's engine, a random one from other endpoints,
/// `demo0` from a demonstration), the model never sees them (chat templates do not render them),
/// and a state that carried them would make the same action with the same result two states, so
/// episodes would never share a state past their first step and search could not put a model's
/// step beside a demonstration's at the state where they differ.
pub fn assistant_message(parsed: &Parsed, output: &ModelOutput, call_id: &str) -> Message {
    match parsed {
        Parsed::Action { action, call_id: answered } => Message {
            role: Role::Assistant,
            content: output.content.clone().filter(|c| !c.trim().is_empty() && answered.is_some()),
            tool_calls: vec![action.to_tool_call(call_id)],
            tool_call_id: None,
            name: None,
        },
        Parsed::Error { .. } => Message {
            role: Role::Assistant,
            content: output.content.clone(),
            tool_calls: output
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall { id: if i == 0 { call_id.to_string() } else { format!("{call_id}_{i}") }, ..c.clone() })
                .collect(),
            tool_call_id: None,
            name: None,
        },
    }
}

/// The state after a step: its prompt, the assistant's tool call (with the turn's `call_id`, see
/// [`assistant_message`]), and the tool's result.
pub fn next_messages(
    messages: &[Message],
    parsed: &Parsed,
    output: &ModelOutput,
    call_id: &str,
    observation: &Observation,
) -> Vec<Message> {
    let mut out = messages.to_vec();
    let assistant = assistant_message(parsed, output, call_id);
    let name = assistant.tool_calls.first().map(|c| c.function.name.clone()).unwrap_or_default();
    out.push(assistant);
    out.push(Message::tool(call_id.to_string(), name, observation_text(observation)));
    out
}

/// The text a tool result message carries.
pub fn observation_text(o: &Observation) -> String {
    let mut s = o.output.clone();
    if o.truncated {
        s.push_str("\n[output truncated]");
    }
    if let Some(code) = o.exit_code {
        if code != 0 {
            s.push_str(&format!("\n[exit code {code}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_calls_and_content() {
        let a = Action::from_call("edit", r#"{"path":"a.rs","old_text":"x","new_text":"y"}"#).unwrap();
        assert_eq!(a, Action::Edit { path: "a.rs".into(), old_text: "x".into(), new_text: "y".into() });
        let round = a.to_tool_call("c1");
        assert_eq!(Action::from_call(&round.function.name, &round.function.arguments).unwrap(), a);
        // The schema's order whatever the map order of this build.
        assert_eq!(round.function.arguments, r#"{"path":"a.rs","old_text":"x","new_text":"y"}"#);
        let v = Action::ViewFile { path: "a".into(), start_line: Some(2), end_line: None };
        assert_eq!(v.arguments_json(), r#"{"path":"a","start_line":2}"#);

        let e = Action::from_call("delete", "{}").unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::UnknownTool);
        let e = Action::from_call("edit", r#"{"path":"a.rs"}"#).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::InvalidArguments);
        let e = Action::from_call("view_file", "{not json").unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::InvalidJson);
        // Nothing to run, nothing to search for: invalid calls, rejected automatically.
        let e = Action::from_call("run", r#"{"command":"  "}"#).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ActionErrorKind::InvalidArguments, "run: empty command"));
        assert_eq!(Action::from_call("run", r#"{"command":" python3 test_a.py \n"}"#).unwrap(), Action::Run { command: "python3 test_a.py".into() });
        let e = Action::from_call("search", r#"{"pattern":""}"#).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::InvalidArguments);

        let c = "Sure.\n```json\n{\"name\": \"view_file\", \"arguments\": {\"path\": \"src/{x}.rs\", \"start_line\": \"3\"}}\n```";
        assert_eq!(
            parse_content(c).unwrap(),
            Action::ViewFile { path: "src/{x}.rs".into(), start_line: Some(3), end_line: None }
        );
        let c = "<tool_call>\n{\"tool\": \"finish\", \"arguments\": {\"summary\": \"done\"}}\n</tool_call>";
        assert_eq!(parse_content(c).unwrap(), Action::Finish { summary: "done".into() });
        assert_eq!(parse_content("I think we are done").unwrap_err().kind, ActionErrorKind::NoAction);
    }

    #[test]
    fn locates_edits() {
        let t = "fn a() {}\nfn b() {}\n";
        let e = locate_edit(t, "fn b", "fn c").unwrap();
        assert_eq!(e.apply(t), "fn a() {}\nfn c() {}\n");
        assert_eq!(locate_edit(t, "fn", "x"), Err(EditError::Ambiguous(2)));
        assert_eq!(locate_edit(t, "zzz", "x"), Err(EditError::NotFound));
        assert_eq!(locate_edit(t, "a", "a"), Err(EditError::Empty));
        assert_eq!(locate_edit(t, "", "x"), Err(EditError::EmptyOldText));
        assert_eq!(locate_edit("", "", "new").unwrap().apply(""), "new");
        let crlf = "a\r\nb\r\nc\r\n";
        assert_eq!(locate_edit(crlf, "a\nb", "x\ny").unwrap().apply(crlf), "x\r\ny\r\nc\r\n");
    }

    #[test]
    fn refuses_paths_outside_the_workspace() {
        let dir = std::env::temp_dir().join(format!("keel-ws-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        assert!(workspace_path(&dir, "src/main.rs").is_ok());
        assert!(workspace_path(&dir, "src/../new.rs").is_ok());
        assert!(workspace_path(&dir, "../etc/passwd").is_err());
        assert!(workspace_path(&dir, "/etc/passwd").is_err());
        assert!(workspace_path(&dir, "").is_err());
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink("/etc", dir.join("link"));
            assert!(workspace_path(&dir, "link/passwd").is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
