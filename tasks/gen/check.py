#!/usr/bin/env python3
"""Checks task suites: every task is valid, fails `verify` as it starts, and passes it once its
`[[fix]]` is applied.

    python3 tasks/gen/check.py SUITE_DIR [SUITE_DIR ...] [--jobs N]

A SUITE_DIR is a suite with `train/` and `heldout/` splits, a folder of task folders, or one task
folder. Besides each task, it checks the suite: task folder names are unique across its splits, a
task's `meta.split` (if any) names the split it is in, and no function (`meta.function`) or problem
(`meta.task_id`) has tasks in both splits — a held-out split that shares one with training measures
nothing — nor in the training split of one suite given and the held-out split of another. Prints one
line per failing task and the counts per split and family; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import taskfmt  # noqa: E402

SPLITS = ("train", "heldout")
LEAK_KEYS = ("function", "task_id")


def find_tasks(suite: Path) -> list[tuple[str, Path]]:
    """(split, task folder) for every task of the suite; split is "" for a suite without splits."""
    if (suite / "task.toml").is_file():
        return [("", suite)]
    splits = [s for s in SPLITS if (suite / s).is_dir()]
    if splits:
        return [(s, d) for s in splits for d in sorted((suite / s).iterdir()) if d.is_dir()]
    return [("", d) for d in sorted(suite.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def check_suite(suite: Path, jobs: int | None, owners: dict[tuple[str, str], set[str]] | None = None) -> int:
    """Check one suite; `owners` (if given) collects which splits each function or problem is in, so
    that leaks between suites can be found too."""
    if not suite.is_dir():
        print(f"{suite}: not a folder", file=sys.stderr)
        return 1
    found = find_tasks(suite)
    if not found:
        print(f"{suite}: no tasks", file=sys.stderr)
        return 1
    failures = 0
    results = taskfmt.check_tasks([d for _, d in found], jobs)
    names: dict[str, list[str]] = defaultdict(list)
    mine: dict[tuple[str, str], set[str]] = defaultdict(set)
    counts: Counter = Counter()
    for (split, d), errors in zip(found, results):
        names[d.name].append(split)
        task, _ = taskfmt.load_task(d)
        if task is not None:
            meta_split = task.meta.get("split")
            if split and meta_split is not None and meta_split != split:
                errors = errors + [f"meta.split is {meta_split!r} but the task is in {split}/"]
            for key in LEAK_KEYS:
                if key in task.meta:
                    mine[(key, str(task.meta[key]))].add(split)
            counts[(split, str(task.meta.get("family", "-")))] += 1
        for e in errors:
            print(f"{d.relative_to(suite.parent)}: {e}")
        failures += bool(errors)
    for name, splits in sorted(names.items()):
        if len(splits) > 1:
            print(f"{suite}: task name {name} is used {len(splits)} times ({', '.join(s or '.' for s in splits)})")
            failures += 1
    for (key, value), splits in sorted(mine.items()):
        if len(splits - {""}) > 1:
            print(f"{suite}: {key} {value} has tasks in both train/ and heldout/")
            failures += 1
        if owners is not None:
            owners[(key, value)] |= splits
    report(suite, counts)
    print(f"{suite}: {len(found)} tasks, {failures} failing")
    return failures


def report(suite: Path, counts: Counter) -> None:
    splits = sorted({s for s, _ in counts}, key=lambda s: (s not in SPLITS, SPLITS.index(s) if s in SPLITS else 0))
    families = sorted({f for _, f in counts})
    print(f"{suite}: {'family':<20}" + "".join(f"{s or 'tasks':>9}" for s in splits))
    for fam in families:
        print(f"{suite}: {fam:<20}" + "".join(f"{counts[(s, fam)]:>9}" for s in splits))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suites", nargs="+", type=Path, metavar="SUITE_DIR")
    ap.add_argument("--jobs", type=int, default=None, help="tasks checked at once (default: one per CPU)")
    args = ap.parse_args()
    started = time.monotonic()
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    failures = sum(check_suite(s, args.jobs, owners) for s in args.suites)
    if len(args.suites) > 1:
        # Suites made from the same functions or problems (bugfix and smoke; humanevalfix and humaneval)
        # must split them the same way, or one trains on what the other holds out.
        for (key, value), splits in sorted(owners.items()):
            if len(splits - {""}) > 1:
                print(f"{key} {value} is in train/ of one suite and heldout/ of another")
                failures += 1
    print(f"checked in {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
