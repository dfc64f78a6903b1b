"""The transformers side of `cargo bench -p keel-trainer --bench model`.

model_reference.py MODEL_DIR SPEC.json: runs the same scoring and batched greedy generation as
Keel's bench on the same model folder and token ids, and prints the timings as JSON.

Equal work: scoring asks the model for logits of the completion positions only
(`logits_to_keep`, as Keel computes them), and generation goes through `model.generate`, which
keeps only the last position's logits.
"""

import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main(model_dir, spec_path):
    spec = json.load(open(spec_path))
    device = spec.get("device", "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    seqs = spec["score"]  # list of [prompt_ids, completion_ids]

    def score(batch):
        # Left-padded, so that every completion ends at the last position and the positions
        # that predict completion tokens are the last `max completion + 1` (minus the very last).
        n = max(len(p) + len(c) for p, c in batch)
        keep = max(len(c) for _, c in batch) + 1
        ids = torch.zeros(len(batch), n, dtype=torch.long)
        mask = torch.zeros(len(batch), n, dtype=torch.long)
        lab = torch.zeros(len(batch), keep - 1)
        for r, (p, c) in enumerate(batch):
            ids[r, n - len(p) - len(c) :] = torch.tensor(p + c)
            mask[r, n - len(p) - len(c) :] = 1
            lab[r, keep - 1 - len(c) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, pos, lab = ids.to(device), mask.to(device), pos.to(device), lab.to(device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, n - keep + 1 :].unsqueeze(-1)).squeeze(-1)
        return ((lp * lab).sum(-1)).tolist()

    def score_all(bs):
        out = []
        with torch.no_grad():
            for i in range(0, len(seqs), bs):
                out.extend(score(seqs[i : i + bs]))
        return out

    def generate(prompts, new):
        n = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (n - len(p)) + p for p in prompts]).to(device)
        mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts]).to(device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        return out[:, n:].tolist()

    # A short warm-up (first allocations, thread pools); the rounds' best time discounts the rest.
    generate([seqs[0][0][:32]], 2)
    score_s, scores, gen_s, generated = {}, {}, {}, {}
    for _ in range(spec["reps"]):
        for bs in spec["score_batches"]:
            t = time.perf_counter()
            scores[str(bs)] = score_all(bs)
            score_s[str(bs)] = min(score_s.get(str(bs), float("inf")), time.perf_counter() - t)
        for g in spec["generate"]:
            t = time.perf_counter()
            generated[g["name"]] = generate(g["prompts"], g["max_new_tokens"])
            gen_s[g["name"]] = min(gen_s.get(g["name"], float("inf")), time.perf_counter() - t)
    print(json.dumps({"score_s": score_s, "scores": scores, "generate_s": gen_s, "generated": generated, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
