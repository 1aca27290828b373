"""An older spool whose in-place migration (ALTER TABLE ... ADD COLUMN owner) fails for a moment: the Spool must
not keep using a connection to a table without the column."""

import sqlite3

import pytest

from chatcli import spool as spool_module
from chatcli.records import TurnRecord
from chatcli.spool import Spool, SpoolError

OLD = (
    "CREATE TABLE turns (seq INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, prefix TEXT NOT NULL,"
    " session TEXT NOT NULL, turn TEXT NOT NULL, record TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',"
    " reason TEXT, added REAL NOT NULL, UNIQUE (target, prefix, turn));"
    "CREATE INDEX turns_by_target ON turns (target, prefix, state, seq);"
)


def record(turn: str) -> TurnRecord:
    return TurnRecord("s", [{"type": "human", "data": {"content": turn, "id": f"{turn}-0"}}], turn=turn)


def test_a_migration_that_found_the_spool_locked_is_tried_again(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    other = sqlite3.connect(home / "spool.db", isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.executescript(OLD)
    real_connect = sqlite3.connect
    monkeypatch.setattr(spool_module.sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "timeout": 0.2}))
    other.execute("BEGIN IMMEDIATE")  # another process writing (an older chatcli, the sqlite3 shell...)
    spool = Spool(home)
    with pytest.raises(SpoolError):
        spool.add("t", "p", record("t1"))  # cannot write now: fine, the caller says so
    other.execute("COMMIT")
    other.close()
    # the lock is gone: the spool works again, and a flush's question does not raise a bare sqlite3 error
    seq = spool.add("t", "p", record("t2"))
    assert spool.in_flight([seq]) == set()
    assert [r.turn for r in spool.rows()] == ["t2"]
