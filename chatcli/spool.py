"""The local spool: every turn is kept on disk until Redis has it.

`CHATCLI_HOME/spool.db` is a SQLite database (WAL, synchronous=FULL, mode 0600). A turn is added before it
is sent to Redis and removed once Redis has it, so a crash, a kill or a Redis that does not answer loses
nothing: the next command sends what is left, and the turn id makes a second send a no-op in Redis.
SQLite gives atomic, durable appends and never glues two records together on a full disk or a torn write.

Rows: seq (order), target (the redacted Redis URL or the embedded socket: never a secret), prefix, session,
turn id, the record (JSON, chatcli.records.TurnRecord), owner (the pid of the process sending it now; NULL once
that process gave up on Redis, so another process that sends it says so), state:
  pending     waiting for Redis
  set_aside   Redis refused it for good (a key of another type); `chatcli spool retry|export|drop`
  unreadable  a record that cannot be parsed (from an old spool.jsonl, say): kept, listed, never sent
Nothing is deleted that was not written to Redis or dropped by the user.

No Redis and no LangChain here. An older chatcli's spool.jsonl is taken over on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatcli.errors import StorageError
from chatcli.files import private_dir
from chatcli.records import TurnRecord

SPOOL_NAME = "spool.db"
LEGACY_NAME = "spool.jsonl"
LEGACY_REJECTED = "spool.rejected.jsonl"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    prefix TEXT NOT NULL,
    session TEXT NOT NULL,
    turn TEXT NOT NULL,
    record TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    added REAL NOT NULL,
    owner INTEGER,
    UNIQUE (target, prefix, turn)
);
CREATE INDEX IF NOT EXISTS turns_by_target ON turns (target, prefix, state, seq);
"""


class SpoolError(StorageError):
    """The spool cannot be written (full disk, read-only CHATCLI_HOME): the turn is not kept."""


@dataclass
class Row:
    seq: int
    target: str
    prefix: str
    session: str
    turn: str
    state: str
    reason: str | None
    added: float
    record: TurnRecord | None  # None when unreadable
    text: str

    @property
    def messages(self) -> int:
        return len(self.record.entries) if self.record else 0


class Spool:
    def __init__(self, home: Path):
        self.home = home
        self.path = home / SPOOL_NAME
        self.lock_path = home / "spool.lock"
        self._db: sqlite3.Connection | None = None
        # one connection, used from whichever thread saves a turn (LangChain runs RunnableWithMessageHistory's
        # save in a worker thread when the chain is invoked): every use of it holds this lock
        self._lock = threading.RLock()

    def exists(self) -> bool:
        return self.path.exists() or (self.home / LEGACY_NAME).exists()

    # -- the database ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        private_dir(self.home)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            old_umask = os.umask(0o077)  # the -wal and -shm files too
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                try:
                    db.executescript(_SCHEMA)
                    if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(turns)")}:
                        try:
                            db.execute("ALTER TABLE turns ADD COLUMN owner INTEGER")
                        except sqlite3.OperationalError as exc:
                            # another process added it first; anything else (locked, disk full) must not leave
                            # this process with a connection to a table its INSERTs do not fit: retried next time
                            if "duplicate column" not in str(exc):
                                raise
                except BaseException:
                    db.close()
                    raise
            finally:
                os.umask(old_umask)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {_reason(exc)}") from None
        self._db = db
        self._take_over_legacy(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise SpoolError(f"cannot write the spool {self.path}: {_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def flushing(self) -> Iterator[None]:
        """One flush at a time across processes (adds go on meanwhile)."""
        private_dir(self.home)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- turns -------------------------------------------------------------------------------------
    def add(self, target: str, prefix: str, record: TurnRecord) -> int:
        """Keep a turn; durable (fsynced) when this returns. Returns its seq. Adding it again is a no-op."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO turns (target, prefix, session, turn, record, added, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (target, prefix, record.session, record.turn, record.to_json(), time.time(), os.getpid()),
            )
            row = db.execute(
                "SELECT seq FROM turns WHERE target = ? AND prefix = ? AND turn = ?", (target, prefix, record.turn)
            ).fetchone()
        return int(row[0])

    def release(self, seq: int) -> None:
        """This process gave up sending the turn for now: whoever sends it later says it was spooled."""
        with self._transaction() as db:
            db.execute("UPDATE turns SET owner = NULL WHERE seq = ?", (seq,))

    def in_flight(self, seqs: list[int]) -> set[int]:
        """Those of `seqs` another live process added and is sending right now: a flush that sends them first
        sends nothing that waited (it is no news to anyone that they reached Redis)."""
        if not seqs:
            return set()
        try:
            with self._lock:
                marks = ",".join("?" * len(seqs))
                query = f"SELECT seq, owner, added FROM turns WHERE owner IS NOT NULL AND seq IN ({marks})"
                owned = self._connect().execute(query, seqs).fetchall()
        except (sqlite3.Error, SpoolError):  # only a notice depends on it: never stop a flush for it
            return set()
        return {int(seq) for seq, owner, added in owned if owner != os.getpid() and _alive(int(owner), added)}

    def done(self, seqs: list[int]) -> None:
        """Redis has these turns: forget them (one transaction)."""
        if not seqs:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM turns WHERE seq = ?", [(s,) for s in seqs])

    def pending(self, target: str, prefix: str) -> list[tuple[int, TurnRecord]]:
        """The turns waiting for this Redis, in order. Records that cannot be read are marked unreadable."""
        rows = self._rows("target = ? AND prefix = ? AND state = 'pending'", (target, prefix))
        unreadable = [r for r in rows if r.record is None]
        if unreadable:
            with self._transaction() as db:
                db.executemany(
                    "UPDATE turns SET state = 'unreadable', reason = ? WHERE seq = ?",
                    [(r.reason or "unreadable", r.seq) for r in unreadable],
                )
        return [(r.seq, r.record) for r in rows if r.record is not None]

    def entries_for(self, target: str, prefix: str, session: str) -> list[dict[str, Any]]:
        """The spooled messages of one session, oldest first."""
        rows = self._rows("target = ? AND prefix = ? AND session = ? AND state = 'pending'", (target, prefix, session))
        return [e for r in rows if r.record is not None for e in r.record.entries]

    def set_aside(self, seq: int, reason: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE turns SET state = 'set_aside', reason = ? WHERE seq = ?", (reason, seq))

    def elsewhere(self, target: str) -> list[tuple[str, int]]:
        """Other Redis servers with turns waiting for them: (target, turns)."""
        if not self.exists():
            return []
        with self._lock:
            found = (
                self._connect()
                .execute(
                    "SELECT target, COUNT(*) FROM turns WHERE target != ? AND state = 'pending' "
                    "GROUP BY target ORDER BY target",
                    (target,),
                )
                .fetchall()
            )
        return [(str(t), int(n)) for t, n in found]

    def count(self, state: str) -> int:
        if not self.exists():
            return 0
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM turns WHERE state = ?", (state,)).fetchone()[0])

    def rows(self) -> list[Row]:
        """Every row, in order (for `chatcli spool list`)."""
        return self._rows("1 = 1", ())

    def row(self, seq: int) -> Row | None:
        found = self._rows("seq = ?", (seq,))
        return found[0] if found else None

    def retarget(self, seqs: list[int], target: str, prefix: str) -> int:
        """Send these turns to another Redis (and prefix): they become pending for it. Returns how many."""
        with self._transaction() as db:
            changed = 0
            for seq in seqs:
                cursor = db.execute(
                    "UPDATE OR IGNORE turns SET target = ?, prefix = ?, state = 'pending', reason = NULL "
                    "WHERE seq = ? AND state != 'unreadable'",
                    (target, prefix, seq),
                )
                changed += cursor.rowcount
            return changed

    def drop(self, seqs: list[int]) -> int:
        with self._transaction() as db:
            return sum(db.execute("DELETE FROM turns WHERE seq = ?", (s,)).rowcount for s in seqs)

    def _rows(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        if not self.exists():  # nothing to read: do not create the database for it (the disk may be full)
            return []
        try:
            with self._lock:
                raw = (
                    self._connect()
                    .execute(
                        "SELECT seq, target, prefix, session, turn, state, reason, added, record FROM turns "
                        f"WHERE {where} ORDER BY seq",
                        params,
                    )
                    .fetchall()
                )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read the spool {self.path}: {_reason(exc)}") from None
        rows = []
        for seq, target, prefix, session, turn, state, reason, added, text in raw:
            try:
                record: TurnRecord | None = TurnRecord.from_json(text)
            except ValueError as exc:
                record, reason = None, reason or f"unreadable record: {exc}"
            rows.append(Row(seq, target, prefix, session, turn, state, reason, added, record, text))
        return rows

    # -- an older chatcli's spool.jsonl ------------------------------------------------------------
    def _take_over_legacy(self, db: sqlite3.Connection) -> None:
        """Move the records of spool.jsonl (and spool.rejected.jsonl) into the database, then remove the files.

        Each line gets a turn id from its own bytes, so a take-over interrupted before the file is removed
        does not add it twice; a line that cannot be read is kept as an unreadable row."""
        for name, state in ((LEGACY_NAME, "pending"), (LEGACY_REJECTED, "set_aside")):
            path = self.home / name
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SpoolError(f"cannot read the old spool {path}: {_reason(exc)}") from None
            values = []
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                turn = "legacy-" + hashlib.sha256(line).hexdigest()[:32]
                target, prefix, session, text, row_state, reason = _legacy_record(line, turn)
                values.append(
                    (target, prefix, session, turn, text, state if row_state == "pending" else row_state, reason)
                )
                if reason:
                    values[-1] = (*values[-1][:6], f"{name} line {number}: {reason}")
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT OR IGNORE INTO turns (target, prefix, session, turn, record, state, reason, added) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*v, time.time()) for v in values],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise SpoolError(f"cannot move {path} into the spool {self.path}: {_reason(exc)}") from None
            path.unlink(missing_ok=True)


def _legacy_record(line: bytes, turn: str) -> tuple[str, str, str, str, str, str | None]:
    """(target, prefix, session, record text, state, reason) of one line of an old spool.jsonl."""
    text = line.decode("utf-8", "replace")
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        target, prefix, session = raw["target"], raw["prefix"], raw["session"]
        if not all(isinstance(v, str) for v in (target, prefix, session)):
            raise ValueError("target, prefix or session is not text")
        converted = json.dumps(
            {
                "session": session,
                "turn": turn,
                "entries": raw.get("entries"),
                "meta": raw.get("meta") or {},
                "incr": raw.get("incr") or {},
                "ttl": raw.get("ttl"),
                "at": raw.get("ts") or 0.0,
            },
            ensure_ascii=False,
        )
        TurnRecord.from_json(converted)  # validates it
    except RecursionError:
        return "?", "?", "?", text, "unreadable", "unreadable record: nested too deeply"
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        return "?", "?", "?", text, "unreadable", f"unreadable record: {type(exc).__name__}: {exc}"[:300]
    return target, prefix, session, converted, "pending", None


def _alive(pid: int, added: float) -> bool:
    """Whether the process that added a row at `added` (its owner) still runs: a process with its pid that
    started later (the pid reused after a crash or a reboot), or that is another user's (this user's spool is
    0600 in a 0700 directory), is not it."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    started = _started(pid)
    return started is None or started <= added + 2.0  # /proc/stat's btime is whole seconds


def _started(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), where /proc tells (Linux); None elsewhere."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
        for line in Path("/proc/stat").read_bytes().splitlines():
            if line.startswith(b"btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
