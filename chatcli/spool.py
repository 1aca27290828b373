"""The local spool: turns made while Redis does not answer, kept on disk until it does.

`CHATCLI_HOME/spool.jsonl` is append-only JSON Lines (mode 0600, each record fsynced): one record per
write that could not reach Redis, in the order they were made:

    {"target": "<redacted Redis URL or embedded socket>", "prefix": "message_store:", "session": ID,
     "entries": [message dicts, oldest first], "meta": {...}, "incr": {...}, "ts": epoch seconds}

A flush writes the records of one target, in order, and keeps the rest (other Redis servers, or what
failed) for later. Every read and write of the spool holds an exclusive lock (`spool.lock`), so two chatcli
processes never flush the same record twice. Nothing secret is written: the target is the redacted URL.
No Redis and no LangChain here: the store hands in the function that writes a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatcli.files import private_dir

SPOOL_NAME = "spool.jsonl"


@dataclass
class Record:
    target: str
    prefix: str
    session: str
    entries: list[dict[str, Any]]
    meta: dict[str, str] = field(default_factory=dict)
    incr: dict[str, int] = field(default_factory=dict)
    ts: float = 0.0
    ttl: int | None = None  # the session TTL in force when the turn was made

    def to_json(self) -> str:
        return json.dumps(
            {
                "target": self.target,
                "prefix": self.prefix,
                "session": self.session,
                "entries": self.entries,
                "meta": self.meta,
                "incr": self.incr,
                "ts": self.ts,
                "ttl": self.ttl,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> Record | None:
        try:
            raw = json.loads(line)
            return cls(
                target=str(raw["target"]),
                prefix=str(raw["prefix"]),
                session=str(raw["session"]),
                entries=list(raw["entries"]),
                meta=dict(raw.get("meta") or {}),
                incr=dict(raw.get("incr") or {}),
                ts=float(raw.get("ts") or 0.0),
                ttl=int(raw["ttl"]) if raw.get("ttl") else None,
            )
        except (ValueError, KeyError, TypeError):
            return None


class Spool:
    def __init__(self, home: Path):
        self.home = home
        self.path = home / SPOOL_NAME
        self.lock_path = home / "spool.lock"
        self.rejected_path = home / "spool.rejected.jsonl"
        self.rejected: list[tuple[Record, Exception]] = []  # set aside by flush(), for the caller to report

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.home)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def add(self, record: Record) -> None:
        """Append one record and fsync it before returning."""
        record.ts = record.ts or time.time()
        data = (record.to_json() + "\n").encode("utf-8")
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read(self) -> tuple[list[Record], int]:
        """Every record, in order, and how many lines were unreadable (a torn last line after a crash)."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return [], 0
        records, bad = [], 0
        for line in lines:
            if not line.strip():
                continue
            record = Record.from_json(line)
            if record is None:
                bad += 1
            else:
                records.append(record)
        return records, bad

    def entries_for(self, target: str, prefix: str, session: str) -> list[dict[str, Any]]:
        """The spooled messages of one session, oldest first."""
        if not self.path.exists():
            return []
        with self._locked():
            records, _bad = self._read()
        return [e for r in records if (r.target, r.prefix, r.session) == (target, prefix, session) for e in r.entries]

    def flush(
        self,
        target: str,
        prefix: str,
        write: Callable[[Record], None],
        refused: Callable[[Exception], bool] = lambda _exc: False,
    ) -> tuple[int, Exception | None]:
        """Write this target's records in order with `write`: how many messages were written, and what
        stopped the flush (None when nothing did).

        A record is removed from the spool only after `write` returned. If `write` raises, that record and
        every later one stay (order is kept), unless `refused(exc)` says Redis will never take it (a key of
        another type, say): then it moves to `spool.rejected.jsonl`, is reported, and the flush goes on.
        Re-trying it on every command would re-apply the parts of its transaction Redis did run.
        """
        if not self.path.exists():
            return 0, None
        with self._locked():
            records, _bad = self._read()
            keep: list[Record] = []
            written = 0
            failure: Exception | None = None
            for record in records:
                if failure is not None or (record.target, record.prefix) != (target, prefix):
                    keep.append(record)
                    continue
                try:
                    write(record)
                except Exception as exc:
                    if refused(exc):
                        self._reject(record)
                        self.rejected.append((record, exc))
                        continue
                    failure = exc
                    keep.append(record)
                    continue
                written += len(record.entries)
            if written or failure is None or len(keep) < len(records):
                self._rewrite(keep)
            return written, failure

    def _reject(self, record: Record) -> None:
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (record.to_json() + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rewrite(self, records: list[Record]) -> None:
        if not records:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(r.to_json() + "\n" for r in records).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
