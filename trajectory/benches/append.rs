//! Append throughput (batched, to durability) and the caller-side latency of one append, on SQLite
//! and, in the same run, on PostgreSQL over loopback (a fresh database on the server named by
//! `KEEL_TEST_POSTGRES`, which `cargo xtask bench` starts; without it only SQLite is measured).
//!
//! `cargo bench -p keel-trajectory --bench append` (or `cargo xtask bench`).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use keel_trajectory::action::{Action, tools_schema};
use keel_trajectory::*;

fn episode() -> Episode {
    Episode {
        id: new_id(),
        created_at: now_ms(),
        workspace: Workspace { root: "/bench".into(), vcs: None },
        task: Task {
            kind: TaskKind::Implement,
            instruction: "implement the parser".into(),
            uri: None,
            language: Some("rust".into()),
            range: None,
            diagnostics: vec![],
            selected_text: None,
        },
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        client: None,
        verify: None,
        protected: vec![],
    }
}

/// Small steps: a short task and a one-line answer (what a read-only tool call costs).
fn small_steps(ep: &Episode, n: usize) -> Vec<Record> {
    let system = Message::system("You are Keel, a coding agent working in the user's editor. Use the tools.");
    (0..n)
        .map(|i| {
            let prompt = Prompt { messages: vec![system.clone(), Message::user(format!("Where is `parse` defined? ({i})"))], tools: tools_schema() };
            let action = Action::Search { pattern: "fn parse".into(), path: None };
            Record::Step(Step {
                id: new_id(),
                episode_id: ep.id,
                parent_id: None,
                state_hash: state_hash(&prompt),
                created_at: now_ms(),
                output: ModelOutput { content: None, tool_calls: vec![action.to_tool_call("call")] },
                parsed: Parsed::Action { action, call_id: Some("call".into()) },
                prompt,
                model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
                timings: Timings::default(),
            })
        })
        .collect()
}

/// Steps shaped like real ones: a system prompt, a task with ~1 KiB of code context, a few earlier
/// tool calls and results, and an edit as the action. Every prompt is distinct.
fn steps(ep: &Episode, n: usize) -> Vec<Record> {
    let code: String = (0..24).map(|i| format!("    let value_{i} = compute(input, {i});\n")).collect();
    (0..n)
        .map(|i| {
            let mut messages = vec![
                Message::system("You are Keel, a coding agent working in the user's editor. Use the tools."),
                Message::user(format!("Implement `parse` in src/parser.rs (request {i}).\n```rust\n{code}```")),
            ];
            for k in 0..(i % 4) {
                let a = Action::ViewFile { path: format!("src/m{k}.rs"), start_line: Some(1), end_line: Some(40) };
                let mut m = Message::assistant("");
                m.tool_calls = vec![a.to_tool_call(format!("c{k}"))];
                messages.push(m);
                messages.push(Message::tool(format!("c{k}"), "view_file", code.clone()));
            }
            let prompt = Prompt { messages, tools: tools_schema() };
            let action = Action::Edit {
                path: "src/parser.rs".into(),
                old_text: "    todo()\n".into(),
                new_text: format!("    parse_all(input, {i})\n"),
            };
            Record::Step(Step {
                id: new_id(),
                episode_id: ep.id,
                parent_id: None,
                state_hash: state_hash(&prompt),
                created_at: now_ms(),
                output: ModelOutput { content: None, tool_calls: vec![action.to_tool_call("call")] },
                parsed: Parsed::Action { action, call_id: Some("call".into()) },
                prompt,
                model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
                timings: Timings::default(),
            })
        })
        .collect()
}

/// The stores measured: (backend, location). The PostgreSQL databases are dropped at the end.
struct Stores {
    dir: tempfile::TempDir,
    pg: Option<(String, Vec<String>)>,
}

impl Stores {
    fn new() -> Stores {
        let pg = match std::env::var("KEEL_TEST_POSTGRES") {
            Ok(u) if !u.is_empty() => Some((u, Vec::new())),
            _ => {
                println!("PostgreSQL not measured: KEEL_TEST_POSTGRES is not set (cargo xtask bench sets it)");
                None
            }
        };
        Stores { dir: tempfile::tempdir().unwrap(), pg }
    }

    fn locations(&mut self, name: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![("sqlite", self.dir.path().join(format!("{name}.db")).display().to_string())];
        if let Some((base, made)) = &mut self.pg {
            let db = format!("keel_bench_{name}_{}", uuid::Uuid::now_v7().simple());
            let mut admin = base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).unwrap();
            let (server, _) = base.split_once('?').map_or(base.as_str(), |(u, _)| u).rsplit_once('/').unwrap();
            out.push(("postgres", format!("{server}/{db}")));
            made.push(db);
        }
        out
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        if let Some((base, made)) = &self.pg {
            let mut admin = base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls).unwrap();
            for db in made {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
            }
        }
    }
}

fn throughput(c: &mut Criterion) {
    let mut stores = Stores::new();
    for (backend, location) in stores.locations("bench") {
        throughput_on(c, backend, &location);
    }
}

fn throughput_on(c: &mut Criterion, backend: &str, location: &str) {
    let store = Store::open(location).unwrap();
    let w = store.writer().unwrap();
    let ep = episode();
    w.append(Record::Episode(ep.clone())).wait().unwrap();
    let mut g = c.benchmark_group(format!("append/{backend}"));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let n = 10_000usize;
    g.throughput(Throughput::Elements(n as u64));
    for (name, make) in [("small_steps", small_steps as fn(&Episode, usize) -> Vec<Record>), ("edit_steps", steps)] {
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let records = make(&ep, n);
                    let start = Instant::now();
                    for r in records {
                        drop(w.append(r));
                    }
                    w.flush().wait().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

/// Percentiles of the time a caller spends in `append` (criterion reports means; the issue asks for
/// p99), measured while the writer thread is busy writing.
fn caller_latency(backend: &str, location: &str) {
    let store = Store::open(location).unwrap();
    let w = store.writer().unwrap();
    let ep = episode();
    w.append(Record::Episode(ep.clone())).wait().unwrap();
    let n = 100_000;
    let records = steps(&ep, n);
    let mut lat = Vec::with_capacity(n);
    let mut receipts = Vec::with_capacity(n);
    let start = Instant::now();
    for r in records {
        let t = Instant::now();
        let receipt = w.append(r);
        lat.push(t.elapsed());
        receipts.push(receipt);
    }
    let sent = start.elapsed();
    w.flush().wait().unwrap();
    let durable = start.elapsed();
    assert!(receipts.into_iter().all(|r| r.wait().is_ok()));
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{backend}: append caller latency over {n} appends: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}; all sent in {:?}, durable after {:?} ({:.0} steps/s)",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat[lat.len() - 1],
        sent,
        durable,
        n as f64 / durable.as_secs_f64()
    );
}

criterion_group!(benches, throughput);

fn main() {
    let mut stores = Stores::new();
    for (backend, location) in stores.locations("latency") {
        caller_latency(backend, &location);
    }
    drop(stores);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
