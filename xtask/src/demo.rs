//! `cargo xtask demo`: the main job on the embedded defaults, from a fresh clone.
//!
//! Today it records one real agent episode into a real store (SQLite under `.keel/demo/`): the agent
//! reads a buggy file, proposes a wrong fix that the user sends back ("another"), proposes the right
//! one, which is accepted and applied to the sample workspace, and finishes. Then it prints what the
//! store holds, read back from disk, and mines the preference pair with `keel-train pairs`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keel_trajectory::action::{Action, locate_edit, next_messages, observation_text, parse_output, tools_schema};
use keel_trajectory::*;

use crate::env;

const BUGGY: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST: &str = "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n";

pub fn run(_rest: &[String]) -> Result<()> {
    env::cargo(&["build", "--quiet", "-p", "keel-trainer", "--bin", "keel-train"])?;
    let dir = env::state_dir().join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let ws = dir.join("workspace");
    std::fs::create_dir_all(&ws)?;
    std::fs::write(ws.join("calc.py"), BUGGY)?;
    std::fs::write(ws.join("test_calc.py"), TEST)?;
    let db = dir.join("keel.db");

    println!("== Keel demo ==");
    println!("workspace: {}", ws.display());
    println!("store:     {}\n", db.display());
    let id = record_episode(&db, &ws)?;
    print_store(&db, id)?;

    let pairs = dir.join("pairs.jsonl");
    let mut cmd = std::process::Command::new(env::root().join("target/debug/keel-train"));
    cmd.args(["pairs", "--store"]).arg(&db).arg("--out").arg(&pairs);
    env::run(&mut cmd)?;
    let text = std::fs::read_to_string(&pairs)?;
    println!("\nkeel-train pairs wrote {} pair(s) to {}", text.lines().count(), pairs.display());
    if let Some(first) = text.lines().next() {
        let v: serde_json::Value = serde_json::from_str(first)?;
        let arg = |side: &str| v[side][0]["tool_calls"][0]["function"]["arguments"]["new_text"].clone();
        println!("  chosen  edit new_text: {}", arg("chosen"));
        println!("  rejected edit new_text: {}", arg("rejected"));
    }
    println!("\ncalc.py after the accepted edit:\n{}", std::fs::read_to_string(ws.join("calc.py"))?);
    Ok(())
}

/// A scripted agent: what a model would answer at each step, as OpenAI tool calls.
fn call(action: Action, id: &str) -> ModelOutput {
    ModelOutput { content: None, tool_calls: vec![action.to_tool_call(id)] }
}

/// Appends without waiting: the writer keeps order, and the receipt of the last record (the
/// episode end) is awaited, so a failure anywhere shows up there.
struct Recorder {
    w: Writer,
    episode: Episode,
    model: ModelRef,
}

impl Recorder {
    fn step(&self, parent: Option<&Step>, prompt: &Prompt, output: ModelOutput) -> Step {
        let parsed = parse_output(&output);
        let step = Step {
            id: new_id(),
            episode_id: self.episode.id,
            parent_id: parent.map(|p| p.id),
            state_hash: state_hash(prompt),
            created_at: now_ms(),
            prompt: prompt.clone(),
            output,
            parsed,
            model: self.model.clone(),
            timings: Timings::default(),
        };
        let _ = self.w.append(Record::Step(step.clone()));
        step
    }

    fn decide(&self, step: &Step, decision: Decision) {
        let _ = self.w.append(Record::Decision(DecisionEvent { step_id: step.id, at: now_ms(), decision }));
    }

    fn observe(&self, step: &Step, observation: &Observation) {
        let _ = self.w.append(Record::Observation { step_id: step.id, at: now_ms(), observation: observation.clone() });
    }

    /// The state after `step`, given what it observed.
    fn next(&self, prompt: &Prompt, step: &Step, observation: &Observation) -> Prompt {
        Prompt {
            messages: next_messages(&prompt.messages, &step.parsed, &step.output, "call", observation),
            tools: prompt.tools.clone(),
        }
    }
}

fn record_episode(db: &Path, ws: &Path) -> Result<uuid::Uuid> {
    let store = Store::open(db).with_context(|| format!("opening {}", db.display()))?;
    let model = ModelRef { name: "keel".into(), version: Some("scripted-demo@base".into()) };
    let task = Task {
        kind: TaskKind::FixDiagnostic,
        instruction: "test_add fails: add(2, 3) returned -1, expected 5".into(),
        uri: Some(format!("file://{}", ws.join("calc.py").display())),
        language: Some("python".into()),
        range: Some(Range { start_line: 1, start_character: 4, end_line: 1, end_character: 16 }),
        diagnostics: vec![],
        selected_text: None,
    };
    let episode = Episode {
        id: new_id(),
        created_at: now_ms(),
        workspace: Workspace { root: ws.display().to_string(), vcs: None },
        task,
        model: model.clone(),
        client: Some("keel demo".into()),
        verify: Some("python3 -m pytest -q".into()),
    };
    let r = Recorder { w: store.writer()?, episode: episode.clone(), model };
    let _ = r.w.append(Record::Episode(episode.clone()));

    let p0 = Prompt {
        messages: vec![
            Message::system("You are Keel, a coding agent. Use the tools to complete the task, one call at a time."),
            Message::user(format!("Task: {}\nFile: calc.py", episode.task.instruction)),
        ],
        tools: tools_schema(),
    };
    // 1. Read the file: read-only, runs at once.
    let s1 = r.step(None, &p0, call(Action::ViewFile { path: "calc.py".into(), start_line: None, end_line: None }, "c1"));
    let path = action::workspace_path(ws, "calc.py").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let text = std::fs::read_to_string(&path)?;
    let o1 = Observation { output: text.clone(), ..Default::default() };
    r.decide(&s1, Decision::Auto);
    r.observe(&s1, &o1);
    let p1 = r.next(&p0, &s1, &o1);

    // 2. A wrong fix; the user asks for another (a rejected sibling at the same state).
    let wrong = Action::Edit { path: "calc.py".into(), old_text: "return a - b".into(), new_text: "return a * b".into() };
    let s2 = r.step(Some(&s1), &p1, call(wrong, "c2"));
    r.decide(&s2, Decision::Rejected { cause: RejectCause::Retry, reason: Some("that multiplies".into()) });

    // 3. The right fix, accepted and applied to the workspace.
    let right = Action::Edit { path: "calc.py".into(), old_text: "return a - b".into(), new_text: "return a + b".into() };
    let s3 = r.step(Some(&s1), &p1, call(right.clone(), "c3"));
    let Action::Edit { old_text, new_text, .. } = &right else { unreachable!() };
    let edit = locate_edit(&text, old_text, new_text).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    std::fs::write(&path, edit.apply(&text))?;
    r.decide(&s3, Decision::Accepted);
    let o3 = Observation { output: "The edit was applied.".into(), ..Default::default() };
    r.observe(&s3, &o3);
    let p3 = r.next(&p1, &s3, &o3);

    // 4. Done.
    let s4 = r.step(Some(&s3), &p3, call(Action::Finish { summary: "add now adds".into() }, "c4"));
    r.decide(&s4, Decision::Auto);
    let end = EpisodeEndEvent { episode_id: episode.id, at: now_ms(), end: EpisodeEnd::Finished { summary: Some("add now adds".into()) } };
    let _ = r.w.append(Record::EpisodeEnd(end)).wait().context("the store did not confirm the episode")?;
    Ok(episode.id)
}

fn print_store(db: &PathBuf, id: uuid::Uuid) -> Result<()> {
    // A fresh connection: what is shown is what is on disk.
    let store = Store::open(db)?;
    let st = store.stats()?;
    println!(
        "the store holds {} episode(s), {} step(s), {} decision(s), {} observation(s), {} blob(s) ({} bytes compressed from {})",
        st.episodes, st.steps, st.decisions, st.observations, st.blobs, st.blob_bytes, st.blob_bytes_uncompressed
    );
    let tree = store.tree(id)?.context("the episode is not in the store")?;
    println!("\nepisode {} ({}): {}", tree.episode.id, tree.episode.task.kind.as_str(), tree.episode.task.instruction);
    print_children(&tree, None, 1);
    if let Some(end) = &tree.end {
        println!("  end: {}", serde_json::to_string(&end.end)?);
    }
    Ok(())
}

fn print_children(tree: &EpisodeTree, parent: Option<uuid::Uuid>, depth: usize) {
    for s in tree.children(parent) {
        let what = match s.step.parsed.action() {
            Some(a) => format!("{} {}", a.tool_name(), a.arguments()),
            None => "(unparsable output)".to_string(),
        };
        let decision = s.decision().map(|d| serde_json::to_string(d).unwrap_or_default()).unwrap_or("pending".into());
        println!("{}- state {}  {what}\n{}  decision: {decision}", "  ".repeat(depth), &s.step.state_hash[..12], "  ".repeat(depth));
        if let Some(o) = &s.observation {
            let first = observation_text(o).lines().next().unwrap_or("").to_string();
            println!("{}  observed: {first}…", "  ".repeat(depth));
        }
        print_children(tree, Some(s.step.id), depth + 1);
    }
}
