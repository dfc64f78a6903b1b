"""The bank of small correct Python functions the bug-fix suite is made from.

Each entry is a module as the agent will see it (one function, sometimes with a tiny helper, and a
docstring that says what it should do) and the cases its test checks: a call, written as Python, and the
value it must return (or `Raises(...)`). `bugfix.py` writes the test file from the cases, checks that the
correct module passes it, and then injects bugs. The cases are chosen to catch the slips the mutator
makes: boundaries, empty inputs, negative numbers, ties.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

CATEGORIES = ("arith", "strings", "lists", "dicts", "control", "algos")


@dataclass(frozen=True)
class Raises:
    error: str  # the name of a built-in exception class


@dataclass(frozen=True)
class Fn:
    name: str  # the function, its module (`name.py`) and its test (`test_name.py`)
    source: str
    cases: tuple[tuple[str, Any], ...]
    category: str = ""


def fn(name: str, source: str, *cases: tuple[str, Any]) -> Fn:
    return Fn(name, source.lstrip("\n"), tuple(cases))


def load() -> list[Fn]:
    """Every function of the bank, its category set from the file it is in, in name order."""
    out = []
    for cat in CATEGORIES:
        mod = importlib.import_module(f"bank.{cat}")
        out += [Fn(f.name, f.source, f.cases, cat) for f in mod.FUNCTIONS]
    return sorted(out, key=lambda f: f.name)
