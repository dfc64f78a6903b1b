//! The tools, one implementation each, over any [`Workspace`]; and every observation text the
//! agent shows the model.

use keel_trajectory::action::{TextEdit, locate_edit};
use keel_trajectory::{Observation, RejectCause};

use crate::workspace::{FileRead, MAX_FILE_BYTES, Workspace, skip_dir, under};

const MAX_MATCHES: usize = 100;
const MAX_FILES: usize = 20_000;

fn truncate(mut s: String, cap: usize) -> (String, bool) {
    if s.len() <= cap {
        return (s, false);
    }
    let mut cut = cap;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    (s, true)
}

fn failed(output: String, code: i32) -> Observation {
    Observation { output, exit_code: Some(code), ..Default::default() }
}

/// The text of `rel`, or the message the model is shown.
pub fn read_text(ws: &dyn Workspace, rel: &str) -> Result<String, String> {
    let shown = if rel.is_empty() { "." } else { rel };
    match ws.read(rel)? {
        FileRead::Text(t) => Ok(t),
        FileRead::Missing => Err(format!("`{shown}` does not exist")),
        FileRead::Directory => Err(format!("`{shown}` is a directory")),
        FileRead::TooLarge(n) => Err(format!("`{shown}` is too large to show ({n} bytes)")),
        FileRead::Binary => Err(format!("`{shown}` is not a text file")),
    }
}

/// `view_file`: the file's lines `start..=end` (1-based), numbered.
pub fn view_file(ws: &dyn Workspace, rel: &str, start: Option<u32>, end: Option<u32>, cap: usize) -> Observation {
    let text = match read_text(ws, rel) {
        Ok(t) => t,
        Err(e) => return failed(e, 1),
    };
    let total = text.lines().count().max(1);
    let s = start.unwrap_or(1).max(1) as usize;
    let e = end.map(|e| e as usize).unwrap_or(total).min(total);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().skip(s - 1).take(e.saturating_sub(s - 1)) {
        out.push_str(&format!("{:>5}| {line}\n", i + 1));
    }
    if out.is_empty() {
        out = format!("(`{rel}` has {total} lines; nothing in {s}..={e})");
    }
    let (output, truncated) = truncate(out, cap);
    Observation { output, exit_code: Some(0), truncated, duration_ms: None }
}

/// The file text a [`view_file`] answer shows, its line numbers taken off (`None` when `output`
/// is not such an answer). The inverse of `view_file`'s format, kept beside it.
pub fn viewed_lines(output: &str) -> Option<Vec<&str>> {
    let lines: Option<Vec<&str>> = output
        .lines()
        .map(|l| {
            let (n, text) = l.split_once("| ")?;
            n.trim_start().parse::<u32>().ok()?;
            Some(text)
        })
        .collect();
    lines.filter(|l| !l.is_empty())
}

/// The matched text of one line of a [`search`] answer (`path:12: text`; `None` when it is not
/// one). The path may itself hold colons: the text starts after the first `:<line>: `.
pub fn found_line(line: &str) -> Option<&str> {
    line.match_indices(':').find_map(|(i, _)| {
        let rest = &line[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (i > 0 && digits > 0).then(|| rest[digits..].strip_prefix(": ")).flatten()
    })
}

/// The files `search` looks through, in its order: every regular file under `base` up to
/// [`MAX_FILE_BYTES`], none inside a directory [`skip_dir`] names below the base, sorted by path
/// components (a directory's files before the next name).
pub fn search_files(ws: &dyn Workspace, base: &str) -> Result<Vec<String>, String> {
    let mut files: Vec<String> = ws
        .files(base)?
        .into_iter()
        .filter(|(rel, size)| {
            *size <= MAX_FILE_BYTES && under(base, rel) && {
                let below = rel[base.len()..].trim_start_matches('/');
                let mut dirs: Vec<&str> = below.split('/').collect();
                dirs.pop();
                !dirs.iter().any(|d| skip_dir(d))
            }
        })
        .map(|(rel, _)| rel)
        .collect();
    files.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    files.dedup();
    files.truncate(MAX_FILES);
    Ok(files)
}

/// `search`: lines matching a regular expression (or the pattern as plain text when it is not
/// one), as `path:line: text`.
pub fn search(ws: &dyn Workspace, pattern: &str, base: &str, cap: usize) -> Observation {
    let re = match regex::Regex::new(pattern) {
        Ok(r) => r,
        Err(_) => match regex::Regex::new(&regex::escape(pattern)) {
            Ok(r) => r,
            Err(e) => return failed(format!("invalid pattern: {e}"), 2),
        },
    };
    // A file as the base searches that file.
    let files = match ws.read(base) {
        Ok(FileRead::Text(_)) if !base.is_empty() => vec![base.to_string()],
        Ok(FileRead::Missing) if !base.is_empty() => return failed(format!("`{base}` does not exist"), 2),
        _ => match search_files(ws, base) {
            Ok(f) => f,
            Err(e) => return failed(e, 1),
        },
    };
    let mut out = String::new();
    let mut n = 0;
    'files: for f in files {
        let Ok(FileRead::Text(text)) = ws.read(&f) else { continue };
        for (i, line) in text.lines().enumerate() {
            if re.is_match(line) {
                let line = if line.len() > 300 { &line[..line.floor_char_boundary(300)] } else { line };
                out.push_str(&format!("{f}:{}: {line}\n", i + 1));
                n += 1;
                if n >= MAX_MATCHES {
                    out.push_str(&format!("(stopped at {MAX_MATCHES} matches)\n"));
                    break 'files;
                }
            }
        }
    }
    if n == 0 {
        out = format!("no matches for `{pattern}`");
    }
    let (output, truncated) = truncate(out, cap);
    Observation { output, exit_code: Some(if n == 0 { 1 } else { 0 }), truncated, duration_ms: None }
}

/// An `edit` located in the file as it is now.
#[derive(Debug, Clone)]
pub struct PreparedEdit {
    /// The file's text before the edit.
    pub original: String,
    pub edit: TextEdit,
}

impl PreparedEdit {
    pub fn proposed(&self) -> String {
        self.edit.apply(&self.original)
    }
}

/// Locates an `edit` (old_text must occur exactly once; an empty old_text creates a new file or
/// fills an empty one), or says why it cannot be proposed.
pub fn prepare_edit(ws: &dyn Workspace, rel: &str, old_text: &str, new_text: &str) -> Result<PreparedEdit, (RejectCause, String)> {
    let original = match ws.read(rel).map_err(|e| (RejectCause::OldTextNotFound, e))? {
        FileRead::Text(t) => t,
        FileRead::Missing if old_text.is_empty() => String::new(),
        FileRead::Missing => return Err((RejectCause::OldTextNotFound, format!("`{rel}` does not exist"))),
        other => {
            let msg = read_text(ws, rel).err().unwrap_or_else(|| format!("`{rel}` cannot be edited ({other:?})"));
            return Err((RejectCause::OldTextNotFound, msg));
        }
    };
    let edit = locate_edit(&original, old_text, new_text).map_err(|e| (e.cause(), e.to_string()))?;
    Ok(PreparedEdit { original, edit })
}

/// Carries out an `edit` in the workspace (search rollouts, evaluation); the observation is the one
/// the editor shows after the user accepted it.
pub fn apply_edit(ws: &dyn Workspace, rel: &str, old_text: &str, new_text: &str) -> Result<Observation, (RejectCause, String)> {
    let p = prepare_edit(ws, rel, old_text, new_text)?;
    ws.write(rel, &p.proposed()).map_err(|e| (RejectCause::NotApplied, e))?;
    Ok(edit_applied(rel))
}

// The observations, each written once.

pub fn edit_applied(rel: &str) -> Observation {
    Observation { output: format!("The edit to {rel} was applied."), exit_code: Some(0), ..Default::default() }
}

/// The file an [`edit_applied`] answer names (`None` when `output` is not one). Its inverse, kept
/// beside it.
pub fn applied_edit_path(output: &str) -> Option<&str> {
    output.strip_prefix("The edit to ")?.strip_suffix(" was applied.")
}

pub fn user_rejected(reason: Option<&str>) -> Observation {
    let output = match reason {
        Some(r) if !r.trim().is_empty() => format!("The user rejected this. Reason: {r}"),
        _ => "The user rejected this.".to_string(),
    };
    failed(output, 1)
}

/// What the model is shown after an automatic rejection.
pub fn rejected(cause: RejectCause, message: &str) -> Observation {
    match cause {
        RejectCause::InvalidToolCall | RejectCause::UnknownTool => {
            failed(format!("error: {message}. Call exactly one of the tools with valid arguments."), 2)
        }
        RejectCause::Loop => failed("You already did exactly this. Do something different.".into(), 2),
        RejectCause::OutsideWorkspace => failed(format!("refused: {message}"), 2),
        RejectCause::OldTextNotFound | RejectCause::OldTextAmbiguous | RejectCause::EmptyEdit => {
            failed(format!("The edit was not proposed: {message}"), 1)
        }
        RejectCause::NotApplied => failed(format!("The edit could not be applied: {message}"), 1),
        RejectCause::NoSandbox | RejectCause::User | RejectCause::Retry => failed(message.to_string(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EditorWorkspace;

    #[test]
    fn view_and_search_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "x = 1\ny = 2\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sub/.hidden")).unwrap();
        std::fs::create_dir_all(dir.path().join("sub/__pycache__")).unwrap();
        std::fs::write(dir.path().join("sub/b.py"), "y = 3\n").unwrap();
        std::fs::write(dir.path().join("sub/.hidden/c.py"), "y = 4\n").unwrap();
        std::fs::write(dir.path().join("sub/__pycache__/d.py"), "y = 5\n").unwrap();
        std::fs::write(dir.path().join("a"), "y = 0\n").unwrap();
        let ws = EditorWorkspace::new(dir.path(), vec![]);
        let o = view_file(&ws, "a.py", Some(2), None, 1000);
        assert_eq!(o.output, "    2| y = 2\n");
        let o = view_file(&ws, "nope.py", None, None, 1000);
        assert_eq!((o.output.as_str(), o.exit_code), ("`nope.py` does not exist", Some(1)));
        let o = search(&ws, "y = \\d", "", 1000);
        assert_eq!(o.output, "a:1: y = 0\na.py:2: y = 2\nsub/b.py:1: y = 3\n");
        let o = search(&ws, "y = \\d", "sub/b.py", 1000);
        assert_eq!(o.output, "sub/b.py:1: y = 3\n");
        // Each answer's format read back.
        assert_eq!(viewed_lines(&view_file(&ws, "a.py", None, None, 1000).output), Some(vec!["x = 1", "y = 2"]));
        assert_eq!(viewed_lines("`a.py` has 2 lines; nothing in 5..=6"), None);
        assert_eq!(found_line("a.py:2: y = 2"), Some("y = 2"));
        assert_eq!(found_line("c:/x:y.py:12: a: b"), Some("a: b"));
        assert_eq!(found_line("Traceback: 12| no"), None);
        // The editor's unsaved text wins over the disk.
        let ws = EditorWorkspace::new(dir.path(), vec![(dir.path().join("a.py"), "z = 9\n".to_string())]);
        let o = search(&ws, "z = 9", "", 1000);
        assert_eq!(o.output, "a.py:1: z = 9\n");
        let o = search(&ws, "(unclosed", "", 1000);
        assert!(o.output.starts_with("no matches"));
        let o = view_file(&ws, "a.py", None, None, 3);
        assert!(o.truncated);
        // Edits: located once, applied to the overlay's text.
        let p = prepare_edit(&ws, "a.py", "z = 9", "z = 10").unwrap();
        assert_eq!(p.proposed(), "z = 10\n");
        assert_eq!(prepare_edit(&ws, "a.py", "q", "r").unwrap_err().0, RejectCause::OldTextNotFound);
        assert_eq!(prepare_edit(&ws, "new.py", "", "n = 1\n").unwrap().proposed(), "n = 1\n");
    }
}
