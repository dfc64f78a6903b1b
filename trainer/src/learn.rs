//! `keel-train loop`: SEAlign's recipe on a task suite, end to end, and whether it made the agent
//! better on tasks it never trained on.
//!
//! 1. **before** — `eval` of the starting policy on each held-out suite;
//! 2. **collect** — `samples` episodes per training task, each with its verification outcome; with
//!    `demos`, also one demonstration per training task that ships its known fix (`[[fix]]`): the
//!    same agent, in the same container, run the tests, read each file the fix changes, make the
//!    fix's edits, run the tests again, finish — recorded like any episode (model `demo`), kept
//!    only if `verify` passes. A small model that never solves a task alone gives search and SFT
//!    nothing; the demonstrations give SFT real trajectories and search a successful sibling
//!    beside the model's own steps;
//! 3. **search** — the episodes of each task merged into one tree (shared prefixes merge), MCTS with
//!    container rollouts that run the task's `verify`; pairs at the critical decisions;
//! 4. **sft** — LoRA SFT on the steps of the successful trajectories;
//! 5. **dpo** — DPO on the critical decisions, starting from the SFT adapter;
//! 6. **after** — `eval` of the trained policy on each held-out suite, with the same seeds.
//!
//! Held-out suites are only ever evaluated: nothing of them reaches training, and the loop refuses
//! a held-out suite that shares a task (by its workspace and instruction) with the training split.
//! `RUN_DIR/report.json` holds before and after (with the paired per-task difference and its
//! interval), the data each stage made, and the wall time of each stage; `RUN_DIR/adapter/` holds
//! the final adapter in PEFT's layout. A stage whose output is already in `RUN_DIR` is not run
//! again, so a killed loop continues where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keel_agent::task::TaskSpec;
use keel_trajectory::{Decision, EpisodeTree, ModelRef, Store};
use serde_json::{Value, json};

use crate::eval::{self, EpisodeResult, EvalConfig, Envs};
use crate::search::{self, Policy, SearchConfig};
use crate::train::TrainOptions;

/// What to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// SFT on the successful trajectories only.
    Sft,
    /// DPO on every pair of sibling steps whose values differ (no criticality filter).
    DpoAll,
    /// DPO on the critical decisions only.
    DpoCritical,
    /// SFT, then DPO on the critical decisions from the SFT adapter (SEAlign).
    SftDpo,
}

impl Recipe {
    pub fn parse(s: &str) -> Result<Recipe> {
        Ok(match s {
            "sft" => Recipe::Sft,
            "dpo-all" => Recipe::DpoAll,
            "dpo-critical" | "dpo" => Recipe::DpoCritical,
            "sft+dpo" | "sft-dpo" => Recipe::SftDpo,
            other => bail!("unknown recipe `{other}` (sft, dpo-all, dpo-critical, sft+dpo)"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Sft => "sft",
            Recipe::DpoAll => "dpo-all",
            Recipe::DpoCritical => "dpo-critical",
            Recipe::SftDpo => "sft+dpo",
        }
    }
    fn sft(self) -> bool {
        matches!(self, Recipe::Sft | Recipe::SftDpo)
    }
    fn dpo(self) -> bool {
        !matches!(self, Recipe::Sft)
    }
}

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub model: PathBuf,
    /// Start from this adapter (a previous loop's).
    pub init_adapter: Option<PathBuf>,
    pub out: PathBuf,
    /// Training splits (task names are prefixed by their folder when there are several).
    pub tasks: Vec<PathBuf>,
    pub heldout: Vec<PathBuf>,
    pub seed: u64,
    pub device: String,
    pub recipe: Recipe,
    /// Episodes per training task (0: none, the demonstrations only).
    pub samples: usize,
    /// Episodes per held-out task (before and after).
    pub eval_samples: usize,
    pub parallel: usize,
    pub collect_temperature: f64,
    pub eval_temperature: f64,
    pub max_steps: usize,
    pub max_tokens: usize,
    /// Use at most this many training / held-out tasks (a deterministic choice by the seed).
    pub max_train_tasks: Option<usize>,
    pub max_heldout_tasks: Option<usize>,
    pub image: Option<String>,
    pub search: SearchConfig,
    /// Hyper-parameters of SFT and DPO (`model`, `data`, `out`, `init_adapter` are set per stage).
    pub train: TrainOptions,
    pub sft_epochs: u64,
    pub sft_lr: f64,
    pub dpo_epochs: u64,
    pub dpo_lr: f64,
    /// Record a demonstration episode per training task that carries its fix.
    pub demos: bool,
    /// Record a recovery per failed model episode (`crate::recover`): the expert taking over at the
    /// first state after the model's edit where it would act otherwise.
    pub recover: bool,
    /// A held-out report of the starting policy to reuse (same suite, samples, seed) instead of
    /// evaluating it again.
    pub baseline: Vec<PathBuf>,
    /// Pairs of earlier rounds (files, or run folders), trained on with this round's
    /// ([`merge_prior_pairs`]).
    pub prior_pairs: Vec<PathBuf>,
    /// A simulated user deciding the edits and commands of every episode the loop runs.
    pub user: Option<crate::user_rule::UserRule>,
}

/// A task's identity across suites: its instruction and starting files.
pub fn task_identity(t: &TaskSpec) -> String {
    let mut h = blake3::Hasher::new();
    h.update(t.instruction.as_bytes());
    for (p, text) in &t.files {
        h.update(p.as_bytes());
        h.update(&[0]);
        h.update(text.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..16].to_string()
}

/// A deterministic subset of at most `n` tasks (by a hash of the seed and the name), in name order.
pub fn subset(mut tasks: Vec<TaskSpec>, n: Option<usize>, seed: u64) -> Vec<TaskSpec> {
    if let Some(n) = n.filter(|&n| n < tasks.len()) {
        tasks.sort_by_key(|t| search::seed_for(seed, &[t.name.as_bytes(), b"subset"]));
        tasks.truncate(n);
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
    }
    tasks
}

fn load(dir: &Path) -> Result<Vec<TaskSpec>> {
    let (tasks, errors) = keel_agent::task::discover(dir).map_err(|e| anyhow::anyhow!(e))?;
    for e in &errors {
        eprintln!("loop: skipped: {e}");
    }
    if tasks.is_empty() {
        bail!("no usable task in {}", dir.display());
    }
    Ok(tasks)
}

/// The policy of the demonstrations: at a task's first state (its initial user message) it runs the
/// task's `verify`, reads each file the fix changes before its first edit there, makes the fix's
/// edits one by one, runs `verify` again and finishes. It reads first because an example teaches
/// what it shows: an edit whose `old_text` the agent never saw teaches the model to write edits of
/// text it has not read (SFT on read-less demonstrations gave held-out edits of lines recalled from
/// training tasks, none of which applied). Every candidate it offers is that one action, so
/// `sample(k)` gives k copies (search expands a state the demonstration reached with the model's
/// policy, never with this one).
pub struct DemoPolicy {
    /// Initial user message → the script of actions.
    tasks: HashMap<String, Vec<keel_trajectory::Action>>,
}

impl DemoPolicy {
    pub fn new(tasks: &[TaskSpec]) -> DemoPolicy {
        let tasks = tasks
            .iter()
            .filter(|t| !t.fix.is_empty())
            .filter_map(|t| {
                let user = t.initial_prompt().messages.into_iter().find(|m| m.role == keel_trajectory::Role::User)?.content?;
                Some((user, Self::script(&t.verify, &t.fix)))
            })
            .collect();
        DemoPolicy { tasks }
    }

    /// Run the tests; for each edit, read its file first if not read yet, then edit; run the tests
    /// again; finish.
    pub fn script(verify: &str, fix: &[keel_agent::task::FixEdit]) -> Vec<keel_trajectory::Action> {
        use keel_trajectory::Action;
        let mut out = vec![Action::Run { command: verify.to_string() }];
        let mut read = std::collections::HashSet::new();
        for f in fix {
            if read.insert(f.path.clone()) {
                out.push(Action::ViewFile { path: f.path.clone(), start_line: None, end_line: None });
            }
            out.push(Action::Edit { path: f.path.clone(), old_text: f.old_text.clone(), new_text: f.new_text.clone() });
        }
        out.push(Action::Run { command: verify.to_string() });
        out.push(Action::Finish { summary: "Fixed the bug; the tests pass.".into() });
        out
    }

    /// The action at a state: the script's step after the tool calls already in the prompt.
    pub fn action(&self, prompt: &keel_trajectory::Prompt) -> Option<keel_trajectory::Action> {
        use keel_trajectory::Role;
        let user = prompt.messages.iter().find(|m| m.role == Role::User)?.content.as_ref()?;
        let script = self.tasks.get(user)?;
        let done = prompt.messages.iter().filter(|m| m.role == Role::Assistant).count();
        script.get(done).or(script.last()).cloned()
    }
}

impl Policy for DemoPolicy {
    fn sample(&self, prompt: &keel_trajectory::Prompt, k: usize, _seed: u64) -> Result<Vec<keel_trajectory::ModelOutput>> {
        let a = self.action(prompt).context("the demonstration policy does not know this task")?;
        Ok((0..k.max(1)).map(|i| keel_trajectory::ModelOutput { content: None, tool_calls: vec![a.to_tool_call(format!("demo{i}"))] }).collect())
    }
    fn version(&self) -> Option<String> {
        Some("demo".into())
    }
}

/// The steps of the successful episodes as SFT examples (TRL's conversational prompt/completion,
/// with the tools): every step the episode carried out on its way to the passing end — automatic
/// rejections left out, `finish` included.
pub fn sft_examples(t: &EpisodeTree) -> Vec<Value> {
    if !t.end.as_ref().and_then(|e| e.outcome.as_ref()).is_some_and(|o| o.passed) {
        return vec![];
    }
    let mut path = Vec::new();
    let mut at = t.steps.last().map(|s| s.step.id);
    while let Some(id) = at {
        let Some(s) = t.step(id) else { break };
        path.push(s);
        at = s.step.parent_id;
    }
    path.reverse();
    path.into_iter()
        .filter(|s| !s.decision().is_some_and(|d| matches!(d, Decision::Rejected { .. } | Decision::Reverted)))
        .map(|s| {
            let id = keel_agent::turn_call_id(&s.step.prompt);
            let assistant = keel_trajectory::action::assistant_message(&s.step.parsed, &s.step.output, &id);
            json!({
                "prompt": s.step.prompt.messages.iter().map(crate::pairs::message_json).collect::<Vec<_>>(),
                "completion": [crate::pairs::message_json(&assistant)],
                "tools": s.step.prompt.tools.as_ref(),
                "meta": {"source": "success", "episode": t.episode.id, "step": s.step.id, "state_hash": s.step.state_hash},
            })
        })
        .collect()
}

/// Every pair of sibling edges whose values differ by more than the margin (each visited enough),
/// better over worse — the ablation without the criticality filter (one pair per state is what
/// [`search::critical`] keeps; this keeps every ordered pair).
pub fn all_sibling_pairs(tree: &search::Tree, cfg: &SearchConfig, version: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        let ok: Vec<usize> = (0..n.edges.len())
            .filter(|&e| {
                let edge = &n.edges[e];
                edge.n >= cfg.min_visits || (edge.human.is_some() && matches!(edge.origin, search::Origin::Recorded(_)))
            })
            .collect();
        for &a in &ok {
            for &b in &ok {
                let (ea, eb) = (&n.edges[a], &n.edges[b]);
                if a != b && !ea.user_rejected() && ea.value() - eb.value() > cfg.margin {
                    out.extend(search::pairs(tree, &[search::Critical { node: i, best: a, worst: b }], version));
                }
            }
        }
    }
    out
}

/// A recovery that passed, beside the model episode it recovers.
pub struct Recovery {
    pub model: EpisodeTree,
    pub recovery: EpisodeTree,
    /// How many of the recovery's first steps replayed the model's.
    pub prefix_len: usize,
    /// The state the expert took over at.
    pub state_hash: String,
}

/// The critical decision of a recovery, searched with its own model episode only and kept only at
/// its branch: there the model's step (its episode failed) is beside the expert's (it passed).
/// Above the branch the expert's success below would raise the model's own steps' values. Returns
/// the pairs (`meta.recovery` names the recovery episode) and the tree as JSON.
pub fn recovery_pairs<P: Policy, E: search::Environment>(r: &Recovery, policy: &P, env: &E, cfg: &SearchConfig) -> Result<(Vec<Value>, Option<Value>)> {
    let rcfg = SearchConfig { simulations: 0, min_visits: 1, max_depth: usize::MAX / 2, ..cfg.clone() };
    let Some(mut tree) = search::Tree::from_episodes(&[r.model.clone(), r.recovery.clone()], &rcfg.values) else { return Ok((vec![], None)) };
    let stats = search::search(&mut tree, policy, env, &rcfg)?;
    let mut found = search::critical(&tree, &rcfg);
    found.retain(|c| tree.nodes[c.node].state_hash == r.state_hash);
    eprint!("recovery {}", search::summary(&tree, &found, &stats));
    let mut rows = search::pairs(&tree, &found, policy.version().as_deref());
    for row in &mut rows {
        row["meta"]["recovery"] = json!(r.recovery.episode.id);
    }
    Ok((rows, Some(search::tree_json(&tree, &found))))
}

/// A recovery's SFT examples: the expert's steps only (the model's replayed steps before the
/// branch are not the expert's), `meta.source = "recovery"`.
pub fn recovery_sft_rows(r: &Recovery) -> Vec<Value> {
    // The store gives an episode's steps in the order they were recorded.
    let replayed: std::collections::HashSet<String> = r.recovery.steps.iter().take(r.prefix_len).map(|s| s.step.id.to_string()).collect();
    sft_examples(&r.recovery)
        .into_iter()
        .filter(|row| row["meta"]["step"].as_str().is_none_or(|id| !replayed.contains(id)))
        .map(|mut row| {
            row["meta"]["source"] = json!("recovery");
            row
        })
        .collect()
}

/// Runs the recoveries of the failed model episodes among `trees` (recorded in `out/recover.db`,
/// listed in `out/recover.json`; a rerun reads them back) and returns those that replayed the
/// model's steps unchanged and passed `verify`.
pub fn recover_stage(out: &Path, train: &[TaskSpec], trees: &[EpisodeTree], envs: &Envs, parallel: usize, seed: u64, image: Option<&str>) -> Result<Vec<Recovery>> {
    use crate::recover::{Expert, RecoveryPolicy, branch};
    let store_path = out.join("recover.db");
    let marker = out.join("recover.json");
    let user_of = |p: &keel_trajectory::Prompt| p.messages.iter().find(|m| m.role == keel_trajectory::Role::User).and_then(|m| m.content.clone());
    let by_user: HashMap<String, &TaskSpec> = train.iter().filter_map(|t| Some((user_of(&t.initial_prompt())?, t))).collect();
    if !marker.exists() {
        // The branches, per task in episode order; round r runs each task's r-th.
        let mut per_task: BTreeMap<String, Vec<(&EpisodeTree, crate::recover::Branch)>> = BTreeMap::new();
        for t in trees.iter().filter(|t| t.episode.model.name != "demo") {
            let Some(first) = t.steps.first().map(|s| &s.step) else { continue };
            let Some(task) = user_of(&first.prompt).and_then(|u| by_user.get(&u).copied()) else { continue };
            let Some(expert) = Expert::new(task) else { continue };
            if let Some(b) = branch(t, &expert) {
                per_task.entry(task.name.clone()).or_default().push((t, b));
            }
        }
        let _ = std::fs::remove_file(&store_path);
        let store = Store::open(&store_path)?;
        let writer = store.writer()?;
        let mut listed = Vec::new();
        let rounds = per_task.values().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            let mut tasks = Vec::new();
            let mut given = Vec::new();
            for (name, bs) in &per_task {
                let Some((t, b)) = bs.get(round) else { continue };
                let Some(task) = train.iter().find(|x| &x.name == name) else { continue };
                let mut task = task.clone();
                // The replayed steps, then at most run, read, edit, run, finish.
                task.max_steps = Some(b.prefix.len() + 5);
                given.push((task.clone(), Expert::new(&task).context("the task's expert")?, b.clone(), t.episode.id));
                tasks.push(task);
            }
            let p = RecoveryPolicy::new(given.iter().map(|(t, e, b, _)| (t, e.clone(), b.clone())).collect());
            let ecfg = EvalConfig {
                samples: 1,
                parallel,
                seed: seed ^ 0x2EC0 ^ round as u64,
                image: image.map(str::to_string),
                client: "keel-train recover".into(),
                ..Default::default()
            };
            let model = ModelRef { name: "recovery".into(), version: Some("recovery".into()) };
            let run = eval::run_suite(&tasks, &p, envs, &ecfg, &model, Some(&writer), &|r| progress("recover", r));
            writer.flush().wait()?;
            run.ensure_ran().context("running the recoveries")?;
            for (task, _, b, model_episode) in &given {
                let r = run.results.iter().find(|r| r.task == task.name);
                let diverged = p.diverged(task);
                listed.push(json!({
                    "task": task.name, "model_episode": model_episode, "recovery_episode": r.and_then(|r| r.episode),
                    "passed": r.is_some_and(|r| r.success), "diverged": diverged, "prefix_len": b.prefix.len(),
                    "state_hash": b.state_hash, "model_action": b.model_action, "expert_action": b.expert_action,
                }));
            }
        }
        let kept = listed.iter().filter(|v| v["passed"] == json!(true) && v["diverged"] == json!(false)).count();
        eprintln!("loop: {kept} of {} recoveries replayed the model's steps and passed", listed.len());
        crate::pairs::write_atomic(&marker, serde_json::to_string_pretty(&listed)?.as_bytes())?;
    }
    let listed: Vec<Value> = serde_json::from_slice(&std::fs::read(&marker)?).with_context(|| format!("reading {}", marker.display()))?;
    let store = Store::open(&store_path)?;
    let mut out = Vec::new();
    for v in listed.iter().filter(|v| v["passed"] == json!(true) && v["diverged"] == json!(false)) {
        let id = |k: &str| v[k].as_str().and_then(|s| s.parse::<uuid::Uuid>().ok());
        let (Some(m), Some(r)) = (id("model_episode"), id("recovery_episode")) else { continue };
        let Some(model) = trees.iter().find(|t| t.episode.id == m).cloned() else { continue };
        let Some(recovery) = store.tree(r)? else { continue };
        out.push(Recovery { model, recovery, prefix_len: v["prefix_len"].as_u64().unwrap_or(0) as usize, state_hash: v["state_hash"].as_str().unwrap_or_default().to_string() });
    }
    Ok(out)
}

fn write_jsonl(path: &Path, rows: &[Value]) -> Result<()> {
    let mut s = String::new();
    for r in rows {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    crate::pairs::write_atomic(path, s.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Writes to `out` the pairs DPO trains on: this round's (`round`), then those of each earlier round
/// in `prior` (a pairs JSONL, or a run folder holding `file`), each distinct pair once. Returns how
/// many came from earlier rounds. An earlier round that cannot be read, or a line that is not a
/// pair, is an error naming it: a round silently left out would train the wrong thing.
pub fn merge_prior_pairs(round: &Path, prior: &[PathBuf], file: &str, out: &Path) -> Result<usize> {
    let mut seen = std::collections::HashSet::new();
    let mut rows = String::new();
    let mut from_prior = 0;
    for (i, path) in std::iter::once(round.to_path_buf()).chain(prior.iter().map(|p| if p.is_dir() { p.join(file) } else { p.clone() })).enumerate() {
        // This round's pairs file is absent when its search found none.
        let text = if i == 0 { std::fs::read_to_string(round).unwrap_or_default() } else { std::fs::read_to_string(&path).with_context(|| format!("--prior-pairs: reading {}", path.display()))? };
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
            if ["prompt", "chosen", "rejected"].iter().any(|k| v.get(k).is_none()) {
                bail!("{} line {}: not a pair (it needs prompt, chosen and rejected)", path.display(), n + 1);
            }
            // The same pair twice (a run folder given twice, or rounds sharing a pair) counts once.
            let key = serde_json::to_string(&json!([v["prompt"], v["chosen"], v["rejected"]]))?;
            if seen.insert(key) {
                rows.push_str(line.trim());
                rows.push('\n');
                from_prior += usize::from(i > 0);
            }
        }
    }
    crate::pairs::write_atomic(out, rows.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(from_prior)
}

/// Per-task success before and after (means over samples), and their mean paired difference with
/// a 95% interval (normal approximation over tasks; tasks in only one run are left out).
pub fn paired(before: &[EpisodeResult], after: &[EpisodeResult]) -> Value {
    let rates = |rs: &[EpisodeResult]| {
        let mut m: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        // An episode that failed to run has no outcome: left out.
        for r in rs.iter().filter(|r| r.error.is_none()) {
            let e = m.entry(r.task.clone()).or_default();
            e.0 += f64::from(u8::from(r.success));
            e.1 += 1.0;
        }
        m.into_iter().map(|(k, (s, n))| (k, s / n)).collect::<BTreeMap<_, _>>()
    };
    let (b, a) = (rates(before), rates(after));
    let d: Vec<f64> = b.iter().filter_map(|(k, vb)| a.get(k).map(|va| va - vb)).collect();
    let n = d.len() as f64;
    let mean = if d.is_empty() { 0.0 } else { d.iter().sum::<f64>() / n };
    let sd = if d.len() < 2 { 0.0 } else { (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() };
    let half = if d.is_empty() { 0.0 } else { 1.96 * sd / n.sqrt() };
    json!({
        "tasks": d.len(),
        "improved": d.iter().filter(|&&x| x > 0.0).count(),
        "worsened": d.iter().filter(|&&x| x < 0.0).count(),
        "delta": mean,
        "low": mean - half,
        "high": mean + half,
    })
}

struct Stages {
    times: Vec<(String, f64)>,
}

impl Stages {
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        eprintln!("loop: {name} …");
        let r = f();
        let s = t.elapsed().as_secs_f64();
        eprintln!("loop: {name} took {s:.1} s");
        self.times.push((name.to_string(), s));
        r
    }
}

fn policy(cfg: &LoopConfig, adapter: Option<&Path>, temperature: f64) -> Result<Box<dyn Policy>> {
    let engine = crate::serve::tch_engine::TchEngine::load(&cfg.model, adapter, &cfg.device, "keel")?;
    Ok(Box::new(search::policy::ModelPolicy::new(engine, temperature, cfg.max_tokens)))
}

/// Evaluates `tasks` with the policy, or reads the report when it is there already.
fn eval_suite(cfg: &LoopConfig, tasks: &[TaskSpec], adapter: Option<&Path>, out: &Path, suite: &Path, envs: &Envs) -> Result<(Vec<EpisodeResult>, Value)> {
    if out.exists() {
        let v: Value = serde_json::from_slice(&std::fs::read(out)?).with_context(|| format!("reading {}", out.display()))?;
        let rs: Vec<EpisodeResult> = serde_json::from_value(v["results"].clone()).with_context(|| format!("the results in {}", out.display()))?;
        eprintln!("loop: reusing {}", out.display());
        return Ok((rs, v));
    }
    let p = policy(cfg, adapter, cfg.eval_temperature)?;
    let ecfg = EvalConfig {
        samples: cfg.eval_samples,
        parallel: cfg.parallel,
        seed: cfg.seed,
        image: cfg.image.clone(),
        temperature: cfg.eval_temperature,
        max_steps: cfg.max_steps,
        client: "keel-train loop (eval)".into(),
        user: cfg.user,
        ..Default::default()
    };
    let model = ModelRef { name: "keel".into(), version: p.version() };
    let run = eval::run_suite(tasks, p.as_ref(), envs, &ecfg, &model, None, &|r| progress("eval", r));
    eprint!("{}", eval::table(&run));
    run.ensure_ran().with_context(|| format!("evaluating {}", suite.display()))?;
    let v = eval::report_json(&run, &ecfg, &model, suite);
    eval::write_report(&v, out)?;
    let _ = eval::plot(&eval::summarize(&run.results), &out.with_extension("png"), &format!("{}: {}", out.file_stem().and_then(|s| s.to_str()).unwrap_or("eval"), suite.display()));
    Ok((run.results, v))
}

fn progress(stage: &str, r: &EpisodeResult) {
    let what = r.error.clone().unwrap_or_else(|| r.actions.join(" "));
    eprintln!("  {stage} {} #{}: {} in {} steps ({:.1} s): {what}", r.task, r.sample, if r.success { "solved" } else { "failed" }, r.steps, r.wall_ms as f64 / 1000.0);
}

/// Runs the loop; returns the report it wrote.
pub fn run(cfg: &LoopConfig) -> Result<Value> {
    let started = Instant::now();
    keel_trajectory::private::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let mut stages = Stages { times: vec![] };
    let mut all_train = Vec::new();
    for dir in &cfg.tasks {
        let mut ts = load(dir)?;
        if cfg.tasks.len() > 1 {
            for t in &mut ts {
                t.name = format!("{}/{}", dir.display(), t.name);
            }
        }
        all_train.extend(ts);
    }
    let train = subset(all_train, cfg.max_train_tasks, cfg.seed);
    let train_ids: HashMap<String, String> = train.iter().map(|t| (task_identity(t), t.name.clone())).collect();
    let mut heldout = Vec::new();
    for h in &cfg.heldout {
        let tasks = subset(load(h)?, cfg.max_heldout_tasks, cfg.seed);
        for t in &tasks {
            if let Some(tn) = train_ids.get(&task_identity(t)) {
                bail!("held-out task `{}` in {} is the training task `{tn}`: a held-out split must share nothing with training", t.name, h.display());
            }
        }
        heldout.push((h.clone(), tasks));
    }
    let envs = Envs::new(None);
    let suite_name = |i: usize, h: &Path| format!("{i}-{}", h.iter().rev().take(2).collect::<Vec<_>>().into_iter().rev().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join("-"));

    // 1. before
    let mut before = Vec::new();
    for (i, (h, tasks)) in heldout.iter().enumerate() {
        let out = cfg.out.join(format!("eval-before-{}.json", suite_name(i, h)));
        if let Some(b) = cfg.baseline.get(i).filter(|b| b.exists() && !out.exists()) {
            keel_trajectory::private::copy(b, &out).with_context(|| format!("copying the baseline {}", b.display()))?;
        }
        before.push(stages.time(&format!("before ({})", h.display()), || eval_suite(cfg, tasks, cfg.init_adapter.as_deref(), &out, h, &envs))?);
    }

    // 2. collect
    let store_path = cfg.out.join("collect.db");
    let collected_marker = cfg.out.join("collect.json");
    if cfg.samples == 0 && !cfg.demos {
        bail!("nothing to train on: no samples per task and no demonstrations");
    }
    if cfg.samples > 0 && !collected_marker.exists() {
        let _ = std::fs::remove_file(&store_path);
        stages.time("collect", || {
            let store = Store::open(&store_path)?;
            let writer = store.writer()?;
            let p = policy(cfg, cfg.init_adapter.as_deref(), cfg.collect_temperature)?;
            let ecfg = EvalConfig {
                samples: cfg.samples,
                parallel: cfg.parallel,
                seed: cfg.seed ^ 0x5EA1_1C0,
                image: cfg.image.clone(),
                temperature: cfg.collect_temperature,
                max_steps: cfg.max_steps,
                client: "keel-train collect".into(),
                user: cfg.user,
                ..Default::default()
            };
            let model = ModelRef { name: "keel".into(), version: p.version() };
            let run = eval::run_suite(&train, p.as_ref(), &envs, &ecfg, &model, Some(&writer), &|r| progress("collect", r));
            writer.flush().wait()?;
            eprint!("{}", eval::table(&run));
            run.ensure_ran().context("collecting the model's episodes")?;
            let v = eval::report_json(&run, &ecfg, &model, &cfg.tasks[0]);
            eval::write_report(&v, &collected_marker)
        })?;
    }
    let demos_marker = cfg.out.join("demos.json");
    if cfg.demos && !demos_marker.exists() {
        // A task's own step budget is the model's; the demonstration gets the steps its script takes.
        let with_fix: Vec<TaskSpec> = train
            .iter()
            .filter(|t| !t.fix.is_empty())
            .map(|t| {
                let mut t = t.clone();
                let script = DemoPolicy::script(&t.verify, &t.fix).len();
                t.max_steps = Some(t.max_steps.unwrap_or(cfg.max_steps).max(script));
                t
            })
            .collect();
        stages.time("demos", || {
            let store = Store::open(&store_path)?;
            let writer = store.writer()?;
            let p = DemoPolicy::new(&with_fix);
            let ecfg = EvalConfig {
                samples: 1,
                parallel: cfg.parallel,
                seed: cfg.seed ^ 0xDE40,
                image: cfg.image.clone(),
                max_steps: cfg.max_steps,
                client: "keel-train demo".into(),
                user: cfg.user,
                ..Default::default()
            };
            let model = ModelRef { name: "demo".into(), version: Some("demo".into()) };
            let run = eval::run_suite(&with_fix, &p, &envs, &ecfg, &model, Some(&writer), &|r| progress("demo", r));
            writer.flush().wait()?;
            run.ensure_ran().context("running the demonstrations")?;
            let v = eval::report_json(&run, &ecfg, &model, &cfg.tasks[0]);
            let failed: Vec<&str> = run.results.iter().filter(|r| !r.success).map(|r| r.task.as_str()).collect();
            if !failed.is_empty() {
                eprintln!("loop: {} demonstration(s) did not pass verify (left out of SFT): {}", failed.len(), failed.join(", "));
            }
            eval::write_report(&v, &demos_marker)
        })?;
    }
    let collect_report: Value = if cfg.samples > 0 { serde_json::from_slice(&std::fs::read(&collected_marker)?)? } else { Value::Null };
    let demos_report: Option<Value> = if cfg.demos { Some(serde_json::from_slice(&std::fs::read(&demos_marker)?)?) } else { None };
    let store = Store::open(&store_path)?;
    let episodes = store.episodes(&Default::default())?;
    let mut trees: Vec<EpisodeTree> = Vec::new();
    for e in &episodes {
        if let Some(t) = store.tree(e.id)? {
            trees.push(t);
        }
    }

    // 2b. recoveries: for each failed model episode, the expert from where it went wrong.
    let recoveries = if cfg.recover { stages.time("recover", || recover_stage(&cfg.out, &train, &trees, &envs, cfg.parallel, cfg.seed, cfg.image.as_deref()))? } else { vec![] };

    // 3. search: one tree per task (its episodes share their first state).
    let pairs_path = cfg.out.join("pairs.jsonl");
    let all_pairs_path = cfg.out.join("pairs-all.jsonl");
    // SFT alone needs no search.
    if cfg.recipe.dpo() && (!pairs_path.exists() || !all_pairs_path.exists()) {
        stages.time("search", || {
            let mut groups: BTreeMap<String, Vec<EpisodeTree>> = BTreeMap::new();
            for t in &trees {
                if let Some(first) = t.steps.iter().find(|s| s.step.parent_id.is_none()) {
                    groups.entry(first.step.state_hash.clone()).or_default().push(t.clone());
                }
            }
            let p = policy(cfg, cfg.init_adapter.as_deref(), 1.0)?;
            let mut critical = Vec::new();
            let mut all = Vec::new();
            let mut tree_json = Vec::new();
            // Episodes name their task's workspace folder: that finds the task's image.
            let image_of: HashMap<String, String> = train.iter().map(|t| (t.dir.join("workspace").display().to_string(), eval::task_image(t, cfg.image.as_deref()))).collect();
            for (_, group) in groups {
                let image = image_of.get(&group[0].episode.workspace.root).cloned().unwrap_or_else(|| eval::image_name(cfg.image.as_deref()));
                let env = envs.get(&image)?;
                let Some(mut tree) = search::Tree::from_episodes(&group, &cfg.search.values) else { continue };
                let stats = search::search(&mut tree, &p.as_ref(), env.as_ref(), &cfg.search)?;
                let found = search::critical(&tree, &cfg.search);
                eprint!("{}", search::summary(&tree, &found, &stats));
                critical.extend(search::pairs(&tree, &found, p.version().as_deref()));
                all.extend(all_sibling_pairs(&tree, &cfg.search, p.version().as_deref()));
                tree_json.push(search::tree_json(&tree, &found));
            }
            for r in &recoveries {
                let image = image_of.get(&r.model.episode.workspace.root).cloned().unwrap_or_else(|| eval::image_name(cfg.image.as_deref()));
                let (rows, tree) = recovery_pairs(r, &p.as_ref(), envs.get(&image)?.as_ref(), &cfg.search)?;
                critical.extend(rows.iter().cloned());
                all.extend(rows);
                tree_json.extend(tree);
            }
            write_jsonl(&all_pairs_path, &all)?;
            crate::pairs::write_atomic(&cfg.out.join("trees.json"), serde_json::to_string(&tree_json)?.as_bytes())?;
            write_jsonl(&pairs_path, &critical)
        })?;
    }
    let count = |p: &Path| std::fs::read_to_string(p).map(|s| s.lines().filter(|l| !l.trim().is_empty()).count()).unwrap_or(0);

    // 4. sft data and training
    let sft_path = cfg.out.join("sft.jsonl");
    let mut sft_rows: Vec<Value> = trees.iter().flat_map(sft_examples).collect();
    sft_rows.extend(recoveries.iter().flat_map(recovery_sft_rows));
    write_jsonl(&sft_path, &sft_rows)?;
    let mut adapter: Option<PathBuf> = cfg.init_adapter.clone();
    if cfg.recipe.sft() && !sft_rows.is_empty() {
        let out = cfg.out.join("sft");
        if !out.join("adapter_model.safetensors").exists() {
            stages.time("sft", || {
                let o = TrainOptions { model: cfg.model.clone(), data: sft_path.clone(), out: out.clone(), init_adapter: adapter.clone(), epochs: cfg.sft_epochs, lr: cfg.sft_lr, ..cfg.train.clone() };
                crate::sft::run(&o).map(|_| ())
            })?;
        }
        adapter = Some(out);
    }
    // 5. dpo, on this round's pairs and the earlier rounds' given
    let round_data = if cfg.recipe == Recipe::DpoAll { &all_pairs_path } else { &pairs_path };
    let (dpo_data, prior_count) = if cfg.prior_pairs.is_empty() || !cfg.recipe.dpo() {
        (round_data.clone(), 0)
    } else {
        let file = if cfg.recipe == Recipe::DpoAll { "pairs-all.jsonl" } else { "pairs.jsonl" };
        let merged = cfg.out.join("pairs-dpo.jsonl");
        let prior = merge_prior_pairs(round_data, &cfg.prior_pairs, file, &merged)?;
        eprintln!("loop: dpo on {} pairs of this round and {prior} of earlier rounds ({})", count(round_data), merged.display());
        (merged, prior)
    };
    let dpo_data = &dpo_data;
    if cfg.recipe.dpo() && count(dpo_data) > 0 {
        let out = cfg.out.join("dpo");
        if !out.join("adapter_model.safetensors").exists() {
            stages.time("dpo", || {
                let o = TrainOptions { model: cfg.model.clone(), data: dpo_data.clone(), out: out.clone(), init_adapter: adapter.clone(), epochs: cfg.dpo_epochs, lr: cfg.dpo_lr, ..cfg.train.clone() };
                crate::dpo::run(&o).map(|_| ())
            })?;
        }
        adapter = Some(out);
    }
    let trained = adapter.is_some() && adapter != cfg.init_adapter;
    if !trained {
        eprintln!("loop: nothing to train on (no successful episode, no pair): the policy is unchanged");
    }
    let final_dir = cfg.out.join("adapter");
    if let Some(a) = adapter.as_ref().filter(|_| trained) {
        copy_adapter(a, &final_dir)?;
    }

    // 6. after
    let mut suites = Vec::new();
    for (i, (h, tasks)) in heldout.iter().enumerate() {
        let out = cfg.out.join(format!("eval-after-{}.json", suite_name(i, h)));
        let (after_rs, after_v) = if trained {
            stages.time(&format!("after ({})", h.display()), || eval_suite(cfg, tasks, Some(&final_dir), &out, h, &envs))?
        } else {
            before[i].clone()
        };
        let (before_rs, before_v) = &before[i];
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("results");
            }
            v
        };
        suites.push(json!({
            "suite": h.display().to_string(),
            "before": strip(before_v),
            "after": strip(&after_v),
            "paired_success": paired(before_rs, &after_rs),
            "gate": eval::task_gate(before_rs, &after_rs, &eval::GateConfig::default()),
        }));
    }
    let report = json!({
        "model": cfg.model.display().to_string(),
        "init_adapter": cfg.init_adapter.as_ref().map(|p| p.display().to_string()),
        "seed": cfg.seed,
        "recipe": cfg.recipe.name(),
        "device": cfg.device,
        "train_tasks": train.len(),
        "settings": {
            "samples": cfg.samples, "eval_samples": cfg.eval_samples, "collect_temperature": cfg.collect_temperature,
            "eval_temperature": cfg.eval_temperature, "max_steps": cfg.max_steps, "simulations": cfg.search.simulations,
            "expand": cfg.search.expand, "margin": cfg.search.margin, "max_depth": cfg.search.max_depth,
            "lora_r": cfg.train.lora_r, "beta": cfg.train.beta, "sft_lr": cfg.sft_lr, "dpo_lr": cfg.dpo_lr,
            "sft_epochs": cfg.sft_epochs, "dpo_epochs": cfg.dpo_epochs, "max_length": cfg.train.max_length,
            "demos": cfg.demos, "recover": cfg.recover,
            "prior_pairs": cfg.prior_pairs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(), "prior_pairs_used": prior_count, "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum,
        },
        "data": {
            "episodes": trees.len(),
            "collect_success_rate": collect_report["success_rate"],
            "demonstrations": demos_report.as_ref().map(|d| d["tasks"].clone()),
            "demonstrations_passed": demos_report.as_ref().map(|d| d["success_rate"]["value"].clone()),
            "recoveries": recoveries.len(),
            "successful_episodes": trees.iter().filter(|t| t.end.as_ref().and_then(|e| e.outcome.as_ref()).is_some_and(|o| o.passed)).count(),
            "sft_examples": sft_rows.len(),
            "critical_pairs": count(&pairs_path),
            "sibling_pairs": count(&all_pairs_path),
        },
        "trained": trained,
        "adapter": trained.then(|| final_dir.display().to_string()),
        "suites": suites,
        "stages": stages.times.iter().map(|(n, s)| json!({"stage": n, "seconds": s})).collect::<Vec<_>>(),
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    crate::pairs::write_atomic(&cfg.out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// Copies an adapter's files (PEFT layout, metrics and plot) to `to`.
pub fn copy_adapter(from: &Path, to: &Path) -> Result<()> {
    keel_trajectory::private::create_dir_all(to)?;
    for name in ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "plot.png"] {
        let src = from.join(name);
        if src.exists() {
            keel_trajectory::private::copy(&src, &to.join(name)).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// A one-screen summary of a report.
pub fn summary(report: &Value) -> String {
    let mut s = format!(
        "loop ({}, seed {}): {} training tasks, {} episodes ({} solved), {} SFT examples, {} critical pairs, {:.1} min\n",
        report["recipe"].as_str().unwrap_or(""),
        report["seed"],
        report["train_tasks"],
        report["data"]["episodes"],
        report["data"]["successful_episodes"],
        report["data"]["sft_examples"],
        report["data"]["critical_pairs"],
        report["wall_seconds"].as_f64().unwrap_or(0.0) / 60.0
    );
    let pct = |v: &Value| format!("{:5.1}%", 100.0 * v["value"].as_f64().unwrap_or(0.0));
    for su in report["suites"].as_array().into_iter().flatten() {
        s.push_str(&format!("{}\n  {:<14} {:>8} {:>8}\n", su["suite"].as_str().unwrap_or(""), "", "before", "after"));
        for k in ["success_rate", "invalid_call_rate", "loop_rate", "empty_patch_rate", "gave_up_rate"] {
            s.push_str(&format!("  {k:<18} {} {}\n", pct(&su["before"][k]), pct(&su["after"][k])));
        }
        let p = &su["paired_success"];
        s.push_str(&format!(
            "  paired success Δ {:+.3} [{:+.3}, {:+.3}] over {} tasks ({} better, {} worse); gate: {}\n",
            p["delta"].as_f64().unwrap_or(0.0),
            p["low"].as_f64().unwrap_or(0.0),
            p["high"].as_f64().unwrap_or(0.0),
            p["tasks"],
            p["improved"],
            p["worsened"],
            su["gate"]["verdict"].as_str().unwrap_or("")
        ));
    }
    for st in report["stages"].as_array().into_iter().flatten() {
        s.push_str(&format!("  {:<40} {:8.1} s\n", st["stage"].as_str().unwrap_or(""), st["seconds"].as_f64().unwrap_or(0.0)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: &str, c: &str, r: &str) -> String {
        json!({"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}], "rejected": [{"role": "assistant", "content": r}]}).to_string()
    }

    #[test]
    fn dpo_trains_on_every_rounds_pairs_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let (round, earlier) = (dir.path().join("pairs.jsonl"), dir.path().join("r1"));
        std::fs::create_dir(&earlier).unwrap();
        std::fs::write(&round, format!("{}\n{}\n", pair("a", "run", "view"), pair("b", "edit", "edit2"))).unwrap();
        // The earlier round read after a failed run; it shares one pair with this round.
        std::fs::write(earlier.join("pairs.jsonl"), format!("{}\n\n{}\n", pair("c", "view", "run"), pair("b", "edit", "edit2"))).unwrap();
        let out = dir.path().join("pairs-dpo.jsonl");
        // A folder and the same folder's file: the same pairs, counted once.
        let n = merge_prior_pairs(&round, &[earlier.clone(), earlier.join("pairs.jsonl")], "pairs.jsonl", &out).unwrap();
        assert_eq!(n, 1, "one pair is new from the earlier round");
        let lines: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect();
        assert_eq!(lines, vec![pair("a", "run", "view"), pair("b", "edit", "edit2"), pair("c", "view", "run")], "this round's first, in order");

        // An earlier round that is missing or holds something else is an error naming it.
        let e = merge_prior_pairs(&round, &[dir.path().join("nowhere.jsonl")], "pairs.jsonl", &out).unwrap_err();
        assert!(format!("{e:#}").contains("nowhere.jsonl"), "{e:#}");
        std::fs::write(dir.path().join("sft.jsonl"), "{\"prompt\": [], \"completion\": []}\n").unwrap();
        let e = merge_prior_pairs(&round, &[dir.path().join("sft.jsonl")], "pairs.jsonl", &out).unwrap_err();
        assert!(format!("{e:#}").contains("sft.jsonl line 1: not a pair"), "{e:#}");
    }
}
