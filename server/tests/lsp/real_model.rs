//! The real model path: keel-lsp against `keel-train serve` on a tiny random model made by
//! `keel-train init-model`. A random model proposes nonsense, but every proposal must arrive as a
//! well-formed tool call (constrained decoding), tagged with the served version, and be recorded.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keel_e2e::{LspClient, bin, command};
use keel_trajectory::{EpisodeFilter, Parsed};
use serde_json::{Value, json};

use crate::{CALC, Fixture};

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `keel-train serve` on a free port and returns its `/v1` URL.
fn serve(model: &std::path::Path) -> (Serve, String) {
    let mut child = command("keel-train")
        .args(["serve", "--model"])
        .arg(model)
        .args(["--port", "0", "--max-tokens", "256"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning keel-train serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("keel-train serve did not start");
    (Serve(child), url)
}

#[test]
fn keel_lsp_against_keel_train_serve_on_a_tiny_model() {
    let f = Fixture::new();
    let model = f.dir.path().join("tiny");
    let st = command("keel-train").args(["init-model", "--preset", "tiny", "--seed", "3", "--out"]).arg(&model).status().unwrap();
    assert!(st.success(), "init-model failed");
    let (_serve, url) = serve(&model);

    let mut c = LspClient::spawn(&bin("keel-lsp"), &[]);
    c.initialize(
        &f.root,
        json!({"model": {"endpoint": url, "name": "keel"}, "store": f.store, "limits": {"max_steps": 3, "max_auto_steps": 3, "request_timeout_secs": 120}}),
        &["utf-16"],
    );
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}));
    assert!(r["episode"].is_string());
    // The episode ends on its own (finish, or the step budget) or waits for the user.
    let deadline = Instant::now() + Duration::from_secs(240);
    let state = loop {
        let i = c
            .wait_for(from, Duration::from_secs(5), |m| m["method"] == "keel/status" && matches!(m["params"]["state"].as_str(), Some("pending" | "finished" | "error" | "cancelled")))
            .map(|i| c.seen[i]["params"].clone());
        if let Some(s) = i {
            break s;
        }
        assert!(Instant::now() < deadline, "no end and no proposal in 240 s");
    };
    assert_ne!(state["state"], "error", "{state}");
    if state["state"] == "pending" {
        assert!(state["model_version"].as_str().unwrap().starts_with("keel@"), "{state}");
        let from = c.seen.len();
        c.request("workspace/executeCommand", json!({"command": "keel.episode.cancel", "arguments": [{}]}));
        c.wait_status(from, "cancelled", Duration::from_secs(30));
    }
    assert!(c.shutdown().success());

    let s = crate::store(&f.store);
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert!(!tree.steps.is_empty());
    for st in &tree.steps {
        assert_eq!(st.step.model.version.as_deref(), Some("keel@base"), "the served version is recorded");
        // A constrained tool call always parses, unless the token budget cut it: keel-train serve
        // then closes the JSON and fills required arguments it never reached with empty values,
        // which the parser refuses (an empty search pattern or command) — an invalid call, as it
        // should be recorded. Anything else unparsed is a constraint failure.
        if let Parsed::Error { error } = &st.step.parsed {
            assert!(error.message.contains("empty"), "a constrained tool call parses or was cut by the budget: {error:?} {:?}", st.step.output);
        }
        let v: Value = serde_json::to_value(&st.step.output).unwrap();
        assert!(v["tool_calls"].as_array().is_some_and(|a| a.len() == 1), "{v}");
    }
}
