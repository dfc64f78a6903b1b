"""Injects one bug into correct Python source, the way a person would make it.

The bug is found with `ast` but written as text: the edit replaces a span of one original line (or, for
a missing case, removes whole lines), so the buggy file is byte-identical to the original everywhere
else and the fix is a one-line edit. Every candidate is checked against the AST it claims to produce:
the buggy text must parse to the original tree with exactly the intended change, or the candidate is
dropped (a span computed wrongly would otherwise slip a second, unintended change into a task).

Used by `bugfix.py` (the committed bug-fix suite) and `humaneval.py` (HumanEvalFix-style tasks).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Callable, Iterator

# The order is part of the generators' determinism: `humaneval.py` keeps the first failing mutation in
# this order (rotated per problem), and `bugfix.py` breaks ties with it.
FAMILIES = (
    "operator",
    "off_by_one",
    "comparison",
    "wrong_variable",
    "missing_case",
    "wrong_constant",
    "negated_condition",
    "swapped_arguments",
)

BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult}
OP_TEXT = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%",
    ast.And: "and", ast.Or: "or",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}
# `<`↔`<=` style (boundary) first, then the direction flip `<`↔`>`.
CMP_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
CMP_DIRECTION = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}
CMP_NEGATE = {ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
# Operands whose order matters; swapping them is the operator form of swapped arguments.
NON_COMMUTATIVE = (ast.Sub, ast.FloorDiv, ast.Div, ast.Mod, ast.Pow)
# Subscripts with these names (or an int constant, or `name ± int`) are list positions, where ±1 is an
# off-by-one; other subscripts are usually dictionary keys.
INDEX_NAMES = {"i", "j", "k", "n", "idx", "index", "pos", "mid", "lo", "hi", "low", "high", "start", "end",
               "left", "right", "last", "first", "size", "width", "count", "length", "m"}


@dataclass(frozen=True)
class Mutation:
    family: str
    description: str  # e.g. "`<` became `<=` on line 7"
    line: int  # 1-based line of the original where the change starts
    buggy: str  # the whole mutated source
    fix_old: str  # whole lines of `buggy`, occurring exactly once in it
    fix_new: str  # what restores the original


@dataclass(frozen=True)
class _Candidate:
    family: str
    description: str
    first: int  # 0-based first original line replaced
    last: int  # 0-based last original line replaced (inclusive)
    new_lines: tuple[str, ...]  # replacement for lines first..last (may be empty: lines removed)
    expect: Callable[[ast.AST], None]  # applies the same change to a fresh tree (found by walk index)


class _Source:
    """The original text, its lines, its tree, and byte-accurate spans (AST columns are UTF-8 bytes)."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.tree = ast.parse(text)
        self.nodes = list(ast.walk(self.tree))
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.parent: dict[int, ast.AST] = {}
        for n in self.nodes:
            for c in ast.iter_child_nodes(n):
                self.parent[id(c)] = n
        self.docstrings = set()
        for n in self.nodes:
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body:
                first = n.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                    self.docstrings.add(id(first.value))

    def line_bytes(self, lineno: int) -> bytes:
        return self.lines[lineno - 1].encode()

    def seg(self, node: ast.AST) -> str:
        assert node.lineno == node.end_lineno
        return self.line_bytes(node.lineno)[node.col_offset:node.end_col_offset].decode()

    def gap(self, a: ast.AST, b: ast.AST) -> tuple[int, int, int] | None:
        """(line, start byte, end byte) of the text between node a's end and node b's start on one line."""
        if a.end_lineno != b.lineno:
            return None
        return a.end_lineno, a.end_col_offset, b.col_offset

    def replace(self, lineno: int, start: int, end: int, new: str) -> str:
        b = self.line_bytes(lineno)
        return (b[:start] + new.encode() + b[end:]).decode()


def _single_line(node: ast.AST) -> bool:
    return getattr(node, "lineno", None) is not None and node.lineno == node.end_lineno


def _at(tree: ast.AST, index: int) -> ast.AST:
    return list(ast.walk(tree))[index]


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                if v is old:
                    value[i] = new
                    return
    raise ValueError("child not found")


def _parse_expr(text: str) -> ast.AST:
    return ast.parse(text, mode="eval").body


def mutations(text: str, region: tuple[int, int] | None = None) -> list[Mutation]:
    """Every checked single-bug mutation of `text`, in FAMILIES order, then source order.

    `region` (1-based inclusive line range) limits where bugs go (e.g. HumanEval's canonical solution,
    not the prompt). Docstrings are never touched.
    """
    src = _Source(text)
    base = ast.dump(src.tree)
    out: list[Mutation] = []
    seen: set[str] = set()
    for family in FAMILIES:
        cands = [c for c in _candidates(src, family) if region is None or (region[0] <= c.first + 1 and c.last + 1 <= region[1])]
        cands.sort(key=lambda c: (c.first, c.last))
        for c in cands:
            buggy = "".join(src.lines[: c.first]) + "".join(c.new_lines) + "".join(src.lines[c.last + 1 :])
            if buggy in seen or buggy == text:
                continue
            try:
                got = ast.dump(ast.parse(buggy))
            except SyntaxError:
                continue
            want_tree = copy.deepcopy(src.tree)
            c.expect(want_tree)
            if got != ast.dump(want_tree) or got == base:
                continue
            fix = _fix(src.lines, buggy, c)
            if fix is None:
                continue
            seen.add(buggy)
            out.append(Mutation(c.family, c.description, c.first + 1, buggy, fix[0], fix[1]))
    return out


def _fix(orig: list[str], buggy: str, c: _Candidate) -> tuple[str, str] | None:
    """The fix as whole lines: the changed lines plus the least context (above first) that makes the old
    text unique in the buggy file. A removal is anchored on the line after it (or before it, at the end).
    Context never starts or ends on a blank line; trailing newlines are left out so the edit reads as lines."""
    blines = buggy.splitlines(keepends=True)
    n_new = len(c.new_lines)
    below = len(blines) - (c.first + n_new)
    for total in range(0, c.first + below + 1):
        # An edit reads best with the line above it; a removal reads best as "insert before the next line".
        befores = range(min(total, c.first), -1, -1) if n_new else range(0, min(total, c.first) + 1)
        for before in befores:
            after = total - before
            if after > below or (n_new == 0 and total == 0):
                continue
            lo = c.first - before
            old_lines = blines[lo : c.first + n_new + after]
            if not old_lines[0].strip() or not old_lines[-1].strip():
                continue
            new = "".join(orig[lo : c.last + 1 + after])
            old_t, new_t = _trim_common_newline("".join(old_lines), new)
            if buggy.count(old_t) == 1:
                return old_t, new_t
    return None


def _trim_common_newline(old: str, new: str) -> tuple[str, str]:
    if old.endswith("\n") and new.endswith("\n"):
        return old[:-1], new[:-1]
    return old, new


def _candidates(src: _Source, family: str) -> Iterator[_Candidate]:
    return {
        "operator": _operator,
        "off_by_one": _off_by_one,
        "comparison": _comparison,
        "wrong_variable": _wrong_variable,
        "missing_case": _missing_case,
        "wrong_constant": _wrong_constant,
        "negated_condition": _negated_condition,
        "swapped_arguments": _swapped_arguments,
    }[family](src)


def _line_edit(src: _Source, family: str, desc: str, lineno: int, start: int, end: int, new: str,
               expect: Callable[[ast.AST], None]) -> _Candidate:
    line = src.replace(lineno, start, end, new)
    return _Candidate(family, f"{desc} on line {lineno}", lineno - 1, lineno - 1, (line,), expect)


def _token_in_gap(src: _Source, gap: tuple[int, int, int] | None, token: str) -> tuple[int, int] | None:
    """Byte span of `token` in a gap that holds only it, spaces and parentheses."""
    if gap is None:
        return None
    line, s, e = gap
    text = src.line_bytes(line)[s:e].decode()
    if text.strip(" ()") != token:
        return None
    at = text.index(token)
    return s + len(text[:at].encode()), s + len(text[:at].encode()) + len(token.encode())


# --- operator: `+`↔`-`, `*`↔`//`, `/`→`*`, `and`↔`or`, and the augmented forms `+=`↔`-=` ...


def _operator(src: _Source) -> Iterator[_Candidate]:
    for n in src.nodes:
        if isinstance(n, ast.BinOp) and type(n.op) in BINOP_SWAP:
            new_op = BINOP_SWAP[type(n.op)]
            span = _token_in_gap(src, src.gap(n.left, n.right), OP_TEXT[type(n.op)])
            if span:
                yield _line_edit(src, "operator", f"`{OP_TEXT[type(n.op)]}` became `{OP_TEXT[new_op]}`", n.left.end_lineno,
                                 *span, OP_TEXT[new_op], _set_attr(src.index[id(n)], "op", new_op))
        elif isinstance(n, ast.AugAssign) and type(n.op) in BINOP_SWAP and _single_line(n):
            new_op = BINOP_SWAP[type(n.op)]
            old_t, new_t = OP_TEXT[type(n.op)] + "=", OP_TEXT[new_op] + "="
            span = _token_in_gap(src, src.gap(n.target, n.value), old_t)
            if span:
                yield _line_edit(src, "operator", f"`{old_t}` became `{new_t}`", n.lineno, *span, new_t,
                                 _set_attr(src.index[id(n)], "op", new_op))
        elif isinstance(n, ast.BoolOp) and len(n.values) == 2:
            new_op = ast.Or if isinstance(n.op, ast.And) else ast.And
            span = _token_in_gap(src, src.gap(n.values[0], n.values[1]), OP_TEXT[type(n.op)])
            if span:
                yield _line_edit(src, "operator", f"`{OP_TEXT[type(n.op)]}` became `{OP_TEXT[new_op]}`", n.values[0].end_lineno,
                                 *span, OP_TEXT[new_op], _set_attr(src.index[id(n)], "op", new_op))


def _set_attr(index: int, attr: str, op_type: type) -> Callable[[ast.AST], None]:
    def apply(tree: ast.AST) -> None:
        setattr(_at(tree, index), attr, op_type())
    return apply


# --- off by one: range bounds, slice ends, list indices ±1


def _shift(src: _Source, node: ast.AST, delta: int) -> str | None:
    """`node`'s text moved by delta, written as a person would: `n - 1` + 1 → `n`, `3` + 1 → `4`."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return str(node.value + delta)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return str(-node.operand.value + delta)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and isinstance(node.right, ast.Constant) \
            and type(node.right.value) is int and _single_line(node):
        k = node.right.value if isinstance(node.op, ast.Add) else -node.right.value
        k += delta
        left = src.seg(node.left)
        if k == 0:
            return left
        return f"{left} + {k}" if k > 0 else f"{left} - {-k}"
    if not _single_line(node):
        return None
    text = src.seg(node)
    if isinstance(node, (ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.NamedExpr)):
        text = f"({text})"
    return f"{text} + {delta}" if delta > 0 else f"{text} - {-delta}"


def _replace_node(src: _Source, family: str, desc: str, node: ast.AST, new_text: str) -> _Candidate | None:
    if not _single_line(node):
        return None
    try:
        new_node = _parse_expr(new_text)
    except SyntaxError:
        return None
    index, parent_index = src.index[id(node)], src.index[id(src.parent[id(node)])]

    def apply(tree: ast.AST) -> None:
        nodes = list(ast.walk(tree))
        _replace_child(nodes[parent_index], nodes[index], copy.deepcopy(new_node))

    return _line_edit(src, family, desc, node.lineno, node.col_offset, node.end_col_offset, new_text, apply)


def _is_index(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int
    if isinstance(node, ast.Name):
        return node.id in INDEX_NAMES
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return isinstance(node.right, ast.Constant) and type(node.right.value) is int and _is_index(node.left) \
            or isinstance(node.left, ast.Name) and isinstance(node.right, ast.Name)
    return False


def _off_by_one(src: _Source) -> Iterator[_Candidate]:
    def both(node: ast.AST, what: str) -> Iterator[_Candidate]:
        for delta in (1, -1):
            new = _shift(src, node, delta)
            if new is not None:
                c = _replace_node(src, "off_by_one", f"{what} `{src.seg(node)}` became `{new}`", node, new)
                if c:
                    yield c

    for n in src.nodes:
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "range" and not n.keywords \
                and 1 <= len(n.args) <= 3 and _single_line(n):
            bounds = n.args[:2] if len(n.args) >= 2 else n.args[:1]
            for arg in reversed(bounds):  # the stop first: the commoner slip
                yield from both(arg, "range bound")
        elif isinstance(n, ast.Subscript) and _single_line(n):
            if isinstance(n.slice, ast.Slice):
                for part, what in ((n.slice.upper, "slice end"), (n.slice.lower, "slice start")):
                    if part is not None and _is_index(part):
                        yield from both(part, what)
            elif _is_index(n.slice) and not (isinstance(n.ctx, ast.Store)):
                yield from both(n.slice, "index")


# --- comparison: `<`↔`<=`, `>`↔`>=`, `==`↔`!=`, then `<`↔`>`


def _comparison(src: _Source) -> Iterator[_Candidate]:
    for table in (CMP_BOUNDARY, CMP_DIRECTION):
        for n in src.nodes:
            if isinstance(n, ast.Compare):
                for i, op in enumerate(n.ops):
                    if type(op) not in table:
                        continue
                    left = n.left if i == 0 else n.comparators[i - 1]
                    span = _token_in_gap(src, src.gap(left, n.comparators[i]), OP_TEXT[type(op)])
                    if span:
                        new = table[type(op)]
                        yield _line_edit(src, "comparison", f"`{OP_TEXT[type(op)]}` became `{OP_TEXT[new]}`", left.end_lineno,
                                         *span, OP_TEXT[new], _set_cmp(src.index[id(n)], i, new))


def _set_cmp(index: int, i: int, op_type: type) -> Callable[[ast.AST], None]:
    def apply(tree: ast.AST) -> None:
        _at(tree, index).ops[i] = op_type()
    return apply


# --- wrong variable: a name read where another name of the same function, bound by then, was meant


def _functions(src: _Source) -> list[ast.FunctionDef]:
    return [n for n in src.nodes if isinstance(n, ast.FunctionDef)]


def _scope(fn: ast.FunctionDef) -> Iterator[ast.AST]:
    """The nodes of fn's own scope: its arguments and body, not the inside of nested functions,
    lambdas or classes (their names are another scope's)."""
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        n = todo.pop(0)
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(n))


def _bound_names(fn: ast.FunctionDef) -> dict[str, int]:
    """Names bound in `fn` (parameters, assignments, loop and comprehension targets) → first line bound."""
    first: dict[str, int] = {}
    args = fn.args
    for a in args.posonlyargs + args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
        first.setdefault(a.arg, fn.lineno)
    # A comprehension's variable is not in scope outside it: reading it elsewhere is a NameError, not a
    # plausible slip, so names bound only there are left out.
    in_comprehension = {id(t) for c in _scope(fn) if isinstance(c, ast.comprehension) for t in ast.walk(c.target)}
    for n in _scope(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and id(n) not in in_comprehension:
            line = n.lineno
            if line < first.get(n.id, 10**9):
                first[n.id] = line
    return first


def _wrong_variable(src: _Source) -> Iterator[_Candidate]:
    for fn in _functions(src):
        bound = _bound_names(fn)
        order = sorted(bound, key=lambda name: (bound[name], name))
        for n in _scope(fn):
            if not (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in bound):
                continue
            # Names bound before this line (a later one would only raise UnboundLocalError), nearest first;
            # never one the same expression already reads (`x[x]`, `out.append(out)`, `a != a`).
            near = _neighbour_names(src, n)
            others = [o for o in order if o != n.id and bound[o] < n.lineno and o not in near]
            others.sort(key=lambda o: (-bound[o], o))
            for other in others[:2]:
                c = _replace_node(src, "wrong_variable", f"`{n.id}` became `{other}`", n, other)
                if c:
                    yield c


def _neighbour_names(src: _Source, node: ast.Name) -> set[str]:
    """Names read by the expression right around `node`: its parent's other operands, and for a method
    call the object the method belongs to."""
    parent = src.parent.get(id(node))
    around = ast.iter_child_nodes(parent) if isinstance(parent, ast.stmt) else ast.walk(parent)
    names = {c.id for c in around if isinstance(c, ast.Name) and c is not node}
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and isinstance(parent.func.value, ast.Name):
        names.add(parent.func.value.id)
    if isinstance(parent, ast.Attribute):
        call = src.parent.get(id(parent))
        if isinstance(call, ast.Call):
            names |= {a.id for a in call.args if isinstance(a, ast.Name)}
    return names


# --- missing case: an `if` branch (a guard, an early return) removed


def _missing_case(src: _Source) -> Iterator[_Candidate]:
    for n in src.nodes:
        for field in ("body", "orelse"):
            body = getattr(n, field, None)
            if not isinstance(body, list) or len(body) < 2:
                continue
            if isinstance(n, ast.If) and field == "orelse":
                continue  # an `elif` chain: removing its head would change the chain's shape
            for i, stmt in enumerate(body):
                if not (isinstance(stmt, ast.If) and not stmt.orelse and len(stmt.body) <= 2):
                    continue
                first, last = stmt.lineno, stmt.end_lineno
                if last - first > 3 or not src.lines[first - 1].lstrip().startswith("if "):
                    continue
                if src.line_bytes(last)[stmt.end_col_offset:].strip() not in (b"",):
                    continue
                kind = "early return" if isinstance(stmt.body[-1], ast.Return) else "`if` branch"
                cond = src.lines[first - 1].strip()
                yield _Candidate("missing_case", f"{kind} `{cond}` removed (lines {first}-{last})", first - 1, last - 1, (),
                                 _remove_stmt(src.index[id(n)], field, i))


def _remove_stmt(index: int, field: str, i: int) -> Callable[[ast.AST], None]:
    def apply(tree: ast.AST) -> None:
        del getattr(_at(tree, index), field)[i]
    return apply


# --- wrong constant / initial value


def _in_bounds(src: _Source, node: ast.AST) -> bool:
    """Whether `node` is part of a subscript's index or slice, or of a `range(...)` call's arguments."""
    child, parent = node, src.parent.get(id(node))
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.Subscript) and child is parent.slice:
            return True
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "range" \
                and child is not parent.func:
            return True
        child, parent = parent, src.parent.get(id(parent))
    return False


def _wrong_constant(src: _Source) -> Iterator[_Candidate]:
    for n in src.nodes:
        if not isinstance(n, ast.Constant) or id(n) in src.docstrings or not _single_line(n):
            continue
        parent = src.parent.get(id(n))
        # Range bounds and indices belong to off_by_one; a constant under a unary minus or in an f-string
        # is left alone (its text is not the constant's repr).
        if isinstance(parent, (ast.UnaryOp, ast.JoinedStr, ast.FormattedValue)) or _in_bounds(src, n):
            continue
        if n.value is None and isinstance(parent, ast.Compare):
            continue  # `x is 0` is a SyntaxWarning, not a bug a person writes
        v = n.value
        if isinstance(v, bool):
            new = repr(not v)
        elif type(v) is int:
            # `k - 1` → `k - 0` is no slip anyone makes; `k - 2` is.
            in_sum = isinstance(parent, ast.BinOp) and isinstance(parent.op, (ast.Add, ast.Sub)) and parent.right is n
            new = str(1 if v == 0 else 0 if v == 1 and not in_sum else v + 1)
        elif type(v) is float:
            new = "1.0" if v == 0.0 else "0.0" if v == 1.0 else None
        elif v is None:
            new = "0"
        elif isinstance(v, str) and v == "":
            new = '" "'
        else:
            new = None
        if new is not None:
            c = _replace_node(src, "wrong_constant", f"`{src.seg(n)}` became `{new}`", n, new)
            if c:
                yield c


# --- negated condition: `if c` → `if not c`, `not c` → `c`, `in` ↔ `not in`, `is` ↔ `is not`


def _negated_condition(src: _Source) -> Iterator[_Candidate]:
    tests = []
    for n in src.nodes:
        if isinstance(n, (ast.If, ast.While, ast.IfExp)):
            tests.append(n.test)
        elif isinstance(n, ast.comprehension):
            tests.extend(n.ifs)
    for t in tests:
        if not _single_line(t) or isinstance(t, ast.Constant):
            continue
        if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
            inner = src.seg(t.operand)
            c = _replace_node(src, "negated_condition", f"`{src.seg(t)}` became `{inner}`", t, inner)
        elif isinstance(t, ast.Compare) and len(t.ops) == 1 and type(t.ops[0]) in CMP_NEGATE:
            op = type(t.ops[0])
            span = _token_in_gap(src, src.gap(t.left, t.comparators[0]), OP_TEXT[op])
            c = span and _line_edit(src, "negated_condition", f"`{OP_TEXT[op]}` became `{OP_TEXT[CMP_NEGATE[op]]}`", t.lineno,
                                    *span, OP_TEXT[CMP_NEGATE[op]], _set_cmp(src.index[id(t)], 0, CMP_NEGATE[op]))
        else:
            text = src.seg(t)
            wrapped = f"not ({text})" if isinstance(t, (ast.BoolOp, ast.IfExp, ast.NamedExpr, ast.Lambda)) else f"not {text}"
            c = _replace_node(src, "negated_condition", f"`{text}` became `{wrapped}`", t, wrapped)
        if c:
            yield c


def _swappable(parent: ast.AST, a: ast.AST, b: ast.AST) -> bool:
    """Whether swapping a and b is a slip a person makes: two variables or expressions (`zip(ys, xs)`,
    `divmod(base, n)`), or two strings (`replace(" ", "-")`); not a variable and a literal
    (`range(n, 1)`, `1 - k`, `setdefault([], key)`), nor `isinstance(list, item)`."""
    consts = [x for x in (a, b) if isinstance(x, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set))
              or isinstance(x, ast.UnaryOp) and isinstance(x.operand, ast.Constant)]
    if consts and not (len(consts) == 2 and all(isinstance(getattr(x, "value", None), str) for x in consts)):
        return False
    func = parent.func if isinstance(parent, ast.Call) else None
    return not (isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass"))


# --- swapped arguments: `f(a, b)` → `f(b, a)`, `a - b` → `b - a`


def _swapped_arguments(src: _Source) -> Iterator[_Candidate]:
    for n in src.nodes:
        pairs = []
        if isinstance(n, ast.Call) and not any(isinstance(a, ast.Starred) for a in n.args):
            pairs = [(n.args[i], n.args[i + 1]) for i in range(len(n.args) - 1)]
        elif isinstance(n, ast.BinOp) and isinstance(n.op, NON_COMMUTATIVE):
            pairs = [(n.left, n.right)]
        for a, b in pairs:
            if not (_single_line(a) and _single_line(b) and a.lineno == b.lineno):
                continue
            ta, tb = src.seg(a), src.seg(b)
            if ta == tb or not _swappable(n, a, b):
                continue
            line, s, e = src.gap(a, b)
            between = src.line_bytes(line)[s:e].decode()
            if isinstance(n, ast.BinOp) and ("(" in between or ")" in between):
                continue
            new = tb + between + ta
            ia, ib = src.index[id(a)], src.index[id(b)]
            what = "arguments" if isinstance(n, ast.Call) else "operands"

            def apply(tree: ast.AST, ia=ia, ib=ib, pi=src.index[id(n)]) -> None:
                nodes = list(ast.walk(tree))
                na, nb, p = nodes[ia], nodes[ib], nodes[pi]
                _replace_child(p, na, ast.Name("__swap__"))
                _replace_child(p, nb, na)
                _replace_child(p, next(c for c in ast.iter_child_nodes(p) if isinstance(c, ast.Name) and c.id == "__swap__"), nb)

            yield _line_edit(src, "swapped_arguments", f"{what} `{ta}` and `{tb}` swapped", line, a.col_offset, b.end_col_offset,
                             new, apply)
