"""Reference fixtures for the model tests, made with transformers, PEFT and the Python tokenizer.

fixtures OUT TOKDIR: writes tiny random Qwen2 and Llama models made by transformers itself
  (OUT/hf_qwen2: tied, q/k/v bias, sharded f32; OUT/hf_llama: untied, attention bias, llama3 rope
  scaling, stored in bf16), each with the tokenizer of TOKDIR, a PEFT adapter with random B
  (OUT/peft_{name}), the pairs OUT/pairs.jsonl, and OUT/expect_{name}.json for every model in
  OUT/hf_qwen2, OUT/hf_llama and TOKDIR itself: logits for fixed ids, a batched greedy generation,
  encodings, a chat rendering, TRL-convention scores, and scores with the PEFT adapter.
peft MODEL ADAPTER PAIRS: prints the scores of PAIRS with the PEFT adapter loaded by PEFT.
"""

import json
import os
import shutil
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

torch.manual_seed(0)

TOOLS = [
    {
        "function": {
            "description": "Read a file of the workspace",
            "name": "read_file",
            "parameters": {"properties": {"path": {"type": "string"}}, "required": ["path"], "type": "object"},
        },
        "type": "function",
    }
]

PAIRS = [
    {"prompt": "fn add(a: u32, b: u32) -> u32 {", "chosen": " a + b }", "rejected": " a - b }"},
    {
        "prompt": [
            {"content": "You are a coding agent.", "role": "system"},
            {"content": "Fix the failing test in src/lib.rs", "role": "user"},
        ],
        "chosen": [
            {
                "content": "",
                "role": "assistant",
                "tool_calls": [{"function": {"arguments": {"path": "src/lib.rs"}, "name": "read_file"}, "type": "function"}],
            }
        ],
        "rejected": [{"content": "The test is fine.", "role": "assistant"}],
        "tools": TOOLS,
        "meta": {"source": "human"},
    },
    {
        "prompt": [{"content": "Say hello in Python.", "role": "user"}],
        "chosen": [{"content": "print(\"hello\")", "role": "assistant"}],
        "rejected": [{"content": "echo hello", "role": "assistant"}],
    },
]

ENCODE = [
    "fn main() { println!(\"hi\"); }",
    "def add(a, b):\n    return a + b\n",
    "<|im_start|>user\nhello<|im_end|>\n<tool_call>\n{\"name\": \"run\"}\n</tool_call>",
    "Ünïcödé → ✓ 日本語  spaces   and\ttabs",
]

IDS = [[5, 17, 42, 99, 100, 7, 3, 250, 31, 64, 11, 2], [300, 1, 2, 3, 400, 8, 9, 77, 66, 55, 44, 33]]
GEN_PROMPTS = [[10, 20, 30, 40, 50, 60, 70], [11, 22, 33]]


def load(path):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    m.eval()
    return m


def score(model, tok, pairs):
    out = []
    for p in pairs:
        res = []
        for key in ("chosen", "rejected"):
            if isinstance(p["prompt"], str):
                pt, ct = p["prompt"], p[key]
            else:
                tools = p.get("tools")
                pt = tok.apply_chat_template(p["prompt"], tools=tools, tokenize=False, add_generation_prompt=True)
                full = tok.apply_chat_template(p["prompt"] + p[key], tools=tools, tokenize=False)
                assert full.startswith(pt)
                ct = full[len(pt):]
            pi = tok(pt, add_special_tokens=False)["input_ids"]
            ci = tok(ct, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([pi + ci])).logits[0].float()
            lp = torch.log_softmax(logits, -1)
            res.append(float(sum(lp[len(pi) + j - 1, ci[j]] for j in range(len(ci)) if len(pi) + j >= 1)))
        out.append(res)
    return out


def greedy(model):
    n = max(len(p) for p in GEN_PROMPTS)
    ids = torch.tensor([[0] * (n - len(p)) + p for p in GEN_PROMPTS])
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in GEN_PROMPTS])
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    return out[:, n:].tolist()


def expectations(path, out_name, peft_dir=None):
    model = load(path)
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        logits = model(torch.tensor(IDS)).logits.float()
    exp = {
        "logits_shape": list(logits.shape),
        "logits": logits.flatten().tolist(),
        "greedy": greedy(model),
        "encode": [[s, tok(s, add_special_tokens=False)["input_ids"]] for s in ENCODE],
        "chat": tok.apply_chat_template(
            PAIRS[1]["prompt"] + PAIRS[1]["chosen"], tools=TOOLS, tokenize=False
        ),
        "chat_gen": tok.apply_chat_template(PAIRS[2]["prompt"], tokenize=False, add_generation_prompt=True),
        "scores": score(model, tok, PAIRS),
    }
    if peft_dir is not None:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
        )
        pm = get_peft_model(load(path), cfg)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
        pm.save_pretrained(peft_dir)
        pm.eval()
        exp["peft_scores"] = score(pm, tok, PAIRS)
    with open(out_name, "w") as f:
        json.dump(exp, f)


def perturb(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.1)


def fixtures(out, tokdir):
    tok = AutoTokenizer.from_pretrained(tokdir)
    vocab = len(tok)
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    qwen = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, rope_theta=1000000.0, **common))
    llama = LlamaForCausalLM(
        LlamaConfig(
            tie_word_embeddings=False,
            attention_bias=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            bos_token_id=None,
            eos_token_id=None,
            **common,
        )
    )
    for name, model, kw in [
        ("qwen2", qwen, dict(max_shard_size="100KB")),
        ("llama", llama, {}),
    ]:
        perturb(model)
        d = os.path.join(out, f"hf_{name}")
        if name == "llama":
            model = model.to(torch.bfloat16)
        model.save_pretrained(d, **kw)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tokdir, f), d)
    with open(os.path.join(out, "pairs.jsonl"), "w") as f:
        for p in PAIRS:
            f.write(json.dumps(p, sort_keys=True) + "\n")
    for name in ("qwen2", "llama"):
        expectations(os.path.join(out, f"hf_{name}"), os.path.join(out, f"expect_{name}.json"), os.path.join(out, f"peft_{name}"))
    expectations(tokdir, os.path.join(out, "expect_init.json"))


def peft_scores(model_dir, adapter, pairs_path):
    from peft import PeftModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    pm = PeftModel.from_pretrained(load(model_dir), adapter)
    pm.eval()
    pairs = [json.loads(l) for l in open(pairs_path) if l.strip()]
    print(json.dumps(score(pm, tok, pairs)))


if __name__ == "__main__":
    if sys.argv[1] == "fixtures":
        fixtures(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "peft":
        peft_scores(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")
