//! The store's test suite: round trips, the step tree, redaction, crash safety, several processes,
//! migrations and refusals, dumps — each on both backends: a SQLite file, and a fresh database on
//! the PostgreSQL server named by `KEEL_TEST_POSTGRES` (`cargo xtask test` starts it and sets
//! `KEEL_REQUIRE_POSTGRES=1`, so a missing server fails the suite; plain `cargo test` without it
//! skips the PostgreSQL half with a line on stderr). `both!` makes `NAME::sqlite` and
//! `NAME::postgres` of a test `fn NAME(db: &Db)`.
//!
//! Crash and multi-process tests re-run this very test binary as the child process (see
//! `child_process_entry`), so no extra binary has to be built.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_trajectory::action::{Action, tools_schema};
use keel_trajectory::*;
use uuid::Uuid;

fn episode(root: &str) -> Episode {
    Episode {
        id: new_id(),
        created_at: now_ms(),
        workspace: Workspace {
            root: root.into(),
            vcs: Some(VcsState {
                kind: "git".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                patch: "diff --git a/src/lib.rs b/src/lib.rs\n+fn added() {}\n".repeat(200),
                untracked: vec![FileSnapshot { path: "notes.txt".into(), content: "todo".into() }],
                left_out: vec![],
            }),
        },
        task: Task {
            kind: TaskKind::FixDiagnostic,
            instruction: "fix the type error".into(),
            uri: Some("file:///w/src/lib.rs".into()),
            language: Some("rust".into()),
            range: Some(Range { start_line: 3, start_character: 0, end_line: 3, end_character: 10 }),
            diagnostics: vec![TaskDiagnostic {
                message: "mismatched types".into(),
                severity: Some("error".into()),
                source: Some("rustc".into()),
                code: Some("E0308".into()),
                range: None,
            }],
            selected_text: None,
        },
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        client: Some("test".into()),
        verify: Some("cargo test".into()),
        protected: vec![],
    }
}

fn prompt(extra: &str) -> Prompt {
    Prompt {
        messages: vec![
            Message::system("You are Keel, a coding agent. Use the tools."),
            Message::user(format!("Fix the diagnostic in src/lib.rs.\n{extra}")),
        ],
        tools: tools_schema(),
    }
}

fn step(ep: &Episode, parent: Option<Uuid>, prompt: Prompt, action: Action) -> Step {
    let call = action.to_tool_call("call_1");
    Step {
        id: new_id(),
        episode_id: ep.id,
        parent_id: parent,
        state_hash: state_hash(&prompt),
        created_at: now_ms(),
        prompt,
        output: ModelOutput { content: None, tool_calls: vec![call] },
        parsed: Parsed::Action { action, call_id: Some("call_1".into()) },
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        timings: Timings { model_ms: 12, first_token_ms: Some(3), prompt_tokens: Some(100), completion_tokens: Some(20) },
    }
}

fn edit(old: &str, new: &str) -> Action {
    Action::Edit { path: "src/lib.rs".into(), old_text: old.into(), new_text: new.into() }
}

fn decision(step: &Step, d: Decision) -> Record {
    Record::Decision(DecisionEvent { step_id: step.id, at: now_ms(), decision: d })
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---- the two backends ----------------------------------------------------------------------

/// Where a test's stores go: files in a temporary directory, or fresh databases on the test
/// PostgreSQL server (dropped at the end).
pub struct Db {
    dir: tempfile::TempDir,
    pg: Option<Pg>,
}

struct Pg {
    base: String,
    made: std::sync::Mutex<Vec<String>>,
    /// Shared by every PostgreSQL test (in every process); the restart test takes it alone.
    _lock: std::fs::File,
}

fn pg_lock(exclusive: bool) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("keel-test-postgres.lock"))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), if exclusive { libc::LOCK_EX } else { libc::LOCK_SH }) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    f
}

/// The test server's URL, or `None` (with a line on stderr) when it is not configured and not
/// required.
fn pg_base() -> Option<String> {
    match std::env::var("KEEL_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("KEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("KEEL_REQUIRE_POSTGRES=1 but KEEL_TEST_POSTGRES is not set: the PostgreSQL server is missing (cargo xtask test starts it)")
        }
        _ => {
            eprintln!("skipped: KEEL_TEST_POSTGRES is not set (cargo xtask setup postgres; eval \"$(cargo xtask env)\")");
            None
        }
    }
}

/// `base` with another database name.
fn with_database(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').map_or((base, None), |(u, q)| (u, Some(q)));
    let (server, _) = url.rsplit_once('/').expect("a URL with a database");
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

fn admin(base: &str) -> postgres::Client {
    base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls).unwrap()
}

impl Db {
    pub fn sqlite() -> Db {
        Db { dir: temp(), pg: None }
    }

    pub fn postgres() -> Option<Db> {
        Db::postgres_locked(false)
    }

    fn postgres_locked(exclusive: bool) -> Option<Db> {
        let base = pg_base()?;
        Some(Db { dir: temp(), pg: Some(Pg { base, made: Default::default(), _lock: pg_lock(exclusive) }) })
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// A new, empty store location: `NAME.db` in the directory, or a new database.
    pub fn location(&self, name: &str) -> String {
        match &self.pg {
            None => self.dir.path().join(format!("{name}.db")).display().to_string(),
            Some(pg) => {
                let db = format!("keel_t_{}_{}", name.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"), Uuid::now_v7().simple());
                admin(&pg.base).batch_execute(&format!("CREATE DATABASE \"{db}\"")).unwrap();
                pg.made.lock().unwrap().push(db.clone());
                with_database(&pg.base, &db)
            }
        }
    }

    /// A raw connection to a PostgreSQL location (to write what an old Keel or another program
    /// would have).
    pub fn raw(&self, location: &str) -> postgres::Client {
        admin(location)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(pg) = &self.pg {
            if let Ok(mut c) = pg.base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls) {
                for db in pg.made.lock().unwrap().iter() {
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
                }
            }
        }
    }
}

/// For each `fn NAME(db: &Db)`, the tests `NAME::sqlite` and `NAME::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Db::sqlite());
            }
            #[test]
            fn postgres() {
                if let Some(db) = super::Db::postgres() {
                    super::$name(&db);
                }
            }
        }
    )*};
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Writes one small episode with a decision tree:
/// root state: view (auto) -> state 2: edit A (rejected, retry), edit B (accepted, then edited), bad call (auto-rejected)
fn write_sample(w: &Writer) -> (Episode, Vec<Step>) {
    let ep = episode("/w");
    let s0 = step(&ep, None, prompt(""), Action::ViewFile { path: "src/lib.rs".into(), start_line: None, end_line: None });
    let obs = Observation { output: "1: fn main() {}".into(), exit_code: None, truncated: false, duration_ms: Some(1) };
    let p1 = Prompt {
        messages: action::next_messages(&s0.prompt.messages, &s0.parsed, &s0.output, "call_1", &obs),
        tools: tools_schema(),
    };
    let a = step(&ep, Some(s0.id), p1.clone(), edit("fn main() {}", "fn main() { let x: i32 = 1; }"));
    let b = step(&ep, Some(s0.id), p1.clone(), edit("fn main() {}", "fn main() { let x: u32 = 1; }"));
    let mut bad = step(&ep, Some(s0.id), p1, edit("x", "y"));
    bad.output = ModelOutput { content: Some("{\"name\": \"edit\", \"arguments\": {broken".into()), tool_calls: vec![] };
    bad.parsed = Parsed::Error { error: ActionError::new(ActionErrorKind::InvalidJson, "not JSON") };
    let mut rs = vec![w.append(Record::Episode(ep.clone())), w.append(Record::Step(s0.clone()))];
    rs.push(w.append(decision(&s0, Decision::Auto)));
    rs.push(w.append(Record::Observation { step_id: s0.id, at: now_ms(), observation: obs }));
    rs.push(w.append(Record::Step(a.clone())));
    rs.push(w.append(decision(&a, Decision::Rejected { cause: RejectCause::Retry, reason: Some("wrong type".into()) })));
    rs.push(w.append(Record::Step(b.clone())));
    rs.push(w.append(decision(&b, Decision::Accepted)));
    rs.push(w.append(decision(&b, Decision::Edited { final_text: "fn main() { let x: u64 = 1; }".into() })));
    rs.push(w.append(Record::Step(bad.clone())));
    rs.push(w.append(decision(
        &bad,
        Decision::Rejected { cause: RejectCause::InvalidToolCall, reason: Some("not JSON".into()) },
    )));
    rs.push(w.append(Record::EpisodeEnd(EpisodeEndEvent {
        episode_id: ep.id,
        at: now_ms(),
        end: EpisodeEnd::Finished { summary: Some("done".into()) },
        outcome: Some(Outcome { command: "python3 test_x.py".into(), passed: true, exit_code: Some(0), output: "ok\n".into() }),
    })));
    for r in rs {
        r.wait().unwrap();
    }
    (ep, vec![s0, a, b, bad])
}

both!(
    round_trip_and_tree,
    queries_by_time_and_version,
    model_versions_have_one_live,
    runs_and_decision_counts,
    async_callers_and_flush,
    nothing_secret_reaches_the_store,
    another_applications_database,
    a_newer_schema,
    an_older_schema_migrates_and_keeps_its_data,
    dump_round_trips,
    durability_sets_how_commits_wait,
    acknowledged_appends_survive_sigkill,
    eight_processes_append_at_once,
);

fn round_trip_and_tree(db: &Db) {
    let store = Store::open(db.location("keel")).unwrap();
    let w = store.writer().unwrap();
    let (ep, steps) = write_sample(&w);

    assert_eq!(store.episode(ep.id).unwrap().unwrap(), ep);
    let tree = store.tree(ep.id).unwrap().unwrap();
    assert_eq!(tree.steps.len(), 4);
    for (rec, orig) in tree.steps.iter().zip(&steps) {
        assert_eq!(&rec.step, orig);
    }
    assert_eq!(tree.steps[0].decision(), Some(&Decision::Auto));
    assert_eq!(tree.steps[0].observation.as_ref().unwrap().output, "1: fn main() {}");
    assert!(matches!(tree.steps[2].decision(), Some(Decision::Edited { .. })));
    assert_eq!(tree.steps[2].decisions.len(), 2);
    assert!(tree.steps[3].decision().unwrap().is_automatic_rejection());
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Finished { .. }));

    let states = tree.states();
    assert_eq!(states.len(), 2, "a root state and the state after the view");
    assert_eq!(states[0].steps.len(), 1);
    assert_eq!(states[1].steps.len(), 3, "three siblings at the second state");
    assert_eq!(states[1].parent_id, Some(steps[0].id));
    assert_eq!(tree.children(Some(steps[0].id)).count(), 3);

    let at = store.decisions_at_state(&steps[1].state_hash).unwrap();
    assert_eq!(at.len(), 3);
    assert!(matches!(at[0].1, Some(Decision::Rejected { cause: RejectCause::Retry, .. })));

    let stats = store.stats().unwrap();
    assert_eq!((stats.episodes, stats.steps, stats.decisions, stats.observations), (1, 4, 5, 1));
    assert!(stats.blob_bytes < stats.blob_bytes_uncompressed, "blobs are compressed");
    // Each distinct message is stored once: system, user, the view call and its result (the
    // siblings share the root's first two), plus the tool schema and the patch.
    assert_eq!(stats.blobs, 6);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// SQLite only: a file and its `-wal` and `-shm` are 0600, new folders 0700.
#[test]
fn files_are_private() {
    let dir = temp();
    let path = dir.path().join("sub/dir/keel.db");
    let store = Store::open(&path).unwrap();
    let w = store.writer().unwrap();
    write_sample(&w);
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
    }
    let parent = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(parent, 0o700);
}

fn queries_by_time_and_version(db: &Db) {
    let store = Store::open(db.location("k")).unwrap();
    let w = store.writer().unwrap();
    let mut old = episode("/w");
    old.created_at = 1_000;
    let mut new = episode("/w");
    new.created_at = 2_000_000_000_000;
    new.model.version = Some("keel@abc".into());
    let s = step(&old, None, prompt("x"), Action::Finish { summary: "ok".into() });
    let mut s_new_version = s.clone();
    s_new_version.model.version = Some("keel@def".into());
    s_new_version.id = new_id();
    s_new_version.episode_id = new.id;
    for r in [Record::Episode(old.clone()), Record::Episode(new.clone()), Record::Step(s), Record::Step(s_new_version)] {
        w.append(r).wait().unwrap();
    }
    let all = store.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![old.id, new.id]);
    let since = store.episodes(&EpisodeFilter { since: Some(1_500), ..Default::default() }).unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].id, new.id);
    let by_episode_version =
        store.episodes(&EpisodeFilter { model_version: Some("keel@abc".into()), ..Default::default() }).unwrap();
    assert_eq!(by_episode_version.len(), 1);
    let by_step_version =
        store.episodes(&EpisodeFilter { model_version: Some("keel@def".into()), ..Default::default() }).unwrap();
    assert_eq!(by_step_version[0].id, new.id);
    assert_eq!(store.parse_time("2026-11-24T00:00:00Z").unwrap(), 1_795_478_400_000);
    assert_eq!(store.parse_time("12345").unwrap(), 12345);
    assert!(store.parse_time("yesterday-ish").is_err());
}

fn model_versions_have_one_live(db: &Db) {
    let mut store = Store::open(db.location("k")).unwrap();
    let v = |id: &str, t| ModelVersion {
        id: id.into(),
        created_at: t,
        base_model: "tiny".into(),
        adapter_path: Some(format!("/a/{id}")),
        adapter_hash: Some("h".into()),
        parent: None,
        trained_on: serde_json::json!({"pairs": 10}),
        eval: serde_json::json!({}),
        live: false,
    };
    store.put_model_version(&v("v1", 1)).unwrap();
    store.put_model_version(&v("v2", 2)).unwrap();
    store.set_live("v1").unwrap();
    store.set_live("v2").unwrap();
    let live: Vec<_> = store.model_versions().unwrap().into_iter().filter(|m| m.live).map(|m| m.id).collect();
    assert_eq!(live, vec!["v2"]);
    assert!(store.set_live("nope").is_err());
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "v2");
    // Re-recording a version keeps its live flag.
    store.put_model_version(&v("v2", 2)).unwrap();
    assert_eq!(store.live_model_version().unwrap().unwrap().id, "v2");
}

/// What the trainer's schedule reads and writes: runs (inserted, then updated in place) and the
/// count of human decisions since a time.
fn runs_and_decision_counts(db: &Db) {
    let store = Store::open(db.location("k")).unwrap();
    let run = |id: &str, t, stage: &str| Run {
        id: id.into(),
        created_at: t,
        updated_at: t,
        stage: stage.into(),
        status: "running".into(),
        detail: serde_json::json!({"stage": stage}),
    };
    store.put_run(&run("r2", 20, "pairs")).unwrap();
    store.put_run(&run("r1", 10, "pairs")).unwrap();
    let mut r1 = run("r1", 10, "train");
    r1.updated_at = 30;
    r1.status = "promoted".into();
    store.put_run(&r1).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    assert_eq!(runs[0], r1);

    let before = now_ms();
    let w = store.writer().unwrap();
    write_sample(&w);
    // Five decisions, one of them automatic.
    assert_eq!(store.count_decisions_since(before).unwrap(), 4);
    assert_eq!(store.count_decisions_since(now_ms() + 60_000).unwrap(), 0);
}

fn async_callers_and_flush(db: &Db) {
    let store = Store::open(db.location("k")).unwrap();
    let w = store.writer().unwrap();
    let ep = episode("/w");
    let ids = block_on(async {
        let _ = w.append(Record::Episode(ep.clone()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let w = w.clone();
            let s = step(&ep, None, prompt(&i.to_string()), Action::Finish { summary: i.to_string() });
            tasks.push(tokio::spawn(async move {
                let id = s.id;
                w.append(Record::Step(s)).durable().await.map(|_| id)
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap());
        }
        w.flush().durable().await.unwrap();
        ids
    });
    let stored: HashSet<Uuid> = store.steps(ep.id).unwrap().into_iter().map(|r| r.step.id).collect();
    assert_eq!(stored, ids.into_iter().collect());
}

mod redaction {
    use keel_trajectory::redact::redact;

    fn gone(input: &str, secret: &str) {
        let out = redact(input);
        assert!(!out.contains(secret), "{secret:?} survived in {out:?}");
        assert!(out.contains("REDACTED"), "no marker in {out:?}");
    }

    #[test]
    fn openai_and_anthropic_keys() {
        gone("key sk-proj-abcdefghijklmnopqrstuvwxyz012345 here", "abcdefghijklmnopqrstuvwxyz012345");
        gone("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn github_aws_slack_google_hf_gitlab_tokens() {
        gone("ghp_0123456789abcdefghijklmnopqrstuvwxyz", "ghp_0123456789abcdefghijklmnopqrstuvwxyz");
        gone("github_pat_11ABCDEFG0123456789_abcdefghij", "github_pat_11ABCDEFG0123456789_abcdefghij");
        gone("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE");
        gone("xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl");
        gone("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv");
        gone("hf_abcdefghijklmnopqrstuvwxyzABCDEF", "hf_abcdefghijklmnopqrstuvwxyzABCDEF");
        gone("glpat-abcdefghij0123456789", "glpat-abcdefghij0123456789");
    }

    #[test]
    fn jwt() {
        gone("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "dozjgNryP4J3");
    }

    #[test]
    fn bearer_tokens_and_authorization_headers() {
        gone("curl -H 'Authorization: Bearer abc.def-ghi_jkl123'", "abc.def-ghi_jkl123");
        gone("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==");
        gone("authorization: token 0123456789abcdef", "0123456789abcdef");
    }

    #[test]
    fn private_key_blocks() {
        let pem = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----\nafter";
        let out = redact(pem);
        assert!(!out.contains("MIIEowIBAAKCAQEA7"));
        assert!(out.starts_with("before\n") && out.ends_with("\nafter"), "{out}");
        gone("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXk");
        // A block cut off mid-way (a truncated tool output) is still redacted to the end.
        gone("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqh", "MIIEvQIBADANBgkqh");
    }

    #[test]
    fn env_style_assignments() {
        gone("OPENAI_API_KEY=abc123def", "abc123def");
        gone("export GITHUB_TOKEN=\"tok en\"", "tok en");
        gone("DB_PASSWORD: hunter2", "hunter2");
        gone("PASSWORD='correct horse'", "correct horse");
        gone("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI", "wJalrXUtnFEMI");
        gone("docker run -e STRIPE_SECRET=s3cr3t img", "s3cr3t");
        // Not secrets: other names, references to variables, empty values.
        assert_eq!(redact("MONKEY=banana"), "MONKEY=banana");
        assert_eq!(redact("PATH=/usr/bin"), "PATH=/usr/bin");
        assert_eq!(redact("API_KEY=$API_KEY"), "API_KEY=$API_KEY");
        assert_eq!(redact("NOTE: the key is elsewhere"), "NOTE: the key is elsewhere");
    }

    #[test]
    fn keyed_literals_in_code_and_config() {
        gone(r#"{"api_key": "abcd1234"}"#, "abcd1234");
        gone(r#"password = "hunter22""#, "hunter22");
        gone("client_secret: 'xyzw9876'", "xyzw9876");
        assert_eq!(redact(r#"let token = next_token();"#), r#"let token = next_token();"#);
    }

    #[test]
    fn plain_code_is_untouched() {
        let code = "fn main() {\n    let key = map.get(&k);\n    println!(\"{key:?}\");\n}\n";
        assert!(matches!(redact(code), std::borrow::Cow::Borrowed(_)));
    }
}

const SECRET: &str = "sk-proj-SECRETSECRETSECRETSECRET1234";

fn nothing_secret_reaches_the_store(db: &Db) {
    let secret = SECRET;
    let loc = db.location("k");
    let store = Store::open(&loc).unwrap();
    let w = store.writer().unwrap();
    let mut ep = episode("/w");
    ep.task.instruction = format!("use {secret}");
    ep.workspace.vcs.as_mut().unwrap().patch = format!("+OPENAI_API_KEY={secret}\n");
    let mut s = step(&ep, None, prompt(&format!("env: API_TOKEN={secret}")), edit("a", secret));
    s.output.content = Some(format!("Bearer {secret}"));
    let recs = vec![
        Record::Episode(ep.clone()),
        Record::Step(s.clone()),
        Record::Observation {
            step_id: s.id,
            at: now_ms(),
            observation: Observation { output: format!("token={secret}\n{}", "x".repeat(5000)), ..Default::default() },
        },
        decision(&s, Decision::Edited { final_text: format!("// {secret}") }),
        decision(&s, Decision::Rejected { cause: RejectCause::User, reason: Some(format!("leaks {secret}")) }),
    ];
    for r in recs {
        w.append(r).wait().unwrap();
    }
    let dump = {
        let mut out = Vec::new();
        store.export_jsonl(&EpisodeFilter::default(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(!dump.contains("SECRETSECRET"), "secret in the store: {dump}");
    assert!(dump.contains("[REDACTED]"));
    drop(w);
    if db.is_postgres() {
        // Every row of every table as the server holds it, and every blob decompressed.
        let mut c = db.raw(&loc);
        for table in ["episodes", "steps", "decisions", "observations", "episode_ends"] {
            for row in c.query(&format!("SELECT x::text FROM {table} x"), &[]).unwrap() {
                let text: String = row.get(0);
                assert!(!text.contains("SECRETSECRET"), "secret in {table}: {text}");
            }
        }
        for row in c.query("SELECT hash FROM blobs", &[]).unwrap() {
            let hash: String = row.get(0);
            assert!(!store.blob_text(&hash).unwrap().contains("SECRETSECRET"), "secret in blob {hash}");
        }
    } else {
        drop(store);
        for suffix in ["", "-wal"] {
            let bytes = std::fs::read(format!("{loc}{suffix}")).unwrap_or_default();
            assert!(!bytes.windows(12).any(|win| win == b"SECRETSECRET"), "secret bytes in {suffix}");
        }
    }
}

/// A PostgreSQL URL's password never shows: not in errors (a wrong password, a missing database),
/// not in the store's path or its `Debug`; and it can come from a file (`passfile=`) instead.
#[test]
fn postgres_passwords_are_never_shown() {
    assert_eq!(redact_location("postgres://keel:hunter2@db:5432/k"), "postgres://keel:***@db:5432/k");
    assert_eq!(redact_location("postgresql://u:p%40ss@h/k?password=x&sslmode=disable"), "postgresql://u:***@h/k?password=***&sslmode=disable");
    assert_eq!(redact_location("/home/me/keel.db"), "/home/me/keel.db");
    assert!(is_postgres_url("postgres://h/k") && is_postgres_url("postgresql://h/k") && !is_postgres_url("/tmp/postgres://x"));
    let Some(db) = Db::postgres() else { return };
    let loc = db.location("pw");
    let (prefix, rest) = loc.split_once("://").unwrap();
    let (userinfo, hostpath) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    assert!(password.len() >= 8, "the test role has a real password");

    let wrong = format!("{prefix}://{user}:wrong-{password}@{hostpath}");
    let err = Store::open(&wrong).unwrap_err().to_string();
    assert!(!err.contains(password), "{err}");
    assert!(err.contains("***") && err.contains("password authentication failed"), "{err}");

    let missing = with_database(&loc, "keel_no_such_database");
    let err = Store::open(&missing).unwrap_err().to_string();
    assert!(!err.contains(password) && err.contains("keel_no_such_database"), "{err}");

    let store = Store::open(&loc).unwrap();
    assert!(store.is_postgres());
    assert!(!store.path().display().to_string().contains(password));
    assert!(!format!("{store:?}").contains(password));

    let file = db.dir.path().join("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let from_file = format!("{prefix}://{user}@{hostpath}?passfile={}", file.display());
    let store = Store::open(&from_file).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

mod refusals {
    use super::*;

    pub fn bytes(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn a_directory() {
        let dir = temp();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::IsDirectory(_)), "{err}");
        assert!(err.to_string().contains("is a directory"));
    }

    #[test]
    fn a_corrupt_file() {
        let dir = temp();
        let p = dir.path().join("k.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(&p, &garbage).unwrap();
        let err = Store::open(&p).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
        assert_eq!(bytes(&p), garbage, "the file was changed");
        assert!(!dir.path().join("k.db-wal").exists());
    }

    /// Whatever other program's data the PostgreSQL database holds, as text (to see it unchanged).
    pub fn pg_snapshot(c: &mut postgres::Client) -> String {
        let tables: Vec<String> = c
            .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = String::new();
        for t in tables {
            out.push_str(&t);
            for r in c.query(&format!("SELECT x::text FROM {t} x ORDER BY 1"), &[]).unwrap() {
                out.push_str(r.get::<_, &str>(0));
            }
        }
        out
    }
}

fn another_applications_database(db: &Db) {
    let loc = db.location("other");
    let check = |err: StoreError| {
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    };
    if db.is_postgres() {
        let mut c = db.raw(&loc);
        c.batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1);").unwrap();
        let before = refusals::pg_snapshot(&mut c);
        check(Store::open(&loc).unwrap_err());
        assert_eq!(refusals::pg_snapshot(&mut c), before);
    } else {
        {
            let c = rusqlite::Connection::open(&loc).unwrap();
            c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        }
        let before = refusals::bytes(Path::new(&loc));
        check(Store::open(&loc).unwrap_err());
        assert_eq!(refusals::bytes(Path::new(&loc)), before);
    }
}

fn a_newer_schema(db: &Db) {
    let loc = db.location("k");
    drop(Store::open(&loc).unwrap());
    let snapshot: Box<dyn Fn() -> String> = if db.is_postgres() {
        let mut c = db.raw(&loc);
        c.execute("INSERT INTO keel_migrations (version, applied_at) VALUES ($1, 0)", &[&(SCHEMA_VERSION + 7)]).unwrap();
        let c = std::sync::Mutex::new(c);
        Box::new(move || refusals::pg_snapshot(&mut c.lock().unwrap()))
    } else {
        {
            let c = rusqlite::Connection::open(&loc).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 7).unwrap();
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        }
        let p = loc.clone();
        Box::new(move || format!("{:?}", refusals::bytes(Path::new(&p))))
    };
    let before = snapshot();
    let err = Store::open(&loc).unwrap_err();
    match &err {
        StoreError::NewerSchema { found, supported, .. } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 7, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(err.to_string().contains("upgrade Keel"));
    assert_eq!(snapshot(), before);
}

fn an_older_schema_migrates_and_keeps_its_data(db: &Db) {
    let loc = db.location("k");
    Store::create_at_version(&loc, 1).unwrap();
    let ep = episode("/old");
    let mut body = ep.clone();
    body.workspace.vcs = None;
    let body = serde_json::to_string(&body).unwrap();
    if db.is_postgres() {
        let mut c = db.raw(&loc);
        let version: i64 = c.query_one("SELECT max(version) FROM keel_migrations", &[]).unwrap().get(0);
        assert_eq!(version, 1);
        let has_versions: i64 =
            c.query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'model_versions'", &[]).unwrap().get(0);
        assert_eq!(has_versions, 0);
        c.execute(
            "INSERT INTO episodes (id, created_at, model_name, model_version, task_kind, body) VALUES ($1, $2, 'keel', NULL, 'fix_diagnostic', $3)",
            &[&ep.id.to_string(), &ep.created_at, &body],
        )
        .unwrap();
    } else {
        let c = rusqlite::Connection::open(&loc).unwrap();
        assert_eq!(c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 1);
        let has_versions: i64 =
            c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'model_versions'", [], |r| r.get(0)).unwrap();
        assert_eq!(has_versions, 0);
        c.execute(
            "INSERT INTO episodes (id, created_at, model_name, model_version, task_kind, body) VALUES (?1, ?2, 'keel', NULL, 'fix_diagnostic', ?3)",
            rusqlite::params![ep.id.to_string(), ep.created_at, body],
        )
        .unwrap();
    }
    let store = Store::open(&loc).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.episode(ep.id).unwrap().unwrap().workspace.root, "/old");
    assert!(store.model_versions().unwrap().is_empty());
    // The newest schema works for writing too.
    let w = store.writer().unwrap();
    write_sample(&w);
    assert_eq!(store.stats().unwrap().episodes, 2);
}

fn dump_round_trips(db: &Db) {
    let a = Store::open(db.location("a")).unwrap();
    let w = a.writer().unwrap();
    write_sample(&w);
    write_sample(&w);
    let mut first = Vec::new();
    assert_eq!(a.export_jsonl(&EpisodeFilter::default(), &mut first).unwrap(), 2);

    let b = Store::open(db.location("b")).unwrap();
    let stats = b.import_jsonl(&first[..]).unwrap();
    assert_eq!((stats.episodes, stats.steps, stats.skipped), (2, 8, 0));
    let again = b.import_jsonl(&first[..]).unwrap();
    assert_eq!((again.episodes, again.skipped), (0, 2), "importing twice adds nothing");
    let mut second = Vec::new();
    b.export_jsonl(&EpisodeFilter::default(), &mut second).unwrap();
    assert_eq!(String::from_utf8(first.clone()).unwrap(), String::from_utf8(second).unwrap());

    // A dump moves a store between the backends, byte for byte.
    let other = if db.is_postgres() { Some(Db::sqlite()) } else { Db::postgres() };
    if let Some(other) = other {
        let c = Store::open(other.location("c")).unwrap();
        assert_eq!(c.import_jsonl(&first[..]).unwrap().episodes, 2);
        let mut third = Vec::new();
        c.export_jsonl(&EpisodeFilter::default(), &mut third).unwrap();
        assert_eq!(String::from_utf8(first).unwrap(), String::from_utf8(third).unwrap());
    }

    let err = b.import_jsonl(&b"{\"keel_dump\": 1}\nnot json\n"[..]).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

/// `Durability::Full` is `PRAGMA synchronous=FULL` (PostgreSQL: `synchronous_commit=on`) on the
/// handle's connection and on its writer's, and appends still round-trip; the default stays
/// `NORMAL` (`local`).
fn durability_sets_how_commits_wait(db: &Db) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let normal = Store::open(db.location("n")).unwrap();
    assert_eq!(normal.durability(), Durability::Normal);
    assert_eq!(normal.synchronous().unwrap(), 1);
    assert_eq!(rt.block_on(normal.writer().unwrap().synchronous()).unwrap(), 1);
    let full = Store::open_with(db.location("f"), Durability::Full).unwrap();
    assert_eq!(full.synchronous().unwrap(), 2);
    let w = full.writer().unwrap();
    assert_eq!(rt.block_on(w.synchronous()).unwrap(), 2);
    write_sample(&w);
    w.flush().wait().unwrap();
    assert_eq!(full.episodes(&EpisodeFilter::default()).unwrap().len(), 1);
    assert_eq!(serde_json::from_str::<Durability>("\"full\"").unwrap(), Durability::Full);
}

// ---- processes -----------------------------------------------------------------------------

const CHILD_ENV: &str = "KEEL_TEST_STORE_CHILD";

/// Entry point for the child processes of the crash and concurrency tests. Run normally (without
/// the environment variable) it only checks that it is not a child.
#[test]
fn child_process_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let limit: usize = std::env::var("KEEL_TEST_LIMIT").ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let store = Store::open(&path).unwrap();
    let w = store.writer().unwrap();
    let ep = episode("/child");
    w.append(Record::Episode(ep.clone())).wait().unwrap();
    let stdout = std::io::stdout();
    let mut written = 0;
    let mut parent = None;
    while written < limit {
        // Pipeline a batch, then report each as it becomes durable.
        let mut batch = Vec::new();
        for i in 0..50.min(limit - written) {
            let s = step(&ep, parent, prompt(&format!("{written}-{i}")), edit("a", &"b".repeat(i * 40)));
            parent = Some(s.id);
            let id = s.id;
            batch.push((id, w.append(Record::Step(s))));
        }
        for (id, r) in batch {
            r.wait().unwrap();
            let mut out = stdout.lock();
            writeln!(out, "durable {id}").unwrap();
            out.flush().unwrap();
            written += 1;
        }
    }
}

fn spawn_child(location: &str, limit: Option<usize>) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, location)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = limit {
        c.env("KEEL_TEST_LIMIT", n.to_string());
    }
    c.spawn().unwrap()
}

/// Reads a child's "durable ID" lines on a thread (a full pipe would stall the child); `started`
/// hears of the first.
fn ack_reader(child: &mut std::process::Child, started: Option<std::sync::mpsc::Sender<()>>) -> std::thread::JoinHandle<Vec<Uuid>> {
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut ids = Vec::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(id) = line.split_once("durable ").and_then(|(_, id)| Uuid::parse_str(id.trim()).ok()) {
                if ids.is_empty() {
                    if let Some(s) = &started {
                        let _ = s.send(());
                    }
                }
                ids.push(id);
            }
        }
        ids
    })
}

fn all_step_ids(store: &Store) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for e in store.episodes(&EpisodeFilter::default()).unwrap() {
        // Decoding every step proves none is half-written.
        for r in store.steps(e.id).unwrap() {
            ids.insert(r.step.id);
        }
    }
    ids
}

fn acknowledged_appends_survive_sigkill(db: &Db) {
    let path = db.location("crash");
    drop(Store::open(&path).unwrap());
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked = Vec::new();
    let rounds = 12;
    for _ in 0..rounds {
        let mut child = spawn_child(&path, None);
        // Kill it mid-stream: once it has started appending (connecting takes a while on
        // PostgreSQL), after a random while.
        let (started, first) = std::sync::mpsc::channel();
        let reader = ack_reader(&mut child, Some(started));
        first.recv_timeout(Duration::from_secs(60)).expect("the child appended nothing in a minute");
        std::thread::sleep(Duration::from_millis(30 + rand() % 300));
        child.kill().unwrap(); // SIGKILL
        acked.extend(reader.join().unwrap());
        child.wait().unwrap();
    }
    assert!(acked.len() > 100, "the children acknowledged only {} appends", acked.len());
    let store = Store::open(&path).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let stored = all_step_ids(&store);
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged steps lost", missing.len(), acked.len());
    eprintln!("crash safety: {rounds} kills, {} acknowledged steps, all present, {} stored", acked.len(), stored.len());
}

fn eight_processes_append_at_once(db: &Db) {
    let path = db.location("eight");
    drop(Store::open(&path).unwrap());
    let n = 300;
    let mut children: Vec<_> = (0..8).map(|_| spawn_child(&path, Some(n))).collect();
    let readers: Vec<_> = children.iter_mut().map(|c| ack_reader(c, None)).collect();
    let acked: Vec<Vec<Uuid>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    assert!(acked.iter().all(|a| a.len() == n), "{:?}", acked.iter().map(Vec::len).collect::<Vec<_>>());
    let store = Store::open(&path).unwrap();
    let stored = all_step_ids(&store);
    assert_eq!(stored.len(), 8 * n);
    assert!(acked.iter().flatten().all(|id| stored.contains(id)));
    assert_eq!(store.stats().unwrap().episodes, 8);
}

/// The PostgreSQL server restarted (`pg_ctl restart -m fast`) while a writer appends: the writer
/// reconnects, every receipt resolves `Ok` (the restart is well inside the retry window), and
/// every acknowledged step is there.
#[test]
fn postgres_server_restarted_under_load() {
    let ctl = match std::env::var("KEEL_TEST_POSTGRES_CTL") {
        Ok(c) if !c.is_empty() => c,
        _ if std::env::var("KEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("KEEL_REQUIRE_POSTGRES=1 but KEEL_TEST_POSTGRES_CTL is not set")
        }
        _ => {
            eprintln!("skipped: KEEL_TEST_POSTGRES_CTL is not set");
            return;
        }
    };
    // Alone: no other PostgreSQL test may run while the server goes down.
    let Some(db) = Db::postgres_locked(true) else { return };
    let loc = db.location("restart");
    let store = Store::open(&loc).unwrap();
    let w = store.writer().unwrap();
    let ep = episode("/restart");
    w.append(Record::Episode(ep.clone())).wait().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (w, ep, stop) = (w.clone(), ep.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<_> = (0..20)
                    .map(|_| {
                        i += 1;
                        let s = step(&ep, None, prompt(&i.to_string()), edit("a", "b"));
                        (s.id, w.append(Record::Step(s)))
                    })
                    .collect();
                for (id, r) in batch {
                    match r.wait() {
                        Ok(()) => acked.push((id, std::time::Instant::now())),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
            }
            (acked, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let out = Command::new("sh").arg("-c").arg(format!("{ctl} restart -m fast")).stdout(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{ctl} restart: {}", String::from_utf8_lossy(&out.stderr));
    let restarted = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = appender.join().unwrap();
    assert!(failed.is_empty(), "receipts failed across the restart: {failed:?}");
    let after = acked.iter().filter(|(_, at)| *at > restarted).count();
    assert!(after > 0 && acked.len() > after, "{} acknowledged, {after} after the restart", acked.len());
    let fresh = Store::open(&loc).unwrap();
    let stored = all_step_ids(&fresh);
    assert!(acked.iter().all(|(id, _)| stored.contains(id)), "an acknowledged step is missing");
    // The reading handle that was open across the restart connects again too.
    assert_eq!(store.steps(ep.id).unwrap().len(), stored.len());
    eprintln!("restart under load: {} acknowledged ({after} after the restart), none lost", acked.len());
}
