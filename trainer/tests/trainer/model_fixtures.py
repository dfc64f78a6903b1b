"""Reference fixtures for the model tests, made with transformers, PEFT and the Python tokenizer.

fixtures OUT TOKDIR: writes tiny random Qwen2 and Llama models made by transformers itself
  (OUT/hf_qwen2: tied, q/k/v bias, sharded f32; OUT/hf_llama: untied, attention bias, llama3 rope
  scaling, stored in bf16), each with the tokenizer of TOKDIR, a PEFT adapter with random B
  (OUT/peft_{name}), the pairs OUT/pairs.jsonl, and OUT/expect_{name}.json for every model in
  OUT/hf_qwen2, OUT/hf_llama and TOKDIR itself: logits for fixed ids, a batched greedy generation,
  encodings, a chat rendering, TRL-convention scores, and scores with the PEFT adapter.
  Then the parity grid (OUT/grid_{name}, OUT/expect_grid_{name}.json; see GRID): tiny models of both
  families, tied and untied, with and without bias, rope theta 1e4/1e5/1e6, sharing a 399-token
  BPE tokenizer trained here with a plain byte-level pipeline (as the issue's model had): per-token
  log-probs of a sequence as long as the context, TRL scores of sequences and shared-prompt pairs
  up to the context, greedy generations past 21 tokens, PEFT-adapter scores, and the encodings and
  scores transformers' AutoTokenizer gives text (OUT/grid_pairs.jsonl).
peft MODEL ADAPTER PAIRS: prints the scores of PAIRS with the PEFT adapter loaded by PEFT.
"""

import json
import os
import shutil
import sys

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

torch.manual_seed(0)
# The models are tiny: thread start-up costs more than the arithmetic, and the test machine has two
# cores shared with the Rust side.
torch.set_num_threads(1)

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
    return greedy_from(model, GEN_PROMPTS, 12)


def greedy_from(model, prompts, max_new_tokens):
    """Greedy tokens of a left-padded batch, as transformers' generate makes them."""
    n = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (n - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False)
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
    grid(out)


# ----- the parity grid -----

# Every axis the model layer branches on, in four tiny models. `qwen2_issue` is the model of the
# issue (tied, q/k/v bias, theta 1e6, hidden 64, 3 layers, 4/2 heads, weights perturbed by
# N(0, 0.05)); `llama_smol` has SmolLM2-135M's quirks (9 query / 3 kv heads of dim 64 over a small
# hidden size, tied, theta 1e5, eps 1e-5, a context past 512) and SmolLM2's tokenizer layout.
GRID = {
    "qwen2_issue": (
        Qwen2ForCausalLM,
        Qwen2Config,
        dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=128),
    ),
    "qwen2_untied": (
        Qwen2ForCausalLM,
        Qwen2Config,
        dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
             tie_word_embeddings=False, rope_theta=1e4, max_position_embeddings=128),
    ),
    "llama_smol": (
        LlamaForCausalLM,
        LlamaConfig,
        dict(hidden_size=72, head_dim=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=9,
             num_key_value_heads=3, tie_word_embeddings=True, rms_norm_eps=1e-5, max_position_embeddings=576,
             rope_parameters={"rope_type": "default", "rope_theta": 1e5}, bos_token_id=None, eos_token_id=None),
    ),
    "llama_bias": (
        LlamaForCausalLM,
        LlamaConfig,
        dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             tie_word_embeddings=False, attention_bias=True, mlp_bias=True, max_position_embeddings=128,
             rope_parameters={"rope_type": "default", "rope_theta": 1e4}, bos_token_id=None, eos_token_id=None),
    ),
}
# Models whose PEFT adapter (every linear layer, random B) is scored too.
GRID_PEFT = ("qwen2_issue",)

# Text where pre-tokenizers disagree: digits, punctuation before letters, newline and space runs,
# a decomposed accent (NFC), contractions.
GRID_TEXTS = [
    "x = 12345 + 2",
    "fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\n\n  ",
    "Cafe\u0301 don't (x)y  z\t\tw",
    "<|endoftext|>if(n==10){return 3.14;}",
]
# The kind of pair: a few prompt tokens, about twenty completion tokens, chosen and
# rejected different and the same.
GRID_PAIRS = [
    {"prompt": "def f(x):", "chosen": "\n    return x * 2 + 10  # 2024-01-31", "rejected": "\n    return x - 1"},
    {"prompt": "fn add(a, b)", "chosen": " -> u32 { a + b } // 12 + 30 = 42", "rejected": " -> u32 { a + b } // 12 + 30 = 42"},
    {"prompt": "x = [1, 2, 3]", "chosen": "\nprint(sum(x))  # 6\n\n\n", "rejected": "\nprint(len(x))"},
]


def train_tokenizer_399(out):
    """A 399-token byte-level BPE with GPT-2's pre-tokenizer (not Qwen2's), saved as transformers 5
    saves a PreTrainedTokenizerFast; and the same vocabulary in SmolLM2's layout (digits split one
    by one, then byte level; `tokenizer_class` GPT2Tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=399, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
    )
    corpus = [open(__file__).read(), *GRID_TEXTS, *(p["prompt"] + p["chosen"] for p in GRID_PAIRS)]
    tk.train_from_iterator(corpus, trainer)
    assert tk.get_vocab_size() == 399, tk.get_vocab_size()
    plain = os.path.join(out, "tok399")
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>").save_pretrained(plain)
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    smol = os.path.join(out, "tok399_smol")
    os.makedirs(smol, exist_ok=True)
    tk.save(os.path.join(smol, "tokenizer.json"))
    with open(os.path.join(smol, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>", "add_prefix_space": False}, f)
    return plain, smol


def logp_alone(model, ids, start):
    """Sum of log-softmax of ids[start:] given what precedes, the sequence run alone."""
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return float(lp[start - 1 : len(ids) - 1].gather(1, torch.tensor(ids[start:])[:, None]).sum())


def grid_cases(ctx, vocab, g):
    rand = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()
    seq_lens = [(1, 5), (6, 20), (6, 16), (3, ctx // 4), (ctx // 2, 7), (10, ctx - 10), (ctx - 1, 1), (2, 30)]
    seqs = [{"prompt": rand(p), "completion": rand(c)} for p, c in seq_lens]
    pair_lens = [(6, 20, None), (6, 20, 15), (1, 4, 30), (ctx // 2, 10, ctx // 2 - 5), (20, ctx - 20, 3), (4, 2, 2),
                 (50, 21, 22), (7, ctx - 7, ctx - 8)]
    pairs = []
    for p, c, r in pair_lens:
        chosen = rand(c)
        pairs.append({"prompt": rand(p), "chosen": chosen, "rejected": chosen if r is None else rand(r)})
    return seqs, pairs


def grid_scores(model, seqs, pairs):
    return (
        [logp_alone(model, s["prompt"] + s["completion"], len(s["prompt"])) for s in seqs],
        [[logp_alone(model, p["prompt"] + p[k], len(p["prompt"])) for k in ("chosen", "rejected")] for p in pairs],
    )


def grid(out):
    plain, smol = train_tokenizer_399(out)
    with open(os.path.join(out, "grid_pairs.jsonl"), "w") as f:
        for p in GRID_PAIRS:
            f.write(json.dumps(p) + "\n")
    for i, (name, (model_cls, config_cls, kw)) in enumerate(GRID.items()):
        torch.manual_seed(100 + i)
        model = model_cls(config_cls(vocab_size=399, **kw))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if name == "qwen2_issue":
                    p.add_(torch.randn_like(p) * 0.05)
                elif "norm" in n:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.normal_(0, 0.1)
        d = os.path.join(out, f"grid_{name}")
        model.save_pretrained(d)
        tokdir = smol if name == "llama_smol" else plain
        for f in os.listdir(tokdir):
            if f.startswith("tokenizer"):
                shutil.copy(os.path.join(tokdir, f), d)
        model = load(d)
        tok = AutoTokenizer.from_pretrained(d)
        ctx = kw["max_position_embeddings"]
        g = torch.Generator().manual_seed(200 + i)
        long_ids = torch.randint(0, 399, (ctx,), generator=g).tolist()
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([long_ids])).logits[0].float(), -1)
        token_logps = lp[:-1].gather(1, torch.tensor(long_ids[1:])[:, None])[:, 0].tolist()
        seqs, pairs = grid_cases(ctx, 399, g)
        seq_scores, pair_scores = grid_scores(model, seqs, pairs)
        prompts = [torch.randint(0, 399, (n,), generator=g).tolist() for n in (7, 3, 30)]
        if ctx > 512:
            prompts.append(torch.randint(0, 399, (530,), generator=g).tolist())
        exp = {
            "context": ctx,
            "long_ids": long_ids,
            "token_logps": token_logps,
            "seqs": seqs,
            "seq_scores": seq_scores,
            "pairs": pairs,
            "pair_scores": pair_scores,
            "gen_prompts": prompts,
            "greedy": greedy_from(model, prompts, 32),
            "tokenizer_class": type(tok).__name__,
            "encode": [[s, tok(s, add_special_tokens=False)["input_ids"]] for s in GRID_TEXTS],
            "text_scores": score(model, tok, GRID_PAIRS),
        }
        if name in GRID_PEFT:
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
            pm = get_peft_model(load(d), cfg)
            with torch.no_grad():
                for n, p in pm.named_parameters():
                    if "lora_B" in n:
                        p.normal_(0, 0.05)
            pm.save_pretrained(os.path.join(out, f"grid_peft_{name}"))
            pm.eval()
            exp["peft_seq_scores"], exp["peft_pair_scores"] = grid_scores(pm, seqs, pairs)
        with open(os.path.join(out, f"expect_grid_{name}.json"), "w") as f:
            json.dump(exp, f)


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
