//! The scheduler's parts: the gate, triggers, the lock, the held-out split.

use keel_trainer::schedule::{self, Config, Gate, Lock};
use keel_trajectory::{Run, Store};
use serde_json::{Value, json};

fn pair(kind: &str, lang: &str, state: &str) -> Value {
    json!({"prompt": [], "chosen": [], "rejected": [], "meta": {"task_kind": kind, "language": lang, "state_hash": state}})
}

#[test]
fn the_gate_promotes_only_a_better_candidate_and_guards_slices() {
    let pairs: Vec<Value> = (0..10).map(|i| pair(if i < 5 { "fix_diagnostic" } else { "implement" }, "python", &format!("s{i}"))).collect();
    let live: Vec<(f64, f64)> = (0..10).map(|i| if i % 2 == 0 { (-5.0, -4.0) } else { (-4.0, -5.0) }).collect();
    // Better everywhere: promoted.
    let better: Vec<(f64, f64)> = (0..10).map(|_| (-3.0, -6.0)).collect();
    let r = schedule::gate(&Gate::default(), &pairs, &better, &live);
    assert!(r.promote, "{}", r.why);
    assert_eq!(r.candidate.accuracy, 1.0);
    assert_eq!(r.live.accuracy, 0.5);
    assert!(r.table("live").contains("PROMOTE"));
    // Contradicting the held-out rule: refused, with the reason.
    let worse: Vec<(f64, f64)> = (0..10).map(|_| (-6.0, -3.0)).collect();
    let r = schedule::gate(&Gate::default(), &pairs, &worse, &live);
    assert!(!r.promote);
    assert!(r.why.contains("accuracy 0.000 does not beat 0.500"), "{}", r.why);
    // Better overall but one slice loses more than the tolerance: refused.
    let mixed: Vec<(f64, f64)> = (0..10).map(|i| if i < 5 { (-9.0, -1.0) } else { (-1.0, -20.0) }).collect();
    let lenient = Gate { slice_tolerance: 0.1, min_slice_pairs: 3, ..Gate::default() };
    let r = schedule::gate(&lenient, &pairs, &mixed, &live);
    assert!(!r.promote);
    assert!(r.why.contains("slice task_kind=fix_diagnostic loses accuracy"), "{}", r.why);
    // A required gain.
    let strict = Gate { min_accuracy_gain: 0.6, ..Gate::default() };
    assert!(!schedule::gate(&strict, &pairs, &better, &live).promote);
}

#[test]
fn the_split_is_stable_and_near_its_share() {
    let pairs: Vec<Value> = (0..2000).map(|i| pair("implement", "rust", &format!("state-{i}"))).collect();
    let held = pairs.iter().filter(|p| schedule::held_out(p, 0.2)).count();
    assert!((300..500).contains(&held), "{held}");
    for p in &pairs[..50] {
        assert_eq!(schedule::held_out(p, 0.2), schedule::held_out(&p.clone(), 0.2));
    }
}

#[test]
fn one_scheduler_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedule.lock");
    let a = Lock::try_acquire(&path).unwrap();
    assert!(a.is_some());
    assert!(Lock::try_acquire(&path).unwrap().is_none(), "a second scheduler must not get the lock");
    drop(a);
    assert!(Lock::try_acquire(&path).unwrap().is_some(), "released when the holder goes away");
}

#[test]
fn triggers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("keel.toml");
    std::fs::write(&cfg_path, "store = \"k.db\"\nbase_model = \"model\"\n[trigger]\ninterval_secs = 3600\nat = \"03:00\"\n").unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    assert_eq!(cfg.store, dir.path().join("k.db"));
    assert_eq!(cfg.work_dir(), dir.path().join("k.runs"));
    let store = Store::open(&cfg.store).unwrap();
    let day = 20_000 * 86_400_000i64;
    // Never ran: the interval fires.
    assert!(schedule::trigger_reason(&cfg, &store, &[], day).unwrap().is_some());
    let ran = |at: i64| vec![Run { id: "r".into(), created_at: at, updated_at: at, stage: "done".into(), status: "promoted".into(), detail: json!({}) }];
    // Ran at 02:30, now 02:50: nothing; now 03:10: the daily time fires.
    let r = ran(day + 9_000_000);
    assert!(schedule::trigger_reason(&cfg, &store, &r, day + 10_200_000).unwrap().is_none());
    assert!(schedule::trigger_reason(&cfg, &store, &r, day + 11_400_000).unwrap().unwrap().contains("daily"));
    // Bad configs are named.
    std::fs::write(&cfg_path, "store = \"k.db\"\nbase_model = \"m\"\n[trigger]\nat = \"25:00\"\n").unwrap();
    assert!(format!("{:#}", Config::load(&cfg_path).unwrap_err()).contains("not HH:MM"));
    std::fs::write(&cfg_path, "store = \"k.db\"\nbase_model = \"m\"\nbogus = 1\n").unwrap();
    assert!(format!("{:#}", Config::load(&cfg_path).unwrap_err()).contains("bogus"));
}

/// A stand-in for `keel-train` (the stages run it as a child process): it appends its arguments
/// to `calls.txt` beside it, fails like a broken configuration while a file `fail` is there, and
/// otherwise writes an empty `--out` file.
fn fake_keel_train(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = dir.join("keel-train");
    let script = "#!/bin/sh\nhere=$(dirname \"$0\")\necho \"$@\" >> \"$here/calls.txt\"\n\
                  if [ -e \"$here/fail\" ]; then echo \"error: unexpected argument '--bogus' found\" >&2; exit 2; fi\n\
                  while [ $# -gt 0 ]; do if [ \"$1\" = --out ]; then : > \"$2\"; fi; shift; done\n";
    // Written by a child, so that no descriptor of this process (which a child being started by
    // another test would inherit) has it open for writing when it is executed (ETXTBSY).
    let st = std::process::Command::new("sh").args(["-c", "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", script]).arg(&exe).status().unwrap();
    assert!(st.success());
    exe
}

/// A config whose search stage runs (and, with too few pairs for training, a run that gets past
/// it ends `skipped`), with a store that has a live adapter.
fn search_config(dir: &std::path::Path) -> Config {
    let path = dir.join("keel.toml");
    std::fs::write(
        &path,
        "store = \"k.db\"\nbase_model = \"model\"\ndevice = \"cuda\"\n[search]\nenabled = true\nargs = [\"--simulations\", \"2\"]\n\
         [sandbox]\nimage = \"localhost/keel-python:1\"\n[train]\nmin_pairs = 1000\n",
    )
    .unwrap();
    let cfg = Config::load(&path).unwrap();
    let mut store = Store::open(&cfg.store).unwrap();
    let v = keel_trajectory::ModelVersion {
        id: "keel@live".into(),
        created_at: 1,
        base_model: "model".into(),
        adapter_path: Some("/adapters/live".into()),
        adapter_hash: Some("live".into()),
        parent: None,
        trained_on: json!({}),
        eval: json!({}),
        live: false,
    };
    store.put_model_version(&v).unwrap();
    store.set_live("keel@live").unwrap();
    cfg
}

#[test]
fn a_failing_stage_fails_its_run_which_is_retried_then_given_up() {
    use schedule::{MAX_ATTEMPTS, Pass};
    let dir = tempfile::tempdir().unwrap();
    let cfg = search_config(dir.path());
    let exe = fake_keel_train(dir.path());
    std::fs::write(dir.path().join("fail"), "").unwrap();
    let runs = || Store::open(&cfg.store).unwrap().runs().unwrap();

    for attempt in 1..=MAX_ATTEMPTS {
        let Pass::Failed { run, stage, attempt: a, error } = schedule::pass(&cfg, &exe).unwrap() else { panic!("the search stage fails") };
        assert_eq!((stage.as_str(), a), ("search", attempt));
        assert!(error.contains("`keel-train search` failed") && error.contains("unexpected argument '--bogus'"), "{error}");
        let all = runs();
        assert_eq!(all.len(), 1, "retried, not a new run: {all:?}");
        let r = &all[0];
        assert_eq!((r.id.as_str(), r.status.as_str(), r.stage.as_str()), (run.as_str(), "failed", "search"));
        assert_eq!(r.detail["error"]["stage"], "search");
        assert_eq!(r.detail["error"]["attempt"], attempt);
        assert!(r.detail["error"]["message"].as_str().unwrap().contains("unexpected argument"));
        let table = schedule::runs_table(&all);
        assert!(table.contains("failed") && table.contains(&format!("attempt {attempt} of {MAX_ATTEMPTS}")), "{table}");
    }
    // Given up: it stays failed, and does not block the next run.
    let p = schedule::pass(&cfg, &exe).unwrap();
    let Pass::Failed { run, attempt: 1, .. } = p else { panic!("a new run, failing: {p:?}") };
    let all = runs();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].status.as_str(), all[1].id.as_str()), ("failed", run.as_str()));
    // `--once` says so with its exit status.
    let e = schedule::run_once(&cfg, &exe).unwrap_err();
    assert!(format!("{e:#}").contains("failed at stage `search`"), "{e:#}");

    // Fixed: the failed run is retried at its stage and goes on.
    std::fs::remove_file(dir.path().join("fail")).unwrap();
    let done = schedule::pass(&cfg, &exe).unwrap();
    assert_eq!(done, Pass::Finished { run: run.clone(), status: "skipped".into() });
    let all = runs();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].detail["attempts"], 3);
    // Search ran with the live adapter, the configured device and image, then the extra arguments.
    let calls = std::fs::read_to_string(dir.path().join("calls.txt")).unwrap();
    let last = calls.lines().last().unwrap();
    assert!(last.starts_with("search --store "), "{last}");
    assert!(last.ends_with("--adapter /adapters/live --device cuda --image localhost/keel-python:1 --simulations 2"), "{last}");
}

#[test]
fn the_loop_survives_failing_passes_and_backs_off() {
    use schedule::Backoff;
    use std::time::Duration;
    let secs = Duration::from_secs;
    let mut b = Backoff::new(secs(60), secs(200));
    assert_eq!([b.failed(), b.failed(), b.failed(), b.failed()], [secs(60), secs(120), secs(200), secs(200)]);
    b.succeeded();
    assert_eq!(b.failed(), secs(60), "reset after a success");
    assert_eq!(Backoff::default(), Backoff::new(secs(60), secs(3600)));

    // Failing stages, then a fixed one: the loop goes on, waiting longer, then `every` again.
    let dir = tempfile::tempdir().unwrap();
    let cfg = search_config(dir.path());
    let exe = fake_keel_train(dir.path());
    std::fs::write(dir.path().join("fail"), "").unwrap();
    let mut waits = vec![];
    schedule::serve(&cfg, &exe, secs(5), Backoff::new(secs(60), secs(200)), Some(4), |d| waits.push(d));
    assert_eq!(waits, [secs(60), secs(120), secs(200), secs(200)]);
    std::fs::remove_file(dir.path().join("fail")).unwrap();
    waits.clear();
    schedule::serve(&cfg, &exe, secs(5), Backoff::new(secs(60), secs(200)), Some(2), |d| waits.push(d));
    assert_eq!(waits, [secs(5), secs(5)]);
    let runs = Store::open(&cfg.store).unwrap().runs().unwrap();
    assert_eq!(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["failed", "skipped", "skipped"]);

    // A pass that cannot even start (the store's directory cannot be made) backs off too.
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, "store = \"/proc/keel/k.db\"\nbase_model = \"model\"\n").unwrap();
    let broken = Config::load(&broken_path).unwrap();
    waits.clear();
    schedule::serve(&broken, &exe, secs(5), Backoff::new(secs(60), secs(200)), Some(2), |d| waits.push(d));
    assert_eq!(waits, [secs(60), secs(120)]);
}

#[test]
fn the_sandbox_image_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, "store = \"k.db\"\nbase_model = \"m\"\n[sandbox]\nimage = \"localhost/keel-python:0.1.0\"\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.sandbox.image.as_deref(), Some("localhost/keel-python:0.1.0"));
    let args = schedule::search_args(&cfg, None, &dir.path().join("o"), &dir.path().join("t"));
    assert!(args.windows(2).any(|w| w == ["--image", "localhost/keel-python:0.1.0"]), "{args:?}");
    assert!(!args.contains(&"--adapter".to_string()), "no live version: the base model");
    std::fs::write(&path, "store = \"k.db\"\nbase_model = \"m\"\n[sandbox]\nimage = \" \"\n").unwrap();
    assert!(format!("{:#}", Config::load(&path).unwrap_err()).contains("sandbox.image"));
    // A flag given in search.args is not given twice.
    std::fs::write(&path, "store = \"k.db\"\nbase_model = \"m\"\n[search]\nargs = [\"--device=cuda:1\"]\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    let args = schedule::search_args(&cfg, Some("/a"), &dir.path().join("o"), &dir.path().join("t"));
    assert_eq!(args.iter().filter(|a| a.starts_with("--device")).count(), 1, "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--adapter", "/a"]));
}

/// `keel-train runs`: each state a run can be in, as the scheduler records it, listed as a table
/// and as JSON lines; an empty store says so; a store that is not there is an error, not a new file.
#[test]
fn runs_are_listed_from_the_store() {
    use crate::models::keel_train;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    drop(store);
    let path = db.to_str().unwrap();
    let (ok, out, err) = keel_train(&["runs", "--store", path]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("no runs in {path} (`keel-train schedule` records them)"));
    let (ok, out, err) = keel_train(&["runs", "--store", path, "--json"]);
    assert!(ok && out.is_empty(), "JSON lines: none for no runs: {out}");
    assert!(err.contains("no runs in"), "{err}");
    let missing = dir.path().join("nope.db");
    let (ok, _, err) = keel_train(&["runs", "--store", missing.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("no store at {}", missing.display())), "{err}");
    assert!(!missing.exists(), "listing created a store");

    let day = 20_000 * 86_400_000i64;
    let run = |id: &str, hour: i64, stage: &str, status: &str, detail: Value| Run {
        id: id.into(),
        created_at: day + hour * 3_600_000,
        updated_at: day + hour * 3_600_000 + 60_000,
        stage: stage.into(),
        status: status.into(),
        detail,
    };
    let gate = |promote: bool, why: &str| json!({"promote": promote, "why": why, "accuracy": 0.75, "margin": 0.5});
    let store = Store::open(&db).unwrap();
    for r in [
        run("run-a", 1, "done", "promoted", json!({"reason": "every pass", "attempts": 1, "candidate": "keel@aaaa", "gate": gate(true, "accuracy 0.750 vs 0.500, margin 0.500 vs 0.100")})),
        run("run-b", 2, "done", "refused", json!({"reason": "every pass", "attempts": 1, "candidate": "keel@bbbb", "gate": gate(false, "accuracy 0.400 does not beat 0.500")})),
        run("run-c", 3, "done", "skipped", json!({"reason": "every pass", "attempts": 1, "skipped": "2 training pairs, fewer than train.min_pairs = 8"})),
        // Failed twice at search: the second attempt's error is the one shown.
        run(
            "run-d",
            4,
            "search",
            "failed",
            json!({"reason": "every pass", "attempts": 2, "error": {"stage": "search", "message": "`keel-train search` failed (exit status: 2)\nerror: no engine", "attempt": 2, "at": day}}),
        ),
        // Retried after a failure and now going: the old error is history, not the run's state.
        run("run-e", 5, "sft", "running", json!({"reason": "12 new decisions (trigger: 10)", "attempts": 2, "error": {"stage": "sft", "message": "killed", "attempt": 1}})),
    ] {
        store.put_run(&r).unwrap();
    }
    drop(store);

    let (ok, table, err) = keel_train(&["runs", "--store", path]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "a header and one line per run:\n{table}");
    for h in ["run", "created", "stage", "status", "attempts", "candidate", "gate", "detail"] {
        assert!(lines[0].split_whitespace().any(|w| w == h), "{h} missing from the header: {}", lines[0]);
    }
    // Columns line up under the header.
    let at = lines[0].find("candidate").unwrap();
    assert_eq!((&lines[1][at..at + 9], &lines[2][at..at + 9], &lines[3][at..at + 2]), ("keel@aaaa", "keel@bbbb", "- "), "{table}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let row = |i: usize| cols(lines[i]);
    // Oldest first; the created time as a date.
    assert_eq!(row(1)[..8], ["run-a", "2024-10-04", "01:00:00", "done", "promoted", "1", "keel@aaaa", "promote"], "{table}");
    assert!(lines[1].ends_with("accuracy 0.750 vs 0.500, margin 0.500 vs 0.100"), "{table}");
    assert_eq!(row(2)[3..8], ["done", "refused", "1", "keel@bbbb", "refuse"], "{table}");
    assert!(lines[2].ends_with("accuracy 0.400 does not beat 0.500"), "{table}");
    assert_eq!(row(3)[3..8], ["done", "skipped", "1", "-", "-"], "{table}");
    assert!(lines[3].ends_with("2 training pairs, fewer than train.min_pairs = 8"), "{table}");
    assert_eq!(row(4)[3..8], ["search", "failed", "2", "-", "-"], "{table}");
    assert!(lines[4].ends_with(&format!("at search (attempt 2 of {}): `keel-train search` failed (exit status: 2)", schedule::MAX_ATTEMPTS)), "{table}");
    assert!(!table.contains("no engine"), "only the error's first line in the table:\n{table}");
    assert_eq!(row(5)[3..8], ["sft", "running", "2", "-", "-"], "{table}");
    assert!(lines[5].ends_with("12 new decisions (trigger: 10)"), "{table}");

    let (ok, out, err) = keel_train(&["runs", "--store", path, "--json"]);
    assert!(ok, "{err}");
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["run-a", "run-b", "run-c", "run-d", "run-e"]);
    assert_eq!(rows[0]["gate"], json!({"verdict": "promote", "why": "accuracy 0.750 vs 0.500, margin 0.500 vs 0.100"}));
    assert_eq!((rows[0]["candidate"].as_str(), rows[0]["created_at"].as_i64()), (Some("keel@aaaa"), Some(day + 3_600_000)));
    assert_eq!(rows[1]["gate"]["verdict"], "refuse");
    assert_eq!((&rows[2]["gate"], &rows[2]["candidate"], &rows[2]["error"]), (&Value::Null, &Value::Null, &Value::Null));
    assert_eq!(rows[3]["error"]["message"], "`keel-train search` failed (exit status: 2)\nerror: no engine", "the whole message");
    assert_eq!((rows[3]["status"].as_str(), rows[3]["stage"].as_str(), rows[3]["attempts"].as_u64()), (Some("failed"), Some("search"), Some(2)));
    assert_eq!(rows[4]["error"], Value::Null, "a running run has no error");
    assert_eq!(rows[4]["detail"]["error"]["message"], "killed", "the history stays in detail");
}

/// The task gate does not judge on held-out episodes that could not run (the container engine
/// stopped under them): the eval stage fails, so the run is retried, and the report is removed,
/// so the retry evaluates again instead of reading it back.
#[test]
fn the_task_gate_does_not_judge_episodes_that_did_not_run() {
    use schedule::Pass;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("keel.toml"), "store = \"k.db\"\nbase_model = \"model\"\n[tasks]\nheldout = [\"heldout\"]\n").unwrap();
    let cfg = Config::load(&d.join("keel.toml")).unwrap();
    // A run at its eval stage: no held-out pairs, a candidate adapter.
    let run = Run { id: "run-x".into(), created_at: 1, updated_at: 1, stage: "eval".into(), status: "running".into(), detail: json!({"attempts": 1}) };
    Store::open(&cfg.store).unwrap().put_run(&run).unwrap();
    let rd = cfg.work_dir().join("run-x");
    std::fs::create_dir_all(rd.join("adapter")).unwrap();
    std::fs::write(rd.join("heldout.jsonl"), "").unwrap();
    std::fs::write(rd.join("adapter/adapter_model.safetensors"), "weights").unwrap();
    // `keel-train eval` whose one episode lost its engine.
    let row = |error: Option<&str>| {
        json!({"task": "t", "sample": 0, "seed": 1, "success": false, "end": if error.is_some() { "error" } else { "finished" }, "steps": 1, "invalid_calls": 0,
               "loops": 0, "edits_applied": 0, "empty_patch": true, "actions": [], "verify_exit": null, "verify_output": "", "wall_ms": 1, "model_ms": 0,
               "tools_ms": 0, "verify_ms": 0, "episode": null, "meta": null, "error": error})
    };
    std::fs::write(d.join("report.json"), json!({"results": [row(Some("the container engine failed during the run, so it has no outcome: connection refused"))]}).to_string()).unwrap();
    let exe = d.join("keel-train");
    let script = "#!/bin/sh\nhere=$(dirname \"$0\")\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --out ]; then cp \"$here/report.json\" \"$2\"; fi; shift; done\n";
    let st = std::process::Command::new("sh").args(["-c", "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", script]).arg(&exe).status().unwrap();
    assert!(st.success());
    let p = schedule::pass(&cfg, &exe).unwrap();
    let Pass::Failed { stage, error, .. } = &p else { panic!("the eval stage fails: {p:?}") };
    assert_eq!(stage, "eval");
    assert!(error.contains("1 of 1 held-out episodes") && error.contains("could not run") && error.contains("connection refused"), "{error}");
    assert!(!rd.join("eval-live-0.json").exists(), "the report of episodes that did not run is not kept");
    // With the engine back, the retry evaluates again and the gate judges.
    std::fs::write(d.join("report.json"), json!({"results": [row(None)]}).to_string()).unwrap();
    let p = schedule::pass(&cfg, &exe).unwrap();
    assert!(matches!(&p, Pass::Finished { .. }), "{p:?}");
    let r = Store::open(&cfg.store).unwrap().runs().unwrap().pop().unwrap();
    assert_eq!(r.detail["task_gate"]["verdict"], "promote", "{r:?}");
}

/// A `running` run lists as `interrupted` when the scheduler recorded on it is gone from this
/// machine; one whose scheduler still runs, or ran elsewhere (a store on PostgreSQL is shared, so
/// its pid means nothing here), stays `running`.
#[test]
fn a_run_whose_scheduler_is_gone_is_interrupted() {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let space = format!("{}:{}", boot.trim(), std::fs::read_link("/proc/self/ns/pid").unwrap().display());
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    let me = std::process::id();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let gone = dead.id();
    dead.wait().unwrap();
    let run = |scheduler: Value| Run { id: "r".into(), created_at: 1, updated_at: 1, stage: "dpo".into(), status: "running".into(), detail: json!({"scheduler": scheduler}) };
    let status = |scheduler: Value| schedule::run_row(&run(scheduler))["status"].as_str().unwrap().to_string();
    assert_eq!(status(json!({"pid": me, "start": start, "space": space})), "running", "its scheduler runs");
    assert_eq!(status(json!({"pid": gone, "start": 1, "space": space})), "interrupted");
    assert_eq!(status(json!({"pid": me, "start": start + 1, "space": space})), "interrupted", "the pid was reused");
    assert_eq!(status(json!({"pid": gone, "start": 1, "space": "another-machine:pid:[1]"})), "running", "not ours to judge");
    assert_eq!(status(Value::Null), "running", "none recorded");
    assert!(schedule::runs_table(&[run(json!({"pid": gone, "start": 1, "space": space}))]).contains("interrupted"));
}
