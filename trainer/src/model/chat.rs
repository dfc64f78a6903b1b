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
        Ok(ChatTemplate { env, has_tool_use, bos_token, eos_token })
    }

    /// Renders `messages` (chat messages as JSON) with optional `tools` (JSON schemas).
    pub fn render(&self, messages: &[Value], tools: Option<&[Value]>, add_generation_prompt: bool) -> Result<String> {
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
