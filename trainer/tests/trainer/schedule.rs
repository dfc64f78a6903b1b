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
