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
    /// Refuses a normalised path that leaves the workspace another way (a symbolic link).
    fn check(&self, _rel: &str) -> Result<(), OutsideWorkspace> {
        Ok(())
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

/// A path the model gave, relative to the workspace root and normalised (`a/./b/../c` → `a/c`);
/// `""` for the root itself. `..` that leaves the root, absolute paths, NUL bytes and empty paths
/// are refused. Absolute paths inside `root` (when given) are made relative.
pub fn normalize_path(path: &str, root: Option<&str>) -> Result<String, OutsideWorkspace> {
    let outside = || OutsideWorkspace { path: path.to_string() };
    if path.is_empty() || path.contains('\0') {
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
}
