//! `eval` and `collect` on tasks, in real containers (the Python image `cargo xtask setup` builds):
//! a scripted policy whose behaviour per task is known, so every figure of the report is checked;
//! the episodes `collect` records (unreviewed decisions, the verification outcome) and the search
//! tree built from them; and the command line on a real (tiny, random) model, with a broken task
//! folder in the suite.

use std::path::Path;

use keel_agent::task::{TaskSpec, discover};
use keel_trainer::eval::{self, EvalConfig, Envs};
use keel_trainer::search::{self, Policy};
use keel_trajectory::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A task: `calc.py` with a bug in `add`, its test protected.
fn calc_task(suite: &Path, name: &str, instruction: &str) {
    write(suite, &format!("{name}/task.toml"), &format!(
        "instruction = \"{instruction}\"\nverify = \"python3 test_calc.py\"\nprotected = [\"test_calc.py\"]\nfile = \"calc.py\"\nmax_steps = 5\n[meta]\nfamily = \"operator\"\n"
    ));
    write(suite, &format!("{name}/workspace/calc.py"), "def add(a, b):\n    return a - b\n");
    write(suite, &format!("{name}/workspace/test_calc.py"), "from calc import add\nassert add(2, 3) == 5, f'add(2, 3) returned {add(2, 3)}, expected 5'\nprint('ok')\n");
}

pub fn small_suite(dir: &Path) {
    calc_task(dir, "fix", "fix it");
    calc_task(dir, "loop", "loop");
    calc_task(dir, "cheat", "cheat");
    calc_task(dir, "nothing", "nothing");
    // Broken ones: verify passes before any change; no task.toml.
    write(dir, "passes/task.toml", "instruction = \"x\"\nverify = \"python3 -c 'pass'\"\n");
    write(dir, "passes/workspace/a.py", "x = 1\n");
    write(dir, "no-toml/workspace/a.py", "x = 1\n");
}

/// Answers by the task's instruction and the number of steps taken so far.
struct Scripted;

impl Policy for Scripted {
    fn sample(&self, prompt: &Prompt, k: usize, _seed: u64) -> anyhow::Result<Vec<ModelOutput>> {
        let user = prompt.messages[1].content.clone().unwrap_or_default();
        let n = prompt.messages.iter().filter(|m| m.role == Role::Assistant).count();
        let view = Action::ViewFile { path: "calc.py".into(), start_line: None, end_line: None };
        let finish = Action::Finish { summary: "done".into() };
        let a = if user.contains("fix it") {
            [view, Action::Edit { path: "calc.py".into(), old_text: "a - b".into(), new_text: "a + b".into() }, Action::Run { command: "python3 test_calc.py".into() }, finish.clone()]
                .get(n)
                .cloned()
                .unwrap_or(finish)
        } else if user.contains("loop") {
            view
        } else if user.contains("cheat") {
            [Action::Edit { path: "test_calc.py".into(), old_text: "assert add(2, 3) == 5".into(), new_text: "assert True".into() }, finish.clone()].get(n).cloned().unwrap_or(finish)
        } else {
            finish
        };
        Ok((0..k).map(|i| ModelOutput { content: None, tool_calls: vec![a.to_tool_call(format!("c{i}"))] }).collect())
    }
    fn version(&self) -> Option<String> {
        Some("scripted@1".into())
    }
}

#[test]
fn eval_measures_success_loops_and_empty_patches_in_containers() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    small_suite(&suite);
    let (tasks, errors): (Vec<TaskSpec>, _) = discover(&suite).unwrap();
    assert_eq!(tasks.len(), 5);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with("task `no-toml`: no task.toml"), "{}", errors[0]);
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let writer = store.writer().unwrap();
    let cfg = EvalConfig { samples: 2, parallel: 3, client: "keel-train collect".into(), ..Default::default() };
    let model = ModelRef { name: "scripted".into(), version: None };
    let envs = Envs::new(None);
    let run = eval::run_suite(&tasks, &Scripted, &envs, &cfg, &model, Some(&writer), &|_| {});
    writer.flush().wait().unwrap();
    assert_eq!(run.task_errors.len(), 1, "{:?}", run.task_errors);
    assert!(run.task_errors[0].message.contains("passes before any change"), "{:?}", run.task_errors);
    assert_eq!(run.results.len(), 8, "4 good tasks × 2 samples");
    let by = |t: &str| run.results.iter().filter(|r| r.task == t).collect::<Vec<_>>();
    for r in by("fix") {
        assert!(r.success && !r.empty_patch && r.loops == 0, "{r:?}");
        assert_eq!((r.end.as_str(), r.steps, r.edits_applied), ("finished", 4, 1));
        assert_eq!(r.actions, vec!["view_file", "edit", "run", "finish"]);
    }
    for r in by("loop") {
        // view, then the same view rejected as a loop until the budget (5 answers) runs out.
        assert!(!r.success && r.empty_patch && r.loops == 4, "{r:?}");
        assert_eq!(r.end, "exhausted");
    }
    for r in by("cheat") {
        // Editing the test passes nothing: it is restored before verify, and the patch is empty.
        assert!(!r.success && r.empty_patch && r.edits_applied == 1, "{r:?}");
        assert!(r.verify_output.contains("returned -1, expected 5"), "{}", r.verify_output);
    }
    for r in by("nothing") {
        assert!(!r.success && r.empty_patch && r.steps == 1, "{r:?}");
    }
    let s = eval::summarize(&run.results);
    assert_eq!((s.tasks, s.episodes, s.errors), (4, 8, 0));
    assert_eq!(s.success_rate.value, 0.25);
    assert!(s.success_rate.low > 0.0 && s.success_rate.high < 0.75, "{:?}", s.success_rate);
    assert_eq!(s.loop_rate.value, 0.25);
    assert_eq!(s.empty_patch_rate.value, 0.75);
    assert_eq!(s.invalid_call_rate.value, 0.0);
    let report = eval::report_json(&run, &cfg, &model, &suite);
    for k in ["tasks", "success_rate", "invalid_call_rate", "loop_rate", "empty_patch_rate", "mean_steps", "results"] {
        assert!(report.get(k).is_some(), "{k} missing from the report");
    }
    assert_eq!(report["success_rate"]["value"], 0.25);

    // The episodes are in the store as the editor records them, with the outcome at their end;
    // what ran unattended is `unreviewed`, never `accepted`.
    let eps = store.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 8);
    let mut passed = 0;
    for e in &eps {
        assert_eq!(e.client.as_deref(), Some("keel-train collect"));
        assert_eq!(e.protected, vec!["test_calc.py"]);
        let t = store.tree(e.id).unwrap().unwrap();
        let outcome = t.end.as_ref().and_then(|e| e.outcome.clone()).expect("an outcome");
        passed += usize::from(outcome.passed);
        for s in &t.steps {
            assert!(!matches!(s.decision(), Some(Decision::Accepted)), "nobody accepted anything");
            assert_eq!(s.step.model.version.as_deref(), Some("scripted@1"));
        }
        if outcome.passed {
            let kinds: Vec<&str> = t.steps.iter().map(|s| s.decision().unwrap().kind()).collect();
            assert_eq!(kinds, vec!["auto", "unreviewed", "unreviewed", "auto"]);
            // The search tree takes the outcome as one rollout along the recorded path.
            let tree = search::Tree::from_episode(&t, &search::HumanValues::default()).unwrap();
            let root_edge = &tree.nodes[0].edges[0];
            assert_eq!((root_edge.n, root_edge.q()), (1, 1.0));
        }
    }
    assert_eq!(passed, 2);

    // The same tasks again with the same seed: the same results (the scripted policy is
    // deterministic; the containers are reused and reset in between).
    let again = eval::run_suite(&tasks, &Scripted, &envs, &cfg, &model, None, &|_| {});
    let key = |r: &eval::EpisodeResult| (r.task.clone(), r.sample, r.success, r.actions.clone(), r.empty_patch);
    assert_eq!(again.results.iter().map(key).collect::<Vec<_>>(), run.results.iter().map(key).collect::<Vec<_>>());
}

#[test]
fn eval_on_the_command_line_with_a_model_and_a_broken_task() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    small_suite(&suite);
    let model = dir.path().join("tiny");
    let st = keel_e2e::command("keel-train").args(["init-model", "--preset", "tiny", "--out"]).arg(&model).status().unwrap();
    assert!(st.success());
    let out = dir.path().join("report.json");
    let o = keel_e2e::command("keel-train")
        .args(["eval", "--tasks"])
        .arg(&suite)
        .args(["--model"])
        .arg(&model)
        .args(["--samples", "1", "--parallel", "2", "--max-steps", "2", "--max-tokens", "48", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("task `no-toml`: no task.toml"), "{stderr}");
    assert!(stderr.contains("task `passes`") && stderr.contains("passes before any change"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["tasks"], 4);
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert!(v["model"]["version"].as_str().unwrap().ends_with("@base"), "{}", v["model"]);
    assert!(v["success_rate"]["high"].as_f64().unwrap() > 0.0);
    // Every answer of the model was a tool call that parsed (constrained decoding).
    for r in v["results"].as_array().unwrap() {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["steps"].as_u64().unwrap() >= 1);
    }
    assert!(out.with_extension("png").exists());
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
}

use std::os::unix::fs::PermissionsExt;

/// The gate on tasks judges the agent: a candidate that solves fewer held-out tasks, or whose
/// loops, invalid calls or empty patches rise beyond the tolerance, is refused; one that is no
/// worse is promoted. (The schedule refuses on this verdict whatever the preference margins say:
/// `schedule.rs`, stage `eval`.)
/// Proposes a fixed sequence, one answer per call, whatever the state.
struct Sequence(std::sync::Mutex<std::vec::IntoIter<Action>>);

impl Policy for Sequence {
    fn sample(&self, _prompt: &Prompt, k: usize, _seed: u64) -> anyhow::Result<Vec<ModelOutput>> {
        let a = self.0.lock().unwrap().next().unwrap_or(Action::Finish { summary: "done".into() });
        Ok((0..k).map(|i| ModelOutput { content: None, tool_calls: vec![a.to_tool_call(format!("c{i}"))] }).collect())
    }
    fn version(&self) -> Option<String> {
        Some("sequence@1".into())
    }
}

/// `--user-rule tests`: the simulated user asks for another when a command does not run the tests
/// or an edit touches them, rejects the third refusal at one state, accepts the rest — recorded as
/// keel-lsp records a person's decisions, shown to the model as keel-lsp shows them, and mined
/// into human pairs (an accepted step over its refused siblings).
#[test]
fn a_simulated_user_decides_by_its_rule_and_its_decisions_are_a_persons() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    calc_task(&suite, "user", "fix it");
    let toml = suite.join("user/task.toml");
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap().replace("max_steps = 5", "max_steps = 9")).unwrap();
    let (tasks, _) = discover(&suite).unwrap();
    let run = |c: &str| Action::Run { command: c.into() };
    let policy = Sequence(std::sync::Mutex::new(
        vec![
            run("test_calc.py"),
            Action::Edit { path: "test_calc.py".into(), old_text: "assert add(2, 3) == 5".into(), new_text: "assert True".into() },
            run("python3 test_calc.py"),
            run("cat calc.py"),
            run("python3 -c 'print(1)'"),
            run("ls"),
            Action::Edit { path: "/work/calc.py".into(), old_text: "a - b".into(), new_text: "a + b".into() },
            run("python3 -m pytest -q test_calc.py"),
        ]
        .into_iter(),
    ));
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let writer = store.writer().unwrap();
    let cfg = EvalConfig { parallel: 1, user: Some(keel_trainer::user_rule::UserRule::parse("tests").unwrap()), ..Default::default() };
    let model = ModelRef { name: "sequence".into(), version: None };
    let r = eval::run_suite(&tasks, &policy, &Envs::new(None), &cfg, &model, Some(&writer), &|_| {});
    writer.flush().wait().unwrap();
    let r = &r.results[0];
    assert_eq!(r.actions, vec!["run?", "edit?", "run", "run?", "run?", "run?", "edit", "run", "finish"], "{r:?}");
    assert!(r.success && !r.empty_patch && r.edits_applied == 1, "{r:?}");
    assert_eq!((r.user_reviewed, r.user_refused), (8, 5));
    assert_eq!((r.invalid_calls, r.loops), (0, 0), "a person's refusals are neither invalid calls nor loops");
    let s = eval::summarize(std::slice::from_ref(r));
    assert_eq!(s.user_refusal_rate.map(|x| x.value), Some(5.0 / 8.0));

    let ep = store.episodes(&EpisodeFilter::default()).unwrap();
    let t = store.tree(ep[0].id).unwrap().unwrap();
    let kinds: Vec<String> = t
        .steps
        .iter()
        .map(|s| match s.decision().unwrap() {
            Decision::Rejected { cause, .. } => format!("{cause:?}"),
            d => d.kind().to_string(),
        })
        .collect();
    assert_eq!(kinds, vec!["Retry", "Retry", "accepted", "Retry", "Retry", "User", "accepted", "accepted", "auto"]);
    // "Another" keeps the state (siblings); the rejection moves it on and tells the model why.
    assert_eq!(t.steps[0].step.state_hash, t.steps[2].step.state_hash);
    assert_eq!(t.steps[3].step.state_hash, t.steps[5].step.state_hash);
    assert_ne!(t.steps[5].step.state_hash, t.steps[6].step.state_hash);
    let told = t.steps[6].step.prompt.messages.last().unwrap().content.clone().unwrap_or_default();
    assert!(told.contains("The user rejected this. Reason: run the tests"), "{told}");
    // The accepted command over its two refused siblings; nothing chosen at the rejected state.
    let mined = keel_trainer::pairs::mine(&t);
    let human: Vec<_> = mined.iter().filter(|p| p.source == keel_trainer::pairs::Source::Human).collect();
    assert_eq!(human.len(), 2, "{mined:#?}");
    for p in &human {
        assert!(p.chosen.to_string().contains("python3 test_calc.py"), "{}", p.chosen);
    }
}

/// A report row: a task solved or not, with `loops` loops (a solved one with its edit applied).
fn row(task: &str, success: bool, loops: usize) -> eval::EpisodeResult {
    eval::EpisodeResult {
        task: task.into(),
        sample: 0,
        seed: 0,
        success,
        end: if success { "finished".into() } else { "exhausted".into() },
        steps: 4,
        invalid_calls: 0,
        loops,
        edits_applied: usize::from(success),
        empty_patch: !success,
        actions: vec![],
        verify_exit: Some(i32::from(!success)),
        verify_output: String::new(),
        wall_ms: 0,
        model_ms: 0,
        tools_ms: 0,
        verify_ms: 0,
        episode: None,
        meta: serde_json::Value::Null,
        error: None,
        user_reviewed: 0,
        user_refused: 0,
    }
}

#[test]
fn the_task_gate_refuses_a_candidate_worse_at_tasks() {
    let g = eval::GateConfig::default();
    let before = vec![row("a", true, 0), row("b", true, 0), row("c", false, 0), row("d", false, 0)];

    let worse = vec![row("a", true, 0), row("b", false, 0), row("c", false, 0), row("d", false, 0)];
    let v = eval::task_gate(&before, &worse, &g);
    assert_eq!(v["verdict"], "refuse", "{v}");
    assert!(v["reasons"][0].as_str().unwrap().contains("success falls"), "{v}");
    assert_eq!(v["paired_success"]["worsened"], 1);

    // As many solved, but every episode now loops: refused on the failure mode alone.
    let loopy = vec![row("a", true, 1), row("b", true, 1), row("c", false, 2), row("d", false, 1)];
    let v = eval::task_gate(&before, &loopy, &g);
    assert_eq!(v["verdict"], "refuse", "{v}");
    assert!(v["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("loops rise")), "{v}");

    // As many solved, no loops left — because every failing episode now finishes at once without
    // trying anything: refused for giving up (what DPO on `finish`-chosen pairs once taught).
    let quit = |t: &str| eval::EpisodeResult { end: "finished".into(), actions: vec!["run?".into(), "finish".into()], ..row(t, false, 0) };
    let quitter = vec![row("a", true, 0), row("b", true, 0), quit("c"), quit("d")];
    let v = eval::task_gate(&before, &quitter, &g);
    assert_eq!(v["verdict"], "refuse", "{v}");
    assert!(v["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("giving up rise from 0.0% to 50.0%")), "{v}");
    let tried = eval::EpisodeResult { actions: vec!["view_file".into(), "finish".into()], ..quit("f") };
    assert!(quit("e").gave_up() && !tried.gave_up(), "a read carried out is trying");

    let better = vec![row("a", true, 0), row("b", true, 0), row("c", true, 0), row("d", false, 0)];
    let v = eval::task_gate(&before, &better, &g);
    assert_eq!(v["verdict"], "promote", "{v}");
    assert_eq!(v["paired_success"]["improved"], 1);
    let v = eval::task_gate(&before, &before, &g);
    assert_eq!(v["verdict"], "promote", "no worse is enough: {v}");

    // Nothing judged is no evidence: an "after" in which no episode ran (the engine was not
    // there) once promoted, every rate being 0 against 0.
    let v = eval::task_gate(&[], &[], &g);
    assert_eq!(v["verdict"], "refuse", "{v}");
    assert!(v["reasons"][0].as_str().unwrap().contains("nothing to judge"), "{v}");
    let no_outcome: Vec<_> = before.iter().map(|r| eval::EpisodeResult { error: Some("the engine is gone".into()), ..r.clone() }).collect();
    assert_eq!(eval::task_gate(&before, &no_outcome, &g)["verdict"], "refuse");

    // A suite run in which nothing ran is an error naming why, not an empty result.
    let skipped = eval::SuiteRun { results: vec![], task_errors: vec![keel_agent::task::TaskError { task: "a".into(), message: "the container engine does not answer".into() }], wall_ms: 0 };
    let e = skipped.ensure_ran().unwrap_err().to_string();
    assert!(e.contains("no episode ran") && e.contains("task `a`: the container engine does not answer"), "{e}");
    let failed = eval::SuiteRun { results: no_outcome.clone(), task_errors: vec![], wall_ms: 0 };
    assert!(failed.ensure_ran().unwrap_err().to_string().contains("the engine is gone"));
    let some = eval::SuiteRun { results: [no_outcome, before.clone()].concat(), task_errors: vec![], wall_ms: 0 };
    some.ensure_ran().unwrap();
}

/// `keel-train compare`: several seeds' reports pooled against a baseline. Each task counts once in
/// the paired difference (its success averaged over the seeds), a task only one side ran is named
/// and left out of the pairing, every report's own rate is shown, and a file that is not a report
/// is an error naming it.
#[test]
fn compare_pools_seeds_and_pairs_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let report = |name: &str, solved: &[bool], extra: bool| {
        let mut rows: Vec<_> = ["a", "b", "c", "d"].iter().zip(solved).map(|(t, s)| row(t, *s, 0)).collect();
        if extra {
            rows.push(row("e", false, 0));
        }
        let p = dir.path().join(name);
        eval::write_report(&serde_json::json!({"suite": "s", "results": rows}), &p).unwrap();
        p.display().to_string()
    };
    let base = report("base.json", &[true, false, false, false], false);
    let s1 = report("s1.json", &[true, true, false, false], false);
    let s2 = report("s2.json", &[true, true, true, false], false);
    let s3 = report("s3.json", &[true, true, false, false], true);
    let out = dir.path().join("cmp.json");
    let (ok, stdout, stderr) = crate::models::keel_train(&["compare", "--before", &base, "--after", &s1, "--after", &s2, "--after", &s3, "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // Per task after: a 1, b 1, c 1/3, d 0 against 1, 0, 0, 0: Δ = (0 + 1 + 1/3 + 0) / 4.
    assert!(stdout.contains("paired success over 4 task(s)") && stdout.contains("Δ +0.333") && stdout.contains("2 better, 0 worse"), "{stdout}");
    assert!(stdout.contains("1 task(s) only after ran: e"), "{stdout}");
    assert!(stdout.contains("50.0% 75.0% 40.0%"), "each seed's own success: {stdout}");
    assert!(stdout.contains("task gate: promote"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["after"]["pooled"]["episodes"], 13);
    assert!((v["after"]["pooled"]["success_rate"]["value"].as_f64().unwrap() - 7.0 / 13.0).abs() < 1e-9, "{v}");
    assert_eq!(v["gate"]["paired_success"]["tasks"], 4);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    // Worse seeds are refused by the same rule as the schedule's gate.
    let worse = report("worse.json", &[false, false, false, false], false);
    let (ok, stdout, _) = crate::models::keel_train(&["compare", "--before", &base, "--after", &worse]);
    assert!(ok && stdout.contains("task gate: refuse") && stdout.contains("success falls"), "{stdout}");
    // Not a report: an error that names the file.
    let (ok, _, stderr) = crate::models::keel_train(&["compare", "--before", &base, "--after", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("cmp.json: not an eval report"), "{stderr}");
}

use serde_json::Value;

use crate::engine::{containers_of, ends_by_itself, private_engine};

/// The container engine stopped (`kill -9` of the podman service) while an episode's command runs
/// in its container: `keel-train eval` ends by itself, the episode is reported as failed to run
/// with the engine's error and left out of the figures (not a task failure, which would teach the
/// model the wrong thing), nothing of it is recorded as an outcome, and the store is sound. With
/// the engine back on the same socket, the next run removes the container the dead one left and
/// runs the task to its real end.
#[test]
fn the_engine_stopped_mid_episode_is_no_outcome_and_the_next_run_works() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    calc_task(&suite, "fix", "fix it");
    let sock = dir.path().join("engine.sock");
    let mut engine = private_engine(&sock);
    let model = keel_e2e::ScriptedModel::start();
    let call = |a: Action| {
        let c = a.to_tool_call("c");
        keel_e2e::Reply::tool(&c.function.name, serde_json::from_str(&c.function.arguments).unwrap())
    };
    model.push(call(Action::ViewFile { path: "calc.py".into(), start_line: None, end_line: None }), false);
    model.push(call(Action::Run { command: "sleep 60".into() }), false);
    let db = dir.path().join("k.db");
    let eval = |out: &Path| {
        keel_e2e::command("keel-train")
            .args(["eval", "--tasks"])
            .arg(&suite)
            .args(["--endpoint", &model.url, "--samples", "1", "--parallel", "1", "--store"])
            .arg(&db)
            .arg("--out")
            .arg(out)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = dir.path().join("first.json");
    let mut run = eval(&first);
    let pid = run.id();
    // The command is running in the container: kill the engine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while model.remaining() > 0 {
        assert!(std::time::Instant::now() < deadline, "the episode never asked the model");
        assert!(run.try_wait().unwrap().is_none(), "eval ended before its episode ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    engine.kill().unwrap();
    engine.wait().unwrap();
    // It ends by itself (a hang guard, not a speed figure: the command had 58 s left).
    let out = ends_by_itself(run, std::time::Duration::from_secs(50), "keel-train eval");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no episode ran to an outcome"), "a run with no outcome is a failure: {err}");
    let report: Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    let r = &report["results"][0];
    assert_eq!(r["end"], "error", "{report:#}");
    assert_eq!(r["success"], false);
    let why = r["error"].as_str().unwrap_or("");
    assert!(why.contains("container engine"), "the error names the engine: {why}");
    assert!(err.contains("failed to run and are left out of the figures"), "{err}");
    assert_eq!(report["errors"], 1, "{report:#}");
    assert_eq!(report["success_rate"]["n"], 0, "no outcome counted: {report:#}");
    assert_eq!(model.requests().len(), 2, "the episode stopped at the engine's failure, without asking the model again");
    // In the store: the step before the failure, the end `failed` with the error, and no outcome.
    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let eps = store.episodes(&Default::default()).unwrap();
    assert_eq!(eps.len(), 1);
    let t = store.tree(eps[0].id).unwrap().unwrap();
    let end = t.end.as_ref().expect("its end is recorded");
    assert!(matches!(&end.end, EpisodeEnd::Failed { error } if error.contains("container engine")), "{end:?}");
    assert!(end.outcome.is_none(), "an outcome was recorded for an episode the engine lost: {end:?}");
    assert_eq!(t.steps.len(), 1, "only the step the engine answered is recorded: {:?}", t.steps);
    assert!(matches!(t.steps[0].step.parsed, Parsed::Action { action: Action::ViewFile { .. }, .. }));
    drop(store);
    // The dead engine's container is still there (podman keeps it running). (Another Keel
    // process connecting to the same storage meanwhile, a test beside this one, may already
    // have removed it as the next run would.)
    let left = containers_of(pid);
    eprintln!("left by the dead engine: {left:?}");

    // The engine back on the same socket: the next run removes what the dead one left, and works.
    let mut engine = private_engine(&sock);
    model.push(call(Action::Edit { path: "calc.py".into(), old_text: "a - b".into(), new_text: "a + b".into() }), false);
    model.push(call(Action::Finish { summary: "done".into() }), false);
    let second = dir.path().join("second.json");
    let out = eval(&second).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = engine.kill();
    let _ = engine.wait();
    assert!(out.status.success(), "{err}");
    let report: Value = serde_json::from_slice(&std::fs::read(&second).unwrap()).unwrap();
    assert_eq!(report["results"][0]["success"], true, "{report:#}");
    assert_eq!(report["errors"], 0);
    // The next run removed what the dead one left (`sandbox: removed 1 container(s) left by runs
    // that are gone`), unless a process beside it did first.
    assert!(containers_of(pid).is_empty(), "left behind: {left:?}; {err}");
    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let solved = store.episodes(&Default::default()).unwrap().iter().filter(|e| store.tree(e.id).unwrap().unwrap().end.and_then(|e| e.outcome).is_some_and(|o| o.passed)).count();
    assert_eq!(solved, 1);
    // The first report is as it was written.
    assert_eq!(serde_json::from_slice::<Value>(&std::fs::read(&first).unwrap()).unwrap()["results"][0]["end"], "error");
}

/// A training task with its known fix, whose own step budget (4) is shorter than its
/// demonstration (run, read, edit, run, finish).
fn fix_task(suite: &Path, name: &str, instruction: &str, bug: &str) {
    write(suite, &format!("{name}/task.toml"), &format!(
        "instruction = \"{instruction}\"\nverify = \"python3 test_calc.py\"\nprotected = [\"test_calc.py\"]\nfile = \"calc.py\"\nmax_steps = 4\n\n[[fix]]\npath = \"calc.py\"\nold_text = \"    return {bug}\"\nnew_text = \"    return a + b\"\n"
    ));
    write(suite, &format!("{name}/workspace/calc.py"), &format!("def add(a, b):\n    return {bug}\n"));
    write(suite, &format!("{name}/workspace/test_calc.py"), "from calc import add\nassert add(2, 3) == 5, f'add(2, 3) returned {add(2, 3)}, expected 5'\nprint('ok')\n");
}

/// `keel-train loop` end to end on a real (tiny, random) model in containers: demonstrations of
/// the training tasks' fixes, search, SFT, DPO, the held-out eval before and after, the report
/// and the adapter. Every SFT example of an edit shows the model the file it edits first: a
/// demonstration that edited text the agent had never read taught the real model to write edits
/// of lines it had not seen (none applied on held-out tasks).
#[test]
fn the_loop_demonstrates_reading_before_editing_trains_and_judges_held_out_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (train, heldout) = (dir.path().join("train"), dir.path().join("heldout"));
    fix_task(&train, "minus", "test_calc.py fails: fix calc.py", "a - b");
    fix_task(&train, "times", "test_calc.py fails; fix the bug in calc.py", "a * b");
    calc_task(&heldout, "held", "add is wrong");
    let model = dir.path().join("tiny");
    assert!(keel_e2e::command("keel-train").args(["init-model", "--preset", "tiny", "--out"]).arg(&model).status().unwrap().success());
    let run = dir.path().join("run");
    let o = keel_e2e::command("keel-train")
        .arg("loop")
        .arg("--model").arg(&model)
        .arg("--out").arg(&run)
        .arg("--tasks").arg(&train)
        .arg("--heldout").arg(&heldout)
        .args(["--samples", "0", "--simulations", "2", "--eval-samples", "1", "--max-steps", "2", "--max-tokens", "32", "--parallel", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["recipe"], "sft+dpo", "{report}");
    assert_eq!(report["data"]["demonstrations"], 2, "{report}");
    // Each demonstration passed although its task allows the model only 4 steps.
    assert_eq!(report["data"]["demonstrations_passed"].as_f64(), Some(1.0), "{report}");
    assert_eq!(report["trained"], true, "{report}");
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    for s in ["demos", "sft"] {
        assert!(stages.contains(&s), "{stages:?}");
    }
    assert!(stages.iter().any(|s| s.starts_with("after")), "{stages:?}");
    assert_eq!(report["suites"][0]["before"]["tasks"], 1, "{report}");
    assert!(run.join("adapter/adapter_config.json").exists() && run.join("adapter/adapter_model.safetensors").exists());
    assert_eq!(std::fs::metadata(run.join("report.json")).unwrap().permissions().mode() & 0o777, 0o600);

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("sft.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let name = |m: &serde_json::Value| m["tool_calls"][0]["function"]["name"].as_str().map(str::to_string);
    let names: Vec<String> = rows.iter().filter_map(|r| name(&r["completion"][0])).collect();
    assert_eq!(names.iter().filter(|n| *n == "edit").count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "view_file").count(), 2, "{names:?}");
    assert_eq!(rows.len(), 10, "{names:?}");
    for r in rows.iter().filter(|r| name(&r["completion"][0]).as_deref() == Some("edit")) {
        let args = &r["completion"][0]["tool_calls"][0]["function"]["arguments"];
        let (path, old) = (args["path"].as_str().unwrap(), args["old_text"].as_str().unwrap());
        let prompt = r["prompt"].as_array().unwrap();
        let read = prompt.iter().position(|m| name(m).as_deref() == Some("view_file") && m["tool_calls"][0]["function"]["arguments"]["path"] == path);
        let read = read.unwrap_or_else(|| panic!("the edit of {path} comes without a read of it: {r}"));
        // What the read showed holds the text the edit replaces.
        let shown = prompt[read + 1]["content"].as_str().unwrap();
        assert!(shown.contains(old.trim()), "{shown:?} lacks {old:?}");
    }
}

/// Recoveries (`keel-train loop --recover`), in containers: a model episode that edits the wrong
/// line, runs the tests and finishes gets the task's expert from the state after its failed run.
/// The recovery replays the model's steps (same states), then reads the file, makes one edit that
/// undoes the wrong change and fixes the bug, runs the tests and finishes, and passes. Search pairs
/// the expert's step with the model's at that state only; SFT gets the expert's steps only; a rerun
/// reads the recoveries back instead of running them again.
#[test]
fn a_failed_episode_gets_a_recovery_from_where_it_went_wrong_and_one_pair_there() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("train");
    fix_task(&suite, "minus", "test_calc.py fails: fix calc.py", "a - b");
    let toml = suite.join("minus/task.toml");
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap().replace("max_steps = 4", "max_steps = 6")).unwrap();
    let (tasks, _) = discover(&suite).unwrap();
    let run = Action::Run { command: "python3 test_calc.py".into() };
    let view = Action::ViewFile { path: "calc.py".into(), start_line: None, end_line: None };
    let wrong = Action::Edit { path: "calc.py".into(), old_text: "def add(a, b):".into(), new_text: "def add(a, b):  # adds".into() };
    let policy = Sequence(std::sync::Mutex::new(vec![run.clone(), view.clone(), wrong, run.clone(), Action::Finish { summary: "done".into() }].into_iter()));
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let writer = store.writer().unwrap();
    let envs = Envs::new(None);
    let model = ModelRef { name: "keel".into(), version: None };
    let r = eval::run_suite(&tasks, &policy, &envs, &EvalConfig { parallel: 1, ..Default::default() }, &model, Some(&writer), &|_| {});
    writer.flush().wait().unwrap();
    assert!(!r.results[0].success && r.results[0].edits_applied == 1, "{:?}", r.results[0]);
    let trees: Vec<EpisodeTree> = store.episodes(&EpisodeFilter::default()).unwrap().iter().map(|e| store.tree(e.id).unwrap().unwrap()).collect();

    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let recs = keel_trainer::learn::recover_stage(&out, &tasks, &trees, &envs, 1, 7, None).unwrap();
    assert_eq!(recs.len(), 1);
    let listed: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("recover.json")).unwrap()).unwrap();
    let l = &listed[0];
    assert_eq!((l["passed"].as_bool(), l["diverged"].as_bool(), l["prefix_len"].as_u64()), (Some(true), Some(false), Some(4)), "{listed}");
    assert!(l["model_action"].as_str().unwrap().starts_with("finish") && l["expert_action"].as_str().unwrap().starts_with("view_file"), "{listed}");
    let rec = &recs[0];
    let steps: Vec<&Step> = rec.recovery.steps.iter().map(|s| &s.step).collect();
    let names: Vec<&str> = steps.iter().map(|s| s.parsed.action().map(|a| a.tool_name()).unwrap_or("?")).collect();
    assert_eq!(names, ["run", "view_file", "edit", "run", "view_file", "edit", "run", "finish"]);
    // The replayed steps reached the model's states.
    let model_steps: Vec<&Step> = rec.model.steps.iter().map(|s| &s.step).collect();
    for (a, b) in model_steps.iter().zip(&steps).take(5) {
        assert_eq!(a.state_hash, b.state_hash);
    }
    let Some(Action::Edit { old_text, new_text, .. }) = steps[5].parsed.action() else { panic!() };
    assert_eq!((old_text.as_str(), new_text.as_str()), ("def add(a, b):  # adds\n    return a - b", "def add(a, b):\n    return a + b"));

    let env = envs.get(&eval::image_name(None)).unwrap();
    let (pairs, tree) = keel_trainer::learn::recovery_pairs(rec, &policy, env.as_ref(), &search::SearchConfig { margin: 0.3, ..Default::default() }).unwrap();
    assert!(tree.is_some());
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let fname = |m: &serde_json::Value| m[0]["tool_calls"][0]["function"]["name"].as_str().unwrap().to_string();
    assert_eq!((fname(&pairs[0]["chosen"]), fname(&pairs[0]["rejected"])), ("view_file".to_string(), "finish".to_string()));
    assert_eq!(pairs[0]["meta"]["state_hash"], l["state_hash"]);
    let sft = keel_trainer::learn::recovery_sft_rows(rec);
    let sft_names: Vec<String> = sft.iter().map(|r| fname(&r["completion"])).collect();
    assert_eq!(sft_names, ["view_file", "edit", "run", "finish"]);
    assert!(sft.iter().all(|r| r["meta"]["source"] == "recovery"));

    // A rerun reads the recoveries back.
    let again = keel_trainer::learn::recover_stage(&out, &tasks, &trees, &envs, 1, 7, None).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].recovery.episode.id, rec.recovery.episode.id);
}
