"""Sessions written as a whole: import (all or nothing), fork and rename (copy, then drop the original).

Read + write rather than COPY/RENAME, which need both keys in one slot; every step is a MULTI/EXEC under
WATCH on one session's slot, so a concurrent writer makes the command fail with nothing changed (or, on a
cluster rename that stops between steps, leaves a whole copy and the original).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from chatcli import exporting
from chatcli.errors import NotFoundError, StorageError, UsageError
from chatcli.store import SessionStore, decode_hash


def import_session(
    store: SessionStore,
    session_id: str,
    entries: list[dict[str, Any]],
    mode: str = "new",
    meta: dict[str, str] | None = None,
) -> None:
    """Write imported messages (oldest first) all-or-nothing: one MULTI/EXEC on the session's slot.

    mode "new" refuses an existing session (checked under WATCH, so a concurrent writer cannot slip in),
    "append" adds after the existing messages, "replace" drops the old messages and metadata first.
    Messages are stored as given (an export imported again is the same bytes). The index row is part of the
    MULTI/EXEC on a single node; on a cluster it is the separate, idempotent ZADD after it.
    """
    now = time.time()
    key, meta_key, turns_key = store.keys.of_session(session_id)
    encoded = [exporting.encode_entry(e) for e in entries]
    # an export's header brings the session's own times: its place in the list of sessions comes back too
    score = float((meta or {}).get("updated") or now)

    def attempt() -> None:
        pipe = store.client.pipeline(transaction=True)
        try:
            pipe.watch(key, meta_key)
            if mode == "new" and (pipe.exists(key) or pipe.exists(meta_key)):
                raise UsageError(
                    f"session {session_id!r} exists: pass --append to add to it or --replace to overwrite it"
                )
            pipe.multi()
            if mode == "replace":
                for k in (key, meta_key, turns_key):
                    pipe.delete(k)
            for start in range(0, len(encoded), 1000):
                pipe.lpush(key, *encoded[start : start + 1000])
            pipe.hsetnx(meta_key, "created", repr(now))
            pipe.hset(meta_key, mapping={"updated": repr(now), **(meta or {})})
            store.expire_in(pipe, session_id)
            if not store.cluster:
                pipe.zadd(store.keys.index, {session_id: score})
            pipe.execute()
        except redis.WatchError:
            raise StorageError(
                f"session {session_id!r} changed while importing; nothing was written: run the import again"
            ) from None
        finally:
            pipe.reset()

    store.run(attempt)
    if store.cluster:
        store.run(store.client.zadd, store.keys.index, {session_id: score})


def copy_session(store: SessionStore, old: str, new: str, move: bool = False) -> int:
    """Fork (copy) or, with `move`, rename a session: messages, metadata, turn ids and its index row.

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
    okey, omkey, otkey = store.keys.of_session(old)
    nkey, nmkey, ntkey = store.keys.of_session(new)

    @dataclass
    class Read:
        items: list[Any]
        meta: dict[str, str]
        turns: list[Any]
        score: float
        remaining: int  # ms; -1: no TTL

    def read(reader: Any) -> Read:
        items = list(reader.lrange(okey, 0, -1))
        meta = decode_hash(reader.hgetall(omkey))
        if not items and not meta:
            raise NotFoundError(f"no session named {old!r}")
        turns = list(reader.smembers(otkey))
        score = store.client.zscore(store.keys.index, old)
        remaining = int(reader.pttl(okey if items else omkey))
        return Read(items, meta, turns, float(score) if score is not None and move else now, remaining)

    def write(pipe: Any, got: Read) -> None:
        if pipe.exists(nkey) or pipe.exists(nmkey):
            raise UsageError(f"session {new!r} exists: choose another id or delete it first")
        pipe.multi()
        pipe.delete(ntkey)
        for start in range(0, len(got.items), 1000):
            pipe.rpush(nkey, *got.items[start : start + 1000])  # same order: newest first
        if got.turns:
            pipe.sadd(ntkey, *got.turns)
        new_meta = dict(got.meta) if move else {**got.meta, "created": repr(now), "forked_from": old}
        new_meta.setdefault("updated", repr(now))
        if not move:
            new_meta["updated"] = repr(now)
        pipe.hset(nmkey, mapping=new_meta)
        if got.remaining > 0:  # the copy expires when the original would have
            for key in (nkey, nmkey, ntkey):
                pipe.pexpire(key, got.remaining)
        else:
            store.expire_in(pipe, new)

    def changed() -> StorageError:
        return StorageError(f"session {old!r} or {new!r} changed meanwhile; nothing was changed: try again")

    if not store.cluster:

        def at_once() -> int:
            pipe = store.client.pipeline(transaction=True)
            try:
                pipe.watch(okey, omkey, otkey, nkey, nmkey)
                got = read(pipe)
                write(pipe, got)
                pipe.zadd(store.keys.index, {new: got.score})
                if move:
                    for key in (okey, omkey, otkey):
                        pipe.delete(key)
                    pipe.zrem(store.keys.index, old)
                pipe.execute()
                return len(got.items)
            except redis.WatchError:
                raise changed() from None
            finally:
                pipe.reset()

        return int(store.run(at_once))

    got = store.run(lambda: read(store.client))
    kept = StorageError(f"session {old!r} changed during the rename: {new!r} is a copy, {old!r} is kept")

    def write_new() -> None:
        pipe = store.client.pipeline(transaction=True)
        try:
            pipe.watch(nkey, nmkey)
            write(pipe, got)
            pipe.execute()
        except redis.WatchError:
            raise changed() from None
        finally:
            pipe.reset()

    def drop_old() -> None:
        pipe = store.client.pipeline(transaction=True)
        try:
            pipe.watch(okey, omkey)
            if list(pipe.lrange(okey, 0, -1)) != got.items:
                raise kept
            pipe.multi()
            for key in (okey, omkey, otkey):
                pipe.delete(key)
            pipe.execute()
        except redis.WatchError:
            raise kept from None
        finally:
            pipe.reset()

    store.run(write_new)
    store.run(store.client.zadd, store.keys.index, {new: got.score})
    if move:
        store.run(drop_old)
        store.run(store.client.zrem, store.keys.index, old)
    return len(got.items)
