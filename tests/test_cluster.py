"""Redis Cluster specifics: one slot per session, the index in its own idempotent step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_redis


def test_a_session_shares_one_slot_and_the_index_is_repaired_by_the_next_write(
    cli, model, rdb, is_cluster, monkeypatch
):
    monkeypatch.setattr("chatcli.catalog.NOTICE_MAX_KEYS", 0)  # a large database: listing does not adopt
    for name in ["alpha", "beta", "gamma", "delta"]:
        assert cli("ask", "-s", name, f"hi {name}").exit_code == 0
    if is_cluster:
        list_slot = rdb.keyslot("message_store:alpha")
        assert rdb.keyslot("chatcli:meta:{message_store:alpha}") == list_slot
        assert rdb.keyslot("chatcli:index:{message_store:}") != list_slot
        # the sessions really are spread over more than one primary
        nodes = {rdb.get_node_from_key(f"message_store:{n}").name for n in ["alpha", "beta", "gamma", "delta"]}
        assert len(nodes) > 1
    # the index step lost (as if it failed after the session's transaction): the next write puts it back
    rdb.zrem("chatcli:index:{message_store:}", "alpha")
    assert "alpha" not in [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert cli("ask", "-s", "alpha", "again").exit_code == 0
    ids = [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert ids[0] == "alpha" and sorted(ids) == ["alpha", "beta", "delta", "gamma"]
    assert rdb.llen("message_store:alpha") == 4
    # in a small database the listing itself puts a lost row back, at its place by the session's metadata
    monkeypatch.setattr("chatcli.catalog.NOTICE_MAX_KEYS", 100_000)
    rdb.zrem("chatcli:index:{message_store:}", "alpha")
    assert [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]] == ids


def test_a_key_prefix_with_a_hash_tag_is_refused_on_a_cluster_only(cli, model, monkeypatch, is_cluster):
    monkeypatch.setenv("CHATCLI_KEY_PREFIX", "app{x}:")
    result = cli("ask", "-s", "p", "hi")
    assert result.exit_code == (2 if is_cluster else 0), result.stderr


@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
def test_a_turn_on_a_cluster_is_one_script_on_the_session_slot_then_the_index(cli, model, rdb):
    import time

    import redis

    index_node = rdb.get_node_from_key("chatcli:index:{message_store:}")
    session = next(f"s{i}" for i in range(100) if rdb.get_node_from_key(f"message_store:s{i}") != index_node)
    node = rdb.get_node_from_key(f"message_store:{session}")
    assert cli("ask", "-s", session, "first").exit_code == 0
    seen, conns = {}, []  # keep the clients referenced: a collected client closes its MONITOR connection
    for name, where in (("session", node), ("index", index_node)):
        conns.append(redis.Redis(host=where.host, port=where.port, decode_responses=True))
        seen[name] = conns[-1].monitor().__enter__()
    try:
        assert cli("ask", "-s", session, "second").exit_code == 0
        commands: dict[str, list[str]] = {"session": [], "index": []}
        for name, stop in (("session", "EVAL"), ("index", "ZADD")):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                command = seen[name].next_command()["command"]
                commands[name].append(command)
                if command.startswith(stop):
                    break
    finally:
        for monitor in seen.values():
            monitor.__exit__(None, None, None)
    setup = ("HELLO", "CLIENT", "CLUSTER", "COMMAND", "PING", "READONLY", "INFO")
    live = ("chatcli:live:", "chatcli:answering:")  # what the turn publishes for followers (chatcli.live)
    ops = [c.split(" ", 1)[0] for c in commands["session"] if not c.startswith(setup) and not any(k in c for k in live)]
    # the window: one pipelined read on the session's node (LLEN and the oldest element: chatcli.opening)
    assert ops[:4] == ["LRANGE", "HGETALL", "LLEN", "LINDEX"]
    assert ops[4:] == ["EVAL"]  # the turn: one idempotent script on the session's node, no index there
    turn = commands["session"][-1]
    assert f"message_store:{session} chatcli:meta:" in turn and "chatcli:index:" not in turn
    assert any(c.startswith("ZADD chatcli:index:{message_store:}") and session in c for c in commands["index"])


def test_the_repl_storage_operations_work_on_both(redis_url):
    """What /undo, /retry, /clear and /system do, through the store the REPL uses."""
    from chatcli import redis_server
    from chatcli.catalog import SessionCatalog
    from chatcli.records import TurnRecord, message_id
    from chatcli.settings import Settings
    from chatcli.store import SessionStore

    conn = redis_server.connect(Settings(home=Path("/nonexistent"), redis_url=redis_url))
    store = SessionStore(conn.client, ttl=100, where=conn.where)

    def exchange(turn: str) -> list[dict]:
        return [
            {"type": "human", "data": {"content": "q", "id": message_id(turn, 0)}},
            {"type": "ai", "data": {"content": "a", "id": message_id(turn, 1)}},
        ]

    assert store.append_turn(TurnRecord("r", exchange("t1"), "t1"))
    assert store.append_turn(TurnRecord("r", exchange("t2"), "t2"))
    assert not store.append_turn(TurnRecord("r", exchange("t2"), "t2"))  # stored once
    removed = store.remove_turn("r", "t2")
    assert removed is not None and removed.entries == exchange("t2") and removed.newer == 0
    assert list(store.iter_messages("r", chunk=1)) == exchange("t1")
    assert store.window("r", 1).messages == exchange("t1")[1:]
    store.set_meta("r", system="Be terse.")
    store.clear_messages("r")
    assert store.count("r") == 0 and store.get_meta("r")["system"] == "Be terse."
    assert SessionCatalog(store).most_recent() == "r" and store.exists("r")
    conn.client.close()
