"""Helpers for the storage-core tests: a store, a spool and the layer around them, in-process on a real Redis,
with faults injected where Redis or the disk would fail (never in the code under test)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from chatcli import events
from chatcli.records import TurnRecord, message_id
from chatcli.redis_server import find_binary
from chatcli.spool import Spool
from chatcli.spooled import SpooledStore
from chatcli.store import SessionStore


def exchange_record(session: str, turn: str, text: str | None = None) -> TurnRecord:
    text = text or turn
    entries = [
        {"type": "human", "data": {"content": text, "id": message_id(turn, 0)}},
        {"type": "ai", "data": {"content": f"echo: {text}", "id": message_id(turn, 1)}},
    ]
    return TurnRecord(session, entries, turn)


def stored(client: Any, session: str, prefix: str = "message_store:") -> list[dict[str, Any]]:
    """The session's messages, oldest first, as Redis holds them."""
    return [json.loads(raw) for raw in reversed(client.lrange(f"{prefix}{session}", 0, -1))]


def stored_turns(client: Any, session: str, prefix: str = "message_store:") -> list[str]:
    """The turn ids of a session's messages, oldest first (one per message)."""
    return [m["data"]["id"].rsplit("-", 1)[0] for m in stored(client, session, prefix)]


class FaultyStore(SessionStore):
    """A real SessionStore whose Redis fails when a test says so: before a call is sent ("before"), or after
    Redis ran it but before the answer arrived ("after", a timed-out EXEC that still ran); or Ctrl-C comes."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fault: str | None = None  # before | after | interrupt-before | interrupt-after
        self.calls = 0

    def run(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        fault, self.fault = self.fault, None  # one fault, on the next call
        self.calls += 1
        if fault == "before":
            return super().run(_raise(redis.ConnectionError("injected: connection lost before sending")))
        if fault == "interrupt-before":
            raise KeyboardInterrupt
        result = super().run(action, *args, **kwargs)
        if fault == "after":
            return super().run(_raise(redis.TimeoutError("injected: timed out after Redis ran it")))
        if fault == "interrupt-after":
            raise KeyboardInterrupt
        return result


def _raise(exc: Exception) -> Callable[[], Any]:
    def fail() -> Any:
        raise exc

    return fail


def layered(url: str, home: Path, prefix: str = "message_store:", store_class: type = SessionStore, **kw: Any):
    """(SpooledStore, its SessionStore, the events it emitted) on a fresh client of `url`."""
    said: list[events.Event] = []
    client = redis.Redis.from_url(url, socket_timeout=kw.pop("socket_timeout", 5))
    store = store_class(client, prefix, where=url, emit=said.append)
    return SpooledStore(store, kw.pop("spool", None) or Spool(home), said.append), store, said


def redis_major(binary: str | None = None) -> int:
    out = subprocess.run([binary or find_binary() or "redis-server", "--version"], capture_output=True, text=True)
    version = out.stdout.split("v=", 1)[1].split()[0]
    return int(version.split(".")[0])
