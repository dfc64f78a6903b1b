"""Reference fixtures for the GGUF conversion tests, made with the `gguf` package and transformers.

usage: convert_fixtures.py OUT TOKDIR CONVERT_SCRIPT [REAL_MODEL_DIR]

Synthetic files, written as llama.cpp's converter writes them (q/k rows permuted for llama, F32
norms), from tiny random models made by transformers, with the vocabulary and chat template of
TOKDIR (Keel's init-model: byte-level BPE, control and user-defined tokens):

  OUT/llama.gguf   untied llama, GQA; tensors F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (quantized by
                   the `gguf` package) and Q2_K..Q6_K (random blocks: the package cannot quantize
                   them); pre-tokenizer `llama-bpe`, bos added.
  OUT/qwen2.gguf   tied qwen2 with q/k/v biases; pre-tokenizer `qwen2`.
  OUT/spm.gguf     llama with a SentencePiece vocabulary (`tokenizer.ggml.model = llama`: byte
                   tokens, scores and no merges, as llama.cpp stores Llama 2's and Mistral's).
  OUT/llama3.gguf  all-F32 llama with Llama 3.1 rope scaling, stored as llama.cpp stores it
                   (`rope_freqs.weight`); OUT/llama3_orig.safetensors holds the original weights.
  OUT/iq4.gguf     a llama whose attn_v is IQ4_NL, a type the converter does not read.

For llama, qwen2 and spm, OUT/py_{name}/ is transformers' conversion (CONVERT_SCRIPT's `convert`, the
one setup runs). OUT/expect_{name}.json: logits of fixed ids from transformers on that folder (for
llama3: from the original model, since transformers' GGUF loader ignores rope_freqs), and the
encodings of CORPUS by transformers' tokenizer of the GGUF, without (and decoded again) and with
special tokens.

With REAL_MODEL_DIR (setup's conversion of SmolLM2-135M-Instruct): OUT/expect_real.json with the
ids of a chat prompt of a few hundred tokens (rendered by transformers), its greedy continuation
(20 tokens), and the encodings of CORPUS; OUT/real_logits.safetensors with the prompt's logits.
"""

import importlib.util
import json
import math
import os
import sys

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

torch.manual_seed(0)
RNG = np.random.default_rng(0)

CORPUS = [
    'fn main() { println!("hi {}", 1 + 2); }',
    "def add(a, b):\n    return a + b\n\n\nclass X:\n\tpass\n",
    "<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "Ünïcödé → ✓ 日本語 emoji 🦀🐍 Ελληνικά ß ﬁ",
    "digits 0123456789 3.14159 1,000,000 2026-12-02 x86_64",
    "spaces:    four, tabs:\t\t two, newlines:\n\n\n three, trailing   ",
    "  leading spaces and \r\n CRLF \u00a0nbsp",
    '<tool_call>\n{"name": "run", "arguments": {"cmd": "ls -la"}}\n</tool_call>',
    "<|endoftext|><repo_name>keel<file_sep>src/lib.rs",
    "mixed<|im_end|>special<|im_start|>tokens and <|im_end|",
    "'s 've 're 'LL CAPITALS ÀÉÎ",
    "",
]

IDS = [[5, 17, 42, 99, 100, 7, 3, 250, 31, 64, 11, 2, 700, 900], [300, 1, 2, 3, 400, 8, 9, 77, 66, 55, 44, 33, 22, 11]]


def permute(w, n_head, n_head_kv):
    """llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def random_blocks(qtype, rows, cols):
    """Random blocks of a K-quant (and valid, small scales), as uint8 rows."""
    per_block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // per_block
    b = RNG.integers(0, 256, size=(n, size), dtype=np.uint8)
    scale = lambda lo, hi: f16_bytes(RNG.uniform(lo, hi, size=n))  # noqa: E731
    if qtype == Q.Q2_K:
        b[:, 80:82], b[:, 82:84] = scale(1e-3, 3e-3), scale(1e-3, 3e-3)
    elif qtype == Q.Q3_K:
        b[:, 108:110] = scale(5e-4, 1.5e-3)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        b[:, 0:2], b[:, 2:4] = scale(1e-4, 3e-4), scale(1e-4, 3e-4)
    elif qtype == Q.Q6_K:
        b[:, 208:210] = scale(1e-5, 4e-5)
    else:
        raise ValueError(qtype)
    return b.reshape(rows, cols // per_block * size)


def encode(data, qtype, rows=None):
    """`(array, raw_dtype)` for GGUFWriter.add_tensor."""
    if qtype == Q.F32:
        return data.astype(np.float32), None
    if qtype == Q.F16:
        return data.astype(np.float16), None
    if qtype in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        return random_blocks(qtype, data.shape[0], data.shape[1]), qtype
    return gguf.quantize(data.astype(np.float32), qtype), qtype


def vocabulary(tokdir):
    """A byte-level vocabulary (tokens by id, llama.cpp token types, merges) and the chat template,
    from a tokenizer.json folder."""
    tj = json.load(open(os.path.join(tokdir, "tokenizer.json")))
    vocab = dict(tj["model"]["vocab"])
    types = {}
    for t in tj["added_tokens"]:
        vocab[t["content"]] = t["id"]
        types[t["id"]] = 3 if t["special"] else 4
    tokens = [None] * (max(vocab.values()) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    return {
        "model": "gpt2",
        "tokens": tokens,
        "types": [types.get(i, 1) for i in range(len(tokens))],
        "merges": [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]],
        "template": json.load(open(os.path.join(tokdir, "tokenizer_config.json")))["chat_template"],
        "bos": "<|im_start|>",
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
    }


def spm_vocabulary(template):
    """A SentencePiece vocabulary as llama.cpp stores one (Llama 2, Mistral): `<unk>`, `<s>`, `</s>`,
    the 256 byte tokens, pieces spelled with `▁` and scored best first, no merges; plus ChatML's
    control tokens and a user-defined one. The pieces are trained here on CORPUS and this file."""
    from tokenizers import SentencePieceBPETokenizer

    sp = SentencePieceBPETokenizer()
    sp.train_from_iterator(CORPUS + open(__file__).read().split("\n\n"), vocab_size=700, show_progress=False)
    pieces = [t for t, _ in sorted(sp.get_vocab().items(), key=lambda x: x[1]) if t != "<unk>"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces + ["<|im_start|>", "<|im_end|>", "<tool_call>"]
    return {
        "model": "llama",
        "tokens": tokens,
        "types": [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [3, 3, 4],
        "scores": [0.0] * 259 + [-float(i) for i in range(len(pieces))] + [0.0] * 3,
        "template": template,
        "bos": "<s>",
        "eos": "<|im_end|>",
        "unk": "<unk>",
    }


def write_gguf(path, arch, cfg, tensors, tok, pre=None, add_bos=None):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    tokens = tok["tokens"]
    w.add_tokenizer_model(tok["model"])
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(tok["types"])
    if "merges" in tok:
        w.add_token_merges(tok["merges"])
    if "scores" in tok:
        w.add_token_scores(tok["scores"])
    w.add_bos_token_id(tokens.index(tok["bos"]))
    w.add_eos_token_id(tokens.index(tok["eos"]))
    if "pad" in tok:
        w.add_pad_token_id(tokens.index(tok["pad"]))
    if "unk" in tok:
        w.add_unk_token_id(tokens.index(tok["unk"]))
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.add_chat_template(tok["template"])
    for name, (data, raw) in tensors.items():
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_tensors(model, arch, types, default=Q.F32):
    """The model's state dict under GGUF names, in llama.cpp's layout and the given types."""
    cfg = model.config
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        data = t.detach().float().numpy()
        g = (
            name.replace("model.embed_tokens.", "token_embd.")
            .replace("model.norm.", "output_norm.")
            .replace("lm_head.", "output.")
            .replace("model.layers.", "blk.")
            .replace(".self_attn.q_proj.", ".attn_q.")
            .replace(".self_attn.k_proj.", ".attn_k.")
            .replace(".self_attn.v_proj.", ".attn_v.")
            .replace(".self_attn.o_proj.", ".attn_output.")
            .replace(".mlp.gate_proj.", ".ffn_gate.")
            .replace(".mlp.up_proj.", ".ffn_up.")
            .replace(".mlp.down_proj.", ".ffn_down.")
            .replace(".input_layernorm.", ".attn_norm.")
            .replace(".post_attention_layernorm.", ".ffn_norm.")
        )
        if arch == "llama" and ".attn_q." in g:
            data = permute(data, cfg.num_attention_heads, cfg.num_attention_heads)
        elif arch == "llama" and ".attn_k." in g:
            data = permute(data, cfg.num_attention_heads, cfg.num_key_value_heads)
        qtype = types.get(g, Q.F32 if data.ndim == 1 else default)
        out[g] = encode(data, qtype)
    return out


def randomize_norms_and_biases(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))


def logits(model, ids=IDS):
    with torch.no_grad():
        out = model(torch.tensor(ids), attention_mask=torch.ones(len(ids), len(ids[0]), dtype=torch.long)).logits
    return {"logits_shape": list(out.shape), "logits": out.flatten().tolist()}


def encodings(tok):
    plain = [tok(t, add_special_tokens=False)["input_ids"] for t in CORPUS]
    return {
        "encode": [[t, ids, tok.decode(ids)] for t, ids in zip(CORPUS, plain)],
        "encode_special": [[t, tok(t)["input_ids"]] for t in CORPUS],
    }


def llama3_rope_freqs(theta, head_dim, factor, low=1.0, high=4.0, original=8192):
    """llama.cpp's `LlamaModel.generate_extra_tensors` for rope_type llama3."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    low_wavelen, high_wavelen = original / low, original / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def synthetic(out, tokdir, convert):
    tok = vocabulary(tokdir)
    vocab = len(tok["tokens"])
    small = dict(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5)

    llama = LlamaForCausalLM(LlamaConfig(**small, rope_theta=50000.0, tie_word_embeddings=False)).eval()
    randomize_norms_and_biases(llama)
    types = {
        "token_embd.weight": Q.Q8_0,
        "output.weight": Q.Q6_K,
        "output_norm.weight": Q.BF16,
        "blk.0.attn_q.weight": Q.Q4_0,
        "blk.0.attn_k.weight": Q.Q8_0,
        "blk.0.attn_v.weight": Q.F16,
        "blk.0.attn_output.weight": Q.Q4_1,
        "blk.0.ffn_gate.weight": Q.Q4_K,
        "blk.0.ffn_up.weight": Q.Q5_K,
        "blk.0.ffn_down.weight": Q.Q6_K,
        "blk.1.attn_q.weight": Q.Q5_0,
        "blk.1.attn_k.weight": Q.Q5_1,
        "blk.1.attn_v.weight": Q.Q2_K,
        "blk.1.attn_output.weight": Q.Q3_K,
        "blk.1.ffn_gate.weight": Q.BF16,
        "blk.1.ffn_up.weight": Q.F16,
        "blk.1.ffn_down.weight": Q.Q8_0,
    }
    # BF16 has no numpy type: the package's own conversion, as raw bytes.
    tensors = gguf_tensors(llama, "llama", {k: v for k, v in types.items() if v != Q.BF16})
    for k, v in types.items():
        if v == Q.BF16:
            src = tensors[k][0]
            tensors[k] = (gguf.quantize(src, Q.BF16), Q.BF16)
    write_gguf(os.path.join(out, "llama.gguf"), "llama", llama.config, tensors, tok, "llama-bpe", True)

    qwen = Qwen2ForCausalLM(Qwen2Config(**small, rope_theta=1e6, tie_word_embeddings=True)).eval()
    randomize_norms_and_biases(qwen)
    types = {
        "token_embd.weight": Q.F16,
        "blk.0.attn_q.weight": Q.Q8_0,
        "blk.0.attn_k.weight": Q.Q4_0,
        "blk.0.attn_v.weight": Q.Q4_1,
        "blk.0.attn_output.weight": Q.Q5_0,
        "blk.0.ffn_gate.weight": Q.Q5_1,
        "blk.0.ffn_up.weight": Q.Q4_K,
        "blk.0.ffn_down.weight": Q.Q6_K,
    }
    write_gguf(os.path.join(out, "qwen2.gguf"), "qwen2", qwen.config, gguf_tensors(qwen, "qwen2", types, Q.F16), tok, "qwen2", False)

    # A SentencePiece vocabulary (llama.cpp's `llama` tokenizer model: no merges, scores instead;
    # bos added by default).
    spm = spm_vocabulary(tok["template"])
    sl = LlamaForCausalLM(LlamaConfig(**(small | {"vocab_size": len(spm["tokens"])}), rope_theta=10000.0, tie_word_embeddings=True)).eval()
    randomize_norms_and_biases(sl)
    write_gguf(os.path.join(out, "spm.gguf"), "llama", sl.config, gguf_tensors(sl, "llama", {}, Q.F16), spm)

    for name in ("llama", "qwen2", "spm"):
        folder = os.path.join(out, f"py_{name}")
        convert(os.path.join(out, f"{name}.gguf"), folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        gtok = AutoTokenizer.from_pretrained(out, gguf_file=f"{name}.gguf")
        json.dump(logits(model) | encodings(gtok), open(os.path.join(out, f"expect_{name}.json"), "w"))

    # Llama 3.1 rope scaling: transformers' GGUF loader drops rope_freqs, so the reference is the
    # original model itself (its weights are F32 here, so the conversion must give them back exactly).
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    l3 = LlamaForCausalLM(LlamaConfig(**(small | {"max_position_embeddings": 131072}), rope_parameters=scaling, tie_word_embeddings=True)).eval()
    randomize_norms_and_biases(l3)
    with torch.no_grad():  # sharper attention, so that rotary angles show in the logits
        for n, p in l3.named_parameters():
            if "q_proj" in n or "k_proj" in n:
                p.mul_(8)
    tensors = gguf_tensors(l3, "llama", {})
    tensors["rope_freqs.weight"] = (llama3_rope_freqs(500000.0, 64, 8.0), None)
    write_gguf(os.path.join(out, "llama3.gguf"), "llama", l3.config, tensors, tok, "llama-bpe", False)
    save_file({k: v.contiguous() for k, v in l3.state_dict().items() if k != "lm_head.weight"}, os.path.join(out, "llama3_orig.safetensors"))
    # A long sequence: at positions in the hundreds the scaled frequencies (wavelengths between 2048
    # and 8192) have turned by a visibly different angle than unscaled ones would.
    long_ids = [[(i * 37) % vocab for i in range(600)]]
    with torch.no_grad():
        far = l3(torch.tensor(long_ids)).logits[:, -8:]
    json.dump(logits(l3) | {"far_ids": long_ids, "far_logits": far.flatten().tolist()}, open(os.path.join(out, "expect_llama3.json"), "w"))

    tensors = gguf_tensors(llama, "llama", {})
    tensors["blk.0.attn_v.weight"] = (RNG.integers(0, 256, size=(128, 256 // 32 * 18), dtype=np.uint8), Q.IQ4_NL)
    write_gguf(os.path.join(out, "iq4.gguf"), "llama", llama.config, tensors, tok, "llama-bpe", False)


def real(out, model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    code = open(__file__).read()[:900]
    messages = [
        {"role": "system", "content": "You are a careful coding assistant. Explain code step by step, in detail."},
        {"role": "user", "content": "Explain what this Python program does, line by line:\n\n" + code},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # Greedy decoding by hand on the prompt's own cache (what `generate` does, without a second
    # prefill), stopping at the end-of-sequence id as Keel does.
    with torch.no_grad():
        step = model(torch.tensor([ids]), use_cache=True)
        lg = step.logits[0]
        greedy = []
        while len(greedy) < 20:
            greedy.append(int(step.logits[0, -1].argmax()))
            if greedy[-1] == model.generation_config.eos_token_id:
                break
            step = model(torch.tensor([[greedy[-1]]]), past_key_values=step.past_key_values, use_cache=True)
    save_file({"logits": lg.contiguous()}, os.path.join(out, "real_logits.safetensors"))
    json.dump({"text": text, "ids": ids, "greedy": greedy} | encodings(tok), open(os.path.join(out, "expect_real.json"), "w"))


def main():
    out, tokdir, script = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("convert_gguf", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    synthetic(out, tokdir, mod.convert)
    if len(sys.argv) > 4:
        real(out, sys.argv[4])


if __name__ == "__main__":
    main()
