//! `keel-fuzz`: runs keel-lsp on generated and mutated hostile input for a while (see
//! `keel_e2e::fuzz`). Cases that show new behaviour or break the oracle are written to the corpus
//! directory (the LSP test `fuzz_corpus_replays` replays it).
//!
//! ```text
//! cargo xtask fuzz --minutes 30
//! cargo build -p keel-server --bin keel-lsp && cargo run -p keel-e2e --bin keel-fuzz -- \
//!     --minutes 30 [--seed N] [--jobs 2] [--corpus server/fuzz/corpus] [--server target/debug/keel-lsp]
//! cargo xtask fuzz --distill --max-cases 40   # keep a greedy cover of the corpus's behaviours, delete the rest
//! cargo run -p keel-e2e --bin keel-fuzz -- --replay server/fuzz/corpus/crash-….json   # one case, verbose
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_e2e::fuzz::{Limits, Rng, generate, mutate, run_case};
use serde_json::Value;

/// Cases bigger than this are not kept (the corpus lives in the repository).
const MAX_CASE_BYTES: usize = 24 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut minutes = 10.0f64;
    let mut seed: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut jobs = 2usize;
    let mut corpus = root.join("server/fuzz/corpus");
    let mut server = std::env::current_exe().unwrap().with_file_name("keel-lsp");
    let mut replay: Vec<PathBuf> = Vec::new();
    let mut distill = false;
    let mut max_cases = usize::MAX;
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--minutes" => minutes = val().parse().unwrap_or_else(|_| usage("--minutes takes a number")),
            "--seed" => seed = val().parse().unwrap_or_else(|_| usage("--seed takes a number")),
            "--jobs" => jobs = val().parse().unwrap_or_else(|_| usage("--jobs takes a number")),
            "--corpus" => corpus = PathBuf::from(val()),
            "--server" => server = PathBuf::from(val()),
            "--replay" => replay.push(PathBuf::from(val())),
            "--distill" => distill = true,
            "--max-cases" => max_cases = val().parse().unwrap_or_else(|_| usage("--max-cases takes a number")),
            _ => usage(&format!("unknown argument `{a}`")),
        }
    }
    if !server.exists() {
        usage(&format!("{} is not built: cargo build -p keel-server --bin keel-lsp", server.display()));
    }
    std::fs::create_dir_all(&corpus).expect("corpus directory");
    let limits = Limits::default();
    if distill {
        distill_corpus(&server, &corpus, limits, jobs, max_cases);
        return;
    }
    if !replay.is_empty() {
        // Run the given cases once and show what happened.
        let mut bad = 0;
        for p in &replay {
            let case: Value = serde_json::from_str(&std::fs::read_to_string(p).expect("case file")).expect("case JSON");
            let o = run_case(&server, &case, limits);
            println!("{}: {}\n{:#?}\n--- stderr tail ---\n{}", p.display(), if o.ok() { "ok" } else { "FAILS" }, o.failures, o.stderr_tail);
            bad += usize::from(!o.ok());
        }
        std::process::exit(i32::from(bad > 0));
    }

    // The corpus seeds both the mutations and the behaviour already seen.
    let mut cases: Vec<Value> = Vec::new();
    let signature = Arc::new(Mutex::new(BTreeSet::new()));
    let start = Instant::now();
    for (path, outcome) in keel_e2e::fuzz::replay_dir(&server, &corpus, limits, jobs) {
        if !outcome.ok() {
            println!("corpus case {} fails: {:?}", path.display(), outcome.failures);
        }
        signature.lock().unwrap().extend(outcome.signature);
        if let Some(v) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()) {
            cases.push(v);
        }
    }
    println!("corpus: {} cases, {} behaviours, replayed in {:.0?}; seed {seed}, {jobs} jobs, {minutes} minutes", cases.len(), signature.lock().unwrap().len(), start.elapsed());

    let cases = Arc::new(Mutex::new(cases));
    let failures_seen = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let (execs, kept, crashes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let began = Instant::now();
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|j| {
            let (cases, signature, failures_seen, execs, kept, crashes, stop, corpus, server) =
                (cases.clone(), signature.clone(), failures_seen.clone(), execs.clone(), kept.clone(), crashes.clone(), stop.clone(), corpus.clone(), server.clone());
            std::thread::spawn(move || {
                let mut r = Rng::new(seed.wrapping_add(j as u64 * 0x1000_0000_0001));
                while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                    let case = {
                        let cs = cases.lock().unwrap();
                        if cs.is_empty() || r.chance(40) {
                            generate(&mut r)
                        } else {
                            let a = cs[r.below(cs.len())].clone();
                            let b = cs[r.below(cs.len())].clone();
                            drop(cs);
                            mutate(&mut r, &a, &b)
                        }
                    };
                    let outcome = run_case(&server, &case, limits);
                    execs.fetch_add(1, Ordering::SeqCst);
                    let text = serde_json::to_string_pretty(&case).unwrap();
                    if !outcome.ok() {
                        crashes.fetch_add(1, Ordering::SeqCst);
                        let kind: String = outcome.failures.iter().map(|f| f.chars().filter(|c| !c.is_ascii_digit()).take(120).collect::<String>()).collect::<Vec<_>>().join("|");
                        let new = failures_seen.lock().unwrap().insert(kind.clone());
                        if new {
                            let p = corpus.join(format!("crash-{:016x}.json", fnv(text.as_bytes())));
                            let _ = std::fs::write(&p, &text);
                            println!("FAILURE {}: {:?}\n--- stderr tail ---\n{}\n---", p.display(), outcome.failures, outcome.stderr_tail);
                        }
                        continue;
                    }
                    let new: Vec<String> = {
                        let s = signature.lock().unwrap();
                        outcome.signature.iter().filter(|x| !s.contains(*x)).cloned().collect()
                    };
                    if !new.is_empty() && text.len() <= MAX_CASE_BYTES {
                        signature.lock().unwrap().extend(outcome.signature.iter().cloned());
                        let p = corpus.join(format!("{:016x}.json", fnv(text.as_bytes())));
                        let _ = std::fs::write(&p, &text);
                        cases.lock().unwrap().push(case);
                        kept.fetch_add(1, Ordering::SeqCst);
                        println!("new {}: {:?}", p.file_name().unwrap().to_string_lossy(), new.iter().take(4).collect::<Vec<_>>());
                    }
                }
            })
        })
        .collect();
    let mut last = Instant::now();
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        if last.elapsed() > Duration::from_secs(60) {
            last = Instant::now();
            report(&began, &execs, &kept, &crashes, &cases, &signature);
        }
    }
    report(&began, &execs, &kept, &crashes, &cases, &signature);
    if crashes.load(Ordering::SeqCst) > 0 {
        std::process::exit(1);
    }
}

fn report(began: &Instant, execs: &AtomicU64, kept: &AtomicU64, crashes: &AtomicU64, cases: &Mutex<Vec<Value>>, sig: &Mutex<BTreeSet<String>>) {
    let e = execs.load(Ordering::SeqCst);
    let secs = began.elapsed().as_secs_f64();
    println!(
        "[{:.1} min] {e} executions ({:.2}/s), {} new cases kept, corpus {}, {} behaviours, {} failing executions",
        secs / 60.0,
        e as f64 / secs.max(1e-9),
        kept.load(Ordering::SeqCst),
        cases.lock().unwrap().len(),
        sig.lock().unwrap().len(),
        crashes.load(Ordering::SeqCst)
    );
}

/// Keeps the cases named by hand (`regress-*`) and, of the generated ones, a smallest-first greedy
/// cover of the behaviours they show (at most `max_cases`, the ones that add most per second first);
/// deletes the rest. Keeps the corpus's replay short.
fn distill_corpus(server: &std::path::Path, corpus: &std::path::Path, limits: Limits, jobs: usize, max_cases: usize) {
    let results = keel_e2e::fuzz::replay_dir(server, corpus, limits, jobs);
    let total: Duration = results.iter().map(|(_, o)| o.elapsed).sum();
    let mut covered = BTreeSet::new();
    let mut keep = Vec::new();
    let mut pool = Vec::new();
    for (p, o) in results {
        let generated = p.file_stem().is_some_and(|s| s.len() == 16 && s.to_string_lossy().chars().all(|c| c.is_ascii_hexdigit()));
        if !o.ok() {
            println!("{} fails: {:?} (kept)", p.display(), o.failures);
        }
        if generated && o.ok() {
            pool.push((p, o));
        } else {
            covered.extend(o.signature.iter().cloned());
            keep.push(p);
        }
    }
    let mut picked = 0;
    while picked < max_cases {
        picked += 1;
        // New behaviours per second of replay.
        let best = pool
            .iter()
            .enumerate()
            .map(|(i, (_, o))| (i, o.signature.iter().filter(|x| !covered.contains(*x)).count() as f64 / o.elapsed.as_secs_f64().max(0.05)))
            .filter(|(_, rate)| *rate > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, _)) = best else { break };
        let (p, o) = pool.swap_remove(i);
        covered.extend(o.signature);
        keep.push(p);
    }
    for (p, _) in &pool {
        let _ = std::fs::remove_file(p);
    }
    println!("distilled: kept {} cases, removed {}, {} behaviours covered (replay took {:.0?} in all)", keep.len(), pool.len(), covered.len(), total);
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ *x as u64).wrapping_mul(0x100_0000_01b3))
}

fn usage(why: &str) -> ! {
    eprintln!("keel-fuzz: {why}\nusage: keel-fuzz [--minutes N] [--seed N] [--jobs N] [--corpus DIR] [--server PATH] | --replay CASE.json... | --distill [--max-cases N]");
    std::process::exit(2);
}
