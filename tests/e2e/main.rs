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
use keel_trajectory::{Action, Decision, EpisodeFilter, Store};
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

/// `calc.py` with a third function, for the hunk review: room for three hunks, none on the last line.
pub const CALC3: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a):\n    return -a\n";
/// An edit of [`CALC3`] in three hunks (`add`'s body on line 2, `mul`'s signature on line 5,
/// `neg`'s on line 9), as (old_text, new_text).
pub const THREE_HUNKS: (&str, &str) = (
    "a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a):",
    "a + b\n\n\ndef mul(a: float, b: float):\n    return a * b\n\n\ndef neg(a: float):",
);
/// What replaces [`THREE_HUNKS`]'s old_text when hunks 1 and 3 are kept and hunk 2 dropped.
pub const THREE_HUNKS_FIRST_AND_THIRD_KEPT: &str = "a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a: float):";
/// The hunk review's workspace: [`CALC3`], and a model that proposes [`THREE_HUNKS`] with `int`,
/// then (after "another") with `float`, then finishes.
pub fn script_review(ws: &Workspace) {
    std::fs::write(ws.root.join("calc.py"), CALC3).unwrap();
    let (old, new) = THREE_HUNKS;
    ws.model.push(edit(old, &new.replace("float", "int")), false);
    ws.model.push(edit(old, new), false);
    ws.model.push(Reply::tool("finish", json!({"summary": "add adds"})), false);
}

/// After the review: hunks 1 and 3 in the file; the store holds the first proposal asked for
/// another and the second kept in part (`edited` with that text). Returns the two steps' ids.
pub fn check_review(ws: &Workspace) -> (String, String) {
    assert_eq!(std::fs::read_to_string(ws.root.join("calc.py")).unwrap(), calc3_first_and_third());
    let s = Store::open(&ws.store).unwrap();
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert_eq!(tree.steps[0].decision(), Some(&Decision::Rejected { cause: keel_trajectory::RejectCause::Retry, reason: None }));
    assert_eq!(tree.steps[1].decision(), Some(&Decision::Edited { final_text: THREE_HUNKS_FIRST_AND_THIRD_KEPT.into() }));
    (tree.steps[0].step.id.to_string(), tree.steps[1].step.id.to_string())
}

/// [`CALC3`] with hunks 1 and 3 of [`THREE_HUNKS`] applied.
pub fn calc3_first_and_third() -> String {
    CALC3.replace(THREE_HUNKS.0, THREE_HUNKS_FIRST_AND_THIRD_KEPT)
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

/// The engine accepted `run` steps execute in (what `cargo xtask env` exports).
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").expect("DOCKER_HOST, the container engine: run `cargo xtask setup`, then `eval \"$(cargo xtask env)\"`")
}

/// The command the model runs after its edit. It reads `calc.py`, so its output shows the text the
/// sandbox was given: the edited buffer prints `return a + b`, the file on disk `return a - b`.
pub const READ_CALC: &str = "grep -n 'return a' calc.py";

/// The script of the unsaved-run story: an edit of `calc.py`, a `run` that reads it, finish.
pub fn script_unsaved_run(model: &ScriptedModel) {
    model.push(edit("return a - b", "return a + b"), true);
    model.push(Reply::tool("run", json!({"command": READ_CALC})), false);
    model.push(Reply::tool("finish", json!({"summary": "add adds"})), false);
}

/// After the unsaved-run story in an editor: the disk still holds the old text (nothing was
/// saved), and the accepted `run` recorded in the store saw the edited buffer, which the same
/// command on the disk's text does not show; the model was told what the sandbox printed.
pub fn check_unsaved_run(ws: &Workspace) {
    assert_eq!(std::fs::read_to_string(ws.root.join("calc.py")).unwrap(), CALC, "the editor saved the buffer");
    // The control: the command on the unsaved disk content prints the old line.
    let disk = Command::new("sh").arg("-c").arg(READ_CALC).current_dir(&ws.root).output().unwrap();
    let disk = String::from_utf8(disk.stdout).unwrap();
    assert_eq!(disk, "2:    return a - b\n6:    return a * b\n");

    let s = Store::open(&ws.store).unwrap();
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1, "{eps:#?}");
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    let steps: Vec<(Option<&Action>, Option<&Decision>)> = tree.steps.iter().map(|r| (r.step.parsed.action(), r.decision())).collect();
    assert_eq!(steps.len(), 3, "edit, run, finish: {steps:#?}");
    assert!(matches!(steps[0], (Some(Action::Edit { .. }), Some(Decision::Accepted))), "{steps:#?}");
    assert_eq!(steps[1], (Some(&Action::Run { command: READ_CALC.into() }), Some(&Decision::Accepted)));
    assert!(matches!(steps[2].0, Some(Action::Finish { .. })), "{steps:#?}");
    let obs = tree.steps[1].observation.as_ref().expect("the run's output is recorded");
    assert_eq!(obs.exit_code, Some(0), "{obs:?}");
    assert_eq!(obs.output, "2:    return a + b\n6:    return a * b\n", "the sandbox saw the edited buffer");
    assert_ne!(obs.output, disk);
    // The model's next turn carried that output as the run's result.
    let reqs = ws.model.requests();
    let last = &reqs.last().expect("the model was asked")["messages"];
    let results: Vec<&str> = last.as_array().unwrap().iter().filter(|m| m["role"] == "tool").filter_map(|m| m["content"].as_str()).collect();
    assert!(results.iter().any(|r| r.contains("2:    return a + b")), "{results:#?}");
}
