//! Faults (issue 15): keel-lsp killed with SIGKILL at random moments, the store's disk full, the
//! store deleted while running, the model endpoint dying mid-stream. Nothing the user was told is
//! recorded may be lost, the store stays sound, the user is told, and the next start recovers.

use std::path::Path;
use std::time::{Duration, Instant};

use keel_e2e::{LspClient, Reply};
use keel_trajectory::{EpisodeFilter, Store};
use serde_json::{Value, json};

use crate::robustness::alive;
use crate::{CALC, Fixture, WAIT};

fn start(c: &mut LspClient, f: &Fixture) -> i64 {
    c.send_request("workspace/executeCommand", json!({"command": "keel.episode.start", "arguments": [{"uri": f.uri("calc.py"), "kind": "implement"}]}))
}

/// Episodes whose `finished` status arrived after index `from`.
fn finished(c: &LspClient, from: usize) -> Vec<String> {
    c.seen[from..]
        .iter()
        .filter(|m| m["method"] == "keel/status" && m["params"]["state"] == "finished")
        .filter_map(|m| m["params"]["episode"].as_str().map(str::to_string))
        .collect()
}

/// The store is sound, and holds every episode in `told` with its end.
fn check_store(path: &Path, told: &[String]) {
    let s = Store::open(path).expect("the store opens");
    assert_eq!(s.integrity_check().unwrap(), "ok");
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    for id in told {
        let ep = eps.iter().find(|e| e.id.to_string() == *id).unwrap_or_else(|| panic!("episode {id} was told finished and is not in the store"));
        let tree = s.tree(ep.id).unwrap().expect("its tree");
        assert!(tree.end.is_some(), "episode {id} was told finished and its end is not in the store");
    }
}

/// `kill -9` of keel-lsp at random moments while episodes run (10 times here;
/// `KEEL_KILL_ROUNDS=100` for the hundred): every episode the user was told had finished
/// is in the store with its end (the status is sent once the records are durable), the store passes
/// SQLite's integrity check, and the next start records on the same store.
#[test]
fn kill_9_at_random_moments_loses_nothing_the_user_was_told() {
    let rounds: usize = std::env::var("KEEL_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let f = Fixture::new();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill -9: {rounds} rounds, seed {seed}");
    let mut told: Vec<String> = Vec::new();
    for round in 0..rounds {
        for _ in 0..40 {
            f.model.push(Reply::tool("view_file", json!({"path": "calc.py"})), true);
            f.model.push(Reply::tool("finish", json!({"summary": "read it"})), false);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let life = Duration::from_millis(100 + seed % 900);
        let mut c = f.spawn();
        f.open(&c, "calc.py", CALC);
        let from = c.seen.len();
        let born = Instant::now();
        start(&mut c, &f);
        let mut ends = 0;
        while born.elapsed() < life {
            c.wait_for(c.seen.len(), Duration::from_millis(5), |_| false);
            let now = finished(&c, from).len();
            if now > ends {
                ends = now;
                start(&mut c, &f);
            }
        }
        c.child.kill().unwrap(); // SIGKILL
        c.child.wait().unwrap();
        // What had arrived before the kill.
        c.wait_for(c.seen.len(), Duration::from_millis(50), |_| false);
        told.extend(finished(&c, from));
        drop(c);
        check_store(&f.store, &told);
        eprintln!("round {round}: killed after {life:?}; {} episodes told finished so far", told.len());
    }
    assert!(told.len() >= rounds / 2, "too few episodes ended before the kills to show anything: {}", told.len());
    // The next start recovers: it records on the same store.
    f.model.push(Reply::tool("finish", json!({"summary": "after"})), false);
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    let last = finished(&c, from);
    assert!(c.shutdown().success());
    told.extend(last);
    check_store(&f.store, &told);
}

/// The model endpoint dies in the middle of a streamed answer: the user is told, the episode's
/// end is recorded as failed, the server keeps serving, and the next episode works.
#[test]
fn the_model_dying_mid_stream_is_told_and_recorded() {
    let f = Fixture::new();
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    f.model.push(Reply::Cut { name: "edit".into(), arguments: json!({"path": "calc.py", "old_text": "a - b", "new_text": "a + b"}), chunks: 3 }, true);
    let from = c.seen.len();
    let id = start(&mut c, &f);
    let r = c.response(id, WAIT).expect("the start is answered");
    let episode = r["result"]["episode"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    let st = c.wait_status(from, "error", WAIT);
    let msg = st["message"].as_str().unwrap().to_string();
    assert!(!msg.is_empty(), "{st}");
    let shown = c.wait_for(from, WAIT, |m| m["method"] == "window/showMessage" && m["params"]["type"] == 1);
    assert!(shown.is_some(), "the user was not shown an error: {:#?}", &c.seen[from..]);
    assert!(c.seen[from..].iter().all(|m| m["method"] != "workspace/applyEdit"), "a cut answer was proposed or applied");
    alive(&mut c, &f);
    f.model.push(Reply::tool("finish", json!({"summary": "fine now"})), true);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    assert!(c.shutdown().success());
    let s = Store::open(&f.store).unwrap();
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    let ep = eps.iter().find(|e| e.id.to_string() == episode).expect("the failed episode is recorded");
    let tree = s.tree(ep.id).unwrap().unwrap();
    let end = serde_json::to_value(tree.end.as_ref().expect("its end is recorded")).unwrap();
    assert!(end.to_string().contains("ailed"), "{end}");
    assert_eq!(eps.len(), 2);
}

/// The store file is deleted while keel-lsp runs: the user is told that it was, the next episode
/// is recorded in a new store at that path (sound), and nothing is written to the deleted file.
#[test]
fn the_store_deleted_while_running_is_told_and_recording_goes_on() {
    let f = Fixture::new();
    let mut c = f.spawn();
    f.open(&c, "calc.py", CALC);
    f.model.push(Reply::tool("finish", json!({"summary": "one"})), false);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", f.store.display()));
    }
    f.model.push(Reply::tool("view_file", json!({"path": "calc.py"})), false);
    f.model.push(Reply::tool("finish", json!({"summary": "two"})), false);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    let told = c.wait_for(from, WAIT, |m| m["method"] == "window/showMessage" && m["params"]["message"].as_str().is_some_and(|t| t.contains("was deleted or replaced")));
    assert!(told.is_some(), "the user was not told: {:#?}", &c.seen[from..]);
    alive(&mut c, &f);
    let second = finished(&c, from);
    assert!(c.shutdown().success());
    check_store(&f.store, &second);
    assert_eq!(Store::open(&f.store).unwrap().episodes(&EpisodeFilter::default()).unwrap().len(), 1);
}

/// A tmpfs mount that is unmounted on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `filler` until it is full.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut w = std::fs::File::create(filler).unwrap();
    let block = vec![0x5au8; 4096];
    while w.write_all(&block).is_ok() {}
    let _ = w.sync_all();
}

fn noise(n: usize) -> String {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 60 == 59 { '\n' } else { char::from(b'a' + (x % 26) as u8) }
        })
        .collect()
}

/// The store's file system fills up (a 4 MiB tmpfs; needs root, as `cargo xtask test` has in CI):
/// the user is told once that recording fails, the steps wait in memory, and once there is room
/// again every one is written and the store is sound.
#[test]
fn the_stores_disk_full_is_told_and_nothing_is_lost_when_there_is_room_again() {
    let f = Fixture::new();
    let mnt = f.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m"]).arg("tmpfs").arg(&mnt).status().is_ok_and(|s| s.success());
    assert!(ok, "this test mounts a tmpfs: run it as root (CI does)");
    let _mount = Mount(mnt.clone());
    let store = mnt.join("keel.db");
    // Large observations (incompressible text), so the episode's records need new pages.
    std::fs::write(f.root.join("big.txt"), noise(200_000)).unwrap();
    let mut c = LspClient::spawn(&keel_e2e::bin("keel-lsp"), &[("KEEL_LOG", "warn")]);
    let mut options = f.options();
    options["store"] = json!(store);
    options["limits"]["max_observation_bytes"] = json!(300_000);
    c.initialize(&f.root, options, &["utf-16"]);
    f.open(&c, "calc.py", CALC);
    f.model.push(Reply::tool("finish", json!({"summary": "one"})), false);
    let from = c.seen.len();
    start(&mut c, &f);
    c.wait_status(from, "finished", WAIT);
    let first = finished(&c, from);

    let filler = mnt.join("filler");
    fill(&filler);
    for (i, path) in ["big.txt", "calc.py", "big.txt"].iter().enumerate() {
        let args: Value = if i == 2 { json!({"path": path, "start_line": 2}) } else { json!({"path": path}) };
        f.model.push(Reply::tool("view_file", args), false);
    }
    f.model.push(Reply::tool("finish", json!({"summary": "read"})), false);
    let from = c.seen.len();
    let id = start(&mut c, &f);
    let episode = c.response(id, WAIT).unwrap()["result"]["episode"].as_str().unwrap().to_string();
    let st = c.wait_status(from, "recording_failed", WAIT);
    assert!(st["message"].as_str().unwrap().contains("kept in memory"), "{st}");
    c.wait_status(from, "finished", WAIT);
    alive(&mut c, &f);

    let back = c.seen.len();
    std::fs::remove_file(&filler).unwrap();
    let st = c.wait_status(back, "recording", WAIT);
    assert_eq!(st["recording"], "ok", "{st}");
    let told: Vec<&Value> = c.seen[from..].iter().filter(|m| m["method"] == "window/showMessage" && m["params"]["message"].as_str().is_some_and(|t| t.contains("cannot write its store"))).collect();
    // One message per failure, not per record: a write may fail, the next (smaller) fit, and a later
    // one fail again; each failure is told once and each is followed by a recovery.
    let states = |state: &str| c.seen[from..].iter().filter(|m| m["method"] == "keel/status" && m["params"]["state"] == state).count();
    assert!(!told.is_empty());
    assert_eq!((states("recording_failed"), states("recording")), (told.len(), told.len()), "{told:#?}");
    assert!(c.shutdown().success());
    let mut all = first;
    all.push(episode.clone());
    check_store(&store, &all);
    let s = Store::open(&store).unwrap();
    let ep = s.episodes(&EpisodeFilter::default()).unwrap().into_iter().find(|e| e.id.to_string() == episode).unwrap();
    let tree = s.tree(ep.id).unwrap().unwrap();
    assert_eq!(tree.steps.len(), 4, "{:#?}", tree.steps);
    let observed: Vec<usize> = tree.steps.iter().map(|s| s.observation.as_ref().map_or(0, |o| o.output.len())).collect();
    eprintln!("observations written: {observed:?} bytes");
    assert!(observed[..3].iter().all(|&n| n > 0), "every read's observation was written: {observed:?}");
}
