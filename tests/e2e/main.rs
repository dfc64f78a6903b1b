//! The editor clients end to end, in the real editors: Neovim headless (`.venv/bin/nvim`) with the
//! plugin in `editors/nvim`, and VS Code (code-server from npm, the packaged `.vsix`, driven in
//! Debian's Chromium through playwright-core), both against the real `target/debug/keel-lsp`, a
//! scripted OpenAI-compatible model on loopback and a real SQLite store.

mod nvim;
mod vscode;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_e2e::{Reply, ScriptedModel};
use serde_json::{Value, json};

pub const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// A temporary workspace with `calc.py`, a project marker, a store path and a scripted model.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: PathBuf,
    pub model: ScriptedModel,
}

impl Default for Workspace {
    fn default() -> Workspace {
        Workspace::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("calc.py"), CALC).unwrap();
        std::fs::write(root.join("pyproject.toml"), "[project]\nname = \"calc\"\nversion = \"0\"\n").unwrap();
        let store = dir.path().join("keel.db");
        Workspace { dir, root, store, model: ScriptedModel::start() }
    }
}

pub fn edit(old: &str, new: &str) -> Reply {
    Reply::tool("edit", json!({"path": "calc.py", "old_text": old, "new_text": new}))
}

/// Runs a command with a deadline (never hangs the suite); returns (success, stdout+stderr).
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_p, err_p) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdin(Stdio::null()).stdout(std::fs::File::create(&out_p).unwrap()).stderr(std::fs::File::create(&err_p).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}{}", std::fs::read_to_string(&out_p).unwrap_or_default(), std::fs::read_to_string(&err_p).unwrap_or_default());
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("KILLED after {limit:?} (the editor froze?)\n{text}")),
    }
}

/// The `facts` a scenario recorded, failing the test with the scenario's error and messages.
pub fn facts(results: &Value) -> &Value {
    assert!(results.get("error").is_none(), "the scenario failed: {}\nmessages shown: {:#}", results["error"].as_str().unwrap_or(""), results["notes"]);
    &results["facts"]
}
