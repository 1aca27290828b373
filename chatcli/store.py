"""SessionStore: the only module that names a Redis key.

Layout (compatible with langchain_community's RedisChatMessageHistory):
  <prefix><id>                      list, newest first (LPUSH), each element json.dumps(message_to_dict(m))
  chatcli:meta:{<prefix><id>}       hash: created, updated, title, system, model, input_tokens, output_tokens
  chatcli:index:{<prefix>}          sorted set of session ids scored by last activity (epoch seconds)
The braces are Redis Cluster hash tags: a session's list and metadata share one slot.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from chatcli import exporting
from chatcli.errors import NotFoundError, StorageError, StorageUnavailable, UsageError
from chatcli.spool import Record, Spool

MAX_ID_LENGTH = 256
_POP_IF_UNCHANGED = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] and redis.call('LINDEX', KEYS[1], 1) == ARGV[2] then
  redis.call('LTRIM', KEYS[1], 2, -1)
  return 1
end
return 0
"""
T = TypeVar("T")


def validate_session_id(session_id: str) -> str:
    """Session ids: 1-256 characters, no braces, no control characters, no edge white space.

    Every other character is literal (glob characters included): ids are never used as patterns.
    """
    if not session_id:
        raise UsageError("session id is empty")
    if len(session_id) > MAX_ID_LENGTH:
        raise UsageError(f"session id is {len(session_id)} characters long; the limit is {MAX_ID_LENGTH}")
    for ch in session_id:
        if ch in "{}":
            raise UsageError("session id may not contain '{' or '}'")
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise UsageError(f"session id may not contain control characters (found {ch!r})")
    if session_id != session_id.strip():
        raise UsageError("session id may not start or end with white space")
    return session_id


@dataclass
class Window:
    """The newest messages of a session (oldest first) and its metadata, read in one round trip."""

    messages: list[dict[str, Any]]
    meta: dict[str, str]
    skipped: int = 0
    offline: bool = False  # Redis did not answer: these are the messages this process and the spool know


@dataclass
class SessionInfo:
    id: str
    messages: int
    created: float | None
    updated: float | None
    title: str
    meta: dict[str, str] = field(default_factory=dict)


def _decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SessionStore:
    def __init__(
        self,
        client: Any,
        prefix: str = "message_store:",
        ttl: int | None = None,
        where: str = "Redis",
        spool: Spool | None = None,
        notify: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.where = where  # for error messages, already redacted; also names the spool's target
        # With a spool, writes that cannot reach Redis are kept on disk and flushed when it answers again,
        # and a window read while it is down is served from what this process and the spool know.
        self.spool = spool
        self.notify = notify or (lambda _message: None)
        self._told: set[str] = set()
        self._recent: dict[str, list[dict[str, Any]]] = {}  # per session: the newest messages seen
        self._recent_meta: dict[str, dict[str, str]] = {}

    # -- keys ------------------------------------------------------------------------------------
    def list_key(self, session_id: str) -> str:
        return f"{self.prefix}{session_id}"

    def meta_key(self, session_id: str) -> str:
        return f"chatcli:meta:{{{self.prefix}{session_id}}}"

    @property
    def index_key(self) -> str:
        return f"chatcli:index:{{{self.prefix}}}"

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call Redis; its failures become StorageError with one line for the user."""
        try:
            return action(*args, **kwargs)
        except redis.AuthenticationError:
            raise StorageError(f"Redis at {self.where} refused the credentials") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageUnavailable(f"lost the connection to Redis at {self.where}: {reason}") from None
        except redis.ResponseError as exc:
            raise StorageError(f"Redis at {self.where} answered with an error: {exc}") from None

    def ping(self) -> None:
        self._run(self.client.ping)

    # -- reading ---------------------------------------------------------------------------------
    def window(self, session_id: str, size: int, fits: Callable[[dict[str, Any]], bool] | None = None) -> Window:
        """The newest `size` messages (oldest first) and the metadata: one pipelined round trip.

        With `fits`, messages are parsed newest first and parsing stops at the first one `fits` rejects:
        a turn parses what its token budget keeps, not the whole window.

        With a spool, spooled turns are flushed first (so they are in the window), and when Redis does not
        answer the window is what this process last read and wrote plus the spooled turns (`offline`).
        """

        def read() -> Window:
            pipe = self.client.pipeline(transaction=False)
            pipe.lrange(self.list_key(session_id), 0, size - 1)
            pipe.hgetall(self.meta_key(session_id))
            raw_items, raw_meta = pipe.execute()
            if fits is None:
                messages, skipped = self._parse(reversed(raw_items))
            else:
                messages, skipped = [], 0
                for raw in raw_items:  # newest first
                    entry = exporting.parse_entry(raw)
                    if entry is None:
                        skipped += 1
                    elif not fits(entry):
                        break
                    else:
                        messages.append(entry)
                messages.reverse()
            return Window(messages, _decode_hash(raw_meta), skipped)

        if self.spool is None:
            return self._run(read)
        try:
            self.flush_spool()
            window = self._run(read)
        except StorageUnavailable:
            return self._offline_window(session_id, size)
        self._recent[session_id] = list(window.messages)
        self._recent_meta[session_id] = dict(window.meta)
        return window

    def _offline_window(self, session_id: str, size: int) -> Window:
        assert self.spool is not None
        if session_id in self._recent:
            messages = self._recent[session_id]
        else:
            messages = self.spool.entries_for(self.where, self.prefix, session_id)
        self._tell_once(
            "offline-read",
            f"(Redis at {self.where} does not answer: the model sees the {len(messages)} messages of this "
            "session kept locally)",
        )
        return Window(list(messages[-size:]), dict(self._recent_meta.get(session_id, {})), 0, offline=True)

    def _tell_once(self, what: str, message: str) -> None:
        if what not in self._told:
            self._told.add(what)
            self.notify(message)

    def flush_spool(self) -> int:
        """Write the turns spooled for this Redis, in order; returns how many messages were written.

        Raises StorageUnavailable (records kept) when Redis still does not answer. A record Redis refuses
        (an error reply) stays in the spool, with the ones after it, and the user is told; it never blocks
        the command.
        """
        if self.spool is None or not self.spool.path.exists():
            return 0
        written, failure = self.spool.flush(
            self.where, self.prefix, lambda r: self._write(r.session, r.entries, r.meta, r.incr)
        )
        if written:
            self._told.discard("spooling")
            self._told.discard("offline-read")
            self.notify(f"(Redis at {self.where} answers again: wrote {written} spooled messages to it)")
        if isinstance(failure, StorageError) and not isinstance(failure, StorageUnavailable):
            reason = str(failure).rsplit("caused error: ", 1)[-1]
            self._tell_once("flush-failed", f"(spooled turns stay in {self.spool.path}: Redis refused one: {reason})")
        elif failure is not None:
            raise failure
        return written

    @staticmethod
    def _parse(raw_items: Any) -> tuple[list[dict[str, Any]], int]:
        messages, skipped = [], 0
        for raw in raw_items:
            entry = exporting.parse_entry(raw)
            if entry is None:
                skipped += 1
            else:
                messages.append(entry)
        return messages, skipped

    def iter_messages(
        self, session_id: str, chunk: int = 1000, skipped: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every message, oldest first, read in chunks from the tail.

        Counting from the tail keeps the indexes stable while other writers LPUSH new turns.
        Unusable elements are skipped; their count is added to `skipped[0]` when given.
        """
        key = self.list_key(session_id)
        begin = 1
        while True:
            items = self._run(self.client.lrange, key, -(begin + chunk - 1), -begin)
            messages, bad = self._parse(reversed(items))
            if skipped is not None:
                skipped[0] += bad
            yield from messages
            if len(items) < chunk:
                return
            begin += chunk

    def count(self, session_id: str) -> int:
        return int(self._run(lambda: self.client.llen(self.list_key(session_id))))

    def exists(self, session_id: str) -> bool:
        key, meta = self.list_key(session_id), self.meta_key(session_id)
        pipe_result = self._run(lambda: self._pipe_exec(lambda p: (p.exists(key), p.exists(meta))))
        return any(pipe_result)

    def require(self, session_id: str) -> None:
        if not self.exists(session_id):
            raise NotFoundError(f"no session named {session_id!r}")

    def _pipe_exec(self, build: Callable[[Any], Any]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        build(pipe)
        return list(pipe.execute())

    def get_meta(self, session_id: str) -> dict[str, str]:
        return _decode_hash(self._run(lambda: self.client.hgetall(self.meta_key(session_id))))

    # -- writing ---------------------------------------------------------------------------------
    def append(
        self,
        session_id: str,
        entries: list[dict[str, Any]],
        meta: dict[str, str] | None = None,
        incr: dict[str, int] | None = None,
    ) -> None:
        """Append messages (oldest first) and update metadata and index: one pipelined round trip.

        With a spool, a write Redis does not answer is spooled (and the user told once) instead of failing.
        """
        if session_id in self._recent:
            self._recent[session_id] = [*self._recent[session_id], *entries][-2000:]
        if self.spool is None:
            self._write(session_id, entries, meta, incr)
            return
        try:
            self.flush_spool()
            self._write(session_id, entries, meta, incr)
        except StorageUnavailable:
            record = Record(self.where, self.prefix, session_id, list(entries), dict(meta or {}), dict(incr or {}))
            try:
                self.spool.add(record)
            except OSError as exc:
                raise StorageError(
                    f"Redis at {self.where} does not answer and the spool {self.spool.path} cannot be written: {exc}"
                ) from None
            self._tell_once(
                "spooling",
                f"(Redis at {self.where} does not answer: history is being spooled to {self.spool.path} "
                "and will be written to Redis when it answers again)",
            )

    def _write(
        self,
        session_id: str,
        entries: list[dict[str, Any]],
        meta: dict[str, str] | None,
        incr: dict[str, int] | None,
    ) -> None:
        now = time.time()
        key, meta_key = self.list_key(session_id), self.meta_key(session_id)

        def build(pipe: Any) -> None:
            if entries:
                pipe.lpush(key, *[exporting.encode_entry(e) for e in entries])
            pipe.hsetnx(meta_key, "created", repr(now))
            pipe.hset(meta_key, mapping={"updated": repr(now), **(meta or {})})
            for name, amount in (incr or {}).items():
                if amount:
                    pipe.hincrby(meta_key, name, amount)
            if self.ttl:
                pipe.expire(key, self.ttl)
                pipe.expire(meta_key, self.ttl)
            pipe.zadd(self.index_key, {session_id: now})

        self._run(lambda: self._transaction(build))

    def pop_exchange(self, session_id: str) -> list[dict[str, Any]] | None:
        """Remove the newest question and its answer (oldest first), if the list ends with such a pair."""
        key = self.list_key(session_id)
        raw = self._run(lambda: self.client.lrange(key, 0, 1))
        if len(raw) < 2:
            return None
        answer, question = exporting.parse_entry(raw[0]), exporting.parse_entry(raw[1])
        if not answer or not question or exporting.role(answer) != "assistant" or exporting.role(question) != "user":
            return None
        # remove them only if nobody appended in between (compare-and-trim, atomic on the server)
        removed = self._run(lambda: self.client.eval(_POP_IF_UNCHANGED, 1, key, raw[0], raw[1]))
        return [question, answer] if removed else None

    def clear_messages(self, session_id: str) -> None:
        """Delete a session's messages; its metadata (system prompt, totals) stays."""
        self._run(lambda: self.client.delete(self.list_key(session_id)))
        self.set_meta(session_id)

    def set_meta(self, session_id: str, **fields: str) -> None:
        """Change metadata (system prompt, model, title) and mark the session active."""
        self.append(session_id, [], meta=fields)

    def _transaction(self, build: Callable[[Any], Any]) -> list[Any]:
        pipe = self.client.pipeline(transaction=True)
        build(pipe)
        return list(pipe.execute())

    # -- sessions --------------------------------------------------------------------------------
    def session_count(self) -> int:
        return int(self._run(lambda: self.client.zcard(self.index_key)))

    def most_recent(self) -> str | None:
        ids = self._run(lambda: self.client.zrevrange(self.index_key, 0, 0))
        return _s(ids[0]) if ids else None

    def list_sessions(self, limit: int = 50, offset: int = 0) -> tuple[list[SessionInfo], int | None]:
        """One page of the index, newest activity first, and the offset of the next page (or None).

        Index entries whose session is gone (expired, or deleted by another program) are skipped, the
        page is filled from further entries, and they are removed from the index afterwards; the next
        offset accounts for that removal, so no session moves across a page boundary.
        """
        rows: list[SessionInfo] = []
        stale: list[str] = []
        position = offset
        while len(rows) < limit:
            need = limit - len(rows)
            last = position + need - 1
            ranked = self._run(self.client.zrevrange, self.index_key, position, last, withscores=True)
            if not ranked:
                break
            position += len(ranked)
            for info in self._describe([(_s(member), float(score)) for member, score in ranked]):
                if isinstance(info, SessionInfo):
                    rows.append(info)
                else:
                    stale.append(info)
        total = int(self._run(lambda: self.client.zcard(self.index_key)))
        if stale:
            self._run(lambda: self.client.zrem(self.index_key, *stale))
            total -= len(stale)
            position -= len(stale)
        return rows, (position if position < total else None)

    def _describe(self, ranked: list[tuple[str, float]]) -> list[SessionInfo | str]:
        """Rows for index entries, one pipelined round trip; an entry whose session is gone gives its id."""

        def build(pipe: Any) -> None:
            for sid, _score in ranked:
                pipe.hgetall(self.meta_key(sid))
                pipe.llen(self.list_key(sid))
                pipe.lindex(self.list_key(sid), -1)

        results = self._run(lambda: self._pipe_exec(build))
        described: list[SessionInfo | str] = []
        for i, (sid, score) in enumerate(ranked):
            raw_meta, length, oldest = results[3 * i : 3 * i + 3]
            meta = _decode_hash(raw_meta)
            if not length and not meta:
                described.append(sid)
                continue
            first = exporting.parse_entry(oldest) if oldest is not None else None
            described.append(
                SessionInfo(
                    id=sid,
                    messages=int(length),
                    created=_float(meta.get("created")),
                    updated=_float(meta.get("updated")) or score,
                    title=meta.get("title") or exporting.title_from(first),
                    meta=meta,
                )
            )
        return described

    def delete(self, session_ids: list[str]) -> None:
        def build(pipe: Any) -> None:
            for sid in session_ids:
                pipe.delete(self.list_key(sid), self.meta_key(sid))
                pipe.zrem(self.index_key, sid)

        self._run(lambda: self._pipe_exec(build))

    def clear(self, batch: int = 500) -> int:
        """Delete every indexed session (and nothing else). Returns how many were deleted."""
        deleted = 0
        while True:
            ids = [_s(m) for m in self._run(lambda: self.client.zrange(self.index_key, 0, batch - 1))]
            if not ids:
                return deleted
            self.delete(ids)
            deleted += len(ids)
