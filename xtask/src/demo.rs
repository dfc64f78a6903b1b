//! `cargo xtask demo`: the main job on the embedded defaults, from a fresh clone.
//!
//! It starts the real language server (`keel-lsp`) on a sample workspace, speaks LSP to it as an
//! editor would, and plays a user who follows a stated rule: ask for another proposal when an edit
//! does not make `add` add, accept it when it does. The model is a scripted OpenAI-compatible
//! endpoint on loopback (a trained model comes with `keel-train serve`). The server records the
//! episode into a real store (SQLite under `.keel/demo/`); the demo prints what the store holds,
//! read back from disk, and mines the preference pair with `keel-train pairs`.

use std::path::Path;

use anyhow::{Context, Result};
use keel_trajectory::action::observation_text;
use keel_trajectory::*;

use crate::env;

const BUGGY: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST: &str = "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n";

pub fn run(_rest: &[String]) -> Result<()> {
    env::cargo(&["build", "--quiet", "-p", "keel-trainer", "--bin", "keel-train", "-p", "keel-server", "--bin", "keel-lsp"])?;
    let dir = env::state_dir().join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let ws = dir.join("workspace");
    std::fs::create_dir_all(&ws)?;
    std::fs::write(ws.join("calc.py"), BUGGY)?;
    std::fs::write(ws.join("test_calc.py"), TEST)?;
    let db = dir.join("keel.db");

    println!("== Keel demo ==");
    println!("workspace: {}", ws.display());
    println!("store:     {}\n", db.display());
    let id = record_episode(&db, &ws)?;
    print_store(&db, id)?;

    let pairs = dir.join("pairs.jsonl");
    let mut cmd = std::process::Command::new(env::root().join("target/debug/keel-train"));
    cmd.args(["pairs", "--store"]).arg(&db).arg("--out").arg(&pairs).envs(env::vars());
    env::run(&mut cmd)?;
    let text = std::fs::read_to_string(&pairs)?;
    println!("\nkeel-train pairs wrote {} pair(s) to {}", text.lines().count(), pairs.display());
    if let Some(first) = text.lines().next() {
        let v: serde_json::Value = serde_json::from_str(first)?;
        let arg = |side: &str| v[side][0]["tool_calls"][0]["function"]["arguments"]["new_text"].clone();
        println!("  chosen  edit new_text: {}", arg("chosen"));
        println!("  rejected edit new_text: {}", arg("rejected"));
    }
    println!("\ncalc.py after the accepted edit:\n{}", std::fs::read_to_string(ws.join("calc.py"))?);
    Ok(())
}

/// Plays the editor and the user against the real `keel-lsp`, with a scripted model.
fn record_episode(db: &Path, ws: &Path) -> Result<uuid::Uuid> {
    use keel_e2e::{LspClient, Reply, ScriptedModel, apply_workspace_edit};
    use serde_json::json;
    use std::time::Duration;

    let model = ScriptedModel::start();
    let edit = |new: &str| Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": new}));
    model.push(Reply::tool("view_file", json!({"path": "calc.py"})), true);
    model.push(edit("return a * b"), true);
    model.push(edit("return a + b"), true);
    model.push(Reply::tool("finish", json!({"summary": "add now adds"})), true);
    println!("model:     a scripted OpenAI-compatible endpoint at {} (point keel-lsp at `keel-train serve` or any", model.url);
    println!("           OpenAI-compatible server for real proposals)");
    println!("user rule: ask for another proposal unless the edit makes `add` return a + b; then accept\n");

    let mut c = LspClient::spawn(&env::root().join("target/debug/keel-lsp"), &[("KEEL_LOG", "error")]);
    c.initialize(ws, json!({"model": {"endpoint": model.url, "name": "scripted"}, "store": db, "verify": "python3 -m pytest -q"}), &["utf-16"]);
    let path = ws.join("calc.py");
    let uri = format!("file://{}", path.display());
    let mut text = std::fs::read_to_string(&path)?;
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}));
    let range = json!({"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 16}});
    let diag = json!({"range": range, "severity": 1, "source": "pytest", "message": "test_add: assert add(2, 3) == 5 (got -1)"});
    let actions = c.request("textDocument/codeAction", json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": [diag]}}));
    let titles: Vec<&str> = actions.as_array().into_iter().flatten().filter_map(|a| a["title"].as_str()).collect();
    println!("code actions offered at calc.py:2 → {}", titles.join(" | "));
    let fix = actions.as_array().and_then(|a| a.iter().find(|x| x["title"] == "Keel: fix this diagnostic")).context("no Keel fix action")?;
    let mut from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": fix["command"]["command"], "arguments": fix["command"]["arguments"]}));
    let id: uuid::Uuid = r["episode"].as_str().and_then(|s| s.parse().ok()).context("no episode id")?;
    println!("picked `Keel: fix this diagnostic` → episode {id}");
    let mut version = 1;
    loop {
        let i = c
            .wait_for(from, Duration::from_secs(60), |m| m["method"] == "keel/status" && matches!(m["params"]["state"].as_str(), Some("pending" | "finished" | "error" | "cancelled")))
            .context("the server said nothing for 60 s")?;
        from = i + 1;
        let st = c.seen[i]["params"].clone();
        match st["state"].as_str() {
            Some("pending") => {
                let pending = c.request("keel/pending", json!({"uri": uri}));
                let p = &pending[0];
                let proposed = p["proposed"].as_str().unwrap_or("");
                let line = proposed.lines().nth(1).unwrap_or("").trim().to_string();
                if proposed.contains("return a + b") {
                    println!("  proposal `{line}` (model {}) → accept", st["model_version"]);
                    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": p["step"]}]}));
                    anyhow::ensure!(r["applied"] == true, "the edit was not applied: {r}");
                    let edits = c.applied_edits.lock().unwrap().clone();
                    text = apply_workspace_edit(&text, &edits.last().context("no edit")?["edit"]);
                    std::fs::write(&path, &text)?;
                    version += 1;
                    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}));
                } else {
                    println!("  proposal `{line}` → another");
                    c.request("workspace/executeCommand", json!({"command": "keel.step.retry", "arguments": [{"step": p["step"]}]}));
                }
            }
            Some(state) => {
                println!("  episode {state}: {}\n", st["message"].as_str().unwrap_or(""));
                break;
            }
            None => {}
        }
    }
    anyhow::ensure!(c.shutdown().success(), "keel-lsp did not shut down cleanly");
    Ok(id)
}

fn print_store(db: &Path, id: uuid::Uuid) -> Result<()> {
    // A fresh connection: what is shown is what is on disk.
    let store = Store::open(db)?;
    let st = store.stats()?;
    println!(
        "the store holds {} episode(s), {} step(s), {} decision(s), {} observation(s), {} blob(s) ({} bytes compressed from {})",
        st.episodes, st.steps, st.decisions, st.observations, st.blobs, st.blob_bytes, st.blob_bytes_uncompressed
    );
    let tree = store.tree(id)?.context("the episode is not in the store")?;
    println!("\nepisode {} ({}): {}", tree.episode.id, tree.episode.task.kind.as_str(), tree.episode.task.instruction);
    print_children(&tree, None, 1);
    if let Some(end) = &tree.end {
        println!("  end: {}", serde_json::to_string(&end.end)?);
    }
    Ok(())
}

fn print_children(tree: &EpisodeTree, parent: Option<uuid::Uuid>, depth: usize) {
    for s in tree.children(parent) {
        let what = match s.step.parsed.action() {
            Some(a) => format!("{} {}", a.tool_name(), a.arguments()),
            None => "(unparsable output)".to_string(),
        };
        let decision = s.decision().map(|d| serde_json::to_string(d).unwrap_or_default()).unwrap_or("pending".into());
        println!("{}- state {}  {what}\n{}  decision: {decision}", "  ".repeat(depth), &s.step.state_hash[..12], "  ".repeat(depth));
        if let Some(o) = &s.observation {
            let first = observation_text(o).lines().next().unwrap_or("").to_string();
            println!("{}  observed: {first}…", "  ".repeat(depth));
        }
        print_children(tree, Some(s.step.id), depth + 1);
    }
}
