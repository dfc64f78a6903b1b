#!/usr/bin/env python3
"""Generates the bug-fix suite (`tasks/bugfix`) and the smoke suite (`tasks/smoke`) from the bank.

    python3 tasks/gen/bugfix.py [--out DIR]      # DIR defaults to tasks/

For every function of the bank (`tasks/gen/bank/`): write its test from its cases, check the correct
module passes it, then inject 2-3 bugs of different families (`mutate.py`), each a one-line slip whose
test fails. Families are chosen greedily, least used first within the function's split, so every family
is spread over both splits. Every task written is then checked as `check.py` checks it; a task that
fails a check is dropped with the reason printed.

The split is by function, never by line: a function is held out when the stable hash of its name falls
under HELDOUT_FRACTION, so all its bugs are in the same split, and adding a function never moves
another. The smoke suite copies the easiest tasks, keeping their split.

Output is deterministic: the same bank gives the same bytes.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bank  # noqa: E402
import mutate  # noqa: E402
import taskfmt  # noqa: E402
from taskfmt import Fix, Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HELDOUT_FRACTION = 0.25
MAX_STEPS = 8
TRIES_PER_FAMILY = 6
SCREEN_CPU_S = 3  # see humaneval.py
INSTRUCTIONS = [
    "The tests in {test} fail. Fix the bug in {module}.",
    "{test} fails. Find the bug in {module} and fix it.",
    "Running `python3 {test}` fails. Fix {module} so that it passes.",
    "There is a bug in {function} ({module}): {test} fails. Fix it.",
    "Fix the bug in {module} so that the tests in {test} pass.",
]
# Smoke tasks: the fix is one token on a line the failing check points at.
EASY_FAMILIES = ("comparison", "operator", "wrong_constant")
SMOKE_TRAIN, SMOKE_HELDOUT = 4, 2


def split_of(name: str) -> str:
    return "heldout" if taskfmt.stable_fraction(f"bugfix:{name}") < HELDOUT_FRACTION else "train"


def render_test(f: bank.Fn) -> str:
    raises = any(isinstance(exp, bank.Raises) for _, exp in f.cases)
    lines = [
        f'"""Checks for {f.name}.py. Run `python3 test_{f.name}.py`: it stops at the first failing check."""',
        "",
        f"from {f.name} import {f.name}",
        "",
        "",
        "def check(call, got, expected):",
        '    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"',
        "",
    ]
    if raises:
        lines += [
            "",
            "def check_raises(call, thunk, error):",
            "    try:",
            "        got = thunk()",
            "    except error:",
            "        return",
            '    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"',
            "",
        ]
    lines.append("")
    for call, expected in f.cases:
        if isinstance(expected, bank.Raises):
            lines.append(f"check_raises({call!r}, lambda: {call}, {expected.error})")
        else:
            lines.append(f"check({call!r}, {call}, {expected!r})")
    lines.append(f'print("test_{f.name}.py: all {len(f.cases)} checks passed")')
    return "\n".join(lines) + "\n"


def bank_errors(f: bank.Fn) -> list[str]:
    """What is wrong with a bank entry before any bug goes in."""
    errs = []
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", f.name) or f.name in sys.stdlib_module_names:
        errs.append("the name must be a lower-case identifier that is not a standard-library module")
    try:
        tree = ast.parse(f.source)
    except SyntaxError as e:
        return errs + [f"does not parse: {e}"]
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if f.name not in fns:
        errs.append(f"defines no top-level function `{f.name}`")
    elif not ast.get_docstring(fns[f.name]):
        errs.append("the function has no docstring")
    n_lines = len(f.source.splitlines())
    if not 5 <= n_lines <= 28:
        errs.append(f"{n_lines} lines (a bank module has 5-28)")
    if len(f.cases) < 3:
        errs.append("fewer than 3 cases")
    for call, expected in f.cases:
        if not isinstance(expected, bank.Raises):
            try:
                same = ast.literal_eval(repr(expected)) == expected
            except (ValueError, SyntaxError):
                same = False
            if not same or isinstance(expected, (set, frozenset)):
                errs.append(f"the expected value of {call} has no stable literal form: {expected!r}")
    return errs


def workspace(f: bank.Fn, module_text: str) -> dict[str, str]:
    return {f"{f.name}.py": module_text, f"test_{f.name}.py": render_test(f)}


def wanted(f: bank.Fn) -> int:
    """Longer functions carry more bugs; every function gets at least two."""
    body = [ln for ln in f.source.splitlines() if ln.strip()]
    return 2 if len(body) < 9 else 3


def build(f: bank.Fn, m: mutate.Mutation, split: str) -> tuple[str, Task]:
    name = f"{f.name}-{m.family}-1"
    module, test = f"{f.name}.py", f"test_{f.name}.py"
    instruction = taskfmt.pick(name, INSTRUCTIONS).format(test=test, module=module, function=f.name)
    task = Task(
        instruction=instruction,
        verify=f"python3 {test}",
        protected=[test],
        file=module,
        max_steps=MAX_STEPS,
        fixes=[Fix(module, m.fix_old, m.fix_new)],
        meta={"suite": "bugfix", "family": m.family, "function": f.name, "category": f.category, "split": split,
              "source": f"tasks/gen/bank/{f.category}.py", "mutation": m.description},
        workspace=workspace(f, m.buggy),
    )
    return name, task


def select(fns: list[bank.Fn]) -> list[tuple[bank.Fn, mutate.Mutation, str]]:
    counts = {"train": Counter(), "heldout": Counter()}
    chosen = []
    for f in fns:
        split = split_of(f.name)
        by_family: dict[str, list[mutate.Mutation]] = {}
        for m in mutate.mutations(f.source):
            by_family.setdefault(m.family, []).append(m)
        order = sorted(by_family, key=lambda fam: (counts[split][fam], mutate.FAMILIES.index(fam)))
        got = 0
        for fam in order:
            if got == wanted(f):
                break
            cands = by_family[fam]
            # Start at a place fixed by the name, so bugs are spread over the lines of the bank.
            start = int(taskfmt.stable_fraction(f"{f.name}:{fam}") * len(cands))
            for m in (cands[start:] + cands[:start])[:TRIES_PER_FAMILY]:
                run = taskfmt.run_verify(Path("."), workspace(f, m.buggy), f"python3 test_{f.name}.py", cpu_s=SCREEN_CPU_S)
                if run.code not in (0, None):
                    chosen.append((f, m, split))
                    counts[split][fam] += 1
                    got += 1
                    break
        if got < 2:
            print(f"bugfix: {f.name}: only {got} failing mutation(s) of different families", file=sys.stderr)
    return chosen


def easiness(name: str, task: Task) -> tuple:
    fam = task.meta["family"]
    lines = len(task.workspace[task.file].splitlines())
    return (EASY_FAMILIES.index(fam) if fam in EASY_FAMILIES else len(EASY_FAMILIES), lines, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tasks", help="where bugfix/ and smoke/ go (default: tasks/)")
    args = ap.parse_args()
    started = time.monotonic()
    fns = bank.load()
    bad = 0
    names = Counter(f.name for f in fns)
    for f in fns:
        errs = bank_errors(f)
        if names[f.name] > 1:
            errs.append("the name is used twice")
        if not errs:
            run = taskfmt.run_verify(Path("."), workspace(f, f.source), f"python3 test_{f.name}.py")
            if run.code != 0:
                errs.append("the correct module fails its own test:\n" + run.output)
        for e in errs:
            print(f"bank: {f.name}: {e}", file=sys.stderr)
        bad += bool(errs)
    if bad:
        print(f"bank: {bad} entries are wrong; nothing written", file=sys.stderr)
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".bugfix.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    built = [(split, *build(f, m, split)) for f, m, split in select(fns)]
    for split, name, task in built:
        taskfmt.write_task(tmp / split / name, task)
    tasks: dict[str, tuple[str, Task]] = {}
    for (split, name, task), errs in zip(built, taskfmt.check_tasks([tmp / s / n for s, n, _ in built])):
        if errs:
            print(f"bugfix: dropped {split}/{name}: {'; '.join(errs)}", file=sys.stderr)
            shutil.rmtree(tmp / split / name)
            continue
        tasks[name] = (split, task)
    taskfmt.replace_dir(tmp, args.out / "bugfix")

    smoke_tmp = args.out / ".smoke.tmp"
    if smoke_tmp.exists():
        shutil.rmtree(smoke_tmp)
    for split, n in (("train", SMOKE_TRAIN), ("heldout", SMOKE_HELDOUT)):
        used = set()
        for name, (s, task) in sorted(tasks.items(), key=lambda kv: easiness(kv[0], kv[1][1])):
            if s != split or task.meta["function"] in used or len(used) == n:
                continue
            used.add(task.meta["function"])
            meta = dict(task.meta, suite="smoke", source=f"tasks/bugfix/{split}/{name}")
            taskfmt.write_task(smoke_tmp / split / name, Task(**{**task.__dict__, "meta": meta}))
    taskfmt.replace_dir(smoke_tmp, args.out / "smoke")

    report(tasks, fns)
    print(f"bugfix: generated in {time.monotonic() - started:.1f} s")
    return 0


def report(tasks: dict[str, tuple[str, Task]], fns: list[bank.Fn]) -> None:
    per = Counter((s, t.meta["family"]) for s, t in tasks.values())
    funcs = Counter(s for s in (split_of(f.name) for f in fns))
    print(f"bugfix: {len(fns)} functions ({funcs['train']} train, {funcs['heldout']} held out), {len(tasks)} tasks")
    print(f"{'family':<20}{'train':>7}{'heldout':>9}")
    for fam in mutate.FAMILIES:
        print(f"{fam:<20}{per[('train', fam)]:>7}{per[('heldout', fam)]:>9}")
    print(f"{'total':<20}{sum(per[('train', f)] for f in mutate.FAMILIES):>7}"
          f"{sum(per[('heldout', f)] for f in mutate.FAMILIES):>9}")


if __name__ == "__main__":
    sys.exit(main())
