"""The spool as a layer around the session store: what `chat` and `ask` write through.

A turn is written to the spool first (durable), then to Redis, then dropped from the spool. While Redis does
not answer (or cannot take writes: out of memory, read-only, loading...) turns stay in the spool and a read
serves what this process and the spool know. Every command sends the turns waiting for its Redis first
(`flush`); a turn id makes sending twice a no-op, so nothing is lost and nothing doubled, whatever stops where.
"""

from __future__ import annotations

import contextlib
from typing import Any

from chatcli import events
from chatcli.errors import StorageUnavailable
from chatcli.records import TurnRecord
from chatcli.redis_errors import StorageRefused
from chatcli.spool import Spool, SpoolError
from chatcli.store import SessionStore, Window

FLUSH_BATCH = 200
RECENT_LIMIT = 2000


def flush(store: SessionStore, spool: Spool, emit: events.Emit, own: int | None = None) -> int:
    """Send the turns spooled for this Redis, in order; returns how many were written.

    `own`: the seq of the turn being saved now (written through the spool): it is not reported as flushed.

    A turn Redis refuses for good (a key of another type) is set aside and reported; a turn Redis cannot take
    now stays, and so do the later turns of its session (their order is kept). A lost connection raises
    StorageUnavailable with everything not yet confirmed still in the spool.
    """
    if not spool.exists():
        return 0
    written = told = messages = 0
    try:
        with spool.flushing():
            records = spool.pending(store.where, store.prefix)
            waiting = set()  # sessions with a turn Redis could not take now: their later turns wait too
            for start in range(0, len(records), FLUSH_BATCH):
                batch = [(seq, r) for seq, r in records[start : start + FLUSH_BATCH] if r.session not in waiting]
                busy = spool.in_flight([seq for seq, _r in batch if seq != own])
                results = store.append_turns([r for _seq, r in batch])
                confirmed = []
                for (seq, record), result in zip(batch, results, strict=True):
                    if isinstance(result, StorageRefused):
                        spool.set_aside(seq, str(result))
                        emit(events.SetAside(record.session, str(result), seq))
                    elif isinstance(result, Exception):
                        waiting.add(record.session)
                    else:
                        confirmed.append(seq)
                        if result and seq != own:
                            written += 1
                            if seq not in busy:  # another command's turn on its way: not one that waited
                                told += 1
                                messages += len(record.entries)
                spool.done(confirmed)
    finally:
        if told:  # also when the connection was lost halfway: what reached Redis is said
            emit(events.Flushed(store.where, told, messages))
    return written


def tell_waiting(store: SessionStore, spool: Spool, emit: events.Emit) -> None:
    """Say which other Redis servers have turns waiting in the spool, and what cannot be read."""
    for target, turns in spool.elsewhere(store.where):
        emit(events.WaitingElsewhere(target, turns))
    unreadable = spool.count("unreadable")
    if unreadable:
        emit(events.Unreadable(unreadable, spool.path))


class SpooledStore:
    """A SessionStore whose turn writes and window reads go through the spool; everything else is the store's."""

    def __init__(self, store: SessionStore, spool: Spool, emit: events.Emit = events.ignore, offline: bool = False):
        self.store = store
        self.spool = spool
        self.emit = emit
        self.offline = offline  # Redis did not answer when the command began (what is only a notice skips it)
        self._told: set[type] = set()
        self._recent: dict[str, list[dict[str, Any]]] = {}  # per session: the newest messages seen
        self._recent_meta: dict[str, dict[str, str]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _once(self, event: events.Event) -> None:
        if type(event) not in self._told:
            self._told.add(type(event))
            self.emit(event)

    def flush(self, own: int | None = None) -> int:
        written = flush(self.store, self.spool, self.emit, own)
        if written:
            self._told.clear()
        return written

    def window(self, session_id: str, size: int, budget: Any = None, most: int = 0) -> Window:
        """The store's window, after the spooled turns were sent; while Redis does not answer, the messages
        this process last read and wrote, else the spooled ones (`offline`)."""
        try:
            self.flush()
            window = self.store.window(session_id, size, budget, most)
        except StorageUnavailable:
            if session_id in self._recent:
                messages = self._recent[session_id]
            else:
                messages = self.spool.entries_for(self.store.where, self.store.prefix, session_id)
            self._once(events.OfflineRead(self.store.where, len(messages)))
            return Window(list(messages[-max(size, most) :]), dict(self._recent_meta.get(session_id, {})), 0, True)
        self._recent[session_id] = list(window.messages)
        self._recent_meta[session_id] = dict(window.meta)
        return window

    def save_turn(self, record: TurnRecord) -> bool:
        """Keep the turn in the spool, then write it to Redis. Returns True when Redis has it now, False when
        it waits in the spool. Raises SpoolError when the spool cannot be written and Redis does not take it."""
        if record.ttl is None:
            record.ttl = self.store.ttl
        if record.session in self._recent:
            self._recent[record.session] = [*self._recent[record.session], *record.entries][-RECENT_LIMIT:]
        try:
            seq = self.spool.add(self.store.where, self.store.prefix, record)
        except SpoolError as spool_error:
            # the spool cannot keep it (full disk): Redis is the only place left for it
            try:
                self.store.append_turn(record)
            except StorageUnavailable as exc:
                raise SpoolError(f"{exc}, and {spool_error}: this turn is not kept") from None
            self.emit(events.SpoolNotWritable(str(spool_error)))
            return True
        try:
            self.flush(own=seq)
        except StorageUnavailable:
            self._spooled(seq)
            return False
        except BaseException:  # refused credentials, an error answer, a full disk, Ctrl-C: the turn waits too
            with contextlib.suppress(SpoolError):
                self.spool.release(seq)
            raise
        if self.spool.row(seq) is not None:  # Redis answered but cannot take it now (out of memory, read-only...)
            self._spooled(seq)
            return False
        return True

    def _spooled(self, seq: int) -> None:
        """The turn waits in the spool: say so (once), and let whoever sends it later say it was sent."""
        self._once(events.Spooling(self.store.where, self.spool.path))
        with contextlib.suppress(SpoolError):  # only a notice depends on it
            self.spool.release(seq)

    def remove_turn(self, session_id: str, turn_id: str) -> Any:
        """The store's remove_turn, once the spool is sent: a spooled copy of the turn (one Redis took but did
        not confirm) would otherwise bring it back after it was removed."""
        self.flush()
        return self.store.remove_turn(session_id, turn_id)

    def set_meta(self, session_id: str, **fields: str) -> None:
        self.save_turn(TurnRecord(session_id, [], meta=dict(fields)))

    def append_turn(self, record: TurnRecord) -> bool:
        return self.save_turn(record)
