//! Online A/B of model versions: the sequential test on simulated users whose acceptance depends on
//! the version, the verdict on a real store (promote, or withdraw the candidate), and the command
//! line. Routing in `keel-train serve` is tested in `serve.rs`.

use keel_trainer::ab::{self, AbConfig, ArmStats, Verdict};
use keel_trajectory::*;
use serde_json::json;

/// A small deterministic generator, so that the simulated A/Bs are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A user's decision on one proposal: accepted with `p_accept` (then undone with `p_revert`), else
/// rejected.
fn decide(r: &mut Lcg, p_accept: f64, p_revert: f64) -> Decision {
    if r.next() < p_accept {
        if r.next() < p_revert { Decision::Reverted } else { Decision::Accepted }
    } else {
        Decision::Rejected { cause: RejectCause::User, reason: None }
    }
}

/// One A/B with half the episodes on each arm, judged after every decision: the verdict and the
/// decisions it took.
fn simulate(seed: u64, live: (f64, f64), cand: (f64, f64), cfg: &AbConfig) -> (Verdict, u64) {
    let mut r = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5);
    let (mut l, mut c) = (ArmStats::default(), ArmStats::default());
    loop {
        if r.next() < 0.5 {
            c.add(&decide(&mut r, cand.0, cand.1));
        } else {
            l.add(&decide(&mut r, live.0, live.1));
        }
        let v = ab::judge(&l, &c, cfg);
        if !matches!(v, Verdict::Continue(_)) {
            return (v, l.reviewed + c.reviewed);
        }
    }
}

#[test]
fn the_sequential_test_promotes_a_better_candidate_withdraws_a_worse_one_and_rarely_decides_between_equals() {
    let cfg = AbConfig { max_decisions: 1500, ..AbConfig::new(0.5) };
    let runs = 100u64;
    let tally = |live: (f64, f64), cand: (f64, f64)| {
        let (mut promote, mut early_rollback, mut at_max, mut n) = (0, 0, 0, 0u64);
        for seed in 0..runs {
            let (v, k) = simulate(seed, live, cand, &cfg);
            n += k;
            match v {
                Verdict::Promote(_) => promote += 1,
                Verdict::Rollback(w) if w.starts_with("no clear difference") => at_max += 1,
                Verdict::Rollback(_) => early_rollback += 1,
                Verdict::Continue(_) => unreachable!(),
            }
        }
        (promote, early_rollback, at_max, n / runs)
    };
    // Users accept the candidate's proposals more often: promoted, long before the cap.
    let (p, e, m, mean) = tally((0.45, 0.1), (0.6, 0.1));
    eprintln!("better: promote {p} rollback {e} at max {m}, mean decisions {mean}");
    assert!(p >= 95, "a better candidate is promoted (promoted {p} of {runs})");
    assert!(mean < 2 * cfg.max_decisions / 2, "it stops early: mean {mean} decisions");
    // Fewer accepted: withdrawn.
    let (p, e, m, mean) = tally((0.6, 0.1), (0.45, 0.1));
    eprintln!("worse: promote {p} rollback {e} at max {m}, mean decisions {mean}");
    assert!(e >= 95 && p == 0, "a worse candidate is withdrawn (withdrawn {e}, promoted {p})");
    // As often accepted but more of it undone afterwards: withdrawn.
    let (p, e, m, mean) = tally((0.6, 0.05), (0.6, 0.25));
    eprintln!("reverted more: promote {p} rollback {e} at max {m}, mean decisions {mean}");
    assert!(e >= 90 && p == 0, "a candidate whose accepted edits are reverted more is withdrawn (withdrawn {e}, promoted {p})");
    // Equally good: a verdict of a difference is rare (the test's level, 5%); otherwise the live
    // version stays when the cap is reached.
    let (p, e, m, mean) = tally((0.5, 0.1), (0.5, 0.1));
    eprintln!("equal: promote {p} rollback {e} at max {m}, mean decisions {mean}");
    assert!(p + e <= 8, "between equals a difference is declared at most about alpha of the time ({p} promoted, {e} withdrawn early)");
    assert_eq!(p + e + m, runs as usize);
}

#[test]
fn automatic_rejections_and_read_steps_are_not_the_users_judgement() {
    let mut s = ArmStats::default();
    for d in [
        Decision::Accepted,
        Decision::Edited { final_text: "x".into() },
        Decision::Reverted,
        Decision::Rejected { cause: RejectCause::User, reason: None },
        Decision::Rejected { cause: RejectCause::Retry, reason: None },
        Decision::Rejected { cause: RejectCause::Loop, reason: None },
        Decision::Rejected { cause: RejectCause::InvalidToolCall, reason: None },
        Decision::Auto,
        Decision::Unreviewed,
        Decision::Superseded { reason: None },
    ] {
        s.add(&d);
    }
    assert_eq!(s, ArmStats { reviewed: 5, accepted: 3, reverted: 1 });
}

struct Rec {
    w: Writer,
}

impl Rec {
    /// An episode whose steps were produced by `version`, each decided as `decisions` says.
    fn episode(&self, version: &str, created_at: i64, decisions: &[Decision]) {
        let model = ModelRef { name: "keel".into(), version: Some(version.into()) };
        let ep = Episode {
            id: new_id(),
            created_at,
            workspace: Workspace { root: "/w".into(), vcs: None },
            task: Task { kind: TaskKind::Instruction, instruction: "fix it".into(), uri: None, language: None, range: None, diagnostics: vec![], selected_text: None },
            model: model.clone(),
            client: None,
            verify: None,
            protected: vec![],
        };
        self.w.append(Record::Episode(ep.clone())).wait().unwrap();
        let mut parent = None;
        for (i, d) in decisions.iter().enumerate() {
            let prompt = Prompt { messages: vec![Message::user(format!("step {i}"))], tools: Default::default() };
            let action = keel_trajectory::action::Action::Run { command: format!("pytest -k {i}") };
            let s = Step {
                id: new_id(),
                episode_id: ep.id,
                parent_id: parent,
                state_hash: state_hash(&prompt),
                created_at: created_at + i as i64,
                prompt,
                output: ModelOutput { content: None, tool_calls: vec![action.to_tool_call("c")] },
                parsed: Parsed::Action { action, call_id: Some("c".into()) },
                model: model.clone(),
                timings: Timings::default(),
            };
            self.w.append(Record::Step(s.clone())).wait().unwrap();
            self.w.append(Record::Decision(DecisionEvent { step_id: s.id, at: created_at + i as i64, decision: d.clone() })).wait().unwrap();
            parent = Some(s.id);
        }
    }
}

fn version(id: &str, dir: &std::path::Path) -> ModelVersion {
    let adapter = dir.join(id.replace('@', "-"));
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::write(adapter.join("adapter_model.safetensors"), id).unwrap();
    ModelVersion {
        id: id.into(),
        created_at: now_ms(),
        base_model: "tiny".into(),
        adapter_path: Some(adapter.display().to_string()),
        adapter_hash: Some(id.into()),
        parent: None,
        trained_on: json!({}),
        eval: json!({"accuracy": 0.8}),
        live: false,
    }
}

/// Simulated users: `n` episodes per arm of 4 proposals each, accepted with the arm's probability.
fn users(rec: &Rec, r: &mut Lcg, live: (&str, f64), cand: (&str, f64), n: usize) {
    let at = now_ms();
    for i in 0..n {
        for (v, p) in [live, cand] {
            let ds: Vec<Decision> = (0..4).map(|_| decide(r, p, 0.0)).collect();
            rec.episode(v, at + i as i64, &ds);
        }
    }
}

#[test]
fn an_ab_on_the_store_is_judged_on_the_users_decisions_and_promotes_or_withdraws() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("k.db")).unwrap();
    for id in ["keel@a1", "keel@a2", "keel@a3"] {
        store.put_model_version(&version(id, dir.path())).unwrap();
    }
    keel_trainer::models::promote(&mut store, "keel@a1").unwrap();
    let rec = Rec { w: store.writer().unwrap() };
    let mut r = Lcg(7);
    // Decisions from before the A/B do not count: the candidate looked bad then.
    users(&rec, &mut r, ("keel@a1", 0.9), ("keel@a2", 0.0), 40);
    std::thread::sleep(std::time::Duration::from_millis(5));

    assert!(ab::start(&store, "keel@a1", &AbConfig::new(0.3)).unwrap_err().to_string().contains("live"));
    assert!(ab::start(&store, "keel@a2", &AbConfig::new(1.5)).unwrap_err().to_string().contains("share"));
    let cfg = AbConfig { min_decisions: 20, ..AbConfig::new(0.5) };
    ab::start(&store, "keel@a2", &cfg).unwrap();
    assert!(ab::start(&store, "keel@a3", &cfg).unwrap_err().to_string().contains("already running"));
    let (cand, _, _, v) = ab::status(&store).unwrap().unwrap();
    assert_eq!(cand.id, "keel@a2");
    assert!(matches!(v, Verdict::Continue(_)), "no decision yet: {v:?}");

    // Users accept the candidate's proposals far more often; some of its steps were rejected by
    // the server's own rules, which are no judgement of the user's and must not count.
    users(&rec, &mut r, ("keel@a1", 0.3), ("keel@a2", 0.8), 40);
    rec.episode("keel@a2", now_ms(), &vec![Decision::Rejected { cause: RejectCause::Loop, reason: None }; 30]);
    let (_, live, c, _) = ab::status(&store).unwrap().unwrap();
    assert_eq!(live.reviewed, 160);
    assert_eq!(c.reviewed, 160, "automatic rejections are not counted");
    let (cand, v) = ab::judge_and_apply(&mut store).unwrap().unwrap();
    assert!(matches!(v, Verdict::Promote(_)), "{v:?}");
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "keel@a2");
    let row = store.model_versions().unwrap().into_iter().find(|x| x.id == cand.id).unwrap();
    assert_eq!(row.eval["ab"]["status"], "promoted");
    assert!(row.eval["ab"]["candidate_stats"]["acceptance"].as_f64().unwrap() > 0.6);
    assert!(ab::status(&store).unwrap().is_none(), "the A/B has ended");

    // A worse candidate against the new live version: withdrawn, and the live version stays.
    std::thread::sleep(std::time::Duration::from_millis(5));
    ab::start(&store, "keel@a3", &cfg).unwrap();
    users(&rec, &mut r, ("keel@a2", 0.8), ("keel@a3", 0.2), 40);
    let (_, v) = ab::judge_and_apply(&mut store).unwrap().unwrap();
    assert!(matches!(v, Verdict::Rollback(_)), "{v:?}");
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "keel@a2");
    let row = store.model_versions().unwrap().into_iter().find(|x| x.id == "keel@a3").unwrap();
    assert_eq!(row.eval["ab"]["status"], "rolled_back");
    assert_eq!(row.eval["accuracy"], 0.8, "the offline gate's figures stay beside the A/B's");

    // The command line reads the same state.
    let db = dir.path().join("k.db");
    let db = db.to_str().unwrap();
    let (ok, out, _) = crate::models::keel_train(&["models", "--store", db, "ab", "status"]);
    assert!(ok && out.contains("no A/B is running"), "{out}");
    let (ok, _, err) = crate::models::keel_train(&["models", "--store", db, "ab", "start", "keel@a1", "--share", "0"]);
    assert!(!ok && err.contains("share"), "{err}");
    let (ok, out, err) = crate::models::keel_train(&["models", "--store", db, "ab", "start", "keel@a1", "--share", "0.2"]);
    assert!(ok && out.contains("A/B started"), "{out}{err}");
    let (ok, out, _) = crate::models::keel_train(&["models", "--store", db, "ab", "judge", "--apply"]);
    assert!(ok && out.contains("continue"), "{out}");
    let (ok, out, _) = crate::models::keel_train(&["models", "--store", db, "ab", "stop"]);
    assert!(ok && out.contains("withdrawn"), "{out}");
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "keel@a2");
}

#[test]
fn with_ab_configured_the_schedule_starts_an_ab_instead_of_promoting_and_a_later_pass_decides() {
    use keel_trainer::schedule::{self, Config, Pass};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, "store = \"k.db\"\nbase_model = \"model\"\n[ab]\nshare = 0.3\nmin_decisions = 20\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    std::fs::write(dir.path().join("bad.toml"), "store = \"k.db\"\nbase_model = \"model\"\n[ab]\nshare = 1.0\n").unwrap();
    assert!(format!("{:#}", Config::load(&dir.path().join("bad.toml")).unwrap_err()).contains("share"));
    let mut store = Store::open(&cfg.store).unwrap();
    for id in ["keel@a1", "keel@a2"] {
        store.put_model_version(&version(id, dir.path())).unwrap();
    }
    keel_trainer::models::promote(&mut store, "keel@a1").unwrap();
    // A run whose gate passed keel@a2, at its last stage.
    let now = now_ms();
    store
        .put_run(&Run { id: "run-1".into(), created_at: now, updated_at: now, stage: "promote".into(), status: "running".into(), detail: json!({"candidate": "keel@a2", "gate": {"promote": true, "why": "better"}}) })
        .unwrap();
    let exe = dir.path().join("no-keel-train");
    assert_eq!(schedule::pass(&cfg, &exe).unwrap(), Pass::Finished { run: "run-1".into(), status: "ab".into() });
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "keel@a1", "not promoted yet");
    let v = store.model_versions().unwrap().into_iter().find(|v| v.id == "keel@a2").unwrap();
    assert_eq!((v.eval["ab"]["status"].as_str(), v.eval["ab"]["share"].as_f64()), (Some("running"), Some(0.3)));

    // No decisions yet: the pass waits (and starts no new run).
    let Pass::Idle(why) = schedule::pass(&cfg, &exe).unwrap() else { panic!("the A/B is still running") };
    assert!(why.contains("A/B of keel@a2") && why.contains("continue"), "{why}");
    assert_eq!(store.runs().unwrap().len(), 1);

    // The users prefer the candidate: the next pass promotes it.
    let rec = Rec { w: store.writer().unwrap() };
    users(&rec, &mut Lcg(3), ("keel@a1", 0.3), ("keel@a2", 0.8), 40);
    assert_eq!(schedule::pass(&cfg, &exe).unwrap(), Pass::Finished { run: "run-1".into(), status: "promoted".into() });
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "keel@a2");
    let run = store.runs().unwrap().remove(0);
    assert_eq!(run.detail["ab_verdict"]["verdict"], "promote");
    assert!(schedule::runs_table(&store.runs().unwrap()).contains("promoted"));
}
