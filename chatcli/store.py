"""SessionStore: the only module that names a Redis key.

Layout (compatible with langchain_community's RedisChatMessageHistory):
  <prefix><id>                      list, newest first (LPUSH), each element json.dumps(message_to_dict(m))
  chatcli:meta:{<prefix><id>}       hash: created, updated, title, system, model, input_tokens, output_tokens
  chatcli:index:{<prefix>}          sorted set of session ids scored by last activity (epoch seconds)
The braces are Redis Cluster hash tags: a session's list and metadata share one slot.

On a single node a write (list + metadata + index) is one MULTI/EXEC. On a Redis Cluster the index lives
in another slot than the session, so a write is one MULTI/EXEC on the session's slot followed by a
separate ZADD/ZREM on the index. That second step is idempotent (ZADD of the same id, or a later score;
ZREM of a gone id) and is redone by the next write; `list_sessions` drops index rows whose session is
gone, and `sessions adopt` re-adds sessions missing from the index. So if the second step fails, the
session itself is whole and the index is repaired by the next write, list or adopt.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

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
    indexed: bool = True


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH / KEYS pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
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
        self.cluster = isinstance(client, RedisCluster)
        if self.cluster and ("{" in prefix or "}" in prefix):
            # the list key would hash on the prefix's own tag, not on the meta key's: CROSSSLOT
            raise UsageError(f"key prefix {prefix!r} contains '{{' or '}}': not usable on a Redis Cluster")
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
        except (redis.exceptions.ClusterDownError, RedisClusterException) as exc:
            # a cluster that cannot be reached or has lost a slot: like a dead single node, the spool takes over
            raise StorageUnavailable(f"Redis Cluster at {self.where} does not answer: {exc}") from None
        except redis.ResponseError as exc:
            raise StorageError(f"Redis at {self.where} answered with an error: {exc}") from None
        except redis.RedisError as exc:
            raise StorageError(f"Redis at {self.where} failed: {exc}") from None

    def ping(self) -> None:
        self._run(self.client.ping)

    # -- reading ---------------------------------------------------------------------------------
    def window(
        self,
        session_id: str,
        size: int,
        budget: Callable[[], Callable[[dict[str, Any]], bool]] | None = None,
        most: int = 0,
    ) -> Window:
        """The newest `size` messages (oldest first) and the metadata: one pipelined round trip.

        With `budget` (a factory of predicates that accept messages, newest first, while they fit), messages
        are parsed newest first and parsing stops at the first one the predicate rejects: a turn parses what
        its token budget keeps, not the whole window. When every one of the `size` messages fits and the list
        may hold more, the window is read again, up to `most` messages: a second round trip, only for
        sessions whose newest messages are much shorter than `size` assumed.

        With a spool, spooled turns are flushed first (so they are in the window), and when Redis does not
        answer the window is what this process last read and wrote plus the spooled turns (`offline`).
        """

        def read(count: int) -> Window:
            pipe = self.client.pipeline(transaction=False)
            pipe.lrange(self.list_key(session_id), 0, count - 1)
            pipe.hgetall(self.meta_key(session_id))
            raw_items, raw_meta = pipe.execute()
            if budget is None:
                messages, skipped = self._parse(reversed(raw_items))
                return Window(messages, _decode_hash(raw_meta), skipped)
            fits = budget()
            messages, skipped, full = [], 0, False
            for raw in raw_items:  # newest first
                entry = exporting.parse_entry(raw)
                if entry is None:
                    skipped += 1
                elif not fits(entry):
                    full = True
                    break
                else:
                    messages.append(entry)
            if not full and len(raw_items) == count < most:
                return read(most)
            messages.reverse()
            return Window(messages, _decode_hash(raw_meta), skipped)

        if self.spool is None:
            return self._run(read, size)
        try:
            self.flush_spool()
            window = self._run(read, size)
        except StorageUnavailable:
            return self._offline_window(session_id, max(size, most))
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
            f"(Redis at {self.where} does not answer: the model sees this session's {len(messages)} messages "
            "kept locally, as far as the history budget allows)",
        )
        return Window(list(messages[-size:]), dict(self._recent_meta.get(session_id, {})), 0, offline=True)

    def _tell_once(self, what: str, message: str) -> None:
        if what not in self._told:
            self._told.add(what)
            self.notify(message)

    def flush_spool(self) -> int:
        """Write the turns spooled for this Redis, in order; returns how many messages were written.

        Raises StorageUnavailable (records kept) when Redis still does not answer. A record Redis refuses
        (an error reply, e.g. the session's key holds another type) is set aside in spool.rejected.jsonl
        and the user is told; it never blocks the command and is not re-applied by the next one.
        """
        if self.spool is None or not self.spool.path.exists():
            return 0
        spool = self.spool
        written, failure = spool.flush(
            self.where,
            self.prefix,
            lambda r: self._write(r.session, r.entries, r.meta, r.incr, ttl=r.ttl),
            refused=lambda exc: isinstance(exc, StorageError) and not isinstance(exc, StorageUnavailable),
        )
        if written:
            self._told.discard("spooling")
            self._told.discard("offline-read")
            self.notify(f"(Redis at {self.where} answers again: wrote {written} spooled messages to it)")
        for record, exc in spool.rejected:
            reason = str(exc).rsplit("caused error: ", 1)[-1]
            self.notify(
                f"(Redis refused a spooled turn of session {record.session!r}: {reason}; "
                f"it was set aside in {spool.rejected_path})"
            )
        spool.rejected.clear()
        if failure is not None:
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
            record = Record(
                self.where, self.prefix, session_id, list(entries), dict(meta or {}), dict(incr or {}), ttl=self.ttl
            )
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
        ttl: int | None = None,
    ) -> None:
        """`ttl`: the one to apply (a spooled turn keeps the TTL it was made with); default: the store's."""
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
            self._expire(pipe, session_id, ttl)

        self._commit(build, index_add={session_id: now})

    def _expire(self, pipe: Any, session_id: str, ttl: int | None = None) -> None:
        ttl = ttl or self.ttl
        if ttl:
            pipe.expire(self.list_key(session_id), ttl)
            pipe.expire(self.meta_key(session_id), ttl)

    def _commit(
        self,
        build: Callable[[Any], Any],
        index_add: dict[str, float] | None = None,
        index_remove: list[str] | None = None,
    ) -> list[Any]:
        """`build` (commands on ONE session's slot) and the index update, as one MULTI/EXEC on a single
        node; on a cluster, a MULTI/EXEC on the session's slot, then the idempotent index step."""

        def index(pipe: Any) -> None:
            if index_add:
                pipe.zadd(self.index_key, index_add)
            if index_remove:
                pipe.zrem(self.index_key, *index_remove)

        if not self.cluster:

            def both(pipe: Any) -> None:
                build(pipe)
                index(pipe)

            return self._run(lambda: self._transaction(both))
        result = self._run(lambda: self._transaction(build))
        if index_add or index_remove:
            try:
                self._run(lambda: self._pipe_exec(index))
            except StorageError as exc:
                # The session itself is written. Raising here would spool (and later write again) a turn
                # that is already stored; the index step is idempotent and the next write of this session,
                # or `sessions adopt`, redoes it.
                self._tell_once("index", f"(the session is saved, but the session index was not updated: {exc})")
        return result

    def import_session(
        self, session_id: str, entries: list[dict[str, Any]], mode: str = "new", meta: dict[str, str] | None = None
    ) -> None:
        """Write imported messages (oldest first) all-or-nothing: one MULTI/EXEC on the session's slot.

        mode "new" refuses an existing session (checked under WATCH, so a concurrent writer cannot slip in),
        "append" adds after the existing messages, "replace" drops the old messages and metadata first.
        The index row is part of the MULTI/EXEC on a single node. On a cluster it is the separate,
        idempotent ZADD after it (see the module docstring): if that step fails, the session is whole and
        the next write to it, `sessions adopt` or `sessions list --all` brings it back into the index.
        """
        now = time.time()
        key, meta_key = self.list_key(session_id), self.meta_key(session_id)
        encoded = [exporting.encode_entry(e) for e in entries]

        def attempt() -> None:
            pipe = self.client.pipeline(transaction=True)
            try:
                pipe.watch(key, meta_key)
                if mode == "new" and (pipe.exists(key) or pipe.exists(meta_key)):
                    raise UsageError(
                        f"session {session_id!r} exists: pass --append to add to it or --replace to overwrite it"
                    )
                pipe.multi()
                if mode == "replace":
                    pipe.delete(key)
                    pipe.delete(meta_key)
                for start in range(0, len(encoded), 1000):
                    pipe.lpush(key, *encoded[start : start + 1000])
                pipe.hsetnx(meta_key, "created", repr(now))
                pipe.hset(meta_key, mapping={"updated": repr(now), **(meta or {})})
                self._expire(pipe, session_id)
                if not self.cluster:
                    pipe.zadd(self.index_key, {session_id: now})
                pipe.execute()
            except redis.WatchError:
                raise StorageError(
                    f"session {session_id!r} changed while importing; nothing was written: run the import again"
                ) from None
            finally:
                pipe.reset()

        self._run(attempt)
        if self.cluster:
            self._run(lambda: self.client.zadd(self.index_key, {session_id: now}))

    def copy_session(self, old: str, new: str, move: bool = False) -> int:
        """Fork (copy) or, with `move`, rename a session: messages, metadata and its index row.

        Read + write rather than COPY/RENAME, which need both keys in one slot. On a single node it is one
        MULTI/EXEC under WATCH of both sessions. On a cluster the two ids hash to different slots, so: read
        OLD; one MULTI/EXEC on NEW's slot (WATCHed, refused if NEW exists); the index ZADD; and for a rename
        one MULTI/EXEC on OLD's slot that deletes it only if it is unchanged since the read, then the ZREM.
        If a rename stops between steps, NEW is a whole copy and OLD is still there (nothing is lost).
        Returns the number of messages copied.
        """
        if old == new:
            raise UsageError("the new session id is the same as the old one")
        now = time.time()
        okey, omkey, nkey, nmkey = self.list_key(old), self.meta_key(old), self.list_key(new), self.meta_key(new)
        remaining = -1

        def read(reader: Any) -> tuple[list[Any], dict[str, str], float, int]:
            items = list(reader.lrange(okey, 0, -1))
            meta = _decode_hash(reader.hgetall(omkey))
            if not items and not meta:
                raise NotFoundError(f"no session named {old!r}")
            score = self.client.zscore(self.index_key, old)
            remaining = int(reader.pttl(okey if items else omkey))  # ms; -1: no TTL
            return items, meta, float(score) if score is not None and move else now, remaining

        def write(pipe: Any, items: list[Any], meta: dict[str, str]) -> None:
            if pipe.exists(nkey) or pipe.exists(nmkey):
                raise UsageError(f"session {new!r} exists: choose another id or delete it first")
            pipe.multi()
            for start in range(0, len(items), 1000):
                pipe.rpush(nkey, *items[start : start + 1000])  # same order: newest first
            new_meta = dict(meta) if move else {**meta, "created": repr(now), "forked_from": old}
            new_meta.setdefault("updated", repr(now))
            if not move:
                new_meta["updated"] = repr(now)
            pipe.hset(nmkey, mapping=new_meta)
            if remaining > 0:  # the copy expires when the original would have
                pipe.pexpire(nkey, remaining)
                pipe.pexpire(nmkey, remaining)
            else:
                self._expire(pipe, new)

        def changed(exc: redis.WatchError) -> StorageError:
            return StorageError(f"session {old!r} or {new!r} changed meanwhile; nothing was changed: try again")

        if not self.cluster:

            def at_once() -> int:
                pipe = self.client.pipeline(transaction=True)
                try:
                    pipe.watch(okey, omkey, nkey, nmkey)
                    nonlocal remaining
                    items, meta, score, remaining = read(pipe)
                    write(pipe, items, meta)
                    pipe.zadd(self.index_key, {new: score})
                    if move:
                        pipe.delete(okey)
                        pipe.delete(omkey)
                        pipe.zrem(self.index_key, old)
                    pipe.execute()
                    return len(items)
                except redis.WatchError as exc:
                    raise changed(exc) from None
                finally:
                    pipe.reset()

            return self._run(at_once)

        items, meta, score, remaining = self._run(lambda: read(self.client))

        def write_new() -> None:
            pipe = self.client.pipeline(transaction=True)
            try:
                pipe.watch(nkey, nmkey)
                write(pipe, items, meta)
                pipe.execute()
            except redis.WatchError as exc:
                raise changed(exc) from None
            finally:
                pipe.reset()

        def drop_old() -> None:
            pipe = self.client.pipeline(transaction=True)
            try:
                pipe.watch(okey, omkey)
                if list(pipe.lrange(okey, 0, -1)) != items:
                    raise StorageError(f"session {old!r} changed during the rename: {new!r} is a copy, {old!r} is kept")
                pipe.multi()
                pipe.delete(okey)
                pipe.delete(omkey)
                pipe.execute()
            except redis.WatchError:
                raise StorageError(
                    f"session {old!r} changed during the rename: {new!r} is a copy, {old!r} is kept"
                ) from None
            finally:
                pipe.reset()

        self._run(write_new)
        self._run(lambda: self.client.zadd(self.index_key, {new: score}))
        if move:
            self._run(drop_old)
            self._run(lambda: self.client.zrem(self.index_key, old))
        return len(items)

    def pop_exchange(self, session_id: str) -> list[dict[str, Any]] | None:
        """Remove the newest question and its answer (oldest first), if the list ends with such a pair."""
        self._recent.pop(session_id, None)  # what this process remembers for offline reads is stale now
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
        self._recent.pop(session_id, None)
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
        """The most recently active session that still exists (expired ones are dropped from the index)."""
        while True:
            ids = [_s(m) for m in self._run(lambda: self.client.zrevrange(self.index_key, 0, 9))]
            if not ids:
                return None
            alive = self._alive(ids)
            stale = [sid for sid, ok in zip(ids, alive, strict=True) if not ok]
            for sid, ok in zip(ids, alive, strict=True):
                if ok:
                    return sid
            self._run(lambda: self.client.zrem(self.index_key, *stale))  # noqa: B023

    def _alive(self, session_ids: list[str]) -> list[bool]:
        def build(pipe: Any) -> None:
            for sid in session_ids:
                pipe.exists(self.list_key(sid))
                pipe.exists(self.meta_key(sid))

        found = self._run(lambda: self._pipe_exec(build))
        return [bool(found[2 * i] or found[2 * i + 1]) for i in range(len(session_ids))]

    def idle_sessions(self, cutoff: float) -> list[str]:
        """Indexed sessions whose last activity is before `cutoff` (epoch seconds), oldest first.

        Read from the index scores (ZRANGEBYSCORE); a session whose metadata says it was active since
        (its index step was lost on a cluster) is not counted as idle."""
        ids = [_s(m) for m in self._run(lambda: self.client.zrangebyscore(self.index_key, "-inf", f"({cutoff!r}"))]
        if not ids:
            return []

        def build(pipe: Any) -> None:
            for sid in ids:
                pipe.hget(self.meta_key(sid), "updated")

        updated = self._run(lambda: self._pipe_exec(build))
        last = [(_float(_s(raw)) if raw is not None else None) or 0.0 for raw in updated]
        return [sid for sid, when in zip(ids, last, strict=True) if when < cutoff]

    def delete_in_batches(self, session_ids: list[str], batch: int = 500) -> int:
        for start in range(0, len(session_ids), batch):
            self.delete(session_ids[start : start + batch])
        return len(session_ids)

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

    def _describe(self, ranked: list[tuple[str, float | None]], indexed: bool = True) -> list[SessionInfo | str]:
        """Rows for sessions (with their index score, if any), one pipelined round trip; a session that is
        gone gives its id instead. An unindexed session is only its list; an indexed one may be only meta."""

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
            if not length and (not meta or not indexed):
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
                    indexed=indexed,
                )
            )
        return described

    def unindexed_sessions(self, batch: int = 500) -> list[SessionInfo]:
        """Sessions in the LangChain layout (`<prefix><id>` lists) that chatcli's index does not list:
        written by other programs. SCAN MATCH on the prefix (glob characters escaped), TYPE list; on a
        cluster redis-py scans every primary. Ids chatcli cannot use (braces, control characters) are left out.
        """
        pattern = glob_escape(self.prefix) + "*"

        def scan() -> list[str]:
            found = []
            for raw in self.client.scan_iter(match=pattern, count=batch, _type="list"):
                try:
                    key = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                except UnicodeDecodeError:
                    continue
                sid = key[len(self.prefix) :]
                try:
                    validate_session_id(sid)
                except UsageError:
                    continue
                found.append(sid)
            return sorted(set(found))

        candidates = self._run(scan)
        rows: list[SessionInfo] = []
        for start in range(0, len(candidates), batch):
            ids = candidates[start : start + batch]
            scores = self._run(lambda: self._pipe_exec(lambda p: [p.zscore(self.index_key, sid) for sid in ids]))  # noqa: B023
            ids = [sid for sid, score in zip(ids, scores, strict=True) if score is None]
            if ids:  # a session gone since the scan gives its id: left out
                described = self._describe([(sid, None) for sid in ids], indexed=False)
                rows += [info for info in described if isinstance(info, SessionInfo)]
        rows.sort(key=lambda r: (-(r.updated or 0.0), r.id))
        return rows

    def adopt(self) -> list[str]:
        """Add unindexed sessions to the index (ZADD NX, idempotent), scored by their metadata's last
        activity when they have one, else now. Returns the adopted ids."""
        rows = self.unindexed_sessions()
        now = time.time()
        if rows:
            scores = {r.id: r.updated or now for r in rows}
            self._run(lambda: self.client.zadd(self.index_key, scores, nx=True))
        return [r.id for r in rows]

    def delete(self, session_ids: list[str]) -> None:
        """Delete sessions and their index rows. One non-transactional pipeline: on a cluster it spans
        slots (redis-py sends each command to its node; multi-key DEL is not allowed there)."""

        def build(pipe: Any) -> None:
            for sid in session_ids:
                pipe.delete(self.list_key(sid))
                pipe.delete(self.meta_key(sid))
            if session_ids:
                pipe.zrem(self.index_key, *session_ids)

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
