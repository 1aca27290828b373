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


def test_a_pid_reused_since_the_turn_was_added_is_not_its_owner(tmp_path):
    """The owner of a row died without releasing it (kill -9, power cut, reboot); its pid now belongs to another
    process, started after the row was added. The turn waited: a flush must tell of it."""
    import subprocess
    import time

    home = tmp_path / "home"
    spool = Spool(home)
    seq = spool.add("t", "p", record("t1"))
    newcomer = subprocess.Popen(["sleep", "30"])  # stands for whatever got the dead owner's pid
    try:
        with sqlite3.connect(home / "spool.db") as db:
            # added 10 s before the newcomer started (a sleep would do, slowly)
            db.execute("UPDATE turns SET owner = ?, added = ? WHERE seq = ?", (newcomer.pid, time.time() - 10, seq))
        assert spool.in_flight([seq]) == set()
    finally:
        newcomer.kill()
        newcomer.wait()


def test_a_pid_of_another_user_is_not_the_owner(tmp_path, monkeypatch):
    """spool.db is 0600 in a 0700 directory: a process of another user cannot have added a row to it."""
    home = tmp_path / "home"
    spool = Spool(home)
    seq = spool.add("t", "p", record("t1"))
    with sqlite3.connect(home / "spool.db") as db:
        db.execute("UPDATE turns SET owner = 1 WHERE seq = ?", (seq,))

    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(spool_module.os, "kill", kill)
    assert spool.in_flight([seq]) == set()


def test_the_spool_is_private_and_leaves_the_process_umask_alone(tmp_path):
    import os
    import stat

    home = tmp_path / "home"
    before = os.umask(0o022)
    try:
        Spool(home).add("t", "p", record("t1"))
        assert os.umask(0o022) == 0o022  # what the rest of the command creates keeps the user's own mode
    finally:
        os.umask(before)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in home.iterdir() if p.name.startswith("spool.db")}
    assert modes and set(modes.values()) == {0o600}, modes  # the database and its -wal/-shm files
