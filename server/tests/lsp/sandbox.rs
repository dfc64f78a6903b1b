//! An accepted `run` executes in a container made from a copy of the workspace, never on the host;
//! its output is the step's observation.

use keel_e2e::Reply;
use keel_trajectory::{Decision, EpisodeFilter};
use serde_json::json;

use crate::{CALC, Fixture, WAIT};

#[test]
fn accepted_run_steps_execute_in_the_sandbox() {
    let socket = std::env::var("DOCKER_HOST").expect("the container engine: run `cargo xtask setup`, then `eval \"$(cargo xtask env)\"`");
    let f = Fixture::new();
    let marker = f.dir.path().join("host-marker");
    let cmd = format!("head -1 calc.py; echo made > made.txt; ls; touch {}; echo done", marker.display());
    f.model.push(Reply::tool("run", json!({"command": cmd})), true);
    f.model.push(Reply::tool("finish", json!({"summary": "ran it"})), false);
    let mut c = keel_e2e::LspClient::spawn(&keel_e2e::bin("keel-lsp"), &[]);
    let mut opts = f.options();
    opts["sandbox"] = json!(socket);
    c.initialize(&f.root, opts, &["utf-16"]);
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    c.request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "write_test"}]}));
    let st = c.wait_status(from, "pending", WAIT);
    let from = c.seen.len();
    let r = c.request("workspace/executeCommand", json!({"command": "keel.step.accept", "arguments": [{"step": st["step"]}]}));
    assert_eq!(r["sandbox"], true);
    c.wait_status(from, "finished", std::time::Duration::from_secs(120));
    assert!(c.shutdown().success());

    assert!(!marker.exists(), "the command ran on the host");
    assert!(!f.root.join("made.txt").exists(), "the command wrote into the user's workspace");
    let s = crate::store(&f.store);
    let ep = &s.episodes(&EpisodeFilter::default()).unwrap()[0];
    let tree = s.tree(ep.id).unwrap().unwrap();
    assert_eq!(tree.steps[0].decision(), Some(&Decision::Accepted));
    let obs = tree.steps[0].observation.as_ref().expect("the run's output");
    assert!(obs.output.contains("def add(a, b):"), "{}", obs.output);
    assert!(obs.output.contains("made.txt") && obs.output.contains("done"), "{}", obs.output);
    // The model saw the output as the tool result.
    let reqs = f.model.requests();
    assert!(reqs.last().unwrap()["messages"].to_string().contains("def add(a, b):"));
}
