//! Bad input gets a clear error and the server keeps serving: malformed JSON-RPC, unknown methods,
//! huge and binary documents, bad positions, and a model that sends garbage, hangs, drops the
//! connection, fails, or is not there at all.

use std::time::Duration;

use keel_e2e::{LspClient, Reply, bin};
use serde_json::{Value, json};

use crate::{CALC, Fixture, WAIT};

/// The server still answers a real request, promptly.
pub(crate) fn alive(c: &mut LspClient, f: &Fixture) {
    let r = c.request_full(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": f.uri("calc.py")}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
        Duration::from_secs(10),
    );
    assert!(r["result"].as_array().is_some_and(|a| !a.is_empty()), "server stopped serving: {r}");
}

#[test]
fn malformed_messages_unknown_methods_and_bad_positions() {
    let f = Fixture::new();
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    // Not JSON, with a valid frame.
    c.send_raw(b"Content-Length: 9\r\n\r\n{not json");
    alive(&mut c, &f);
    // JSON that is not JSON-RPC.
    c.send_raw(b"Content-Length: 2\r\n\r\n[]");
    alive(&mut c, &f);
    // Unknown request: MethodNotFound, not a crash.
    let r = c.request_full("keel/nonsense", json!({}), WAIT);
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // Unknown notification: ignored.
    c.notify("$/somethingElse", json!({}));
    // Bad params for a known request: an error response.
    let r = c.request_full("textDocument/codeAction", json!({"textDocument": 42}), WAIT);
    assert!(r.get("error").is_some(), "{r}");
    // Unknown command.
    let r = c.request_full("workspace/executeCommand", json!({"command": "keel.nope", "arguments": []}), WAIT);
    assert!(r["error"]["message"].as_str().unwrap().contains("unknown command"), "{r}");
    // Accepting when nothing is pending.
    let r = c.request_full("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{}]}), WAIT);
    assert!(r["error"]["message"].as_str().unwrap().contains("no pending"), "{r}");
    // Ranges past the end, inside a surrogate pair, reversed; a stale version.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": f.uri("calc.py"), "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 999, "character": 5}, "end": {"line": 999, "character": 9}}, "text": "# 😀 end\n"},
            {"range": {"start": {"line": 6, "character": 3}, "end": {"line": 6, "character": 3}}, "text": "x"},
            {"range": {"start": {"line": 0, "character": 99}, "end": {"line": 0, "character": 2}}, "text": ""}
        ]}),
    );
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": f.uri("calc.py"), "version": 1}, "contentChanges": [{"text": "stale"}]}));
    // Changes to a document that was never opened.
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": "file:///nowhere.py", "version": 9}, "contentChanges": [{"text": "x"}]}));
    alive(&mut c, &f);
    // The text is what the in-order, non-stale changes make (checked through an edit proposal's
    // original text below would need a model; keel/pending is empty here, so ask the lens path).
    let lenses = c.request("textDocument/codeLens", json!({"textDocument": {"uri": f.uri("calc.py")}}));
    assert_eq!(lenses, json!([]));
    // `"params": null` on a parameterless request is valid JSON-RPC; some clients send it.
    let r = c.request_message(json!({"jsonrpc": "2.0", "method": "shutdown", "params": null}), WAIT);
    assert!(r.get("error").is_none(), "shutdown with null params: {r}");
    assert!(c.shutdown().success());
}

#[test]
fn huge_and_binary_documents() {
    let f = Fixture::new();
    let mut c = f.spawn();
    // 50 MB of code in one didOpen, then an edit at its end.
    let line = "let x = \"é😀\"; // filler\n";
    let big: String = line.repeat(50 * 1024 * 1024 / line.len());
    let lines = big.lines().count() as u64;
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": f.uri("big.rs"), "languageId": "rust", "version": 1, "text": big}}));
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": f.uri("big.rs"), "version": 2}, "contentChanges": [{"range": {"start": {"line": lines, "character": 0}, "end": {"line": lines, "character": 0}}, "text": "fn tail() {}\n"}]}),
    );
    let r = c.request_full(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": f.uri("big.rs")}, "range": {"start": {"line": lines, "character": 0}, "end": {"line": lines, "character": 3}}, "context": {"diagnostics": []}}),
        Duration::from_secs(60),
    );
    assert!(r["result"].as_array().is_some_and(|a| a.len() >= 3), "{r}");
    // Binary content: NULs and control characters are text to LSP; nothing breaks.
    let bin_text: String = (0u8..=255).map(|b| b as char).collect::<String>().repeat(100);
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": f.uri("blob.bin"), "languageId": "plaintext", "version": 1, "text": bin_text}}));
    f.open(&c, "calc.py", CALC);
    alive(&mut c, &f);
    assert!(c.shutdown().success());
}

fn start(c: &mut LspClient, f: &Fixture) -> String {
    let r = c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}));
    r["episode"].as_str().unwrap().to_string()
}

fn error_message(c: &mut LspClient, from: usize) -> String {
    let i = c
        .wait_for(from, WAIT, |m| m["method"] == "window/showMessage" && m["params"]["type"] == 1)
        .unwrap_or_else(|| panic!("no error message; seen {:#?}", &c.seen[from..]));
    c.seen[i]["params"]["message"].as_str().unwrap().to_string()
}

#[test]
fn a_misbehaving_model_is_a_clear_message_and_the_server_keeps_serving() {
    let f = Fixture::new();
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let cases: Vec<(Reply, bool, &str)> = vec![
        (Reply::Garbage("<html>oops</html>".into()), false, "unreadable"),
        (Reply::Garbage("data: {broken\n\n".into()), false, "unreadable"),
        (Reply::Drop, false, "unreachable"),
        (Reply::Status(500, "{\"error\": \"boom\"}".into()), false, "HTTP 500"),
        (Reply::Hang, false, "did not answer within 3 s"),
    ];
    for (reply, stream, want) in cases {
        f.model.push(reply, stream);
        let from = c.seen.len();
        start(&mut c, &f);
        let msg = error_message(&mut c, from);
        assert!(msg.contains(want), "`{msg}` should say `{want}`");
        let st = c.wait_status(from, "error", WAIT);
        assert!(st["message"].as_str().unwrap().contains(want));
        alive(&mut c, &f);
    }
    // Garbage inside a tool call is data, not an error: an automatic rejection, and the episode goes on.
    f.model.push(Reply::tool("edit", json!({"path": 42})), true);
    f.model.push(Reply::tool("frobnicate", json!({})), false);
    f.model.push(Reply::tool("finish", json!({"summary": "ok"})), false);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    assert!(c.shutdown().success());
    let s = crate::store(&f.store);
    let eps = s.episodes(&Default::default()).unwrap();
    assert_eq!(eps.len(), 6);
    let ends: Vec<String> = eps.iter().map(|e| serde_json::to_value(&s.episode_end(e.id).unwrap().unwrap().end).unwrap()["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(ends, ["failed", "failed", "failed", "failed", "failed", "finished"]);
}

#[test]
fn no_model_endpoint_and_cancel() {
    let f = Fixture::new();
    // Connection refused: a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut c = LspClient::spawn(&bin("keel-lsp"), &[]);
    c.initialize(&f.root, json!({"model": {"endpoint": format!("http://127.0.0.1:{port}/v1")}, "store": f.store}), &["utf-8", "utf-16"]);
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    start(&mut c, &f);
    assert!(error_message(&mut c, from).contains("unreachable"));
    // Settings change at run time: a bad value is refused with a message and changes nothing.
    let from = c.seen.len();
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"keel": {"limits": {"max_steps": "lots"}}}}));
    assert!(error_message(&mut c, from).contains("limits"));
    // A hanging model: cancel ends the episode at once.
    let m = keel_e2e::ScriptedModel::start();
    m.push(Reply::Hang, false);
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"keel": {"model": {"endpoint": m.url}}}}));
    let from = c.seen.len();
    let ep = start(&mut c, &f);
    c.wait_status(from, "thinking", WAIT);
    let r = c.request("workspace/executeCommand", json!({"command": "keel.episode.cancel", "arguments": [{"episode": ep}]}));
    assert_eq!(r["cancelled"], 1);
    c.wait_status(from, "cancelled", WAIT);
    // Missing instruction for an `ask` episode: a clear error.
    let r = c.request_full("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "instruction"}]}), WAIT);
    assert!(r["error"]["message"].as_str().unwrap().contains("instruction required"), "{r}");
    let _: Value = c.request("shutdown", Value::Null);
}
