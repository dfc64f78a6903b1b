//! MCTS over recorded decision trees: a synthetic suite of tasks with a known decisive step and
//! decoy steps; precision and recall of the critical decisions found; pairs that prefer the
//! decisive correct action; the same seed gives the same tree and pairs.
//!
//! The environment here is an in-memory workspace that carries out edits and runs the suite's
//! verification commands (`grep -qF TEXT FILE`, the exact command the container suite runs with
//! busybox). The search algorithm is what is under test.

use std::collections::HashMap;

use keel_trainer::search::{self, Environment, Policy, SearchConfig, Session, Tree};
use keel_trajectory::action::tools_schema;
use keel_trajectory::*;
use serde_json::json;

/// One synthetic task: a file with a bug, the fix, wrong fixes, and decoys.
#[derive(Clone)]
pub struct Task {
    pub id: usize,
    pub file: String,
    pub content: String,
    pub bug: String,
    pub fix: String,
    pub wrong: Vec<String>,
    pub decoys: Vec<(String, String, String)>,
}

pub fn suite(n: usize) -> Vec<Task> {
    let ops = [("-", "+"), ("*", "+"), ("/", "*"), ("+", "-"), ("%", "/")];
    (0..n)
        .map(|i| {
            let (bad, good) = ops[i % ops.len()];
            let file = format!("lib{i}.sh");
            let bug = format!("echo $(( $1 {bad} $2 ))");
            let fix = format!("echo $(( $1 {good} $2 ))");
            let content = format!("#!/bin/sh\n# task {i}: combine two numbers\nf{i}() {{\n  {bug}\n}}\n");
            let wrong = vec![format!("echo $(( $2 {bad} $1 ))"), format!("echo $(( $1 {bad} $2 + {i} ))")];
            let decoys = if i % 2 == 0 {
                vec![("README.md".to_string(), String::new(), format!("# task {i}\n"))]
            } else {
                vec![(file.clone(), format!("# task {i}: combine two numbers"), format!("# task {i}: combine two numbers (see tests)"))]
            };
            Task { id: i, file, content, bug, fix, wrong, decoys }
        })
        .collect()
}

impl Task {
    pub fn verify(&self) -> String {
        format!("grep -qF '{}' {}", self.fix, self.file)
    }

    fn edit(&self, new: &str) -> Action {
        Action::Edit { path: self.file.clone(), old_text: self.bug.clone(), new_text: new.to_string() }
    }

    /// The candidate actions at a state, given the edits made so far.
    fn candidates(&self, done: &[Action]) -> Vec<Action> {
        let touched_bug = done.iter().any(|a| matches!(a, Action::Edit { old_text, .. } if *old_text == self.bug));
        let mut c = Vec::new();
        if !touched_bug {
            c.push(self.edit(&self.fix));
            for w in &self.wrong {
                c.push(self.edit(w));
            }
        }
        for (p, old, new) in &self.decoys {
            let a = Action::Edit { path: p.clone(), old_text: old.clone(), new_text: new.clone() };
            if !done.contains(&a) {
                c.push(a);
            }
        }
        c.push(Action::Finish { summary: "done".into() });
        c
    }

    pub fn is_fix(&self, a: &Action) -> bool {
        *a == self.edit(&self.fix)
    }

    pub fn is_wrong(&self, a: &Action) -> bool {
        self.wrong.iter().any(|w| *a == self.edit(w))
    }

    pub fn files(&self) -> Vec<FileSnapshot> {
        vec![FileSnapshot { path: self.file.clone(), content: self.content.clone() }]
    }
}

/// The actions taken so far in a conversation (its assistant tool calls).
/// The actions carried out before a state (a step the user rejected was not).
fn done(prompt: &Prompt) -> Vec<Action> {
    let m = &prompt.messages;
    m.iter()
        .enumerate()
        .filter(|(i, _)| !m.get(i + 1).and_then(|r| r.content.as_deref()).is_some_and(|c| c.starts_with("The user rejected")))
        .flat_map(|(_, m)| m.tool_calls.iter())
        .filter_map(|c| Action::from_call(&c.function.name, &c.function.arguments).ok())
        .collect()
}

fn task_of<'a>(tasks: &'a [Task], prompt: &Prompt) -> &'a Task {
    let user = prompt.messages.iter().find(|m| m.role == Role::User).and_then(|m| m.content.clone()).unwrap_or_default();
    let id: usize = user.split("task #").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).expect("task id");
    &tasks[id]
}

/// A scripted policy: k distinct candidates, in an order drawn from the seed.
pub struct ScriptedPolicy {
    pub tasks: Vec<Task>,
}

impl Policy for ScriptedPolicy {
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> anyhow::Result<Vec<ModelOutput>> {
        let t = task_of(&self.tasks, prompt);
        let mut c = t.candidates(&done(prompt));
        // Seeded Fisher–Yates.
        let mut s = seed | 1;
        for i in (1..c.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.swap(i, (s % (i as u64 + 1)) as usize);
        }
        Ok(c.into_iter().take(k).enumerate().map(|(i, a)| ModelOutput { content: None, tool_calls: vec![a.to_tool_call(format!("s{i}"))] }).collect())
    }
}

/// An in-memory workspace.
pub struct MemEnv;

pub struct MemSession {
    files: std::sync::Mutex<HashMap<String, String>>,
}

impl Environment for MemEnv {
    type Session<'a> = MemSession;
    fn start<'a>(&'a self, episode: &Episode) -> anyhow::Result<MemSession> {
        let files = episode.workspace.vcs.as_ref().map(|v| v.untracked.iter().map(|f| (f.path.clone(), f.content.clone())).collect()).unwrap_or_default();
        Ok(MemSession { files: std::sync::Mutex::new(files) })
    }
}

impl keel_agent::Workspace for MemSession {
    fn read(&self, rel: &str) -> Result<keel_agent::FileRead, String> {
        Ok(self.files.lock().unwrap().get(rel).cloned().map(keel_agent::FileRead::Text).unwrap_or(keel_agent::FileRead::Missing))
    }
    fn files(&self, _base: &str) -> Result<Vec<(String, u64)>, String> {
        Ok(self.files.lock().unwrap().iter().map(|(p, t)| (p.clone(), t.len() as u64)).collect())
    }
    fn write(&self, rel: &str, text: &str) -> Result<(), String> {
        self.files.lock().unwrap().insert(rel.to_string(), text.to_string());
        Ok(())
    }
    fn run(&self, command: &str) -> Observation {
        // grep -qF 'TEXT' FILE
        let ok = command.strip_prefix("grep -qF '").and_then(|rest| rest.split_once("' ")).is_some_and(|(text, file)| self.files.lock().unwrap().get(file).is_some_and(|f| f.contains(text)));
        Observation { output: String::new(), exit_code: Some(if ok { 0 } else { 1 }), ..Default::default() }
    }
}

impl Session for MemSession {
    fn workspace(&self) -> &dyn keel_agent::Workspace {
        self
    }
}

/// Records the episode a user had on a task: a decoy accepted, a wrong fix rejected, the fix
/// accepted, finish. Returns the store path.
pub fn record(store: &Store, t: &Task) -> uuid::Uuid {
    let w = store.writer().unwrap();
    let ep = Episode {
        id: new_id(),
        created_at: 1_000 + t.id as i64,
        workspace: Workspace { root: "/work".into(), vcs: Some(VcsState { kind: "files".into(), commit: String::new(), patch: String::new(), untracked: t.files(), left_out: vec![] }) },
        task: keel_trajectory::Task { kind: TaskKind::FixDiagnostic, instruction: format!("task #{} fails its test", t.id), uri: None, language: Some("sh".into()), range: None, diagnostics: vec![], selected_text: None },
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        client: None,
        verify: Some(t.verify()),
        protected: vec![],
    };
    let _ = w.append(Record::Episode(ep.clone()));
    let prompt = Prompt { messages: vec![Message::system("You are Keel."), Message::user(format!("Fix task #{} please", t.id))], tools: tools_schema() };
    // The states move on as the shared agent moves them (the observations it shows).
    let mut agent = keel_agent::Agent::new(prompt, keel_agent::DEFAULT_OBSERVATION_BYTES);
    let mut parent = None;
    let (dp, dold, dnew) = t.decoys[0].clone();
    let script: Vec<(Action, Decision)> = vec![
        (Action::Edit { path: dp, old_text: dold, new_text: dnew }, Decision::Accepted),
        (t.edit(&t.wrong[0]), Decision::Rejected { cause: RejectCause::User, reason: None }),
        (t.edit(&t.fix), Decision::Accepted),
        (Action::Finish { summary: "fixed".into() }, Decision::Auto),
    ];
    for (a, d) in script {
        let prompt = agent.prompt().clone();
        let parsed = Parsed::Action { action: a.clone(), call_id: Some("c".into()) };
        let output = ModelOutput { content: None, tool_calls: vec![a.to_tool_call("c")] };
        let step = step_of(&ep, parent, &prompt, &output, &parsed);
        let _ = w.append(Record::Step(step.clone()));
        let obs = match (&a, &d) {
            (Action::Finish { .. }, _) => None,
            (Action::Edit { path, .. }, Decision::Accepted) => {
                agent.edit_applied();
                Some(keel_agent::tools::edit_applied(path))
            }
            _ => Some(keel_agent::tools::user_rejected(None)),
        };
        let _ = w.append(Record::Decision(DecisionEvent { step_id: step.id, at: 2_001, decision: d }));
        if let Some(obs) = obs {
            let _ = w.append(Record::Observation { step_id: step.id, at: 2_002, observation: obs.clone() });
            agent.advance(&parsed, &output, &obs);
            parent = Some(step.id);
        }
    }
    w.flush().wait().unwrap();
    ep.id
}

fn behind_rejection(prompt: &Prompt) -> bool {
    prompt.messages.iter().any(|m| m.role == Role::Tool && m.content.as_deref().is_some_and(|c| c.starts_with("The user rejected")))
}

/// Whether a node is truly decisive: the bug is still there to fix or break.
fn truly_critical(t: &Task, prompt: &Prompt) -> bool {
    !done(prompt).iter().any(|a| t.is_fix(a) || t.is_wrong(a))
}

pub struct SuiteResult {
    pub precision: f64,
    pub recall: f64,
    pub pairs: Vec<serde_json::Value>,
    pub trees: Vec<serde_json::Value>,
    pub prefer_fix: usize,
}

pub fn run_suite<E: Environment>(env: &E, tasks: &[Task], cfg: &SearchConfig) -> SuiteResult {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let ids: Vec<uuid::Uuid> = tasks.iter().map(|t| record(&store, t)).collect();
    let policy = ScriptedPolicy { tasks: tasks.to_vec() };
    let (mut tp, mut fp, mut fneg, mut missed_behind) = (0usize, 0usize, 0usize, 0usize);
    let mut all_pairs = Vec::new();
    let mut trees = Vec::new();
    let mut prefer_fix = 0;
    for (t, id) in tasks.iter().zip(ids) {
        let et = store.tree(id).unwrap().unwrap();
        let mut tree = Tree::from_episode(&et, &cfg.values).unwrap();
        search::search(&mut tree, &policy, env, cfg).unwrap();
        let found = search::critical(&tree, cfg);
        // Recorded states: recall over them; precision over everything flagged.
        for (i, n) in tree.nodes.iter().enumerate() {
            let flagged = found.iter().any(|c| c.node == i);
            let truth = truly_critical(t, &n.prompt);
            let recorded = n.edges.iter().any(|e| matches!(e.origin, search::Origin::Recorded(_)));
            match (flagged, truth) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                // A state behind a user's rejection (the model was told "rejected") gets few
                // simulations — the rejection lowers its branch — so it is counted apart.
                (false, true) if recorded && behind_rejection(&n.prompt) => missed_behind += 1,
                (false, true) if recorded => fneg += 1,
                _ => {}
            }
        }
        for c in &found {
            let best = tree.nodes[c.node].edges[c.best].parsed.action().cloned();
            let worst = tree.nodes[c.node].edges[c.worst].parsed.action().cloned();
            if best.as_ref().is_some_and(|a| t.is_fix(a)) && worst.as_ref().is_some_and(|a| !t.is_fix(a)) {
                prefer_fix += 1;
            }
        }
        all_pairs.extend(search::pairs(&tree, &found, None));
        trees.push(search::tree_json(&tree, &found));
    }
    if missed_behind > 0 {
        eprintln!("{missed_behind} recorded decisive state(s) behind a user's rejection not found");
    }
    SuiteResult {
        precision: tp as f64 / (tp + fp).max(1) as f64,
        recall: tp as f64 / (tp + fneg).max(1) as f64,
        pairs: all_pairs,
        trees,
        prefer_fix,
    }
}

pub fn config() -> SearchConfig {
    SearchConfig { simulations: 48, expand: 5, c_uct: 1.0, margin: 0.5, max_depth: 6, parallel: 4, seed: 7, min_visits: 2, ..Default::default() }
}

#[test]
fn finds_the_decisive_steps_of_twenty_tasks() {
    let tasks = suite(20);
    let r = run_suite(&MemEnv, &tasks, &config());
    eprintln!("precision {:.2}, recall {:.2}, {} pairs, {} prefer the fix", r.precision, r.recall, r.pairs.len(), r.prefer_fix);
    assert!(r.precision >= 0.9, "precision {}", r.precision);
    assert!(r.recall >= 0.9, "recall {}", r.recall);
    assert!(r.pairs.len() >= 20);
    // Every pair prefers the fix over something that is not the fix.
    assert_eq!(r.prefer_fix, r.pairs.len());
    for p in &r.pairs {
        assert_eq!(p["meta"]["source"], "mcts");
        assert!(p["meta"]["q_chosen"].as_f64().unwrap() - p["meta"]["q_rejected"].as_f64().unwrap() > 0.5);
    }
}

#[test]
fn the_same_seed_gives_the_same_tree_and_pairs() {
    let tasks = suite(4);
    let a = run_suite(&MemEnv, &tasks, &config());
    let b = run_suite(&MemEnv, &tasks, &config());
    // Episode ids differ between runs (new stores); compare without them.
    let strip = |v: &Vec<serde_json::Value>| {
        let mut v = v.clone();
        for x in v.iter_mut() {
            if let Some(o) = x.as_object_mut() {
                o.remove("episode");
            }
            if let Some(m) = x.get_mut("meta").and_then(|m| m.as_object_mut()) {
                m.remove("episode");
            }
            strip_recorded(x);
        }
        v
    };
    assert_eq!(strip(&a.trees), strip(&b.trees));
    assert_eq!(strip(&a.pairs), strip(&b.pairs));
    let other = run_suite(&MemEnv, &tasks, &SearchConfig { seed: 8, ..config() });
    assert_eq!(other.pairs.len(), a.pairs.len(), "a different seed still finds them");
    let _ = json!(null);
}

fn strip_recorded(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(serde_json::Value::Object(r)) = o.get_mut("origin") {
                r.insert("recorded".into(), json!("*"));
            }
            for x in o.values_mut() {
                strip_recorded(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_recorded),
        _ => {}
    }
}

/// The suite again, with every rollout in a real container (keel-sandbox over Podman's Docker API):
/// edits applied with the container's tools, the verification command run by busybox.
#[test]
fn finds_the_decisive_steps_with_rollouts_in_containers() {
    let env = keel_trainer::search::sandbox_env::SandboxEnv::connect(None, None).expect("the container engine (run `cargo xtask setup`)");
    let tasks = suite(20);
    let cfg = SearchConfig { simulations: 32, expand: 5, parallel: 8, max_depth: 4, ..config() };
    let t = std::time::Instant::now();
    let r = run_suite(&env, &tasks, &cfg);
    eprintln!("containers: precision {:.2}, recall {:.2}, {} pairs ({} prefer the fix) in {:.0?}", r.precision, r.recall, r.pairs.len(), r.prefer_fix, t.elapsed());
    assert!(r.precision >= 0.9, "precision {}", r.precision);
    assert!(r.recall >= 0.8, "recall {}", r.recall);
    assert_eq!(r.prefer_fix, r.pairs.len());
}

/// `keel-train search` from the command line: the policy is a tiny model run in the process (its
/// samples are constrained tool calls), rollouts run in containers, the tree goes to a JSON file.
#[test]
fn the_search_command_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    for t in suite(2) {
        record(&store, &t);
    }
    drop(store);
    let model = dir.path().join("tiny");
    let st = keel_e2e::command("keel-train").args(["init-model", "--preset", "tiny", "--out"]).arg(&model).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(st.success());
    let (out, tree) = (dir.path().join("mcts.jsonl"), dir.path().join("tree.json"));
    let run = || {
        keel_e2e::command("keel-train")
            .args(["search", "--store"])
            .arg(&db)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .arg("--tree")
            .arg(&tree)
            .args(["--simulations", "4", "--expand", "2", "--parallel", "4", "--max-depth", "3", "--seed", "5"])
            .output()
            .unwrap()
    };
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("rollouts") && err.contains("critical decision(s) in 2 episode(s)"), "{err}");
    let trees: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    assert_eq!(trees.len(), 2);
    let nodes = trees[0]["nodes"].as_array().unwrap();
    assert!(nodes.len() > 3, "recorded states plus expansions");
    let sampled = nodes.iter().flat_map(|n| n["edges"].as_array().unwrap().iter()).filter(|e| e["origin"] == "sampled").count();
    assert!(sampled > 0, "the model was sampled");
    // The same seed gives the same tree.
    let first = std::fs::read_to_string(&tree).unwrap();
    assert!(run().status.success());
    assert_eq!(std::fs::read_to_string(&tree).unwrap(), first);
}

/// `keel-train search` over two episodes whose first tree's search fails (the model endpoint
/// answers its first request with something that is not a chat completion): the second tree is
/// still searched and written, and the command fails naming the lost one — the finished trees'
/// work is not thrown away with it.
#[test]
fn a_tree_whose_search_fails_costs_that_tree_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    let ids: Vec<uuid::Uuid> = suite(2).iter().map(|t| record(&store, t)).collect();
    drop(store);
    let model = keel_e2e::ScriptedModel::start();
    model.push(keel_e2e::Reply::Garbage("not a chat completion".into()), false);
    for _ in 0..40 {
        let c = Action::Finish { summary: "done".into() }.to_tool_call("c");
        model.push(keel_e2e::Reply::tool(&c.function.name, serde_json::from_str(&c.function.arguments).unwrap()), false);
    }
    let (out, tree) = (dir.path().join("mcts.jsonl"), dir.path().join("tree.json"));
    let o = keel_e2e::command("keel-train")
        .args(["search", "--store"])
        .arg(&db)
        .args(["--endpoint", &model.url, "--out"])
        .arg(&out)
        .arg("--tree")
        .arg(&tree)
        .args(["--simulations", "2", "--expand", "1", "--parallel", "1", "--max-depth", "3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a lost tree is a failure: {err}");
    assert!(err.contains(&format!("the search of 1 of 2 episode(s) failed ({})", ids[0])), "{err}");
    let trees: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    assert_eq!(trees.len(), 1, "the searched tree is written");
    assert_eq!(trees[0]["episode"], ids[1].to_string());
    assert!(out.exists());
}

/// Always finishes.
struct FinishPolicy;

impl Policy for FinishPolicy {
    fn sample(&self, _prompt: &Prompt, k: usize, _seed: u64) -> anyhow::Result<Vec<ModelOutput>> {
        Ok((0..k.min(1)).map(|_| ModelOutput { content: None, tool_calls: vec![Action::Finish { summary: "done".into() }.to_tool_call("f")] }).collect())
    }
}

/// Search with the Python image: a rollout of a Python task runs its `python3` tests in the
/// container; finishing without the fix scores 0, the recorded fix then finishing scores 1.
#[test]
fn rollouts_of_a_python_task_run_its_tests_in_the_python_image() {
    let env = keel_trainer::search::sandbox_env::SandboxEnv::connect(None, Some(keel_sandbox::PYTHON_IMAGE.into())).expect("the Python image (run `cargo xtask setup`)");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let w = store.writer().unwrap();
    let files = vec![
        FileSnapshot { path: "calc.py".into(), content: "def add(a, b):\n    return a - b\n".into() },
        FileSnapshot { path: "test_calc.py".into(), content: "from calc import add\nassert add(2, 3) == 5\nprint('ok')\n".into() },
    ];
    let ep = Episode {
        id: new_id(),
        created_at: 1_000,
        workspace: Workspace { root: "/work".into(), vcs: Some(VcsState { kind: "files".into(), commit: String::new(), patch: String::new(), untracked: files, left_out: vec![] }) },
        task: keel_trajectory::Task { kind: TaskKind::FixDiagnostic, instruction: "test_calc.py fails".into(), uri: None, language: Some("python".into()), range: None, diagnostics: vec![], selected_text: None },
        model: ModelRef { name: "keel".into(), version: None },
        client: None,
        verify: Some("python3 test_calc.py".into()),
        protected: vec![],
    };
    let _ = w.append(Record::Episode(ep.clone()));
    let mut agent = keel_agent::Agent::new(Prompt { messages: vec![Message::system("You are Keel."), Message::user("Fix add")], tools: tools_schema() }, 4096);
    let fix = Action::Edit { path: "calc.py".into(), old_text: "a - b".into(), new_text: "a + b".into() };
    let output = ModelOutput { content: None, tool_calls: vec![fix.to_tool_call("c")] };
    let step = Step {
        id: new_id(),
        episode_id: ep.id,
        parent_id: None,
        state_hash: state_hash(agent.prompt()),
        created_at: 2_000,
        prompt: agent.prompt().clone(),
        output: output.clone(),
        parsed: Parsed::Action { action: fix, call_id: Some("c".into()) },
        model: ModelRef { name: "keel".into(), version: None },
        timings: Timings::default(),
    };
    let _ = w.append(Record::Step(step.clone()));
    let _ = w.append(Record::Decision(DecisionEvent { step_id: step.id, at: 2_001, decision: Decision::Accepted }));
    let obs = keel_agent::tools::edit_applied("calc.py");
    let _ = w.append(Record::Observation { step_id: step.id, at: 2_002, observation: obs.clone() });
    agent.advance(&step.parsed, &output, &obs);
    w.flush().wait().unwrap();
    let et = store.tree(ep.id).unwrap().unwrap();
    let mut tree = Tree::from_episode(&et, &Default::default()).unwrap();
    let cfg = SearchConfig { simulations: 3, expand: 1, parallel: 1, max_depth: 3, ..Default::default() };
    let stats = search::search(&mut tree, &FinishPolicy, &env, &cfg).unwrap();
    eprintln!("{stats:?}");
    assert!(stats.successes >= 1, "a rollout through the fix passes python3's tests: {stats:?}");
    assert!(stats.successes < stats.rollouts, "finishing without the fix fails them: {stats:?}");
    let finish_now = &tree.nodes[0].edges.iter().find(|e| matches!(e.origin, search::Origin::Sampled)).unwrap();
    assert_eq!(finish_now.q(), 0.0);
}

/// A proposal the user accepted in part (or changed after accepting) is recorded `edited` with the
/// text they kept; search must rebuild that state with the kept text, not the model's whole
/// proposal — else every rollout below it runs on a file the user never had.
#[test]
fn replay_rebuilds_an_edited_step_with_the_text_the_user_kept() {
    let t = &suite(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let w = store.writer().unwrap();
    let (ep, mut agent) = task_episode(t);
    let _ = w.append(Record::Episode(ep.clone()));
    // The model proposes a wrong fix; the user keeps only the right part of it: the fix.
    let wrong = t.edit(&t.wrong[0]);
    let mut parent = None;
    for (a, d) in [(wrong, Decision::Edited { final_text: t.fix.clone() }), (Action::Finish { summary: "fixed".into() }, Decision::Auto)] {
        let parsed = Parsed::Action { action: a.clone(), call_id: Some("c".into()) };
        let output = ModelOutput { content: None, tool_calls: vec![a.to_tool_call("c")] };
        let step = step_of(&ep, parent, agent.prompt(), &output, &parsed);
        let _ = w.append(Record::Step(step.clone()));
        let _ = w.append(Record::Decision(DecisionEvent { step_id: step.id, at: 2_001, decision: d }));
        if let Action::Edit { path, .. } = &a {
            let obs = Observation { output: format!("The user applied 1 of the 2 hunks of the edit to {path} and rejected the others; the text that replaced old_text is:\n{}", t.fix), exit_code: Some(0), ..Default::default() };
            let _ = w.append(Record::Observation { step_id: step.id, at: 2_002, observation: obs.clone() });
            agent.edit_applied();
            agent.advance(&parsed, &output, &obs);
            parent = Some(step.id);
        }
    }
    w.flush().wait().unwrap();
    let et = store.tree(ep.id).unwrap().unwrap();
    let mut tree = Tree::from_episode(&et, &Default::default()).unwrap();
    let cfg = SearchConfig { simulations: 4, expand: 1, parallel: 1, max_depth: 3, ..Default::default() };
    search::search(&mut tree, &FinishPolicy, &MemEnv, &cfg).unwrap();
    // The state after the edit: finishing there passes the task's check, as the user's file does.
    let after = tree.nodes[0].edges[0].child.expect("the edited step has a child state");
    let finish = tree.nodes[after].edges.iter().find(|e| matches!(e.parsed.action(), Some(Action::Finish { .. }))).expect("finish below the edit");
    assert!(finish.n >= 1, "finish was evaluated");
    assert_eq!(finish.q(), 1.0, "the rollout ran on the text the user kept (the fix), not the model's proposal");
}

/// An automatic rejection the agent resamples after (no observation, no child) and the same action
/// again at the same state, advanced with the rules' message: one edge in the tree. Its replay
/// must show the model the rules' message, not "the user rejected this".
#[test]
fn a_resampled_automatic_rejection_replays_with_the_rules_message() {
    let t = &suite(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let w = store.writer().unwrap();
    let (ep, mut agent) = task_episode(t);
    let _ = w.append(Record::Episode(ep.clone()));
    // The model reads the file, then asks for the same read again and again: the rules reject it
    // as a loop, resample, and after enough tries move on with their message.
    let session = MemEnv.start(&ep).unwrap();
    let view = Action::ViewFile { path: t.file.clone(), start_line: None, end_line: None };
    let outputs: Vec<ModelOutput> = std::iter::repeat_n(ModelOutput { content: None, tool_calls: vec![view.to_tool_call("c")] }, 2 + keel_agent::AUTO_RESAMPLES as usize)
        .chain([ModelOutput { content: None, tool_calls: vec![Action::Finish { summary: "done".into() }.to_tool_call("f")] }])
        .collect();
    let (mut parent, mut resampled, mut advanced_loop) = (None, 0, 0);
    for output in outputs {
        let prompt = agent.prompt().clone();
        let u = agent.step_unattended(&output, &session);
        let step = step_of(&ep, parent, &prompt, &output, &u.parsed);
        let _ = w.append(Record::Step(step.clone()));
        let _ = w.append(Record::Decision(DecisionEvent { step_id: step.id, at: 2_001, decision: u.decision.clone() }));
        if let Some(obs) = &u.observation {
            let _ = w.append(Record::Observation { step_id: step.id, at: 2_002, observation: obs.clone() });
        }
        if u.decision.is_automatic_rejection() {
            if u.advanced { advanced_loop += 1 } else { resampled += 1 }
        }
        if u.advanced {
            parent = Some(step.id);
        }
        if u.finished {
            break;
        }
    }
    assert!(resampled >= 1 && advanced_loop == 1, "the scenario: {resampled} resampled, {advanced_loop} advanced");
    w.flush().wait().unwrap();
    let et = store.tree(ep.id).unwrap().unwrap();
    let mut tree = Tree::from_episode(&et, &Default::default()).unwrap();
    let cfg = SearchConfig { simulations: 2, expand: 1, parallel: 1, max_depth: 6, ..Default::default() };
    let stats = search::search(&mut tree, &FinishPolicy, &MemEnv, &cfg).unwrap();
    assert_eq!(stats.replay_mismatches, 0, "every recorded state rebuilt as recorded: {stats:?}");
    assert!(stats.replayed >= 2, "{stats:?}");
}

/// An environment that loses some rollouts (the engine stopped, a container removed under it).
struct Flaky {
    starts: std::sync::atomic::AtomicUsize,
    fail: std::ops::Range<usize>,
}

impl Environment for Flaky {
    type Session<'a> = MemSession;
    fn start<'a>(&'a self, episode: &Episode) -> anyhow::Result<MemSession> {
        let n = self.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.contains(&n) {
            anyhow::bail!("container engine: no such container (start {n})");
        }
        MemEnv.start(episode)
    }
}

/// One task's recorded episode, its scripted policy, and a small search over it (the lost-rollout
/// tests).
fn one_recorded_episode() -> (EpisodeTree, ScriptedPolicy, SearchConfig) {
    let tasks = suite(1);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
    let id = record(&store, &tasks[0]);
    let et = store.tree(id).unwrap().unwrap();
    let cfg = SearchConfig { simulations: 8, expand: 2, parallel: 1, max_depth: 4, seed: 3, ..Default::default() };
    (et, ScriptedPolicy { tasks }, cfg)
}

/// Episodes that took the same steps to the same states are one path; an episode whose step led
/// to another state than the same step of an earlier one is left out from there, and the summary
/// says so (a silent drop hid a bug once: call ids in the state parted every episode).
#[test]
fn episodes_merge_by_state_and_a_branch_left_out_is_reported() {
    let (et, _, _) = one_recorded_episode();
    let values = search::HumanValues::default();
    let one = Tree::from_episodes(std::slice::from_ref(&et), &values).unwrap();
    let same = Tree::from_episodes(&[et.clone(), et.clone()], &values).unwrap();
    assert_eq!((same.nodes.len(), same.left_out), (one.nodes.len(), 0));
    let stats = search::SearchStats::default();
    assert!(!search::summary(&same, &[], &stats).contains("left out"));
    // The same first step, another result: the second episode's steps from there are left out.
    let mut other = et.clone();
    let second = other.steps.iter().position(|s| s.step.parent_id.is_some()).unwrap();
    other.steps[second].step.state_hash = "another state".into();
    let below = other.steps.len() - second;
    let t = Tree::from_episodes(&[et, other], &values).unwrap();
    assert_eq!((t.nodes.len(), t.left_out, t.left_out_episodes), (one.nodes.len(), below, 1));
    let text = search::summary(&t, &[], &stats);
    assert!(text.contains(&format!("{below} recorded step(s) of 1 episode(s) left out")), "{text}");
    assert_eq!(search::tree_json(&t, &[])["left_out_steps"], below);
}

/// The engine losing a rollout costs that rollout, not the search: it is counted and left out; a
/// search where it keeps happening stops with the engine's error.
#[test]
fn a_rollout_the_engine_loses_is_left_out_and_the_search_goes_on() {
    let (et, policy, cfg) = one_recorded_episode();
    // The replay of the recorded path is start 0; rollouts 1 and 2 are lost.
    let mut tree = Tree::from_episode(&et, &cfg.values).unwrap();
    let stats = search::search(&mut tree, &policy, &Flaky { starts: Default::default(), fail: 1..3 }, &cfg).unwrap();
    assert_eq!(stats.failed_rollouts, 2, "{stats:?}");
    assert_eq!(stats.rollouts, 6, "{stats:?}");
    assert!(search::summary(&tree, &search::critical(&tree, &cfg), &stats).contains("2 rollout(s) failed"));
    // Every rollout lost: the search stops, saying why.
    let mut tree = Tree::from_episode(&et, &cfg.values).unwrap();
    let e = search::search(&mut tree, &policy, &Flaky { starts: Default::default(), fail: 1..1000 }, &cfg).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("giving up") && msg.contains("no such container"), "{msg}");
    // Every rollout of a small search lost, within the number it tolerates: still an error (it
    // found nothing, and the loop would have written its empty pairs file as done).
    let small = SearchConfig { simulations: 2, ..cfg.clone() };
    let mut tree = Tree::from_episode(&et, &small.values).unwrap();
    let e = search::search(&mut tree, &policy, &Flaky { starts: Default::default(), fail: 1..1000 }, &small).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("every rollout") && msg.contains("nothing was learned"), "{msg}");
}

/// An environment whose engine stops under some rollouts after their container started: every
/// read, write and command of those fails from then on (as the container workspace's do), and the
/// session says why.
struct Dies {
    starts: std::sync::atomic::AtomicUsize,
    fail: std::ops::Range<usize>,
}

struct DyingSession {
    inner: MemSession,
    dead: bool,
}

impl Environment for Dies {
    type Session<'a> = DyingSession;
    fn start<'a>(&'a self, episode: &Episode) -> anyhow::Result<DyingSession> {
        let n = self.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(DyingSession { inner: MemEnv.start(episode)?, dead: self.fail.contains(&n) })
    }
}

impl keel_agent::Workspace for DyingSession {
    fn read(&self, rel: &str) -> Result<keel_agent::FileRead, String> {
        if self.dead { Err(format!("reading `{rel}` in the container: connection refused")) } else { self.inner.read(rel) }
    }
    fn files(&self, base: &str) -> Result<Vec<(String, u64)>, String> {
        if self.dead { Err("connection refused".into()) } else { self.inner.files(base) }
    }
    fn write(&self, rel: &str, text: &str) -> Result<(), String> {
        if self.dead { Err("connection refused".into()) } else { self.inner.write(rel, text) }
    }
    fn run(&self, command: &str) -> Observation {
        if self.dead { Observation { output: "sandbox error: connection refused".into(), exit_code: None, ..Default::default() } } else { self.inner.run(command) }
    }
}

impl Session for DyingSession {
    fn workspace(&self) -> &dyn keel_agent::Workspace {
        self
    }
    fn lost(&self) -> Option<String> {
        self.dead.then(|| "container engine: connection refused".to_string())
    }
}

/// A rollout whose engine stopped mid-way has no outcome: what the agent saw there (a failed read
/// looks like a missing file, which the rules reject; a failed command like a failing test) is not
/// counted as a value, but as a lost rollout, as one whose container never started.
#[test]
fn a_rollout_whose_engine_stops_midway_is_lost_not_a_value() {
    let (et, policy, cfg) = one_recorded_episode();
    let mut clean = Tree::from_episode(&et, &cfg.values).unwrap();
    let want = search::search(&mut clean, &policy, &Flaky { starts: Default::default(), fail: 1..3 }, &cfg).unwrap();
    let mut tree = Tree::from_episode(&et, &cfg.values).unwrap();
    let stats = search::search(&mut tree, &policy, &Dies { starts: Default::default(), fail: 1..3 }, &cfg).unwrap();
    assert_eq!((stats.failed_rollouts, stats.rollouts), (2, 6), "{stats:?}");
    assert_eq!(stats, want, "the same as rollouts whose container never started");
    assert_eq!(search::tree_json(&tree, &[]), search::tree_json(&clean, &[]), "no value or automatic rejection came from the dead rollouts");
    // The replay of the recorded path is no replay when the engine died under it.
    let mut tree = Tree::from_episode(&et, &cfg.values).unwrap();
    let e = search::search(&mut tree, &policy, &Dies { starts: Default::default(), fail: 0..1 }, &cfg).unwrap_err();
    assert!(format!("{e:#}").contains("container engine failed"), "{e:#}");
}

/// The container engine stopped (`kill -9` of a podman service of the test's own) while a
/// rollout's command runs: `keel-train search` ends by itself; the rollout stops there (the model
/// is not asked again), is counted lost and given no value, so no pair comes of it; the store is
/// untouched. With the engine back on the
/// same socket, the next search removes the container the dead engine left and mines the pair a
/// real failure at the same place gives.
///
/// The scripted model makes the path known (one simulation after another, one sample each): the
/// first simulation expands the root with the fix and finishes (passes, 1); the second goes down
/// the recorded decoy and expands below it with `sleep 60`, killed there (one step of depth left). With `--margin 0.4`, a
/// rollout below the decoy valued 0 makes the root critical (the fix, 1, over the decoy, now 0.5):
/// the lost one must not; the second search's real failure there does.
#[test]
fn the_engine_stopped_mid_rollout_is_lost_not_a_value_and_the_next_search_works() {
    let dir = tempfile::tempdir().unwrap();
    let t = &suite(1)[0];
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    let id = record(&store, t);
    let recorded = store.tree(id).unwrap().unwrap();
    drop(store);
    let sock = dir.path().join("engine.sock");
    let mut engine = crate::engine::private_engine(&sock);
    let model = keel_e2e::ScriptedModel::start();
    let say = |a: Action| {
        let c = a.to_tool_call("c");
        model.push(keel_e2e::Reply::tool(&c.function.name, serde_json::from_str(&c.function.arguments).unwrap()), false);
    };
    // Unique to this run: the test finds its command among the machine's processes by it.
    let token = format!("keel-lost-rollout-{}", dir.path().file_name().unwrap().to_string_lossy());
    say(t.edit(&t.fix));
    say(Action::Finish { summary: "fixed".into() });
    say(Action::Run { command: format!("sleep 60 && echo {token}") });
    let search = |name: &str| {
        let (out, tree) = (dir.path().join(format!("{name}.jsonl")), dir.path().join(format!("{name}.json")));
        let child = keel_e2e::command("keel-train")
            .args(["search", "--store"])
            .arg(&db)
            .args(["--endpoint", &model.url, "--out"])
            .arg(&out)
            .arg("--tree")
            .arg(&tree)
            .args(["--simulations", "2", "--expand", "1", "--parallel", "1", "--max-depth", "3", "--min-visits", "1", "--margin", "0.4"])
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, out, tree)
    };
    let (mut run, pairs, tree) = search("first");
    let pid = run.id();
    // The command is running in the rollout's container: kill the engine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while model.remaining() > 0 || !crate::engine::running(&token) {
        assert!(std::time::Instant::now() < deadline, "the rollout never ran its command ({} answers left)", model.remaining());
        assert!(run.try_wait().unwrap().is_none(), "search ended before its rollout ran the command");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    engine.kill().unwrap();
    engine.wait().unwrap();
    // It ends by itself (a hang guard, not a speed figure: the command had about a minute left).
    let out = crate::engine::ends_by_itself(run, std::time::Duration::from_secs(50), "keel-train search");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("first search:\n{err}");
    assert!(out.status.success(), "one rollout lost of two is the search's loss, not its end: {err}");
    assert!(err.contains("a rollout failed (1 so far): the container engine failed during the run, so it has no outcome: running `sleep 60"), "the lost rollout, with the engine's error: {err}");
    assert!(err.contains("1 rollouts (1 passed)") && err.contains("1 rollout(s) failed in the environment and were left out"), "{err}");
    // Three answers: the two expansions and the first rollout's step. The lost one stopped at the
    // engine's failure (its path was done, a step of depth was left): the model was not asked
    // for that step, as it once was (and the rollout was blamed on the model's exhausted script).
    assert_eq!(model.requests().len(), 3, "the search asked the model after the engine's failure");
    // No value from the lost rollout: the edge it went through is unvisited, the decoy above it
    // keeps the user's acceptance alone, the root the first rollout's visit; no pair.
    assert_eq!(std::fs::read_to_string(&pairs).unwrap(), "", "a pair was mined from the lost rollout");
    let trees: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    assert_eq!(trees.len(), 1);
    let nodes = trees[0]["nodes"].as_array().unwrap();
    let edges = || nodes.iter().flat_map(|n| n["edges"].as_array().unwrap());
    let lost = edges().find(|e| e["action"]["tool"] == "run").expect("the edge the lost rollout took is in the tree");
    assert_eq!((lost["visits"].as_u64(), lost["child"].is_null()), (Some(0), true), "the lost rollout was given a value: {lost:#}");
    let decoy = &nodes[0]["edges"][0];
    assert_eq!((decoy["visits"].as_u64(), decoy["value"].as_f64()), (Some(1), Some(1.0)), "{decoy:#}");
    assert_eq!(nodes[0]["visits"], 2, "{:#}", nodes[0]);
    assert!(!nodes.iter().any(|n| n["critical"] == true));
    // The store is as it was: search reads it, and the dead engine cost it nothing.
    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(store.tree(id).unwrap().as_ref(), Some(&recorded));
    assert_eq!(store.episodes(&Default::default()).unwrap().len(), 1);
    drop(store);
    // The dead engine's container is still there (podman keeps it running), unless another Keel
    // process on the same storage (a test beside this one) removed it as the next search would.
    let left = crate::engine::containers_of(pid);
    eprintln!("left by the dead engine: {left:?}");

    // The engine back on the same socket: the next search removes what the dead one left, and
    // the same path, now failing for real (finish below the decoy), is valued and gives the pair.
    let mut engine = crate::engine::private_engine(&sock);
    say(t.edit(&t.fix));
    say(Action::Finish { summary: "fixed".into() });
    say(Action::Finish { summary: "done".into() });
    let still_left = !crate::engine::containers_of(pid).is_empty();
    let (run, pairs, tree) = search("second");
    let out = crate::engine::ends_by_itself(run, std::time::Duration::from_secs(120), "keel-train search");
    let _ = engine.kill();
    let _ = engine.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("second search:\n{err}");
    assert!(out.status.success(), "{err}");
    assert!(!still_left || err.contains("sandbox: removed 1 container(s) left by runs that are gone"), "{err}");
    assert!(crate::engine::containers_of(pid).is_empty(), "left behind: {left:?}; {err}");
    assert!(err.contains("2 rollouts (1 passed)") && !err.contains("failed in the environment"), "{err}");
    let mined: Vec<serde_json::Value> = std::fs::read_to_string(&pairs).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(mined.len(), 1, "{mined:#?}");
    let (dp, dold, dnew) = t.decoys[0].clone();
    let args = |side: &str| mined[0][side][0]["tool_calls"][0]["function"]["arguments"].clone();
    assert_eq!(args("chosen"), t.edit(&t.fix).arguments(), "{:#}", mined[0]);
    assert_eq!(args("rejected"), Action::Edit { path: dp, old_text: dold, new_text: dnew }.arguments(), "{:#}", mined[0]);
    assert_eq!((mined[0]["meta"]["q_chosen"].as_f64(), mined[0]["meta"]["q_rejected"].as_f64()), (Some(1.0), Some(0.5)), "{:#}", mined[0]);
    let trees: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    assert_eq!(trees[0]["nodes"][0]["visits"], 3);
    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(store.tree(id).unwrap().as_ref(), Some(&recorded));
}

/// An episode on task `t` (its files, its check) and the agent at its first state.
fn task_episode(t: &Task) -> (Episode, keel_agent::Agent) {
    let ep = Episode {
        id: new_id(),
        created_at: 1_000,
        workspace: Workspace { root: "/work".into(), vcs: Some(VcsState { kind: "files".into(), commit: String::new(), patch: String::new(), untracked: t.files(), left_out: vec![] }) },
        task: keel_trajectory::Task { kind: TaskKind::FixDiagnostic, instruction: format!("task #{} fails its test", t.id), uri: None, language: Some("sh".into()), range: None, diagnostics: vec![], selected_text: None },
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        client: None,
        verify: Some(t.verify()),
        protected: vec![],
    };
    let agent = keel_agent::Agent::new(Prompt { messages: vec![Message::system("You are Keel."), Message::user(format!("Fix task #{} please", t.id))], tools: tools_schema() }, keel_agent::DEFAULT_OBSERVATION_BYTES);
    (ep, agent)
}

/// A step of `ep` by the base model at `prompt` (below `parent`).
fn step_of(ep: &Episode, parent: Option<uuid::Uuid>, prompt: &Prompt, output: &ModelOutput, parsed: &Parsed) -> Step {
    Step {
        id: new_id(),
        episode_id: ep.id,
        parent_id: parent,
        state_hash: state_hash(prompt),
        created_at: 2_000,
        prompt: prompt.clone(),
        output: output.clone(),
        parsed: parsed.clone(),
        model: ModelRef { name: "keel".into(), version: Some("keel@base".into()) },
        timings: Timings::default(),
    }
}
