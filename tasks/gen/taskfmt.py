"""The task format (docs/tasks.md): writing a task folder, and checking one the way `eval` will use it.

A task is `TASK/task.toml` plus `TASK/workspace/`. A task is *checked* when its starting workspace fails
`verify` (a non-zero exit within the time limit), its `[[fix]]` edits apply (each old_text occurs exactly
once at its turn) and the fixed workspace passes `verify`. Checks run `verify` with `sh -c` from a copy
of the workspace, with the host's `python3` first on PATH, under a memory limit and a limit on CPU time:
a mutant that loops forever or allocates without end must not take the machine with it. The limit is
on CPU time, not wall-clock time, so whether a slow mutant counts as failing does not depend on how busy
the machine is (generation must give the same bytes every time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CPU_LIMIT_S = 10
# A process killed by the CPU limit: SIGXCPU at the soft limit, SIGKILL at the hard one, as the
# shell reports them (128 + n) or as Python does (-n).
KILLED = {-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL}
KNOWN_KEYS = {"instruction", "verify", "protected", "image", "max_steps", "file", "fix", "meta"}
FIX_KEYS = {"path", "old_text", "new_text"}


@dataclass
class Fix:
    path: str
    old_text: str
    new_text: str


@dataclass
class Task:
    instruction: str
    verify: str
    protected: list[str] = field(default_factory=list)
    file: str | None = None
    max_steps: int | None = None
    image: str | None = None
    fixes: list[Fix] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    workspace: dict[str, str] = field(default_factory=dict)  # relative path → text


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone: the split rules use it, so a task's split never moves
    when others are added or removed."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def pick(key: str, options: list[str]) -> str:
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


# --- writing


def toml_string(s: str) -> str:
    """A TOML string for `s`: a multi-line literal string for code (readable as it is), else a basic one."""
    if "\n" in s and "'''" not in s and not s.endswith("'") and all(c >= " " or c in "\n\t" for c in s) and "\r" not in s:
        return "'''\n" + s + "'''"
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def render_toml(task: Task) -> str:
    lines = [f"instruction = {toml_string(task.instruction)}", f"verify = {toml_string(task.verify)}"]
    if task.protected:
        lines.append(f"protected = {toml_value(task.protected)}")
    if task.image is not None:
        lines.append(f"image = {toml_string(task.image)}")
    if task.max_steps is not None:
        lines.append(f"max_steps = {task.max_steps}")
    if task.file is not None:
        lines.append(f"file = {toml_string(task.file)}")
    for fx in task.fixes:
        lines += ["", "[[fix]]", f"path = {toml_string(fx.path)}", f"old_text = {toml_string(fx.old_text)}",
                  f"new_text = {toml_string(fx.new_text)}"]
    if task.meta:
        lines += ["", "[meta]"] + [f"{k} = {toml_value(v)}" for k, v in task.meta.items()]
    text = "\n".join(lines) + "\n"
    # What a reader parses back must be exactly what was meant.
    if parse_toml(text) != expected_table(task):
        raise ValueError(f"task.toml does not read back as written:\n{text}")
    return text


def expected_table(task: Task) -> dict[str, Any]:
    t: dict[str, Any] = {"instruction": task.instruction, "verify": task.verify}
    if task.protected:
        t["protected"] = task.protected
    if task.image is not None:
        t["image"] = task.image
    if task.max_steps is not None:
        t["max_steps"] = task.max_steps
    if task.file is not None:
        t["file"] = task.file
    if task.fixes:
        t["fix"] = [{"path": f.path, "old_text": f.old_text, "new_text": f.new_text} for f in task.fixes]
    if task.meta:
        t["meta"] = dict(task.meta)
    return t


def parse_toml(text: str) -> dict[str, Any]:
    return tomllib.loads(text)


def write_task(dest: Path, task: Task) -> None:
    dest.mkdir(parents=True)
    (dest / "task.toml").write_text(render_toml(task))
    for rel, text in sorted(task.workspace.items()):
        p = dest / "workspace" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder `tmp` at `dest`, replacing what was there: a reader sees the old folder or
    the new one, never a half-written one."""
    old = dest.with_name(f".{dest.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


# --- reading and checking


def load_task(task_dir: Path) -> tuple[Task | None, list[str]]:
    """The task in `task_dir`, or the reasons it is not a valid task."""
    errors: list[str] = []
    toml_path = task_dir / "task.toml"
    ws = task_dir / "workspace"
    try:
        t = parse_toml(toml_path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        return None, [f"task.toml: {e}"]
    for k in sorted(set(t) - KNOWN_KEYS):
        errors.append(f"task.toml: unknown key `{k}`")
    for k in ("instruction", "verify"):
        if not isinstance(t.get(k), str) or not t[k].strip():
            errors.append(f"task.toml: `{k}` must be a non-empty string")
    protected = t.get("protected", [])
    if not isinstance(protected, list) or not all(isinstance(p, str) for p in protected):
        errors.append("task.toml: `protected` must be a list of paths")
        protected = []
    if "max_steps" in t and not (type(t["max_steps"]) is int and t["max_steps"] > 0):
        errors.append("task.toml: `max_steps` must be a positive integer")
    if "image" in t and not (isinstance(t["image"], str) and t["image"].strip()):
        errors.append("task.toml: `image` must be a non-empty string")
    if "meta" in t and not isinstance(t["meta"], dict):
        errors.append("task.toml: `meta` must be a table")
    if not ws.is_dir():
        errors.append("workspace/ is missing")
        return None, errors
    files = {p.relative_to(ws).as_posix(): p for p in sorted(ws.rglob("*")) if p.is_file()}
    if not files:
        errors.append("workspace/ is empty")
    for rel in files:
        if "__pycache__" in rel or rel.endswith(".pyc"):
            errors.append(f"workspace/{rel}: a build artefact in the starting files")

    def inside(rel: Any, what: str) -> bool:
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in Path(rel).parts:
            errors.append(f"task.toml: {what} `{rel}` is not a relative path inside the workspace")
            return False
        if rel not in files:
            errors.append(f"task.toml: {what} `{rel}` is not a file in workspace/")
            return False
        return True

    for p in protected:
        inside(p, "protected")
    if "file" in t:
        inside(t["file"], "file")
    fixes = []
    raw_fixes = t.get("fix", [])
    if not isinstance(raw_fixes, list):
        errors.append("task.toml: `fix` must be an array of tables ([[fix]])")
        raw_fixes = []
    for i, fx in enumerate(raw_fixes, 1):
        if not isinstance(fx, dict) or set(fx) != FIX_KEYS or not all(isinstance(fx[k], str) for k in FIX_KEYS):
            errors.append(f"task.toml: fix {i} must have exactly the strings path, old_text, new_text")
            continue
        if not fx["old_text"]:
            errors.append(f"task.toml: fix {i} has an empty old_text")
            continue
        if inside(fx["path"], f"fix {i} path"):
            fixes.append(Fix(fx["path"], fx["old_text"], fx["new_text"]))
    if errors:
        return None, errors
    workspace = {}
    for rel, p in files.items():
        try:
            workspace[rel] = p.read_text()
        except UnicodeDecodeError:
            workspace[rel] = None  # binary files are copied, never edited
    task = Task(instruction=t["instruction"], verify=t["verify"], protected=protected, file=t.get("file"),
                max_steps=t.get("max_steps"), image=t.get("image"), fixes=fixes, meta=t.get("meta", {}),
                workspace=workspace)
    return task, []


def apply_fixes(workspace: dict[str, str], fixes: list[Fix]) -> tuple[dict[str, str], list[str]]:
    """The workspace after the fixes, applied in order as the agent's `edit` would (old_text exactly once)."""
    ws = dict(workspace)
    errors = []
    for i, fx in enumerate(fixes, 1):
        text = ws.get(fx.path)
        if text is None:
            errors.append(f"fix {i}: {fx.path} is not a text file")
            continue
        n = text.count(fx.old_text)
        if n != 1:
            errors.append(f"fix {i}: old_text occurs {n} times in {fx.path}, not exactly once")
            continue
        ws[fx.path] = text.replace(fx.old_text, fx.new_text)
    return ws, errors


@dataclass
class Run:
    code: int | None  # None: timed out
    output: str


def run_verify(src_dir: Path, workspace: dict[str, str | None], verify: str, cpu_s: int = CPU_LIMIT_S) -> Run:
    """Run `verify` from a fresh copy of the workspace (files from `workspace`, binary ones from src_dir)
    with at most `cpu_s` seconds of CPU time; `code` is None when the limit (or, for a process that
    sleeps instead of computing, a generous wall-clock bound) stopped it."""
    with tempfile.TemporaryDirectory(prefix="keel-task-") as d:
        root = Path(d)
        for rel, text in workspace.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                shutil.copyfile(src_dir / rel, p)
            else:
                p.write_text(text)
        # The interpreter running this script is the host's python3: first on PATH (a version manager's
        # shim in its place costs a shell script per run).
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PATH=path)
        # The limits are set inside the shell, so they reach the test process.
        limited = f"ulimit -t {cpu_s}; ulimit -v 2000000; {verify}"
        proc = subprocess.Popen(["sh", "-c", limited], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=cpu_s * 6 + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return Run(None, out.decode(errors="replace"))
        return Run(None if proc.returncode in KILLED else proc.returncode, out.decode(errors="replace"))


def check_tasks(task_dirs: list[Path], jobs: int | None = None) -> list[list[str]]:
    """check_task for each folder, `jobs` at a time (default: one per CPU), results in the given order."""
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return list(pool.map(check_task, task_dirs))


def check_task(task_dir: Path) -> list[str]:
    """Why the task in `task_dir` is not a checked task (empty when it is)."""
    task, errors = load_task(task_dir)
    if task is None:
        return errors
    ws_dir = task_dir / "workspace"
    start = run_verify(ws_dir, task.workspace, task.verify, cpu_s=CPU_LIMIT_S)
    if start.code is None:
        errors.append(f"the starting workspace does not finish `{task.verify}` within {CPU_LIMIT_S} s of CPU time")
    elif start.code == 0:
        errors.append(f"the starting workspace already passes `{task.verify}`")
    if not task.fixes:
        return errors + ["no [[fix]]: nothing shows the task can be solved"]
    fixed, fix_errors = apply_fixes(task.workspace, task.fixes)
    errors += fix_errors
    if not fix_errors:
        end = run_verify(ws_dir, fixed, task.verify, cpu_s=CPU_LIMIT_S)
        if end.code != 0:
            tail = end.output.strip().splitlines()[-3:]
            what = "times out" if end.code is None else f"exits {end.code}"
            errors.append(f"with the fix applied `{task.verify}` {what}: " + " | ".join(tail))
    return errors
