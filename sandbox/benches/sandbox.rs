//! The sandbox's costs against a real engine (the Podman service `cargo xtask setup` starts):
//! one command in a container against the same command run directly on the host, what a container
//! costs to make and to reset, and rollouts per minute with 1 and N containers in parallel.
//!
//! `cargo bench -p keel-sandbox --bench sandbox [-- --rollouts 24 --parallel 1,2,4,8 --reps 30]`
//!
//! A rollout here is what one `keel-train search` rollout does in its container: take a container
//! holding the episode's workspace (a pooled one reset to the snapshot, as search does, or a new
//! one), replay an `edit`, run the task's verification command, read its exit status, give the
//! container back. The workspace is a small shell project whose test fails until the edit.
//!
//! An edit is located and applied by the agent's tools (keel-agent), which this crate must not
//! depend on; what they cost in a container is the file read out and written back, so that is
//! what [`replay_edit`] does here, with the texts before and after known in advance.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_sandbox::{Container, Limits, Sandbox, SandboxConfig, WorkspaceSnapshot};

struct Args {
    rollouts: usize,
    parallel: Vec<usize>,
    reps: usize,
}

fn args() -> Args {
    let mut a = Args { rollouts: 24, parallel: vec![1, 2, 4, 8], reps: 30 };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--rollouts" => a.rollouts = next.parse().unwrap_or(a.rollouts),
            "--reps" => a.reps = next.parse().unwrap_or(a.reps),
            "--parallel" => a.parallel = next.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
            // cargo bench passes `--bench`; ignore what is not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

const CALC: &str = "add() { echo $(( $1 - $2 )); }\nmul() { echo $(( $1 * $2 )); }\n";
const FIXED: &str = "add() { echo $(( $1 + $2 )); }\nmul() { echo $(( $1 * $2 )); }\n";
const TEST: &str = ". ./calc.sh\n[ \"$(add 2 3)\" = 5 ] || { echo 'add 2 3 is not 5'; exit 1; }\n[ \"$(mul 2 3)\" = 6 ] || { echo 'mul 2 3 is not 6'; exit 1; }\necho ok\n";
const VERIFY: &str = "sh test.sh";

fn snapshot() -> WorkspaceSnapshot {
    let mut files = vec![("calc.sh".to_string(), CALC.as_bytes().to_vec()), ("test.sh".to_string(), TEST.as_bytes().to_vec())];
    // Some bulk, as a real repository has: 40 files of 2 KiB the rollout never touches.
    for i in 0..40 {
        files.push((format!("src/mod{i}.sh"), format!("# module {i}\n{}", "x=1\n".repeat(500)).into_bytes()));
    }
    WorkspaceSnapshot::from_files(files)
}

fn limits() -> Limits {
    Limits { memory: 256 << 20, pids: 64, work_size: 64 << 20, tmp_size: 16 << 20, lifetime: Duration::from_secs(1800), ..Limits::default() }
}

struct Stats {
    p50: Duration,
    p90: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let n = v.len().max(1);
    let mean = v.iter().sum::<Duration>() / n as u32;
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats { p50: at(0.5), p90: at(0.9), mean }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn host_command(dir: &Path, command: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new("/bin/sh").arg("-c").arg(command).current_dir(dir).output().expect("running on the host");
    let d = t.elapsed();
    assert!(out.status.success() || command == VERIFY, "{command} failed on the host");
    d
}

/// What an accepted `edit` costs in a container: the file read out, its new text written back.
async fn replay_edit(c: &Container, before: &str, after: &str) {
    let text = c.read_file("calc.sh").await.expect("reading calc.sh");
    assert_eq!(text, before.as_bytes(), "calc.sh is not the text the edit starts from");
    c.write_file("calc.sh", after.as_bytes()).await.expect("writing calc.sh");
}

async fn one_rollout(sandbox: &Sandbox, pool: &Mutex<Vec<Container>>, snap: &WorkspaceSnapshot, pooled: bool) -> Container {
    let reused = if pooled { pool.lock().unwrap().pop() } else { None };
    let c = match reused {
        Some(c) => {
            c.reset(snap).await.expect("reset");
            c
        }
        None => sandbox.start(snap).await.expect("starting a container"),
    };
    replay_edit(&c, CALC, FIXED).await;
    let r = c.exec(VERIFY).await.expect("verify");
    assert!(r.success(), "the fixed project fails its test: {}{}", r.stdout, r.stderr);
    c
}

/// `n` rollouts with `parallel` at a time; returns rollouts per minute.
async fn rollouts(sandbox: &Sandbox, snap: &WorkspaceSnapshot, n: usize, parallel: usize, pooled: bool) -> f64 {
    let pool = Arc::new(Mutex::new(Vec::<Container>::new()));
    // Pooled: the pool starts warm, as it is after a search's first rollouts.
    if pooled {
        for _ in 0..parallel {
            let c = sandbox.start(snap).await.expect("starting a container");
            pool.lock().unwrap().push(c);
        }
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (sandbox, snap, pool, next) = (sandbox.clone(), snap.clone(), pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                let c = one_rollout(&sandbox, &pool, &snap, pooled).await;
                if pooled {
                    pool.lock().unwrap().push(c);
                } else {
                    c.remove().await.expect("removing");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a rollout task panicked");
    }
    let per_min = n as f64 / t.elapsed().as_secs_f64() * 60.0;
    let left: Vec<Container> = std::mem::take(&mut *pool.lock().unwrap());
    for c in left {
        c.remove().await.expect("removing");
    }
    per_min
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let a = args();
    let config = SandboxConfig { limits: limits(), ..Default::default() };
    let sandbox = match Sandbox::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandbox bench skipped: no container engine ({e}); `cargo xtask setup` starts one");
            return;
        }
    };
    let snap = snapshot();
    let host_dir = tempfile::tempdir().expect("tempdir");
    for (p, c) in [("calc.sh", FIXED), ("test.sh", TEST)] {
        std::fs::write(host_dir.path().join(p), c).expect("writing");
    }

    println!("one command, {} runs each (p50 / p90 / mean)", a.reps);
    let warm = sandbox.start(&snap).await.expect("starting a container");
    replay_edit(&warm, CALC, FIXED).await;
    for command in ["true", VERIFY] {
        let mut host = Vec::new();
        let mut boxed = Vec::new();
        for _ in 0..a.reps {
            host.push(host_command(host_dir.path(), command));
            let t = Instant::now();
            let r = warm.exec(command).await.expect("exec");
            boxed.push(t.elapsed());
            assert!(r.success(), "{command}: {}{}", r.stdout, r.stderr);
        }
        let (h, b) = (stats(host), stats(boxed));
        println!(
            "  {command:<12} host {} / {} / {}   sandbox {} / {} / {}   overhead (p50) {}",
            ms(h.p50), ms(h.p90), ms(h.mean), ms(b.p50), ms(b.p90), ms(b.mean), ms(b.p50.saturating_sub(h.p50))
        );
    }
    let mut edits = Vec::new();
    for i in 0..a.reps {
        let (before, after) = if i % 2 == 0 { (FIXED, CALC) } else { (CALC, FIXED) };
        let t = Instant::now();
        replay_edit(&warm, before, after).await;
        edits.push(t.elapsed());
    }
    let e = stats(edits);
    println!("  {:<12} sandbox {} / {} / {} (read the file out, write it back)", "edit", ms(e.p50), ms(e.p90), ms(e.mean));
    let mut resets = Vec::new();
    for _ in 0..a.reps.min(15) {
        let t = Instant::now();
        warm.reset(&snap).await.expect("reset");
        resets.push(t.elapsed());
    }
    warm.remove().await.expect("removing");
    let mut fresh = Vec::new();
    for _ in 0..a.reps.min(15) {
        let t = Instant::now();
        let c = sandbox.start(&snap).await.expect("starting a container");
        c.remove().await.expect("removing");
        fresh.push(t.elapsed());
    }
    let (r, f) = (stats(resets), stats(fresh));
    println!("  {:<12} {} / {} / {} (kill, empty /work and /tmp, copy the snapshot in)", "reset", ms(r.p50), ms(r.p90), ms(r.mean));
    println!("  {:<12} {} / {} / {} (create, start, copy the snapshot in, remove)", "new+remove", ms(f.p50), ms(f.p90), ms(f.mean));

    println!("rollouts (container with the workspace, edit, `{VERIFY}`, give back), {} per row", a.rollouts);
    for &p in &a.parallel {
        let pooled = rollouts(&sandbox, &snap, a.rollouts, p, true).await;
        let fresh = rollouts(&sandbox, &snap, a.rollouts, p, false).await;
        println!("  parallel {p}: {pooled:>6.0} rollouts/min pooled (reset)   {fresh:>6.0} rollouts/min with a new container each");
    }
    let left = sandbox.own_containers().await.expect("listing containers");
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
