//! The editor's workspace: the files on disk, overlaid by the editor's open buffers (what the user
//! sees wins, saved or not); `run` executes in a sandbox container made from the same view — never
//! on the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_sandbox::{Sandbox, SandboxConfig, WorkspaceSnapshot};
use keel_trajectory::action::workspace_path;
use keel_trajectory::{FileSnapshot, Observation, VcsState};

use crate::workspace::{FileRead, MAX_FILE_BYTES, Workspace, skip_dir};

/// Where accepted commands run.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The Docker Engine API socket (`unix:///…`, `tcp://…`).
    pub socket: String,
    /// The image; `None` for the sandbox's base image.
    pub image: Option<String>,
}

pub struct EditorWorkspace {
    root: PathBuf,
    root_str: Option<String>,
    /// Open documents by absolute path.
    open: Vec<(PathBuf, String)>,
    sandbox: Option<SandboxSpec>,
}

impl EditorWorkspace {
    pub fn new(root: &Path, open: Vec<(PathBuf, String)>) -> EditorWorkspace {
        EditorWorkspace { root: root.to_path_buf(), root_str: root.to_str().map(str::to_string), open, sandbox: None }
    }

    pub fn with_sandbox(mut self, sandbox: Option<SandboxSpec>) -> EditorWorkspace {
        self.sandbox = sandbox;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of a normalised relative path, links followed and checked.
    pub fn abs(&self, rel: &str) -> Result<PathBuf, String> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        workspace_path(&self.root, rel).map_err(|e| e.to_string())
    }

    fn open_text(&self, abs: &Path) -> Option<&str> {
        self.open.iter().find(|(p, _)| p == abs).map(|(_, t)| t.as_str())
    }

    /// Open buffers inside the root, by relative path. A buffer whose path leaves the root through
    /// a link (the user opened `link/secret` with `link` pointing out) is not the workspace's: it
    /// is neither listed nor copied into the sandbox.
    fn open_files(&self) -> Vec<(String, &str)> {
        let root_real = self.root.canonicalize().unwrap_or_else(|_| self.root.clone());
        self.open
            .iter()
            .filter_map(|(p, t)| {
                let rel = p.strip_prefix(&self.root).or_else(|_| p.strip_prefix(&root_real)).ok()?;
                let rel = rel.to_str()?.replace('\\', "/");
                self.abs(&rel).is_ok().then_some((rel, t.as_str()))
            })
            .collect()
    }
}

impl Workspace for EditorWorkspace {
    fn root_hint(&self) -> Option<&str> {
        self.root_str.as_deref()
    }

    fn check(&self, rel: &str) -> Result<String, String> {
        // Only for the paths the model gives: the names the tools list come from the directories
        // themselves (and a listing per name would make a search quadratic).
        let rel = on_disk(&self.root, rel)?;
        // The name on disk is what is checked: an NFD spelling of a link out is refused as the link.
        self.abs(&rel)?;
        match case_twin(&self.root, &rel) {
            Some(twin) => Err(format!("`{rel}` differs only by case from `{twin}`, which exists; use the exact name")),
            None => Ok(rel),
        }
    }

    fn read(&self, rel: &str) -> Result<FileRead, String> {
        let abs = self.abs(rel)?;
        if let Some(t) = self.open_text(&abs) {
            return Ok(FileRead::Text(t.to_string()));
        }
        let meta = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileRead::Missing),
            Err(e) => return Err(format!("cannot read `{rel}`: {e}")),
        };
        if meta.is_dir() {
            return Ok(FileRead::Directory);
        }
        if !meta.is_file() {
            return Err(format!("`{rel}` is not a regular file"));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Ok(FileRead::TooLarge(meta.len()));
        }
        let bytes = std::fs::read(&abs).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        Ok(String::from_utf8(bytes).map(FileRead::Text).unwrap_or(FileRead::Binary))
    }

    fn files(&self, base: &str) -> Result<Vec<(String, u64)>, String> {
        let start = self.abs(base)?;
        let mut out = Vec::new();
        let mut stack = vec![start.clone()];
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                if p != start && p.file_name().and_then(|n| n.to_str()).is_some_and(skip_dir) {
                    continue;
                }
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else if meta.is_file() {
                let Some(rel) = p.strip_prefix(&self.root).ok().and_then(Path::to_str) else { continue };
                let rel = rel.replace('\\', "/");
                let size = self.open_text(&p).map(|t| t.len() as u64).unwrap_or(meta.len());
                out.push((rel, size));
            }
        }
        // Open buffers not yet on disk (a new file the user has not saved).
        for (rel, text) in self.open_files() {
            if !out.iter().any(|(r, _)| *r == rel) {
                out.push((rel, text.len() as u64));
            }
        }
        Ok(out)
    }

    fn write(&self, rel: &str, text: &str) -> Result<(), String> {
        // The editor applies accepted edits itself (workspace/applyEdit); the agent never writes
        // the user's files behind the editor's back.
        Err(format!("the editor's workspace is changed by the editor, not the agent (`{rel}`, {} bytes)", text.len()))
    }

    fn run(&self, command: &str) -> Observation {
        let fail = |e: String| Observation { output: format!("sandbox error: {e}"), exit_code: None, ..Default::default() };
        let Some(spec) = &self.sandbox else {
            return Observation {
                output: format!("`{command}` was not run: no sandbox is configured, and Keel never runs commands on your machine"),
                exit_code: None,
                ..Default::default()
            };
        };
        // In a git repository: the commit, the uncommitted changes and the untracked files that are
        // not ignored (so build output and virtual environments stay out); else the directory.
        // Then the open buffers, so an accepted edit the user has not saved is there too.
        let snapshot = match git_snapshot(&self.root) {
            Some(vcs) => WorkspaceSnapshot::from_vcs(&self.root, &vcs),
            None => WorkspaceSnapshot::from_dir(&self.root),
        };
        let overlay: Vec<(String, Vec<u8>)> = self.open_files().into_iter().map(|(r, t)| (r, t.as_bytes().to_vec())).collect();
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return fail(e.to_string()),
        };
        rt.block_on(async {
            let config = SandboxConfig { socket: Some(spec.socket.clone()), image: spec.image.clone(), ..Default::default() };
            let sandbox = match Sandbox::connect(config).await {
                Ok(s) => s,
                Err(e) => return fail(e.to_string()),
            };
            clean_up_once(&sandbox, &spec.socket).await;
            let container = match sandbox.start(&snapshot).await {
                Ok(c) => c,
                Err(e) => return fail(e.to_string()),
            };
            for (rel, bytes) in &overlay {
                if let Err(e) = container.write_file(rel, bytes).await {
                    let _ = container.remove().await;
                    return fail(format!("copying the open buffer {rel}: {e}"));
                }
            }
            let out = match container.exec(command).await {
                Ok(r) => r.to_observation(),
                Err(e) => fail(e.to_string()),
            };
            let _ = container.remove().await;
            out
        })
    }
}

/// The first time this process reaches the engine at `socket`: remove the containers that Keel
/// processes now gone left there (a keel-lsp killed with `kill -9` mid-command, one whose engine
/// stopped under it); they would otherwise run out their lifetime. Containers of live processes are
/// left alone. A failure is logged, and the command runs anyway.
async fn clean_up_once(sandbox: &Sandbox, socket: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if done.iter().any(|s| s == socket) {
            return;
        }
        done.push(socket.to_string());
    }
    match sandbox.cleanup_orphans().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("sandbox: removed {n} container(s) left by Keel processes that are gone"),
        Err(e) => tracing::warn!("sandbox: could not remove containers left by earlier processes: {e}"),
    }
}

/// `rel` (normalised) with each name that is another Unicode form of an existing entry replaced by
/// that entry's name, up to the first name that matches nothing (it and the rest stay as given).
fn on_disk(root: &Path, rel: &str) -> Result<String, String> {
    if rel.is_ascii() {
        return Ok(rel.to_string());
    }
    let mut dir = root.to_path_buf();
    let mut out: Vec<String> = Vec::new();
    let mut names = rel.split('/');
    for name in names.by_ref() {
        let entries: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect(),
            Err(_) => Vec::new(),
        };
        let found = crate::workspace::same_name(name, entries.iter().map(String::as_str)).map_err(|e| format!("`{rel}`: {e}"))?;
        match found {
            Some(e) => {
                out.push(e.to_string());
                dir.push(e);
            }
            None => {
                out.push(name.to_string());
                break;
            }
        }
    }
    out.extend(names.map(str::to_string));
    Ok(out.join("/"))
}

/// The first name along `rel` (normalised) that is missing from its directory while an entry there
/// differs from it only by case, as a path relative to `root`. On a case-insensitive file system
/// (or a replay on one) such a name opens that entry — which may be a link out of the workspace
/// that [`workspace_path`] did not see under the name given.
fn case_twin(root: &Path, rel: &str) -> Option<String> {
    let mut dir = root.to_path_buf();
    let mut seen: Vec<&str> = Vec::new();
    for name in rel.split('/') {
        let entries: Vec<String> = std::fs::read_dir(&dir).ok()?.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        if !entries.iter().any(|e| e == name) {
            let lower = name.to_lowercase();
            let twin = entries.into_iter().find(|e| e.to_lowercase() == lower)?;
            seen.push(&twin);
            return Some(seen.join("/"));
        }
        seen.push(name);
        dir.push(name);
    }
    None
}

/// Runs git with a time limit; `None` when it fails or takes too long.
fn git(root: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let child = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(Duration::from_secs(10)).ok()?.ok()?;
    out.status.success().then_some(out.stdout)
}

/// The patch of uncommitted changes above this size is left out of a snapshot.
pub const MAX_PATCH_BYTES: usize = 2 * 1024 * 1024;
/// At most this many untracked files, each at most [`MAX_UNTRACKED_BYTES`], go into a snapshot.
pub const MAX_UNTRACKED_FILES: usize = 64;
pub const MAX_UNTRACKED_BYTES: u64 = 256 * 1024;

/// Commit, uncommitted changes and untracked files (not ignored), so a container can rebuild the
/// workspace; what is over the limits is left out and named in `left_out`. Blocking: call it off
/// an async runtime's workers.
pub fn git_snapshot(root: &Path) -> Option<VcsState> {
    let commit = String::from_utf8(git(root, &["rev-parse", "HEAD"])?).ok()?.trim().to_string();
    let mut left_out = Vec::new();
    let patch = git(root, &["diff", "--binary", "HEAD"]).unwrap_or_default();
    let patch = if patch.len() > MAX_PATCH_BYTES {
        left_out.push(format!("the uncommitted changes ({} bytes, over {MAX_PATCH_BYTES})", patch.len()));
        String::new()
    } else {
        String::from_utf8_lossy(&patch).into_owned()
    };
    let list = git(root, &["ls-files", "--others", "--exclude-standard", "-z"]).unwrap_or_default();
    let mut untracked = Vec::new();
    let names: Vec<&[u8]> = list.split(|b| *b == 0).filter(|n| !n.is_empty()).collect();
    if names.len() > MAX_UNTRACKED_FILES {
        left_out.push(format!("{} of {} untracked files (at most {MAX_UNTRACKED_FILES} are kept)", names.len() - MAX_UNTRACKED_FILES, names.len()));
    }
    for name in names.into_iter().take(MAX_UNTRACKED_FILES) {
        let name = String::from_utf8_lossy(name).into_owned();
        let p = root.join(&name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() <= MAX_UNTRACKED_BYTES => match std::fs::read_to_string(&p) {
                Ok(content) => untracked.push(FileSnapshot { path: name, content }),
                Err(e) => left_out.push(format!("untracked {name} ({e})")),
            },
            Ok(m) if m.is_file() => left_out.push(format!("untracked {name} ({} bytes, over {MAX_UNTRACKED_BYTES})", m.len())),
            Ok(_) => left_out.push(format!("untracked {name} (not a regular file)")),
            Err(e) => left_out.push(format!("untracked {name} ({e})")),
        }
    }
    for l in &left_out {
        tracing::warn!("the snapshot of {} leaves out {l}", root.display());
    }
    Some(VcsState { kind: "git".into(), commit, patch, untracked, left_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git").arg("-C").arg(dir).args(args).stdout(std::process::Stdio::null()).status().unwrap().success();
        assert!(ok, "git {args:?}");
    }

    /// An open buffer reached through a link out of the root is not the workspace's: the search's
    /// file list and the sandbox's overlay leave it out; one inside is in both.
    #[test]
    fn open_buffers_through_a_link_out_are_not_the_workspaces() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("ws"), dir.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let open = vec![(root.join("link/secret.txt"), "secret\n".to_string()), (root.join("new.py"), "x = 1\n".to_string())];
        let ws = EditorWorkspace::new(&root, open);
        let overlay: Vec<String> = ws.open_files().into_iter().map(|(r, _)| r).collect();
        assert_eq!(overlay, ["new.py"]);
        let listed: Vec<String> = ws.files("").unwrap().into_iter().map(|(r, _)| r).collect();
        assert_eq!(listed, ["new.py"]);
    }

    /// A snapshot over the limits says what it left out; one within them leaves nothing out.
    #[test]
    fn a_partial_snapshot_says_what_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git_in(root, &["init", "-q"]);
        std::fs::write(root.join("a.txt"), "a\n").unwrap();
        git_in(root, &["add", "a.txt"]);
        git_in(root, &["-c", "user.email=k@e", "-c", "user.name=k", "commit", "-qm", "init"]);
        std::fs::write(root.join("new.txt"), "small\n").unwrap();
        let v = git_snapshot(root).unwrap();
        assert_eq!((v.untracked.len(), v.left_out.len()), (1, 0), "{:?}", v.left_out);
        // A big untracked file, more untracked files than kept, and a patch over the limit.
        std::fs::write(root.join("big.txt"), "x".repeat(MAX_UNTRACKED_BYTES as usize + 1)).unwrap();
        for i in 0..MAX_UNTRACKED_FILES {
            std::fs::write(root.join(format!("u{i:03}.txt")), "u\n").unwrap();
        }
        std::fs::write(root.join("a.txt"), "y\n".repeat(MAX_PATCH_BYTES)).unwrap();
        let v = git_snapshot(root).unwrap();
        assert!(v.patch.is_empty());
        let all = v.left_out.join("\n");
        assert!(all.contains("the uncommitted changes"), "{all}");
        assert!(all.contains("untracked files (at most 64"), "{all}");
        assert!(all.contains("untracked big.txt"), "{all}");
    }
}
