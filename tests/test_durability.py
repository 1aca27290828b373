"""The storage core, in-process on real redis-servers: a turn is stored once, whatever fails and whenever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from chatcli import events
from chatcli.assistant import signals_held
from chatcli.errors import StorageUnavailable
from chatcli.records import TurnRecord
from chatcli.redis_errors import StorageRefused, translate
from chatcli.spool import Spool, SpoolError
from chatcli.spooled import FLUSH_BATCH
from chatcli.store import SessionStore
from tests.conftest import start_redis
from tests.durable import FaultyStore, exchange_record, layered, redis_major, stored, stored_turns


@pytest.fixture
def server(tmp_path):
    proc = start_redis(tmp_path / "redis")
    yield proc
    proc.stop()


# -- idempotent turns ----------------------------------------------------------------------------------


@pytest.mark.any_redis
def test_a_turn_written_again_is_stored_once(redis_url):
    from chatcli.redis_server import client_for_url

    store = SessionStore(client_for_url(redis_url), where=redis_url)
    record = exchange_record("once", "t1")
    assert store.append_turn(record) is True
    assert store.append_turn(record) is False  # the script saw the id: nothing written
    assert store.append_turns([record, exchange_record("once", "t2")]) == [False, True]
    assert stored_turns(store.client, "once") == ["t1", "t1", "t2", "t2"]


def test_a_script_that_timed_out_on_the_client_but_ran_on_the_server_is_stored_once(tmp_path):
    """DEBUG SLEEP holds Redis while the turn is sent: the client gives up (the turn is spooled), Redis then
    runs it anyway, and the flush that follows finds it there."""
    extra = ("--enable-debug-command", "yes") if redis_major() >= 7 else ()
    server = start_redis(tmp_path / "sleepy", *extra)
    try:
        layer, store, said = layered(server.url, tmp_path / "home", socket_timeout=0.3)
        store.ping()  # a connection made before: what a chat has from reading its window
        sleeper = threading.Thread(target=lambda: server.client().execute_command("DEBUG", "SLEEP", "1"))
        sleeper.start()
        time.sleep(0.1)
        assert layer.save_turn(exchange_record("sleepy", "t1")) is False  # timed out: kept in the spool
        assert any(isinstance(e, events.Spooling) for e in said)
        sleeper.join()
        time.sleep(0.2)
        assert stored_turns(server.client(), "sleepy") == ["t1", "t1"]  # it ran anyway
        assert layer.flush() == 0  # sent again: already there
        assert stored_turns(server.client(), "sleepy") == ["t1", "t1"]
        assert layer.spool.rows() == []
    finally:
        server.stop()


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_lost_connection_keeps_the_turn_and_the_next_command_stores_it_once(server, tmp_path, where):
    layer, store, _said = layered(server.url, tmp_path / "home", store_class=FaultyStore)
    store.fault = where
    assert layer.save_turn(exchange_record("lost", "t1")) is False
    assert [r.turn for r in layer.spool.rows()] == ["t1"]
    again, _store, said = layered(server.url, tmp_path / "home")  # the next command
    assert again.flush() == (1 if where == "before" else 0)
    assert stored_turns(server.client(), "lost") == ["t1", "t1"]
    assert again.spool.rows() == []
    assert [type(e) for e in said] == ([events.Flushed] if where == "before" else [])


ADDER = """
import sys
from pathlib import Path
from chatcli.spool import Spool
from tests.durable import exchange_record
spool = Spool(Path(sys.argv[1]))
seq = spool.add(sys.argv[2], "message_store:", exchange_record(sys.argv[3], sys.argv[3]))
if sys.argv[4] == "gave-up":
    spool.release(seq)  # what a command does when Redis does not take its turn
print("added", flush=True)
if sys.argv[4] != "crashed":
    sys.stdin.read()  # alive until the test closes stdin
"""


def test_a_flush_tells_of_the_turns_that_waited_not_of_those_another_command_is_sending(server, tmp_path):
    """Every turn goes through the spool on its way to Redis. A command that sends another live command's turn
    first (it was about to send it itself) says nothing of it; a turn that waited (its command gave up on
    Redis, or died) is told of, by whoever sends it."""
    home = tmp_path / "home"
    root = str(Path(__file__).resolve().parent.parent)
    adders = []
    for name, how in (("sending", "sending"), ("waited", "gave-up"), ("crashed", "crashed")):
        adder = subprocess.Popen(
            [sys.executable, "-c", ADDER, str(home), server.url, name, how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": root},
        )
        assert adder.stdout is not None and adder.stdout.readline() == "added\n"
        adders.append(adder)
    adders[-1].wait()  # the crashed one is gone
    layer, _store, said = layered(server.url, home)
    # this process's own turn, left in the spool by a Ctrl-C before it gave up on Redis: it waited
    layer.spool.add(server.url, "message_store:", exchange_record("interrupted", "interrupted"))
    try:
        assert layer.save_turn(exchange_record("mine", "mine")) is True
    finally:
        for adder in adders:
            adder.communicate("")
    for session in ("sending", "waited", "crashed", "interrupted", "mine"):
        assert stored_turns(server.client(), session) == [session, session]
    assert [(e.turns, e.messages) for e in said if isinstance(e, events.Flushed)] == [(3, 6)]
    assert layer.spool.rows() == []


def test_a_spool_an_older_chatcli_wrote_gains_the_owner_column_and_is_sent(server, tmp_path):
    import sqlite3

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    old = sqlite3.connect(home / "spool.db")
    old.executescript(
        "CREATE TABLE turns (seq INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, prefix TEXT NOT NULL,"
        " session TEXT NOT NULL, turn TEXT NOT NULL, record TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',"
        " reason TEXT, added REAL NOT NULL, UNIQUE (target, prefix, turn));"
    )
    old.execute(
        "INSERT INTO turns (target, prefix, session, turn, record, added) VALUES (?, ?, ?, ?, ?, 0)",
        (server.url, "message_store:", "old", "t0", exchange_record("old", "t0").to_json()),
    )
    old.commit()
    old.close()
    layer, _store, said = layered(server.url, home)
    assert layer.save_turn(exchange_record("new", "t1")) is True
    assert stored_turns(server.client(), "old") == ["t0", "t0"]
    assert [(e.turns, e.messages) for e in said if isinstance(e, events.Flushed)] == [(1, 2)]
    assert layer.spool.rows() == []


def test_a_flush_stopped_by_ctrl_c_halfway_stores_every_turn_once(server, tmp_path):
    """Ctrl-C after Redis took the first batch but before the spool heard of it: the next flush sends the
    whole spool again and Redis stores each turn once."""
    layer, store, _said = layered(server.url, tmp_path / "home", store_class=FaultyStore)
    turns = 2 * FLUSH_BATCH
    for i in range(turns):
        layer.spool.add(server.url, "message_store:", exchange_record("long", f"t{i:04d}"))
    store.fault = "interrupt-after"  # on the first batch's write
    with pytest.raises(KeyboardInterrupt):
        layer.flush()
    assert server.client().llen("message_store:long") == 2 * FLUSH_BATCH  # the first batch got through
    assert len(layer.spool.pending(server.url, "message_store:")) == turns  # none confirmed yet
    assert layer.flush() == turns - FLUSH_BATCH
    assert stored_turns(server.client(), "long") == [f"t{i:04d}" for i in range(turns) for _ in (0, 1)]
    assert layer.spool.rows() == []


def test_flush_progress_is_kept_batch_by_batch(server, tmp_path):
    """Ctrl-C during the second batch: the first batch is confirmed and gone from the spool already."""
    layer, store, _said = layered(server.url, tmp_path / "home", store_class=FaultyStore)
    for i in range(2 * FLUSH_BATCH):
        layer.spool.add(server.url, "message_store:", exchange_record("p", f"t{i:04d}"))
    calls = store.calls

    def interrupt_second_batch(action, *args, **kwargs):
        if store.calls == calls + 1:
            store.fault = "interrupt-before"
        return FaultyStore.run(store, action, *args, **kwargs)

    store.run = interrupt_second_batch  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        layer.flush()
    assert len(layer.spool.rows()) == FLUSH_BATCH


# -- what Redis refuses, for now or for good ---------------------------------------------------------


def _oom(client):
    client.config_set("maxmemory", "1")
    return lambda: client.config_set("maxmemory", "0")


def _readonly(client, tmp_path):
    primary = start_redis(tmp_path / "primary")
    client.replicaof("127.0.0.1", primary.port)

    def undo():
        client.replicaof("NO", "ONE")
        primary.stop()

    return undo


def _noperm(client):
    client.acl_setuser("default", enabled=True, nopass=True, keys=["~chatcli:*"], commands=["+@all"], reset_keys=True)
    return lambda: client.acl_setuser("default", enabled=True, nopass=True, keys=["~*"], commands=["+@all"])


def _misconf(client, tmp_path):
    blocker = Path(client.config_get("dir")["dir"]) / "dump.rdb"
    blocker.mkdir()  # a BGSAVE cannot write its file
    client.config_set("stop-writes-on-bgsave-error", "yes")
    client.config_set("save", "3600 1")  # writes stop on a failed BGSAVE only where snapshots are configured
    client.bgsave()
    deadline = time.monotonic() + 10
    while client.info("persistence")["rdb_last_bgsave_status"] != "err" and time.monotonic() < deadline:
        time.sleep(0.05)

    def undo() -> None:
        client.config_set("save", "")  # and a shutdown does not try to save either
        client.config_set("stop-writes-on-bgsave-error", "no")
        blocker.rmdir()

    return undo


def _busy(client):
    client.config_set("lua-time-limit", "10")
    script = (
        "local t = redis.call('TIME') while true do local n = redis.call('TIME') if n[1] - t[1] > 1 then break end end"
    )
    runner = threading.Thread(
        target=lambda: redis.Redis(port=client.connection_pool.connection_kwargs["port"]).eval(script, 0)
    )
    runner.start()
    time.sleep(0.2)
    return runner.join


@pytest.mark.parametrize("refusal", ["OOM", "READONLY", "NOPERM", "MISCONF", "BUSY"])
def test_a_redis_that_cannot_take_the_turn_now_keeps_it_spooled_and_takes_it_later(server, tmp_path, refusal):
    admin = server.client()
    layer, _store, said = layered(server.url, tmp_path / "home")
    layer.save_turn(exchange_record("r", "t0"))
    undo = {
        "OOM": lambda: _oom(admin),
        "READONLY": lambda: _readonly(admin, tmp_path),
        "NOPERM": lambda: _noperm(admin),
        "MISCONF": lambda: _misconf(admin, tmp_path),
        "BUSY": lambda: _busy(admin),
    }[refusal]()
    try:
        assert layer.save_turn(exchange_record("r", "t1")) is False
        assert [(r.turn, r.state) for r in layer.spool.rows()] == [("t1", "pending")]  # never set aside
        assert any(isinstance(e, events.Spooling) for e in said)
    finally:
        undo()
    assert layer.save_turn(exchange_record("r", "t2")) is True  # the spooled turn goes first
    assert stored_turns(admin, "r") == ["t0", "t0", "t1", "t1", "t2", "t2"]
    assert layer.spool.rows() == []


def test_a_key_of_another_type_sets_the_turn_aside_and_the_other_sessions_go_on(server, tmp_path):
    admin = server.client()
    layer, _store, said = layered(server.url, tmp_path / "home")
    admin.set("message_store:taken", "a string of another program")
    layer.spool.add(server.url, "message_store:", exchange_record("taken", "t1"))
    layer.spool.add(server.url, "message_store:", exchange_record("free", "t2"))
    assert layer.flush() == 1
    rows = layer.spool.rows()
    assert [(r.turn, r.state) for r in rows] == [("t1", "set_aside")] and "WRONGTYPE" in (rows[0].reason or "")
    assert [e.session for e in said if isinstance(e, events.SetAside)] == ["taken"]
    assert admin.get("message_store:taken") == b"a string of another program"
    assert admin.exists("chatcli:meta:{message_store:taken}", "chatcli:turns:{message_store:taken}") == 0
    assert stored_turns(admin, "free") == ["t2", "t2"]
    assert layer.flush() == 0 and len(layer.spool.rows()) == 1  # not tried again


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), StorageUnavailable),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), StorageUnavailable),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), StorageUnavailable),
        (
            redis.exceptions.NoPermissionError("this user has no permissions to access one of the keys"),
            StorageUnavailable,
        ),
        (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), StorageUnavailable),
        (redis.ResponseError("BUSY Redis is busy running a script."), StorageUnavailable),
        (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), StorageRefused),
        (redis.ResponseError("ERR unknown command 'EVAL'"), None),
    ],
)
def test_what_redis_answers_is_sorted_into_wait_and_retry_or_refused_for_good(error, kind):
    translated = translate(error, "here")
    assert type(translated) is (kind or type(translated)) and "Redis at here" in str(translated)
    if kind is None:
        assert not isinstance(translated, (StorageUnavailable, StorageRefused))


# -- the spool itself ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 512 KiB (tmpfs; the tests run as root, as CI does), and a way to fill it."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)

    def fill() -> None:
        with open(mount / "filler", "ab", buffering=0) as out:
            try:
                while True:
                    out.write(b"x" * 4096)
            except OSError:
                pass

    try:
        yield mount, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_with_redis_down_is_a_clear_error_and_the_spool_keeps_what_it_had(small_disk):
    mount, fill = small_disk
    dead = "redis://127.0.0.1:1/0"
    layer, _store, _said = layered(dead, mount / "home", socket_timeout=0.2)
    assert layer.save_turn(exchange_record("d", "t1")) is False
    fill()
    with pytest.raises(SpoolError, match="this turn is not kept") as raised:
        layer.save_turn(exchange_record("d", "t2", "x" * 100_000))
    assert "full" in str(raised.value)
    (mount / "filler").unlink()
    assert [r.turn for r in Spool(mount / "home").rows()] == ["t1"]


def test_a_full_disk_with_redis_up_stores_the_turn_in_redis_and_says_so(server, small_disk):
    mount, fill = small_disk
    layer, _store, said = layered(server.url, mount / "home")
    assert layer.save_turn(exchange_record("d", "t0")) is True
    fill()
    assert layer.save_turn(exchange_record("d", "t1", "x" * 100_000)) is True
    assert stored_turns(server.client(), "d") == ["t0", "t0", "t1", "t1"]
    assert [type(e) for e in said] == [events.SpoolNotWritable]


def test_the_spool_is_private_and_survives_a_new_process(tmp_path):
    home = tmp_path / "home"
    Spool(home).add("redis://x", "p:", exchange_record("s", "t1"))
    code = "import sys, pathlib; from chatcli.spool import Spool; "
    code += "print([r.turn for r in Spool(pathlib.Path(sys.argv[1])).rows()])"
    out = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['t1']"
    for name in ("spool.db", "spool.db-wal"):
        if (home / name).exists():
            assert (home / name).stat().st_mode & 0o077 == 0, name


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[" * 200_000 + "]" * 200_000, "nested"),
        ('{"target": "t", "prefix": "p:", "session": "s", "entries": [], "ttl": 1e400}', "ttl"),
        ('{"target": "t", "prefix": "p:", "session": "s", "entries": [], "ttl": 1e20}', "ttl"),
        ('{"target": "t", "prefix": "p:", "session": "s", "entries": "notalist"}', "entries"),
        ('{"torn": ', "JSON"),
        ("\udcff not utf-8", ""),
    ],
)
def test_an_unreadable_old_spool_line_is_kept_aside_and_blocks_nothing(tmp_path, line, why):
    home = tmp_path / "home"
    home.mkdir()
    good = json.dumps(
        {"target": "t", "prefix": "p:", "session": "s", "entries": [{"type": "human", "data": {"content": "x"}}]}
    )
    (home / "spool.jsonl").write_bytes((line + "\n" + good + "\n").encode("utf-8", "surrogateescape"))
    spool = Spool(home)
    rows = spool.rows()
    assert [r.state for r in rows] == ["unreadable", "pending"]
    assert why.lower() in (rows[0].reason or "").lower()
    assert [e["data"]["content"] for e in spool.entries_for("t", "p:", "s")] == ["x"]
    assert not (home / "spool.jsonl").exists()
    assert (
        Spool(home).rows()[0].text.startswith(line[:10].encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    )


def test_a_record_is_validated_before_it_is_written(tmp_path):
    record = exchange_record("s", "t1")
    assert TurnRecord.from_json(record.to_json()) == record
    for bad in ({"ttl": 10**20}, {"ttl": 0}, {"incr": {"x": 1.5}}, {"meta": {"x": 1}}, {"turn": ""}):
        with pytest.raises(ValueError):
            TurnRecord.from_json(json.dumps({**json.loads(record.to_json()), **bad}))


# -- turns on screen: secrets and signals ---------------------------------------------------------------


def test_signals_are_held_while_a_turn_is_saved_and_delivered_after():
    delivered = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a signal that is not held interrupts this sleep
            delivered.append("saved")
        for _ in range(100):
            time.sleep(0.01)
    assert delivered == ["saved"]


def test_ask_echoing_the_api_key_shows_and_stores_it_masked(cli, model, rdb, monkeypatch):
    from tests.model_server import Reply

    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    model.script(Reply(chunks=["your key is sk-li", "ve-abcdef12", "3456, keep it"]))
    result = cli.run("ask", "-s", "echo", "what is my key?")
    assert result.returncode == 0, result.stderr
    assert "sk-live" not in result.stdout and "your key is ***, keep it" in result.stdout
    assert stored(rdb, "echo")[1]["data"]["content"] == "your key is ***, keep it"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_during_an_answer_stores_what_was_shown(cli, model, rdb, signum):
    from tests.model_server import Reply

    model.script(Reply(chunks=[f"w{i:03d} " for i in range(300)], delay=0.02))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", "ask", "-s", "killed", "count"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    shown = proc.stdout.read(40)  # the answer is streaming
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    answer = stored(rdb, "killed")[1]["data"]
    assert answer["response_metadata"]["chatcli"] == {"interrupted": True}
    assert answer["content"] == (shown + rest).removesuffix("\n")  # what was shown is what is stored
    assert len(answer["content"].split()) < 300 and "Traceback" not in err


def test_undo_removes_a_turn_by_id_wherever_it_is(server, tmp_path):
    layer, store, _said = layered(server.url, tmp_path / "home")
    for turn in ("mine", "theirs"):
        layer.save_turn(exchange_record("u", turn))
    removed = store.remove_turn("u", "mine")
    assert removed is not None and removed.newer == 2
    assert [e["data"]["content"] for e in removed.entries] == ["mine", "echo: mine"]
    assert stored_turns(server.client(), "u") == ["theirs", "theirs"]
    assert store.remove_turn("u", "mine") is None
    assert store.append_turn(exchange_record("u", "mine")) is True  # its id was released: /retry can put it back


def test_every_command_says_when_turns_wait_for_another_redis_and_spool_send_writes_them(
    cli, model, rdb, home, redis_url
):
    other = redis_url.replace("127.0.0.1", "localhost")  # the same server under another name
    Spool(home).add(other, "message_store:", exchange_record("away", "t1"))
    listing = cli("sessions", "list")
    assert listing.exit_code == 0
    assert f"1 spooled turns wait for Redis at {other}" in listing.stderr
    assert rdb.exists("message_store:away") == 0
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and f"1 turns wait for Redis at {other}; `chatcli spool list`" in doctor.stdout
    sent = cli("spool", "send")
    assert sent.exit_code == 0, sent.stderr
    assert "1 written" in sent.stderr
    assert stored_turns(rdb, "away") == ["t1", "t1"]
    assert "wait for Redis" not in cli("sessions", "list").stderr
    assert "empty: Redis has every turn" in cli("doctor").stdout
    listed = json.loads(cli("spool", "list", "--json").stdout)
    assert listed == {"records": []}


def test_a_set_aside_turn_is_listed_exported_importable_and_sent_again_once_fixed(
    cli, model, rdb, home, redis_url, tmp_path
):
    rdb.set("message_store:typed", "x")
    Spool(home).add(redis_url, "message_store:", exchange_record("typed", "t1"))
    assert "Redis refused a spooled turn of session 'typed'" in cli("sessions", "list").stderr
    [row] = json.loads(cli("spool", "list", "--json").stdout)["records"]
    assert row["state"] == "set_aside" and row["session"] == "typed" and "WRONGTYPE" in row["reason"]
    out = tmp_path / "typed.json"
    assert cli("spool", "export", str(row["record"]), "-o", str(out)).exit_code == 0
    imported = cli("history", "import", str(out), "-s", "rescued")
    assert imported.exit_code == 0, imported.stderr
    assert [m["data"]["content"] for m in stored(rdb, "rescued")] == ["t1", "echo: t1"]
    rdb.delete("message_store:typed")
    assert cli("spool", "send", str(row["record"])).exit_code == 0
    assert stored_turns(rdb, "typed") == ["t1", "t1"]
    assert cli("spool", "send", "999").exit_code == 5


def test_signals_are_held_while_a_turn_is_saved_even_with_other_threads_running():
    """The kernel may hand a process signal to any thread: holding it must not depend on which one."""
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    delivered = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                delivered.append("saved")
            for _ in range(100):
                time.sleep(0.01)
    finally:
        stop.set()
        worker.join()
    assert delivered == ["saved"]


def test_the_chain_invoked_as_plain_langchain_saves_through_the_same_history_once(model, redis_proc, tmp_path):
    """RunnableWithMessageHistory with no chatcli turn bound (`turn`: None): its own save goes through
    SessionHistory.add_messages, as one idempotent turn with message ids."""
    from chatcli.assistant import DEFAULT_SYSTEM, Assistant
    from chatcli.settings import Settings

    settings = Settings(home=tmp_path, base_url=model.base_url, api_key="sk-test-plain")
    layer, _store, _said = layered(redis_proc.url, tmp_path / "home", prefix="plain:")
    assistant = Assistant(settings, layer)
    for question in ("one", "two"):
        answer = assistant.chain.invoke(
            {"input": question, "system": DEFAULT_SYSTEM}, config={"configurable": {"session_id": "lc", "turn": None}}
        )
        assert answer.content == f"echo: {question}"
    messages = stored(redis_proc.client(), "lc", "plain:")
    assert [m["data"]["content"] for m in messages] == ["one", "echo: one", "two", "echo: two"]
    ids = [m["data"]["id"] for m in messages]
    assert all(ids) and len(set(ids)) == 4  # every message has an id: its own (LangChain's run id), else ours
    assert ids[0].endswith("-0") and ids[2].endswith("-0")  # the question carries the turn id
    assert [m["content"] for m in model.last_messages()[1:]] == ["one", "echo: one", "two"]


def test_ask_with_redis_down_and_a_full_disk_exits_3_saying_the_turn_is_not_kept(cli, model, small_disk, monkeypatch):
    from tests.conftest import free_port

    mount, fill = small_disk
    home = mount / "home"
    home.mkdir()
    monkeypatch.setenv("CHATCLI_HOME", str(home))
    monkeypatch.setenv("CHATCLI_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    fill()
    result = cli.run("ask", "-s", "full", "hello")
    assert result.returncode == 3, result.stderr
    assert "echo: hello" in result.stdout  # the answer was shown before the save failed
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert "this turn is not kept" in line and "full" in line
    assert "Traceback" not in result.stderr
