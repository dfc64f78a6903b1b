//! Chat templates, rendered as transformers' `apply_chat_template` renders them.
//!
//! The template comes from `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
//! (a string, or a list of named templates: `tool_use` when tools are given and it exists, else
//! `default`). It is rendered with minijinja set up like transformers' Jinja environment:
//! `trim_blocks` and `lstrip_blocks`, Python string methods (`.startswith`, `.strip`, `.split`, ...
//! via minijinja-contrib's pycompat), `raise_exception`, `strftime_now`, and a `tojson` that writes
//! what Python's `json.dumps` writes (`", "` and `": "` separators, non-ASCII kept, keys in the
//! order given). Tool-call arguments are objects, as templates and TRL expect.

use std::path::Path;

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value as JValue};
use serde::Serialize;
use serde_json::Value;

use super::error::{ModelError, Result, io_err};

/// A loaded chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    has_tool_use: bool,
    /// The template does not render tools, tool calls or tool results itself: Keel states them
    /// in the messages ([`tools_in_messages`]).
    pub tools_fallback: bool,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos", &self.bos_token).field("eos", &self.eos_token).finish()
    }
}

fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// The template of a model folder; `Ok(None)` when it has none.
    pub fn load(dir: &Path) -> Result<Option<ChatTemplate>> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
            serde_json::from_str(&text).map_err(|e| ModelError::Template(format!("{}: not JSON: {e}", cfg_path.display())))?
        } else {
            Value::Null
        };
        let bos = token_string(cfg.get("bos_token"));
        let eos = token_string(cfg.get("eos_token"));
        let jinja = dir.join("chat_template.jinja");
        let mut templates: Vec<(String, String)> = Vec::new();
        if jinja.exists() {
            templates.push(("default".into(), std::fs::read_to_string(&jinja).map_err(io_err(&jinja))?));
        } else {
            match cfg.get("chat_template") {
                Some(Value::String(s)) => templates.push(("default".into(), s.clone())),
                Some(Value::Array(list)) => {
                    for t in list {
                        let name = t.get("name").and_then(Value::as_str);
                        let body = t.get("template").and_then(Value::as_str);
                        match (name, body) {
                            (Some(n), Some(b)) => templates.push((n.to_string(), b.to_string())),
                            _ => return Err(ModelError::Template(format!("{}: a chat_template entry lacks name or template", cfg_path.display()))),
                        }
                    }
                }
                None | Some(Value::Null) => {}
                Some(other) => {
                    return Err(ModelError::Template(format!("{}: chat_template must be a string or a list, found {other}", cfg_path.display())));
                }
            }
        }
        if templates.is_empty() {
            return Ok(None);
        }
        if !templates.iter().any(|(n, _)| n == "default") {
            let first = templates[0].1.clone();
            templates.push(("default".into(), first));
        }
        ChatTemplate::new(templates, bos, eos).map(Some)
    }

    /// A template from source (`default`, and optionally `tool_use`).
    pub fn new(templates: Vec<(String, String)>, bos_token: Option<String>, eos_token: Option<String>) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<JValue, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> String {
            // Templates use it for "today's date"; a fixed date keeps renders reproducible.
            "26 Jul 2024".to_string()
        });
        let mut has_tool_use = false;
        for (name, src) in templates {
            has_tool_use |= name == "tool_use";
            env.add_template_owned(name.clone(), src)
                .map_err(|e| ModelError::Template(format!("template `{name}` does not parse: {e:#}")))?;
        }
        let mut t = ChatTemplate { env, has_tool_use, tools_fallback: false, bos_token, eos_token };
        t.tools_fallback = !t.renders_tools();
        Ok(t)
    }

    /// Whether the template shows the model the tools it is given, the calls it made and their
    /// results. Many small models' templates (SmolLM2's, for one) render only `content`.
    fn renders_tools(&self) -> bool {
        let tool = serde_json::json!({"type": "function", "function": {"name": "keel_probe_tool", "description": "d", "parameters": {"type": "object", "properties": {}}}});
        let msgs = [
            serde_json::json!({"role": "system", "content": "s"}),
            serde_json::json!({"role": "user", "content": "u"}),
            serde_json::json!({"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "keel_probe_call", "arguments": {}}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "c1", "name": "keel_probe_call", "content": "keel_probe_result"}),
        ];
        match self.render_raw(&msgs, Some(std::slice::from_ref(&tool)), false) {
            Ok(out) => out.contains("keel_probe_tool") && out.contains("keel_probe_call") && out.contains("keel_probe_result"),
            Err(_) => false,
        }
    }

    /// Renders `messages` (chat messages as JSON) with optional `tools` (JSON schemas). A template
    /// that does not render tools gets them stated in the messages ([`tools_in_messages`]).
    pub fn render(&self, messages: &[Value], tools: Option<&[Value]>, add_generation_prompt: bool) -> Result<String> {
        let needs = tools.is_some_and(|t| !t.is_empty()) || messages.iter().any(|m| m.get("tool_calls").is_some() || m["role"] == "tool");
        if self.tools_fallback && needs {
            let msgs = tools_in_messages(messages, tools.unwrap_or(&[]))?;
            return self.render_raw(&msgs, None, add_generation_prompt);
        }
        self.render_raw(messages, tools, add_generation_prompt)
    }

    fn render_raw(&self, messages: &[Value], tools: Option<&[Value]>, add_generation_prompt: bool) -> Result<String> {
        let tools = tools.filter(|t| !t.is_empty());
        let name = if tools.is_some() && self.has_tool_use { "tool_use" } else { "default" };
        let tmpl = self.env.get_template(name).map_err(|e| ModelError::Template(e.to_string()))?;
        let ctx = minijinja::context! {
            messages => JValue::from_serialize(messages),
            tools => tools.map(JValue::from_serialize),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        tmpl.render(ctx).map_err(|e| ModelError::Template(format!("rendering: {e:#}")))
    }
}

/// The tools and the conversation's tool traffic as plain messages, in the format Qwen2.5's and
/// Hermes' templates use (and Keel's constrained decoding produces): the tool schemas in the system
/// message inside `<tools></tools>`, each call as `<tool_call>\n{"name": …, "arguments": …}\n
/// </tool_call>` in the assistant's content, and each result as a user turn inside
/// `<tool_response></tool_response>` (consecutive results share one turn).
pub fn tools_in_messages(messages: &[Value], tools: &[Value]) -> Result<Vec<Value>> {
    let dump = |v: &Value| dumps(&JValue::from_serialize(v), None).map_err(|e| ModelError::Template(format!("rendering tools: {e}")));
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let mut block = String::from(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for t in tools {
            block.push('\n');
            block.push_str(&dump(t)?);
        }
        block.push_str("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
        match messages.first() {
            Some(m) if m["role"] == "system" => {
                let content = m["content"].as_str().unwrap_or_default();
                out.push(serde_json::json!({"role": "system", "content": format!("{content}\n\n{block}")}));
            }
            _ => out.push(serde_json::json!({"role": "system", "content": block})),
        }
    }
    let skip = usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m["role"] == "system"));
    for m in &messages[skip..] {
        match m["role"].as_str() {
            Some("assistant") if m.get("tool_calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty()) => {
                let mut content = m["content"].as_str().unwrap_or_default().to_string();
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let f = &c["function"];
                    let args = match &f["arguments"] {
                        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
                        other => other.clone(),
                    };
                    let call = serde_json::json!({"name": f["name"], "arguments": args});
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(&format!("<tool_call>\n{}\n</tool_call>", dump(&call)?));
                }
                out.push(serde_json::json!({"role": "assistant", "content": content}));
            }
            Some("tool") => {
                let text = format!("<tool_response>\n{}\n</tool_response>", m["content"].as_str().unwrap_or_default());
                match out.last_mut() {
                    Some(prev) if prev["role"] == "user" && prev.get("keel_tool_turn").is_some() => {
                        let joined = format!("{}\n{text}", prev["content"].as_str().unwrap_or_default());
                        prev["content"] = Value::String(joined);
                    }
                    _ => out.push(serde_json::json!({"role": "user", "content": text, "keel_tool_turn": true})),
                }
            }
            _ => out.push(m.clone()),
        }
    }
    for m in &mut out {
        if let Some(o) = m.as_object_mut() {
            o.remove("keel_tool_turn");
        }
    }
    Ok(out)
}

/// Python's `json.dumps` separators without indent: `", "` and `": "`.
struct PyFormatter {
    indent: Option<usize>,
    depth: usize,
}

impl PyFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if let Some(n) = self.indent {
            w.write_all(b"\n")?;
            for _ in 0..n * self.depth {
                w.write_all(b" ")?;
            }
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        w.write_all(b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(if self.indent.is_some() { b"," } else { b", " })?;
        }
        self.newline(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        w.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(if self.indent.is_some() { b"," } else { b", " })?;
        }
        self.newline(w)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        Ok(())
    }
}

// Closing brackets of non-empty containers need the newline too when indenting; serde_json's
// Formatter only calls end_array/end_object, so indentation is handled by a wrapper below.
fn dumps(value: &JValue, indent: Option<usize>) -> std::result::Result<String, Error> {
    let mut out = Vec::new();
    if let Some(n) = indent {
        // Python's indented output is serde_json's pretty output with the given indent width.
        let ind = vec![b' '; n];
        let fmt = serde_json::ser::PrettyFormatter::with_indent(&ind);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        value.serialize(&mut ser).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter { indent: None, depth: 0 });
        value.serialize(&mut ser).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    }
    Ok(String::from_utf8(out).expect("json is utf-8"))
}

fn tojson(value: JValue, kwargs: Kwargs) -> std::result::Result<JValue, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    Ok(JValue::from_safe_string(dumps(&value, indent)?))
}

/// The rendering of `prompt + completion` minus the rendering of `prompt` with the generation
/// prompt (TRL's conversational completion). Errors when the template does not render the prompt
/// as a prefix.
pub fn completion_text(t: &ChatTemplate, prompt: &[Value], completion: &[Value], tools: Option<&[Value]>) -> Result<(String, String)> {
    let p = t.render(prompt, tools, true)?;
    let mut all = prompt.to_vec();
    all.extend_from_slice(completion);
    let full = t.render(&all, tools, false)?;
    match full.strip_prefix(&p) {
        Some(rest) => Ok((p, rest.to_string())),
        None => Err(ModelError::Template(
            "the template does not render the prompt (with generation prompt) as a prefix of prompt + completion".into(),
        )),
    }
}
