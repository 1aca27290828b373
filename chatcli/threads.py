"""LangGraph threads kept by langgraph-checkpoint-redis' RedisSaver, read directly with redis-py.

The layout (checked against langgraph 1.2 and langgraph-checkpoint-redis 0.5.2 by tests/test_threads.py,
which writes threads with the real libraries):

- `checkpoint_latest:<thread>:<ns>`: a string, the key of the thread's newest checkpoint in namespace `<ns>`
  (`__empty__` for the root graph; a subgraph has its own namespace);
- `checkpoint:<thread>:<ns>:<checkpoint_id>`: a RedisJSON document with `thread_id`, `checkpoint_ts`
  (milliseconds since the epoch) and `checkpoint.channel_values`, the graph's state; its `messages` are
  LangChain's serialized constructor form, `{"lc": 1, "type": "constructor", "id": [..., "HumanMessage"],
  "kwargs": {"content": ..., "type": "human", "id": ...}}`;
- `checkpoint_write:...` documents and `write_keys_zset:...` sorted sets: writes not yet folded into a
  checkpoint (pending tasks).

Reading needs no LangGraph: a message in constructor form becomes the `message_to_dict` form
(`{"type", "data"}`) the rest of chatcli reads, renders and exports. A message the chain could not send
(chatcli.codec) is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from chatcli import codec, exporting, redis_errors
from chatcli.catalog import SessionInfo
from chatcli.errors import NotFoundError, UsageError
from chatcli.keys import glob_escape

PREFIX = "checkpoint"
ROOT_NS = "__empty__"  # langgraph-checkpoint-redis' stand-in for the root graph's empty namespace
MESSAGES = "$.checkpoint.channel_values.messages"

_CLASS_TYPES = {
    "HumanMessage": "human",
    "AIMessage": "ai",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "function",
    "ChatMessage": "chat",
}


def no_json_module(where: str) -> UsageError:
    """Exit 2, not 3: the server answers, but it is not one a LangGraph or langchain-redis app can use
    (waiting does not help); the user pointed chatcli at the wrong Redis or must load the module."""
    return UsageError(
        f"Redis at {where} has no JSON module (RedisJSON): LangGraph and langchain-redis keep their "
        "conversations in JSON documents; use Redis Stack, Redis 8, or load the module"
    )


def require_json(client: Any, where: str) -> None:
    """A JSON.TYPE of a key that does not exist: nil with the module, an unknown-command error without."""
    try:
        client.execute_command("JSON.TYPE", "chatcli:probe:json-module")
    except redis.ResponseError as exc:
        if "unknown command" in str(exc).lower():
            raise no_json_module(where) from None
        raise redis_errors.translate(exc, where) from None
    except (redis.RedisError, OSError) as exc:
        raise redis_errors.translate(exc, where) from None


def from_constructor(item: Any) -> dict[str, Any] | None:
    """A message in LangChain's serialized constructor form -> the `message_to_dict` form; None if it is not a
    message the chain could send."""
    if not (isinstance(item, dict) and item.get("type") == "constructor" and isinstance(item.get("kwargs"), dict)):
        return None
    kwargs = dict(item["kwargs"])
    ident = item.get("id")
    kind = kwargs.get("type") or (_CLASS_TYPES.get(ident[-1]) if isinstance(ident, list) and ident else None)
    if not isinstance(kind, str):
        return None
    kwargs["type"] = kind
    entry = {"type": kind, "data": kwargs}
    return entry if codec.problem(entry) is None else None


@dataclass
class Thread:
    id: str
    key: str  # the newest root checkpoint's key
    updated: float | None
    raw_messages: list[Any] = field(default_factory=list)
    skipped: int = 0

    def messages(self) -> list[dict[str, Any]]:
        found = []
        self.skipped = 0
        for item in self.raw_messages:
            entry = from_constructor(item)
            if entry is None:
                self.skipped += 1
            else:
                found.append(entry)
        return found


def _first(value: Any) -> Any:
    """A JSONPath ($...) reply is a list of matches (redis-py decodes it): the first, or None."""
    return value[0] if isinstance(value, list) and value else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class ThreadState:
    """What a thread's newest root checkpoint holds besides messages, read from the raw layout."""

    keys: list[str]  # state channels other than messages (LangGraph's own `branch:`/`__` channels aside)
    triggered: list[str]  # nodes a `branch:to:<node>` channel still triggers: tasks not run yet
    writes: list[str]  # channels of writes recorded against the checkpoint: a run that did not finish
    namespaces: list[str]  # subgraph namespaces (other than the root graph's)

    def refusal(self) -> str:
        """Why a plain chat graph must not add to this thread; "" when it may."""
        if self.keys:
            return f"its state has keys other than messages ({', '.join(self.keys)}): only its app knows them"
        if "__interrupt__" in self.writes:
            return "it waits on an interrupt (human-in-the-loop): resume it in the app that owns it"
        if self.triggered or self.writes:
            pending = ", ".join(self.triggered or sorted(set(self.writes)))
            return f"it has pending tasks ({pending}): finish the run in the app that owns it"
        if self.namespaces:
            return f"it has subgraph state ({', '.join(self.namespaces)}): a one-node graph cannot continue it"
        return ""


class ThreadStore:
    """The LangGraph threads of one Redis."""

    def __init__(self, client: Any, where: str, prefix: str = PREFIX):
        self.client = client
        self.where = where
        self.prefix = prefix
        require_json(client, where)

    def _call(self, action: Any, *args: Any) -> Any:
        return redis_errors.call(self.where, action, *args)

    def latest_key(self, thread_id: str, ns: str = ROOT_NS) -> str:
        return f"{self.prefix}_latest:{thread_id or ROOT_NS}:{ns}"

    def _pointers(self) -> Iterator[str]:
        pattern = f"{self.prefix}_latest:*:{ROOT_NS}"
        for key in self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000))):
            yield _text(key)

    def list_threads(self) -> list[SessionInfo]:
        """Every thread with a root checkpoint, most recently active first."""
        pointers = list(self._pointers())
        if not pointers:
            return []
        targets = self._call(self.client.mget, pointers)
        pipe = self.client.pipeline(transaction=False)
        keys = [_text(t) for t in targets if t is not None]
        for key in keys:
            pipe.json().get(key, "$.thread_id", "$.checkpoint_ts", f"{MESSAGES}[0:4]", f"{MESSAGES}[-1]")
            pipe.json().arrlen(key, MESSAGES)
        replies = self._call(pipe.execute, False)
        rows = []
        for index in range(len(keys)):
            doc, length = replies[2 * index], replies[2 * index + 1]
            if not isinstance(doc, dict):  # the checkpoint was deleted after its pointer was read
                continue
            thread_id = _first(doc.get("$.thread_id"))
            if thread_id is None:
                continue
            ts = _first(doc.get("$.checkpoint_ts"))
            head = [e for e in map(from_constructor, doc.get(f"{MESSAGES}[0:4]") or []) if e]
            last = from_constructor(_first(doc.get(f"{MESSAGES}[-1]")))
            first_user = next((e for e in head if exporting.role(e) == "user"), None)
            rows.append(
                SessionInfo(
                    id=str(thread_id),
                    messages=int(_first(length) or 0) if isinstance(length, list) else 0,
                    created=None,
                    updated=float(ts) / 1000 if isinstance(ts, (int, float)) else None,
                    title=exporting.title_from(first_user),
                    last=exporting.text(last) if last else "",
                )
            )
        rows.sort(key=lambda r: r.updated or 0, reverse=True)
        return rows

    def _scan(self, pattern: str) -> list[str]:
        return [_text(k) for k in self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000)))]

    def inspect(self, thread_id: str) -> ThreadState:
        """The thread's state beyond its messages; an empty state for a thread that does not exist yet."""
        start = len(self.latest_key(thread_id, ""))
        namespaces = sorted(k[start:] for k in self._scan(self.latest_key(glob_escape(thread_id), "*")))
        namespaces = [n for n in namespaces if n != ROOT_NS]
        target = self._call(self.client.get, self.latest_key(thread_id))
        if target is None:
            return ThreadState([], [], [], namespaces)
        key = _text(target)
        names = _first(self._call(self.client.json().objkeys, key, "$.checkpoint.channel_values")) or []
        names = [_text(n) for n in names]
        internal = ("__", "branch:")
        triggered = sorted(n.removeprefix("branch:to:") for n in names if n.startswith("branch:to:"))
        others = sorted(n for n in names if n != "messages" and not n.startswith(internal))
        # writes against this checkpoint: checkpoint_write:<thread>:<ns>:<checkpoint_id>:<task>:<idx>
        pattern = "checkpoint_write" + glob_escape(key[len(self.prefix) :]) + ":*"
        write_keys = self._scan(pattern)
        pipe = self.client.pipeline(transaction=False)
        for write in write_keys:
            pipe.json().get(write, "$.channel")
        channels = [_text(_first(c)) for c in self._call(pipe.execute)] if write_keys else []
        return ThreadState(others, triggered, channels, namespaces)

    def get(self, thread_id: str) -> Thread:
        """The thread's newest root checkpoint; NotFoundError when there is none."""
        target = self._call(self.client.get, self.latest_key(thread_id))
        if target is None:
            raise NotFoundError(f"no LangGraph thread {thread_id!r} (no {self.latest_key(thread_id)})")
        key = _text(target)
        doc = self._call(self.client.json().get, key, "$.checkpoint_ts", MESSAGES)
        if not isinstance(doc, dict) or not doc.get(MESSAGES):
            raise NotFoundError(f"LangGraph thread {thread_id!r}: its checkpoint {key} holds no messages")
        ts = _first(doc.get("$.checkpoint_ts"))
        raw = _first(doc.get(MESSAGES))
        return Thread(
            id=thread_id,
            key=key,
            updated=float(ts) / 1000 if isinstance(ts, (int, float)) else None,
            raw_messages=raw if isinstance(raw, list) else [],
        )


def export_header(thread: Thread) -> dict[str, Any]:
    from chatcli.render import iso

    header: dict[str, Any] = {"thread": thread.id, "checkpoint": thread.key}
    if thread.updated:
        header["updated"] = iso(thread.updated)
    return header
