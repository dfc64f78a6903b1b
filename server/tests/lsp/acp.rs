//! `keel-lsp --acp` end to end with a client that is not Keel's: the official ACP TypeScript SDK
//! (`tests/acp/drive.mjs`, `@agentclientprotocol/sdk` pinned in its lockfile) spawns the binary,
//! prompts, answers permission requests and serves `fs/*`; the scripted model stands in for the
//! endpoint; the store is read back and compared with what an LSP session records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_e2e::{Reply, apply_workspace_edit, bin};
use keel_trajectory::{Decision, EpisodeEnd, EpisodeFilter, RejectCause, TaskKind};
use serde_json::{Value, json};

use crate::{CALC, Fixture, WAIT, store};

const PROMPT: &str = "add(2, 3) should be 5: fix add in calc.py";
const REASON: &str = "not now: run the tests yourself";

fn acp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/acp")
}

/// `tests/acp/node_modules` from the lockfile (`cargo xtask setup` does this too).
fn ensure_sdk() {
    let dir = acp_dir();
    if dir.join("node_modules/@agentclientprotocol/sdk/package.json").exists() {
        return;
    }
    let st = Command::new("npm").current_dir(&dir).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).status();
    assert!(st.is_ok_and(|s| s.success()), "`npm ci` in {} failed: the ACP suite needs node and npm (`cargo xtask setup` installs the SDK)", dir.display());
}

/// Runs `drive.mjs` against keel-lsp --acp with the model at `endpoint`; its JSON report.
fn drive(f: &Fixture, endpoint: &str, opts: Value) -> Value {
    ensure_sdk();
    let mut o = opts;
    o["bin"] = json!(bin("keel-lsp"));
    o["cwd"] = json!(f.root);
    if o.get("prompt").is_none() {
        o["prompt"] = json!(PROMPT);
    }
    // Options come from the environment, as an ACP host (Zed's agent_servers) passes them.
    let mut child = Command::new("node")
        .current_dir(acp_dir())
        .arg("drive.mjs")
        .arg(o.to_string())
        .env("KEEL_MODEL_ENDPOINT", endpoint)
        .env("KEEL_MODEL", "scripted")
        .env("KEEL_STORE", &f.store)
        .env("KEEL_SANDBOX", o.get("sandbox").and_then(Value::as_str).unwrap_or("off"))
        .env("KEEL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (the ACP suite needs node ≥ 20 on PATH)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("drive.mjs did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "drive.mjs failed: {}", String::from_utf8_lossy(&out.stdout));
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    let r: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("drive.mjs printed no report ({e}): {line}"));
    assert!(r.get("connectionError").is_none(), "the SDK's connection failed: {}", r["connectionError"]);
    assert_eq!(r["exitCode"], 0, "keel-lsp --acp exits 0 once every record is written: {r}");
    assert_eq!(r["sdkErrors"], json!([]), "the SDK found messages that break the ACP schema");
    r
}

fn script(f: &Fixture) {
    f.model.push(Reply::tool("view_file", json!({"path": "calc.py"})), true);
    f.model.push(Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": "return a * b"})), true);
    f.model.push(Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": "return a + b"})), false);
    f.model.push(Reply::tool("run", json!({"command": "python3 -m pytest -q"})), true);
    f.model.push(Reply::tool("finish", json!({"summary": "add adds"})), true);
}

/// The decisions of the only episode in a store, step by step, with each step's tool.
fn decisions(path: &Path) -> (keel_trajectory::EpisodeTree, Vec<(String, Option<Decision>)>) {
    let s = store(path);
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1, "{eps:#?}");
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    let d = tree.steps.iter().map(|st| (st.step.parsed.action().map(|a| a.tool_name().to_string()).unwrap_or_default(), st.decision().cloned())).collect();
    (tree, d)
}

/// The same episode through the language server: another, accept, reject with the reason.
fn lsp_session() -> Vec<(String, Option<Decision>)> {
    let f = Fixture::new();
    script(&f);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "instruction", "instruction": PROMPT}]}));
    let first = c.wait_status(from, "pending", WAIT)["step"].as_str().unwrap().to_string();
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.step.retry", "arguments": [{"step": first}]}));
    let second = c.wait_status(from, "pending", WAIT)["step"].as_str().unwrap().to_string();
    let from = c.seen.len();
    assert_eq!(c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": second}]}))["applied"], true);
    let edit = c.applied_edits.lock().unwrap()[0]["edit"].clone();
    let text = apply_workspace_edit(CALC, &edit);
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [{"text": text}]}));
    let run = c.wait_status(from, "pending", WAIT)["step"].as_str().unwrap().to_string();
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.step.reject", "arguments": [{"step": run, "reason": REASON}]}));
    c.wait_status(from, "finished", WAIT);
    assert!(c.shutdown().success());
    decisions(&f.store).1
}

#[test]
fn acp_prompt_another_allow_reject_finish_records_what_lsp_records() {
    let f = Fixture::new();
    script(&f);
    let r = drive(&f, &f.model.url, json!({"answers": ["another", "allow", {"reject": REASON}]}));
    assert_eq!(r["stopReason"], "end_turn", "{r:#}");
    assert_eq!(r["protocolVersion"], 1);
    assert_eq!(r["agentInfo"]["name"], "keel-lsp");
    let calc = f.root.join("calc.py");

    // Three permission requests: the wrong edit, the right one (diffs of the whole file), the command.
    let perms = r["permissions"].as_array().unwrap();
    assert_eq!(perms.len(), 3, "{perms:#?}");
    let ids: Vec<&str> = perms[0]["options"].as_array().unwrap().iter().map(|o| o["optionId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["allow", "reject", "another"]);
    let diff = &perms[1]["toolCall"]["content"][0];
    assert_eq!(diff["type"], "diff");
    assert_eq!(diff["path"], json!(calc));
    assert_eq!(diff["oldText"], CALC);
    assert_eq!(diff["newText"], CALC.replace("a - b", "a + b"));
    assert_eq!(perms[1]["toolCall"]["kind"], "edit");
    assert!(perms[0]["toolCall"]["content"][0]["newText"].as_str().unwrap().contains("a * b"));
    assert_eq!(perms[2]["toolCall"]["kind"], "execute");
    assert!(perms[2]["toolCall"]["content"][0]["content"]["text"].as_str().unwrap().contains("python3 -m pytest -q"));

    // The accepted edit was written through the client (fs/write_text_file), once; the files were
    // read through it (fs/read_text_file).
    let writes = r["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0]["path"], json!(calc));
    assert_eq!(writes[0]["content"], CALC.replace("a - b", "a + b"));
    assert_eq!(std::fs::read_to_string(&calc).unwrap(), CALC.replace("a - b", "a + b"));
    assert!(r["reads"].as_array().unwrap().iter().any(|p| *p == json!(calc)), "{}", r["reads"]);

    // session/update: the read as a completed tool call, every proposal as a tool call and its
    // outcome, the finish as an agent message.
    let updates = r["updates"].as_array().unwrap();
    let kind = |k: &str| updates.iter().filter(|u| u["sessionUpdate"] == k).collect::<Vec<_>>();
    let calls = kind("tool_call");
    assert!(calls.iter().any(|c| c["kind"] == "read" && c["status"] == "completed" && c["content"][0]["content"]["text"].as_str().unwrap().contains("return a - b")), "{calls:#?}");
    assert_eq!(calls.iter().filter(|c| c["status"] == "pending").count(), 3);
    let outcomes: Vec<&str> = kind("tool_call_update").iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "completed", "failed"]);
    assert!(kind("tool_call_update")[2]["content"][0]["content"]["text"].as_str().unwrap().contains(REASON));
    assert!(kind("agent_message_chunk").iter().any(|m| m["content"]["text"].as_str().unwrap().contains("add adds")));

    // The store: the episode (instruction, the session's cwd as root, the client's name) and the
    // decisions — the same as through the language server.
    let (tree, acp) = decisions(&f.store);
    let ep = &tree.episode;
    assert_eq!(ep.task.kind, TaskKind::Instruction);
    assert_eq!(ep.task.instruction, PROMPT);
    assert_eq!(ep.task.uri, None);
    assert_eq!(ep.workspace.root, f.root.display().to_string());
    assert_eq!(ep.client.as_deref(), Some("keel-acp-e2e 1"));
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Finished { .. }));
    let want = vec![
        ("view_file".to_string(), Some(Decision::Auto)),
        ("edit".into(), Some(Decision::Rejected { cause: RejectCause::Retry, reason: None })),
        ("edit".into(), Some(Decision::Accepted)),
        ("run".into(), Some(Decision::Rejected { cause: RejectCause::User, reason: Some(REASON.into()) })),
        ("finish".into(), Some(Decision::Auto)),
    ];
    assert_eq!(acp, want);
    let steps = &tree.steps;
    assert_eq!(steps[1].step.parent_id, steps[2].step.parent_id, "\"another\" is a sibling");
    assert_eq!(steps[1].step.state_hash, steps[2].step.state_hash);
    assert_eq!(steps[3].step.parent_id, Some(steps[2].step.id));
    assert_eq!(lsp_session(), acp, "an LSP session records the same decisions");
}

#[test]
fn acp_cancel_while_the_model_streams() {
    let f = Fixture::new();
    f.model.push(Reply::Hang, true);
    let t0 = Instant::now();
    let r = drive(&f, &f.model.url, json!({"cancelOnThought": true}));
    assert_eq!(r["stopReason"], "cancelled", "{r:#}");
    assert!(t0.elapsed() < Duration::from_secs(30), "the cancel did not wait for the model");
    let s = store(&f.store);
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1);
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Cancelled), "{:?}", tree.end);
    assert!(tree.steps.is_empty());
}

#[test]
fn acp_cancel_while_a_permission_is_open() {
    let f = Fixture::new();
    f.model.push(Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": "return a + b"})), true);
    let r = drive(&f, &f.model.url, json!({"answers": ["cancel"]}));
    assert_eq!(r["stopReason"], "cancelled", "{r:#}");
    assert_eq!(std::fs::read_to_string(f.root.join("calc.py")).unwrap(), CALC, "nothing written");
    let (tree, d) = decisions(&f.store);
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Cancelled));
    assert_eq!(d.len(), 1);
    assert!(matches!(d[0].1, Some(Decision::Superseded { .. })), "{d:?}");
}

#[test]
fn acp_unreachable_model_is_a_clear_error_and_is_recorded() {
    let f = Fixture::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The endpoint comes from `--config FILE`, which wins over the environment's (a working one).
    let config = f.dir.path().join("keel.json");
    std::fs::write(&config, json!({"model": {"endpoint": format!("http://127.0.0.1:{port}/v1")}}).to_string()).unwrap();
    let r = drive(&f, &f.model.url, json!({"args": ["--config", config]}));
    assert!(r.get("stopReason").is_none(), "{r:#}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("unreachable"), "{r:#}");
    assert!(f.model.requests().is_empty(), "the environment's endpoint was not used");
    let told = r["updates"].as_array().unwrap().iter().any(|u| u["sessionUpdate"] == "agent_message_chunk" && u["content"]["text"].as_str().unwrap().contains("unreachable"));
    assert!(told, "the thread says why: {r:#}");
    let s = store(&f.store);
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1, "the episode is recorded");
    assert_eq!(r["error"]["data"]["episode"], json!(eps[0].id.to_string()));
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    match &tree.end.as_ref().unwrap().end {
        EpisodeEnd::Failed { error } => assert!(error.contains("unreachable"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn acp_without_fs_capabilities_reads_and_writes_the_disk_inside_the_root() {
    let f = Fixture::new();
    f.model.push(Reply::tool("view_file", json!({"path": "calc.py"})), true);
    f.model.push(Reply::tool("edit", json!({"path": "../outside.py", "old_text": "", "new_text": "x = 1\n"})), true);
    f.model.push(Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": "return a + b"})), true);
    f.model.push(Reply::tool("finish", json!({"summary": "add adds"})), true);
    let r = drive(&f, &f.model.url, json!({"fs": false, "answers": ["allow"]}));
    assert_eq!(r["stopReason"], "end_turn", "{r:#}");
    assert_eq!(r["reads"], json!([]));
    assert_eq!(r["writes"], json!([]));
    assert_eq!(std::fs::read_to_string(f.root.join("calc.py")).unwrap(), CALC.replace("a - b", "a + b"), "Keel wrote the accepted edit");
    assert!(!f.dir.path().join("outside.py").exists());
    let failed = r["updates"].as_array().unwrap().iter().any(|u| u["sessionUpdate"] == "tool_call" && u["status"] == "failed" && u["kind"] == "edit");
    assert!(failed, "the automatic rejection is shown: {r:#}");
    let (_, d) = decisions(&f.store);
    assert_eq!(d[0], ("view_file".to_string(), Some(Decision::Auto)));
    assert!(matches!(&d[1].1, Some(Decision::Rejected { cause: RejectCause::OutsideWorkspace, .. })), "{d:?}");
    assert_eq!(d[2], ("edit".to_string(), Some(Decision::Accepted)));
    assert_eq!(d[3], ("finish".to_string(), Some(Decision::Auto)));
}

/// An allowed `run` executes in a container made from the workspace as the editor has it (the edit
/// just written through the client included), never on the host; its output is the tool call's.
#[test]
fn acp_allowed_run_executes_in_the_sandbox() {
    let socket = std::env::var("DOCKER_HOST").expect("the container engine: run `cargo xtask setup`, then `eval \"$(cargo xtask env)\"`");
    let f = Fixture::new();
    let marker = f.dir.path().join("host-marker");
    let cmd = format!("grep return calc.py; touch {}; echo made > made.txt; echo done", marker.display());
    f.model.push(Reply::tool("edit", json!({"path": "calc.py", "old_text": "return a - b", "new_text": "return a + b"})), true);
    f.model.push(Reply::tool("run", json!({"command": cmd})), true);
    f.model.push(Reply::tool("finish", json!({"summary": "ran it"})), false);
    let r = drive(&f, &f.model.url, json!({"answers": ["allow", "allow"], "sandbox": socket}));
    assert_eq!(r["stopReason"], "end_turn", "{r:#}");
    assert!(!marker.exists(), "the command ran on the host");
    assert!(!f.root.join("made.txt").exists(), "the command wrote into the user's workspace");
    let updates = r["updates"].as_array().unwrap();
    let last = updates.iter().filter(|u| u["sessionUpdate"] == "tool_call_update").last().unwrap();
    assert_eq!(last["status"], "completed", "{last:#}");
    let shown = last["content"][0]["content"]["text"].as_str().unwrap();
    assert!(shown.contains("return a + b") && shown.contains("done"), "{shown}");
    let (tree, d) = decisions(&f.store);
    assert_eq!(d[1], ("run".to_string(), Some(Decision::Accepted)));
    assert!(tree.steps[1].observation.as_ref().unwrap().output.contains("return a + b"));
}

