//! `keel-train eval` and `keel-train collect`: the agent measured on tasks (the agent, not only the
//! pairs), and SEAlign's trajectory collection.
//!
//! Each task runs `samples` times. A run is one episode of the shared agent (`keel-agent`), headless:
//! every proposal is carried out in a container made from the task's workspace (nobody reviews it, so
//! its decision is `unreviewed`, never `accepted`), until the model calls `finish` or the step budget
//! runs out; then the protected files are restored and `verify` runs. Before its runs, each task's
//! `verify` runs once on the untouched workspace: a task that already passes is reported and skipped
//! (it measures nothing).
//!
//! What is counted (per episode, then summed up):
//! - **success**: `verify` exits 0.
//! - **invalid calls**: answers the rules rejected as not executable — malformed or unknown calls,
//!   paths outside the workspace, edits whose `old_text` is missing or ambiguous, edits that change
//!   nothing. `invalid_call_rate` is their share of all answers.
//! - **loops**: `loop_rate` is the share of episodes with at least one loop (the same action at the
//!   same workspace state).
//! - **empty patch**: the episode ended (finished or out of steps) with the workspace as it started,
//!   protected files restored — edits to the tests alone are an empty patch.
//! - **steps**: answers taken, rejected ones included.
//!
//! With a store, every episode is recorded as the editor records one (steps with their exact
//! prompts, decisions, observations) and its end carries the verification outcome, so `search` and
//! `pairs` use collected episodes like the user's (an outcome is a reward; a user's decision still
//! wins where both exist).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keel_agent::task::{TaskError, TaskSpec};
use keel_agent::Agent;
use keel_trajectory::{Decision, EpisodeEnd, EpisodeEndEvent, ModelRef, Outcome, Parsed, Record, RejectCause, Step, Timings, new_id, now_ms, state_hash};
use serde::Serialize;
use serde_json::{Value, json};

use crate::search::sandbox_env::SandboxEnv;
use crate::search::{Environment, Policy, Session};

/// How a suite is run.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Episodes per task.
    pub samples: usize,
    /// Episodes at once (each in its own container; model calls are batched across them).
    pub parallel: usize,
    pub seed: u64,
    /// The image of tasks that name none (default: the Python image setup builds).
    pub image: Option<String>,
    pub temperature: f64,
    /// The step budget of tasks that set none.
    pub max_steps: usize,
    pub observation_bytes: usize,
    /// The `client` recorded on episodes (`keel-train eval`, `keel-train collect`).
    pub client: String,
    /// The engine socket (`None`: `DOCKER_HOST`).
    pub socket: Option<String>,
    /// A simulated user deciding edits and commands by a rule (`None`: nobody reviews them).
    pub user: Option<crate::user_rule::UserRule>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            samples: 1,
            parallel: 4,
            seed: 0,
            image: None,
            temperature: 0.7,
            max_steps: 12,
            observation_bytes: keel_agent::DEFAULT_OBSERVATION_BYTES,
            client: "keel-train eval".into(),
            socket: None,
            user: None,
        }
    }
}

/// An image by the name a task or option gives it: `keel-python` and `keel-sandbox` name Keel's
/// images; no name means the Python image.
pub fn image_name(name: Option<&str>) -> String {
    match name {
        Some("keel-python") | None => keel_sandbox::PYTHON_IMAGE.to_string(),
        Some("keel-sandbox") | Some("busybox") => keel_sandbox::BASE_IMAGE.to_string(),
        Some(other) => other.to_string(),
    }
}

/// The image a task runs in: its own, else the configured one, else the Python image.
pub fn task_image(task: &TaskSpec, default: Option<&str>) -> String {
    image_name(task.image.as_deref().or(default))
}

/// What the evaluation gate tolerates of a candidate on held-out tasks.
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// The most the mean paired per-task success may fall (0: not at all).
    pub success_drop: f64,
    /// The most each failure-mode rate (invalid calls, loops, empty patches, giving up) may rise.
    pub failure_rise: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig { success_drop: 0.0, failure_rise: 0.05 }
    }
}

/// The gate on tasks: a candidate whose held-out success falls (paired per task: the mean of each
/// task's change, with its interval), or one of whose failure-mode rates rises beyond the
/// tolerance, is refused, whatever its preference margins.
pub fn task_gate(before: &[EpisodeResult], after: &[EpisodeResult], g: &GateConfig) -> Value {
    let p = crate::learn::paired(before, after);
    let (b, a) = (summarize(before), summarize(after));
    let mut reasons = Vec::new();
    // Nothing judged is no evidence: a candidate is promoted on tasks it was seen to do, never on
    // an empty comparison (every episode skipped or without an outcome on one side).
    if p["tasks"].as_u64().unwrap_or(0) == 0 {
        reasons.push("no held-out task ran to an outcome both before and after: nothing to judge the candidate by".to_string());
    }
    let delta = p["delta"].as_f64().unwrap_or(0.0);
    if delta < -g.success_drop {
        reasons.push(format!("held-out success falls: paired Δ {delta:+.3} [{:+.3}, {:+.3}]", p["low"].as_f64().unwrap_or(0.0), p["high"].as_f64().unwrap_or(0.0)));
    }
    for (name, rb, ra) in [
        ("invalid calls", b.invalid_call_rate, a.invalid_call_rate),
        ("loops", b.loop_rate, a.loop_rate),
        ("empty patches", b.empty_patch_rate, a.empty_patch_rate),
        ("giving up", b.gave_up_rate, a.gave_up_rate),
    ] {
        if ra.value - rb.value > g.failure_rise {
            reasons.push(format!("{name} rise from {:.1}% to {:.1}%", 100.0 * rb.value, 100.0 * ra.value));
        }
    }
    json!({
        "verdict": if reasons.is_empty() { "promote" } else { "refuse" },
        "reasons": reasons,
        "paired_success": p,
        "success_before": b.success_rate,
        "success_after": a.success_rate,
    })
}

/// One episode's result (a row of the report).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EpisodeResult {
    pub task: String,
    pub sample: usize,
    pub seed: u64,
    pub success: bool,
    /// `finished`, `exhausted`, or `error`.
    pub end: String,
    pub steps: usize,
    pub invalid_calls: usize,
    pub loops: usize,
    pub edits_applied: usize,
    pub empty_patch: bool,
    /// The tools called, in order (`!` marks an automatic rejection, `?` one the simulated user refused).
    pub actions: Vec<String>,
    pub verify_exit: Option<i32>,
    /// The start of `verify`'s output.
    pub verify_output: String,
    pub wall_ms: u64,
    pub model_ms: u64,
    pub tools_ms: u64,
    pub verify_ms: u64,
    pub episode: Option<uuid::Uuid>,
    pub meta: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With a simulated user: the edits and commands it was asked about, and how many it refused
    /// ("another" or rejected).
    #[serde(default)]
    pub user_reviewed: usize,
    #[serde(default)]
    pub user_refused: usize,
}

impl EpisodeResult {
    /// Failed, and finished without carrying anything out (every step before the `finish` was
    /// rejected, by the rules or the user).
    pub fn gave_up(&self) -> bool {
        !self.success && self.end == "finished" && self.actions.iter().all(|a| a == "finish" || a.ends_with('!') || a.ends_with('?'))
    }

    /// A run of `task` that has not happened yet (an error until it does).
    fn empty(task: &TaskSpec, sample: usize, seed: u64) -> EpisodeResult {
        EpisodeResult {
            task: task.name.clone(),
            sample,
            seed,
            success: false,
            end: "error".into(),
            steps: 0,
            invalid_calls: 0,
            loops: 0,
            edits_applied: 0,
            empty_patch: true,
            actions: vec![],
            verify_exit: None,
            verify_output: String::new(),
            wall_ms: 0,
            model_ms: 0,
            tools_ms: 0,
            verify_ms: 0,
            episode: None,
            meta: task.meta.clone(),
            error: None,
            user_reviewed: 0,
            user_refused: 0,
        }
    }
}

fn is_invalid(cause: RejectCause) -> bool {
    cause.is_automatic() && cause != RejectCause::Loop
}

/// The parallel episodes' containers: one environment per image, containers reused across tasks.
pub struct Envs {
    socket: Option<String>,
    by_image: Mutex<HashMap<String, std::sync::Arc<SandboxEnv>>>,
}

impl Envs {
    pub fn new(socket: Option<String>) -> Envs {
        Envs { socket, by_image: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, image: &str) -> Result<std::sync::Arc<SandboxEnv>> {
        let mut map = self.by_image.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(image) {
            return Ok(e.clone());
        }
        let env = std::sync::Arc::new(SandboxEnv::connect(self.socket.clone(), Some(image.to_string()))?);
        map.insert(image.to_string(), env.clone());
        Ok(env)
    }
}

/// Checks a task before its runs: `verify` must fail on the untouched workspace.
fn precheck(task: &TaskSpec, env: &SandboxEnv) -> Result<(), String> {
    let episode = task.episode(ModelRef::default(), "precheck");
    let mut session = env.start(&episode).map_err(|e| format!("{e:#}"))?;
    let obs = session.verify(&task.verify, &[]).map_err(|e| format!("{e:#}"))?;
    if obs.exit_code == Some(0) {
        return Err(format!("`{}` passes before any change: the task measures nothing", task.verify));
    }
    Ok(())
}

/// Runs one episode of `task`, recording it when `writer` is given.
#[allow(clippy::too_many_arguments)]
pub fn run_episode(task: &TaskSpec, sample: usize, policy: &dyn Policy, env: &SandboxEnv, cfg: &EvalConfig, model: &ModelRef, writer: Option<&keel_trajectory::Writer>) -> EpisodeResult {
    let started = Instant::now();
    let seed = crate::search::seed_for(cfg.seed, &[task.name.as_bytes(), &(sample as u64).to_le_bytes()]);
    let mut r = EpisodeResult::empty(task, sample, seed);
    let mut recorded = None;
    if let Err(e) = episode_inner(task, policy, env, cfg, model, writer, seed, &mut r, &mut recorded) {
        r.end = "error".into();
        r.error = Some(format!("{e:#}"));
        // A recorded episode that did not run to an outcome ends `failed`, with the error and no
        // outcome (search takes rewards from outcomes only).
        if let (Some(w), Some(id)) = (writer, recorded) {
            let end = EpisodeEndEvent { episode_id: id, at: now_ms(), end: EpisodeEnd::Failed { error: keel_trajectory::redact::redact(&format!("{e:#}")).into_owned() }, outcome: None };
            let _ = w.append(Record::EpisodeEnd(end));
        }
    }
    r.wall_ms = started.elapsed().as_millis() as u64;
    r
}

#[allow(clippy::too_many_arguments)]
fn episode_inner(task: &TaskSpec, policy: &dyn Policy, env: &SandboxEnv, cfg: &EvalConfig, model: &ModelRef, writer: Option<&keel_trajectory::Writer>, seed: u64, r: &mut EpisodeResult, recorded: &mut Option<uuid::Uuid>) -> Result<()> {
    let mut episode = task.episode(model.clone(), &cfg.client);
    let mut session = env.start(&episode)?;
    let record = |rec: Record| {
        if let Some(w) = writer {
            let _ = w.append(rec);
        }
    };
    let mut agent = Agent::new(task.initial_prompt(), cfg.observation_bytes);
    let max_steps = task.max_steps.unwrap_or(cfg.max_steps);
    let mut parent: Option<uuid::Uuid> = None;
    let mut touched: Vec<String> = Vec::new();
    let mut version: Option<String> = None;
    let mut recorded_episode = false;
    let model_ms = std::cell::Cell::new(0u64);
    let end = {
        let ws = session.workspace();
        let mut user = cfg.user.map(|rule| crate::user_rule::SimulatedUser::new(rule, task, ws.root_hint()));
        let mut review = |state: &keel_trajectory::Prompt, action: &keel_trajectory::Action| match user.as_mut() {
            Some(u) => u.review(state, action),
            None => keel_agent::Review::Unreviewed,
        };
        let end = keel_agent::run_reviewed(
            &mut agent,
            ws,
            max_steps,
            |prompt, n| {
                // The engine failed under the episode: it stops here, with no outcome.
                crate::search::check_session(&session)?;
                let t0 = Instant::now();
                let s = crate::search::seed_for(seed, &[&(n as u64).to_le_bytes()]);
                let out = policy.sample(prompt, 1, s)?.into_iter().next().context("the policy gave no sample");
                model_ms.set(model_ms.get() + t0.elapsed().as_millis() as u64);
                out
            },
            &mut review,
            |prompt, output, u| {
                if session.lost().is_some() {
                    // What the step saw was the engine's failure, not the workspace: not recorded.
                    return;
                }
                if !recorded_episode {
                    version = policy.version();
                    episode.model.version = version.clone();
                    record(Record::Episode(episode.clone()));
                    recorded_episode = true;
                    *recorded = writer.map(|_| episode.id);
                }
                r.steps += 1;
                let tool = match &u.parsed {
                    Parsed::Action { action, .. } => action.tool_name().to_string(),
                    Parsed::Error { .. } => "invalid".to_string(),
                };
                match &u.decision {
                    Decision::Accepted => r.user_reviewed += 1,
                    Decision::Rejected { cause: RejectCause::Retry | RejectCause::User, .. } => {
                        r.user_reviewed += 1;
                        r.user_refused += 1;
                    }
                    _ => {}
                }
                match &u.decision {
                    Decision::Rejected { cause, .. } => {
                        if *cause == RejectCause::Loop {
                            r.loops += 1;
                        } else if is_invalid(*cause) {
                            r.invalid_calls += 1;
                        }
                        let user = matches!(cause, RejectCause::Retry | RejectCause::User);
                        r.actions.push(format!("{tool}{}", if user { "?" } else { "!" }));
                    }
                    d => {
                        r.actions.push(tool);
                        if let (Decision::Unreviewed | Decision::Accepted, Parsed::Action { action: keel_trajectory::Action::Edit { path, .. }, .. }) = (d, &u.parsed) {
                            r.edits_applied += 1;
                            if let Ok(p) = keel_agent::normalize_path(path, ws.root_hint()) {
                                if !touched.contains(&p) {
                                    touched.push(p);
                                }
                            }
                        }
                    }
                }
                r.tools_ms += u.observation.as_ref().and_then(|o| o.duration_ms).unwrap_or(0);
                let step = Step {
                    id: new_id(),
                    episode_id: episode.id,
                    parent_id: parent,
                    state_hash: state_hash(prompt),
                    created_at: now_ms(),
                    prompt: prompt.clone(),
                    output: output.clone(),
                    parsed: u.parsed.clone(),
                    model: ModelRef { name: model.name.clone(), version: version.clone() },
                    timings: Timings::default(),
                };
                let id = step.id;
                record(Record::Step(step));
                record(Record::Decision(keel_trajectory::DecisionEvent { step_id: id, at: now_ms(), decision: u.decision.clone() }));
                if let Some(obs) = &u.observation {
                    record(Record::Observation { step_id: id, at: now_ms(), observation: obs.clone() });
                }
                if u.advanced {
                    parent = Some(id);
                }
            },
        );
        r.model_ms = model_ms.get();
        end
    }?;
    // The engine failed under the episode: what the agent saw was not the workspace's, so the
    // episode has no outcome (an error, left out of the figures, not a failure).
    crate::search::check_session(&session)?;
    r.end = match end {
        keel_agent::RunEnd::Finished => "finished",
        keel_agent::RunEnd::Exhausted => "exhausted",
    }
    .into();
    let t0 = Instant::now();
    let obs = session.verify(&task.verify, &task.protected_originals())?;
    crate::search::check_session(&session)?;
    r.verify_ms = t0.elapsed().as_millis() as u64;
    r.success = obs.exit_code == Some(0);
    r.verify_exit = obs.exit_code;
    r.verify_output = keel_trajectory::redact::redact(&head(&obs.output, 2000)).into_owned();
    // The patch: the files edits touched, compared with where they started (protected files are
    // restored by now, so edits to the tests alone leave it empty).
    let ws = session.workspace();
    r.empty_patch = true;
    for p in &touched {
        let now = match ws.read(p) {
            Ok(keel_agent::FileRead::Text(t)) => Some(t),
            Ok(keel_agent::FileRead::Missing) => None,
            _ => Some(String::new()),
        };
        if now.as_deref() != task.original(p) {
            r.empty_patch = false;
            break;
        }
    }
    if recorded_episode {
        let outcome = Outcome { command: task.verify.clone(), passed: r.success, exit_code: obs.exit_code, output: r.verify_output.clone() };
        let end = match end {
            keel_agent::RunEnd::Finished => EpisodeEnd::Finished { summary: None },
            keel_agent::RunEnd::Exhausted => EpisodeEnd::Exhausted,
        };
        record(Record::EpisodeEnd(EpisodeEndEvent { episode_id: episode.id, at: now_ms(), end, outcome: Some(outcome) }));
        r.episode = writer.map(|_| episode.id);
    }
    Ok(())
}

fn head(s: &str, n: usize) -> String {
    if s.len() <= n { s.to_string() } else { format!("{}…", &s[..s.floor_char_boundary(n)]) }
}

/// A proportion with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Rate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

pub fn wilson(successes: usize, n: usize) -> Rate {
    if n == 0 {
        return Rate { value: 0.0, low: 0.0, high: 1.0, n };
    }
    let z = 1.959_963_984_540_054f64;
    let nf = n as f64;
    let p = successes as f64 / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * ((p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt()) / denom;
    Rate { value: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0), n }
}

/// The figures of a set of episodes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub tasks: usize,
    pub episodes: usize,
    pub success_rate: Rate,
    pub invalid_call_rate: Rate,
    pub loop_rate: Rate,
    pub empty_patch_rate: Rate,
    /// Episodes that failed by finishing without carrying anything out (no read, no command, no
    /// edit): a policy that declines to try has no loops and no invalid calls, so this is what
    /// shows it.
    pub gave_up_rate: Rate,
    pub mean_steps: f64,
    /// Episodes that failed to run (the engine failed, the model did not answer): they have no
    /// outcome, so they are left out of the rates above (`episodes` counts them).
    pub errors: usize,
    /// With a simulated user: the share of the edits and commands it was asked about that it
    /// refused ("another" or rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_refusal_rate: Option<Rate>,
}

pub fn summarize(all: &[EpisodeResult]) -> Summary {
    let ran: Vec<EpisodeResult> = all.iter().filter(|r| r.error.is_none()).cloned().collect();
    let results = &ran[..];
    let n = results.len();
    let tasks = all.iter().map(|r| r.task.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let steps: usize = results.iter().map(|r| r.steps).sum();
    Summary {
        tasks,
        episodes: all.len(),
        success_rate: wilson(results.iter().filter(|r| r.success).count(), n),
        invalid_call_rate: wilson(results.iter().map(|r| r.invalid_calls).sum(), steps),
        loop_rate: wilson(results.iter().filter(|r| r.loops > 0).count(), n),
        empty_patch_rate: wilson(results.iter().filter(|r| r.empty_patch).count(), n),
        gave_up_rate: wilson(results.iter().filter(|r| r.gave_up()).count(), n),
        mean_steps: if n == 0 { 0.0 } else { steps as f64 / n as f64 },
        errors: all.len() - n,
        user_refusal_rate: {
            let asked: usize = results.iter().map(|r| r.user_reviewed).sum();
            (asked > 0).then(|| wilson(results.iter().map(|r| r.user_refused).sum(), asked))
        },
    }
}

/// What a suite run produced.
pub struct SuiteRun {
    pub results: Vec<EpisodeResult>,
    /// Tasks that could not be used (bad folder, a verify that passes at the start), each named.
    pub task_errors: Vec<TaskError>,
    pub wall_ms: u64,
}

impl SuiteRun {
    /// An error when the suite had tasks but not one episode ran to an outcome (the engine is not
    /// there, every task was skipped): such a run has nothing to report, and taking its empty
    /// figures as a result (a baseline, a gate's "after", a collection with nothing in it) would
    /// judge and train on nothing. The first reason is named.
    pub fn ensure_ran(&self) -> Result<()> {
        if self.results.iter().any(|r| r.error.is_none()) || (self.results.is_empty() && self.task_errors.is_empty()) {
            return Ok(());
        }
        let why = self
            .task_errors
            .first()
            .map(|e| format!("task `{}`: {}", e.task, e.message))
            .or_else(|| self.results.iter().find_map(|r| r.error.as_ref().map(|e| format!("task `{}`: {e}", r.task))))
            .unwrap_or_default();
        let tasks = self.results.iter().map(|r| r.task.as_str()).chain(self.task_errors.iter().map(|e| e.task.as_str())).collect::<std::collections::BTreeSet<_>>().len();
        bail!("no episode ran to an outcome ({tasks} task(s): {} skipped, {} episode(s) failed to run); first: {why}", self.task_errors.len(), self.results.len())
    }
}

/// Runs every task `cfg.samples` times, `cfg.parallel` episodes at once. `progress` sees each
/// finished episode.
pub fn run_suite(tasks: &[TaskSpec], policy: &dyn Policy, envs: &Envs, cfg: &EvalConfig, model: &ModelRef, writer: Option<&keel_trajectory::Writer>, progress: &(dyn Fn(&EpisodeResult) + Sync)) -> SuiteRun {
    let started = Instant::now();
    let task_errors = Mutex::new(Vec::new());
    // Pre-check every task (in parallel too), then run the good ones' samples.
    let ok: Vec<bool> = parallel_map(tasks, cfg.parallel, |t| {
        let res = envs.get(&task_image(t, cfg.image.as_deref())).map_err(|e| format!("{e:#}")).and_then(|env| precheck(t, &env));
        match res {
            Ok(()) => true,
            Err(message) => {
                task_errors.lock().unwrap_or_else(|e| e.into_inner()).push(TaskError { task: t.name.clone(), message });
                false
            }
        }
    });
    let jobs: Vec<(&TaskSpec, usize)> = tasks.iter().zip(&ok).filter(|(_, ok)| **ok).flat_map(|(t, _)| (0..cfg.samples.max(1)).map(move |s| (t, s))).collect();
    let results = parallel_map(&jobs, cfg.parallel, |&(t, s)| {
        let r = match envs.get(&task_image(t, cfg.image.as_deref())) {
            Ok(env) => run_episode(t, s, policy, &env, cfg, model, writer),
            Err(e) => {
                let mut r = run_episode_error(t, s, cfg);
                r.error = Some(format!("{e:#}"));
                r
            }
        };
        progress(&r);
        r
    });
    let mut task_errors = task_errors.into_inner().unwrap_or_else(|e| e.into_inner());
    task_errors.sort_by(|a, b| a.task.cmp(&b.task));
    SuiteRun { results, task_errors, wall_ms: started.elapsed().as_millis() as u64 }
}

fn run_episode_error(t: &TaskSpec, sample: usize, cfg: &EvalConfig) -> EpisodeResult {
    EpisodeResult::empty(t, sample, crate::search::seed_for(cfg.seed, &[t.name.as_bytes(), &(sample as u64).to_le_bytes()]))
}

/// `f` over `items` on `n` threads, results in the items' order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], n: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..n.max(1).min(items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(&items[i]);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|r| r.expect("every item was mapped")).collect()
}

/// The report `eval` writes: the summary's figures at the top level (ARCHITECTURE.md), the run's
/// settings, the tasks that could not run, and one row per task and sample.
pub fn report_json(run: &SuiteRun, cfg: &EvalConfig, model: &ModelRef, suite: &Path) -> Value {
    let s = summarize(&run.results);
    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
    v["suite"] = json!(suite.display().to_string());
    v["model"] = json!({"name": model.name, "version": model.version});
    v["settings"] = json!({"samples": cfg.samples, "seed": cfg.seed, "temperature": cfg.temperature, "max_steps": cfg.max_steps, "parallel": cfg.parallel, "image": cfg.image, "user_rule": cfg.user.map(|u| u.name())});
    v["wall_ms"] = json!(run.wall_ms);
    let total = |f: fn(&EpisodeResult) -> u64| run.results.iter().map(f).sum::<u64>();
    v["time_ms"] = json!({"model": total(|r| r.model_ms), "tools": total(|r| r.tools_ms), "verify": total(|r| r.verify_ms), "episodes": total(|r| r.wall_ms)});
    v["episodes_per_minute"] = json!(if run.wall_ms == 0 { 0.0 } else { run.results.len() as f64 * 60_000.0 / run.wall_ms as f64 });
    v["task_errors"] = json!(run.task_errors.iter().map(|e| json!({"task": e.task, "error": e.message})).collect::<Vec<_>>());
    v["results"] = serde_json::to_value(&run.results).unwrap_or(Value::Null);
    v
}

fn pct(r: &Rate) -> String {
    format!("{:5.1}% [{:4.1}, {:4.1}]", 100.0 * r.value, 100.0 * r.low, 100.0 * r.high)
}

/// The terminal table: one line per task (successes over samples, and what went wrong), then the
/// totals.
pub fn table(run: &SuiteRun) -> String {
    let mut by_task: Vec<(&str, Vec<&EpisodeResult>)> = Vec::new();
    for r in &run.results {
        match by_task.iter_mut().find(|(t, _)| *t == r.task) {
            Some((_, v)) => v.push(r),
            None => by_task.push((&r.task, vec![r])),
        }
    }
    let w = by_task.iter().map(|(t, _)| t.len()).max().unwrap_or(4).clamp(4, 48);
    let mut s = format!("{:<w$}  solved  steps  invalid  loops  empty  last actions\n", "task");
    for (t, rs) in &by_task {
        let solved = rs.iter().filter(|r| r.success).count();
        let steps = rs.iter().map(|r| r.steps).sum::<usize>() as f64 / rs.len() as f64;
        let inv: usize = rs.iter().map(|r| r.invalid_calls).sum();
        let loops = rs.iter().filter(|r| r.loops > 0).count();
        let empty = rs.iter().filter(|r| r.empty_patch).count();
        let last = rs.last().map(|r| r.error.clone().unwrap_or_else(|| r.actions.join(" "))).unwrap_or_default();
        let name: String = if t.len() > w { format!("…{}", &t[t.len() - (w - 1)..]) } else { t.to_string() };
        s.push_str(&format!("{name:<w$}  {solved:>3}/{:<2}  {steps:5.1}  {inv:7}  {loops:5}  {empty:5}  {}\n", rs.len(), head(&last, 60)));
    }
    let sum = summarize(&run.results);
    s.push_str(&format!(
        "\n{} tasks, {} episodes in {:.1} min ({:.2} episodes/min)\nsuccess        {}\ninvalid calls  {}  (of answers)\nloops          {}\nempty patches  {}\ngave up        {}\nmean steps     {:.2}\n",
        sum.tasks,
        sum.episodes,
        run.wall_ms as f64 / 60_000.0,
        if run.wall_ms == 0 { 0.0 } else { sum.episodes as f64 * 60_000.0 / run.wall_ms as f64 },
        pct(&sum.success_rate),
        pct(&sum.invalid_call_rate),
        pct(&sum.loop_rate),
        pct(&sum.empty_patch_rate),
        pct(&sum.gave_up_rate),
        sum.mean_steps
    ));
    if let Some(r) = &sum.user_refusal_rate {
        s.push_str(&format!("user refused   {}  (of the {} edits and commands it was asked about)\n", pct(r), r.n));
    }
    if sum.errors > 0 {
        s.push_str(&format!("{} episode(s) failed to run and are left out of the figures above (no outcome); see `error` in the report\n", sum.errors));
    }
    for e in &run.task_errors {
        s.push_str(&format!("skipped: {e}\n"));
    }
    s
}

/// A bar chart of the four rates with their intervals.
pub fn plot(summary: &Summary, out: &Path, title: &str) -> Result<()> {
    use plotters::prelude::*;
    crate::metrics::register_font();
    let bars = [
        ("success", summary.success_rate),
        ("invalid calls", summary.invalid_call_rate),
        ("loops", summary.loop_rate),
        ("empty patches", summary.empty_patch_rate),
    ];
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting {}: {e}", out.display());
    let root = BitMapBackend::new(out, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0f64..100f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.to_string()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("% (95% interval)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, r))| {
            let color = if i == 0 { GREEN.mix(0.7) } else { RED.mix(0.5) };
            Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), 100.0 * r.value)], color.filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, r))| {
            ErrorBar::new_vertical(SegmentValue::CenterOf(i), 100.0 * r.low, 100.0 * r.value, 100.0 * r.high, BLACK.filled(), 10)
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    // The plot backend creates the file with the process umask.
    keel_trajectory::private::restrict(out).with_context(|| format!("narrowing {}", out.display()))?;
    Ok(())
}

/// Writes the report (0600: it holds trajectories' outcomes) and the plot beside it.
pub fn write_report(v: &Value, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        keel_trajectory::private::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::pairs::write_atomic(out, serde_json::to_string_pretty(v)?.as_bytes()).with_context(|| format!("writing {}", out.display()))
}

/// The episode rows of a report `eval` (or the loop's evaluation) wrote.
pub fn read_results(path: &Path) -> Result<Vec<EpisodeResult>> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let rows = v.get("results").with_context(|| format!("{}: not an eval report (it has no `results`)", path.display()))?;
    serde_json::from_value(rows.clone()).with_context(|| format!("{}: the rows of `results`", path.display()))
}

/// Two sides of a comparison, each one or more eval reports (runs of one model on one suite, or
/// of several training seeds of one recipe) with the names they are shown by.
pub struct Side {
    pub names: Vec<String>,
    pub runs: Vec<Vec<EpisodeResult>>,
}

impl Side {
    pub fn read(paths: &[std::path::PathBuf]) -> Result<Side> {
        anyhow::ensure!(!paths.is_empty(), "no report given");
        let runs = paths.iter().map(|p| read_results(p)).collect::<Result<Vec<_>>>()?;
        Ok(Side { names: paths.iter().map(|p| p.display().to_string()).collect(), runs })
    }

    fn pooled(&self) -> Vec<EpisodeResult> {
        self.runs.iter().flatten().cloned().collect()
    }
}

/// Compares `after` with `before`, each pooled over its reports: the figures of each report and of
/// the pool, the paired success difference over the tasks both ran (each task's success averaged
/// over its episodes on each side, so several seeds count as one task, not as more evidence), the
/// tasks only one side ran (left out of the pairing), and the task gate's verdict. This is how
/// "over 3 seeds, with 95% intervals" is read off three eval reports.
pub fn compare(before: &Side, after: &Side, g: &GateConfig) -> Value {
    let (b, a) = (before.pooled(), after.pooled());
    let tasks = |rs: &[EpisodeResult]| rs.iter().filter(|r| r.error.is_none()).map(|r| r.task.clone()).collect::<std::collections::BTreeSet<_>>();
    let (tb, ta) = (tasks(&b), tasks(&a));
    let side = |s: &Side, pooled: &[EpisodeResult]| {
        json!({
            "reports": s.names.iter().zip(&s.runs).map(|(n, rs)| json!({"report": n, "summary": summarize(rs)})).collect::<Vec<_>>(),
            "pooled": summarize(pooled),
        })
    };
    json!({
        "before": side(before, &b),
        "after": side(after, &a),
        "only_before": tb.difference(&ta).collect::<Vec<_>>(),
        "only_after": ta.difference(&tb).collect::<Vec<_>>(),
        "gate": task_gate(&b, &a, g),
    })
}

/// The terminal table of [`compare`]'s result.
pub fn compare_table(v: &Value) -> String {
    let rate = |r: &Value| format!("{:5.1}% [{:4.1}, {:4.1}]", 100.0 * r["value"].as_f64().unwrap_or(0.0), 100.0 * r["low"].as_f64().unwrap_or(0.0), 100.0 * r["high"].as_f64().unwrap_or(0.0));
    let mut s = String::new();
    for name in ["before", "after"] {
        let reports = v[name]["reports"].as_array().cloned().unwrap_or_default();
        let p = &v[name]["pooled"];
        s.push_str(&format!("{name}: {} report(s), {} task(s), {} episode(s)\n", reports.len(), p["tasks"], p["episodes"]));
        for r in &reports {
            s.push_str(&format!("  {}\n", r["report"].as_str().unwrap_or("")));
        }
    }
    s.push_str(&format!("\n{:<15} {:<24} {:<24}\n", "", "before", "after"));
    for (label, key) in [("success", "success_rate"), ("invalid calls", "invalid_call_rate"), ("loops", "loop_rate"), ("empty patches", "empty_patch_rate"), ("gave up", "gave_up_rate")] {
        s.push_str(&format!("{label:<15} {:<24} {:<24}\n", rate(&v["before"]["pooled"][key]), rate(&v["after"]["pooled"][key])));
        let each = |side: &str| v[side]["reports"].as_array().map(|rs| rs.iter().map(|r| format!("{:.1}%", 100.0 * r["summary"][key]["value"].as_f64().unwrap_or(0.0))).collect::<Vec<_>>()).unwrap_or_default();
        let (eb, ea) = (each("before"), each("after"));
        if eb.len() > 1 || ea.len() > 1 {
            s.push_str(&format!("{:<15} {:<24} {:<24}\n", "  each report", eb.join(" "), ea.join(" ")));
        }
    }
    s.push_str(&format!("{:<15} {:<24.2} {:<24.2}\n", "mean steps", v["before"]["pooled"]["mean_steps"].as_f64().unwrap_or(0.0), v["after"]["pooled"]["mean_steps"].as_f64().unwrap_or(0.0)));
    let p = &v["gate"]["paired_success"];
    s.push_str(&format!(
        "\npaired success over {} task(s) (each task's mean over its episodes): Δ {:+.3} [{:+.3}, {:+.3}]; {} better, {} worse\n",
        p["tasks"],
        p["delta"].as_f64().unwrap_or(0.0),
        p["low"].as_f64().unwrap_or(0.0),
        p["high"].as_f64().unwrap_or(0.0),
        p["improved"],
        p["worsened"]
    ));
    for (side, key) in [("before", "only_before"), ("after", "only_after")] {
        let only = v[key].as_array().cloned().unwrap_or_default();
        if !only.is_empty() {
            let names: Vec<&str> = only.iter().filter_map(|t| t.as_str()).collect();
            s.push_str(&format!("left out of the pairing: {} task(s) only {side} ran: {}\n", names.len(), names.join(", ")));
        }
    }
    s.push_str(&format!("task gate: {}", v["gate"]["verdict"].as_str().unwrap_or("")));
    for r in v["gate"]["reasons"].as_array().into_iter().flatten() {
        s.push_str(&format!("\n  {}", r.as_str().unwrap_or("")));
    }
    s.push('\n');
    s
}
