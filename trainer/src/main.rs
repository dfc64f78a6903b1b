//! `keel-train`: the trainer's command line. Each subcommand parses its arguments here and calls
//! a plain function of the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel-train", version, about = "Keel's trainer: pairs, model, DPO, search, serve, schedule")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export human preference pairs from the store as TRL-format JSONL.
    Pairs(PairsArgs),
    /// Dump episodes (steps, decisions, observations, end) as full-fidelity JSONL.
    Export(ExportArgs),
    /// Load a JSONL dump made by `export` into a store (episodes already there are skipped).
    Import(ImportArgs),
    /// Write a small random model (Hugging Face layout, trained BPE tokenizer, chat template).
    InitModel(InitModelArgs),
    /// Convert a GGUF file (Ollama, llama.cpp) into a Hugging Face model folder.
    Convert(ConvertArgs),
    /// Log-probabilities of each pair's chosen and rejected completions (JSONL).
    Score(ScoreArgs),
    /// Supervised LoRA fine-tuning on prompt/completion lines (loss on the completion only).
    Sft(SftArgs),
    /// Sigmoid DPO of a LoRA adapter on preference pairs (TRL's DPOTrainer, in tch).
    Dpo(DpoArgs),
    /// List model versions, promote one, or roll back to an earlier one.
    Models(ModelsArgs),
    /// Find the critical decisions of recorded episodes by MCTS and write them as preference pairs.
    Search(SearchArgs),
    /// Write what TRL needs to run Keel's training elsewhere (GPU box, cluster via accelerate):
    /// the pairs and SFT examples as Keel tokenizes them, the hyper-parameters, a TRL script and
    /// accelerate configurations.
    ExportTrain(ExportTrainArgs),
    /// Serve the policy over an OpenAI-compatible API (the default endpoint of keel-lsp).
    Serve(ServeArgs),
    /// Retrain on a schedule: pairs → search → sft → dpo → evaluation gate → promotion.
    Schedule(ScheduleArgs),
    /// Run the agent on a suite of tasks in containers and measure it (success, invalid calls,
    /// loops, empty patches, steps).
    Eval(EvalArgs),
    /// Collect trajectories on tasks into the store, each with its verification outcome (SEAlign's
    /// trajectory collection), for `search` and `pairs`.
    Collect(CollectArgs),
    /// The whole loop on tasks: collect → search → sft → dpo, and eval before and after on
    /// held-out tasks (RUN_DIR/report.json, RUN_DIR/adapter/).
    Loop(LoopArgs),
    /// The scheduler's runs, oldest first: stage, status, attempts, error, candidate, gate verdict.
    Runs(RunsArgs),
    /// Compare eval reports: after against before, each pooled over one or more reports (seeds),
    /// with the paired success difference over tasks and the task gate's verdict.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
struct LoopArgs {
    /// The base model (a Hugging Face folder; default: the default model, see `serve --help`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the run's files go: report.json, adapter/, the evals, the store of collected episodes.
    #[arg(long)]
    out: PathBuf,
    /// Training splits (default: the shipped suites' `train/` splits found under ./tasks and
    /// ./.keel/tasks).
    #[arg(long)]
    tasks: Vec<PathBuf>,
    /// Held-out splits, only ever evaluated (default: the shipped suites' `heldout/` splits).
    #[arg(long)]
    heldout: Vec<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// sft, dpo-all, dpo-critical, or sft+dpo.
    #[arg(long, default_value = "sft+dpo")]
    recipe: String,
    /// Start from this adapter.
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// Episodes per training task (0: no collection, the demonstrations only).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Episodes per held-out task, before and after.
    #[arg(long, default_value_t = 2)]
    eval_samples: usize,
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    #[arg(long, default_value_t = 1.0)]
    collect_temperature: f64,
    #[arg(long, default_value_t = 0.7)]
    eval_temperature: f64,
    /// The step budget of tasks that set none.
    #[arg(long, default_value_t = 8)]
    max_steps: usize,
    #[arg(long, default_value_t = 160)]
    max_tokens: usize,
    #[arg(long)]
    max_train_tasks: Option<usize>,
    #[arg(long)]
    max_heldout_tasks: Option<usize>,
    #[arg(long)]
    image: Option<String>,
    /// MCTS simulations per task tree.
    #[arg(long, default_value_t = 12)]
    simulations: usize,
    #[arg(long, default_value_t = 2)]
    expand: usize,
    #[arg(long, default_value_t = 0.3)]
    margin: f64,
    #[arg(long, default_value_t = 1)]
    min_visits: u32,
    #[arg(long, default_value_t = 2)]
    sft_epochs: u64,
    #[arg(long, default_value_t = 2e-4)]
    sft_lr: f64,
    /// SFT on packed episodes (`sft --pack`): each episode's steps in one sequence.
    #[arg(long)]
    sft_pack: bool,
    #[arg(long, default_value_t = 1)]
    dpo_epochs: u64,
    #[arg(long, default_value_t = 5e-5)]
    dpo_lr: f64,
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    #[arg(long, default_value_t = 16)]
    lora_r: i64,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    #[arg(long, default_value_t = 2048)]
    max_length: usize,
    /// Examples per forward pass; the optimiser steps every `batch_size × grad_accum` examples
    /// (prompts of the real model run to 2,000 tokens: one at a time keeps SFT within a few GB).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value_t = 4)]
    grad_accum: usize,
    /// Held-out reports of the starting policy to reuse (one per held-out split, same order).
    #[arg(long)]
    baseline: Vec<PathBuf>,
    /// No demonstrations: train only on what the model itself did (by default every training
    /// task that ships its fix adds one demonstration episode: run the tests, read, the fix, run, finish).
    #[arg(long)]
    no_demos: bool,
    /// Recoveries: for each failed model episode, the task's fix taking over at the first state
    /// after the model's edit where it would act otherwise (run the tests, read, one edit to the
    /// fixed text, run, finish); search pairs its step with the model's there
    #[arg(long)]
    recover: bool,
    /// Pairs of earlier rounds, trained on with this round's: a pairs JSONL, or an earlier run's
    /// folder (its `pairs.jsonl`; `pairs-all.jsonl` for `dpo-all`). Repeatable. DPO pushes only
    /// where the model and the better step part, so one round's pairs alone can undo what earlier
    /// rounds taught (docs/benchmarks.md, R2 and R3)
    #[arg(long)]
    prior_pairs: Vec<PathBuf>,
    /// A simulated user decides the edits and commands of the collected, demonstrated and
    /// evaluated episodes by a stated rule (`tests`), recorded as a person's decisions
    #[arg(long)]
    user_rule: Option<String>,
}

/// `--model`, or the default model when it is not given.
fn default_model(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(m) => Ok(m),
        None => keel_trainer::model::default_dir().map_err(anyhow::Error::msg),
    }
}

/// The shipped suites' splits named `split` under ./tasks and ./.keel/tasks.
fn shipped_splits(split: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in ["tasks", ".keel/tasks"] {
        let Ok(rd) = std::fs::read_dir(base) else { continue };
        let mut suites: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.join(split).is_dir() && !p.ends_with("smoke")).collect();
        suites.sort();
        out.extend(suites.into_iter().map(|p| p.join(split)));
    }
    out
}

fn learn(a: LoopArgs) -> Result<()> {
    use keel_trainer::learn;
    let tasks = if a.tasks.is_empty() { shipped_splits("train") } else { a.tasks };
    let heldout = if a.heldout.is_empty() { shipped_splits("heldout") } else { a.heldout };
    anyhow::ensure!(!tasks.is_empty(), "no training split: give --tasks DIR (or run from the repository, where tasks/ and .keel/tasks/ hold the shipped suites)");
    anyhow::ensure!(!heldout.is_empty(), "no held-out split: give --heldout DIR");
    let model = default_model(a.model)?;
    let mut train = keel_trainer::train::TrainOptions::new(model.clone(), PathBuf::new(), PathBuf::new());
    train.device = a.device.clone();
    train.seed = a.seed;
    train.beta = a.beta;
    train.lora_r = a.lora_r;
    train.lora_alpha = a.lora_alpha;
    train.max_length = a.max_length;
    train.batch_size = a.batch_size;
    train.grad_accum = a.grad_accum.max(1);
    train.save_steps = 0;
    train.pack = a.sft_pack;
    let cfg = learn::LoopConfig {
        model,
        init_adapter: a.init_adapter,
        out: a.out,
        tasks,
        heldout,
        seed: a.seed,
        device: a.device,
        recipe: learn::Recipe::parse(&a.recipe)?,
        samples: a.samples,
        eval_samples: a.eval_samples.max(1),
        parallel: a.parallel.max(1),
        collect_temperature: a.collect_temperature,
        eval_temperature: a.eval_temperature,
        max_steps: a.max_steps.max(1),
        max_tokens: a.max_tokens,
        max_train_tasks: a.max_train_tasks,
        max_heldout_tasks: a.max_heldout_tasks,
        image: a.image,
        search: keel_trainer::search::SearchConfig {
            simulations: a.simulations,
            expand: a.expand.max(1),
            margin: a.margin,
            max_depth: a.max_steps.max(1),
            parallel: a.parallel.max(1),
            seed: a.seed,
            min_visits: a.min_visits.max(1),
            ..Default::default()
        },
        train,
        sft_epochs: a.sft_epochs,
        sft_lr: a.sft_lr,
        dpo_epochs: a.dpo_epochs,
        dpo_lr: a.dpo_lr,
        baseline: a.baseline,
        demos: !a.no_demos,
        recover: a.recover,
        prior_pairs: a.prior_pairs,
        user: a.user_rule.as_deref().map(keel_trainer::user_rule::UserRule::parse).transpose()?,
    };
    let report = learn::run(&cfg)?;
    eprint!("{}", learn::summary(&report));
    eprintln!("report → {}", cfg.out.join("report.json").display());
    Ok(())
}

/// The policy an agent run samples from, and how the runs go (`eval`, `collect`).
#[derive(clap::Args)]
struct AgentRunArgs {
    /// A folder of tasks: a suite, one of its splits, or one task (docs/tasks.md).
    #[arg(long)]
    tasks: PathBuf,
    /// The policy: a Hugging Face model folder, run in this process (default: the default model,
    /// see `serve --help`) ...
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, conflicts_with = "endpoint")]
    adapter: Option<PathBuf>,
    /// ... or an OpenAI-compatible endpoint (keel-train serve, vLLM, Ollama).
    #[arg(long, conflicts_with = "model")]
    endpoint: Option<String>,
    /// The model id to ask the endpoint for (and the name versions carry).
    #[arg(long, default_value = "keel")]
    model_name: String,
    /// Episodes per task.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Episodes at once (each in its own container; model calls are batched across them).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The image of tasks that name none (default: the Python image `cargo xtask setup` builds).
    #[arg(long)]
    image: Option<String>,
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// The step budget of tasks that set none.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// The most tokens one answer may take.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run at most this many tasks (a choice fixed by the seed).
    #[arg(long)]
    max_tasks: Option<usize>,
    /// A simulated user decides every edit and command by a stated rule, recorded as a person's
    /// decisions (`tests`: run the tests, leave them alone; docs/tasks.md)
    #[arg(long)]
    user_rule: Option<String>,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    run: AgentRunArgs,
    /// The report (JSON); a plot is written beside it (`.png`).
    #[arg(long)]
    out: PathBuf,
    /// Also record the episodes in this store.
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CollectArgs {
    #[command(flatten)]
    run: AgentRunArgs,
    /// The store the episodes go to (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Also write the report (JSON, as `eval` writes it).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SearchArgs {
    /// The trajectory store (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The policy: a Hugging Face model folder, run in this process (default: the default model,
    /// see `serve --help`) ...
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// ... or an OpenAI-compatible endpoint (keel-train serve, vLLM, Ollama).
    #[arg(long, conflicts_with = "model")]
    endpoint: Option<String>,
    /// The model id to ask the endpoint for.
    #[arg(long, default_value = "keel")]
    model_name: String,
    /// Where to write the pairs of the critical decisions (JSONL).
    #[arg(long)]
    out: PathBuf,
    /// Where to write the search trees (JSON, one object per episode).
    #[arg(long)]
    tree: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    simulations: usize,
    /// Alternatives sampled when a state is expanded.
    #[arg(long, default_value_t = 3)]
    expand: usize,
    #[arg(long, default_value_t = 1.0)]
    c_uct: f64,
    /// How far apart the best and worst children's values must be for a critical decision.
    #[arg(long, default_value_t = 0.5)]
    margin: f64,
    #[arg(long, default_value_t = 8)]
    max_depth: usize,
    /// Rollouts run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Visits each child needs before its value counts.
    #[arg(long, default_value_t = 2)]
    min_visits: u32,
    /// The verification command for episodes that recorded none (e.g. the project's tests).
    #[arg(long)]
    verify: Option<String>,
    /// The container engine: `docker` (DOCKER_HOST, Podman's socket works too; a remote engine is
    /// `tcp://` with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, or `ssh://`: docs/sandbox.md).
    #[arg(long, default_value = "docker")]
    sandbox: String,
    /// The image rollouts run in (e.g. the Python image `cargo xtask setup` builds, or one with the
    /// project's toolchain); default: the sandbox's busybox base image.
    #[arg(long)]
    image: Option<String>,
    /// Only episodes created at or after this time.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Options shared by `sft` and `dpo`.
#[derive(clap::Args)]
struct TrainArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Where to write the adapter (PEFT layout), metrics.jsonl, plot.png and checkpoints.
    #[arg(long)]
    out: PathBuf,
    /// Start from this PEFT adapter (for DPO also the reference, as in TRL).
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// Peak learning rate (linear warm-up, then linear decay to 0).
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// Examples (pairs) per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 16)]
    lora_r: i64,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f64,
    /// Longest prompt + completion in tokens: completions are cut, prompts that fill it are skipped.
    #[arg(long, default_value_t = 1024)]
    max_length: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// cpu, cuda or cuda:N (bf16 autocast on CUDA).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// A checkpoint every N optimizer steps (0: only at the end).
    #[arg(long, default_value_t = 50)]
    save_steps: u64,
    /// Fraction of the steps spent warming up.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
}

impl TrainArgs {
    fn options(self, data: PathBuf, beta: f64) -> keel_trainer::train::TrainOptions {
        keel_trainer::train::TrainOptions {
            model: self.model,
            data,
            out: self.out,
            init_adapter: self.init_adapter,
            beta,
            lr: self.lr,
            epochs: self.epochs,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lora_r: self.lora_r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            max_length: self.max_length,
            seed: self.seed,
            device: self.device,
            resume: self.resume,
            save_steps: self.save_steps,
            warmup_ratio: self.warmup_ratio,
            max_grad_norm: 1.0,
            pack: false,
        }
    }
}

#[derive(clap::Args)]
struct SftArgs {
    /// Prompt/completion JSONL (or pairs: their chosen side).
    #[arg(long)]
    data: PathBuf,
    /// Pack the steps of an episode into one sequence: where a line's prompt and completion are
    /// the start of the next line's prompt (`collect`, `loop` and the store's exports write an
    /// episode's steps in order), train on both completions in one pass over the shared history.
    /// The same loss, fewer tokens; a packed episode counts as one example for --batch-size and
    /// --grad-accum.
    #[arg(long)]
    pack: bool,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(clap::Args)]
struct DpoArgs {
    /// Pairs JSONL (TRL format: prompt, chosen, rejected, optional tools and meta).
    #[arg(long)]
    pairs: PathBuf,
    /// DPO's β.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(clap::Args)]
struct ExportTrainArgs {
    /// Pairs files (TRL JSONL: `keel-train pairs`, `search`); default: the store's pairs.
    #[arg(long)]
    pairs: Vec<PathBuf>,
    /// The trajectory store to take the pairs from when no --pairs is given.
    #[arg(long)]
    store: Option<PathBuf>,
    /// SFT examples (prompt/completion lines, or pairs whose chosen side is the completion).
    #[arg(long)]
    sft: Option<PathBuf>,
    #[arg(long, default_value_t = 1e-4)]
    sft_lr: f64,
    #[arg(long, default_value_t = 1)]
    sft_epochs: u64,
    /// DPO's β.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json). Default: the
    /// default model, SmolLM2-135M-Instruct: `$KEEL_MODEL_DIR`, else
    /// `.keel/models/smollm2-135m-instruct` here or in a folder above (`cargo xtask setup` makes it),
    /// else `~/.local/share/keel/models/smollm2-135m-instruct`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A PEFT LoRA adapter folder to serve on top of the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The address to listen on: loopback by default; any other needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8741)]
    port: u16,
    /// The environment variable that holds the API key clients must send as
    /// `Authorization: Bearer <key>` (default: KEEL_API_KEY when it is set). Required with a
    /// non-loopback --host.
    #[arg(long)]
    api_key_env: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The model id clients ask for and versions are named after.
    #[arg(long, default_value = "keel")]
    name: String,
    /// Follow this store's live model version (hot-swapping adapters as it changes).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Requests run together in one batch at most.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Default max_tokens of a request.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
}

#[derive(clap::Args)]
struct ScheduleArgs {
    /// The schedule's configuration (TOML; see docs/real-setup.md).
    #[arg(long)]
    config: PathBuf,
    /// One pass (for cron and systemd timers), then exit.
    #[arg(long)]
    once: bool,
    /// Seconds between passes when running continuously.
    #[arg(long, default_value_t = 60)]
    every: u64,
}

#[derive(clap::Args)]
struct ModelsArgs {
    /// The trajectory store (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    #[command(subcommand)]
    action: ModelsAction,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Every version, oldest first; `*` marks the live one.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a version live (atomically; `keel-train serve --store` follows it).
    Promote { id: String },
    /// Make an earlier version live again: `--to ID`, else the live version's parent.
    Rollback {
        #[arg(long)]
        to: Option<String>,
    },
    /// Add an adapter trained elsewhere (`export-train`, then TRL) as a candidate version; with
    /// `--judge PAIRS` the evaluation gate scores it against the live version on those held-out
    /// pairs, and `--promote` makes it live if the gate passes it.
    Add {
        /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).
        #[arg(long)]
        adapter: PathBuf,
        /// Its base model (default: the live version's, else the default model).
        #[arg(long)]
        base: Option<PathBuf>,
        /// The model name versions carry (`name@hash`).
        #[arg(long, default_value = "keel")]
        name: String,
        /// Held-out pairs (TRL JSONL) to judge it on.
        #[arg(long)]
        judge: Option<PathBuf>,
        #[arg(long, requires = "judge")]
        promote: bool,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Online A/B of a candidate against the live version: `keel-train serve --store` sends
    /// `--share` of episodes to it, and the users' decisions judge it (sequential test on
    /// acceptance and reversal rates; docs/real-setup.md, "team").
    Ab {
        #[command(subcommand)]
        action: AbAction,
    },
}

#[derive(Subcommand)]
enum AbAction {
    /// Start serving a candidate to a share of episodes.
    Start {
        id: String,
        /// Share of episodes the candidate serves, in (0, 1).
        #[arg(long)]
        share: f64,
        /// The test's level (chance of a verdict between equally good versions).
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// No verdict before each arm has this many reviewed proposals.
        #[arg(long, default_value_t = 20)]
        min_decisions: u64,
        /// Both arms past this many with no clear difference: the live version stays.
        #[arg(long, default_value_t = 1000)]
        max_decisions: u64,
    },
    /// The running A/B's figures and verdict so far (nothing changes).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Judge the running A/B; with `--apply`, promote or roll back when the verdict is clear.
    Judge {
        #[arg(long)]
        apply: bool,
    },
    /// Stop the running A/B without a verdict (the candidate is withdrawn).
    Stop,
}

#[derive(clap::Args)]
struct InitModelArgs {
    /// Model size: tiny (hidden 64, 2 layers) or small (hidden 256, 4 layers).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// The folder to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Architecture: qwen2 or llama.
    #[arg(long, default_value = "qwen2")]
    family: String,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// The GGUF file (v2/v3; llama or qwen2 architecture; F32, F16, BF16, Q4_0/1, Q5_0/1, Q8_0,
    /// Q2_K-Q6_K tensors; byte-level BPE or SentencePiece vocabulary).
    #[arg(long)]
    gguf: PathBuf,
    /// The model folder to write (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Precision of the written weights: f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn convert(a: ConvertArgs) -> Result<()> {
    let dtype = keel_trainer::convert::OutDtype::parse(&a.dtype).with_context(|| format!("--dtype `{}`: use f32 or bf16", a.dtype))?;
    let start = std::time::Instant::now();
    let r = keel_trainer::convert::convert(&a.gguf, &a.out, dtype)?;
    let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "converted {} ({}, {} layers, hidden {}, vocab {}; tensors: {}) into {} tensors, {:.0} MB, in {:.1}s → {}",
        a.gguf.display(),
        r.architecture,
        r.config.num_hidden_layers,
        r.config.hidden_size,
        r.config.vocab_size,
        types.join(", "),
        r.tensors,
        r.bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    if !r.skipped.is_empty() {
        eprintln!("not part of the model, left out: {}", r.skipped.join(", "));
    }
    Ok(())
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// A Hugging Face model folder.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Pairs JSONL (TRL format: prompt, chosen, rejected, optional tools).
    #[arg(long)]
    pairs: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
}

fn init_model(a: InitModelArgs) -> Result<()> {
    let family = keel_trainer::model::Family::parse(&a.family)
        .with_context(|| format!("unknown family `{}` (qwen2 or llama)", a.family))?;
    let opts = keel_trainer::init_model::InitOptions { preset: a.preset, family, seed: a.seed };
    keel_trainer::init_model::init_model(&a.out, &opts)?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    let opts = keel_trainer::score::ScoreOptions {
        model: a.model,
        adapter: a.adapter,
        pairs: a.pairs,
        device: a.device,
        batch_size: a.batch_size,
    };
    keel_trainer::score::run(&opts, &mut std::io::stdout().lock())
}

#[derive(clap::Args)]
struct PairsArgs {
    /// The trajectory store (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The output file (JSONL: the pairs, or for `export` the episodes); `-` for standard output.
    #[arg(long)]
    out: PathBuf,
    /// Only episodes created at or after this time (milliseconds, or a date like 2026-11-24T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    base: PairsArgs,
    /// Only episodes with a step from this model version.
    #[arg(long)]
    model_version: Option<String>,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The trajectory store to load into (created if missing).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The dump (JSONL from `keel-train export`); `-` for standard input.
    file: PathBuf,
}

fn main() -> Result<()> {
    // Everything keel-train and its children write (adapters, pairs, logs, scores, plots) is private.
    keel_trajectory::private::set_umask();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Pairs(a) => pairs(a),
        Command::Export(a) => export(a),
        Command::Import(a) => import(a),
        Command::InitModel(a) => init_model(a),
        Command::Convert(a) => convert(a),
        Command::Score(a) => score(a),
        Command::Sft(a) => {
            let mut o = a.train.options(a.data, 0.1);
            o.pack = a.pack;
            keel_trainer::sft::run(&o).map(|_| ())
        }
        Command::Dpo(a) => keel_trainer::dpo::run(&a.train.options(a.pairs, a.beta)).map(|_| ()),
        Command::Models(a) => models(a),
        Command::ExportTrain(a) => export_train(a),
        Command::Serve(a) => serve(a),
        Command::Search(a) => search(a),
        Command::Eval(a) => agent_run(a.run, Some(a.out), a.store.map(Some), "keel-train eval"),
        Command::Collect(a) => agent_run(a.run, a.out, Some(a.store), "keel-train collect"),
        Command::Loop(a) => learn(a),
        Command::Schedule(a) => {
            let cfg = keel_trainer::schedule::Config::load(&a.config)?;
            keel_trainer::schedule::run(&cfg, a.once, std::time::Duration::from_secs(a.every.max(1)))
        }
        Command::Runs(a) => runs(a),
        Command::Compare(a) => compare(a),
    }
}

/// The policy to sample from: a model folder in this process, or an OpenAI-compatible endpoint.
fn make_policy(
    model: Option<&std::path::Path>,
    adapter: Option<&std::path::Path>,
    endpoint: Option<&str>,
    name: &str,
    device: &str,
    temperature: f64,
    max_tokens: usize,
) -> Result<Box<dyn keel_trainer::search::Policy>> {
    use keel_trainer::{search::policy, serve::tch_engine::TchEngine};
    Ok(match (model, endpoint) {
        (Some(m), _) => Box::new(policy::ModelPolicy::new(TchEngine::load(m, adapter, device, name)?, temperature, max_tokens)),
        (None, Some(e)) => Box::new(policy::EndpointPolicy::new(e, name, temperature)?),
        (None, None) => Box::new(policy::ModelPolicy::new(TchEngine::load(&default_model(None)?, adapter, device, name)?, temperature, max_tokens)),
    })
}

/// `eval` and `collect`: the agent on a suite of tasks.
fn agent_run(a: AgentRunArgs, out: Option<PathBuf>, store: Option<Option<PathBuf>>, client: &str) -> Result<()> {
    use keel_trainer::eval;
    let (tasks, errors) = keel_agent::task::discover(&a.tasks).map_err(|e| anyhow::anyhow!(e))?;
    for e in &errors {
        eprintln!("skipped: {e}");
    }
    let tasks = keel_trainer::learn::subset(tasks, a.max_tasks, a.seed);
    anyhow::ensure!(!tasks.is_empty(), "no usable task in {}", a.tasks.display());
    let store = store.map(open_store).transpose()?;
    let writer = store.as_ref().map(|s| s.writer()).transpose()?;
    let policy = make_policy(a.model.as_deref(), a.adapter.as_deref(), a.endpoint.as_deref(), &a.model_name, &a.device, a.temperature, a.max_tokens)?;
    let cfg = eval::EvalConfig {
        samples: a.samples.max(1),
        parallel: a.parallel.max(1),
        seed: a.seed,
        image: a.image,
        temperature: a.temperature,
        max_steps: a.max_steps.max(1),
        client: client.to_string(),
        user: a.user_rule.as_deref().map(keel_trainer::user_rule::UserRule::parse).transpose()?,
        ..Default::default()
    };
    let model = keel_trajectory::ModelRef { name: a.model_name.clone(), version: policy.version() };
    let envs = eval::Envs::new(None);
    let total = tasks.len() * cfg.samples;
    let done = std::sync::atomic::AtomicUsize::new(0);
    eprintln!("{client}: {} task(s) × {} sample(s), {} at once", tasks.len(), cfg.samples, cfg.parallel);
    let progress = |r: &eval::EpisodeResult| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let what = r.error.clone().unwrap_or_else(|| r.actions.join(" "));
        eprintln!("[{n}/{total}] {} #{}: {} in {} steps ({:.1} s): {what}", r.task, r.sample, if r.success { "solved" } else if r.error.is_some() { "did not run to an outcome" } else { "failed" }, r.steps, r.wall_ms as f64 / 1000.0);
    };
    let mut run = eval::run_suite(&tasks, policy.as_ref(), &envs, &cfg, &model, writer.as_ref(), &progress);
    run.task_errors.extend(errors);
    if let Some(w) = &writer {
        w.flush().wait().context("writing the episodes to the store")?;
    }
    eprint!("{}", eval::table(&run));
    let model = keel_trajectory::ModelRef { version: policy.version(), ..model };
    if let Some(out) = out {
        let report = eval::report_json(&run, &cfg, &model, &a.tasks);
        eval::write_report(&report, &out)?;
        let png = out.with_extension("png");
        if let Err(e) = eval::plot(&eval::summarize(&run.results), &png, &format!("{client}: {}", a.tasks.display())) {
            eprintln!("no plot: {e:#}");
        }
        eprintln!("report → {}", out.display());
    }
    if let Some(s) = &store {
        eprintln!("{} episode(s) recorded in {}", run.results.iter().filter(|r| r.episode.is_some()).count(), s.path().display());
    }
    // The report (with every task's error) is written; a run with no outcome still fails.
    run.ensure_ran()
}

fn search(a: SearchArgs) -> Result<()> {
    use keel_trainer::search::{self, SearchConfig, sandbox_env::SandboxEnv};
    anyhow::ensure!(a.sandbox == "docker", "--sandbox: only `docker` (the Docker Engine API; Podman's socket works) is supported");
    let store = open_store(a.store)?;
    let since = a.since.as_deref().map(|s| store.parse_time(s)).transpose()?;
    let cfg = SearchConfig {
        simulations: a.simulations,
        expand: a.expand.max(1),
        c_uct: a.c_uct,
        margin: a.margin,
        max_depth: a.max_depth.max(1),
        parallel: a.parallel.max(1),
        seed: a.seed,
        min_visits: a.min_visits.max(1),
        verify: a.verify,
        ..Default::default()
    };
    let env = SandboxEnv::connect(None, a.image.clone())?;
    let policy = make_policy(a.model.as_deref(), a.adapter.as_deref(), a.endpoint.as_deref(), &a.model_name, &a.device, 1.0, 256)?;
    let mut lines = Vec::new();
    let mut trees = Vec::new();
    let (mut episodes, mut found_total) = (0, 0);
    let mut failed: Vec<String> = Vec::new();
    // Episodes that start from the same state (the samples of one task) share one tree: their
    // common prefixes merge, as SEAlign merges them.
    let mut groups: Vec<(String, Vec<keel_trajectory::EpisodeTree>)> = Vec::new();
    for e in store.episodes(&keel_trajectory::EpisodeFilter { since, ..Default::default() })? {
        let Some(t) = store.tree(e.id)? else { continue };
        let Some(root) = t.steps.iter().find(|s| s.step.parent_id.is_none()).map(|s| s.step.state_hash.clone()) else { continue };
        let key = format!("{root}:{}", serde_json::to_string(&(&t.episode.workspace, &t.episode.verify, &t.episode.protected))?);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    for (_, group) in groups {
        let Some(mut tree) = search::Tree::from_episodes(&group, &cfg.values) else { continue };
        if tree.episode.verify.is_none() && cfg.verify.is_none() {
            eprintln!("episode {}: no verification command; skipped (give --verify)", tree.episode.id);
            continue;
        }
        // A tree whose search fails (its rollouts lost, the model unreachable) costs that tree: the
        // others' pairs and trees are still written, and the command fails naming it.
        let stats = match search::search(&mut tree, &policy.as_ref(), &env, &cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("search: episode {}: {e:#}", tree.episode.id);
                failed.push(tree.episode.id.to_string());
                continue;
            }
        };
        let found = search::critical(&tree, &cfg);
        eprint!("{}", search::summary(&tree, &found, &stats));
        for p in search::pairs(&tree, &found, policy.version().as_deref()) {
            lines.push(serde_json::to_string(&p)?);
        }
        trees.push(search::tree_json(&tree, &found));
        episodes += 1;
        found_total += found.len();
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    keel_trainer::pairs::write_atomic(&a.out, out.as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(t) = &a.tree {
        keel_trainer::pairs::write_atomic(t, serde_json::to_string_pretty(&trees)?.as_bytes())?;
    }
    eprintln!("{found_total} critical decision(s) in {episodes} episode(s) → {}", a.out.display());
    if !failed.is_empty() {
        anyhow::bail!("the search of {} of {} episode(s) failed ({}); the others' pairs are in {}", failed.len(), failed.len() + episodes, failed.join(", "), a.out.display());
    }
    Ok(())
}

fn export_train(a: ExportTrainArgs) -> Result<()> {
    let mut pairs = a.pairs;
    let out = a.train.out.clone();
    if pairs.is_empty() && a.sft.is_none() {
        let store = open_store(a.store)?;
        let p = out.join("pairs.jsonl");
        let stats = keel_trainer::pairs::export(&store, None, &p)?;
        eprintln!("export-train: {stats}");
        pairs.push(p);
    }
    let opts = keel_trainer::export_train::ExportOptions { train: a.train.options(PathBuf::new(), a.beta), pairs, sft: a.sft, sft_lr: a.sft_lr, sft_epochs: a.sft_epochs };
    let done = keel_trainer::export_train::export(&opts)?;
    eprintln!(
        "export-train: {} pairs ({} skipped), {} SFT examples ({} skipped) → {}; run it with: accelerate launch --config_file {}/accelerate.yaml {}/train.py",
        done.pairs,
        done.pairs_skipped,
        done.sft_examples,
        done.sft_skipped,
        out.display(),
        out.display(),
        out.display()
    );
    Ok(())
}

fn serve(a: ServeArgs) -> Result<()> {
    use keel_trainer::serve::{self, engine, tch_engine::TchEngine};
    let api_key = match &a.api_key_env {
        Some(name) => Some(std::env::var(name).ok().filter(|k| !k.is_empty()).with_context(|| format!("--api-key-env {name}: the variable is not set or empty"))?),
        None => std::env::var("KEEL_API_KEY").ok().filter(|k| !k.is_empty()),
    };
    // Before the model loads: a refused address fails at once.
    serve::check_bind(&a.host, api_key.as_deref())?;
    let model = default_model(a.model)?;
    eprintln!("keel-train serve: model {}", model.display());
    let e = TchEngine::load(&model, a.adapter.as_deref(), &a.device, &a.name)?;
    let handle = engine::spawn(Box::new(e), a.max_batch.max(1), std::time::Duration::from_millis(5));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve::run(
        handle,
        serve::ServeConfig { host: a.host, port: a.port, model_id: a.name, store: a.store, poll: std::time::Duration::from_secs(2), max_tokens: a.max_tokens, api_key },
    ))
}

fn open_store(path: Option<PathBuf>) -> Result<keel_trajectory::Store> {
    let path = path.unwrap_or_else(keel_trajectory::default_path);
    keel_trajectory::Store::open(&path)
        .with_context(|| format!("opening store {}", keel_trajectory::redact_location(&path.to_string_lossy())))
}

fn models(a: ModelsArgs) -> Result<()> {
    use keel_trainer::models;
    let mut store = open_store(a.store)?;
    match a.action {
        ModelsAction::List { json } => {
            let versions = store.model_versions()?;
            if json {
                for v in versions {
                    println!("{}", serde_json::to_string(&v)?);
                }
            } else {
                print!("{}", models::table(&versions));
            }
        }
        ModelsAction::Promote { id } => {
            let v = models::promote(&mut store, &id)?;
            println!("live: {}", v.id);
        }
        ModelsAction::Rollback { to } => {
            let v = models::rollback(&mut store, to.as_deref())?;
            println!("rolled back; live: {}", v.id);
        }
        ModelsAction::Add { adapter, base, name, judge, promote, device } => {
            let base = match base {
                Some(b) => b,
                None => match store.live_model_version()? {
                    Some(v) => PathBuf::from(v.base_model),
                    None => default_model(None)?,
                },
            };
            let base = std::fs::canonicalize(&base).with_context(|| format!("base model {}", base.display()))?;
            // Beside a store file; for a PostgreSQL store, in this machine's Keel data folder.
            let dest = if store.is_postgres() {
                keel_trajectory::data_dir().join("adapters")
            } else {
                store.path().parent().map(|p| p.join("adapters")).unwrap_or_else(|| PathBuf::from("adapters"))
            };
            let v = models::add(&store, &adapter, &base.to_string_lossy(), &name, &dest)?;
            println!("added: {} (adapter {})", v.id, v.adapter_path.as_deref().unwrap_or(""));
            if let Some(pairs) = judge {
                let report = models::judge(&store, &v, &pairs, &device, &keel_trainer::schedule::Gate::default())?;
                print!("{}", report.table(store.live_model_version()?.as_ref().map(|l| l.id.as_str()).unwrap_or("base")));
                println!("decision: {} — {}", if report.promote { "promote" } else { "refuse" }, report.why);
                if promote && report.promote {
                    let live = models::promote(&mut store, &v.id)?;
                    println!("live: {}", live.id);
                } else if promote {
                    anyhow::bail!("the gate refused {}: {}", v.id, report.why);
                }
            }
        }
        ModelsAction::Ab { action } => ab(&mut store, action)?,
    }
    Ok(())
}

fn ab(store: &mut keel_trajectory::Store, action: AbAction) -> Result<()> {
    use keel_trainer::ab;
    match action {
        AbAction::Start { id, share, alpha, min_decisions, max_decisions } => {
            let cfg = ab::AbConfig { share, alpha, min_decisions, max_decisions, ..ab::AbConfig::new(share) };
            let v = ab::start(store, &id, &cfg)?;
            println!("A/B started: {} serves {:.0}% of episodes (keel-train serve --store follows)", v.id, share * 100.0);
        }
        AbAction::Status { json } => match ab::status(store)? {
            None => println!("no A/B is running"),
            Some((cand, live, c, verdict)) if json => println!(
                "{}",
                serde_json::json!({"candidate": cand.id, "verdict": verdict.name(), "why": verdict.why(),
                    "live": {"reviewed": live.reviewed, "accepted": live.accepted, "reverted": live.reverted},
                    "candidate_stats": {"reviewed": c.reviewed, "accepted": c.accepted, "reverted": c.reverted}})
            ),
            Some((cand, _, _, verdict)) => println!("{}", ab::line(&cand, &verdict)),
        },
        AbAction::Judge { apply } => {
            let r = if apply { ab::judge_and_apply(store)? } else { ab::status(store)?.map(|(c, _, _, v)| (c, v)) };
            match r {
                None => println!("no A/B is running"),
                Some((cand, verdict)) => {
                    println!("{}", ab::line(&cand, &verdict));
                    if apply {
                        match verdict {
                            ab::Verdict::Promote(_) => println!("live: {}", cand.id),
                            ab::Verdict::Rollback(_) => println!("rolled back: {} withdrawn; the live version stays", cand.id),
                            ab::Verdict::Continue(_) => {}
                        }
                    }
                }
            }
        }
        AbAction::Stop => match ab::stop(store, "stopped by hand")? {
            Some(v) => println!("A/B stopped: {} withdrawn", v.id),
            None => println!("no A/B is running"),
        },
    }
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    use std::io::Write;
    let (base, model_version) = (a.base, a.model_version);
    let store = open_store(base.store)?;
    let since = base.since.as_deref().map(|s| store.parse_time(s)).transpose()?;
    let filter = keel_trajectory::EpisodeFilter { since, model_version, limit: None };
    let out_path = base.out;
    let n = if out_path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        let n = store.export_jsonl(&filter, &mut out)?;
        out.flush()?;
        n
    } else {
        // Written beside the target and renamed, so a failed export never leaves half a file.
        let tmp = out_path.with_extension("jsonl.partial");
        // 0600, as the store itself: a dump holds the same trajectories.
        let file = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create(true).truncate(true), 0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let n = store.export_jsonl(&filter, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &out_path).with_context(|| format!("writing {}", out_path.display()))?;
        n
    };
    eprintln!("exported {n} episodes");
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let store = open_store(a.store)?;
    let stats = if a.file.as_os_str() == "-" {
        store.import_jsonl(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
        store.import_jsonl(std::io::BufReader::new(f))
    }
    .with_context(|| format!("importing {}", a.file.display()))?;
    eprintln!("imported {} episodes ({} steps); {} already there, skipped", stats.episodes, stats.steps, stats.skipped);
    Ok(())
}

fn pairs(a: PairsArgs) -> Result<()> {
    let store = open_store(a.store)?;
    let since = a.since.as_deref().map(|s| store.parse_time(s)).transpose()?;
    let stats = keel_trainer::pairs::export(&store, since, &a.out)?;
    eprintln!("{stats}");
    Ok(())
}

#[derive(clap::Args)]
struct CompareArgs {
    /// An eval report of the model before (repeat for several runs: they are pooled).
    #[arg(long, required = true)]
    before: Vec<PathBuf>,
    /// An eval report of the model after (repeat for several seeds of a recipe: they are pooled).
    #[arg(long, required = true)]
    after: Vec<PathBuf>,
    /// Also write the comparison here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The task gate: how far paired success may fall.
    #[arg(long, default_value_t = keel_trainer::eval::GateConfig::default().success_drop)]
    success_drop: f64,
    /// The task gate: how far each failure-mode rate may rise.
    #[arg(long, default_value_t = keel_trainer::eval::GateConfig::default().failure_rise)]
    failure_rise: f64,
}

fn compare(a: CompareArgs) -> Result<()> {
    use keel_trainer::eval;
    let (before, after) = (eval::Side::read(&a.before).context("--before")?, eval::Side::read(&a.after).context("--after")?);
    let v = eval::compare(&before, &after, &eval::GateConfig { success_drop: a.success_drop, failure_rise: a.failure_rise });
    print!("{}", eval::compare_table(&v));
    if let Some(out) = &a.out {
        eval::write_report(&v, out)?;
    }
    Ok(())
}

#[derive(clap::Args)]
struct RunsArgs {
    /// The trajectory store (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn runs(a: RunsArgs) -> Result<()> {
    use keel_trainer::schedule;
    let path = a.store.unwrap_or_else(keel_trajectory::default_path);
    // Listing must not leave an empty store behind where the user mistyped the path.
    let shown = keel_trajectory::redact_location(&path.to_string_lossy());
    anyhow::ensure!(
        keel_trajectory::is_postgres_url(&path.to_string_lossy()) || path.exists(),
        "no store at {shown} (give --store, or set KEEL_STORE)"
    );
    let runs = open_store(Some(path.clone()))?.runs()?;
    let none = format!("no runs in {shown} (`keel-train schedule` records them)\n");
    let text = match (runs.is_empty(), a.json) {
        (true, true) => {
            eprint!("{none}");
            String::new()
        }
        (true, false) => none,
        (false, true) => runs.iter().map(|r| format!("{}\n", schedule::run_row(r))).collect(),
        (false, false) => schedule::runs_table(&runs),
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
