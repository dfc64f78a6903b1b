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
    /// List model versions, promote one, or roll back to an earlier one.
    Models(ModelsArgs),
    /// Retrain on a schedule: pairs → search → sft → dpo → evaluation gate → promotion.
    Schedule(ScheduleArgs),
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
}

#[derive(clap::Args)]
struct PairsArgs {
    /// The trajectory store (default: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where to write the pairs (JSONL); `-` for standard output.
    #[arg(long)]
    out: PathBuf,
    /// Only episodes created at or after this time (milliseconds, or a date like 2026-11-24T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Pairs(a) => pairs(a),
        Command::Models(a) => models(a),
        Command::Schedule(a) => {
            let cfg = keel_trainer::schedule::Config::load(&a.config)?;
            keel_trainer::schedule::run(&cfg, a.once, std::time::Duration::from_secs(a.every.max(1)))
        }
    }
}

fn open_store(path: Option<PathBuf>) -> Result<keel_trajectory::Store> {
    let path = path.unwrap_or_else(keel_trajectory::default_path);
    keel_trajectory::Store::open(&path).with_context(|| format!("opening store {}", path.display()))
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
    }
    Ok(())
}

fn pairs(a: PairsArgs) -> Result<()> {
    let path = a.store.unwrap_or_else(keel_trajectory::default_path);
    let store = keel_trajectory::Store::open(&path).with_context(|| format!("opening store {}", path.display()))?;
    let since = a.since.as_deref().map(|s| store.parse_time(s)).transpose()?;
    let stats = keel_trainer::pairs::export(&store, since, &a.out)?;
    eprintln!("{stats}");
    Ok(())
}
