//! The retraining loop end to end, through the `keel-train` binary on a tiny model: a killed run
//! resumes at the stage it was in and finishes; two schedulers started at once run one pass; a
//! candidate trained on pairs that contradict the held-out rule is refused, one trained on
//! consistent pairs is promoted — and the server's next answer carries the new version.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keel_trainer::schedule::held_out;
use keel_trajectory::action::Action;
use keel_trajectory::*;
use serde_json::{Value, json};

fn tiny() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny");
        let st = keel_e2e::command("keel-train").args(["init-model", "--preset", "tiny", "--seed", "11", "--out"]).arg(&p).stdout(Stdio::null()).status().unwrap();
        assert!(st.success());
        (d, p)
    })
    .1
}

const HOLDOUT: f64 = 0.3;

/// Records `n` episodes, each a state where the user asked for another on one edit and accepted a
/// sibling. The rule: the good edit writes `ok`, the bad one `no`. With `contradict`, states that
/// land on the training side of the split are decided against the rule (held-out ones follow it).
fn record(store: &Store, n: usize, contradict: bool) {
    let w = store.writer().unwrap();
    for i in 0..n {
        let ep = Episode {
            id: new_id(),
            created_at: 1_000 + i as i64,
            workspace: Workspace { root: "/w".into(), vcs: None },
            task: Task { kind: if i % 2 == 0 { TaskKind::Implement } else { TaskKind::FixDiagnostic }, instruction: format!("task {i}"), uri: None, language: Some("python".into()), range: None, diagnostics: vec![], selected_text: None },
            model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
            client: None,
            verify: None,
            protected: vec![],
        };
        let _ = w.append(Record::Episode(ep.clone()));
        // A short prompt and no tools schema keep the sequences small for the tiny model.
        let prompt = Prompt { messages: vec![Message::system("Answer with one edit."), Message::user(format!("Set v{i}."))], tools: Default::default() };
        let h = state_hash(&prompt);
        let pair_value = json!({"meta": {"state_hash": h}});
        let against = contradict && !held_out(&pair_value, HOLDOUT);
        let edit = |word: &str| Action::Edit { path: "a.py".into(), old_text: format!("v{i} = None"), new_text: format!("v{i} = {word}") };
        let (rejected, accepted) = if against { (edit("ok"), edit("no")) } else { (edit("no"), edit("ok")) };
        for (a, d) in [(rejected, Decision::Rejected { cause: RejectCause::Retry, reason: None }), (accepted, Decision::Accepted)] {
            let step = Step {
                id: new_id(),
                episode_id: ep.id,
                parent_id: None,
                state_hash: h.clone(),
                created_at: 2_000,
                prompt: prompt.clone(),
                output: ModelOutput { content: None, tool_calls: vec![a.to_tool_call("c")] },
                parsed: Parsed::Action { action: a, call_id: Some("c".into()) },
                model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
                timings: Timings::default(),
            };
            let _ = w.append(Record::Step(step.clone()));
            let _ = w.append(Record::Decision(DecisionEvent { step_id: step.id, at: 2_001, decision: d }));
        }
    }
    w.flush().wait().unwrap();
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("keel.toml");
    std::fs::write(
        &p,
        format!(
            "store = \"k.db\"\nbase_model = {:?}\nwork_dir = \"runs\"\n\n[pairs]\nholdout = {HOLDOUT}\n\n[train]\nsft = true\nmin_pairs = 2\nsft_args = [\"--epochs\", \"1\", \"--lr\", \"1e-3\", \"--save-steps\", \"0\"]\ndpo_args = [\"--epochs\", \"6\", \"--lr\", \"5e-3\", \"--beta\", \"0.5\", \"--batch-size\", \"8\", \"--save-steps\", \"0\"]\n{extra}",
            tiny().display().to_string()
        ),
    )
    .unwrap();
    p
}

fn schedule(cfg: &Path, kill_at: Option<&str>) -> (Option<i32>, String) {
    let mut c = keel_e2e::command("keel-train");
    c.args(["schedule", "--once", "--config"]).arg(cfg);
    match kill_at {
        Some(s) => c.env("KEEL_FAULT_KILL_AT_STAGE", s),
        None => c.env_remove("KEEL_FAULT_KILL_AT_STAGE"),
    };
    let out = c.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_killed_run_resumes_at_each_stage_and_one_pass_runs_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    record(&store, 24, false);
    drop(store);
    let cfg = config(dir.path(), "");
    // Killed (SIGKILL) at the start of every stage in turn: each time the next pass resumes the
    // same run at that stage.
    let mut run_id = None;
    let mut prev: Option<&str> = None;
    for stage in ["pairs", "collect", "search", "sft", "dpo", "eval", "promote"] {
        let (code, err) = schedule(&cfg, Some(stage));
        assert_eq!(code, None, "killed by a signal at `{stage}`: {err}");
        let runs = Store::open(dir.path().join("k.db")).unwrap().runs().unwrap();
        assert_eq!(runs.len(), 1, "one run, resumed, not a new one per pass");
        assert_eq!(runs[0].stage, stage);
        assert_eq!(runs[0].status, "running");
        if let Some(id) = &run_id {
            assert_eq!(&runs[0].id, id);
        }
        run_id = Some(runs[0].id.clone());
        if let Some(p) = prev {
            assert!(err.contains(&format!("resuming run {} at stage `{p}`", runs[0].id)), "{err}");
        }
        prev = Some(stage);
    }
    let (code, err) = schedule(&cfg, None);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("at stage `promote`"), "{err}");
    let s = Store::open(dir.path().join("k.db")).unwrap();
    let runs = s.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].stage, "done");
    assert!(runs[0].status == "promoted" || runs[0].status == "refused", "{:?}", runs[0]);
    assert!(runs[0].detail["gate"]["candidate"]["n"].as_u64().unwrap() > 0);

    // Two schedulers at once: the lock lets one run its pass; the other does nothing.
    let store = Store::open(dir.path().join("k.db")).unwrap();
    record(&store, 8, false);
    drop(store);
    let cfg2 = config(dir.path(), "");
    let spawn = || keel_e2e::command("keel-train").args(["schedule", "--once", "--config"]).arg(&cfg2).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let outs: Vec<String> = [a, b].into_iter().map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stderr).into_owned()).collect();
    let busy = outs.iter().filter(|o| o.contains("another scheduler is running")).count();
    assert_eq!(busy, 1, "exactly one of the two found the other running: {outs:#?}");
    assert_eq!(Store::open(dir.path().join("k.db")).unwrap().runs().unwrap().len(), 2, "one new pass, not two");

    // Everything the passes wrote — run directories, pairs, trees, adapters (weights, config,
    // metrics, plot), scores, logs, the lock — and the store with its WAL and SHM files, and the
    // model init-model wrote, is the user's alone.
    let mut wide = keel_trajectory::private::readable_by_others(&dir.path().join("runs")).unwrap();
    wide.extend(keel_trajectory::private::readable_by_others(tiny()).unwrap());
    for f in ["k.db", "k.db-wal", "k.db-shm"] {
        wide.extend(keel_trajectory::private::readable_by_others(&dir.path().join(f)).unwrap_or_default());
    }
    let written: Vec<String> = walk(&dir.path().join("runs")).into_iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
    for want in ["log.txt", "scores_candidate.jsonl", "adapter_model.safetensors", "metrics.jsonl", "plot.png"] {
        assert!(written.iter().any(|p| p.ends_with(want)), "the check saw no {want}: {written:#?}");
    }
    assert!(wide.is_empty(), "readable by group or others: {wide:#?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn the_gate_refuses_contradicting_training_and_promotes_consistent_training() {
    // Contradicting: the training side says `no`, the held-out side says `ok`.
    let bad = tempfile::tempdir().unwrap();
    let store = Store::open(bad.path().join("k.db")).unwrap();
    record(&store, 40, true);
    drop(store);
    let (code, err) = schedule(&config(bad.path(), "[gate]\nmin_accuracy_gain = 0.0\n"), None);
    assert_eq!(code, Some(0), "{err}");
    let s = Store::open(bad.path().join("k.db")).unwrap();
    let run = s.runs().unwrap().pop().unwrap();
    assert_eq!(run.status, "refused", "{err}");
    assert!(err.contains("REFUSE"), "the gate's table is printed: {err}");
    assert!(s.live_model_version().unwrap().is_none());
    let cand = s.model_versions().unwrap().pop().unwrap();
    assert!(!cand.live && cand.eval["promote"] == false, "the refused candidate and its figures are recorded");

    // Consistent: promoted.
    let good = tempfile::tempdir().unwrap();
    let store = Store::open(good.path().join("k.db")).unwrap();
    record(&store, 40, false);
    drop(store);
    let (code, err) = schedule(&config(good.path(), ""), None);
    assert_eq!(code, Some(0), "{err}");
    let s = Store::open(good.path().join("k.db")).unwrap();
    let run = s.runs().unwrap().pop().unwrap();
    assert_eq!(run.status, "promoted", "{err}");
    let live = s.live_model_version().unwrap().expect("a live version");
    assert!(live.id.starts_with("keel@"));
    let g = &run.detail["gate"];
    assert!(g["candidate"]["accuracy"].as_f64().unwrap() >= g["live"]["accuracy"].as_f64().unwrap());

    // The server follows the store: its next answer carries the new version.
    let mut serve = keel_e2e::command("keel-train")
        .args(["serve", "--model"])
        .arg(tiny())
        .args(["--port", "0", "--max-tokens", "8", "--store"])
        .arg(good.path().join("k.db"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = serve.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut url = None;
    let mut swapped = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && !(url.is_some() && swapped) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(u) = l.split_whitespace().find(|w| w.starts_with("http://")) {
                url = Some(u.to_string());
            }
            swapped |= l.contains("now serving") && l.contains(&live.id);
        }
    }
    let url = url.expect("serve started");
    assert!(swapped, "the server loaded the live adapter");
    let v: Value = reqwest::blocking::Client::new()
        .post(format!("{url}/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Set v1."}], "max_tokens": 4}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(v["system_fingerprint"], live.id);
}

#[test]
fn a_failing_stage_fails_the_run_and_once_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    record(&store, 4, false);
    drop(store);
    // A broken search configuration: `keel-train search` refuses the flag.
    let cfg = config(dir.path(), "[search]\nenabled = true\nargs = [\"--no-such-flag\"]\n");
    let (code, err) = schedule(&cfg, None);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("failed at stage `search`"), "{err}");
    let runs = Store::open(dir.path().join("k.db")).unwrap().runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status.as_str(), runs[0].stage.as_str()), ("failed", "search"));
    let message = runs[0].detail["error"]["message"].as_str().unwrap();
    assert!(message.contains("--no-such-flag"), "the stage's log is in the error: {message}");
    // The next pass retries the same run at that stage.
    let (code, err) = schedule(&cfg, None);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&format!("retrying run {} at stage `search` (attempt 2 of 3)", runs[0].id)), "{err}");
}

/// Without `--model`, `keel-train serve` takes the default model: `$KEEL_MODEL_DIR`, else
/// `.keel/models/smollm2-135m-instruct` in the working directory or a folder above it; with
/// neither it stops and says where it looked and how to make the model.
#[test]
fn serve_without_model_uses_the_default_model_or_says_how_to_make_it() {
    let home = tempfile::tempdir().unwrap();
    let deep = home.path().join("project/src");
    std::fs::create_dir_all(&deep).unwrap();
    // A port that is taken: serve loads the model, says which, then fails to bind and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let serve = |envs: &[(&str, &Path)]| {
        let mut c = keel_e2e::command("keel-train");
        c.args(["serve", "--port", &port]).current_dir(&deep).env("HOME", home.path()).env_remove("KEEL_MODEL_DIR").env_remove("XDG_DATA_HOME");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.stdout(Stdio::null()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (ok, err) = serve(&[]);
    assert!(!ok);
    assert!(err.contains("default model is not installed") && err.contains("cargo xtask setup") && err.contains(&deep.display().to_string()), "{err}");

    let (ok, err) = serve(&[("KEEL_MODEL_DIR", tiny())]);
    assert!(!ok, "the port is taken");
    assert!(err.contains(&format!("keel-train serve: model {}", tiny().display())), "{err}");

    let (ok, err) = serve(&[("KEEL_MODEL_DIR", home.path())]);
    assert!(!ok);
    assert!(err.contains("is not a model folder"), "{err}");

    let installed = home.path().join("project/.keel/models/smollm2-135m-instruct");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(tiny(), &installed).unwrap();
    let (ok, err) = serve(&[]);
    assert!(!ok, "the port is taken");
    assert!(err.contains(&format!("keel-train serve: model {}", installed.display())), "{err}");
    drop(taken);
}

/// Whether a safetensors file is whole: its header parses and the file ends where the header says
/// the last tensor does.
fn whole_safetensors(p: &Path) -> Result<(), String> {
    let b = std::fs::read(p).map_err(|e| e.to_string())?;
    let n = u64::from_le_bytes(b.get(..8).ok_or("shorter than its header length")?.try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(b.get(8..8 + n).ok_or("shorter than its header")?).map_err(|e| e.to_string())?;
    let end = header.as_object().ok_or("no header object")?.values().filter_map(|t| t["data_offsets"][1].as_u64()).max().unwrap_or(0) as usize;
    if b.len() != 8 + n + end {
        return Err(format!("{} bytes, the header says {}", b.len(), 8 + n + end));
    }
    Ok(())
}

/// Processes whose command line mentions `needle` (the children of a killed scheduler would).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')));
        if cmd.contains(needle) && !zombie {
            out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// `kill -9` of `keel-train schedule --once` at random moments (`KEEL_KILL_ROUNDS`, 5 in the suite;
/// docs/benchmarks.md "Faults" has the 100-round run). After each kill: the store's integrity
/// check is `ok`; the live version is the one before or a new one whose adapter is whole (and
/// hashes to its id); every pairs file a run left is whole JSON lines and every adapter weights
/// file whole; no child of the killed scheduler is still at work in its run; `keel-train runs`
/// shows the killed run `interrupted`, not `running`; and the next pass is not locked out. At the
/// end a pass runs to completion.
#[test]
fn kill_9_of_schedule_at_random_moments() {
    let rounds: usize = std::env::var("KEEL_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill -9 of schedule: {rounds} rounds, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    record(&store, 16, false);
    drop(store);
    // No trigger: every pass resumes the killed run or starts a new one.
    let cfg = config(dir.path(), "");
    let started = std::time::Instant::now();
    // A whole pass first: a live version to keep, and how long a pass takes.
    let t0 = std::time::Instant::now();
    let (code, err) = schedule(&cfg, None);
    assert_eq!(code, Some(0), "{err}");
    let pass_ms = t0.elapsed().as_millis() as u64;
    let (mut killed, mut finished_first, mut interrupted_seen) = (0, 0, 0);
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let life = Duration::from_millis(50 + seed % pass_ms.max(100));
        let before = Store::open(&db).unwrap().live_model_version().unwrap().map(|v| v.id);
        let mut child = keel_e2e::command("keel-train")
            .args(["schedule", "--once", "--config"])
            .arg(&cfg)
            .env_remove("KEEL_FAULT_KILL_AT_STAGE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        std::thread::sleep(life);
        let was_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let st = child.wait().unwrap();
        let err = log.join().unwrap();
        if was_running && st.code().is_none() {
            killed += 1;
        } else {
            assert_eq!(st.code(), Some(0), "round {round}: a pass that ended by itself succeeds: {err}");
            finished_first += 1;
        }
        // The children of the killed scheduler went with it (the kernel kills them as it dies; a
        // stage's child lives for seconds, so a few hundred milliseconds tell them apart).
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        let mut left = processes_mentioning(&dir.path().display().to_string());
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            left = processes_mentioning(&dir.path().display().to_string());
        }
        assert!(left.is_empty(), "round {round} ({life:?}): the killed scheduler's children are still running: {left:#?}");
        let s = Store::open(&db).unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok", "round {round}");
        // The live pointer: the old version, or a new one whose adapter is whole.
        let live = s.live_model_version().unwrap();
        if live.as_ref().map(|v| &v.id) != before.as_ref() {
            let v = live.as_ref().expect("a live version does not vanish");
            let a = Path::new(v.adapter_path.as_deref().unwrap());
            whole_safetensors(&a.join("adapter_model.safetensors")).unwrap_or_else(|e| panic!("round {round}: the new live adapter: {e}"));
            serde_json::from_slice::<Value>(&std::fs::read(a.join("adapter_config.json")).unwrap()).unwrap();
            assert_eq!(v.adapter_hash.as_deref(), Some(keel_trainer::models::adapter_hash(a).unwrap().as_str()));
        }
        // Files a run left: whole, or not there.
        for p in walk(&dir.path().join("runs")) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".jsonl") && !name.starts_with('.') && name != "metrics.jsonl" {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("round {round}: a cut line in {}: {e}", p.display()));
                }
            }
            if name == "adapter_model.safetensors" {
                whole_safetensors(&p).unwrap_or_else(|e| panic!("round {round}: {}: {e}", p.display()));
            }
        }
        // The user is told: a run the kill left is `interrupted`.
        let out = keel_e2e::command("keel-train").args(["runs", "--json", "--store"]).arg(&db).output().unwrap();
        assert!(out.status.success());
        let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(rows.iter().all(|r| r["status"] != "running"), "round {round}: no scheduler runs, yet: {rows:#?}");
        interrupted_seen += rows.iter().filter(|r| r["status"] == "interrupted").count().min(1);
    }
    // The next pass is not locked out, resumes what was left, and finishes.
    let (code, err) = schedule(&cfg, None);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("another scheduler"), "{err}");
    let s = Store::open(&db).unwrap();
    assert_eq!(s.integrity_check().unwrap(), "ok");
    let runs = s.runs().unwrap();
    assert!(runs.iter().all(|r| r.status != "running"), "{runs:#?}");
    eprintln!(
        "kill -9 of schedule: {rounds} rounds ({killed} killed mid-pass, {finished_first} finished first, {interrupted_seen} left a run interrupted), {} runs, a whole pass {:.1} s, {:.0} s in all",
        runs.len(),
        pass_ms as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
}
