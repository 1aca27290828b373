"""The sessions of a key prefix: the index (a sorted set by last activity), listing, adoption, pruning.

Index rows whose session is gone (expired, deleted by another program) are dropped as they are met; sessions
other programs wrote (LangChain's RedisChatMessageHistory) are found by SCAN and adopted into the index, by
`sessions adopt` and by the first page of `sessions list` (`notice_unindexed`), scored by when their list
was last touched (OBJECT IDLETIME), so they take their place by activity among chatcli's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.cluster import RedisCluster

from chatcli import contents, exporting
from chatcli.errors import StorageError, UsageError
from chatcli.keys import validate_session_id
from chatcli.store import SessionStore, as_text, decode_hash


@dataclass
class SessionInfo:
    id: str
    messages: int
    created: float | None
    updated: float | None
    title: str
    meta: dict[str, str] = field(default_factory=dict)
    indexed: bool = True
    last: str = ""  # the newest message, on one line (a snippet: the table cuts it to fit)


# KEYS: list, meta, turn ids. What is left of a session whose list is gone (expired, or deleted by another
# program), deleted unless a writer brought the list back meanwhile. Returns 1 when it deleted.
_FORGET_GHOST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""


# `sessions list` scans for sessions other programs wrote when the database holds at most this many keys
# (every primary's, on a cluster): SCAN walks every key, ~100 000 a second in COUNT-500 steps on loopback.
NOTICE_MAX_KEYS = 100_000


def is_ghost(length: int, has_turns: bool) -> bool:
    """What is left of a session whose list is gone: the ids of turns that added messages say it held
    messages chatcli wrote, and chatcli's own ways of emptying a session (/clear, /undo of the last turn)
    delete those ids with them. A session that is only metadata (a /title or /system before the first
    question, a /clear) has none: it is kept."""
    return not length and has_turns


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SessionCatalog:
    def __init__(self, store: SessionStore):
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.run = store.run
        self._forget_script = self.client.register_script(_FORGET_GHOST)

    def session_count(self) -> int:
        return int(self.run(self.client.zcard, self.keys.index))

    def newest(self, count: int) -> list[str]:
        """The ids of the `count` most recently active indexed sessions, newest first."""
        return [as_text(m) for m in self.run(self.client.zrevrange, self.keys.index, 0, count - 1)] if count else []

    def describe_ids(self, session_ids: list[str], batch: int = 500) -> list[SessionInfo]:
        """Rows for these sessions, in the order given (those gone meanwhile are left out)."""
        rows: list[SessionInfo] = []
        for start in range(0, len(session_ids), batch):
            described = self._describe([(sid, None) for sid in session_ids[start : start + batch]])
            rows += [info for info in described if isinstance(info, SessionInfo)]
        return rows

    def most_recent(self) -> str | None:
        """The most recently active session that still exists (expired ones are dropped from the index)."""
        while True:
            ids = [as_text(m) for m in self.run(self.client.zrevrange, self.keys.index, 0, 9)]
            if not ids:
                return None
            alive = self._alive(ids)
            ghosts = [sid for sid, ok in zip(ids, alive, strict=True) if ok is None]
            if ghosts:
                self.drop(ghosts)
                self.run(self.client.zrem, self.keys.index, *ghosts)
            for sid, ok in zip(ids, alive, strict=True):
                if ok:
                    return sid
            self.run(self.client.zrem, self.keys.index, *ids)

    def _alive(self, session_ids: list[str]) -> list[bool | None]:
        """Per session: True when it exists, False when nothing is left, None when it is a ghost (is_ghost)."""

        def build(pipe: Any) -> None:
            for sid in session_ids:
                for key in self.keys.of_session(sid):
                    pipe.exists(key)

        found = self.store.pipeline_execute(build)
        states: list[bool | None] = []
        for i in range(len(session_ids)):
            length, has_meta, has_turns = found[3 * i : 3 * i + 3]
            states.append(None if is_ghost(length, bool(has_turns)) else bool(length or has_meta))
        return states

    def drop(self, session_ids: list[str]) -> None:
        """Delete what is left of ghost sessions (their metadata and turn ids), each only if its list is still
        gone: one script per session, in its slot."""
        for sid in session_ids:
            self.run(self._forget_script, keys=list(self.keys.of_session(sid)))

    def idle_sessions(self, cutoff: float) -> list[str]:
        """Indexed sessions whose last activity is before `cutoff` (epoch seconds), oldest first.

        Read from the index scores (ZRANGEBYSCORE); a session whose metadata says it was active since
        (its index step was lost on a cluster) is not counted as idle."""
        ids = [as_text(m) for m in self.run(self.client.zrangebyscore, self.keys.index, "-inf", f"({cutoff!r}")]
        if not ids:
            return []
        updated = self.store.pipeline_execute(lambda p: [p.hget(self.keys.meta(sid), "updated") for sid in ids])
        last = [(_float(as_text(raw)) if raw is not None else None) or 0.0 for raw in updated]
        return [sid for sid, when in zip(ids, last, strict=True) if when < cutoff]

    def delete_in_batches(self, session_ids: list[str], batch: int = 500) -> int:
        for start in range(0, len(session_ids), batch):
            self.store.delete(session_ids[start : start + batch])
        return len(session_ids)

    def list_sessions(self, limit: int = 50, offset: int = 0) -> tuple[list[SessionInfo], int | None]:
        """One page of the index, newest activity first, and the offset of the next page (or None).

        Index entries whose session is gone (expired, or deleted by another program) are skipped, the
        page is filled from further entries, and they are removed from the index afterwards; the next
        offset accounts for that removal, so no session moves across a page boundary.
        """
        rows: list[SessionInfo] = []
        stale: list[str] = []
        ghosts: list[str] = []
        position = offset
        while len(rows) < limit:
            need = limit - len(rows)
            ranked = self.run(self.client.zrevrange, self.keys.index, position, position + need - 1, withscores=True)
            if not ranked:
                break
            position += len(ranked)
            for info in self._describe([(as_text(member), float(score)) for member, score in ranked], ghosts):
                if isinstance(info, SessionInfo):
                    rows.append(info)
                else:
                    stale.append(info)
        total = self.session_count()
        self.drop(ghosts)
        if stale:
            self.run(self.client.zrem, self.keys.index, *stale)
            total -= len(stale)
            position -= len(stale)
        return rows, (position if position < total else None)

    def _describe(
        self, ranked: list[tuple[str, float | None]], ghosts: list[str] | None = None, indexed: bool = True
    ) -> list[SessionInfo | str]:
        """Rows for sessions (with their index score, if any), one pipelined round trip; a session that is
        gone gives its id instead. An unindexed session is only its list; an indexed one may be only meta,
        unless it is a ghost (is_ghost): then its id is also added to `ghosts`, for `drop`."""

        def build(pipe: Any) -> None:
            for sid, _score in ranked:
                pipe.hgetall(self.keys.meta(sid))
                pipe.llen(self.keys.session(sid))
                pipe.lindex(self.keys.session(sid), -1)
                pipe.lindex(self.keys.session(sid), 0)
                pipe.exists(self.keys.turns(sid))

        results = self.store.pipeline_execute(build)
        described: list[SessionInfo | str] = []
        for i, (sid, score) in enumerate(ranked):
            raw_meta, length, oldest, newest, has_turns = results[5 * i : 5 * i + 5]
            meta = decode_hash(raw_meta)
            if is_ghost(length, bool(has_turns)) and ghosts is not None:
                ghosts.append(sid)
            if not length and (not meta or not indexed or has_turns):
                described.append(sid)
                continue
            first = exporting.parse_entry(oldest) if oldest is not None else None
            last = exporting.parse_entry(newest) if newest is not None else None
            described.append(
                SessionInfo(
                    id=sid,
                    messages=int(length),
                    created=_float(meta.get("created")),
                    updated=_float(meta.get("updated")) or score,
                    title=meta.get("title") or exporting.title_from(first),
                    meta=meta,
                    indexed=indexed,
                    last=contents.snippet(last) if last is not None else "",
                )
            )
        return described

    def unindexed_ids(self, batch: int = 500) -> list[str]:
        """Ids of the sessions in the LangChain layout (`<prefix><id>` lists) that chatcli's index does not list:
        written by other programs. SCAN MATCH on the prefix (glob characters escaped), TYPE list; on a
        cluster redis-py scans every primary. Ids chatcli cannot use (braces, control characters) are left out.
        Sorted by id."""

        def scan() -> list[str]:
            found = []
            for raw in self.client.scan_iter(match=self.keys.sessions_pattern, count=batch, _type="list"):
                try:
                    key = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                except UnicodeDecodeError:
                    continue
                sid = self.keys.session_id_of(key)
                try:
                    found.append(validate_session_id(sid or ""))
                except UsageError:
                    continue
            return sorted(set(found))

        candidates = self.run(scan)
        unindexed: list[str] = []
        for start in range(0, len(candidates), batch):
            ids = candidates[start : start + batch]
            scores = self.store.pipeline_execute(lambda p: [p.zscore(self.keys.index, sid) for sid in ids])  # noqa: B023
            unindexed += [sid for sid, score in zip(ids, scores, strict=True) if score is None]
        return unindexed

    def unindexed_sessions(self, batch: int = 500) -> list[SessionInfo]:
        """Rows for the sessions other programs wrote (unindexed_ids), most recently active first."""
        candidates = self.unindexed_ids(batch)
        rows: list[SessionInfo] = []
        for start in range(0, len(candidates), batch):
            ids = candidates[start : start + batch]
            touched = self._last_touched(ids)  # before _describe reads the lists
            # a session gone since the scan gives its id: left out
            described = self._describe([(sid, None) for sid in ids], indexed=False)
            for info, when in zip(described, touched, strict=True):
                if isinstance(info, SessionInfo):
                    info.updated = info.updated or when
                    rows.append(info)
        rows.sort(key=lambda r: (-(r.updated or 0.0), r.id))
        return rows

    def _last_touched(self, session_ids: list[str]) -> list[float | None]:
        """When each session's list was last written or read (now less OBJECT IDLETIME, to the second): the
        activity of a session that has no chatcli metadata. None where the server does not track it (an LFU
        maxmemory policy answers an error). SCAN and ZSCORE leave it alone; LLEN and LINDEX reset it."""
        now = time.time()

        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.object("idletime", self.keys.session(sid))
            return list(pipe.execute(raise_on_error=False))

        return [now - idle if isinstance(idle, int) else None for idle in self.run(execute)]

    def notice_unindexed(self) -> list[str] | None:
        """Adopt the sessions other programs wrote, when the database is small enough to SCAN on every
        listing (DBSIZE, of every primary on a cluster). The adopted ids, or None when it is too large.
        Best effort: where Redis refuses the write (a read-only replica, a user without ZADD) the listing goes
        on with the index as it is."""
        if self.store.cluster:
            keys = self.run(self.client.dbsize, target_nodes=RedisCluster.PRIMARIES)
        else:
            keys = self.run(self.client.dbsize)
        if int(keys) > NOTICE_MAX_KEYS:
            return None
        try:
            return self.adopt()
        except StorageError:
            return []

    def adopt(self) -> list[str]:
        """Add unindexed sessions to the index (ZADD NX, idempotent), scored by their metadata's last
        activity when they have one, else when their list was last touched, else now. Returns the adopted ids."""
        rows = self.unindexed_sessions()
        now = time.time()
        if rows:
            self.run(self.client.zadd, self.keys.index, {r.id: r.updated or now for r in rows}, nx=True)
        return [r.id for r in rows]

    def clear(self, batch: int = 500) -> int:
        """Delete every indexed session (and nothing else). Returns how many were deleted."""
        deleted = 0
        while True:
            ids = [as_text(m) for m in self.run(self.client.zrange, self.keys.index, 0, batch - 1)]
            if not ids:
                return deleted
            self.store.delete(ids)
            deleted += len(ids)
