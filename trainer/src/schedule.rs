//! `keel-train schedule --config keel.toml [--once]`: the retraining loop.
//!
//! A run goes through stages — pairs (human) → search (critical decisions, when a sandbox is
//! configured) → sft → dpo → eval (the gate) → promote — each a `keel-train` subcommand in its own
//! process, with its outputs in the run's directory. The run's stage is kept in the store before
//! and after each stage, so a killed run resumes at the stage it was in (the stages are idempotent;
//! `dpo --resume` continues from its last checkpoint).
//!
//! One run at a time: a scheduler holds an exclusive `flock` on `<work_dir>/schedule.lock` for its
//! pass. The kernel drops the lock when the process dies, so a crashed run never leaves it stuck;
//! a second scheduler started meanwhile sees the lock and does nothing. A stage's process dies with
//! the scheduler (`PR_SET_PDEATHSIG`), so a killed scheduler leaves nothing writing into the run's
//! directory while the next pass runs that stage again. The run records its scheduler (pid and
//! start time): a `running` run whose scheduler is gone is listed `interrupted` ([`run_row`]), and
//! the next pass says so, keeps the interruption in `detail.interrupted`, and resumes it.
//!
//! A stage that fails marks its run `failed`, with the error (`detail.error`: stage, message,
//! attempt). The next pass retries that run at the stage it failed in, up to [`MAX_ATTEMPTS`]
//! attempts in all; after that the run stays `failed`, and the next pass whose trigger fires starts
//! a new run (a failed run does not count as the last run for the triggers: the training it was
//! for is still due). `schedule --once` exits non-zero after a failed pass; without `--once` the
//! scheduler logs the error and keeps serving, waiting longer after each failure in a row
//! ([`Backoff`]: 1 min, doubling, at most 1 h) and `--every` again after a pass that did not fail.

use keel_sandbox::{pid_space, process_start};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use keel_trajectory::{ModelVersion, Run, Store, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The trajectory store.
    pub store: PathBuf,
    /// The base model (a Hugging Face folder) the adapters are trained on.
    pub base_model: PathBuf,
    /// Where runs keep their files (pairs, adapters, metrics). Default: next to the store.
    #[serde(default)]
    pub work_dir: Option<PathBuf>,
    #[serde(default = "cpu")]
    pub device: String,
    /// The name the model is served under (`keel-train serve --name`, default `keel`): versions are
    /// `<name>@<adapter hash>`, as the server reports them on every answer.
    #[serde(default = "keel_name")]
    pub model_name: String,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub pairs: PairsConfig,
    #[serde(default)]
    pub search: SearchStage,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub train: Train,
    #[serde(default)]
    pub gate: Gate,
    /// Agent tasks: collect episodes on a training split every run, and judge the candidate on
    /// held-out tasks (the agent, not only the pairs).
    #[serde(default)]
    pub tasks: Option<TasksSection>,
    /// `[ab]`: a candidate the gate passes is not promoted at once but served to `share` of live
    /// episodes, and promoted or withdrawn by the users' decisions ([`crate::ab`]).
    #[serde(default)]
    pub ab: Option<crate::ab::AbConfig>,
}

/// `[tasks]`: the loop's stages on task suites (docs/tasks.md), on the schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    /// Training splits: each run collects episodes on them with the live policy (SEAlign's
    /// trajectory collection); search and SFT then use them with the user's episodes.
    #[serde(default)]
    pub train: Vec<PathBuf>,
    /// Held-out splits: the gate evaluates the live policy and the candidate on them, and refuses a
    /// candidate that is worse at tasks, whatever its preference margins. Never trained on.
    #[serde(default)]
    pub heldout: Vec<PathBuf>,
    /// Episodes per training task.
    #[serde(default = "four")]
    pub samples: usize,
    /// Episodes per held-out task (for each of live and candidate).
    #[serde(default = "two")]
    pub eval_samples: usize,
    /// Collect on at most this many training tasks per run (a different choice each run).
    #[serde(default)]
    pub max_train_tasks: Option<usize>,
    #[serde(default = "four")]
    pub parallel: usize,
    /// The most the mean paired per-task held-out success may fall.
    #[serde(default)]
    pub success_drop: f64,
    /// The most each failure-mode rate (invalid calls, loops, empty patches, giving up) may rise.
    #[serde(default = "failure_rise")]
    pub failure_rise: f64,
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn failure_rise() -> f64 {
    0.05
}

fn cpu() -> String {
    "cpu".into()
}

fn keel_name() -> String {
    "keel".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Run when this long has passed since the last run (e.g. 86400 for daily).
    #[serde(default)]
    pub interval_secs: Option<u64>,
    /// Run once a day after this UTC time (`"03:00"`).
    #[serde(default)]
    pub at: Option<String>,
    /// Run when this many decisions were recorded since the last run.
    #[serde(default)]
    pub min_new_decisions: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairsConfig {
    /// Share of states held out for evaluation (never trained on; chosen by a hash of the state,
    /// so a state stays on its side across runs).
    #[serde(default = "holdout")]
    pub holdout: f64,
}

fn holdout() -> f64 {
    0.2
}

impl Default for PairsConfig {
    fn default() -> Self {
        PairsConfig { holdout: holdout() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchStage {
    #[serde(default)]
    pub enabled: bool,
    /// Extra arguments for `keel-train search` (e.g. `["--simulations", "32"]`).
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[sandbox]`: the container the search stage's rollouts run in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// The image (`keel-train search --image`), e.g. `localhost/keel-python:<version>` for Python
    /// tests; it must be on the engine already. Default: the sandbox's busybox base image.
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    #[serde(default = "yes")]
    pub sft: bool,
    /// Extra arguments for `keel-train sft`.
    #[serde(default)]
    pub sft_args: Vec<String>,
    /// Extra arguments for `keel-train dpo` (e.g. `["--beta", "0.1", "--epochs", "3"]`).
    #[serde(default)]
    pub dpo_args: Vec<String>,
    /// Fewer training pairs than this: the run is skipped.
    #[serde(default = "min_pairs")]
    pub min_pairs: usize,
}

fn yes() -> bool {
    true
}
fn min_pairs() -> usize {
    4
}

impl Default for Train {
    fn default() -> Self {
        Train { sft: true, sft_args: vec![], dpo_args: vec![], min_pairs: min_pairs() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// The candidate's held-out preference accuracy must beat the live one's by this much.
    #[serde(default)]
    pub min_accuracy_gain: f64,
    /// ... and its mean log-probability margin by this much.
    #[serde(default)]
    pub min_margin_gain: f64,
    /// No slice (task kind, language) may lose more accuracy than this.
    #[serde(default = "tolerance")]
    pub slice_tolerance: f64,
    /// Slices with fewer held-out pairs are not judged.
    #[serde(default = "min_slice")]
    pub min_slice_pairs: usize,
}

fn tolerance() -> f64 {
    0.05
}
fn min_slice() -> usize {
    3
}

impl Default for Gate {
    fn default() -> Self {
        Gate { min_accuracy_gain: 0.0, min_margin_gain: 0.0, slice_tolerance: tolerance(), min_slice_pairs: min_slice() }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut c: Config = toml::from_str(&text).with_context(|| format!("{} is not a valid Keel schedule config", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        c.store = abs(&c.store);
        c.base_model = abs(&c.base_model);
        c.work_dir = Some(match &c.work_dir {
            Some(w) => abs(w),
            None => c.store.with_extension("runs"),
        });
        if let Some(t) = c.tasks.as_mut() {
            for p in t.train.iter_mut().chain(t.heldout.iter_mut()) {
                *p = abs(p);
            }
            if t.train.is_empty() && t.heldout.is_empty() {
                bail!("[tasks] names no `train` or `heldout` split");
            }
        }
        if !(0.0..1.0).contains(&c.pairs.holdout) {
            bail!("pairs.holdout must be in [0, 1), got {}", c.pairs.holdout);
        }
        if c.sandbox.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
            bail!("sandbox.image is empty: name an image, or leave it out for the base image");
        }
        if let Some(ab) = &c.ab {
            ab.check()?;
        }
        if let Some(at) = &c.trigger.at {
            parse_hhmm(at).with_context(|| format!("trigger.at `{at}` is not HH:MM"))?;
        }
        Ok(c)
    }

    pub fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| self.store.with_extension("runs"))
    }
}

fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
}

/// The exclusive lock of a pass (released when dropped or when the process dies).
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// `None` when another scheduler holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        if let Some(d) = path.parent() {
            keel_trajectory::private::create_dir_all(d)?;
        }
        let f = keel_trajectory::private::open_write(path).with_context(|| format!("opening {}", path.display()))?;
        // A child that another thread of this process is starting holds a copy of the previous
        // pass's descriptor (and so its lock) until it execs: short retries, for up to half a
        // second, outlast that (a stage's child is forked, not spawned, since it sets its
        // parent-death signal before it execs, and a fork of a large process under load takes a
        // while). Another scheduler holds it for its whole pass.
        const TRIES: usize = 25;
        for retry in 0..TRIES {
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(Some(Lock { _file: f }));
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
            if retry + 1 < TRIES {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(None)
    }
}

pub const STAGES: [&str; 7] = ["pairs", "search", "sft", "dpo", "eval", "promote", "done"];

/// Attempts a run gets in all (the first included; each retry resumes at the stage that failed)
/// before it stays `failed`.
pub const MAX_ATTEMPTS: u64 = 3;

/// What one pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pass {
    /// Another scheduler holds the lock.
    Busy,
    /// No trigger fired.
    Idle(String),
    /// A run went to its end (`promoted`, `refused`, `skipped`).
    Finished { run: String, status: String },
    /// A stage of the run failed; the run is marked `failed` with the error.
    Failed { run: String, stage: String, attempt: u64, error: String },
}

/// How many attempts a run has had (1 for one that never failed).
fn attempts(run: &Run) -> u64 {
    run.detail.get("attempts").and_then(Value::as_u64).unwrap_or(1)
}

/// Why a new run should start now, if it should.
pub fn trigger_reason(cfg: &Config, store: &Store, runs: &[Run], now: i64) -> Result<Option<String>> {
    // A failed run did not do what it was started for: the triggers count from the last run that
    // ended otherwise.
    let last = runs.iter().rev().find(|r| r.status != "running" && r.status != "failed");
    let since = last.map(|r| r.created_at).unwrap_or(0);
    let t = &cfg.trigger;
    if t.interval_secs.is_none() && t.at.is_none() && t.min_new_decisions.is_none() {
        return Ok(Some("no trigger configured: every pass runs".into()));
    }
    if let Some(n) = t.min_new_decisions {
        let c = store.count_decisions_since(since)?;
        if c >= n {
            return Ok(Some(format!("{c} new decisions (trigger: {n})")));
        }
    }
    if let Some(i) = t.interval_secs {
        if last.is_none() || now - since >= i as i64 * 1000 {
            return Ok(Some(format!("{} s since the last run (trigger: every {i} s)", (now - since) / 1000)));
        }
    }
    if let Some(at) = t.at.as_deref().and_then(parse_hhmm) {
        let day = now.div_euclid(86_400_000) * 86_400_000;
        let due = day + at * 1000;
        if now >= due && since < due {
            return Ok(Some(format!("daily run at {} UTC", t.at.as_deref().unwrap_or(""))));
        }
    }
    Ok(None)
}

/// One pass: resume the unfinished run, retry the last failed one (see [`MAX_ATTEMPTS`]), or start
/// one if a trigger fires, and take it to its end or to a failed stage.
pub fn pass(cfg: &Config, exe: &Path) -> Result<Pass> {
    let work = cfg.work_dir();
    let Some(_lock) = Lock::try_acquire(&work.join("schedule.lock"))? else { return Ok(Pass::Busy) };
    let mut store = Store::open(&cfg.store)
        .with_context(|| format!("opening store {}", keel_trajectory::redact_location(&cfg.store.to_string_lossy())))?;
    let runs = store.runs()?;
    // A candidate in an online A/B: judged on the decisions recorded since; no new run meanwhile.
    if let Some(r) = runs.iter().find(|r| r.status == "ab") {
        let mut r = r.clone();
        let verdict = crate::ab::judge_and_apply(&mut store)?;
        let status = match &verdict {
            Some((cand, v @ crate::ab::Verdict::Continue(_))) => return Ok(Pass::Idle(crate::ab::line(cand, v))),
            Some((_, crate::ab::Verdict::Promote(_))) => "promoted",
            Some((_, crate::ab::Verdict::Rollback(_))) => "rolled_back",
            None => "rolled_back",
        };
        r.detail["ab_verdict"] = match &verdict {
            Some((_, v)) => json!({"verdict": v.name(), "why": v.why()}),
            None => json!({"verdict": "rollback", "why": "the A/B was stopped by hand"}),
        };
        eprintln!("schedule: A/B of {}: {status} — {}", r.detail["candidate"].as_str().unwrap_or("?"), r.detail["ab_verdict"]["why"].as_str().unwrap_or(""));
        r.status = status.into();
        r.updated_at = now_ms();
        store.put_run(&r)?;
        return Ok(Pass::Finished { run: r.id.clone(), status: r.status.clone() });
    }
    let retry = runs.last().filter(|r| r.status == "failed" && attempts(r) < MAX_ATTEMPTS);
    let mut run = match (runs.iter().find(|r| r.status == "running"), retry) {
        (Some(r), _) => {
            // We hold the lock, so the scheduler that left this run `running` is gone: say so,
            // and keep the interruption in the run's history.
            let mut r = r.clone();
            let pid = r.detail.pointer("/scheduler/pid").cloned().unwrap_or(Value::Null);
            eprintln!("schedule: run {} was interrupted at stage `{}` (its scheduler, pid {pid}, stopped without ending it)", r.id, r.stage);
            eprintln!("schedule: resuming run {} at stage `{}`", r.id, r.stage);
            let at = now_ms();
            let entry = json!({"stage": r.stage, "pid": pid, "noticed_at": at});
            match r.detail.get_mut("interrupted").and_then(Value::as_array_mut) {
                Some(list) => list.push(entry),
                None => r.detail["interrupted"] = json!([entry]),
            }
            r
        }
        (None, Some(r)) => {
            let mut r = r.clone();
            let attempt = attempts(&r) + 1;
            eprintln!("schedule: retrying run {} at stage `{}` (attempt {attempt} of {MAX_ATTEMPTS})", r.id, r.stage);
            r.status = "running".into();
            r.updated_at = now_ms();
            r.detail["attempts"] = json!(attempt);
            store.put_run(&r)?;
            r
        }
        (None, None) => {
            let now = now_ms();
            let Some(reason) = trigger_reason(cfg, &store, &runs, now)? else {
                return Ok(Pass::Idle("no trigger fired".into()));
            };
            let id = format!("run-{}", crate::models::chrono_like(now).replace([' ', ':'], "-").replace("--", "-"));
            let id = if runs.iter().any(|r| r.id == id) { format!("{id}-{}", runs.len()) } else { id };
            eprintln!("schedule: starting {id}: {reason}");
            let r = Run { id, created_at: now, updated_at: now, stage: "pairs".into(), status: "running".into(), detail: json!({"reason": reason, "attempts": 1}) };
            store.put_run(&r)?;
            r
        }
    };
    // Which process runs it: `keel-train runs` shows a `running` run whose scheduler is gone as
    // `interrupted`.
    run.detail["scheduler"] = json!({"pid": std::process::id(), "start": process_start(std::process::id()), "space": pid_space()});
    run.updated_at = now_ms();
    store.put_run(&run)?;
    let dir = work.join(&run.id);
    keel_trajectory::private::create_dir_all(&dir)?;
    while run.status == "running" {
        let stage = run.stage.clone();
        if std::env::var("KEEL_FAULT_KILL_AT_STAGE").ok().as_deref() == Some(stage.as_str()) {
            // Fault injection for the resume tests: a real kill -9 at the start of a stage.
            eprintln!("schedule: KEEL_FAULT_KILL_AT_STAGE={stage}: killing myself");
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        eprintln!("schedule: {} · stage {stage}", run.id);
        let next = match run_stage(cfg, exe, &store, &mut run, &dir, &stage) {
            Ok(next) => next,
            Err(e) => {
                let error = format!("{e:#}");
                let attempt = attempts(&run);
                run.status = "failed".into();
                run.updated_at = now_ms();
                run.detail["error"] = json!({"stage": stage, "message": error, "attempt": attempt, "at": run.updated_at});
                store.put_run(&run)?;
                return Ok(Pass::Failed { run: run.id.clone(), stage, attempt, error });
            }
        };
        run.stage = next.to_string();
        run.updated_at = now_ms();
        if next == "done" && run.status == "running" {
            run.status = "finished".into();
        }
        store.put_run(&run)?;
    }
    Ok(Pass::Finished { run: run.id.clone(), status: run.status.clone() })
}

/// Whether the scheduler recorded on a `running` run is gone (`false` when none is recorded, when
/// it ran on another machine or pid namespace, which cannot be checked from here, or when it runs
/// on as that same process).
pub fn interrupted(r: &Run) -> bool {
    if r.status != "running" {
        return false;
    }
    let space = r.detail.pointer("/scheduler/space").and_then(Value::as_str);
    if space.is_none() || space.map(str::to_string) != pid_space() {
        return false;
    }
    let Some(pid) = r.detail.pointer("/scheduler/pid").and_then(Value::as_u64) else { return false };
    let start = r.detail.pointer("/scheduler/start").and_then(Value::as_u64);
    match process_start(pid as u32) {
        None => true,
        Some(now) => start.is_some_and(|s| s != now),
    }
}

fn keel_train(exe: &Path, args: &[String], log: &Path) -> Result<()> {
    keel_train_to(exe, args, log, None)
}

/// Runs a `keel-train` subcommand, its stderr (and stdout, unless `stdout` names a file) to the log.
fn keel_train_to(exe: &Path, args: &[String], log: &Path, stdout: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    let logf = keel_trajectory::private::append(log)?;
    match stdout {
        Some(p) => cmd.stdout(keel_trajectory::private::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => cmd.stdout(logf.try_clone()?),
    };
    cmd.stderr(logf);
    // A stage's process dies with the scheduler: killed, it must not leave a `dpo` writing into
    // the run's directory while the next pass runs that stage again.
    #[cfg(target_os = "linux")]
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    #[cfg(target_os = "linux")]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The scheduler died before the line above took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let st = cmd.status().with_context(|| format!("running {} {}", exe.display(), args.join(" ")))?;
    if !st.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        bail!("`keel-train {}` failed ({st}); last lines of {}:\n{}", args.first().map(String::as_str).unwrap_or(""), log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A state's side of the split: held out iff the hash of its state falls under the share.
pub fn held_out(pair: &Value, share: f64) -> bool {
    keel_trajectory::pair_held_out(pair, share)
}

fn read_jsonl(p: &Path) -> Result<Vec<Value>> {
    let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    t.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("a bad line in {}", p.display()))).collect()
}

fn write_jsonl(p: &Path, rows: &[Value]) -> Result<()> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    crate::pairs::write_atomic(p, &out).with_context(|| format!("writing {}", p.display()))
}

/// `keel-train search …` for the search stage: the live adapter's policy (the base model when
/// nothing is live), the configured device and sandbox image, then the configured extra
/// arguments (a flag given there is not given twice).
pub fn search_args(cfg: &Config, live_adapter: Option<&str>, out: &Path, tree: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["search".into(), "--store".into(), s(&cfg.store), "--model".into(), s(&cfg.base_model), "--out".into(), s(out), "--tree".into(), s(tree)];
    let extra = &cfg.search.args;
    let given = |flag: &str| extra.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if let Some(a) = live_adapter.filter(|_| !given("--adapter")) {
        args.extend(["--adapter".into(), a.into()]);
    }
    if !given("--device") {
        args.extend(["--device".into(), cfg.device.clone()]);
    }
    if let Some(image) = cfg.sandbox.image.as_ref().filter(|_| !given("--image")) {
        args.extend(["--image".into(), image.clone()]);
    }
    args.extend(extra.iter().cloned());
    args
}

fn run_stage(cfg: &Config, exe: &Path, store: &Store, run: &mut Run, dir: &Path, stage: &str) -> Result<&'static str> {
    let log = dir.join("log.txt");
    let model = s(&cfg.base_model);
    match stage {
        "pairs" => {
            let all = dir.join("pairs_all.jsonl");
            let stats = crate::pairs::export(store, None, &all)?;
            let rows = read_jsonl(&all)?;
            let (held, train): (Vec<Value>, Vec<Value>) = rows.into_iter().partition(|p| held_out(p, cfg.pairs.holdout));
            write_jsonl(&dir.join("train.jsonl"), &train)?;
            write_jsonl(&dir.join("heldout.jsonl"), &held)?;
            run.detail["pairs"] = json!({"human": stats.pairs(), "train": train.len(), "heldout": held.len()});
            eprintln!("schedule: {stats}; {} for training, {} held out", train.len(), held.len());
            Ok("collect")
        }
        "collect" => {
            // Episodes on the training tasks with the live policy, into the store (search and SFT
            // take them from there).
            if let Some(t) = cfg.tasks.as_ref().filter(|t| !t.train.is_empty()) {
                let live = store.live_model_version()?;
                for (i, split) in t.train.iter().enumerate() {
                    let mut args = vec!["collect".into(), "--tasks".into(), s(split), "--store".into(), s(&cfg.store), "--model".into(), model.clone(), "--device".into(), cfg.device.clone()];
                    args.extend(["--samples".into(), t.samples.to_string(), "--parallel".into(), t.parallel.to_string(), "--temperature".into(), "1.0".into()]);
                    args.extend(["--seed".into(), (run.created_at as u64 ^ i as u64).to_string(), "--out".into(), s(&dir.join(format!("collect-{i}.json")))]);
                    if let Some(n) = t.max_train_tasks {
                        args.extend(["--max-tasks".into(), n.to_string()]);
                    }
                    if let Some(a) = live.as_ref().and_then(|v| v.adapter_path.clone()) {
                        args.extend(["--adapter".into(), a]);
                    }
                    if let Some(image) = &cfg.sandbox.image {
                        args.extend(["--image".into(), image.clone()]);
                    }
                    keel_train(exe, &args, &log)?;
                }
                let since = run.created_at;
                let mut examples = Vec::new();
                for e in store.episodes(&keel_trajectory::EpisodeFilter { since: Some(since), ..Default::default() })? {
                    if let Some(tree) = store.tree(e.id)? {
                        examples.extend(crate::learn::sft_examples(&tree));
                    }
                }
                write_jsonl(&dir.join("successes.jsonl"), &examples)?;
                run.detail["collect"] = json!({"successful_steps": examples.len()});
            }
            Ok("search")
        }
        "search" => {
            if cfg.search.enabled {
                let out = dir.join("mcts.jsonl");
                let live = store.live_model_version()?;
                let args = search_args(cfg, live.as_ref().and_then(|v| v.adapter_path.as_deref()), &out, &dir.join("tree.json"));
                keel_train(exe, &args, &log)?;
                let found = read_jsonl(&out)?;
                let mut train = read_jsonl(&dir.join("train.jsonl"))?;
                let mut held = read_jsonl(&dir.join("heldout.jsonl"))?;
                let n = found.len();
                for p in found {
                    if held_out(&p, cfg.pairs.holdout) { held.push(p) } else { train.push(p) }
                }
                write_jsonl(&dir.join("train.jsonl"), &train)?;
                write_jsonl(&dir.join("heldout.jsonl"), &held)?;
                run.detail["search"] = json!({"pairs": n});
            }
            let train = read_jsonl(&dir.join("train.jsonl"))?.len();
            let successes = read_jsonl(&dir.join("successes.jsonl")).map(|r| r.len()).unwrap_or(0);
            if train < cfg.train.min_pairs && successes == 0 {
                run.status = "skipped".into();
                run.detail["skipped"] = json!(format!("{train} training pairs, fewer than train.min_pairs = {}", cfg.train.min_pairs));
                eprintln!("schedule: skipped: {train} training pairs (need {})", cfg.train.min_pairs);
                return Ok("done");
            }
            Ok("sft")
        }
        "sft" => {
            if cfg.train.sft {
                // The chosen side of the training pairs, as prompt/completion.
                let mut rows: Vec<Value> = read_jsonl(&dir.join("train.jsonl"))?
                    .into_iter()
                    .map(|p| json!({"prompt": p["prompt"], "completion": p["chosen"], "tools": p.get("tools").cloned().unwrap_or(Value::Null)}))
                    .collect();
                // The steps of the trajectories that solved a training task.
                rows.extend(read_jsonl(&dir.join("successes.jsonl")).unwrap_or_default());
                write_jsonl(&dir.join("sft.jsonl"), &rows)?;
                let mut args = vec!["sft".into(), "--model".into(), model.clone(), "--data".into(), s(&dir.join("sft.jsonl")), "--out".into(), s(&dir.join("sft_adapter")), "--device".into(), cfg.device.clone()];
                args.extend(cfg.train.sft_args.iter().cloned());
                keel_train(exe, &args, &log)?;
            }
            Ok("dpo")
        }
        "dpo" => {
            let out = dir.join("adapter");
            if read_jsonl(&dir.join("train.jsonl"))?.is_empty() {
                // Only successes to learn from: the SFT adapter is the candidate.
                let sft = dir.join("sft_adapter");
                anyhow::ensure!(sft.join("adapter_config.json").exists(), "no pairs and no SFT adapter: nothing was trained");
                crate::learn::copy_adapter(&sft, &out)?;
                return Ok("eval");
            }
            let mut args = vec!["dpo".into(), "--model".into(), model.clone(), "--pairs".into(), s(&dir.join("train.jsonl")), "--out".into(), s(&out), "--device".into(), cfg.device.clone()];
            if cfg.train.sft && dir.join("sft_adapter/adapter_config.json").exists() {
                args.extend(["--init-adapter".into(), s(&dir.join("sft_adapter"))]);
            }
            if out.exists() {
                args.push("--resume".into());
            }
            args.extend(cfg.train.dpo_args.iter().cloned());
            keel_train(exe, &args, &log)?;
            Ok("eval")
        }
        "eval" => {
            let held = dir.join("heldout.jsonl");
            let pairs = read_jsonl(&held)?;
            let live = store.live_model_version()?;
            let score = |adapter: Option<&str>, out: &Path| -> Result<Vec<(f64, f64)>> {
                let mut args = vec!["score".into(), "--model".into(), model.clone(), "--pairs".into(), s(&held), "--device".into(), cfg.device.clone()];
                if let Some(a) = adapter {
                    args.extend(["--adapter".into(), a.into()]);
                }
                keel_train_to(exe, &args, &log, Some(out))?;
                read_jsonl(out)?
                    .iter()
                    .map(|v| Ok((v["chosen_logp"].as_f64().context("chosen_logp")?, v["rejected_logp"].as_f64().context("rejected_logp")?)))
                    .collect()
            };
            let tasks_judge = cfg.tasks.as_ref().is_some_and(|t| !t.heldout.is_empty());
            let (cand_scores, live_scores) = if pairs.is_empty() && tasks_judge {
                (vec![], vec![])
            } else {
                (score(Some(&s(&dir.join("adapter"))), &dir.join("scores_candidate.jsonl"))?, score(live.as_ref().and_then(|v| v.adapter_path.as_deref()), &dir.join("scores_live.jsonl"))?)
            };
            let mut report = gate(&cfg.gate, &pairs, &cand_scores, &live_scores);
            if pairs.is_empty() && tasks_judge {
                // No user pairs held out: the tasks alone judge.
                report.promote = true;
                report.why = "no held-out pairs; judged on tasks".into();
            }
            eprintln!("{}", report.table(live.as_ref().map(|v| v.id.as_str()).unwrap_or("base")));
            if let Some(t) = cfg.tasks.as_ref().filter(|t| !t.heldout.is_empty()) {
                let tg = task_gate(cfg, t, exe, &log, dir, live.as_ref().and_then(|v| v.adapter_path.as_deref()), &dir.join("adapter"), run.created_at as u64)?;
                eprintln!("schedule: task gate: {}", tg);
                if tg["verdict"] != "promote" {
                    report.promote = false;
                    let reasons: Vec<String> = tg["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect();
                    report.why = format!("{}{}", if report.why.is_empty() { String::new() } else { format!("{}; ", report.why) }, reasons.join("; "));
                }
                run.detail["task_gate"] = tg;
            }
            let adapter = dir.join("adapter");
            let hash = crate::models::adapter_hash(&adapter)?;
            let id = format!("{}@{hash}", cfg.model_name);
            let v = ModelVersion {
                id: id.clone(),
                created_at: now_ms(),
                base_model: model.clone(),
                adapter_path: Some(s(&adapter)),
                adapter_hash: Some(hash),
                parent: live.as_ref().map(|v| v.id.clone()),
                trained_on: json!({"run": run.id, "pairs": run.detail.get("pairs"), "search": run.detail.get("search")}),
                eval: report.json(),
                live: false,
            };
            store.put_model_version(&v)?;
            run.detail["candidate"] = json!(id);
            run.detail["gate"] = report.json();
            Ok("promote")
        }
        "promote" => {
            let promote = run.detail.pointer("/gate/promote").and_then(Value::as_bool).unwrap_or(false);
            let id = run.detail["candidate"].as_str().context("no candidate recorded")?.to_string();
            if promote && cfg.ab.is_some() {
                let ab = cfg.ab.as_ref().expect("checked");
                crate::ab::start(store, &id, ab)?;
                run.status = "ab".into();
                eprintln!("schedule: {id} passed the gate; A/B started: it serves {:.0}% of episodes until the users' decisions judge it", ab.share * 100.0);
            } else if promote {
                let mut st = Store::open(&cfg.store)?;
                crate::models::promote(&mut st, &id)?;
                run.status = "promoted".into();
                eprintln!("schedule: promoted {id}");
            } else {
                run.status = "refused".into();
                eprintln!("schedule: refused {id}: {}", run.detail.pointer("/gate/why").and_then(Value::as_str).unwrap_or(""));
            }
            Ok("done")
        }
        other => bail!("unknown stage `{other}`"),
    }
}

/// Evaluates the live policy and the candidate on the held-out task splits (same seeds) and
/// judges the candidate by [`crate::eval::task_gate`].
#[allow(clippy::too_many_arguments)]
fn task_gate(cfg: &Config, t: &TasksSection, exe: &Path, log: &Path, dir: &Path, live: Option<&str>, candidate: &Path, seed: u64) -> Result<Value> {
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (i, split) in t.heldout.iter().enumerate() {
        for (who, adapter, into) in [("live", live.map(PathBuf::from), &mut before), ("candidate", Some(candidate.to_path_buf()), &mut after)] {
            let out = dir.join(format!("eval-{who}-{i}.json"));
            if !out.exists() {
                let mut args = vec!["eval".into(), "--tasks".into(), s(split), "--model".into(), s(&cfg.base_model), "--device".into(), cfg.device.clone(), "--out".into(), s(&out)];
                args.extend(["--samples".into(), t.eval_samples.to_string(), "--parallel".into(), t.parallel.to_string(), "--seed".into(), seed.to_string()]);
                if let Some(a) = &adapter {
                    args.extend(["--adapter".into(), s(a)]);
                }
                if let Some(image) = &cfg.sandbox.image {
                    args.extend(["--image".into(), image.clone()]);
                }
                keel_train(exe, &args, log)?;
            }
            let v: Value = serde_json::from_slice(&std::fs::read(&out)?).with_context(|| format!("reading {}", out.display()))?;
            let rows: Vec<crate::eval::EpisodeResult> = serde_json::from_value(v["results"].clone()).with_context(|| format!("the results in {}", out.display()))?;
            // Episodes that could not run (the engine stopped) have no outcome: the gate does not
            // judge on what is left; the stage fails (so the run is retried) and the report goes,
            // so that the retry runs the evaluation again.
            let broken: Vec<&crate::eval::EpisodeResult> = rows.iter().filter(|r| r.error.is_some()).collect();
            if let Some(first) = broken.first() {
                let _ = std::fs::remove_file(&out);
                bail!(
                    "{} of {} held-out episodes of the {who} could not run, so the gate cannot judge (the first, {} #{}: {})",
                    broken.len(),
                    rows.len(),
                    first.task,
                    first.sample,
                    first.error.as_deref().unwrap_or("")
                );
            }
            into.extend(rows.into_iter().map(|mut r| {
                r.task = format!("{i}/{}", r.task);
                r
            }));
        }
    }
    Ok(crate::eval::task_gate(&before, &after, &crate::eval::GateConfig { success_drop: t.success_drop, failure_rise: t.failure_rise }))
}

/// Figures of one model on the held-out pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub n: usize,
    /// Share of pairs whose chosen completion gets the higher log-probability.
    pub accuracy: f64,
    /// Mean of chosen − rejected log-probability.
    pub margin: f64,
}

fn figures(idx: &[usize], scores: &[(f64, f64)]) -> Figures {
    let n = idx.len();
    if n == 0 {
        return Figures::default();
    }
    let acc = idx.iter().filter(|&&i| scores[i].0 > scores[i].1).count() as f64 / n as f64;
    let margin = idx.iter().map(|&i| scores[i].0 - scores[i].1).sum::<f64>() / n as f64;
    Figures { n, accuracy: acc, margin }
}

#[derive(Debug, Clone)]
pub struct GateReport {
    pub candidate: Figures,
    pub live: Figures,
    /// slice name → (candidate, live)
    pub slices: BTreeMap<String, (Figures, Figures)>,
    pub promote: bool,
    pub why: String,
}

impl GateReport {
    pub fn json(&self) -> Value {
        let f = |x: &Figures| json!({"n": x.n, "accuracy": x.accuracy, "margin": x.margin});
        json!({
            "accuracy": self.candidate.accuracy, "margin": self.candidate.margin,
            "candidate": f(&self.candidate), "live": f(&self.live),
            "slices": self.slices.iter().map(|(k, (c, l))| (k.clone(), json!({"candidate": f(c), "live": f(l)}))).collect::<serde_json::Map<_, _>>(),
            "promote": self.promote, "why": self.why,
        })
    }

    pub fn table(&self, live_name: &str) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "{:<28} {:>6} {:>12} {:>12} {:>12} {:>12}", "held-out slice", "pairs", "acc. live", "acc. cand.", "margin live", "margin cand.");
        let row = |t: &mut String, name: &str, c: &Figures, l: &Figures| {
            let _ = writeln!(t, "{:<28} {:>6} {:>12.3} {:>12.3} {:>12.3} {:>12.3}", name, c.n, l.accuracy, c.accuracy, l.margin, c.margin);
        };
        row(&mut t, "all", &self.candidate, &self.live);
        for (k, (c, l)) in &self.slices {
            row(&mut t, k, c, l);
        }
        let _ = writeln!(t, "live: {live_name}; decision: {} — {}", if self.promote { "PROMOTE" } else { "REFUSE" }, self.why);
        t
    }
}

use std::fmt::Write as _;

/// The evaluation gate.
pub fn gate(g: &Gate, pairs: &[Value], cand: &[(f64, f64)], live: &[(f64, f64)]) -> GateReport {
    let all: Vec<usize> = (0..pairs.len().min(cand.len()).min(live.len())).collect();
    let candidate = figures(&all, cand);
    let livef = figures(&all, live);
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in &all {
        for key in ["task_kind", "language"] {
            if let Some(v) = pairs[i].pointer(&format!("/meta/{key}")).and_then(Value::as_str) {
                groups.entry(format!("{key}={v}")).or_default().push(i);
            }
        }
    }
    let slices: BTreeMap<String, (Figures, Figures)> = groups.into_iter().map(|(k, idx)| (k, (figures(&idx, cand), figures(&idx, live)))).collect();
    let mut why = Vec::new();
    if all.is_empty() {
        why.push("no held-out pairs to judge by".to_string());
    }
    if candidate.accuracy < livef.accuracy + g.min_accuracy_gain {
        why.push(format!("accuracy {:.3} does not beat {:.3} by {}", candidate.accuracy, livef.accuracy, g.min_accuracy_gain));
    }
    if candidate.margin <= livef.margin + g.min_margin_gain {
        why.push(format!("margin {:.3} does not beat {:.3} by {}", candidate.margin, livef.margin, g.min_margin_gain));
    }
    for (k, (c, l)) in &slices {
        if c.n >= g.min_slice_pairs && c.accuracy < l.accuracy - g.slice_tolerance {
            why.push(format!("slice {k} loses accuracy ({:.3} → {:.3})", l.accuracy, c.accuracy));
        }
    }
    let promote = why.is_empty();
    let why = if promote { format!("accuracy {:.3} vs {:.3}, margin {:.3} vs {:.3}", candidate.accuracy, livef.accuracy, candidate.margin, livef.margin) } else { why.join("; ") };
    GateReport { candidate, live: livef, slices, promote, why }
}

/// The wait after failed passes: `initial`, doubled after each further failure in a row, at most
/// `max`; back to `initial` after a pass that did not fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: std::time::Duration,
    pub max: std::time::Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(std::time::Duration::from_secs(60), std::time::Duration::from_secs(3600))
    }
}

impl Backoff {
    pub fn new(initial: std::time::Duration, max: std::time::Duration) -> Backoff {
        Backoff { initial, max, failures: 0 }
    }

    /// Counts a failure; returns how long to wait before the next pass.
    pub fn failed(&mut self) -> std::time::Duration {
        let wait = self.initial.saturating_mul(1u32 << self.failures.min(20)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Logs what a pass did.
fn report(p: &Pass) {
    match p {
        Pass::Busy => eprintln!("schedule: another scheduler is running a pass; nothing to do"),
        Pass::Idle(why) => eprintln!("schedule: {why}"),
        Pass::Finished { run, status } => eprintln!("schedule: {run} {status}"),
        Pass::Failed { run, stage, attempt, error } => {
            eprintln!("schedule: {run} failed at stage `{stage}` (attempt {attempt} of {MAX_ATTEMPTS}): {error}")
        }
    }
    let _ = std::io::stderr().flush();
}

/// Runs passes: once (a failed pass is an error), or forever with `every` between them.
pub fn run(cfg: &Config, once: bool, every: std::time::Duration) -> Result<()> {
    let exe = std::env::current_exe().context("finding keel-train")?;
    if once {
        return run_once(cfg, &exe);
    }
    serve(cfg, &exe, every, Backoff::default(), None, std::thread::sleep);
    Ok(())
}

/// One pass with `exe` as `keel-train`; a failed stage is an error (`schedule --once` exits
/// non-zero).
pub fn run_once(cfg: &Config, exe: &Path) -> Result<()> {
    let p = pass(cfg, exe)?;
    report(&p);
    if let Pass::Failed { run, stage, error, .. } = p {
        bail!("run {run} failed at stage `{stage}`: {error}");
    }
    Ok(())
}

/// The scheduler's loop: `passes` passes (`None`: forever), `sleep`ing `every` after a pass that
/// did not fail and the [`Backoff`]'s wait after one that did (a failed stage, or an error such as
/// a store that cannot be opened), logging each. It never returns early on an error.
pub fn serve(cfg: &Config, exe: &Path, every: std::time::Duration, mut backoff: Backoff, passes: Option<usize>, mut sleep: impl FnMut(std::time::Duration)) {
    let mut n = 0;
    while passes.is_none_or(|max| n < max) {
        n += 1;
        let failed = match pass(cfg, exe) {
            Ok(p) => {
                report(&p);
                matches!(p, Pass::Failed { .. })
            }
            Err(e) => {
                eprintln!("schedule: the pass failed: {e:#}");
                true
            }
        };
        let wait = if failed {
            let wait = backoff.failed();
            eprintln!("schedule: next pass in {} s", wait.as_secs());
            wait
        } else {
            backoff.succeeded();
            every
        };
        let _ = std::io::stderr().flush();
        sleep(wait);
    }
}

/// What `keel-train runs --json` prints for a run (one line each): the run as the scheduler sees
/// it, with the answers people look for pulled out of `detail` (kept whole beside them, since its
/// shape grows with the stages): `attempts`; `error` (stage, message, attempt) while the run is
/// `failed`, `null` otherwise (an earlier attempt's error stays in `detail`); the `candidate`
/// model version; the `gate`'s verdict (`promote` or `refuse`) and why.
pub fn run_row(r: &Run) -> Value {
    let d = &r.detail;
    let gate = d.get("gate").filter(|g| g.is_object()).map(|g| {
        let verdict = if g["promote"].as_bool().unwrap_or(false) { "promote" } else { "refuse" };
        json!({"verdict": verdict, "why": g["why"].as_str().unwrap_or("")})
    });
    json!({
        "id": r.id,
        "created_at": r.created_at,
        "created": crate::models::chrono_like(r.created_at),
        "updated_at": r.updated_at,
        "stage": r.stage,
        "status": if interrupted(r) { "interrupted" } else { r.status.as_str() },
        "attempts": attempts(r),
        "error": if r.status == "failed" { d.get("error").cloned().unwrap_or(Value::Null) } else { Value::Null },
        "candidate": d.get("candidate").cloned().unwrap_or(Value::Null),
        "gate": gate,
        "reason": d.get("reason").cloned().unwrap_or(Value::Null),
        "skipped": d.get("skipped").cloned().unwrap_or(Value::Null),
        "detail": d,
    })
}

/// A table of runs, oldest first: id, when, stage, status, attempts, the candidate and the gate's
/// verdict, and what happened (the error of a failed run, why a run was skipped, why the gate
/// decided as it did, or why a run that is still going started).
pub fn runs_table(runs: &[Run]) -> String {
    let mut t = format!("{:<32} {:<20} {:<8} {:<9} {:<8} {:<24} {:<8} {}\n", "run", "created", "stage", "status", "attempts", "candidate", "gate", "detail");
    for r in runs {
        let row = run_row(r);
        let e = &row["error"];
        let what = if e.is_object() {
            let first = e["message"].as_str().and_then(|m| m.lines().next()).unwrap_or("");
            format!("at {} (attempt {} of {MAX_ATTEMPTS}): {first}", e["stage"].as_str().unwrap_or(&r.stage), e["attempt"].as_u64().unwrap_or(1))
        } else if let Some(skipped) = row["skipped"].as_str() {
            skipped.to_string()
        } else if let Some(why) = row.pointer("/gate/why").and_then(Value::as_str) {
            why.to_string()
        } else {
            row["reason"].as_str().unwrap_or("").to_string()
        };
        let _ = writeln!(
            t,
            "{:<32} {:<20} {:<8} {:<9} {:<8} {:<24} {:<8} {what}",
            r.id,
            row["created"].as_str().unwrap_or(""),
            r.stage,
            row["status"].as_str().unwrap_or(&r.status),
            attempts(r),
            row["candidate"].as_str().unwrap_or("-"),
            row.pointer("/gate/verdict").and_then(Value::as_str).unwrap_or("-"),
        );
    }
    t
}
