//! What `keel-train sft` and `keel-train dpo` share: options, the adapter to train, the loop
//! (gradient accumulation, warm-up + linear decay, clipping, the non-finite guard, bf16 autocast on
//! CUDA), checkpoints that resume exactly, metrics and the progress bar.
//!
//! The loop is deterministic for a seed on CPU: the batches of a step are a function of
//! `(seed, step)` (see [`batch`]), libtorch's generator (LoRA dropout) is reseeded from
//! `(seed, step, micro-batch)` before every forward pass, and a checkpoint holds the adapter, Adam's
//! moments and the step; so a run killed and resumed ends with the adapter the uninterrupted run
//! ends with.

pub mod adamw;
pub mod batch;
pub mod checkpoint;
pub mod data;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use tch::{Device, Tensor};

use crate::metrics::{self, MetricsLog};
use crate::model::{LoadOptions, LoraConfig, Model, parse_device};
use crate::optim::{LrSchedule, clip_grad_norm};

use adamw::{AdamW, AdamWConfig};
use checkpoint::{Checkpoint, State};

/// Options shared by `sft` and `dpo` (the command line's, one to one).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub model: PathBuf,
    /// Pairs (DPO) or prompt/completion lines (SFT).
    pub data: PathBuf,
    pub out: PathBuf,
    /// Start from this adapter (for DPO it is also the reference, as in TRL).
    pub init_adapter: Option<PathBuf>,
    /// DPO's β (unused by SFT).
    pub beta: f64,
    pub lr: f64,
    pub epochs: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lora_r: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub max_length: usize,
    pub seed: u64,
    pub device: String,
    pub resume: bool,
    /// A checkpoint every this many optimizer steps (0: only at the end).
    pub save_steps: u64,
    /// Fraction of the steps spent warming up.
    pub warmup_ratio: f64,
    /// Gradient clipping (global L2 norm); 0 turns it off.
    pub max_grad_norm: f64,
    /// SFT: pack the steps of an episode into one sequence (`data::pack_steps`); a packed
    /// sequence is one example for `batch_size` and `grad_accum`.
    pub pack: bool,
}

impl TrainOptions {
    /// The defaults of the command line, for `data` and `out`.
    pub fn new(model: PathBuf, data: PathBuf, out: PathBuf) -> TrainOptions {
        TrainOptions {
            model,
            data,
            out,
            init_adapter: None,
            beta: 0.1,
            lr: 5e-5,
            epochs: 1,
            batch_size: 8,
            grad_accum: 1,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            max_length: 1024,
            seed: 42,
            device: "cpu".into(),
            resume: false,
            save_steps: 50,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            pack: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be positive, found {}", self.lr);
        }
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            bail!("--beta must be positive, found {}", self.beta);
        }
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            bail!("--epochs, --batch-size and --grad-accum must be at least 1");
        }
        if self.max_length < 2 {
            bail!("--max-length must be at least 2, found {}", self.max_length);
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            bail!("--warmup-ratio must be in [0, 1], found {}", self.warmup_ratio);
        }
        Ok(())
    }

    /// What must not change between a run and its resumption.
    fn fingerprint(&self, kind: &str, data_digest: &str) -> Value {
        let mut v = json!({
            "kind": kind,
            "model": self.model.canonicalize().unwrap_or_else(|_| self.model.clone()),
            "data_blake3": data_digest,
            "init_adapter": self.init_adapter.as_ref().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())),
            "beta": if kind == "dpo" { json!(self.beta) } else { Value::Null },
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "max_length": self.max_length,
            "seed": self.seed,
            "warmup_ratio": self.warmup_ratio,
            "max_grad_norm": self.max_grad_norm,
        });
        // Only when on, so that checkpoints written before the option resume as they were.
        if self.pack {
            v["pack"] = json!(true);
        }
        v
    }
}

/// Loads the model (and the initial adapter, if any) as the options say.
pub fn load_model(opts: &TrainOptions) -> Result<Model> {
    opts.validate()?;
    let device = parse_device(&opts.device)?;
    let mut model = Model::load(&opts.model, &LoadOptions { device, kind: None })
        .with_context(|| format!("loading model {}", opts.model.display()))?;
    if let Some(a) = &opts.init_adapter {
        model.load_adapter(a).with_context(|| format!("loading --init-adapter {}", a.display()))?;
    }
    model.transformer.set_train(false);
    Ok(model)
}

/// A training objective over tokenized examples.
pub trait Objective {
    /// `dpo` or `sft`.
    fn kind(&self) -> &'static str;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The data file's line of example `i` (for messages).
    fn line(&self, i: usize) -> usize;
    /// Length used to group examples into batches.
    fn length(&self, i: usize) -> usize;
    /// Tokens the model processes for example `i` (for tokens/s).
    fn tokens(&self, i: usize) -> usize;
    /// What the step's loss is averaged over: 1 per pair (DPO), scored tokens (SFT).
    fn weight(&self, i: usize) -> f64;
    /// Names of the per-step metrics, `loss` first.
    fn stat_names(&self) -> &'static [&'static str];
    /// The loss of a micro-batch summed over its units (differentiable), and the sums of the
    /// metrics in `stat_names` order.
    fn micro(&self, model: &Model, idx: &[usize]) -> Result<(Tensor, Vec<f64>)>;
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: u64,
    pub train_loss: f64,
    pub train_runtime: f64,
    pub tokens_per_second: f64,
    pub last: Map<String, Value>,
}

/// Where a run's files go.
pub fn metrics_path(out: &Path) -> PathBuf {
    out.join("metrics.jsonl")
}

/// BLAKE3 of the data file, so a resume on changed data is refused.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// The checkpoint to resume from, if `--resume` is given and one is there; refused when it was
/// written with other options or data.
pub fn find_resume(opts: &TrainOptions, kind: &str, data_digest: &str) -> Result<Option<Checkpoint>> {
    if !opts.resume {
        return Ok(None);
    }
    let Some(ck) = Checkpoint::find(&opts.out)? else {
        eprintln!("{kind}: --resume: no checkpoint in {}, starting from the beginning", opts.out.display());
        return Ok(None);
    };
    let want = opts.fingerprint(kind, data_digest);
    if ck.state.fingerprint != want {
        let (Value::Object(a), Value::Object(b)) = (&ck.state.fingerprint, &want) else { unreachable!("fingerprints are objects") };
        let diff: Vec<String> = b
            .iter()
            .filter(|(k, v)| a.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: checkpoint {} vs now {v}", a.get(k).unwrap_or(&Value::Null)))
            .collect();
        bail!("--resume: the checkpoint in {} was written by a different run ({}); start without --resume or use another --out", ck.dir.display(), diff.join("; "));
    }
    Ok(Some(ck))
}

/// Puts the adapter to train on the model: the checkpoint's when resuming, else the initial
/// adapter already loaded, else a fresh one.
pub fn attach_trainable(model: &mut Model, opts: &TrainOptions, resume: Option<&Checkpoint>) -> Result<()> {
    if let Some(ck) = resume {
        model.load_adapter(&ck.dir).with_context(|| format!("loading the checkpoint's adapter {}", ck.dir.display()))?;
    } else if model.lora.is_none() {
        let cfg = LoraConfig { r: opts.lora_r, alpha: opts.lora_alpha, dropout: opts.lora_dropout, ..LoraConfig::default() };
        model.add_lora(cfg, opts.seed).context("creating the LoRA adapter")?;
    }
    model.transformer.set_lora_enabled(true);
    Ok(())
}

fn torch_seed(seed: u64, step: u64, micro: usize) -> i64 {
    let mut r = crate::model::rng::Rng::new(seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ (micro as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
    (r.next_u64() >> 1) as i64
}

/// Seconds between the plain progress lines written when stderr is not a terminal (a log file, a
/// job on a remote machine), where the bar is hidden: `KEEL_PROGRESS_SECS`, default 60.
fn progress_every() -> f64 {
    std::env::var("KEEL_PROGRESS_SECS").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(60.0)
}

fn duration_text(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s % 3600 / 60) } else if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

fn progress(total: u64, done: u64, kind: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} steps (eta {eta}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_prefix(kind.to_string());
    pb.set_position(done);
    pb
}

/// Runs the loop from the checkpoint (or step 0) to the end, writing checkpoints, metrics, the
/// final adapter and the plot into `opts.out`. `started` is when the run began (data loading and
/// reference log-probs included in the runtime).
pub fn run(model: &mut Model, opts: &TrainOptions, obj: &dyn Objective, data_digest: &str, resume: Option<Checkpoint>, started: Instant) -> Result<Summary> {
    let n = obj.len();
    let lengths: Vec<usize> = (0..n).map(|i| obj.length(i)).collect();
    let per_epoch = batch::steps_per_epoch(n, opts.batch_size, opts.grad_accum);
    let total = per_epoch * opts.epochs;
    let sched = LrSchedule {
        peak: opts.lr,
        warmup_steps: (total as f64 * opts.warmup_ratio).ceil() as u64,
        total_steps: total,
        cosine: false,
    };
    keel_trajectory::private::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;

    let lora = model.lora.as_ref().context("no adapter to train")?;
    let mut named: Vec<(String, Tensor)> = lora.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(named, AdamWConfig::default());

    let (mut step, mut loss_sum, mut tokens_done, mut elapsed_before) = (0u64, 0.0f64, 0u64, 0.0f64);
    if let Some(ck) = &resume {
        opt.load(&ck.dir.join(checkpoint::OPTIMIZER), ck.state.step).context("loading the optimizer state")?;
        step = ck.state.step;
        loss_sum = ck.state.train_loss_sum;
        tokens_done = ck.state.tokens;
        elapsed_before = ck.state.elapsed_s;
        if ck.state.total_steps != total {
            bail!("--resume: the checkpoint plans {} steps, this run {total}", ck.state.total_steps);
        }
    }
    let mut log = MetricsLog::open(&metrics_path(&opts.out), resume.as_ref().map(|c| c.state.step))?;
    let fingerprint = opts.fingerprint(obj.kind(), data_digest);
    let use_autocast = model.transformer.device().is_cuda();
    let names = obj.stat_names();
    let pb = progress(total, step, obj.kind());
    let mut tokens_here = 0u64;
    let mut last = Map::new();
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0f64, 0f64, 0f64);
    // Where the bar is hidden (stderr is not a terminal), a plain line now and then instead.
    let plain = pb.is_hidden();
    let every = progress_every();
    let (loop_started, first_step) = (Instant::now(), step);
    let mut last_plain = Instant::now();

    while step < total {
        let (epoch, micros) = batch::step_micro_batches(&lengths, opts.batch_size, opts.grad_accum, opts.seed, step);
        let w: f64 = micros.iter().flatten().map(|&i| obj.weight(i)).sum();
        let w = w.max(1e-12);
        opt.zero_grad();
        model.transformer.set_train(true);
        let mut sums = vec![0f64; names.len()];
        for (mi, idx) in micros.iter().enumerate() {
            tch::manual_seed(torch_seed(opts.seed, step, mi));
            let t = Instant::now();
            let (loss, stats) = tch::autocast(use_autocast, || obj.micro(model, idx))?;
            t_fwd += secs(t);
            let v = stats.first().copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                bail!(
                    "step {}: the loss is not finite ({v}) on examples from lines {:?}; training stopped{}; try a lower --lr",
                    step + 1,
                    idx.iter().map(|&i| obj.line(i)).collect::<Vec<_>>(),
                    checkpoint_note(&opts.out)
                );
            }
            let t = Instant::now();
            (loss / w).backward();
            t_bwd += secs(t);
            for (s, x) in sums.iter_mut().zip(stats) {
                *s += x;
            }
            tokens_here += idx.iter().map(|&i| obj.tokens(i) as u64).sum::<u64>();
        }
        model.transformer.set_train(false);
        let t = Instant::now();
        let grad_norm = clip_grad_norm(opt.params(), opts.max_grad_norm);
        if !grad_norm.is_finite() {
            bail!(
                "step {}: the gradient norm is not finite ({grad_norm}); training stopped before the update{}; try a lower --lr",
                step + 1,
                checkpoint_note(&opts.out)
            );
        }
        let lr = sched.at(step);
        opt.step(lr);
        t_opt += secs(t);
        step += 1;

        let mut line = Map::new();
        for (k, s) in names.iter().zip(&sums) {
            line.insert((*k).to_string(), json!(s / w));
        }
        let loss = sums[0] / w;
        loss_sum += loss;
        line.insert("learning_rate".into(), json!(lr));
        line.insert("grad_norm".into(), json!(grad_norm));
        line.insert("epoch".into(), json!(epoch as f64 + ((step - epoch * per_epoch) as f64 / per_epoch.max(1) as f64)));
        line.insert("step".into(), json!(step));
        log.write(&line)?;
        pb.set_position(step);
        pb.set_message(format!("loss {loss:.4}"));
        if plain && (step == total || last_plain.elapsed().as_secs_f64() >= every) {
            let run = loop_started.elapsed().as_secs_f64();
            let per = run / (step - first_step) as f64;
            eprintln!(
                "{}: step {step}/{total}, loss {loss:.4}, {per:.2} s/step, {:.0} tokens/s, elapsed {}, eta {}",
                obj.kind(),
                tokens_here as f64 / run.max(1e-9),
                duration_text(run),
                duration_text(per * (total - step) as f64)
            );
            last_plain = Instant::now();
        }
        last = line;

        if step == total || (opts.save_steps > 0 && step % opts.save_steps == 0) {
            let state = State {
                kind: obj.kind().to_string(),
                step,
                total_steps: total,
                epoch,
                seed: opts.seed,
                shuffle: json!({"sampler": "length-grouped", "mega_batches": 50, "epoch_seed": "batch::epoch_rng(seed, epoch)", "torch_seed": "train::torch_seed(seed, step, micro)"}),
                fingerprint: fingerprint.clone(),
                train_loss_sum: loss_sum,
                tokens: tokens_done + tokens_here,
                elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
            };
            Checkpoint::write(&opts.out, model, &opt, &state)?;
        }
    }
    pb.finish_and_clear();
    tracing::info!(forward_s = t_fwd, backward_s = t_bwd, optimizer_s = t_opt, "{} loop", obj.kind());
    if std::env::var_os("KEEL_TRAIN_TIMES").is_some() {
        eprintln!("{}: loop times: forward {t_fwd:.2}s, backward {t_bwd:.2}s, clip+optimizer {t_opt:.2}s", obj.kind());
    }

    model.save_adapter(&opts.out).with_context(|| format!("writing the adapter to {}", opts.out.display()))?;
    let runtime = elapsed_before + started.elapsed().as_secs_f64();
    let tokens = tokens_done + tokens_here;
    let train_loss = if total > 0 { loss_sum / total as f64 } else { f64::NAN };
    let tps = tokens as f64 / runtime.max(1e-9);
    let mut summary = Map::new();
    summary.insert("train_runtime".into(), json!(runtime));
    summary.insert("train_tokens_per_second".into(), json!(tps));
    summary.insert("train_steps_per_second".into(), json!(total as f64 / runtime.max(1e-9)));
    summary.insert("train_loss".into(), json!(train_loss));
    summary.insert("train_tokens".into(), json!(tokens));
    summary.insert("epoch".into(), json!(opts.epochs as f64));
    summary.insert("total_steps".into(), json!(total));
    log.write(&summary)?;
    metrics::plot(&metrics_path(&opts.out), &opts.out.join("plot.png"), &format!("keel-train {}", obj.kind()))?;
    Ok(Summary { steps: total, train_loss, train_runtime: runtime, tokens_per_second: tps, last })
}

fn checkpoint_note(out: &Path) -> String {
    match Checkpoint::find(out) {
        Ok(Some(ck)) => format!(" (the last checkpoint, step {}, is in {})", ck.state.step, ck.dir.display()),
        _ => " (no checkpoint was written yet)".into(),
    }
}

/// Seconds since `t`, for the runtime of a stage.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The device of a model, for messages.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}
