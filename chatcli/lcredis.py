"""Sessions of langchain-redis' RedisChatMessageHistory (the `langchain-redis` partner package), read and
continued with redis-py alone.

The layout (checked against langchain-redis 0.2.6 by tests/test_lcredis.py, which writes and reads with the
real library):

- one RedisJSON document per message at `<key_prefix><session>:<ULID>` (default prefix `chat:`), fields
  `type`, `message_id` (the ULID), `data` (`content`, `additional_kwargs`, `type`; `tool_call_id` and
  `status` for a tool message), `session_id` and `timestamp` (seconds since the epoch, a float);
- a search index (default `idx:chat_history`) over `$.session_id` (TAG), `$.data.content` (TEXT), `$.type`
  (TAG) and `$.timestamp` (NUMERIC); the library reads a session with FT.SEARCH sorted by timestamp, up to
  10,000 messages.

The library keeps neither tool calls nor names nor ids: `{"type", "data"}` of a document is a message in
`message_to_dict` form with fewer fields. chatcli writes the whole `message_to_dict` data (id, response
metadata, tool calls), which the library reads back with `messages_from_dict` as it reads its own.

What chatcli keeps beside a session (system prompt, model, title, token totals) is its usual metadata hash
`chatcli:meta:{<key_prefix><session>}`: never needed to read the session.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from chatcli import codec, redis_errors
from chatcli.catalog import SessionInfo
from chatcli.errors import NotFoundError, UsageError
from chatcli.exporting import title_from
from chatcli.keys import Keys
from chatcli.records import TurnRecord, turn_of
from chatcli.store import RemovedTurn, Window, as_text, decode_hash
from chatcli.threads import require_json

SOURCE = "langchain-redis"
PREFIX = "chat:"
INDEX = "idx:chat_history"
MAX_MESSAGES = 10_000  # what the library itself reads of a session
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


def tag(value: str) -> str:
    """A TAG query value: every character but letters, digits and _ escaped."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def ulid(at: float, seed: str) -> str:
    """A ULID (48-bit milliseconds, 80 bits) whose random part comes from `seed`: the same message written
    twice (a retry) gets the same key."""
    value = (int(at * 1000) << 80) | int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _results(reply: Any) -> list[dict[str, Any]]:
    """FT.SEARCH / FT.AGGREGATE rows as {"id"?, fields...}, from a RESP3 map or a RESP2 array."""
    rows: list[dict[str, Any]] = []
    if isinstance(reply, dict):
        for row in reply.get(b"results") or reply.get("results") or []:
            fields = {as_text(k): as_text(v) for k, v in (row.get(b"extra_attributes") or {}).items()}
            if row.get(b"id") is not None:
                fields["id"] = as_text(row[b"id"])
            rows.append(fields)
        return rows
    items = list(reply[1:]) if isinstance(reply, list) else []
    while items:
        head = items.pop(0)
        if isinstance(head, list):  # FT.AGGREGATE: a row is a flat field list
            rows.append({as_text(k): as_text(v) for k, v in zip(head[::2], head[1::2], strict=False)})
            continue
        row = {"id": as_text(head)}
        if items and isinstance(items[0], list):
            fields = items.pop(0)
            row.update({as_text(k): as_text(v) for k, v in zip(fields[::2], fields[1::2], strict=False)})
        rows.append(row)
    return rows


def entry_of(doc: Any) -> dict[str, Any] | None:
    """A message document -> the `message_to_dict` form; None when it is not one the chain could send."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict) or not isinstance(doc.get("type"), str):
        return None
    entry = {"type": doc["type"], "data": doc["data"]}
    return entry if codec.problem(entry) is None else None


class LcRedisStore:
    """The langchain-redis sessions of one Redis: the reading and writing the chat commands use."""

    def __init__(self, client: Any, where: str, ttl: int | None = None, prefix: str = PREFIX, index: str = INDEX):
        self.client = client
        self.where = where
        self.ttl = ttl
        self.prefix = prefix
        self.index = index
        self.keys = Keys(prefix)
        require_json(client, where)

    def run(self, action: Callable[..., Any], *args: Any) -> Any:
        return redis_errors.call(self.where, action, *args)

    def _search(self, *args: Any) -> Any:
        try:
            return self.client.execute_command(*args)
        except redis.ResponseError as exc:
            message = str(exc).lower()
            if "unknown command" in message:
                raise UsageError(
                    f"Redis at {self.where} has no Search module (RediSearch): langchain-redis sessions need it"
                ) from None
            if "no such index" in message or "unknown index" in message:
                return None
            raise redis_errors.translate(exc, self.where) from None
        except (redis.RedisError, OSError) as exc:
            raise redis_errors.translate(exc, self.where) from None

    # -- reading ---------------------------------------------------------------------------------
    def list_sessions(self, limit: int = 50) -> list[SessionInfo]:
        """Sessions by last activity, newest first (one FT.AGGREGATE, then one pipelined FT.SEARCH each for
        the title)."""
        reply = self._search(
            *("FT.AGGREGATE", self.index, "*", "GROUPBY", 1, "@session_id"),
            *("REDUCE", "COUNT", 0, "AS", "messages", "REDUCE", "MAX", 1, "@timestamp", "AS", "updated"),
            *("REDUCE", "MIN", 1, "@timestamp", "AS", "created", "SORTBY", 2, "@updated", "DESC"),
            *("LIMIT", 0, limit),
        )
        rows = [r for r in _results(reply) if r.get("session_id")] if reply is not None else []
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            pipe.execute_command(
                *("FT.SEARCH", self.index, f"@session_id:{{{tag(row['session_id'])}}} @type:{{human}}"),
                *("SORTBY", "timestamp", "ASC", "LIMIT", 0, 1, "RETURN", 3, "$.data.content", "AS", "content"),
                *("DIALECT", 2),
            )
        firsts = self.run(pipe.execute) if rows else []
        found = []
        for row, first in zip(rows, firsts, strict=True):
            hits = _results(first)
            title = title_from({"type": "human", "data": {"content": hits[0].get("content", "")}}) if hits else ""
            found.append(
                SessionInfo(
                    id=row["session_id"],
                    messages=int(float(row.get("messages", 0))),
                    created=float(row["created"]) if row.get("created") else None,
                    updated=float(row["updated"]) if row.get("updated") else None,
                    title=title,
                )
            )
        return found

    def _keys(self, session_id: str, newest: int, descending: bool) -> list[str]:
        reply = self._search(
            *("FT.SEARCH", self.index, f"@session_id:{{{tag(session_id)}}}", "NOCONTENT"),
            *("SORTBY", "timestamp", "DESC" if descending else "ASC", "LIMIT", 0, newest, "DIALECT", 2),
        )
        return [row["id"] for row in _results(reply)] if reply is not None else []

    def _docs(self, keys: list[str]) -> list[Any]:
        if not keys:
            return []
        return [d[0] if isinstance(d, list) and d else d for d in self.run(self.client.json().mget, keys, "$")]

    def window(self, session_id: str, size: int, budget: Any = None, most: int = 0) -> Window:
        """The newest messages (oldest first) that fit the budget, and chatcli's metadata of the session."""
        wanted = min(max(size, most), MAX_MESSAGES)
        keys = self._keys(session_id, wanted, descending=True)
        fits = budget() if budget is not None else None
        messages, skipped, cut = [], 0, False
        for doc in self._docs(keys):  # newest first
            entry = entry_of(doc)
            if entry is None:
                skipped += 1
                continue
            if fits is not None and not fits(entry):
                cut = True
                break
            messages.append(entry)
        messages.reverse()
        # every document read and kept: the window opens the conversation (a leading system message is the
        # system prompt, chatcli.opening)
        return Window(messages, self.get_meta(session_id), skipped, whole=len(keys) < wanted and not cut)

    def iter_messages(
        self, session_id: str, chunk: int = 1000, skipped: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every message, oldest first (as the library reads them: up to 10,000)."""
        keys = self._keys(session_id, MAX_MESSAGES, descending=False)
        for start in range(0, len(keys), chunk):
            for doc in self._docs(keys[start : start + chunk]):
                entry = entry_of(doc)
                if entry is None:
                    if skipped is not None:
                        skipped[0] += 1
                else:
                    yield entry

    def count(self, session_id: str) -> int:
        reply = self._search("FT.SEARCH", self.index, f"@session_id:{{{tag(session_id)}}}", "LIMIT", 0, 0, "DIALECT", 2)
        if reply is None:
            return 0
        return int(reply.get(b"total_results", 0) if isinstance(reply, dict) else reply[0])

    def exists(self, session_id: str) -> bool:
        return self.count(session_id) > 0

    def require(self, session_id: str) -> None:
        if not self.exists(session_id):
            raise NotFoundError(f"no langchain-redis session named {session_id!r} (index {self.index})")

    def get_meta(self, session_id: str) -> dict[str, str]:
        return decode_hash(self.run(self.client.hgetall, self.keys.meta(session_id)))

    # -- writing ---------------------------------------------------------------------------------
    def document(self, session_id: str, entry: dict[str, Any], at: float, seed: str) -> tuple[str, dict[str, Any]]:
        """The key and document langchain-redis would write for this message (the whole message_to_dict data)."""
        message_id = ulid(at, seed)
        data = {**entry["data"], "type": entry["type"]}
        doc = {"type": entry["type"], "message_id": message_id, "data": data, "session_id": session_id, "timestamp": at}
        return f"{self.prefix}{session_id}:{message_id}", doc

    def append_turn(self, record: TurnRecord) -> bool:
        """The turn's messages as documents (JSON.SET NX: a retry writes nothing twice) and chatcli's metadata,
        in one transaction. Each message's timestamp is a microsecond apart, so the order holds."""
        meta_key = self.keys.meta(record.session)
        now = time.time()

        def build(pipe: Any) -> None:
            for position, entry in enumerate(record.entries):
                at = round(record.at + position / 1e6, 6)
                key, doc = self.document(record.session, entry, at, f"{record.turn}:{position}")
                pipe.json().set(key, "$", doc, nx=True)
                if self.ttl:
                    pipe.expire(key, self.ttl)
            for name, value in record.defaults.items():
                pipe.hsetnx(meta_key, name, value)
            fields = {**record.meta, "updated": repr(now)}
            pipe.hset(meta_key, mapping=fields)
            pipe.hsetnx(meta_key, "created", repr(now))
            for name, amount in record.incr.items():
                pipe.hincrby(meta_key, name, amount)

        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            build(pipe)
            return list(pipe.execute())

        self.run(execute)
        return True

    def set_meta(self, session_id: str, **fields: str) -> None:
        self.append_turn(TurnRecord(session_id, [], turn="", meta=dict(fields)))

    def set_fields(self, session_id: str, fields: dict[str, str], only_missing: bool = False) -> bool:
        key = self.keys.meta(session_id)
        for name, value in fields.items():
            self.run(self.client.hsetnx if only_missing else self.client.hset, key, name, value)
        return True

    def remove_turn(self, session_id: str, turn_id: str, search: int = 200) -> RemovedTurn | None:
        """/undo, /retry: delete the documents of one turn chatcli wrote (by its message ids) among the newest
        `search`; None when it is not there."""
        keys = self._keys(session_id, search, descending=True)
        found = [
            (position, key, entry)
            for position, (key, doc) in enumerate(zip(keys, self._docs(keys), strict=True))
            if (entry := entry_of(doc)) is not None and turn_of(entry["data"].get("id")) == turn_id
        ]
        if not found or not self.run(self.client.delete, *[key for _p, key, _e in found]):
            return None
        return RemovedTurn([entry for _p, _k, entry in reversed(found)], newer=found[0][0])

    def clear_messages(self, session_id: str) -> None:
        """/clear: delete every message document of the session (chatcli's metadata stays)."""
        keys = self._keys(session_id, MAX_MESSAGES, descending=False)
        for start in range(0, len(keys), 1000):
            self.run(self.client.delete, *keys[start : start + 1000])

    def delete(self, session_ids: list[str]) -> None:
        raise UsageError(f"deleting {SOURCE} sessions is for the LangChain app that owns them")


def open_lcredis(settings: Any) -> LcRedisStore:
    from chatcli import redis_server

    conn = redis_server.connect(settings)
    return LcRedisStore(conn.client, conn.where, settings.ttl)
