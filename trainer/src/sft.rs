//! `keel-train sft`: supervised LoRA fine-tuning on prompt/completion examples (the chosen side
//! of pairs, or accepted steps), the loss on completion tokens only: the mean negative
//! log-likelihood over every completion token of a step (TRL's `SFTTrainer` with
//! `completion_only_loss`). With `--pack`, the steps of an episode are one sequence
//! ([`pack_steps`]): the same loss, the history run once.

use std::time::Instant;

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::model::{Model, Sequence, completion_logps, scored_completion_logps};
use crate::train::data::{DataReport, EncodedExample, load_sft, pack_steps, seq_len};
use crate::train::{self, Objective, Summary, TrainOptions};

/// Completion-only language modelling.
pub struct SftObjective {
    pub examples: Vec<EncodedExample>,
}

impl Objective for SftObjective {
    fn kind(&self) -> &'static str {
        "sft"
    }

    fn len(&self) -> usize {
        self.examples.len()
    }

    fn line(&self, i: usize) -> usize {
        self.examples[i].line
    }

    fn length(&self, i: usize) -> usize {
        seq_len(&self.examples[i].seq)
    }

    fn tokens(&self, i: usize) -> usize {
        seq_len(&self.examples[i].seq)
    }

    fn weight(&self, i: usize) -> f64 {
        self.examples[i].scored_tokens() as f64
    }

    fn stat_names(&self) -> &'static [&'static str] {
        &["loss"]
    }

    fn micro(&self, model: &Model, idx: &[usize]) -> Result<(Tensor, Vec<f64>)> {
        let seqs: Vec<Sequence> = idx.iter().map(|&i| self.examples[i].seq.clone()).collect();
        let logps = if idx.iter().any(|&i| self.examples[i].scored.is_some()) {
            let masks: Vec<Option<&[bool]>> = idx.iter().map(|&i| self.examples[i].scored.as_deref()).collect();
            scored_completion_logps(&model.transformer, &seqs, &masks)?
        } else {
            completion_logps(&model.transformer, &seqs)?
        };
        let nll = -logps.sum(Kind::Float);
        let v = nll.double_value(&[]);
        Ok((nll, vec![v]))
    }
}

/// What `sft` did.
#[derive(Debug, Clone)]
pub struct SftReport {
    pub data: DataReport,
    pub summary: Summary,
}

/// Runs `keel-train sft`.
pub fn run(opts: &TrainOptions) -> Result<SftReport> {
    let started = Instant::now();
    let digest = train::file_digest(&opts.data)?;
    let resume = train::find_resume(opts, "sft", &digest)?;
    let mut model = train::load_model(opts)?;
    let (mut examples, data) = load_sft(&opts.data, &model, opts.max_length)?;
    eprintln!("sft: {}: {data}", opts.data.display());
    if opts.pack {
        let before: usize = examples.iter().map(|e| seq_len(&e.seq)).sum();
        let n = examples.len();
        examples = pack_steps(examples, opts.max_length);
        let after: usize = examples.iter().map(|e| seq_len(&e.seq)).sum();
        eprintln!("sft: packed {n} examples into {} sequences ({after} tokens instead of {before})", examples.len());
    }
    let obj = SftObjective { examples };
    train::attach_trainable(&mut model, opts, resume.as_ref())?;
    if let Some(ck) = &resume {
        eprintln!("sft: resuming from step {} of {}", ck.state.step, ck.state.total_steps);
    }
    let summary = train::run(&mut model, opts, &obj, &digest, resume, started)?;
    eprintln!(
        "sft: {} steps, train_loss {:.4}, {:.0} tokens/s, {:.1}s; wrote {}",
        summary.steps,
        summary.train_loss,
        summary.tokens_per_second,
        summary.train_runtime,
        opts.out.display()
    );
    if data.skipped_count() > 0 || !data.truncated.is_empty() {
        eprintln!("sft: data: {data}");
    }
    Ok(SftReport { data, summary })
}
