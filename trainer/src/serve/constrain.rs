//! Tool calls that always parse: llguidance constrains the tokens of a tool call to the JSON schema
//! of the tools offered, in the chat format Qwen-family templates use
//! (`<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`).
//!
//! With `tool_choice` `required` (or a named function) the whole answer is constrained; with `auto`
//! the model writes freely until it starts a tool call, and from there on it is constrained.

use std::sync::Arc;

use anyhow::{Context, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{InferenceCapabilities, TokEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use super::engine::ToolChoice;
use crate::model::LogitsProcessor;

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

/// A vocabulary indexed once per model.
pub struct Constrainer {
    factory: Arc<ParserFactory>,
    env: TokEnv,
    tags: Option<(u32, u32)>,
}

impl Constrainer {
    /// Indexes the vocabulary of a `tokenizer.json`.
    pub fn new(tokenizer_json: &std::path::Path, eos_ids: &[u32]) -> Result<Constrainer> {
        let bytes = std::fs::read(tokenizer_json).with_context(|| format!("reading {}", tokenizer_json.display()))?;
        let mut bt = toktrie_hf_tokenizers::ByteTokenizer::from_json_bytes(&bytes).map_err(|e| anyhow::anyhow!("indexing the vocabulary: {e}"))?;
        let tags = {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let id = |name: &str| {
                v.get("added_tokens").and_then(Value::as_array).and_then(|a| a.iter().find(|t| t["content"] == name)).and_then(|t| t["id"].as_u64()).map(|n| n as u32)
            };
            id(CALL_OPEN).zip(id(CALL_CLOSE))
        };
        if !eos_ids.is_empty() {
            bt.set_eos_tokens(eos_ids);
        }
        let env = bt.into_tok_env(None).map_err(|e| anyhow::anyhow!("indexing the vocabulary: {e}"))?;
        let mut factory = ParserFactory::new(&env, InferenceCapabilities::default(), &llguidance::earley::SlicedBiasComputer::general_slices())
            .map_err(|e| anyhow::anyhow!("building the constraint parser: {e}"))?;
        factory.set_stderr_log_level(0);
        Ok(Constrainer { factory: Arc::new(factory), env, tags })
    }

    /// The grammar of one tool call among `tools` (OpenAI tool objects). `tags` are the token ids
    /// of `<tool_call>` and `</tool_call>` when the vocabulary has them as single tokens (they must
    /// then be matched as tokens, not spelled out).
    pub fn grammar(tools: &[Value], only: Option<&str>, tags: Option<(u32, u32)>) -> Result<String> {
        let alts: Vec<Value> = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function")?;
                let name = f.get("name")?.as_str()?;
                if only.is_some_and(|o| o != name) {
                    return None;
                }
                let params = f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
                Some(json!({
                    "type": "object",
                    "properties": {"name": {"const": name}, "arguments": params},
                    "required": ["name", "arguments"],
                    "additionalProperties": false
                }))
            })
            .collect();
        anyhow::ensure!(!alts.is_empty(), "no tool to call");
        // Python's `json.dumps` separators: the text a call is generated as is the text chat
        // templates (`tojson`) and Keel's tool fallback render it as in the history and in training
        // data, so what training scores is what decoding can produce.
        let schema = json!({"anyOf": alts, "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}});
        let (open, close) = match tags {
            Some((o, c)) => (format!("<[{o}]>"), format!("<[{c}]>")),
            None => (format!("\"{CALL_OPEN}\""), format!("\"{CALL_CLOSE}\"")),
        };
        Ok(format!("start: {open} \"\\n\" call \"\\n\" {close}\ncall: %json {schema}\n"))
    }

    fn matcher(&self, grammar: &str) -> Result<Matcher> {
        let g = TopLevelGrammar::from_lark(grammar.to_string());
        let parser = self.factory.create_parser(g).map_err(|e| anyhow::anyhow!("compiling the tool-call grammar: {e}"))?;
        let m = Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            anyhow::bail!("compiling the tool-call grammar: {e}");
        }
        Ok(m)
    }

    /// The first token of each tool name as the tokenizer writes it (`view_file` → `view`), for
    /// the names a call may use. At the name, a call may only start with one of these: the choice of
    /// tool then follows the model's probability of each whole name. Without it the mask also lets
    /// through every prefix token (`f`, `fi`, `s`, ...), and a short prefix that collects the mass
    /// of unrelated words (`f` from `file`, `function`) decides the tool — SmolLM2-135M, greedy,
    /// called `finish` at once where `search` was 40 times likelier as a whole name.
    fn name_tokens(&self, tools: &[Value], only: Option<&str>) -> Vec<u32> {
        let mut out: Vec<u32> = tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .filter(|n| only.is_none_or(|o| o == *n))
            .filter_map(|n| self.env.tokenize_bytes(n.as_bytes()).first().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The processor for one batch: `rows[i]` is `None` for a free row, or the tools and choice.
    pub fn processor(&self, rows: Vec<Option<(Vec<Value>, ToolChoice)>>, eos: Vec<u32>) -> Result<ToolCallProcessor<'_>> {
        let mut states = Vec::with_capacity(rows.len());
        for r in rows {
            states.push(match r {
                None | Some((_, ToolChoice::None)) => RowState::Free,
                Some((tools, choice)) => {
                    let only = match &choice {
                        ToolChoice::Function(n) => Some(n.as_str()),
                        _ => None,
                    };
                    let grammar = Constrainer::grammar(&tools, only, self.tags).context("building the tool-call grammar")?;
                    let names = self.name_tokens(&tools, only);
                    match choice {
                        ToolChoice::Required | ToolChoice::Function(_) => RowState::Constrained { m: self.matcher(&grammar)?, text: String::new(), names },
                        _ => RowState::Watching { grammar, text: String::new(), names },
                    }
                }
            });
        }
        Ok(ToolCallProcessor { c: self, rows: states, eos })
    }
}

enum RowState {
    Free,
    /// Free text until the model opens a tool call.
    Watching { grammar: String, text: String, names: Vec<u32> },
    /// Inside a call: the grammar's matcher, the call's text so far, and the first tokens of the
    /// tool names it may use.
    Constrained { m: Matcher, text: String, names: Vec<u32> },
    Done,
}

/// The call's text where the tool name starts.
fn at_name(text: &str) -> bool {
    text.strip_prefix(CALL_OPEN).is_some_and(|rest| rest == "\n{\"name\": \"")
}

pub struct ToolCallProcessor<'a> {
    c: &'a Constrainer,
    rows: Vec<RowState>,
    eos: Vec<u32>,
}

impl ToolCallProcessor<'_> {
    fn token_text(&self, tok: u32) -> String {
        String::from_utf8_lossy(&self.c.env.tok_trie().decode_raw(&[tok])).into_owned()
    }

    /// Whether row `row`'s output is (or became) a constrained tool call.
    pub fn is_call(&self, row: usize) -> bool {
        matches!(self.rows.get(row), Some(RowState::Constrained { .. } | RowState::Done))
    }
}

impl LogitsProcessor for ToolCallProcessor<'_> {
    fn process(&mut self, row: usize, _generated: &[u32], logits: &mut [f32]) {
        let eos = self.eos.clone();
        match self.rows.get_mut(row) {
            Some(RowState::Constrained { m, text, names }) => match m.compute_mask() {
                Ok(mask) => {
                    let n = mask.len().min(logits.len());
                    let name_start = at_name(text) && names.iter().any(|&t| mask.is_allowed(t));
                    for (i, l) in logits.iter_mut().enumerate() {
                        if i >= n || !mask.is_allowed(i as u32) || (name_start && names.binary_search(&(i as u32)).is_err()) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                    if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                        for &e in &eos {
                            if let Some(l) = logits.get_mut(e as usize) {
                                *l = 0.0;
                            }
                        }
                    }
                }
                Err(_) => force(logits, &eos),
            },
            Some(RowState::Done) => force(logits, &eos),
            _ => {}
        }
    }

    fn accept(&mut self, row: usize, token: u32) -> bool {
        let text = self.token_text(token);
        let Some(state) = self.rows.get_mut(row) else { return true };
        match state {
            RowState::Free | RowState::Done => true,
            RowState::Watching { grammar, text: seen, names } => {
                let opened_by_token = self.c.tags.is_some_and(|(o, _)| o == token);
                if opened_by_token {
                    let grammar = grammar.clone();
                    let names = std::mem::take(names);
                    *state = match self.c.matcher(&grammar) {
                        Ok(mut m) => {
                            if m.consume_token(token).is_ok() { RowState::Constrained { m, text, names } } else { RowState::Done }
                        }
                        Err(_) => RowState::Done,
                    };
                    return true;
                }
                seen.push_str(&text);
                if let Some(at) = seen.find(CALL_OPEN) {
                    // The model opened a tool call: from here on the call is constrained. The
                    // grammar starts at the opening tag, so feed it what was written since.
                    let after = seen[at..].to_string();
                    let grammar = grammar.clone();
                    let names = std::mem::take(names);
                    match self.c.matcher(&grammar) {
                        Ok(mut m) => {
                            let toks = self.c.env.tokenize_bytes(after.as_bytes());
                            if m.consume_tokens(&toks).is_ok() {
                                *state = RowState::Constrained { m, text: after, names };
                            } else {
                                *state = RowState::Done;
                            }
                        }
                        Err(_) => *state = RowState::Done,
                    }
                }
                true
            }
            RowState::Constrained { m, text: seen, .. } => {
                if seen.len() < 64 {
                    seen.push_str(&text);
                }
                if m.consume_token(token).is_err() || m.is_stopped() {
                    *state = RowState::Done;
                }
                true
            }
        }
    }
}

fn force(logits: &mut [f32], eos: &[u32]) {
    for l in logits.iter_mut() {
        *l = f32::NEG_INFINITY;
    }
    for &e in eos {
        if let Some(l) = logits.get_mut(e as usize) {
            *l = 0.0;
        }
    }
}

/// The most texts an edit's `old_text` is chosen from; past it, runs of several lines are dropped
/// first, then the constraint.
const MAX_COPY_SPANS: usize = 4000;
/// The longest run of whole lines an edit may replace when its text is constrained.
const MAX_COPY_LINES: usize = 3;

/// What the agent has been shown of the workspace, as the texts that showed it: the code of each
/// `view_file` answer (its line numbers taken off), the lines `search` found, and the fenced code
/// of the user's messages (the task's selection and the definition around it). An edit the agent
/// was told was applied changes what it showed of that file (a text of unknown file too) where the
/// edit's old text occurs once in it: the file no longer holds the old lines, and an edit that
/// copies them would be refused (old text not found).
fn shown_texts(messages: &[keel_trajectory::Message]) -> Vec<Vec<String>> {
    use keel_trajectory::Role;
    // Each text with the file it shows, when known.
    let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut calls: std::collections::HashMap<&str, (&str, Value)> = std::collections::HashMap::new();
    for m in messages {
        if m.role == Role::Assistant {
            for c in &m.tool_calls {
                calls.insert(c.id.as_str(), (c.function.name.as_str(), serde_json::from_str(&c.function.arguments).unwrap_or(Value::Null)));
            }
        }
        let Some(content) = m.content.as_deref() else { continue };
        match m.role {
            Role::Tool => {
                let call = m.tool_call_id.as_deref().and_then(|id| calls.get(id));
                if let Some(rel) = keel_agent::tools::applied_edit_path(content) {
                    if let Some((_, args)) = call.filter(|(name, _)| *name == "edit") {
                        if let (Some(old), Some(new)) = (args["old_text"].as_str().filter(|o| !o.is_empty()), args["new_text"].as_str()) {
                            for (_, lines) in out.iter_mut().filter(|(p, _)| p.as_deref().is_none_or(|p| same_file(p, rel))) {
                                let whole = lines.join("\n");
                                if whole.matches(old).count() == 1 {
                                    *lines = whole.replacen(old, new, 1).split('\n').map(str::to_string).collect();
                                }
                            }
                        }
                    }
                    continue;
                }
                let body = content.split("\n[output truncated]").next().unwrap_or("");
                let body = body.split("\n[exit code").next().unwrap_or("");
                match keel_agent::tools::viewed_lines(body) {
                    Some(lines) => {
                        let path = call.filter(|(name, _)| *name == "view_file").and_then(|(_, a)| a["path"].as_str()).map(str::to_string);
                        out.push((path, lines.into_iter().map(str::to_string).collect()));
                    }
                    // Each line `search` found is a text of its own (`path:12: text`).
                    None => out.extend(body.lines().filter_map(|l| {
                        let text = keel_agent::tools::found_line(l)?;
                        let path = l[..l.len() - text.len()].strip_suffix(": ").and_then(|p| p.rsplit_once(':')).map(|(p, _)| p.to_string());
                        Some((path, vec![text.to_string()]))
                    })),
                }
            }
            Role::User => {
                let mut block: Option<Vec<String>> = None;
                for l in content.lines() {
                    if l.trim_start().starts_with("```") {
                        match block.take() {
                            Some(b) => out.push((None, b)),
                            None => block = Some(Vec::new()),
                        }
                    } else if let Some(b) = block.as_mut() {
                        b.push(l.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out.into_iter().map(|(_, lines)| lines).collect()
}

/// Whether two workspace paths as the agent wrote them name one file (`./a.py`, `a.py`, `/w/a.py`).
fn same_file(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches("./"), b.trim_start_matches("./"));
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// The texts an `edit` may replace, copied from what the agent has been shown: runs of one to
/// [`MAX_COPY_LINES`] whole lines (not all blank) that occur once in the text that showed them,
/// and the empty text (a new file). Empty when nothing was shown, or when it would be more than
/// [`MAX_COPY_SPANS`] single lines.
pub fn copy_spans(messages: &[keel_trajectory::Message]) -> Vec<String> {
    // Each candidate run with its width, and whether it occurs once in the text that showed it:
    // one Aho-Corasick pass over each text counts every candidate's (overlapping) occurrences, so
    // the cost is linear in what was shown, not in candidates × text.
    let mut unique: Vec<(usize, String)> = Vec::new();
    for lines in shown_texts(messages) {
        let whole = lines.join("\n");
        let mut cands: Vec<(usize, String)> = Vec::new();
        for w in 1..=MAX_COPY_LINES {
            for run in lines.windows(w) {
                if !run.iter().all(|l| l.trim().is_empty()) {
                    cands.push((w, run.join("\n")));
                }
            }
        }
        cands.sort_by(|a, b| a.1.cmp(&b.1));
        cands.dedup_by(|a, b| a.1 == b.1);
        let Ok(ac) = aho_corasick::AhoCorasick::new(cands.iter().map(|c| c.1.as_str())) else { continue };
        let mut counts = vec![0u32; cands.len()];
        for m in ac.find_overlapping_iter(&whole) {
            counts[m.pattern().as_usize()] += 1;
        }
        // The edit tool takes an old text only when it occurs once in the file.
        unique.extend(cands.into_iter().zip(counts).filter(|(_, n)| *n == 1).map(|(c, _)| c));
    }
    // The widest runs that keep the choice under the cap.
    for width in (1..=MAX_COPY_LINES).rev() {
        let spans: std::collections::BTreeSet<&str> = unique.iter().filter(|(w, _)| *w <= width).map(|(_, t)| t.as_str()).collect();
        if spans.is_empty() {
            return vec![];
        }
        if spans.len() < MAX_COPY_SPANS {
            let mut out = vec![String::new()];
            out.extend(spans.into_iter().map(str::to_string));
            return out;
        }
    }
    vec![]
}

/// The tools with `edit`'s `old_text` constrained to what the agent has been shown ([`copy_spans`]),
/// so that an edit's old text is always text of the file the model read, whole lines of it — the
/// edit applies unless the model names the wrong file. Unchanged when nothing was shown.
pub fn with_copied_old_text(tools: &[Value], messages: &[keel_trajectory::Message]) -> Vec<Value> {
    let spans = copy_spans(messages);
    if spans.is_empty() {
        return tools.to_vec();
    }
    tools
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.pointer("/function/name").and_then(Value::as_str) == Some("edit")
                && let Some(p) = t.pointer_mut("/function/parameters/properties/old_text")
            {
                *p = json!({"type": "string", "enum": spans});
            }
            t
        })
        .collect()
}

/// Splits a generated text into content and the tool calls it holds.
pub fn parse_calls(text: &str) -> (String, Vec<(String, Value)>) {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(CALL_OPEN) {
        content.push_str(&rest[..i]);
        let after = &rest[i + CALL_OPEN.len()..];
        let (body, next) = match after.find(CALL_CLOSE) {
            Some(j) => (&after[..j], &after[j + CALL_CLOSE.len()..]),
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(body.trim()) {
            Ok(v) if v.get("name").and_then(Value::as_str).is_some() => {
                calls.push((v["name"].as_str().unwrap_or("").to_string(), v.get("arguments").cloned().unwrap_or_else(|| json!({}))));
            }
            _ => content.push_str(&rest[i..rest.len() - next.len()]),
        }
        rest = next;
    }
    content.push_str(rest);
    (content.trim().to_string(), calls)
}

/// Completes a tool call cut short (the token budget ran out inside it): closes the open string
/// and containers, and fills the required arguments that are missing with empty values of their
/// type, so the call still parses and validates against its tool's schema.
pub fn repair(partial: &str, tools: &[Value]) -> Option<(String, Value)> {
    let body = partial.trim_start();
    let mut closed = String::from(body);
    let mut stack = Vec::new();
    let (mut in_str, mut esc) = (false, false);
    for ch in body.chars() {
        if in_str {
            match (esc, ch) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_str = true,
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    if esc {
        closed.pop();
    }
    if in_str {
        closed.push('"');
    }
    // A dangling key or separator: drop back to the last complete member.
    let trimmed = closed.trim_end();
    let mut closed = if trimmed.ends_with(',') || trimmed.ends_with(':') {
        trimmed.trim_end_matches([',', ':']).to_string()
    } else {
        trimmed.to_string()
    };
    if closed.ends_with(':') {
        closed.push_str("null");
    }
    for c in stack.iter().rev() {
        closed.push(*c);
    }
    let v: Value = serde_json::from_str(&closed).ok().or_else(|| {
        // A key without its value ("…, \"path\"}"): cut that member.
        let cut = closed.rfind(',').map(|i| format!("{}{}", &closed[..i], stack.iter().rev().collect::<String>()))?;
        serde_json::from_str(&cut).ok()
    })?;
    let name = v.get("name")?.as_str()?.to_string();
    let tool = tools.iter().find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(&name))?;
    let params = tool.pointer("/function/parameters").cloned().unwrap_or(json!({}));
    let mut args = match v.get("arguments") {
        Some(Value::Object(o)) => o.clone(),
        _ => serde_json::Map::new(),
    };
    args.retain(|_, v| !v.is_null());
    if let Some(req) = params.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !args.contains_key(r) {
                let ty = params.pointer(&format!("/properties/{r}/type")).and_then(Value::as_str).unwrap_or("string");
                args.insert(r.to_string(), match ty {
                    "integer" | "number" => json!(0),
                    "boolean" => json!(false),
                    "array" => json!([]),
                    "object" => json!({}),
                    _ => json!(""),
                });
            }
        }
    }
    Some((name, Value::Object(args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "edit", "parameters": {"type": "object",
            "properties": {"path": {"type": "string"}, "old_text": {"type": "string"}, "new_text": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["path", "old_text", "new_text"]}}})]
    }

    #[test]
    fn an_edit_may_replace_only_whole_lines_it_was_shown_once() {
        use keel_trajectory::Message;
        let view = "    1| def f(x):\n    2|     return x\n    3| \n    4| def g(x):\n    5|     return x\n";
        let msgs = vec![
            Message::system("rules"),
            Message::user("Task: fix f\nSelected text:\n```\nx = 1\n```\n"),
            Message::tool("c1", "view_file", view),
            Message::tool("c2", "search", "a.py:7: y = 2\nb.py:1: z = 3"),
            Message::tool("c3", "run", "Traceback: 12| not a view\n[exit code 1]"),
        ];
        let spans = copy_spans(&msgs);
        for want in ["", "def f(x):", "def f(x):\n    return x", "    return x\n\ndef g(x):", "x = 1", "y = 2", "z = 3"] {
            assert!(spans.contains(&want.to_string()), "{want:?} missing from {spans:?}");
        }
        // Twice in its file (the edit would be refused), all blank, or more than three lines.
        for not in ["    return x", "\n", "def f(x):\n    return x\n\ndef g(x):", "Traceback: 12| not a view"] {
            assert!(!spans.contains(&not.to_string()), "{not:?} should not be offered");
        }
        let tools = with_copied_old_text(&keel_trajectory::action::tools_schema(), &msgs);
        let edit = tools.iter().find(|t| t["function"]["name"] == "edit").unwrap();
        assert_eq!(edit["function"]["parameters"]["properties"]["old_text"]["enum"].as_array().unwrap().len(), spans.len());
        // A long file: three-line runs would pass the cap, so runs of one and two lines are offered.
        let long: String = (0..1500).map(|i| format!("{:>5}| x_{i} = {i}\n", i + 1)).collect();
        let spans = copy_spans(&[Message::tool("c", "view_file", long)]);
        assert_eq!(spans.len(), 1 + 1500 + 1499);
        assert!(spans.contains(&"x_7 = 7\nx_8 = 8".to_string()) && !spans.iter().any(|s| s.matches('\n').count() == 2));
        // Nothing shown: the tools as they were.
        let bare = vec![Message::system("rules"), Message::user("Task: fix f")];
        assert!(copy_spans(&bare).is_empty());
        assert_eq!(with_copied_old_text(&keel_trajectory::action::tools_schema(), &bare), *keel_trajectory::action::tools_schema());
    }

    /// After an applied edit the file no longer holds its old lines: what was shown of that file
    /// (and of no known file) offers the new ones. Another file's text, and an edit that was not
    /// applied, change nothing.
    #[test]
    fn an_applied_edit_replaces_the_lines_it_changed_in_what_was_shown() {
        use keel_trajectory::{Action, Message, ModelOutput, Observation, Parsed};
        let call = |a: Action, id: &str| (Parsed::Action { action: a.clone(), call_id: Some(id.into()) }, ModelOutput { content: None, tool_calls: vec![a.to_tool_call(id)] });
        let mut msgs = vec![Message::system("rules"), Message::user("Task: fix add\n```\ndef add(a, b):\n    return a - b\n```\n")];
        let obs = |o: &str| Observation { output: o.into(), exit_code: Some(0), ..Default::default() };
        let steps: Vec<(Action, Observation)> = vec![
            (Action::ViewFile { path: "./calc.py".into(), start_line: None, end_line: None }, obs("    1| def add(a, b):\n    2|     return a - b\n")),
            (Action::ViewFile { path: "other.py".into(), start_line: None, end_line: None }, obs("    1| def sub(a, b):\n    2|     return a - b\n")),
            // Refused: nothing changed.
            (Action::Edit { path: "calc.py".into(), old_text: "def add(a, b):".into(), new_text: "def add(a, b, c):".into() }, Observation { output: "The edit was rejected".into(), exit_code: Some(1), ..Default::default() }),
            (Action::Edit { path: "calc.py".into(), old_text: "    return a - b".into(), new_text: "    return a * b".into() }, obs("The edit to calc.py was applied.")),
        ];
        for (i, (a, o)) in steps.into_iter().enumerate() {
            let (parsed, output) = call(a, &format!("call_{i}"));
            msgs = keel_trajectory::action::next_messages(&msgs, &parsed, &output, &format!("call_{i}"), &o);
        }
        let spans = copy_spans(&msgs);
        for want in ["    return a * b", "def add(a, b):\n    return a * b", "def add(a, b):", "def sub(a, b):\n    return a - b"] {
            assert!(spans.contains(&want.to_string()), "{want:?} missing from {spans:?}");
        }
        for not in ["def add(a, b):\n    return a - b", "def add(a, b, c):"] {
            assert!(!spans.contains(&not.to_string()), "{not:?} should not be offered: {spans:?}");
        }
        assert!(same_file("./calc.py", "calc.py") && same_file("/w/calc.py", "calc.py") && !same_file("xcalc.py", "calc.py"));
    }

    #[test]
    fn calls_are_parsed_and_cut_calls_repaired() {
        let (c, calls) = parse_calls("let me see <tool_call>\n{\"name\": \"edit\", \"arguments\": {\"path\": \"a\"}}\n</tool_call>");
        assert_eq!(c, "let me see");
        assert_eq!(calls[0].0, "edit");
        let r = repair(r#"{"name": "edit", "arguments": {"path": "a.py", "old_text": "x = \"1"#, &tools()).unwrap();
        assert_eq!(r.1, json!({"path": "a.py", "old_text": "x = \"1", "new_text": ""}));
        let r = repair(r#"{"name": "edit", "arguments": {"path": "a.py", "n": "#, &tools()).unwrap();
        assert_eq!(r.1["path"], "a.py");
        assert_eq!(r.1["new_text"], "");
        let r = repair(r#"{"name": "edit", "arguments": {"path": "a.py", "old_te"#, &tools()).unwrap();
        assert_eq!(r.1["old_text"], "");
        assert!(repair(r#"{"name": "nope", "arguments": {}}"#, &tools()).is_none());
    }
}
