//! Checkpoints: `OUT/checkpoint/` holds the adapter (PEFT layout), Adam's moments and `state.json`
//! (step, plan, seed, the options it was written with, running sums). A checkpoint is written into
//! `checkpoint.tmp/` and renamed into place, so a run killed at any moment leaves either the
//! previous checkpoint or the new one, never half of one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::adamw::AdamW;
use crate::model::Model;

pub const DIR: &str = "checkpoint";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const STATE: &str = "state.json";

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// `dpo` or `sft`.
    pub kind: String,
    /// Optimizer steps done.
    pub step: u64,
    pub total_steps: u64,
    /// The epoch of the last step done (0-based).
    pub epoch: u64,
    pub seed: u64,
    /// How the order of examples and libtorch's generator derive from the seed (the whole
    /// shuffle state: both are pure functions of seed, epoch, step and micro-batch).
    pub shuffle: Value,
    /// The options and data digest of the run; a resume must match.
    pub fingerprint: Value,
    /// Sum of the per-step losses so far (for `train_loss`).
    pub train_loss_sum: f64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Seconds spent so far.
    pub elapsed_s: f64,
}

/// A checkpoint on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: State,
}

fn read_state(dir: &Path) -> Result<Option<State>> {
    let p = dir.join(STATE);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let s: State = serde_json::from_str(&text).with_context(|| format!("{}: not a checkpoint state", p.display()))?;
    Ok(Some(s))
}

impl Checkpoint {
    /// The checkpoint of `out`, if there is one (the previous one when a run died while replacing).
    pub fn find(out: &Path) -> Result<Option<Checkpoint>> {
        for name in [DIR, "checkpoint.old"] {
            let dir = out.join(name);
            if let Some(state) = read_state(&dir)? {
                return Ok(Some(Checkpoint { dir, state }));
            }
        }
        Ok(None)
    }

    /// Writes a checkpoint of the model's adapter and the optimizer, atomically.
    pub fn write(out: &Path, model: &Model, opt: &AdamW, state: &State) -> Result<()> {
        let tmp = out.join("checkpoint.tmp");
        let dst = out.join(DIR);
        let old = out.join("checkpoint.old");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        keel_trajectory::private::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        model.save_adapter(&tmp).with_context(|| format!("writing the adapter to {}", tmp.display()))?;
        opt.save(&tmp.join(OPTIMIZER))?;
        keel_trajectory::private::restrict(&tmp.join(OPTIMIZER))?;
        let p = tmp.join(STATE);
        keel_trajectory::private::write(&p, serde_json::to_string_pretty(state)? + "\n").with_context(|| format!("writing {}", p.display()))?;
        if dst.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
            }
            std::fs::rename(&dst, &old).with_context(|| format!("moving {} aside", dst.display()))?;
        }
        std::fs::rename(&tmp, &dst).with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(())
    }
}
