"""langchain-redis' RedisChatMessageHistory sessions: `--source langchain-redis` on `sessions list`, `history
show|export` and `chat`. Written and read back with the real library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from chatcli.lcredis import LcRedisStore, ulid
from chatcli.records import TurnRecord
from tests.conftest import start_redis
from tests.langchain_apps import lc_history

SOURCE = ("--source", "langchain-redis")


@pytest.fixture
def redis_url(stack_url: str) -> str:
    """Every fixture (env, cli, rdb) uses the Redis with the JSON and Search modules."""
    return stack_url


@pytest.fixture
def sessions(redis_url: str) -> None:
    lc_history(redis_url, "trip.2026").add_messages(
        [SystemMessage("be brief"), HumanMessage("plan a trip"), AIMessage("Where to?")]
    )
    lc_history(redis_url, "soup").add_messages(
        [HumanMessage("a soup"), AIMessage("", tool_calls=[{"name": "recipe", "args": {}, "id": "c1"}])]
    )
    lc_history(redis_url, "soup").add_message(ToolMessage("leek and potato", tool_call_id="c1"))


def test_list_shows_each_session_newest_first(cli, sessions) -> None:
    result = cli("sessions", "list", *SOURCE, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["sessions"]
    assert [(r["id"], r["messages"], r["title"]) for r in rows] == [
        ("soup", 3, "a soup"),
        ("trip.2026", 3, "plan a trip"),
    ]
    assert rows[0]["updated"] >= rows[1]["updated"]
    # chatcli's own sessions are another store
    assert json.loads(cli("sessions", "list", "--json").stdout)["sessions"] == []


def test_show_is_the_sessions_conversation_in_the_librarys_order(cli, sessions) -> None:
    result = cli("history", "show", "trip.2026", *SOURCE, "--json")
    assert result.exit_code == 0, result.output
    messages = json.loads(result.stdout)["messages"]
    assert [(m["type"], m["data"]["content"]) for m in messages] == [
        ("system", "be brief"),
        ("human", "plan a trip"),
        ("ai", "Where to?"),
    ]
    shown = cli("history", "show", "soup", *SOURCE)
    assert shown.stdout.split("\n\n")[-1] == "tool\ntool result (id: c1)\nleek and potato\n"


def test_export_markdown(cli, sessions, tmp_path: Path) -> None:
    out = tmp_path / "trip.md"
    result = cli("history", "export", "trip.2026", *SOURCE, "--format", "markdown", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "## assistant\n\nWhere to?" in out.read_text()


def test_chat_continues_the_session_and_the_library_reads_it_back(cli, sessions, model, redis_url) -> None:
    result = cli("chat", "--session", "trip.2026", *SOURCE, input="to Lisbon\n")
    assert result.exit_code == 0, result.output
    sent = [(m["role"], m["content"]) for m in model.last_messages()]
    assert sent == [("system", "be brief"), ("user", "plan a trip"), ("assistant", "Where to?"), ("user", "to Lisbon")]
    history = lc_history(redis_url, "trip.2026")
    assert [(m.type, m.content) for m in history.messages] == [
        ("system", "be brief"),
        ("human", "plan a trip"),
        ("ai", "Where to?"),
        ("human", "to Lisbon"),
        ("ai", "echo: to Lisbon"),
    ]
    history.add_message(HumanMessage("and back"))  # the app goes on after chatcli
    shown = json.loads(cli("history", "show", "trip.2026", *SOURCE, "--json").stdout)["messages"]
    assert [m["data"]["content"] for m in shown][-3:] == ["to Lisbon", "echo: to Lisbon", "and back"]


def test_a_turn_written_twice_is_stored_once(rdb, redis_url, sessions) -> None:
    store = LcRedisStore(rdb, "test")
    record = TurnRecord("soup", [{"type": "human", "data": {"content": "more", "type": "human"}}])
    store.append_turn(record)
    store.append_turn(record)  # a retry
    assert [m.content for m in lc_history(redis_url, "soup").messages].count("more") == 1


def test_message_ids_are_ulids_of_the_write_time() -> None:
    from ulid import ULID

    made = ULID.from_str(ulid(1795951961.9718, "turn:0"))
    assert int(made.timestamp * 1000) == 1795951961971
    assert ulid(1795951961.9718, "turn:0") == str(made) != ulid(1795951961.9718, "turn:1")


def test_an_unknown_session_is_not_found(cli, sessions) -> None:
    result = cli("history", "show", "nope", *SOURCE)
    assert result.exit_code == 5
    assert "no langchain-redis session named 'nope'" in result.stderr


def test_a_redis_without_the_json_module_is_a_usage_error(cli, tmp_path: Path) -> None:
    plain = start_redis(tmp_path / "plain")
    try:
        result = cli("sessions", "list", *SOURCE, "--redis-url", plain.url)
        assert result.exit_code == 2, result.output
        assert "has no JSON module" in result.stderr
    finally:
        plain.stop()


def test_an_unknown_source_is_a_usage_error(cli) -> None:
    result = cli("history", "show", "x", "--source", "mongo")
    assert result.exit_code == 2
    assert "unknown --source 'mongo'" in result.stderr


def test_undo_and_clear_remove_documents_the_library_no_longer_reads(rdb, redis_url, sessions) -> None:
    store = LcRedisStore(rdb, "test")
    record = TurnRecord(
        "soup",
        [
            {"type": "human", "data": {"content": "more", "type": "human", "id": "t1-0"}},
            {"type": "ai", "data": {"content": "sure", "type": "ai", "id": "t1-1"}},
        ],
        turn="t1",
    )
    store.append_turn(record)
    lc_history(redis_url, "soup").add_message(HumanMessage("from the app"))
    removed = store.remove_turn("soup", "t1")
    assert removed is not None and [e["data"]["content"] for e in removed.entries] == ["more", "sure"]
    assert removed.newer == 1
    assert [m.content for m in lc_history(redis_url, "soup").messages][-2:] == ["leek and potato", "from the app"]
    store.clear_messages("soup")
    assert lc_history(redis_url, "soup").messages == []
    assert len(lc_history(redis_url, "trip.2026").messages) == 3  # another session


def test_resp2_and_resp3_clients_read_the_same(redis_url, sessions) -> None:
    import redis

    def read(protocol: int) -> tuple:
        store = LcRedisStore(redis.Redis.from_url(redis_url, protocol=protocol), "test")
        rows = [(r.id, r.messages, r.title, r.updated) for r in store.list_sessions()]
        return rows, list(store.iter_messages("soup")), store.count("soup")

    resp2, resp3 = read(2), read(3)
    assert resp2 == resp3
    assert resp2[2] == 3 and len(resp2[0]) == 2


def test_the_repl_continues_a_session_and_undo_takes_the_turn_back(terminal, model, redis_url, sessions) -> None:
    t = terminal("chat", "--session", "soup", *SOURCE)
    t.wait_prompt("soup", 1)
    t.enter("and a bread")
    t.wait_for("echo: and a bread")
    t.wait_prompt("soup", 2)
    assert [m.content for m in lc_history(redis_url, "soup").messages][-2:] == ["and a bread", "echo: and a bread"]
    t.enter("/undo")
    t.wait_prompt("soup", 3)
    t.ctrl("d")
    assert t.exited() == 0
    assert [m.content for m in lc_history(redis_url, "soup").messages][-1] == "leek and potato"
