"""TRL's side of Keel's DPO tests and benchmark.

Both sides train on the same token ids: Keel writes the pairs it tokenized (`prompt_ids`,
`chosen_ids`, `rejected_ids` per line) and this script hands them to TRL's DPOTrainer as an
already-tokenized dataset, so what is compared is the training itself (collation, log-probs, loss,
optimizer, schedule), not two tokenizations.

    dpo_trl.py loss  MODEL ADAPTER IDS.jsonl --beta B
        TRL's DPO loss and metrics on all pairs in one batch (DPOTrainer._compute_loss, eval mode):
        the policy is the base model with ADAPTER (a PEFT folder), the reference the base model
        (reference log-probs precomputed by DPOTrainer). Prints one JSON object.
    dpo_trl.py train MODEL IDS.jsonl OUT [--lr --epochs --batch-size --grad-accum --beta --lora-r
                     --lora-alpha --lora-dropout --max-length --seed --threads]
        DPOTrainer with a PEFT LoRA adapter (all linear layers), sigmoid loss, precomputed reference,
        linear warm-up 10 % + linear decay, clipping 1.0, CPU. Saves the adapter to OUT and prints
        a JSON summary with the training tokens per second (timed: trainer construction, which
        tokenizes nothing here but precomputes the reference log-probs, plus train(); not the
        model's loading).

    Options of both commands that set how TRL computes (so a check and a timing see the same
    configuration): --padding-free passes `padding_free=True` (TRL 1.16 warns that it is
    disabled since its DPO refactor and pads); --completion-logits projects the LM head only at
    completion positions on CPU too (TRL 1.16 does that only where Triton runs, CUDA/XPU; its
    DPOConfig has no `use_logits_to_keep` any more, this is what stands in for it);
    --no-gradient-checkpointing turns off TRL's default of recomputing activations in the
    backward pass (Keel keeps them, so the bench turns it off for equal work).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, set_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_ids(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append({k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")})
    return rows


def no_prepare(self, dataset, *args, **kwargs):
    # The dataset is already tokenized (by Keel): keep it as it is.
    return dataset


DPOTrainer._prepare_dataset = no_prepare


def completion_logits_only():
    # TRL's fused LM head scores only the positions with a label ("compact") where `_use_triton`
    # says so, and every position elsewhere; the torch fallback it then runs is the same kernel.
    import trl.trainer.utils as trl_utils

    trl_utils._use_triton = lambda device: True


def load(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def make_trainer(loaded, rows, out, a, lora):
    tok, model = loaded
    cfg = DPOConfig(
        output_dir=out,
        learning_rate=a.lr,
        num_train_epochs=a.epochs,
        per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        beta=a.beta,
        loss_type=["sigmoid"],
        max_length=a.max_length,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        max_grad_norm=1.0,
        weight_decay=0.0,
        seed=a.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        precompute_ref_log_probs=True,
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        padding_free=a.padding_free,
        # TRL's default (True) unless --no-gradient-checkpointing.
        **({"gradient_checkpointing": False} if a.no_gradient_checkpointing else {}),
    )
    peft = LoraConfig(r=lora[0], lora_alpha=lora[1], lora_dropout=lora[2], target_modules=TARGETS, task_type="CAUSAL_LM")
    return DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft)


def cmd_loss(a):
    rows = read_ids(a.ids)
    a.lr, a.epochs, a.grad_accum, a.max_length, a.seed = 1e-4, 1, 1, None, 0
    if a.completion_logits:
        completion_logits_only()
    a.batch_size = len(rows)
    with open(os.path.join(a.adapter, "adapter_config.json")) as f:
        acfg = json.load(f)
    tr = make_trainer(load(a.model), rows, os.path.join(a.tmp, "trl_loss"), a, (acfg["r"], acfg["lora_alpha"], 0.0))
    # The reference was precomputed with the fresh adapter (B = 0: the base model); now the policy
    # gets Keel's adapter.
    res = set_peft_model_state_dict(tr.model, load_file(os.path.join(a.adapter, "adapter_model.safetensors")))
    if res.unexpected_keys:
        sys.exit(f"unexpected adapter keys: {res.unexpected_keys[:4]}")
    tr.model.eval()
    batch = tr.data_collator([tr.train_dataset[i] for i in range(len(rows))])
    with torch.no_grad():
        loss = tr._compute_loss(tr.model, batch, False)
    m = {k: v[-1] for k, v in tr._metrics["eval"].items() if k.startswith(("rewards/", "logps/"))}
    m["loss"] = float(loss)
    m["ref_chosen_logps"] = batch["ref_chosen_logps"].tolist()
    m["ref_rejected_logps"] = batch["ref_rejected_logps"].tolist()
    print(json.dumps(m))


def cmd_train(a):
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.completion_logits:
        completion_logits_only()
    rows = read_ids(a.ids)
    loaded = load(a.model)
    t0 = time.perf_counter()
    tr = make_trainer(loaded, rows, a.out, a, (a.lora_r, a.lora_alpha, a.lora_dropout))
    result = tr.train()
    runtime = time.perf_counter() - t0
    tr.model.save_pretrained(a.out)
    tokens = a.epochs * sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    steps = [h for h in tr.state.log_history if "loss" in h and "step" in h]
    print(
        json.dumps(
            {
                "runtime": runtime,
                "hf_train_runtime": result.metrics.get("train_runtime"),
                "tokens": tokens,
                "tokens_per_second": tokens / runtime,
                "steps": len(steps),
                "first_loss": steps[0]["loss"] if steps else None,
                "last_loss": steps[-1]["loss"] if steps else None,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("loss")
    lo.add_argument("model")
    lo.add_argument("adapter")
    lo.add_argument("ids")
    lo.add_argument("--beta", type=float, default=0.1)
    lo.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp"))
    t = sub.add_parser("train")
    t.add_argument("model")
    t.add_argument("ids")
    t.add_argument("out")
    t.add_argument("--lr", type=float, default=5e-5)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--beta", type=float, default=0.1)
    t.add_argument("--lora-r", type=int, default=16)
    t.add_argument("--lora-alpha", type=float, default=32)
    t.add_argument("--lora-dropout", type=float, default=0.05)
    t.add_argument("--max-length", type=int, default=1024)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--threads", type=int, default=0)
    for sp in (lo, t):
        sp.add_argument("--padding-free", action="store_true")
        sp.add_argument("--completion-logits", action="store_true")
        sp.add_argument("--no-gradient-checkpointing", action="store_true")
    a = p.parse_args()
    {"loss": cmd_loss, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
