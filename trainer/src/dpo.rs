//! `keel-train dpo`: sigmoid DPO of a LoRA adapter on preference pairs (TRL's `DPOTrainer` with
//! `loss_type="sigmoid"`, `precompute_ref_log_probs=True`, a PEFT adapter).
//!
//! The reference log-probs are computed once, before training, with the adapter off, or with the
//! initial adapter on when `--init-adapter` is given (TRL's reference for a PEFT model is the
//! model as it starts). Completion log-probs are summed over completion tokens only (the prompt is
//! masked), chosen and rejected sequences go through the model in one batch, and each step's
//! metrics carry TRL's names.

use std::time::Instant;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::model::{Model, Sequence, pair_logps};
use crate::optim::dpo_loss;
use crate::train::data::{DataReport, EncodedPair, load_pairs, seq_len};
use crate::train::{self, Objective, Summary, TrainOptions};

/// Pairs per forward pass when computing the reference log-probs.
const REF_BATCH: usize = 16;

/// Summed completion log-probs of each pair's chosen and rejected side under the model as it is,
/// without grad, `REF_BATCH` pairs at a time in length order, each shared prompt run once.
pub fn pair_sequence_logps(model: &Model, pairs: &[EncodedPair]) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| seq_len(&pairs[i].chosen).max(seq_len(&pairs[i].rejected)));
    let (mut chosen, mut rejected) = (vec![0f64; pairs.len()], vec![0f64; pairs.len()]);
    let autocast = model.transformer.device().is_cuda();
    for chunk in order.chunks(REF_BATCH) {
        let batch: Vec<(&Sequence, &Sequence)> = chunk.iter().map(|&i| (&pairs[i].chosen, &pairs[i].rejected)).collect();
        let t = tch::no_grad(|| tch::autocast(autocast, || pair_logps(&model.transformer, &batch)))?;
        let v: Vec<f32> = Vec::try_from(t.to_device(Device::Cpu))?;
        let b = chunk.len();
        for (k, &i) in chunk.iter().enumerate() {
            chosen[i] = v[k] as f64;
            rejected[i] = v[b + k] as f64;
        }
    }
    Ok((chosen, rejected))
}

/// DPO over tokenized pairs with their reference log-probs.
pub struct DpoObjective {
    pub pairs: Vec<EncodedPair>,
    pub ref_chosen: Vec<f64>,
    pub ref_rejected: Vec<f64>,
    pub beta: f64,
}

pub const DPO_STATS: [&str; 7] =
    ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"];

impl DpoObjective {
    /// Computes the reference log-probs with the model as it is now (the caller has the adapter
    /// off or at its initial state) and in eval mode.
    pub fn new(model: &Model, pairs: Vec<EncodedPair>, beta: f64) -> Result<DpoObjective> {
        let (ref_chosen, ref_rejected) = pair_sequence_logps(model, &pairs).context("computing the reference log-probs")?;
        Ok(DpoObjective { pairs, ref_chosen, ref_rejected, beta })
    }
}

impl Objective for DpoObjective {
    fn kind(&self) -> &'static str {
        "dpo"
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn line(&self, i: usize) -> usize {
        self.pairs[i].line
    }

    fn length(&self, i: usize) -> usize {
        seq_len(&self.pairs[i].chosen).max(seq_len(&self.pairs[i].rejected))
    }

    fn tokens(&self, i: usize) -> usize {
        self.pairs[i].tokens()
    }

    fn weight(&self, _i: usize) -> f64 {
        1.0
    }

    fn stat_names(&self) -> &'static [&'static str] {
        &DPO_STATS
    }

    fn micro(&self, model: &Model, idx: &[usize]) -> Result<(Tensor, Vec<f64>)> {
        let b = idx.len() as i64;
        let batch: Vec<(&Sequence, &Sequence)> = idx.iter().map(|&i| (&self.pairs[i].chosen, &self.pairs[i].rejected)).collect();
        let logps = pair_logps(&model.transformer, &batch)?.to_kind(Kind::Float);
        let device = logps.device();
        let pc = logps.narrow(0, 0, b);
        let pr = logps.narrow(0, b, b);
        let f = |v: &[f64]| Tensor::from_slice(&idx.iter().map(|&i| v[i] as f32).collect::<Vec<f32>>()).to_device(device);
        let (rc, rr) = (f(&self.ref_chosen), f(&self.ref_rejected));
        let t = dpo_loss(&pc, &pr, &rc, &rr, self.beta);
        let loss_sum = &t.loss * b as f64;
        let sum = |x: &Tensor| x.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        let stats = vec![
            loss_sum.double_value(&[]),
            sum(&t.chosen_rewards),
            sum(&t.rejected_rewards),
            sum(&t.chosen_rewards.gt_tensor(&t.rejected_rewards)),
            sum(&(&t.chosen_rewards - &t.rejected_rewards)),
            sum(&pc.detach()),
            sum(&pr.detach()),
        ];
        Ok((loss_sum, stats))
    }
}

/// What `dpo` did.
#[derive(Debug, Clone)]
pub struct DpoReport {
    pub data: DataReport,
    pub summary: Summary,
}

/// Runs `keel-train dpo`.
pub fn run(opts: &TrainOptions) -> Result<DpoReport> {
    let started = Instant::now();
    let digest = train::file_digest(&opts.data)?;
    let resume = train::find_resume(opts, "dpo", &digest)?;
    let mut model = train::load_model(opts)?;
    let (pairs, data) = load_pairs(&opts.data, &model, opts.max_length)?;
    eprintln!("dpo: {}: {data}", opts.data.display());
    let t = Instant::now();
    let obj = DpoObjective::new(&model, pairs, opts.beta)?;
    eprintln!("dpo: reference log-probs of {} pairs in {:.2}s (data read in {:.2}s)", obj.pairs.len(), train::secs(t), (t - started).as_secs_f64());
    train::attach_trainable(&mut model, opts, resume.as_ref())?;
    if let Some(ck) = &resume {
        eprintln!("dpo: resuming from step {} of {}", ck.state.step, ck.state.total_steps);
    }
    let summary = train::run(&mut model, opts, &obj, &digest, resume, started)?;
    eprintln!(
        "dpo: {} steps, train_loss {:.4}, {:.0} tokens/s, {:.1}s; wrote {}",
        summary.steps,
        summary.train_loss,
        summary.tokens_per_second,
        summary.train_runtime,
        opts.out.display()
    );
    if data.skipped_count() > 0 || !data.truncated.is_empty() {
        eprintln!("dpo: data: {data}");
    }
    Ok(DpoReport { data, summary })
}
