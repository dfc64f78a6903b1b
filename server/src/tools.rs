//! The read-only tools, carried out at once: `view_file` and `search`. Paths always go through
//! [`keel_trajectory::action::workspace_path`], so nothing outside the workspace root is read.

use std::path::{Path, PathBuf};

use keel_trajectory::Observation;
use keel_trajectory::action::workspace_path;

/// Files larger than this are not read by the tools.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
const MAX_MATCHES: usize = 100;
const MAX_FILES: usize = 20_000;

/// Text of open documents, by absolute path (what the editor shows wins over the disk).
pub type OpenTexts = Vec<(PathBuf, String)>;

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

pub fn read_text(root: &Path, rel: &str, open: &OpenTexts) -> Result<(PathBuf, String), String> {
    let path = workspace_path(root, rel).map_err(|e| e.to_string())?;
    if let Some((_, t)) = open.iter().find(|(p, _)| *p == path) {
        return Ok((path, t.clone()));
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    if meta.is_dir() {
        return Err(format!("`{rel}` is a directory"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("`{rel}` is too large to show ({} bytes)", meta.len()));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{rel}` is not a text file"))?;
    Ok((path, text))
}

pub fn view_file(root: &Path, rel: &str, start: Option<u32>, end: Option<u32>, open: &OpenTexts, cap: usize) -> Observation {
    match read_text(root, rel, open) {
        Err(e) => Observation { output: e, exit_code: Some(1), ..Default::default() },
        Ok((_, text)) => {
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
    }
}

fn skip_dir(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "target" | "node_modules" | "__pycache__" | "dist" | "build" | "venv")
}

pub fn search(root: &Path, pattern: &str, rel: Option<&str>, open: &OpenTexts, cap: usize) -> Observation {
    let re = match regex::Regex::new(pattern) {
        Ok(r) => r,
        Err(_) => match regex::Regex::new(&regex::escape(pattern)) {
            Ok(r) => r,
            Err(e) => return Observation { output: format!("invalid pattern: {e}"), exit_code: Some(2), ..Default::default() },
        },
    };
    let base = match rel {
        Some(r) if !r.is_empty() && r != "." => match workspace_path(root, r) {
            Ok(p) => p,
            Err(e) => return Observation { output: e.to_string(), exit_code: Some(2), ..Default::default() },
        },
        _ => root.to_path_buf(),
    };
    let mut files = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(p) = stack.pop() {
        if files.len() >= MAX_FILES {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if p != base && p.file_name().and_then(|n| n.to_str()).is_some_and(skip_dir) {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                entries.sort();
                stack.extend(entries.into_iter().rev());
            }
        } else if meta.is_file() && meta.len() <= MAX_FILE_BYTES {
            files.push(p);
        }
    }
    let mut out = String::new();
    let mut n = 0;
    'files: for f in files {
        let text = match open.iter().find(|(p, _)| *p == f) {
            Some((_, t)) => t.clone(),
            None => match std::fs::read(&f).ok().and_then(|b| String::from_utf8(b).ok()) {
                Some(t) => t,
                None => continue,
            },
        };
        let shown = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        for (i, line) in text.lines().enumerate() {
            if re.is_match(line) {
                let line = if line.len() > 300 { &line[..line.floor_char_boundary(300)] } else { line };
                out.push_str(&format!("{shown}:{}: {line}\n", i + 1));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_and_search_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "x = 1\ny = 2\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.py"), "y = 3\n").unwrap();
        let o = view_file(dir.path(), "a.py", Some(2), None, &vec![], 1000);
        assert_eq!(o.output, "    2| y = 2\n");
        let o = view_file(dir.path(), "../etc/passwd", None, None, &vec![], 1000);
        assert!(o.output.contains("outside the workspace"), "{}", o.output);
        let o = search(dir.path(), "y = \\d", None, &vec![], 1000);
        assert_eq!(o.output, "a.py:2: y = 2\nsub/b.py:1: y = 3\n");
        // The editor's unsaved text wins over the disk.
        let open = vec![(dir.path().join("a.py"), "z = 9\n".to_string())];
        let o = search(dir.path(), "z = 9", None, &open, 1000);
        assert_eq!(o.output, "a.py:1: z = 9\n");
        let o = search(dir.path(), "(unclosed", None, &vec![], 1000);
        assert!(o.output.starts_with("no matches"));
        let o = view_file(dir.path(), "a.py", None, None, &vec![], 8);
        assert!(o.truncated);
    }
}
