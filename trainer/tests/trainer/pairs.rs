//! `keel-train pairs`: the mining rules on a real store, and the command line.

use keel_trainer::pairs::{self, Source};
use keel_trajectory::action::{Action, next_messages, tools_schema};
use keel_trajectory::*;
use serde_json::Value;
use uuid::Uuid;

struct Rec {
    w: Writer,
    ep: Episode,
    t: i64,
}

impl Rec {
    fn new(store: &Store) -> Rec {
        let w = store.writer().unwrap();
        let ep = Episode {
            id: new_id(),
            created_at: 1_000,
            workspace: Workspace { root: "/w".into(), vcs: None },
            task: Task {
                kind: TaskKind::FixDiagnostic,
                instruction: "fix it".into(),
                uri: None,
                language: Some("python".into()),
                range: None,
                diagnostics: vec![],
                selected_text: None,
            },
            model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
            client: None,
            verify: None,
            protected: vec![],
        };
        w.append(Record::Episode(ep.clone())).wait().unwrap();
        Rec { w, ep, t: 1_000 }
    }

    fn step(&mut self, parent: Option<Uuid>, prompt: &Prompt, parsed: Parsed, decisions: &[Decision]) -> Step {
        self.t += 1;
        let output = match &parsed {
            Parsed::Action { action, .. } => ModelOutput { content: None, tool_calls: vec![action.to_tool_call("c")] },
            Parsed::Error { .. } => ModelOutput { content: Some("{\"name\": \"edit\", \"arguments\": {oops".into()), tool_calls: vec![] },
        };
        let s = Step {
            id: new_id(),
            episode_id: self.ep.id,
            parent_id: parent,
            state_hash: state_hash(prompt),
            created_at: self.t,
            prompt: prompt.clone(),
            output,
            parsed,
            model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
            timings: Timings::default(),
        };
        self.w.append(Record::Step(s.clone())).wait().unwrap();
        for d in decisions {
            self.t += 1;
            self.w
                .append(Record::Decision(DecisionEvent { step_id: s.id, at: self.t, decision: d.clone() }))
                .wait()
                .unwrap();
        }
        s
    }
}

fn act(a: Action) -> Parsed {
    Parsed::Action { action: a, call_id: Some("c".into()) }
}

fn edit(new: &str) -> Action {
    Action::Edit { path: "a.py".into(), old_text: "x = 1".into(), new_text: new.into() }
}

fn rejected(cause: RejectCause, reason: Option<&str>) -> Decision {
    Decision::Rejected { cause, reason: reason.map(Into::into) }
}

fn args(v: &Value) -> &Value {
    &v["tool_calls"][0]["function"]["arguments"]
}

#[test]
fn the_four_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    let mut r = Rec::new(&store);
    let p0 = Prompt { messages: vec![Message::system("sys"), Message::user("fix it")], tools: tools_schema() };

    // State 0: a bad tool call (auto-rejected), then "another" (retry), then an accepted edit that
    // the user later edited.
    let bad = r.step(
        None,
        &p0,
        Parsed::Error { error: ActionError::new(ActionErrorKind::InvalidJson, "not JSON") },
        &[rejected(RejectCause::InvalidToolCall, Some("not JSON"))],
    );
    let retried = r.step(None, &p0, act(edit("x = 2")), &[rejected(RejectCause::Retry, Some("wrong value"))]);
    let good = r.step(None, &p0, act(edit("x = 3")), &[Decision::Accepted, Decision::Edited { final_text: "x = 4".into() }]);

    // State 1 (after the good edit): an accepted edit that was then undone, and its replacement.
    let obs = Observation { output: "edit applied".into(), ..Default::default() };
    let p1 = Prompt { messages: next_messages(&p0.messages, &act(edit("x = 3")), &ModelOutput::default(), "c", &obs), tools: tools_schema() };
    let undone = r.step(Some(good.id), &p1, act(edit("x = 5")), &[Decision::Accepted, Decision::Reverted]);
    let replacement = r.step(Some(good.id), &p1, act(edit("x = 6")), &[Decision::Accepted]);
    // A pending step and a superseded one give nothing.
    r.step(Some(good.id), &p1, act(Action::Finish { summary: "done".into() }), &[]);
    r.step(Some(good.id), &p1, act(edit("x = 7")), &[Decision::Superseded { reason: None }]);

    let tree = store.tree(r.ep.id).unwrap().unwrap();
    let mined = pairs::mine(&tree);
    let by = |s: Source| mined.iter().filter(|p| p.source == s).collect::<Vec<_>>();

    let human = by(Source::Human);
    assert_eq!(human.len(), 1);
    assert_eq!(args(&human[0].chosen)["new_text"], "x = 3");
    assert_eq!(args(&human[0].rejected)["new_text"], "x = 2");
    assert_eq!(human[0].meta["rejected_step"], retried.id.to_string());
    assert_eq!(human[0].meta["rejected_cause"], "retry");
    assert_eq!(human[0].meta["rejected_reason"], "wrong value");
    assert_eq!(human[0].prompt, p0.messages);

    let edit_pairs = by(Source::Edit);
    assert_eq!(edit_pairs.len(), 1);
    assert_eq!(args(&edit_pairs[0].chosen)["new_text"], "x = 4");
    assert_eq!(args(&edit_pairs[0].rejected)["new_text"], "x = 3");

    let revert = by(Source::Revert);
    assert_eq!(revert.len(), 1);
    assert_eq!(revert[0].meta["rejected_step"], undone.id.to_string());
    assert_eq!(revert[0].meta["chosen_step"], replacement.id.to_string());
    assert_eq!(revert[0].meta["depth"], 1);
    assert_eq!(revert[0].prompt, p1.messages);

    let auto = by(Source::Auto);
    assert_eq!(auto.len(), 1);
    assert_eq!(auto[0].meta["rejected_step"], bad.id.to_string());
    assert_eq!(auto[0].meta["chosen_step"], good.id.to_string(), "the next valid action at the state, not the retried one");
    assert_eq!(auto[0].rejected["content"], "{\"name\": \"edit\", \"arguments\": {oops");
    assert_eq!(mined.len(), 4);

    // The command line writes the same pairs in TRL's conversational format.
    let out = dir.path().join("pairs.jsonl");
    drop(r);
    let bin = env!("CARGO_BIN_EXE_keel-train");
    let status = std::process::Command::new(bin)
        .args(["pairs", "--store", db.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600, "pairs are as private as the store");
    for l in &lines {
        assert_eq!(l["prompt"][0]["role"], "system");
        assert_eq!(l["chosen"][0]["role"], "assistant");
        assert_eq!(l["rejected"][0]["role"], "assistant");
        assert_eq!(l["tools"].as_array().unwrap().len(), 5);
        assert!(l["meta"]["episode"].is_string());
    }
    // Arguments are objects, as chat templates expect.
    assert!(lines.iter().any(|l| l["chosen"][0]["tool_calls"][0]["function"]["arguments"].is_object()));

    // --since after the episode: nothing.
    let status = std::process::Command::new(bin)
        .args(["pairs", "--store", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--since", "2999-01-01"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");

    // A bad --since is a clear error.
    let o = std::process::Command::new(bin)
        .args(["pairs", "--store", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--since", "soon"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a time"), "{}", String::from_utf8_lossy(&o.stderr));

    // export → import into a new store → export: the same bytes; importing again skips it all;
    // a broken dump is a clear error naming the line.
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let dump = dir.path().join("dump.jsonl");
    let o = run(&["export", "--store", db.to_str().unwrap(), "--out", dump.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exported 1 episodes"));
    assert_eq!(std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777, 0o600, "a dump is as private as the store");
    let db2 = dir.path().join("copy.db");
    let o = run(&["import", "--store", db2.to_str().unwrap(), dump.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["export", "--store", db2.to_str().unwrap(), "--out", "-"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), std::fs::read_to_string(&dump).unwrap());
    let o = run(&["import", "--store", db2.to_str().unwrap(), dump.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("imported 0 episodes (0 steps); 1 already there"), "{}", String::from_utf8_lossy(&o.stderr));
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"keel_dump\": 1, \"episode\": 3}\n").unwrap();
    let o = run(&["import", "--store", db2.to_str().unwrap(), broken.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 1"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An automatic rejection is paired with the next valid action at its state — never with a read
/// that failed (`view_file` of a file that is not there): that ran, but is no better an answer; nor
/// with a `finish`, unless the episode passed its verification.
#[test]
fn a_failed_read_or_giving_up_is_never_the_chosen_side() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let mut r = Rec::new(&store);
    let p0 = Prompt { messages: vec![Message::system("sys"), Message::user("fix it")], tools: tools_schema() };
    let observe = |r: &mut Rec, s: &Step, code: i32| {
        let observation = Observation { output: if code == 0 { "    1| x = 1\n".into() } else { "`nope.py` does not exist".into() }, exit_code: Some(code), ..Default::default() };
        r.w.append(Record::Observation { step_id: s.id, at: r.t, observation }).wait().unwrap();
    };
    let looped = r.step(None, &p0, act(Action::Run { command: "pytest".into() }), &[rejected(RejectCause::Loop, None)]);
    let missing = r.step(None, &p0, act(Action::ViewFile { path: "nope.py".into(), start_line: None, end_line: None }), &[Decision::Auto]);
    observe(&mut r, &missing, 1);
    let read = r.step(None, &p0, act(Action::ViewFile { path: "a.py".into(), start_line: None, end_line: None }), &[Decision::Auto]);
    observe(&mut r, &read, 0);
    let mined = pairs::mine(&store.tree(r.ep.id).unwrap().unwrap());
    assert_eq!(mined.len(), 1, "{mined:?}");
    assert_eq!(mined[0].meta["rejected_step"], looped.id.to_string());
    assert_eq!(mined[0].meta["chosen_step"], read.id.to_string(), "the failed read is skipped");

    // Nor is giving up: a `finish` after a loop is the chosen side only when the episode passed.
    for passed in [None, Some(false), Some(true)] {
        let mut r = Rec::new(&store);
        let looped = r.step(None, &p0, act(Action::Run { command: "pytest".into() }), &[rejected(RejectCause::Loop, None)]);
        let finish = r.step(None, &p0, act(Action::Finish { summary: "done".into() }), &[Decision::Auto]);
        let outcome = passed.map(|passed| Outcome { command: "pytest".into(), passed, exit_code: Some(i32::from(!passed)), output: String::new() });
        let end = EpisodeEndEvent { episode_id: r.ep.id, at: r.t + 1, end: EpisodeEnd::Finished { summary: None }, outcome };
        r.w.append(Record::EpisodeEnd(end)).wait().unwrap();
        let mined = pairs::mine(&store.tree(r.ep.id).unwrap().unwrap());
        if passed == Some(true) {
            assert_eq!(mined.len(), 1, "{mined:?}");
            assert_eq!((&mined[0].meta["chosen_step"], &mined[0].meta["rejected_step"]), (&finish.id.to_string().into(), &looped.id.to_string().into()));
        } else {
            assert!(mined.is_empty(), "outcome {passed:?}: {mined:?}");
        }
    }
}
