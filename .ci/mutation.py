#!/usr/bin/env python3
"""A small mutation tester (Python 3.11 standard library only; not run by CI).

It changes one thing at a time in the code (a mutant), runs the given test command against a scratch copy of
the repository, and counts the mutants the tests kill (a test fails), the ones that survive (every test
passes: a gap, or a change that cannot alter behaviour) and the ones that time out.

Mutations, made with `ast` and written back over the node's own source text (the rest of the file is kept
byte for byte, so line numbers stay right):
  cmp   a comparison operator flipped: == <-> !=, < <-> >=, > <-> <=, in <-> not in, is <-> is not
  bool  `and` <-> `or`
  not   a `not` dropped
  const True <-> False; an integer constant + 1
  del   a simple statement replaced by `pass` (expression call, assignment, augmented assignment, return,
        raise) and an `if`'s whole body replaced by `pass`
  none  `return X` -> `return None`
  lua   hand-written changes of the turn script `_APPEND_TURN` in chatcli/store.py (text replacements)
Never mutated: docstrings, type annotations, f-strings, the arguments of logging and notice calls.

Usage (from the repository root, with the project's Python):
  python .ci/mutation.py [--sample N] [--seed S] [--timeout SEC] [--json OUT] [--rerun OUT] [--skip OUT]
                         [--ids ID,...] [--pause-file PATH] [--list]
                         --cmd "python -m pytest -x -q ..." [--cmd "..."] TARGET [TARGET ...]
TARGET is FILE, or FILE:SELECTION with SELECTION a comma-separated list of function or method names
(`append_turn`, `SessionStore.window`, `_APPEND_TURN` for the Lua mutants) and line ranges (`120-180`).
Each --cmd runs in turn (through bash, in a scratch copy of the repository under $TMPDIR, with PYTHONPATH
pointing at it and no bytecode written) until one fails: put the fast tests first. A mutant is killed when a
command exits non-zero. A leading `python` is this interpreter; PATH is left alone (it decides which
redis-server the tests start). Mutants run one at a time; --pause-file lets another test run in between.
--json keeps every result (written after each mutant); --rerun runs the survivors of such a file again
(say, with new tests), --skip leaves out the mutants it holds.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", "*.egg-info"
)

# calls whose arguments are text for a person (notices, logs): not mutated
NOTICE_CALLS = {"say", "print_notice", "print_error", "debug", "info", "warning", "error", "exception", "log", "warn"}
# calls whose whole statement is logging: not deleted
LOG_CALLS = {"debug", "info", "warning", "exception", "log", "warn"}

CMP_FLIP: dict[type, type] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}

# The turn script: (name, original text, replacement). Each original must occur exactly once in the file.
LUA_MUTANTS = [
    (
        "drop the SISMEMBER check (a turn id already stored is written again)",
        "if turn ~= '' and redis.call('SISMEMBER', KEYS[3], turn) == 1 then\n  return 0\nend\n",
        "",
    ),
    ("a stored turn answers 1 (written) instead of 0", "  return 0\nend\nlocal now", "  return 1\nend\nlocal now"),
    ("drop the SADD of the turn id", "if turn ~= '' then redis.call('SADD', KEYS[3], turn) end\n", ""),
    ("SADD the empty turn id too", "if turn ~= '' then redis.call('SADD'", "if true then redis.call('SADD'"),
    ("drop the EXPIRE loop", "  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end\n", ""),
    ("EXPIRE only the list", "for k = 1, 3 do redis.call('EXPIRE'", "for k = 1, 1 do redis.call('EXPIRE'"),
    ("EXPIRE with a TTL of 0 too", "if ttl > 0 then", "if ttl >= 0 then"),
    (
        "drop the TYPE check of the list",
        "if redis.call('TYPE', KEYS[1]).ok ~= 'list' and redis.call('EXISTS', KEYS[1]) == 1 then",
        "if false then",
    ),
    (
        "drop the TYPE check of the hash",
        "if redis.call('TYPE', KEYS[2]).ok ~= 'hash' and redis.call('EXISTS', KEYS[2]) == 1 then",
        "if false then",
    ),
    (
        "drop the TYPE check of the set",
        "if redis.call('TYPE', KEYS[3]).ok ~= 'set' and redis.call('EXISTS', KEYS[3]) == 1 then",
        "if false then",
    ),
    ("drop the ZADD of the index", "if KEYS[4] then redis.call('ZADD', KEYS[4], now, ARGV[4]) end\n", ""),
    ("ZADD a score of 0", "redis.call('ZADD', KEYS[4], now, ARGV[4])", "redis.call('ZADD', KEYS[4], 0, ARGV[4])"),
    (
        "RPUSH instead of LPUSH (entries land at the old end)",
        "redis.call('LPUSH', KEYS[1]",
        "redis.call('RPUSH', KEYS[1]",
    ),
    (
        "LPUSH the entries newest first (reversed)",
        "  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, last))\n",
        "  local batch = {unpack(ARGV, i, last)}\n"
        "  for j = #batch, 1, -1 do redis.call('LPUSH', KEYS[1], batch[j]) end\n",
    ),
    ("skip one entry between LPUSH batches", "  i = last + 1\nend", "  i = last + 2\nend"),
    (
        "HSET created (overwritten every turn)",
        "redis.call('HSETNX', KEYS[2], 'created', now)",
        "redis.call('HSET', KEYS[2], 'created', now)",
    ),
    ("drop the HSET of the metadata", "redis.call('HSET', KEYS[2], unpack(meta))\n", ""),
    (
        "drop the HINCRBY of the counters",
        "for _, c in ipairs(counters) do redis.call('HINCRBY', KEYS[2], c[1], c[2]) end\n",
        "",
    ),
    (
        "metadata pairs swapped (value as the field)",
        "meta[#meta + 1] = ARGV[i + 1]; meta[#meta + 1] = ARGV[i + 2]",
        "meta[#meta + 1] = ARGV[i + 2]; meta[#meta + 1] = ARGV[i + 1]",
    ),
    ("written turn answers 0", 'return 1\n"""', 'return 0\n"""'),
]


@dataclass
class Mutant:
    id: str
    file: str
    line: int
    kind: str
    original: str
    replacement: str
    start: int  # character offsets of the replaced text in the file
    end: int
    status: str = ""  # killed | survived | timeout
    seconds: float = 0.0
    detail: str = ""

    def source(self, text: str) -> str:
        return text[: self.start] + self.replacement + text[self.end :]

    def describe(self) -> str:
        def short(s: str) -> str:
            s = " ".join(s.split())
            return s if len(s) <= 90 else s[:87] + "..."

        return (
            f"{self.file}:{self.line}: [{self.kind}] {short(self.original)} -> {short(self.replacement) or '(removed)'}"
        )


# -- finding mutants ----------------------------------------------------------------------------------


class Offsets:
    def __init__(self, text: str):
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))
        self.text = text

    def span(self, node: ast.AST) -> tuple[int, int]:
        # ast offsets are UTF-8 byte columns: convert through the line's bytes
        def at(lineno: int, col: int) -> int:
            line_start = self.starts[lineno - 1]
            line = self.text[line_start : self.starts[lineno] if lineno < len(self.starts) else len(self.text)]
            return line_start + len(line.encode("utf-8")[:col].decode("utf-8", "replace"))

        return at(node.lineno, node.col_offset), at(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
    return None


def skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: annotations, docstrings, f-strings, arguments of notice and log calls."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            for sub in ast.walk(node):
                skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for arg in [
                *node.args.args,
                *node.args.posonlyargs,
                *node.args.kwonlyargs,
                node.args.vararg,
                node.args.kwarg,
            ]:
                if arg is not None:
                    mark(arg.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, ast.JoinedStr):
            mark(node)
        if isinstance(node, ast.Call) and call_name(node) in NOTICE_CALLS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                mark(arg)
    return skip


def scopes(tree: ast.AST) -> dict[str, tuple[int, int]]:
    """Line ranges of functions, methods and classes, by bare and by qualified name."""
    found: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                span = (child.lineno, child.end_lineno or child.lineno)
                qual = f"{prefix}{child.name}"
                found.setdefault(child.name, span)
                found[qual] = span
                visit(child, qual + ".")
            elif isinstance(child, ast.Assign):
                for target in child.targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, (child.lineno, child.end_lineno or child.lineno))
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def expression_mutants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement node) for one expression node."""
    out: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            flipped = CMP_FLIP.get(type(op))
            if flipped is not None:
                new = copy.deepcopy(node)
                new.ops[i] = flipped()
                out.append(("cmp", new))
    elif isinstance(node, ast.BoolOp):
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("bool", new))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(("not", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.Constant):
        if node.value is True or node.value is False:
            out.append(("const", ast.Constant(not node.value)))
        elif type(node.value) is int:
            out.append(("const", ast.Constant(node.value + 1)))
    return out


def statement_mutants(node: ast.stmt, last_in_function: bool) -> list[tuple[str, str]]:
    """(kind, replacement text) for one statement."""
    out: list[tuple[str, str]] = []
    if isinstance(node, ast.Expr):
        if isinstance(node.value, ast.Call) and call_name(node.value) not in LOG_CALLS:
            out.append(("del", "pass"))
    elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Raise)) or (
        isinstance(node, ast.AnnAssign) and node.value is not None
    ):
        out.append(("del", "pass"))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("none", "return None"))
        if not last_in_function:
            out.append(("del", "pass"))
    return out


def find_mutants(path: Path, rel: str, selection: list[str]) -> list[Mutant]:
    text = path.read_text()
    tree = ast.parse(text)
    offsets = Offsets(text)
    skip = skipped_nodes(tree)
    spans = scopes(tree)
    ranges: list[tuple[int, int]] = []
    lua = not selection and "_APPEND_TURN" in scopes(tree)
    for item in selection:
        if item == "_APPEND_TURN":
            lua = True
        elif "-" in item and item.replace("-", "").isdigit():
            a, b = item.split("-")
            ranges.append((int(a), int(b)))
        elif item.isdigit():
            ranges.append((int(item), int(item)))
        elif item in spans:
            ranges.append(spans[item])
        else:
            raise SystemExit(f"{rel}: no function, method or class named {item!r}")
    ranges_lua = spans.get("_APPEND_TURN", None)

    def selected(line: int) -> bool:
        if ranges_lua and ranges_lua[0] <= line <= ranges_lua[1]:
            return False  # the turn script is one string: only its hand-written mutants
        return not selection or any(a <= line <= b for a, b in ranges)

    mutants: list[Mutant] = []

    def add(kind: str, node: ast.AST, replacement: str, index: int) -> None:
        start, end = offsets.span(node)
        mutants.append(
            Mutant(
                f"{rel}:{node.lineno}:{node.col_offset}:{kind}{index}",
                rel,
                node.lineno,
                kind,
                text[start:end],
                replacement,
                start,
                end,
            )  # type: ignore[attr-defined]
        )

    last_statements: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            last_statements.add(id(node.body[-1]))

    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno") or not selected(node.lineno):
            continue
        if isinstance(node, ast.expr) and not isinstance(getattr(node, "ctx", ast.Load()), (ast.Store, ast.Del)):
            for i, (kind, new) in enumerate(expression_mutants(node)):
                add(kind, node, f"({ast.unparse(new)})", i)
        if isinstance(node, ast.stmt):
            for i, (kind, new) in enumerate(statement_mutants(node, id(node) in last_statements)):
                add(kind, node, new, i)
        if isinstance(node, ast.If):
            body_start = offsets.span(node.body[0])[0]
            body_end = offsets.span(node.body[-1])[1]
            if not (len(node.body) == 1 and isinstance(node.body[0], ast.Pass)):
                first = node.body[0]
                mutants.append(
                    Mutant(
                        f"{rel}:{node.lineno}:{node.col_offset}:ifbody",
                        rel,
                        first.lineno,
                        "del",
                        "if-body: " + text[body_start:body_end],
                        "pass",
                        body_start,
                        body_end,
                    )
                )
    if lua:
        for i, (name, old, new) in enumerate(LUA_MUTANTS):
            at = text.find(old)
            if at == -1 or text.find(old, at + 1) != -1:
                raise SystemExit(f"{rel}: the Lua mutant {name!r} does not match exactly once")
            line = text.count("\n", 0, at) + 1 + (old[0] == "\n")
            mutants.append(Mutant(f"{rel}:lua{i}", rel, line, "lua", name + ": " + old, new, at, at + len(old)))

    # keep only mutants that compile and change the text; one per distinct resulting source
    seen: set[str] = set()
    valid = []
    for m in sorted(mutants, key=lambda m: (m.start, m.end, m.kind, m.replacement)):
        source = m.source(text)
        if source == text or source in seen:
            continue
        try:
            compile(source, rel, "exec")
        except SyntaxError:
            continue
        seen.add(source)
        valid.append(m)
    return valid


# -- running them -------------------------------------------------------------------------------------


def run_commands(commands: list[str], workdir: Path, timeout: float) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout', last lines of the failing output)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(workdir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    deadline = time.monotonic() + timeout
    for command in commands:
        if command.split(" ", 1)[0] == "python":  # this interpreter (PATH is left alone: it picks redis-server)
            command = sys.executable + command[len("python") :]
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_signals,
        )
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with_group(proc, signal.SIGKILL)
            proc.communicate()
            return "timeout", ""
        with_group(proc, signal.SIGKILL)  # whatever the tests left behind (redis-servers)
        if proc.returncode != 0:
            tail = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()][-3:]
            return "failed", " | ".join(tail)[-300:]
    return "passed", ""


def default_signals() -> None:
    """A background job inherits SIGINT (and under nohup SIGHUP) ignored: the tests send both."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def with_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def make_copy() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="chatcli-mutation-"))
    work = scratch / "repo"
    shutil.copytree(ROOT, work, ignore=COPY_IGNORE, symlinks=True)
    return work


def check_copy(work: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(
        [sys.executable, "-c", "import chatcli; print(chatcli.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if not out.stdout.strip().startswith(str(work)):
        raise SystemExit(f"the scratch copy is not what Python imports: {out.stdout.strip()} {out.stderr.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="FILE or FILE:name,name,10-40")
    parser.add_argument("--cmd", action="append", default=[], help="test command (repeatable; run in order)")
    parser.add_argument("--sample", type=int, default=0, help="run N mutants chosen with --seed (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=0, help="seconds per mutant (default: 2x baseline + 30)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rerun", type=Path, help="run only the survivors and timeouts of this results file")
    parser.add_argument("--ids", default="", help="run only these mutant ids (comma-separated)")
    parser.add_argument("--skip", type=Path, action="append", default=[], help="skip the mutants of this results file")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--pause-file", type=Path, help="between mutants, wait while this file exists")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args()

    mutants: list[Mutant] = []
    for target in args.targets:
        rel, _, sel = target.partition(":")
        path = ROOT / rel
        if not path.is_file():
            raise SystemExit(f"no file {rel}")
        mutants += find_mutants(path, rel, [s for s in sel.split(",") if s])
    generated = len(mutants)
    wanted: set[str] = set(filter(None, args.ids.split(",")))
    if args.rerun:
        wanted |= {m["id"] for m in json.loads(args.rerun.read_text())["mutants"] if m["status"] != "killed"}
    if wanted:
        mutants = [m for m in mutants if m.id in wanted]
    done = {m["id"] for path in args.skip for m in json.loads(path.read_text())["mutants"]}
    if args.sample and args.sample < len(mutants):
        mutants = sorted(random.Random(args.seed).sample(mutants, args.sample), key=lambda m: (m.file, m.start))
    mutants = [m for m in mutants if m.id not in done]
    print(f"{generated} mutants generated, {len(mutants)} to run", flush=True)
    if args.list:
        for m in mutants:
            print(f"{m.id}\t{m.describe()}")
        return 0
    if not args.cmd:
        raise SystemExit("give the test command with --cmd")

    work = make_copy()
    try:
        check_copy(work)
        timeout = args.timeout
        if not args.no_baseline:
            began = time.monotonic()
            status, detail = run_commands(args.cmd, work, 3600)
            took = time.monotonic() - began
            print(f"baseline: {status} in {took:.0f} s", flush=True)
            if status != "passed":
                raise SystemExit(f"the tests fail without any mutant: {detail}")
            timeout = timeout or 2 * took + 30
        timeout = timeout or 300
        originals = {m.file: (ROOT / m.file).read_text() for m in mutants}
        for n, m in enumerate(mutants, 1):
            while args.pause_file and args.pause_file.exists():
                time.sleep(2)
            target = work / m.file
            target.write_text(m.source(originals[m.file]))
            began = time.monotonic()
            try:
                status, detail = run_commands(args.cmd, work, timeout)
            finally:
                target.write_text(originals[m.file])
            m.seconds = round(time.monotonic() - began, 1)
            m.status = {"failed": "killed", "passed": "survived", "timeout": "timeout"}[status]
            m.detail = detail
            print(f"[{n}/{len(mutants)}] {m.status:8} {m.seconds:6.1f}s {m.describe()}", flush=True)
            if args.json:
                write_json(args.json, mutants, generated, args)
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)

    summary(mutants)
    if args.json:
        write_json(args.json, mutants, generated, args)
    return 0


def write_json(path: Path, mutants: list[Mutant], generated: int, args: argparse.Namespace) -> None:
    data = {
        "targets": args.targets,
        "cmd": args.cmd,
        "sample": args.sample,
        "seed": args.seed,
        "generated": generated,
        "mutants": [asdict(m) for m in mutants if m.status],
    }
    path.write_text(json.dumps(data, indent=1))


def summary(mutants: list[Mutant]) -> None:
    print("\nper file: run / killed / survived / timeout")
    for file in sorted({m.file for m in mutants}):
        mine = [m for m in mutants if m.file == file]
        counts = [sum(m.status == s for m in mine) for s in ("killed", "survived", "timeout")]
        print(f"  {file}: {len(mine)} / {counts[0]} / {counts[1]} / {counts[2]}")
    survivors = [m for m in mutants if m.status == "survived"]
    print(f"\nsurvivors ({len(survivors)}):")
    for m in survivors:
        print(f"  {m.describe()}")
    timeouts = [m for m in mutants if m.status == "timeout"]
    if timeouts:
        print(f"\ntimeouts ({len(timeouts)}):")
        for m in timeouts:
            print(f"  {m.describe()}")


if __name__ == "__main__":
    sys.exit(main())
