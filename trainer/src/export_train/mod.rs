//! `keel-train export-train`: what TRL needs to run Keel's training elsewhere (a GPU box, a
//! cluster through accelerate/DeepSpeed), and nothing Keel would not train on itself.
//!
//! The folder holds the pairs in TRL's conversational format (`pairs.jsonl`, as `keel-train pairs`
//! writes them), the same pairs and SFT examples tokenized as Keel tokenizes them
//! (`pairs_ids.jsonl`, `sft_ids.jsonl`: the chat template, TRL's prompt/completion convention,
//! Keel's truncation and skip rules — so both sides train on the same token ids), `config.json`
//! (the base model and the hyper-parameters Keel would use), `train.py` (TRL's SFTTrainer, then
//! DPOTrainer, with a PEFT LoRA adapter on all seven linear layers), two accelerate configurations
//! (`accelerate.yaml`: every GPU of one machine, bf16; `accelerate-cpu.yaml`: one CPU process) and
//! a README. The adapter it writes comes back with `keel-train models add`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::train::{TrainOptions, data};

/// The training script, written beside the data.
pub const TRAIN_PY: &str = include_str!("train.py");

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Keel's DPO options: the base model, the output folder (`out`), the hyper-parameters.
    pub train: TrainOptions,
    /// Pairs files (TRL conversational JSONL, `keel-train pairs`/`search` output), concatenated.
    pub pairs: Vec<PathBuf>,
    /// SFT examples (prompt/completion lines or pairs, whose chosen side is the completion).
    pub sft: Option<PathBuf>,
    pub sft_lr: f64,
    pub sft_epochs: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub pairs: usize,
    pub pairs_skipped: usize,
    pub sft_examples: usize,
    pub sft_skipped: usize,
}

fn private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::pairs::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the folder.
pub fn export(o: &ExportOptions) -> Result<Exported> {
    let t = &o.train;
    anyhow::ensure!(!o.pairs.is_empty() || o.sft.is_some(), "nothing to export: give --pairs FILE (or a store with pairs) or --sft FILE");
    keel_trajectory::private::create_dir_all(&t.out).with_context(|| format!("creating {}", t.out.display()))?;
    let model = crate::model::Model::load(&t.model, &crate::model::LoadOptions { device: tch::Device::Cpu, kind: None })
        .with_context(|| format!("loading {} (its tokenizer and chat template tokenize the data)", t.model.display()))?;

    let mut done = Exported { pairs: 0, pairs_skipped: 0, sft_examples: 0, sft_skipped: 0 };
    let mut conversational = Vec::new();
    for p in &o.pairs {
        let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        conversational.extend_from_slice(&text);
        if !text.ends_with(b"\n") && !text.is_empty() {
            conversational.push(b'\n');
        }
    }
    if !o.pairs.is_empty() {
        let all = t.out.join("pairs.jsonl");
        private_file(&all, &conversational)?;
        let (pairs, report) = data::load_pairs(&all, &model, t.max_length)?;
        eprintln!("export-train: pairs: {report}");
        data::write_pair_ids(&pairs, &t.out.join("pairs_ids.jsonl"))?;
        done.pairs = pairs.len();
        done.pairs_skipped = report.skipped_count();
    }
    if let Some(s) = &o.sft {
        let (examples, report) = data::load_sft(s, &model, t.max_length)?;
        eprintln!("export-train: sft: {report}");
        let mut out = Vec::new();
        for e in &examples {
            serde_json::to_writer(&mut out, &json!({"line": e.line, "prompt_ids": e.seq.prompt, "completion_ids": e.seq.completion}))?;
            out.push(b'\n');
        }
        private_file(&t.out.join("sft_ids.jsonl"), &out)?;
        done.sft_examples = examples.len();
        done.sft_skipped = report.skipped_count();
    }
    let base = std::fs::canonicalize(&t.model).unwrap_or_else(|_| t.model.clone());
    let config = json!({
        "base_model": base,
        "beta": t.beta,
        "lr": t.lr,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "grad_accum": t.grad_accum,
        "lora_r": t.lora_r,
        "lora_alpha": t.lora_alpha,
        "lora_dropout": t.lora_dropout,
        "max_length": t.max_length,
        "seed": t.seed,
        "warmup_ratio": t.warmup_ratio,
        "max_grad_norm": t.max_grad_norm,
        "sft": o.sft.is_some(),
        "sft_lr": o.sft_lr,
        "sft_epochs": o.sft_epochs,
        "loss": "sigmoid",
        "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "pairs": done.pairs,
        "sft_examples": done.sft_examples,
        "written_by": format!("keel-train {}", env!("CARGO_PKG_VERSION")),
        "written_with": {"torch": "2.11.0", "transformers": "5.x", "trl": "1.16", "peft": "0.21", "accelerate": "1.15"},
    });
    private_file(&t.out.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    private_file(&t.out.join("train.py"), TRAIN_PY.as_bytes())?;
    private_file(&t.out.join("accelerate.yaml"), ACCELERATE_GPU.as_bytes())?;
    private_file(&t.out.join("accelerate-cpu.yaml"), ACCELERATE_CPU.as_bytes())?;
    private_file(&t.out.join("README.md"), readme(&done).as_bytes())?;
    Ok(done)
}

/// Every GPU of one machine, bf16 (multi-node: set num_machines, machine_rank, main_process_ip).
const ACCELERATE_GPU: &str = "# accelerate launch --config_file accelerate.yaml train.py
# One machine, every GPU (num_processes: how many), bf16. Several machines: set num_machines,
# machine_rank and main_process_ip/port on each; DeepSpeed ZeRO: distributed_type: DEEPSPEED and a
# deepspeed_config block (see `accelerate config`).
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: 8
gpu_ids: all
mixed_precision: bf16
main_training_function: main
same_network: true
rdzv_backend: static
use_cpu: false
";

/// One CPU process: a check that the export runs, on any machine.
const ACCELERATE_CPU: &str = "# accelerate launch --config_file accelerate-cpu.yaml train.py --cpu
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
num_machines: 1
num_processes: 1
mixed_precision: 'no'
use_cpu: true
";

fn readme(d: &Exported) -> String {
    format!(
        "# Keel's training, for TRL\n\n\
         Written by `keel-train export-train`: {} pairs and {} SFT examples, tokenized by Keel.\n\n\
         ```sh\n\
         pip install torch transformers trl peft accelerate datasets\n\
         accelerate launch --config_file accelerate.yaml train.py          # every GPU of this machine\n\
         accelerate launch --config_file accelerate-cpu.yaml train.py --cpu  # one CPU process\n\
         ```\n\n\
         `train.py --model DIR` if the base model is elsewhere on this machine (config.json names\n\
         where it was on the exporting one). The adapter lands in `adapter/` (PEFT layout). Bring it\n\
         back and let the gate judge it on held-out pairs:\n\n\
         ```sh\n\
         keel-train models add --adapter adapter/ --judge heldout.jsonl --promote\n\
         ```\n",
        d.pairs, d.sft_examples
    )
}
