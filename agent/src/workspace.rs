//! What the tools need from a workspace. Two implementations: the editor's (disk overlaid by the
//! open buffers) and a container's. Paths are relative to the workspace root, `/`-separated and
//! normalised by [`normalize_path`].

use keel_trajectory::Observation;
use keel_trajectory::action::OutsideWorkspace;

/// Observations of reads are cut at this many bytes unless configured otherwise (the editor's
/// `limits.max_observation_bytes`; search and evaluation use the same default).
pub const DEFAULT_OBSERVATION_BYTES: usize = 16 * 1024;

/// Files larger than this are not read by the tools.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A file as the tools see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    Text(String),
    Missing,
    Directory,
    TooLarge(u64),
    /// Not UTF-8.
    Binary,
}

pub trait Workspace {
    /// The root as an absolute path, so absolute paths the model gives inside it are accepted.
    fn root_hint(&self) -> Option<&str> {
        None
    }
    /// The path the tools use for a normalised path the model gave: a name that is another
    /// Unicode normalisation form of an existing entry (NFD `café` for an NFC `café` on disk, as
    /// macOS and text copied from it write them) becomes that entry's name, so the tools read and
    /// edit the file the model means — as a normalising file system would — instead of a missing
    /// look-alike or a second file. Refuses a path that then leaves the workspace another way (a
    /// symbolic link), that names an existing file by another case (a case-insensitive file system
    /// or a replay there would take it for that file, or for a link of that name), or whose name
    /// matches several entries. The message is shown to the model.
    fn check(&self, rel: &str) -> Result<String, String> {
        Ok(rel.to_string())
    }
    /// The file at `rel` (normalised) as it is now.
    fn read(&self, rel: &str) -> Result<FileRead, String>;
    /// The regular files under `base` (normalised, `""` = the root), relative to the root, each
    /// with its size. Directories that [`skip_dir`] names may be left out (they are filtered
    /// again by the caller); the order does not matter.
    fn files(&self, base: &str) -> Result<Vec<(String, u64)>, String>;
    /// Replaces the whole text of `rel` (creating it and its parents).
    fn write(&self, rel: &str, text: &str) -> Result<(), String>;
    /// Runs a shell command from the workspace root — in a container, never on the host.
    fn run(&self, command: &str) -> Observation;
}

/// Directories the search tool never enters (below its base).
pub fn skip_dir(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "target" | "node_modules" | "__pycache__" | "dist" | "build" | "venv")
}

/// Characters that read as `.`, `/` or `\\` — their compatibility (NFKC) form is one, or they are
/// drawn like one. A path with one could mean `..` or another directory to a person, to a file
/// system or a tool that normalises names, or on another platform; the tools refuse it.
fn look_alike(c: char) -> bool {
    matches!(
        c,
        '\\' // a separator on Windows
            | '\u{2024}' | '\u{2025}' | '\u{2026}' // one and two dot leader, ellipsis: NFKC `.`, `..`, `...`
            | '\u{FE52}' | '\u{FF0E}' // small and fullwidth full stop: NFKC `.`
            | '\u{FF0F}' | '\u{FF3C}' | '\u{FE68}' // fullwidth solidus and reverse solidus, small reverse solidus
            | '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{29F9}' // division and fraction slash, big solidus and reverse
    )
}

/// A path the model gave, relative to the workspace root and normalised (`a/./b/../c` → `a/c`);
/// `""` for the root itself. `..` that leaves the root, absolute paths, NUL bytes, empty paths and
/// look-alikes of `.`, `/` and `\\` are refused. Absolute paths inside `root` (when given) are
/// made relative.
pub fn normalize_path(path: &str, root: Option<&str>) -> Result<String, OutsideWorkspace> {
    let outside = || OutsideWorkspace { path: path.to_string() };
    if path.is_empty() || path.contains('\0') || path.chars().any(look_alike) {
        return Err(outside());
    }
    let rel = if path.starts_with('/') {
        let root = root.ok_or_else(outside)?.trim_end_matches('/');
        match path.strip_prefix(root) {
            Some("") => "",
            Some(rest) if rest.starts_with('/') => &rest[1..],
            _ => return Err(outside()),
        }
    } else {
        path
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(outside());
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// `name` under NFC, the form the tools compare names in.
pub(crate) fn nfc(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfc().collect()
}

/// The entry of `entries` that `name` means: `name` itself when it is one, else the one entry with
/// the same NFC form; `Ok(None)` when there is none; `Err` when several match.
pub(crate) fn same_name<'a>(name: &str, entries: impl IntoIterator<Item = &'a str>) -> Result<Option<&'a str>, String> {
    let want = nfc(name);
    let mut found: Vec<&str> = Vec::new();
    for e in entries {
        if e == name {
            return Ok(Some(e));
        }
        if nfc(e) == want {
            found.push(e);
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(format!("`{name}` matches several entries that differ only in their Unicode form ({}); use the exact name", found.join(", "))),
    }
}

/// `b` is `a` or below it.
pub(crate) fn under(base: &str, rel: &str) -> bool {
    base.is_empty() || rel == base || rel.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths_inside_the_root() {
        assert_eq!(normalize_path("src/./a/../b.py", None).unwrap(), "src/b.py");
        assert_eq!(normalize_path(".", None).unwrap(), "");
        assert_eq!(normalize_path("/work/x.py", Some("/work")).unwrap(), "x.py");
        assert!(normalize_path("../etc/passwd", None).is_err());
        assert!(normalize_path("/etc/passwd", Some("/work")).is_err());
        assert!(normalize_path("/workspace/x", Some("/work")).is_err());
        assert!(normalize_path("", None).is_err());
        assert!(under("src", "src/a.py") && under("", "a.py") && !under("src", "srcx/a.py"));
    }

    #[test]
    fn look_alikes_of_dots_and_slashes_are_refused() {
        // Each reads as (or normalises under NFKC to) a path that leaves the root.
        for p in ["..\u{FF0F}etc/passwd", "\u{FF0E}\u{FF0E}/etc/passwd", "\u{2025}/etc/passwd", "a/\u{FE52}\u{FE52}/../../x", "..\\..\\x", "..\u{2215}x", "\u{FF0F}etc\u{FF0F}passwd"] {
            assert!(normalize_path(p, None).is_err(), "{p:?} was accepted");
        }
        // Other non-ASCII names are fine.
        assert_eq!(normalize_path("src/café/数据.py", None).unwrap(), "src/café/数据.py");
    }
}
