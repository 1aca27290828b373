"""A turn as it is written: to Redis, and to the spool while Redis does not answer.

No Redis and no LangChain here, so the spool can keep records without either.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from chatcli.settings import MAX_TTL

MAX_RECORD_DEPTH = 64  # a spooled record nests a few levels; deeper is not one chatcli wrote


def new_turn_id() -> str:
    return uuid.uuid4().hex


def message_id(turn_id: str, position: int) -> str:
    """The LangChain message id of a turn's `position`-th message (0: the question, 1: the answer)."""
    return f"{turn_id}-{position}"


def turn_of(message_id: Any) -> str | None:
    """The turn id a chatcli message id belongs to, else None."""
    if isinstance(message_id, str) and message_id[-2:-1] == "-" and len(message_id) > 2:
        return message_id[:-2]
    return None


def with_id(entry: dict[str, Any], default: str) -> dict[str, Any]:
    """`entry` with a LangChain message id: its own, else `default`."""
    data = entry.get("data")
    if not isinstance(data, dict) or (isinstance(data.get("id"), str) and data["id"]):
        return entry
    return {**entry, "data": {**data, "id": default}}


@dataclass
class TurnRecord:
    """Messages to add to one session (oldest first) with the metadata changes that go with them.

    `turn` makes the write idempotent: Redis stores a turn id once (see SessionStore.append_turn).
    """

    session: str
    entries: list[dict[str, Any]]
    turn: str = field(default_factory=new_turn_id)
    meta: dict[str, str] = field(default_factory=dict)
    incr: dict[str, int] = field(default_factory=dict)
    ttl: int | None = None  # the session TTL in force when the turn was made
    at: float = field(default_factory=time.time)
    # metadata set only where the session has none yet (HSETNX): the model a new session starts with, say
    defaults: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "session": self.session,
                "turn": self.turn,
                "entries": self.entries,
                "meta": self.meta,
                "incr": self.incr,
                "ttl": self.ttl,
                "at": self.at,
                **({"defaults": self.defaults} if self.defaults else {}),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> TurnRecord:
        """Parse a record; ValueError with the reason when it is not one chatcli can write."""
        try:
            raw = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if depth(raw) > MAX_RECORD_DEPTH:
            raise ValueError("nested too deeply")
        session, turn, entries = raw.get("session"), raw.get("turn"), raw.get("entries")
        meta, incr, ttl, at = raw.get("meta") or {}, raw.get("incr") or {}, raw.get("ttl"), raw.get("at", 0.0)
        defaults = raw.get("defaults") or {}
        if not isinstance(session, str) or not session or not isinstance(turn, str) or not turn:
            raise ValueError("no session or turn id")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("entries are not a list of messages")
        for name, pairs in (("meta", meta), ("defaults", defaults)):
            if not _strings(pairs):
                raise ValueError(f"{name} is not a map of strings")
        if not isinstance(incr, dict) or not all(
            isinstance(k, str) and type(v) is int and abs(v) < 2**53 for k, v in incr.items()
        ):
            raise ValueError("incr is not a map of whole numbers")
        if ttl is not None and not (type(ttl) is int and 0 < ttl <= MAX_TTL):
            raise ValueError(f"ttl {ttl!r} is not a whole number of seconds from 1 to {MAX_TTL}")
        if type(at) not in (int, float) or not 0 <= at < 1e11:
            raise ValueError("bad time")
        return cls(session, entries, turn, meta, incr, ttl, float(at), defaults)


def _strings(pairs: Any) -> bool:
    return isinstance(pairs, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())


def depth(value: Any, limit: int = MAX_RECORD_DEPTH + 1) -> int:
    """How deeply `value` nests (lists and dicts), counting at most to `limit`; iterative, never recursive."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest >= limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest
