//! What a container starts from: a workspace as files, a host directory, or a git commit, plus an
//! optional patch (`git diff` of the uncommitted changes) applied inside the container.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use keel_trajectory::VcsState;

use crate::{Error, Result};

#[derive(Debug, Clone)]
enum Source {
    Files(BTreeMap<String, Vec<u8>>),
    Dir(PathBuf),
    Git {
        repo: PathBuf,
        commit: String,
        extra: BTreeMap<String, Vec<u8>>,
    },
}

/// A workspace to copy into `/work`. Built cheaply; the tar is made when a container starts.
#[derive(Debug, Clone)]
pub struct WorkspaceSnapshot {
    source: Source,
    patch: Option<String>,
}

impl Default for WorkspaceSnapshot {
    fn default() -> Self {
        Self {
            source: Source::Files(BTreeMap::new()),
            patch: None,
        }
    }
}

impl WorkspaceSnapshot {
    /// Files by path relative to the workspace root (`src/lib.rs` → `/work/src/lib.rs`).
    pub fn from_files<P: Into<String>, B: Into<Vec<u8>>>(
        files: impl IntoIterator<Item = (P, B)>,
    ) -> Self {
        let files = files
            .into_iter()
            .map(|(p, b)| (p.into(), b.into()))
            .collect();
        Self {
            source: Source::Files(files),
            patch: None,
        }
    }

    /// A host directory, copied whole except `.git` (symbolic links are copied as links).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::Dir(dir.into()),
            patch: None,
        }
    }

    /// The recorded state of an episode's workspace: `commit` from the git repository at `repo`
    /// (`git archive`), the untracked files, then the patch of uncommitted changes.
    pub fn from_vcs(repo: impl Into<PathBuf>, vcs: &VcsState) -> Self {
        let extra = vcs
            .untracked
            .iter()
            .map(|f| (f.path.clone(), f.content.clone().into_bytes()))
            .collect();
        let patch = (!vcs.patch.trim().is_empty()).then(|| vcs.patch.clone());
        Self {
            source: Source::Git {
                repo: repo.into(),
                commit: vcs.commit.clone(),
                extra,
            },
            patch,
        }
    }

    /// A unified diff (`git diff`, paths `a/…` `b/…`) applied with `patch -p1` in `/work` after the
    /// files are copied in.
    pub fn with_patch(mut self, patch: impl Into<String>) -> Self {
        self.patch = Some(patch.into());
        self
    }

    pub fn patch(&self) -> Option<&str> {
        self.patch.as_deref()
    }

    /// The workspace as a tar whose entries are relative to `/work`.
    pub fn to_tar(&self) -> Result<Vec<u8>> {
        match &self.source {
            Source::Files(files) => files_tar(files, None),
            Source::Dir(dir) => files_tar(&BTreeMap::new(), Some(dir_tar(dir)?)),
            Source::Git {
                repo,
                commit,
                extra,
            } => {
                let out = Command::new("git")
                    .arg("-C")
                    .arg(repo)
                    .args(["archive", "--format=tar", commit])
                    .output()
                    .map_err(|e| {
                        Error::Snapshot(format!("cannot run git in {}: {e}", repo.display()))
                    })?;
                if !out.status.success() {
                    return Err(Error::Snapshot(format!(
                        "`git archive {commit}` in {} failed: {}",
                        repo.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                files_tar(extra, Some(out.stdout))
            }
        }
    }
}

/// A path inside the workspace, relative and normalised; `..` that would leave it, absolute paths
/// outside `/work`, empty paths and NUL bytes are refused.
pub fn relative_path(path: &str) -> Result<String> {
    let outside = || Error::OutsideWorkspace(path.to_string());
    if path.is_empty() || path.contains('\0') {
        return Err(outside());
    }
    let p = Path::new(path);
    let rel = if p.is_absolute() {
        p.strip_prefix(crate::WORKDIR).map_err(|_| outside())?
    } else {
        p
    };
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(outside)?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(outside)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(parts.join("/"))
}

fn io_err(e: std::io::Error) -> Error {
    Error::Snapshot(format!("building the workspace tar: {e}"))
}

/// `files` (appended after the entries of `base`, which win on nothing: later entries overwrite).
pub(crate) fn files_tar(
    files: &BTreeMap<String, Vec<u8>>,
    base: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    if let Some(base) = base {
        let mut archive = tar::Archive::new(std::io::Cursor::new(base));
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            // `git archive` adds a global pax header with the commit id; it is no file.
            if matches!(
                entry.header().entry_type(),
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
            ) {
                continue;
            }
            let mut h = entry.header().clone();
            owned_by_sandbox_user(&mut h);
            let path = entry.path().map_err(io_err)?.to_path_buf();
            b.append_data(&mut h, path, &mut entry).map_err(io_err)?;
        }
    }
    for (path, data) in files {
        let rel = relative_path(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        owned_by_sandbox_user(&mut h);
        b.append_data(&mut h, rel, data.as_slice())
            .map_err(io_err)?;
    }
    b.into_inner().map_err(io_err)
}

/// Entries belong to `nobody`, the user commands run as, so they can change them (the upload
/// keeps the tar's owners).
fn owned_by_sandbox_user(h: &mut tar::Header) {
    h.set_uid(65534);
    h.set_gid(65534);
    let _ = h.set_username("nobody");
    let _ = h.set_groupname("nogroup");
}

fn dir_tar(dir: &Path) -> Result<Vec<u8>> {
    if !dir.is_dir() {
        return Err(Error::Snapshot(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&abs)
            .map_err(io_err)?
            .collect::<std::io::Result<_>>()
            .map_err(io_err)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            if name == ".git" {
                continue;
            }
            let r = rel.join(&name);
            let ty = e.file_type().map_err(io_err)?;
            if ty.is_dir() {
                b.append_dir(&r, e.path()).map_err(io_err)?;
                stack.push(r);
            } else {
                b.append_path_with_name(e.path(), &r).map_err(io_err)?;
            }
        }
    }
    b.into_inner().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(relative_path("src/./lib.rs").unwrap(), "src/lib.rs");
        assert_eq!(relative_path("/work/a/../b").unwrap(), "b");
        assert!(relative_path("../etc/passwd").is_err());
        assert!(relative_path("/etc/passwd").is_err());
        assert!(relative_path("a/../../x").is_err());
        assert!(relative_path("").is_err());
        assert!(relative_path(".").is_err());
    }

    #[test]
    fn file_tars_list_their_files() {
        let s = WorkspaceSnapshot::from_files([("a.txt", "A"), ("d/b.txt", "B")]);
        let tar = s.to_tar().unwrap();
        let mut a = tar::Archive::new(std::io::Cursor::new(tar));
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "d/b.txt"]);
        let bad = WorkspaceSnapshot::from_files([("../x", "")]);
        assert!(matches!(bad.to_tar(), Err(Error::OutsideWorkspace(_))));
    }
}
