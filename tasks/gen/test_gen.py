#!/usr/bin/env python3
"""Tests of the task generators and the checker: `python3 tasks/gen/test_gen.py` (no pytest needed;
exits 1 when a test fails). `cargo test -p xtask` runs it, then checks the committed suites.

The mutator is tested on inline fixtures (each family, UTF-8 columns, regions, the fix's uniqueness),
the task format on tricky strings, the checker on tasks broken in each way it must catch, both test
renderers on a right and a wrong module, and the committed suites on their shape and split rules.
"""

from __future__ import annotations

import ast
import shutil
import sys
import tempfile
import tomllib
import traceback
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bank  # noqa: E402
import bugfix  # noqa: E402
import check  # noqa: E402
import humaneval  # noqa: E402
import mutate  # noqa: E402
import taskfmt  # noqa: E402
from taskfmt import Fix, Task  # noqa: E402

ROOT = HERE.parents[1]

CLAMP = '''def clamp(x, low, high):
    """Return x limited to [low, high]; the docstring's x < low must never change."""
    if low > high:
        raise ValueError("low > high")
    if x < low:
        return low
    if x > high:
        return high
    return x
'''

TOTALS = '''def totals(xs, k):
    """Sums of the first k items and of the rest."""
    first = 0
    for i in range(k):
        first += xs[i]
    rest = sum(xs[k:])
    pairs = [x for x in xs if x in (1, 2)]
    return first, rest, divmod(first, k), len(pairs) - k
'''


def by_family(source: str, region=None) -> dict[str, list[mutate.Mutation]]:
    out = defaultdict(list)
    for m in mutate.mutations(source, region):
        out[m.family].append(m)
    return out


def changed_lines(a: str, b: str) -> list[int]:
    la, lb = a.splitlines(), b.splitlines()
    return [i for i in range(max(len(la), len(lb))) if i >= len(la) or i >= len(lb) or la[i] != lb[i]]


# --- mutate


def test_every_mutation_is_one_line_and_its_fix_restores_the_original():
    for source in (CLAMP, TOTALS):
        muts = mutate.mutations(source)
        assert len(muts) > 20, len(muts)
        for m in muts:
            assert m.family in mutate.FAMILIES
            assert m.buggy != source
            assert m.buggy.count(m.fix_old) == 1, (m.description, m.fix_old)
            assert m.buggy.replace(m.fix_old, m.fix_new) == source, m.description
            if m.family != "missing_case":
                assert len(source.splitlines()) == len(m.buggy.splitlines())
                assert changed_lines(source, m.buggy) == [m.line - 1], m.description
            ast.parse(m.buggy)


def test_each_family_makes_the_slip_it_names():
    fam = by_family(CLAMP)
    lines = lambda ms: {m.buggy.splitlines()[m.line - 1].strip() for m in ms if m.family != "missing_case"}  # noqa: E731
    assert "if x <= low:" in lines(fam["comparison"])
    assert "if x > low:" in lines(fam["comparison"])
    assert "if not x < low:" in lines(fam["negated_condition"])
    assert "return high" in lines(fam["wrong_variable"])
    removed = {m.description for m in fam["missing_case"]}
    assert any("`if x < low:` removed" in d for d in removed), removed
    fam = by_family(TOTALS)
    assert "first -= xs[i]" in lines(fam["operator"])
    assert "for i in range(k + 1):" in lines(fam["off_by_one"])
    assert "rest = sum(xs[k + 1:])" in lines(fam["off_by_one"])
    assert "first += xs[i + 1]" in lines(fam["off_by_one"])
    assert "first = 1" in lines(fam["wrong_constant"])
    assert "pairs = [x for x in xs if x not in (1, 2)]" in lines(fam["negated_condition"])
    assert "return first, rest, divmod(k, first), len(pairs) - k" in lines(fam["swapped_arguments"])


def test_docstrings_are_never_touched():
    doc = CLAMP.splitlines()[1]
    for m in mutate.mutations(CLAMP):
        assert doc in m.buggy.splitlines(), m.description


def test_no_slip_that_no_one_makes():
    for m in mutate.mutations(TOTALS):
        line = m.buggy.splitlines()[m.line - 1]
        # a name swapped in where the expression already reads it, or a variable swapped with a literal
        assert "xs[xs]" not in line and "i[i]" not in line and "k - k" not in line, m.description
        # a comprehension's variable read outside the comprehension
        assert not (m.family == "wrong_variable" and "`x`" in m.description.split("became")[1]), m.description


def test_columns_are_utf8_bytes():
    source = 'def f(a, b):\n    """Doc."""\n    label = "héllo wörld" if a < b else "ß"\n    return label\n'
    fam = by_family(source)
    got = {m.buggy.splitlines()[2] for m in fam["comparison"]}
    assert '    label = "héllo wörld" if a <= b else "ß"' in got, got


def test_the_fix_grows_context_until_it_is_unique():
    source = 'def f(a, b):\n    """Doc."""\n    if a:\n        return a + 1\n    if b:\n        return b + 1\n    return 0\n'
    fam = by_family(source)
    m = next(m for m in fam["operator"] if m.line == 4)
    assert m.fix_old == "        return a - 1", m.fix_old
    # `return 0` -> `return 1`: unique as it is
    m = next(m for m in fam["wrong_constant"] if m.line == 7)
    assert m.fix_old == "    return 1" and m.fix_new == "    return 0"
    # the buggy line equals another line: the old text takes the line above along
    source = 'def g(a):\n    """Doc."""\n    a = a - 1\n    print(a)\n    a = a + 1\n    return a\n'
    m = next(m for m in by_family(source)["operator"] if m.line == 5)
    assert m.fix_old == "    print(a)\n    a = a - 1" and m.buggy.count(m.fix_old) == 1, m.fix_old


def test_region_limits_where_bugs_go():
    muts = mutate.mutations(CLAMP, region=(5, 6))
    assert muts and all(5 <= m.line <= 6 for m in muts), [m.description for m in muts]


def test_mutations_are_deterministic():
    a = [(m.family, m.buggy, m.fix_old) for m in mutate.mutations(TOTALS)]
    b = [(m.family, m.buggy, m.fix_old) for m in mutate.mutations(TOTALS)]
    assert a == b


# --- the task format


def test_toml_strings_read_back():
    for s in ["plain", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "ends with quote'", "'''",
              "    if x < 'a':\n        return '''x'''", "\x01control", "é ü ß", ""]:
        assert tomllib.loads(f"v = {taskfmt.toml_string(s)}")["v"] == s, repr(s)


def small_task(module: str, test: str, fixes: list[Fix], **kw) -> Task:
    fields = dict(instruction="Fix it.", verify="python3 test_m.py", protected=["test_m.py"], file="m.py", max_steps=8,
                  fixes=fixes, workspace={"m.py": module, "test_m.py": test})
    return Task(**{**fields, **kw})


GOOD_TEST = "from m import f\nassert f(2) == 4, f'f(2) returned {f(2)!r}, expected 4'\n"


def check_of(task: Task, toml_edit=None) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        dest = Path(d) / "t"
        taskfmt.write_task(dest, task)
        if toml_edit:
            p = dest / "task.toml"
            p.write_text(toml_edit(p.read_text()))
        return taskfmt.check_task(dest)


def test_check_accepts_a_good_task():
    task = small_task("def f(x):\n    return x + x + 1\n", GOOD_TEST, [Fix("m.py", "x + x + 1", "x + x")])
    assert check_of(task) == []


def test_check_rejects_what_it_must():
    fixed = "def f(x):\n    return x + x\n"
    errs = check_of(small_task(fixed, GOOD_TEST, [Fix("m.py", "x + x", "x * 2")]))
    assert any("already passes" in e for e in errs), errs
    errs = check_of(small_task("def f(x):\n    return x + 1 + x + 1\n", GOOD_TEST, [Fix("m.py", "x + 1", "x")]))
    assert any("occurs 2 times" in e for e in errs), errs
    errs = check_of(small_task("def f(x):\n    return x + x + 1\n", GOOD_TEST, [Fix("m.py", "+ 1", "+ 2")]))
    assert any("with the fix applied" in e for e in errs), errs
    errs = check_of(small_task("def f(x):\n    return x + x + 1\n", GOOD_TEST, []))
    assert any("no [[fix]]" in e for e in errs), errs
    errs = check_of(small_task(fixed, GOOD_TEST, []), lambda t: t + 'verfiy = "x"\n')
    assert any("unknown key `verfiy`" in e for e in errs), errs
    errs = check_of(small_task(fixed, GOOD_TEST, [], protected=["nope.py"]))
    assert any("protected `nope.py` is not a file" in e for e in errs), errs
    errs = check_of(small_task(fixed, GOOD_TEST, []), lambda t: t.replace('verify = "python3 test_m.py"', "verify = 3"))
    assert any("`verify` must be a non-empty string" in e for e in errs), errs


def test_check_stops_a_task_that_never_ends():
    old = taskfmt.CPU_LIMIT_S
    taskfmt.CPU_LIMIT_S = 1
    try:
        errs = check_of(small_task("def f(x):\n    while True:\n        pass\n", GOOD_TEST, [Fix("m.py", "while True:\n        pass", "return x + x")]))
    finally:
        taskfmt.CPU_LIMIT_S = old
    assert any("does not finish" in e for e in errs), errs


def test_check_suite_catches_leaks_and_duplicates():
    task = small_task("def f(x):\n    return x + x + 1\n", GOOD_TEST, [Fix("m.py", "x + x + 1", "x + x")], meta={"function": "f"})
    with tempfile.TemporaryDirectory() as d:
        suite = Path(d) / "suite"
        taskfmt.write_task(suite / "train" / "f-1", task)
        taskfmt.write_task(suite / "heldout" / "f-2", task)
        assert check.check_suite(suite, jobs=2) == 1  # f in both splits
        shutil.rmtree(suite / "heldout" / "f-2")
        taskfmt.write_task(suite / "heldout" / "f-1", Task(**{**task.__dict__, "meta": {"function": "g"}}))
        assert check.check_suite(suite, jobs=2) == 1  # f-1 twice
        shutil.rmtree(suite / "heldout" / "f-1")
        taskfmt.write_task(suite / "heldout" / "g-1", Task(**{**task.__dict__, "meta": {"function": "g", "split": "train"}}))
        assert check.check_suite(suite, jobs=2) == 1  # meta.split says train
        shutil.rmtree(suite / "heldout" / "g-1")
        owners = defaultdict(set)
        assert check.check_suite(suite, jobs=2, owners=owners) == 0
        assert owners[("function", "f")] == {"train"}


# --- the test files the agent reads


def run_files(files: dict[str, str], verify: str) -> taskfmt.Run:
    return taskfmt.run_verify(Path("."), files, verify, cpu_s=5)


def test_bugfix_test_says_what_was_called_returned_and_expected():
    f = next(f for f in bank.load() if f.name == "clamp")
    ok = run_files(bugfix.workspace(f, f.source), "python3 test_clamp.py")
    assert ok.code == 0 and "all 7 checks passed" in ok.output, ok.output
    bad = run_files(bugfix.workspace(f, f.source.replace("if x > high:", "if x < high:")), "python3 test_clamp.py")
    assert bad.code == 1 and "clamp(5, 0, 10) returned 10, expected 5" in bad.output, bad.output


PROBLEM = {
    "task_id": "HumanEval/7",
    "entry_point": "scale",
    "prompt": 'from typing import List\n\n\ndef helper(x):\n    return 2 * x\n\n\ndef scale(xs: List[int]) -> List[int]:\n'
              '    """Double every item.\n    >>> scale([1])\n    [2]\n    """\n',
    "canonical_solution": "    out = []\n    for x in xs:\n        out.append(helper(x))\n    return out\n",
    "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate([]) == []\n"
            "    assert candidate([1, 5]) == [2, 10]\n    assert helper(3) == 6\n",
}


def test_humaneval_tasks_check_and_report_failures():
    fix, why = humaneval.fix_task(PROBLEM, "test")
    assert fix is not None, why
    impl = humaneval.implement_task(PROBLEM, "test")
    assert "from scale import scale, helper" in impl.workspace["test_scale.py"]
    assert impl.workspace["scale.py"].endswith('    """\n    raise NotImplementedError\n')
    for task in (fix, impl):
        assert check_of(task) == [], check_of(task)
    out = run_files(fix.workspace, "python3 test_scale.py").output
    assert "FAILED at line" in out or "Traceback" in out, out
    assert "last call: scale(" in out, out
    out = run_files(impl.workspace, "python3 test_scale.py").output
    assert "NotImplementedError" in out and "last call: scale([])" in out, out
    good = dict(impl.workspace, **{"scale.py": PROBLEM["prompt"] + PROBLEM["canonical_solution"]})
    out = run_files(good, "python3 test_scale.py")
    assert out.code == 0 and "all checks passed" in out.output, out.output


def test_splits_depend_on_the_name_alone():
    assert bugfix.split_of("clamp") == bugfix.split_of("clamp")
    fractions = [taskfmt.stable_fraction(f"bugfix:{f.name}") for f in bank.load()]
    assert all(0 <= x < 1 for x in fractions) and len(set(fractions)) == len(fractions)
    assert humaneval.split_of("HumanEval/0") in ("train", "heldout")


# --- the committed suites (their shape; check.py runs them)


def load_suite(name: str) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for split in ("train", "heldout"):
        out[split] = {d.name: tomllib.loads((d / "task.toml").read_text()) for d in sorted((ROOT / "tasks" / name / split).iterdir())}
    return out


def test_committed_bugfix_suite_has_its_shape():
    suite = load_suite("bugfix")
    fns = {split: {t["meta"]["function"] for t in tasks.values()} for split, tasks in suite.items()}
    assert not fns["train"] & fns["heldout"], fns["train"] & fns["heldout"]
    assert len(fns["train"] | fns["heldout"]) >= 80
    for split, tasks in suite.items():
        fams = {t["meta"]["family"] for t in tasks.values()}
        assert fams == set(mutate.FAMILIES), (split, set(mutate.FAMILIES) - fams)
        for name, t in tasks.items():
            assert t["meta"]["split"] == split and t["max_steps"] == 8 and len(t["fix"]) == 1
            assert bugfix.split_of(t["meta"]["function"]) == split, name
    per_fn = defaultdict(int)
    for tasks in suite.values():
        for t in tasks.values():
            per_fn[t["meta"]["function"]] += 1
    assert all(2 <= n <= 4 for n in per_fn.values()), per_fn
    assert 60 <= len(suite["heldout"]) <= 85, len(suite["heldout"])


def test_committed_smoke_suite_copies_bugfix_with_its_split():
    smoke = load_suite("smoke")
    assert len(smoke["train"]) == 4 and len(smoke["heldout"]) == 2
    for split, tasks in smoke.items():
        for name in tasks:
            src, dst = ROOT / "tasks" / "bugfix" / split / name, ROOT / "tasks" / "smoke" / split / name
            for f in (src / "workspace").iterdir():
                assert (dst / "workspace" / f.name).read_bytes() == f.read_bytes(), (split, name, f.name)


def main() -> int:
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, f in tests:
        try:
            f()
        except Exception:
            failed += 1
            print(f"FAILED {name}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
