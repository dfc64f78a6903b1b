//! The store's test suite: round trips, the step tree, redaction, crash safety, several processes,
//! migrations and refusals, dumps.
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

#[test]
fn round_trip_and_tree() {
    let dir = temp();
    let path = dir.path().join("keel.db");
    let store = Store::open(&path).unwrap();
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

#[test]
fn queries_by_time_and_version() {
    let dir = temp();
    let store = Store::open(dir.path().join("k.db")).unwrap();
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

#[test]
fn model_versions_have_one_live() {
    let dir = temp();
    let mut store = Store::open(dir.path().join("k.db")).unwrap();
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

#[test]
fn async_callers_and_flush() {
    let dir = temp();
    let store = Store::open(dir.path().join("k.db")).unwrap();
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
    use super::*;
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

    #[test]
    fn nothing_secret_reaches_the_file() {
        let secret = "sk-proj-SECRETSECRETSECRETSECRET1234";
        let dir = temp();
        let path = dir.path().join("k.db");
        let store = Store::open(&path).unwrap();
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
        drop(store);
        for suffix in ["", "-wal"] {
            let bytes = std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default();
            assert!(!bytes.windows(12).any(|win| win == b"SECRETSECRET"), "secret bytes in {suffix}");
        }
    }
}

mod refusals {
    use super::*;

    fn bytes(p: &Path) -> Vec<u8> {
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

    #[test]
    fn another_applications_database() {
        let dir = temp();
        let p = dir.path().join("other.db");
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        }
        let before = bytes(&p);
        let err = Store::open(&p).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        assert_eq!(bytes(&p), before);
    }

    #[test]
    fn a_newer_schema() {
        let dir = temp();
        let p = dir.path().join("k.db");
        drop(Store::open(&p).unwrap());
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 7).unwrap();
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        }
        let before = bytes(&p);
        let err = Store::open(&p).unwrap_err();
        match &err {
            StoreError::NewerSchema { found, supported, .. } => {
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 7, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other}"),
        }
        assert!(err.to_string().contains("upgrade Keel"));
        assert_eq!(bytes(&p), before);
    }

    #[test]
    fn an_older_schema_migrates_and_keeps_its_data() {
        let dir = temp();
        let p = dir.path().join("k.db");
        Store::create_at_version(&p, 1).unwrap();
        let ep = episode("/old");
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            assert_eq!(c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 1);
            let has_versions: i64 = c
                .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'model_versions'", [], |r| r.get(0))
                .unwrap();
            assert_eq!(has_versions, 0);
            let mut body = ep.clone();
            body.workspace.vcs = None;
            c.execute(
                "INSERT INTO episodes (id, created_at, model_name, model_version, task_kind, body) VALUES (?1, ?2, 'keel', NULL, 'fix_diagnostic', ?3)",
                rusqlite::params![ep.id.to_string(), ep.created_at, serde_json::to_string(&body).unwrap()],
            )
            .unwrap();
        }
        let store = Store::open(&p).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.episode(ep.id).unwrap().unwrap().workspace.root, "/old");
        assert!(store.model_versions().unwrap().is_empty());
    }
}

#[test]
fn dump_round_trips() {
    let dir = temp();
    let a = Store::open(dir.path().join("a.db")).unwrap();
    let w = a.writer().unwrap();
    write_sample(&w);
    write_sample(&w);
    let mut first = Vec::new();
    assert_eq!(a.export_jsonl(&EpisodeFilter::default(), &mut first).unwrap(), 2);

    let b = Store::open(dir.path().join("b.db")).unwrap();
    let stats = b.import_jsonl(&first[..]).unwrap();
    assert_eq!((stats.episodes, stats.steps, stats.skipped), (2, 8, 0));
    let again = b.import_jsonl(&first[..]).unwrap();
    assert_eq!((again.episodes, again.skipped), (0, 2), "importing twice adds nothing");
    let mut second = Vec::new();
    b.export_jsonl(&EpisodeFilter::default(), &mut second).unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), String::from_utf8(second).unwrap());

    let err = b.import_jsonl(&b"{\"keel_dump\": 1}\nnot json\n"[..]).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

/// `Durability::Full` is `PRAGMA synchronous=FULL` on the handle's connection and on its writer's,
/// and appends still round-trip; the default stays `NORMAL`.
#[test]
fn durability_full_sets_synchronous_full_on_the_writer() {
    let dir = temp();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let sync_of = |s: &Store| -> i64 { s.connection().pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap() };
    let normal = Store::open(dir.path().join("n.db")).unwrap();
    assert_eq!(normal.durability(), Durability::Normal);
    assert_eq!(sync_of(&normal), 1);
    assert_eq!(rt.block_on(normal.writer().unwrap().synchronous()).unwrap(), 1);
    let full = Store::open_with(dir.path().join("f.db"), Durability::Full).unwrap();
    assert_eq!(sync_of(&full), 2);
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

fn spawn_child(path: &Path, limit: Option<usize>) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = limit {
        c.env("KEEL_TEST_LIMIT", n.to_string());
    }
    c.spawn().unwrap()
}

fn durable_ids(child: &mut std::process::Child) -> Vec<Uuid> {
    let out = child.stdout.take().unwrap();
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.split_once("durable ").and_then(|(_, id)| Uuid::parse_str(id.trim()).ok()))
        .collect()
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

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = temp();
    let path = dir.path().join("crash.db");
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
        std::thread::sleep(Duration::from_millis(30 + rand() % 300));
        child.kill().unwrap(); // SIGKILL
        acked.extend(durable_ids(&mut child));
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

#[test]
fn two_processes_append_at_once() {
    let dir = temp();
    let path = dir.path().join("two.db");
    drop(Store::open(&path).unwrap());
    let n = 1500;
    let mut a = spawn_child(&path, Some(n));
    let mut b = spawn_child(&path, Some(n));
    let ids_a = durable_ids(&mut a);
    let ids_b = durable_ids(&mut b);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_eq!((ids_a.len(), ids_b.len()), (n, n));
    let store = Store::open(&path).unwrap();
    let stored = all_step_ids(&store);
    assert_eq!(stored.len(), 2 * n);
    assert!(ids_a.iter().chain(&ids_b).all(|id| stored.contains(id)));
    assert_eq!(store.stats().unwrap().episodes, 2);
}
