"""Keel's training, run with TRL elsewhere (a GPU box, a cluster): written by `keel-train export-train`.

    accelerate launch --config_file accelerate.yaml train.py            # the GPUs of this machine
    accelerate launch --config_file accelerate-cpu.yaml train.py        # one CPU process (a check)

Reads `config.json` (the base model, the hyper-parameters Keel would use) and the pairs and SFT
examples as Keel tokenized them (`pairs_ids.jsonl`, `sft_ids.jsonl`: the same token ids Keel trains
on, so both sides train on the same sequences), runs TRL's SFTTrainer (when there are SFT examples)
and then DPOTrainer on one PEFT LoRA adapter (all seven linear layers; the reference is the base
model, the adapter switched off, as in Keel), and saves the adapter in PEFT layout to
`adapter/` (override with --out). Bring it back with
`keel-train models add --adapter adapter/ --judge heldout.jsonl [--promote]`.

Needs: torch, transformers, trl, peft, accelerate, datasets (the versions in config.json's
`written_with` were the ones Keel was tested with).
"""

import argparse
import json
import os
import sys

os.umask(0o077)  # the adapter and logs are as private as the data they come from
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HERE = os.path.dirname(os.path.abspath(__file__))


def read_jsonl(name):
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def already_tokenized(self, dataset, *args, **kwargs):
    # Keel tokenized the data (chat template, TRL's prompt/completion convention): keep its ids.
    return dataset


DPOTrainer._prepare_dataset = already_tokenized


def common(cfg, out, cpu):
    bf16 = not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return dict(
        output_dir=out,
        learning_rate=cfg["lr"],
        num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"],
        lr_scheduler_type="linear",
        warmup_steps=cfg["warmup_ratio"],
        max_grad_norm=1.0,
        weight_decay=0.0,
        seed=cfg["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=cpu,
        bf16=bf16,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )


def sft(cfg, model, tok, rows, out, cpu):
    # Pre-tokenized: input_ids = prompt + completion, labels -100 on the prompt (the loss on the
    # completion only, as Keel's SFT).
    data = Dataset.from_list(
        [{"input_ids": r["prompt_ids"] + r["completion_ids"], "labels": [-100] * len(r["prompt_ids"]) + r["completion_ids"]} for r in rows]
    )
    args = SFTConfig(max_length=cfg["max_length"], completion_only_loss=True, dataset_kwargs={"skip_prepare_dataset": True}, **common(cfg, out, cpu))
    args.learning_rate = cfg["sft_lr"]
    args.num_train_epochs = cfg["sft_epochs"]
    tr = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    tr.train()
    return tr.model


def dpo(cfg, model, tok, rows, out, cpu, peft_config):
    data = Dataset.from_list([{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in rows])
    args = DPOConfig(beta=cfg["beta"], loss_type=["sigmoid"], max_length=cfg["max_length"], precompute_ref_log_probs=True, **common(cfg, out, cpu))
    tr = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft_config)
    tr.train()
    return tr.model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "adapter"))
    p.add_argument("--model", help="the base model folder (default: config.json's base_model)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is there")
    a = p.parse_args()
    with open(os.path.join(HERE, "config.json")) as f:
        cfg = json.load(f)
    base = a.model or cfg["base_model"]
    cpu = a.cpu or not torch.cuda.is_available()
    torch.manual_seed(cfg["seed"])
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.float32 if cpu else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    lora = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"], target_modules=TARGETS, task_type="CAUSAL_LM")
    pairs, examples = read_jsonl("pairs_ids.jsonl"), read_jsonl("sft_ids.jsonl")
    if not pairs and not examples:
        sys.exit("nothing to train on: pairs_ids.jsonl and sft_ids.jsonl are empty")
    peft_config = lora
    if examples and cfg.get("sft", True):
        model = get_peft_model(model, lora)
        model = sft(cfg, model, tok, examples, os.path.join(a.out, "sft"), cpu)
        peft_config = None  # DPO goes on training the SFT adapter
    if pairs:
        model = dpo(cfg, model, tok, pairs, a.out, cpu, peft_config)
    if isinstance(model, PeftModel):
        model.save_pretrained(a.out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"adapter": a.out, "pairs": len(pairs), "sft_examples": len(examples)}))


if __name__ == "__main__":
    main()
