//! An episode through the real binary: list → start → pending lens → another → accept → store →
//! `keel-train pairs`.

use keel_e2e::{Reply, apply_workspace_edit};
use keel_trajectory::{Action, Decision, EpisodeEnd, EpisodeFilter, RejectCause};
use serde_json::{Value, json};

use crate::{CALC, Fixture, WAIT, store};

fn edit(old: &str, new: &str) -> Reply {
    Reply::tool("edit", json!({"path": "calc.py", "old_text": old, "new_text": new}))
}

fn code_actions(c: &mut keel_e2e::LspClient, f: &Fixture, diagnostics: Value) -> Vec<Value> {
    let r = c.request(
        "textDocument/codeAction",
        json!({
            "textDocument": {"uri": f.uri("calc.py")},
            "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 16}},
            "context": {"diagnostics": diagnostics}
        }),
    );
    r.as_array().cloned().unwrap_or_default()
}

fn titles(actions: &[Value]) -> Vec<String> {
    actions.iter().map(|a| a["title"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn list_start_retry_accept_and_the_pair() {
    list_start_retry_accept_and_the_pair_on(Fixture::new());
}

/// The same with `store` set to a `postgres://` URL: keel-lsp opens it off its async runtime (the
/// blocking client must not run on a runtime thread) and records the episode there; `keel-train
/// pairs` reads the pair from it; the URL's password never reaches the editor.
#[test]
fn list_start_retry_accept_and_the_pair_on_postgres() {
    let Some(pg) = crate::postgres_store() else { return };
    let mut f = Fixture::new();
    f.store = std::path::PathBuf::from(&pg.url);
    list_start_retry_accept_and_the_pair_on(f);
}

fn list_start_retry_accept_and_the_pair_on(f: Fixture) {
    // The model: read the file, propose a wrong fix (streamed), then the right one (not streamed),
    // then finish.
    f.model.push(Reply::tool("view_file", json!({"path": "calc.py"})), true);
    f.model.push(edit("return a - b", "return a * b"), true);
    f.model.push(edit("return a - b", "return a + b"), false);
    f.model.push(Reply::tool("finish", json!({"summary": "add adds"})), true);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);

    let diag = json!([{"range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 16}}, "message": "test_add fails: expected 5, got -1", "severity": 1, "source": "pytest"}]);
    let actions = code_actions(&mut c, &f, diag.clone());
    let t = titles(&actions);
    for want in ["Keel: fix this diagnostic", "Keel: implement", "Keel: refactor selection", "Keel: write a test", "Keel: ask…"] {
        assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
    }
    assert!(f.model.requests().is_empty(), "listing code actions must not call the model");
    let fix = actions.iter().find(|a| a["title"] == "Keel: fix this diagnostic").unwrap();
    assert!(fix.get("edit").is_none(), "a Keel action carries a command, not an edit");
    let cmd = &fix["command"];
    let from = c.seen.len();
    let started = c.request("workspace/executeCommand", json!({"command": cmd["command"], "arguments": cmd["arguments"]}));
    let episode = started["episode"].as_str().expect("an episode id").to_string();

    // Pending: status, lens, hint diagnostic, code actions at the range, keel/pending.
    let st = c.wait_status(from, "pending", WAIT);
    assert_eq!(st["model_version"], "scripted@base");
    let first = st["step"].as_str().unwrap().to_string();
    let lenses = c.request("textDocument/codeLens", json!({"textDocument": {"uri": f.uri("calc.py")}}));
    let cmds: Vec<&str> = lenses.as_array().unwrap().iter().map(|l| l["command"]["command"].as_str().unwrap()).collect();
    assert_eq!(cmds, ["keel.step.accept", "keel.step.reject", "keel.step.retry"]);
    assert_eq!(lenses[0]["range"]["start"], json!({"line": 1, "character": 4}));
    assert_eq!(lenses[0]["command"]["arguments"][0]["step"], first);
    let diag_at = c.wait_for(from, WAIT, |m| {
        m["method"] == "textDocument/publishDiagnostics" && m["params"]["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
    });
    assert!(diag_at.is_some(), "a hint diagnostic for the pending step");
    assert!(c.seen.iter().any(|m| m["method"] == "workspace/codeLens/refresh"), "lenses refreshed");
    assert!(c.seen.iter().any(|m| m["method"] == "$/progress"), "progress reported");
    let step_actions = titles(&code_actions(&mut c, &f, json!([])));
    assert!(step_actions.iter().any(|t| t.starts_with("Keel: accept")), "{step_actions:?}");
    let pending = c.request("keel/pending", json!({"uri": f.uri("calc.py")}));
    assert_eq!(pending[0]["step"], first);
    assert!(pending[0]["proposed"].as_str().unwrap().contains("return a * b"));
    assert_eq!(pending[0]["original"], CALC);

    // Another: the wrong fix is rejected and a sibling is sampled at the same state.
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.step.retry", "arguments": [{"step": first}]}));
    let st = c.wait_status(from, "pending", WAIT);
    let second = st["step"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    // Accept: the server asks the editor to apply the edit; the editor applies it and reports back.
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": second}]}));
    assert_eq!(r["applied"], true);
    let edits = c.applied_edits.lock().unwrap().clone();
    assert_eq!(edits.len(), 1);
    let new_text = apply_workspace_edit(CALC, &edits[0]["edit"]);
    assert_eq!(new_text, CALC.replace("a - b", "a + b"));
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [{"text": new_text}]}),
    );
    c.wait_status(from, "finished", WAIT);
    let url = f.store.to_string_lossy().to_string();
    if let Some(password) = url.split_once("://").and_then(|(_, r)| r.split_once('@')).and_then(|(u, _)| u.split_once(':')).map(|(_, p)| p) {
        assert!(c.seen.iter().all(|m| !m.to_string().contains(password)), "the store's password reached the editor");
    }
    assert!(c.shutdown().success());

    // The store holds the episode, the rejected sibling, the accepted step.
    let s = store(&f.store);
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].id.to_string(), episode);
    assert_eq!(eps[0].client.as_deref(), Some("keel-e2e 1"));
    assert_eq!(eps[0].task.diagnostics[0].message, "test_add fails: expected 5, got -1");
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Finished { .. }));
    let steps = &tree.steps;
    assert_eq!(steps.len(), 4, "{steps:#?}");
    assert_eq!(steps[0].decision(), Some(&Decision::Auto));
    assert!(steps[0].observation.as_ref().unwrap().output.contains("return a - b"));
    assert_eq!(steps[1].decision(), Some(&Decision::Rejected { cause: RejectCause::Retry, reason: None }));
    assert_eq!(steps[2].decision(), Some(&Decision::Accepted));
    assert_eq!(steps[1].step.parent_id, steps[2].step.parent_id, "siblings share a parent");
    assert_eq!(steps[1].step.state_hash, steps[2].step.state_hash, "siblings share a state");
    assert_eq!(steps[3].step.parent_id, Some(steps[2].step.id));
    assert!(matches!(steps[3].step.parsed.action(), Some(Action::Finish { .. })));
    assert_eq!(steps[2].step.model.version.as_deref(), Some("scripted@base"));
    // The prompt recorded is the one the model got.
    let reqs = f.model.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(serde_json::to_value(&steps[2].step.prompt.messages).unwrap(), reqs[2]["messages"]);
    assert_eq!(reqs[1]["messages"], reqs[2]["messages"], "another samples at the same state");
    assert!(reqs[0]["tools"].as_array().unwrap().len() == 5);
    // Every request names its episode (the OpenAI `user` field): keel-train serve keeps an episode
    // on one version while an A/B runs.
    assert!(reqs.iter().all(|r| r["user"] == json!(episode)), "{:?}", reqs.iter().map(|r| &r["user"]).collect::<Vec<_>>());

    // keel-train pairs exports the human pair.
    let out = f.dir.path().join("pairs.jsonl");
    let st = keel_e2e::command("keel-train").args(["pairs", "--store"]).arg(&f.store).arg("--out").arg(&out).status().unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let pairs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(pairs.len(), 1, "{text}");
    let args = |v: &Value| v[0]["tool_calls"][0]["function"]["arguments"]["new_text"].clone();
    assert_eq!(args(&pairs[0]["chosen"]), "return a + b");
    assert_eq!(args(&pairs[0]["rejected"]), "return a * b");
    assert_eq!(pairs[0]["meta"]["source"], "human");
}

#[test]
fn reject_with_reason_undo_and_user_edit() {
    let f = Fixture::new();
    f.model.push(edit("return a - b", "return b - a"), false);
    f.model.push(edit("return a - b", "return a + b"), false);
    f.model.push(edit("return a * b", "return b * a"), false);
    f.model.push(Reply::tool("finish", json!({"summary": "done"})), false);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    c.request(
        "workspace/executeCommand",
        json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "instruction", "instruction": "make add add",
            "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}}}]}),
    );
    let st = c.wait_status(from, "pending", WAIT);
    let s1 = st["step"].as_str().unwrap().to_string();
    // Reject with a reason: the model hears it and proposes again.
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.step.reject", "arguments": [{"step": s1, "reason": "operands swapped, still subtracts"}]}));
    let st = c.wait_status(from, "pending", WAIT);
    let s2 = st["step"].as_str().unwrap().to_string();
    let reqs = f.model.requests();
    assert!(reqs[1]["messages"].to_string().contains("operands swapped"), "the reason goes back to the model");

    // Accept, then undo it in the editor (whole-line change, as Neovim sends it): reverted.
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s2}]}));
    let edits = c.applied_edits.lock().unwrap().clone();
    let after = apply_workspace_edit(CALC, &edits[0]["edit"]);
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [{"text": after}]}));
    let st = c.wait_status(from, "pending", WAIT);
    let s3 = st["step"].as_str().unwrap().to_string();
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": f.uri("calc.py"), "version": 3}, "contentChanges": [{"range": {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 0}}, "text": "    return a - b\n"}]}),
    );
    // Accept the third, then change what it wrote: edited, recorded when the watch closes (2 s).
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s3}]}));
    assert_eq!(r["applied"], true);
    let edits = c.applied_edits.lock().unwrap().clone();
    let cur = apply_workspace_edit(CALC, &edits[1]["edit"]);
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 4}, "contentChanges": [{"text": cur}]}));
    c.wait_status(from, "finished", WAIT);
    let edited = cur.replace("return b * a", "return b * a  # commutes");
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 5}, "contentChanges": [{"text": edited}]}));
    // Then a line added at the top, the whole text sent (full sync): a change elsewhere, not of the
    // edited text.
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 6}, "contentChanges": [{"text": format!("# calc\n{edited}")}]}));
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(c.shutdown().success());

    let s = store(&f.store);
    let ep = &s.episodes(&EpisodeFilter::default()).unwrap()[0];
    let tree = s.tree(ep.id).unwrap().unwrap();
    let d: Vec<Option<&Decision>> = tree.steps.iter().map(|s| s.decision()).collect();
    assert_eq!(d[0], Some(&Decision::Rejected { cause: RejectCause::User, reason: Some("operands swapped, still subtracts".into()) }));
    assert_eq!(d[1], Some(&Decision::Reverted));
    assert_eq!(tree.steps[1].decisions[0].decision, Decision::Accepted);
    assert_eq!(d[2], Some(&Decision::Edited { final_text: "return b * a  # commutes".into() }));
}

#[test]
fn endpoint_without_tools_gets_json_actions_and_bad_actions_are_automatic_rejections() {
    let f = Fixture::new();
    f.model.refuse_tools(true);
    f.model.push(Reply::Text("I think I will {\"name\": \"edit\", \"arguments\": {oops".into()), false);
    f.model.push(Reply::Text(r#"{"name": "view_file", "arguments": {"path": "../../etc/passwd"}}"#.into()), false);
    f.model.push(Reply::Text(r#"{"name": "edit", "arguments": {"path": "calc.py", "old_text": "nope", "new_text": "x"}}"#.into()), true);
    f.model.push(Reply::Text(r#"{"name": "edit", "arguments": {"path": "calc.py", "old_text": "a - b", "new_text": "a - b"}}"#.into()), false);
    f.model.push(Reply::Text(r#"{"name": "run", "arguments": {"command": "pytest -q"}}"#.into()), false);
    f.model.push(Reply::Text(r#"{"name": "finish", "arguments": {"summary": "gave up"}}"#.into()), false);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}));
    let st = c.wait_status(from, "pending", WAIT);
    // `run` waits for the user; accepting it without a sandbox declines it, never runs it here.
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": st["step"]}]}));
    assert_eq!(r["applied"], false);
    c.wait_status(from, "finished", WAIT);
    assert!(c.shutdown().success());
    let s = store(&f.store);
    let ep = &s.episodes(&EpisodeFilter::default()).unwrap()[0];
    let tree = s.tree(ep.id).unwrap().unwrap();
    let causes: Vec<Option<RejectCause>> = tree
        .steps
        .iter()
        .map(|s| match s.decision() {
            Some(Decision::Rejected { cause, .. }) => Some(*cause),
            _ => None,
        })
        .collect();
    assert_eq!(
        causes,
        [Some(RejectCause::InvalidToolCall), Some(RejectCause::OutsideWorkspace), Some(RejectCause::OldTextNotFound), Some(RejectCause::EmptyEdit), Some(RejectCause::NoSandbox), None]
    );
    // Automatic rejections are answered by sampling again at the same state (siblings, so they pair
    // with a valid action there), twice; then the model is shown the error and the state moves on.
    let h: Vec<&str> = tree.steps.iter().map(|s| s.step.state_hash.as_str()).collect();
    assert!(h[0] == h[1] && h[1] == h[2], "resampled at the same state");
    assert_ne!(h[2], h[3], "after two resamples the error is shown");
    assert!(tree.steps[3].step.prompt.messages.iter().any(|m| m.content.as_deref().is_some_and(|c| c.contains("old_text was not found"))));
    // The outside path was refused by the tool, not read.
    assert!(tree.steps[1].observation.as_ref().unwrap().output.contains("outside the workspace"));
    // The fallback prompt describes the tools in the system message; no `tools` were sent.
    let reqs = f.model.requests();
    let last = reqs.last().unwrap();
    assert!(last.get("tools").is_none());
    assert!(last["messages"][0]["content"].as_str().unwrap().contains("\"view_file\""));
}

/// Review hunk by hunk: `keel/pending` lists the hunks; `keel.step.accept {hunks}` with bad indices
/// is refused and loses nothing; none kept is a rejection; some kept applies only those and is
/// recorded as `edited` with the text that replaced old_text (a user's edit, for `pairs`).
/// Issue 16's must-show at the protocol level: a three-hunk edit, hunks 1 and 3 kept (`[0, 2]`),
/// hunk 2 dropped → the file holds exactly hunks 1 and 3, and the store an `edited` decision whose
/// text is the model's `old_text` region with those two hunks applied.
#[test]
fn accept_hunks_one_and_three_of_three() {
    let f = Fixture::new();
    let calc3 = format!("{CALC}\n\ndef neg(a):\n    return -a\n");
    std::fs::write(f.root.join("calc.py"), &calc3).unwrap();
    let old = "a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a):";
    let new = "a + b\n\n\ndef mul(a: float, b: float):\n    return a * b\n\n\ndef neg(a: float):";
    let kept = "a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a: float):";
    f.model.push(edit(old, new), false);
    f.model.push(Reply::tool("finish", json!({"summary": "done"})), false);
    let mut c = f.spawn();
    f.open(&c, "calc.py", &calc3);
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}));
    let s1 = c.wait_status(from, "pending", WAIT)["step"].clone();
    let pending = c.request("keel/pending", json!({"uri": f.uri("calc.py")}));
    assert_eq!(
        pending[0]["hunks"],
        json!([
            {"index": 0, "line": 1, "removed": ["    return a - b"], "added": ["    return a + b"]},
            {"index": 1, "line": 4, "removed": ["def mul(a, b):"], "added": ["def mul(a: float, b: float):"]},
            {"index": 2, "line": 8, "removed": ["def neg(a):"], "added": ["def neg(a: float):"]},
        ])
    );

    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s1, "hunks": [0, 2]}]}));
    assert_eq!(r["applied"], true, "{r}");
    let edits = c.applied_edits.lock().unwrap().clone();
    assert_eq!(edits.len(), 1);
    let after = apply_workspace_edit(&calc3, &edits[0]["edit"]);
    assert_eq!(after, calc3.replace(old, kept));
    assert!(after.contains("return a + b") && after.contains("def mul(a, b):") && after.contains("def neg(a: float):"), "{after}");
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [{"text": after}]}));
    c.wait_status(from, "finished", WAIT);
    let told = &f.model.requests()[1]["messages"];
    assert!(told.to_string().contains("applied 2 of the 3 hunks"), "the model hears what was kept: {told}");
    assert!(c.shutdown().success());

    let s = store(&f.store);
    let ep = &s.episodes(&EpisodeFilter::default()).unwrap()[0];
    let tree = s.tree(ep.id).unwrap().unwrap();
    assert_eq!(tree.steps[0].decision(), Some(&Decision::Edited { final_text: kept.into() }));
    assert!(matches!(tree.steps[0].step.parsed.action(), Some(Action::Edit { new_text, .. }) if new_text == new), "the model's whole proposal stays the step's action");
}

#[test]
fn accept_some_hunks_and_refuse_bad_indices() {
    let f = Fixture::new();
    let (old, new) = ("a - b\n\n\ndef mul(a, b):\n    return a * b", "a + b\n\n\ndef mul(a, b):\n    return b * a");
    // The second proposal differs from the first (the same one again would be a `loop`).
    f.model.push(edit(old, &new.replace("b * a", "a * b * 1")), false);
    f.model.push(edit(old, new), false);
    f.model.push(Reply::tool("finish", json!({"summary": "done"})), false);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}));
    let s1 = c.wait_status(from, "pending", WAIT)["step"].clone();
    let pending = c.request("keel/pending", json!({"uri": f.uri("calc.py")}));
    assert_eq!(
        pending[0]["hunks"],
        json!([
            {"index": 0, "line": 1, "removed": ["    return a - b"], "added": ["    return a + b"]},
            {"index": 1, "line": 5, "removed": ["    return a * b"], "added": ["    return a * b * 1"]},
        ])
    );

    // Hostile lists: a clear error each, the step still pending, nothing applied or recorded.
    for bad in [json!([2]), json!([-1]), json!(["0"]), json!([0, 0]), json!([1e30]), json!([u64::MAX]), json!("all"), json!({"0": true})] {
        let r = c.request_full("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s1, "hunks": bad}]}), WAIT);
        assert_eq!(r["error"]["code"], -32602, "{bad}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("hunk"), "{bad}: {r}");
    }
    assert_eq!(c.request("keel/pending", json!({}))[0]["step"], s1, "still pending");
    assert!(c.applied_edits.lock().unwrap().is_empty());

    // No hunk kept: rejected, and the model proposes again.
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s1, "hunks": []}]}));
    assert_eq!(r, json!({"applied": false, "rejected": true}));
    let s2 = c.wait_status(from, "pending", WAIT)["step"].clone();
    assert_ne!(s1, s2);

    // The first hunk kept: only it lands.
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": s2, "hunks": [0]}]}));
    assert_eq!(r["applied"], true);
    let edits = c.applied_edits.lock().unwrap().clone();
    let after = apply_workspace_edit(CALC, &edits[0]["edit"]);
    assert_eq!(after, CALC.replace("a - b", "a + b"));
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [{"text": after}]}));
    c.wait_status(from, "finished", WAIT);
    let told = &f.model.requests()[2]["messages"];
    assert!(told.to_string().contains("applied 1 of the 2 hunks"), "the model hears what was kept: {told}");
    assert!(c.shutdown().success());

    let s = store(&f.store);
    let ep = &s.episodes(&EpisodeFilter::default()).unwrap()[0];
    let tree = s.tree(ep.id).unwrap().unwrap();
    let d: Vec<Option<&Decision>> = tree.steps.iter().map(|s| s.decision()).collect();
    assert_eq!(d[0], Some(&Decision::Rejected { cause: RejectCause::User, reason: None }));
    assert_eq!(d[1], Some(&Decision::Edited { final_text: "a + b\n\n\ndef mul(a, b):\n    return a * b".into() }));
    assert!(matches!(tree.steps[1].step.parsed.action(), Some(Action::Edit { new_text, .. }) if new_text == new), "the model's whole proposal stays the step's action");

    // keel-train pairs: the kept text over the model's whole proposal. (The rejected first proposal
    // is no sibling: a rejection moves the state on, unlike "another".)
    let out = f.dir.path().join("pairs.jsonl");
    let st = keel_e2e::command("keel-train").args(["pairs", "--store"]).arg(&f.store).arg("--out").arg(&out).status().unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let pairs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let args = |v: &Value| v[0]["tool_calls"][0]["function"]["arguments"]["new_text"].clone();
    assert_eq!(pairs.len(), 1, "{text}");
    let edit_pair = &pairs[0];
    assert_eq!(edit_pair["meta"]["source"], "edit");
    assert_eq!(args(&edit_pair["chosen"]), "a + b\n\n\ndef mul(a, b):\n    return a * b");
    assert_eq!(args(&edit_pair["rejected"]), new);
}
