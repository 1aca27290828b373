"""A command whose turn did not reach Redis for another reason than an unavailable Redis (credentials refused,
an error answer, a full disk on done()) keeps running (the REPL never dies on one bad turn): its turn waits in
the spool, and whoever sends it later must say so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatcli.errors import StorageError
from chatcli.store import SessionStore
from tests.conftest import start_redis
from tests.durable import exchange_record, layered

ASK = """
import sys
from pathlib import Path
from chatcli.spool import Spool
print(sorted(Spool(Path(sys.argv[1])).in_flight([int(sys.argv[2])])))
"""


class RefusingStore(SessionStore):
    refuse = True

    def append_turns(self, records):
        if self.refuse:
            raise StorageError("Redis at x refused the credentials")
        return super().append_turns(records)


@pytest.fixture
def server(tmp_path):
    proc = start_redis(tmp_path / "redis")
    yield proc
    proc.stop()


def test_a_turn_that_failed_otherwise_is_released_too(server, tmp_path):
    home = tmp_path / "home"
    layer, _store, _said = layered(server.url, home, store_class=RefusingStore)
    with pytest.raises(StorageError):
        layer.save_turn(exchange_record("s", "t1"))
    [row] = layer.spool.rows()
    root = str(Path(__file__).resolve().parent.parent)
    other = subprocess.run(
        [sys.executable, "-c", ASK, str(home), str(row.seq)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
        check=True,
    )
    assert other.stdout.strip() == "[]", "another command sending it would not tell of a turn that waited"
