"""The transformers side of `cargo bench -p keel-trainer --bench model`.

model_reference.py MODEL_DIR SPEC.json: runs the same scoring and batched greedy generation as
Keel's bench on the same model folder and token ids, and prints the timings as JSON.
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
    bs = spec["batch_size"]

    def score_all():
        out = []
        for i in range(0, len(seqs), bs):
            batch = seqs[i : i + bs]
            n = max(len(p) + len(c) for p, c in batch)
            ids = torch.zeros(len(batch), n, dtype=torch.long)
            mask = torch.zeros(len(batch), n, dtype=torch.long)
            lab = torch.zeros(len(batch), n - 1)
            for r, (p, c) in enumerate(batch):
                ids[r, : len(p) + len(c)] = torch.tensor(p + c)
                mask[r, : len(p) + len(c)] = 1
                lab[r, len(p) - 1 : len(p) + len(c) - 1] = 1
            ids, mask, lab = ids.to(device), mask.to(device), lab.to(device)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                out.extend(((lp * lab).sum(-1)).tolist())
        return out

    def generate(key="generate"):
        prompts = spec[key]["prompts"]
        n = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (n - len(p)) + p for p in prompts]).to(device)
        mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts]).to(device)
        new = spec[key]["max_new_tokens"]
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

    score_all()  # warm-up
    generate()
    score_s, gen_s, same_s = float("inf"), float("inf"), float("inf")
    for _ in range(spec["reps"]):
        t = time.perf_counter()
        scores = score_all()
        score_s = min(score_s, time.perf_counter() - t)
        t = time.perf_counter()
        gen = generate()
        gen_s = min(gen_s, time.perf_counter() - t)
        if "generate_same" in spec:
            t = time.perf_counter()
            generate("generate_same")
            same_s = min(same_s, time.perf_counter() - t)
    print(json.dumps({"score_s": score_s, "generate_s": gen_s, "generate_same_s": same_s, "scores": scores[:4], "generated": gen[:2],
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
