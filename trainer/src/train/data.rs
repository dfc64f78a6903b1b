//! Training data: preference pairs for DPO and prompt/completion examples for SFT, read from JSONL
//! and tokenized in TRL's convention (through the model layer's `encode_pair`).
//!
//! Nothing is dropped silently: a line that is not JSON, lacks a field, has an empty completion,
//! cannot be encoded, or whose prompt alone fills `--max-length` is counted as a skip with its line
//! number, and the report says so at the end; when nothing is left it is an error. Over-long
//! sequences are cut as TRL cuts them (`truncation_mode="keep_start"`): the prompt is kept whole
//! and the completion loses its end, so that prompt + completion fit in `max_length`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::model::{Model, Sequence};

/// One preference pair, tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPair {
    /// 1-based line of the pairs file.
    pub line: usize,
    pub chosen: Sequence,
    pub rejected: Sequence,
}

impl EncodedPair {
    /// Tokens of both sequences (what the model processes for this pair).
    pub fn tokens(&self) -> usize {
        seq_len(&self.chosen) + seq_len(&self.rejected)
    }
}

/// One SFT example, tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedExample {
    /// 1-based line of the data file (a packed example's first line).
    pub line: usize,
    pub seq: Sequence,
    /// Which completion tokens are trained on; `None`: all of them. A packed example's completion
    /// also holds the tokens between its steps (tool results, the next turn's header), unscored.
    pub scored: Option<Vec<bool>>,
    /// How many lines (steps) the example holds: 1 unless packed.
    pub steps: usize,
}

impl EncodedExample {
    /// Tokens whose log-probability is trained on.
    pub fn scored_tokens(&self) -> usize {
        match &self.scored {
            None => scored_tokens(&self.seq),
            Some(m) => m.iter().enumerate().filter(|&(j, &on)| on && (j > 0 || !self.seq.prompt.is_empty())).count(),
        }
    }
}

/// Packs the steps of an episode into one sequence: where an example's whole sequence (prompt and
/// completion) is the start of the next example's prompt — the next step of the same episode, whose
/// prompt holds this step's answer and what came back — the two become one sequence trained on both
/// completions and on nothing between them. The loss is unchanged: with causal attention each
/// completion token sees exactly the tokens it saw in its own example, at the same positions, so
/// its log-probability is the same; the episode's history goes through the model once instead of
/// once per step (an 8-step episode's SFT examples are mostly the same prompt 8 times).
/// Examples are taken in file order; a packed sequence never exceeds `max_length`.
pub fn pack_steps(examples: Vec<EncodedExample>, max_length: usize) -> Vec<EncodedExample> {
    let mut out: Vec<EncodedExample> = Vec::with_capacity(examples.len());
    for e in examples {
        if let Some(cur) = out.last_mut() {
            let have = cur.seq.prompt.len() + cur.seq.completion.len();
            let extends = e.scored.is_none()
                && e.seq.prompt.len() >= have
                && seq_len(&e.seq) <= max_length
                && e.seq.prompt[..cur.seq.prompt.len()] == cur.seq.prompt[..]
                && e.seq.prompt[cur.seq.prompt.len()..have] == cur.seq.completion[..];
            if extends {
                let mask = cur.scored.get_or_insert_with(|| vec![true; cur.seq.completion.len()]);
                mask.extend(std::iter::repeat_n(false, e.seq.prompt.len() - have));
                mask.extend(std::iter::repeat_n(true, e.seq.completion.len()));
                cur.seq.completion.extend_from_slice(&e.seq.prompt[have..]);
                cur.seq.completion.extend_from_slice(&e.seq.completion);
                cur.steps += e.steps;
                continue;
            }
        }
        out.push(e);
    }
    out
}

pub fn seq_len(s: &Sequence) -> usize {
    s.prompt.len() + s.completion.len()
}

/// Tokens of a sequence whose log-probability is taken (the first token of a completion with an
/// empty prompt has nothing to be predicted from).
pub fn scored_tokens(s: &Sequence) -> usize {
    if s.prompt.is_empty() { s.completion.len().saturating_sub(1) } else { s.completion.len() }
}

/// Why lines were left out, with their line numbers, and how many sequences were truncated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataReport {
    /// Non-blank lines read.
    pub lines: usize,
    /// Examples kept.
    pub used: usize,
    /// Reason → line numbers.
    pub skipped: BTreeMap<String, Vec<usize>>,
    /// Line numbers of examples whose completion was cut to fit `max_length`.
    pub truncated: Vec<usize>,
}

pub const SKIP_JSON: &str = "not JSON";
pub const SKIP_EMPTY: &str = "empty completion";
pub const SKIP_PROMPT_TOO_LONG: &str = "prompt fills --max-length";

impl DataReport {
    fn skip(&mut self, reason: impl Into<String>, line: usize) {
        self.skipped.entry(reason.into()).or_default().push(line);
    }

    /// Lines skipped in all.
    pub fn skipped_count(&self) -> usize {
        self.skipped.values().map(Vec::len).sum()
    }

    /// Lines skipped for `reason`.
    pub fn count(&self, reason: &str) -> usize {
        self.skipped.get(reason).map_or(0, Vec::len)
    }
}

fn lines_list(v: &[usize]) -> String {
    const SHOW: usize = 8;
    let mut s: Vec<String> = v.iter().take(SHOW).map(|n| n.to_string()).collect();
    if v.len() > SHOW {
        s.push(format!("… {} more", v.len() - SHOW));
    }
    s.join(", ")
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lines: {} used, {} skipped", self.lines, self.used, self.skipped_count())?;
        for (reason, lines) in &self.skipped {
            write!(f, "; {} {reason} (line{} {})", lines.len(), if lines.len() == 1 { "" } else { "s" }, lines_list(lines))?;
        }
        if !self.truncated.is_empty() {
            write!(f, "; {} truncated to --max-length (line{} {})", self.truncated.len(), if self.truncated.len() == 1 { "" } else { "s" }, lines_list(&self.truncated))?;
        }
        Ok(())
    }
}

/// Whether a completion (a string, a message, or a message list) carries nothing.
pub fn is_empty_completion(v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty() || a.iter().all(is_empty_completion),
        Value::Object(m) => {
            let content_empty = match m.get("content") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                Some(Value::Array(parts)) => parts.is_empty(),
                Some(_) => false,
            };
            let no_calls = match m.get("tool_calls") {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            content_empty && no_calls
        }
        _ => true,
    }
}

fn tools_of(v: &Value) -> std::result::Result<Option<Vec<Value>>, String> {
    match v.get("tools") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        // TRL accepts tools as a JSON string too.
        Some(Value::String(s)) => serde_json::from_str::<Vec<Value>>(s).map(Some).map_err(|_| "`tools` is not a JSON list".into()),
        Some(_) => Err("`tools` is not a list".into()),
    }
}

fn field<'a>(v: &'a Value, k: &str) -> std::result::Result<&'a Value, String> {
    match v.get(k) {
        Some(x @ (Value::String(_) | Value::Array(_) | Value::Object(_))) => Ok(x),
        Some(_) => Err(format!("`{k}` is not a string or messages")),
        None => Err(format!("missing `{k}`")),
    }
}

/// Cuts `s` to `max_length` tokens keeping the prompt whole (the caller has checked that the
/// prompt leaves room). Returns whether anything was cut.
fn truncate(s: &mut Sequence, max_length: usize) -> bool {
    let room = max_length.saturating_sub(s.prompt.len());
    if s.completion.len() > room {
        s.completion.truncate(room);
        true
    } else {
        false
    }
}

/// Iterates over the non-blank lines of a JSONL file, with 1-based numbers; a line that is not a
/// JSON object is reported as a skip.
fn for_each_line(path: &Path, report: &mut DataReport, mut f: impl FnMut(usize, &Value, &mut DataReport)) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => f(i + 1, &v, report),
            Ok(_) => report.skip("not a JSON object", i + 1),
            Err(_) => report.skip(SKIP_JSON, i + 1),
        }
    }
    Ok(())
}

/// Reads and tokenizes a pairs file (`prompt`, `chosen`, `rejected`, optional `tools` and `meta`;
/// strings or TRL's conversational messages). Errors only when the file cannot be read or no pair
/// is usable; everything else is in the report.
pub fn load_pairs(path: &Path, model: &Model, max_length: usize) -> Result<(Vec<EncodedPair>, DataReport)> {
    let mut report = DataReport::default();
    let mut out = Vec::new();
    for_each_line(path, &mut report, |line, v, report| {
        let parts = (|| -> std::result::Result<_, String> {
            Ok((field(v, "prompt")?, field(v, "chosen")?, field(v, "rejected")?, tools_of(v)?))
        })();
        let (prompt, chosen, rejected, tools) = match parts {
            Ok(p) => p,
            Err(e) => return report.skip(e, line),
        };
        if is_empty_completion(chosen) || is_empty_completion(rejected) {
            return report.skip(SKIP_EMPTY, line);
        }
        let enc = |c: &Value| model.encode_pair(prompt, c, tools.as_deref());
        let (mut c, mut r) = match (enc(chosen), enc(rejected)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(e), _) | (_, Err(e)) => return report.skip(format!("not encodable ({e})"), line),
        };
        if c.completion.is_empty() || r.completion.is_empty() {
            return report.skip(SKIP_EMPTY, line);
        }
        if c.prompt.len() >= max_length || r.prompt.len() >= max_length {
            return report.skip(SKIP_PROMPT_TOO_LONG, line);
        }
        let cut_c = truncate(&mut c, max_length);
        let cut_r = truncate(&mut r, max_length);
        if cut_c || cut_r {
            report.truncated.push(line);
        }
        out.push(EncodedPair { line, chosen: c, rejected: r });
    })?;
    report.used = out.len();
    if out.is_empty() {
        bail!("{}: no usable pairs ({report})", path.display());
    }
    Ok((out, report))
}

/// Reads and tokenizes SFT data: `prompt` + `completion` lines (strings or messages, optional
/// `tools`), or pairs lines, whose `chosen` side is the completion.
pub fn load_sft(path: &Path, model: &Model, max_length: usize) -> Result<(Vec<EncodedExample>, DataReport)> {
    let mut report = DataReport::default();
    let mut out = Vec::new();
    for_each_line(path, &mut report, |line, v, report| {
        let key = if v.get("completion").is_some() || v.get("chosen").is_none() { "completion" } else { "chosen" };
        let parts = (|| -> std::result::Result<_, String> { Ok((field(v, "prompt")?, field(v, key)?, tools_of(v)?)) })();
        let (prompt, completion, tools) = match parts {
            Ok(p) => p,
            Err(e) => return report.skip(e, line),
        };
        if is_empty_completion(completion) {
            return report.skip(SKIP_EMPTY, line);
        }
        let mut s = match model.encode_pair(prompt, completion, tools.as_deref()) {
            Ok(s) => s,
            Err(e) => return report.skip(format!("not encodable ({e})"), line),
        };
        if scored_tokens(&s) == 0 {
            return report.skip(SKIP_EMPTY, line);
        }
        if s.prompt.len() >= max_length {
            return report.skip(SKIP_PROMPT_TOO_LONG, line);
        }
        if truncate(&mut s, max_length) {
            report.truncated.push(line);
        }
        out.push(EncodedExample { line, seq: s, scored: None, steps: 1 });
    })?;
    report.used = out.len();
    if out.is_empty() {
        bail!("{}: no usable examples ({report})", path.display());
    }
    Ok((out, report))
}

/// Writes tokenized pairs as JSONL (`prompt_ids`, `chosen_ids`, `rejected_ids`, `line`), the form
/// in which they are handed to TRL for side-by-side comparisons.
pub fn write_pair_ids(pairs: &[EncodedPair], path: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(keel_trajectory::private::create(path).with_context(|| format!("creating {}", path.display()))?);
    for p in pairs {
        if p.chosen.prompt != p.rejected.prompt {
            bail!("line {}: chosen and rejected have different prompt tokens", p.line);
        }
        let v = serde_json::json!({
            "line": p.line,
            "prompt_ids": p.chosen.prompt,
            "chosen_ids": p.chosen.completion,
            "rejected_ids": p.rejected.completion,
        });
        writeln!(f, "{v}")?;
    }
    f.flush()?;
    Ok(())
}
