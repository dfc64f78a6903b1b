//! Agent tasks: the task format of ARCHITECTURE.md ("Tasks and the agent benchmark").
//!
//! A task is a folder with `task.toml` (`instruction`, `verify`, optional `protected`, `image`,
//! `max_steps`, `file`, `kind`, `[[fix]]`, `[meta]`) and `workspace/` (the starting files). A suite
//! is a folder of task folders, with `train/` and `heldout/` splits where it has them.
//!
//! A task becomes an episode of the same agent the editor runs: its first state is built by
//! [`crate::initial_prompt`] from the instruction and the task's file (shown as the editor shows the
//! open file), its workspace is a container made from the task's files, and it is judged by running
//! `verify` after the protected files were restored (editing the tests never passes).

use std::path::{Path, PathBuf};

use keel_sandbox::WorkspaceSnapshot;
use keel_trajectory::{Episode, FileSnapshot, ModelRef, Observation, Prompt, Task, TaskKind, VcsState, Workspace as WorkspaceRecord};
use serde::Deserialize;

use crate::workspace::{Workspace, normalize_path};

/// The most a task's workspace may hold (all files together).
pub const MAX_WORKSPACE_BYTES: u64 = 64 * 1024 * 1024;

/// The most of the task's file the first message shows (bytes); a longer file is cut at a line end.
pub const MAX_FILE_SHOWN: usize = 6 * 1024;

/// A task folder that cannot be used, and why. The rest of a suite still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The task's name in its suite (its folder, relative to the suite).
    pub task: String,
    pub message: String,
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task `{}`: {}", self.task, self.message)
    }
}

impl std::error::Error for TaskError {}

/// One edit of a task's known fix (the `edit` tool's arguments).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FixEdit {
    pub path: String,
    pub old_text: String,
    pub new_text: String,
}

#[derive(Debug, Deserialize)]
struct TaskToml {
    instruction: Option<String>,
    verify: Option<String>,
    #[serde(default)]
    protected: Vec<String>,
    image: Option<String>,
    max_steps: Option<usize>,
    file: Option<String>,
    kind: Option<TaskKind>,
    #[serde(default)]
    fix: Vec<FixEdit>,
    #[serde(default)]
    meta: toml::Table,
}

/// A loaded task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The task's folder relative to the suite (`heldout/clamp-off_by_one-1`).
    pub name: String,
    pub dir: PathBuf,
    pub kind: TaskKind,
    pub instruction: String,
    pub verify: String,
    /// Workspace-relative, normalised; each is in the workspace.
    pub protected: Vec<String>,
    pub image: Option<String>,
    pub max_steps: Option<usize>,
    /// The file the task is about (normalised), when it names one.
    pub file: Option<String>,
    pub fix: Vec<FixEdit>,
    pub meta: serde_json::Value,
    /// The starting files (relative path, text), sorted by path.
    pub files: Vec<(String, String)>,
}

fn err(task: &str, message: impl Into<String>) -> TaskError {
    TaskError { task: task.to_string(), message: message.into() }
}

/// Loads one task folder; `name` names it in errors and results.
pub fn load_task(dir: &Path, name: &str) -> Result<TaskSpec, TaskError> {
    let toml_path = dir.join("task.toml");
    let text = match std::fs::read_to_string(&toml_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(err(name, format!("no task.toml in {}", dir.display()))),
        Err(e) => return Err(err(name, format!("cannot read {}: {e}", toml_path.display()))),
    };
    let t: TaskToml = toml::from_str(&text).map_err(|e| err(name, format!("task.toml: {}", e.to_string().trim())))?;
    let instruction = t.instruction.filter(|s| !s.trim().is_empty()).ok_or_else(|| err(name, "task.toml has no `instruction`"))?;
    let verify = t.verify.filter(|s| !s.trim().is_empty()).ok_or_else(|| err(name, "task.toml has no `verify` command"))?;
    if t.max_steps == Some(0) {
        return Err(err(name, "`max_steps` must be at least 1"));
    }
    let ws_dir = dir.join("workspace");
    if !ws_dir.is_dir() {
        return Err(err(name, format!("no workspace/ folder in {}", dir.display())));
    }
    let files = read_workspace(&ws_dir).map_err(|m| err(name, m))?;
    let has = |p: &str| files.iter().any(|(f, _)| f == p);
    let norm = |p: &str, what: &str| normalize_path(p, None).map_err(|_| err(name, format!("{what} `{p}` is not a path inside the workspace")));
    let mut protected = Vec::new();
    for p in &t.protected {
        let rel = norm(p, "protected file")?;
        if !has(&rel) {
            return Err(err(name, format!("protected file `{p}` is not in workspace/")));
        }
        protected.push(rel);
    }
    let file = match &t.file {
        Some(f) => {
            let rel = norm(f, "file")?;
            if !has(&rel) {
                return Err(err(name, format!("file `{f}` is not in workspace/")));
            }
            Some(rel)
        }
        None => None,
    };
    let meta = serde_json::to_value(&t.meta).unwrap_or(serde_json::Value::Null);
    Ok(TaskSpec {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        kind: t.kind.unwrap_or(TaskKind::Instruction),
        instruction,
        verify,
        protected,
        image: t.image.filter(|s| !s.trim().is_empty()),
        max_steps: t.max_steps,
        file,
        fix: t.fix,
        meta,
        files,
    })
}

/// The regular files under `dir`, relative and sorted. Links and non-UTF-8 files are refused:
/// a task's workspace is text the agent reads, and its snapshot must not reach outside it.
fn read_workspace(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&abs).map_err(|e| format!("cannot list {}: {e}", abs.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", abs.display()))?;
            let name = entry.file_name().to_str().map(str::to_string).ok_or_else(|| format!("a file name in {} is not UTF-8", abs.display()))?;
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let ft = entry.file_type().map_err(|e| format!("cannot stat workspace/{child}: {e}"))?;
            if ft.is_symlink() {
                return Err(format!("workspace/{child} is a symbolic link (a task's files must be plain files)"));
            } else if ft.is_dir() {
                if name != "__pycache__" {
                    stack.push((entry.path(), child));
                }
            } else if ft.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(|e| format!("cannot read workspace/{child}: {e}"))?;
                total += bytes.len() as u64;
                if total > MAX_WORKSPACE_BYTES {
                    return Err(format!("workspace/ holds more than {} MiB", MAX_WORKSPACE_BYTES >> 20));
                }
                let text = String::from_utf8(bytes).map_err(|_| format!("workspace/{child} is not UTF-8 text"))?;
                out.push((child, text));
            }
        }
    }
    if out.is_empty() {
        return Err("workspace/ is empty".into());
    }
    out.sort();
    Ok(out)
}

/// Every task under `dir` (a suite, a split, or one task), sorted by name, and the folders that
/// are not usable tasks. A folder is a task when it holds `task.toml` or `workspace/`, or has no
/// sub-folders; other folders are searched (a suite's splits, groups of tasks).
pub fn discover(dir: &Path) -> Result<(Vec<TaskSpec>, Vec<TaskError>), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder of tasks", dir.display()));
    }
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    let own_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or(".").to_string();
    walk(dir, "", &own_name, 0, &mut tasks, &mut errors);
    tasks.sort_by(|a: &TaskSpec, b| a.name.cmp(&b.name));
    errors.sort_by(|a, b| a.task.cmp(&b.task));
    Ok((tasks, errors))
}

fn walk(dir: &Path, rel: &str, own_name: &str, depth: usize, tasks: &mut Vec<TaskSpec>, errors: &mut Vec<TaskError>) {
    let name = if rel.is_empty() { own_name } else { rel };
    let mut subdirs: Vec<(String, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
            .filter(|(n, _)| !n.starts_with('.') && n != "__pycache__")
            .collect(),
        Err(e) => {
            errors.push(err(name, format!("cannot list {}: {e}", dir.display())));
            return;
        }
    };
    let is_task = dir.join("task.toml").exists() || dir.join("workspace").is_dir() || subdirs.is_empty();
    if is_task {
        match load_task(dir, name) {
            Ok(t) => tasks.push(t),
            Err(e) => errors.push(e),
        }
        return;
    }
    if depth >= 4 {
        errors.push(err(name, "task folders nest too deep (at most 4 levels below the suite)"));
        return;
    }
    subdirs.sort();
    for (n, p) in subdirs {
        let child = if rel.is_empty() { n } else { format!("{rel}/{n}") };
        walk(&p, &child, own_name, depth + 1, tasks, errors);
    }
}

impl TaskSpec {
    /// The starting files as a container snapshot.
    pub fn snapshot(&self) -> WorkspaceSnapshot {
        WorkspaceSnapshot::from_files(self.files.iter().map(|(p, t)| (p.clone(), t.clone().into_bytes())))
    }

    /// The text of a starting file.
    pub fn original(&self, rel: &str) -> Option<&str> {
        self.files.iter().find(|(p, _)| p == rel).map(|(_, t)| t.as_str())
    }

    /// The task as the store records it.
    pub fn task(&self) -> Task {
        Task {
            kind: self.kind,
            instruction: self.instruction.clone(),
            uri: self.file.clone(),
            language: self.file.as_deref().and_then(language_of),
            range: None,
            diagnostics: vec![],
            selected_text: None,
        }
    }

    /// The first state: the instruction, and the task's file as the editor shows the open file.
    pub fn initial_prompt(&self) -> Prompt {
        let mut ctx = crate::TaskContext::default();
        let file = self.file.clone().unwrap_or_default();
        if let Some(text) = self.file.as_deref().and_then(|f| self.original(f)) {
            ctx.nearby = Some((1, shown_text(text)));
        }
        crate::initial_prompt(&self.task(), &file, &ctx)
    }

    /// The episode record of one run of this task: the starting files travel inside it, so search
    /// can rebuild any of its states without the task folder.
    pub fn episode(&self, model: ModelRef, client: &str) -> Episode {
        let untracked = self.files.iter().map(|(p, t)| FileSnapshot { path: p.clone(), content: t.clone() }).collect();
        Episode {
            id: keel_trajectory::new_id(),
            created_at: keel_trajectory::now_ms(),
            workspace: WorkspaceRecord {
                root: self.dir.join("workspace").display().to_string(),
                vcs: Some(VcsState { kind: "files".into(), commit: String::new(), patch: String::new(), untracked, left_out: vec![] }),
            },
            task: self.task(),
            model,
            client: Some(client.to_string()),
            verify: Some(self.verify.clone()),
            protected: self.protected.clone(),
        }
    }

    /// The protected files with their original text.
    pub fn protected_originals(&self) -> Vec<(String, String)> {
        self.protected.iter().filter_map(|p| Some((p.clone(), self.original(p)?.to_string()))).collect()
    }
}

fn language_of(file: &str) -> Option<String> {
    let ext = file.rsplit_once('.')?.1;
    Some(
        match ext {
            "py" => "python",
            "rs" => "rust",
            "ts" | "tsx" => "typescript",
            "js" | "jsx" | "mjs" => "javascript",
            "go" => "go",
            "c" | "h" => "c",
            other => other,
        }
        .to_string(),
    )
}

/// At most [`MAX_FILE_SHOWN`] bytes of a file, cut at a line end.
fn shown_text(text: &str) -> String {
    if text.len() <= MAX_FILE_SHOWN {
        return text.trim_end_matches('\n').to_string();
    }
    let cut = text[..text.floor_char_boundary(MAX_FILE_SHOWN)].rfind('\n').unwrap_or(0);
    format!("{}\n…", &text[..cut])
}

/// The protected files of an episode with their text at its start (from the files it carries).
pub fn episode_protected(episode: &Episode) -> Vec<(String, String)> {
    let files = episode.workspace.vcs.as_ref().map(|v| v.untracked.as_slice()).unwrap_or(&[]);
    episode.protected.iter().filter_map(|p| files.iter().find(|f| &f.path == p).map(|f| (p.clone(), f.content.clone()))).collect()
}

/// Judges a workspace: restores the protected files, then runs `command` from the workspace root
/// (in its container). Passed when it exits 0.
pub fn verify(ws: &dyn Workspace, command: &str, protected: &[(String, String)]) -> Result<Observation, String> {
    for (path, text) in protected {
        ws.write(path, text).map_err(|e| format!("restoring the protected file `{path}`: {e}"))?;
    }
    Ok(ws.run(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_suite_loads_its_tasks_and_names_each_bad_one() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        let good = "instruction = \"Fix add.\"\nverify = \"python3 test_calc.py\"\nprotected = [\"test_calc.py\"]\nfile = \"calc.py\"\nmax_steps = 6\n\
                    [[fix]]\npath = \"calc.py\"\nold_text = \"a - b\"\nnew_text = \"a + b\"\n[meta]\nfamily = \"operator\"\n";
        write(s, "train/add-1/task.toml", good);
        write(s, "train/add-1/workspace/calc.py", "def add(a, b):\n    return a - b\n");
        write(s, "train/add-1/workspace/test_calc.py", "from calc import add\nassert add(2, 3) == 5\n");
        write(s, "heldout/no-toml/workspace/x.py", "x = 1\n");
        write(s, "heldout/no-verify/task.toml", "instruction = \"x\"\n");
        write(s, "heldout/no-verify/workspace/x.py", "x = 1\n");
        write(s, "heldout/no-workspace/task.toml", "instruction = \"x\"\nverify = \"true\"\n");
        write(s, "heldout/bad-protected/task.toml", "instruction = \"x\"\nverify = \"true\"\nprotected = [\"../etc/passwd\"]\n");
        write(s, "heldout/bad-protected/workspace/x.py", "x = 1\n");
        write(s, "heldout/not-toml/task.toml", "instruction = \n");
        write(s, "heldout/not-toml/workspace/x.py", "x = 1\n");
        std::fs::create_dir_all(s.join("heldout/empty")).unwrap();
        let (tasks, errors) = discover(s).unwrap();
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!((t.name.as_str(), t.file.as_deref(), t.max_steps), ("train/add-1", Some("calc.py"), Some(6)));
        assert_eq!(t.protected, vec!["test_calc.py"]);
        assert_eq!(t.fix[0].new_text, "a + b");
        assert_eq!(t.meta["family"], "operator");
        assert_eq!(t.protected_originals()[0].1, "from calc import add\nassert add(2, 3) == 5\n");
        let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 6, "{msgs:#?}");
        let has = |task: &str, what: &str| assert!(msgs.iter().any(|m| m.starts_with(&format!("task `{task}`")) && m.contains(what)), "{task}: {what} in {msgs:#?}");
        has("heldout/no-toml", "no task.toml");
        has("heldout/no-verify", "no `verify`");
        has("heldout/no-workspace", "no workspace/");
        has("heldout/bad-protected", "not a path inside the workspace");
        has("heldout/not-toml", "task.toml:");
        has("heldout/empty", "no task.toml");
        // A split and a single task load on their own, named from there.
        let (tasks, errors) = discover(&s.join("train/add-1")).unwrap();
        assert_eq!((tasks[0].name.as_str(), errors.len()), ("add-1", 0));
        assert!(discover(&s.join("nope")).is_err());
    }

    #[test]
    fn the_first_state_shows_the_task_file_and_the_episode_carries_the_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t/task.toml", "instruction = \"Fix add.\"\nverify = \"python3 test_calc.py\"\nprotected = [\"test_calc.py\"]\nfile = \"calc.py\"\n");
        write(d.path(), "t/workspace/calc.py", "def add(a, b):\n    return a - b\n");
        write(d.path(), "t/workspace/test_calc.py", "assert True\n");
        let t = load_task(&d.path().join("t"), "t").unwrap();
        let p = t.initial_prompt();
        let user = p.messages[1].content.clone().unwrap();
        assert!(user.contains("Fix add.") && user.contains("File: calc.py") && user.contains("    return a - b"), "{user}");
        let e = t.episode(ModelRef { name: "m".into(), version: None }, "keel-train eval");
        assert_eq!(episode_protected(&e), t.protected_originals());
        assert_eq!(e.verify.as_deref(), Some("python3 test_calc.py"));
        let long = "x = 1\n".repeat(2000);
        let shown = shown_text(&long);
        assert!(shown.len() <= MAX_FILE_SHOWN + 4 && shown.ends_with('…'));
    }
}
