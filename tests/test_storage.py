"""Storage: LangChain compatibility both ways, history show/export, sessions list/delete/clear."""

from __future__ import annotations

import json
import time
import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage


def langchain_history(session_id: str, url: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        # LangChain's own client notices a cluster node (INFO cluster_enabled) and uses RedisCluster
        return RedisChatMessageHistory(session_id, url=url.replace("redis+cluster://", "redis://", 1))


@pytest.mark.any_redis
def test_a_session_written_by_langchain_is_shown_and_continued(cli, model, redis_url):
    lc = langchain_history("lc1", redis_url)
    lc.add_user_message("Hi! I'm bob")
    lc.add_ai_message("Hello bob")

    shown = cli("history", "show", "lc1", "--json")
    assert shown.exit_code == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert payload["session"] == "lc1"
    assert [(m["type"], m["data"]["content"]) for m in payload["messages"]] == [
        ("human", "Hi! I'm bob"),
        ("ai", "Hello bob"),
    ]

    result = cli("ask", "-s", "lc1", "Whats my name")
    assert result.exit_code == 0, result.stderr
    assert [(m["role"], m["content"]) for m in model.last_messages()[1:]] == [
        ("user", "Hi! I'm bob"),
        ("assistant", "Hello bob"),
        ("user", "Whats my name"),
    ]
    # ...and LangChain reads the continued conversation back, in order, with the right types
    messages = langchain_history("lc1", redis_url).messages
    assert [(type(m), m.content) for m in messages] == [
        (HumanMessage, "Hi! I'm bob"),
        (AIMessage, "Hello bob"),
        (HumanMessage, "Whats my name"),
        (AIMessage, "echo: Whats my name"),
    ]


@pytest.mark.any_redis
def test_a_session_written_by_chatcli_reads_back_through_langchain(cli, model, redis_url):
    cli("chat", "-s", "cc", input="first\nsecond\n")
    messages = langchain_history("cc", redis_url).messages
    assert [(type(m).__name__, m.content) for m in messages] == [
        ("HumanMessage", "first"),
        ("AIMessage", "echo: first"),
        ("HumanMessage", "second"),
        ("AIMessage", "echo: second"),
    ]
    assert messages[1].usage_metadata is not None


@pytest.mark.any_redis
def test_history_show_renders_the_conversation_in_order(cli, model):
    cli("chat", "-s", "h", input="alpha\nbeta\n")
    result = cli("history", "show", "h")
    assert result.exit_code == 0
    out = result.stdout
    order = ["user", "alpha", "assistant", "echo: alpha", "user", "beta", "assistant", "echo: beta"]
    positions = [out.index(word, out.index(order[i - 1]) if i else 0) for i, word in enumerate(order)]
    assert positions == sorted(positions)

    last = json.loads(cli("history", "show", "h", "--json", "--last", "2").stdout)
    assert [m["data"]["content"] for m in last["messages"]] == ["beta", "echo: beta"]


@pytest.mark.any_redis
def test_history_of_an_unknown_session_is_not_found(cli, model):
    for args in (["history", "show", "nope"], ["history", "export", "nope"]):
        result = cli(*args)
        assert result.exit_code == 5
        assert "nope" in result.stderr


@pytest.mark.any_redis
def test_export_formats_parse_back_to_the_same_messages(cli, model, tmp_path):
    cli("chat", "-s", "ex", input="one\ntwo\n")
    shown = json.loads(cli("history", "show", "ex", "--json").stdout)

    as_json = json.loads(cli("history", "export", "ex", "--format", "json").stdout)
    assert as_json == shown
    assert as_json["session"] == "ex" and len(as_json["messages"]) == 4

    lines = cli("history", "export", "ex", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == shown["messages"]

    md = cli("history", "export", "ex", "--format", "markdown").stdout
    assert md.startswith("# Session ex\n")
    sections = md.split("\n## ")[1:]
    assert [s.split("\n\n", 1)[0] for s in sections] == ["user", "assistant", "user", "assistant"]
    assert [s.split("\n\n", 1)[1].strip() for s in sections] == ["one", "echo: one", "two", "echo: two"]


@pytest.mark.any_redis
def test_export_to_a_file_refuses_to_overwrite_without_force(cli, model, tmp_path):
    cli("ask", "-s", "f", "hi")
    target = tmp_path / "out.jsonl"
    assert cli("history", "export", "f", "-f", "jsonl", "-o", str(target)).exit_code == 0
    first = target.read_text()
    assert len(first.splitlines()) == 2

    target.write_text("precious")
    refused = cli("history", "export", "f", "-o", str(target))
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert target.read_text() == "precious"

    assert cli("history", "export", "f", "-o", str(target), "--force").exit_code == 0
    assert json.loads(target.read_text())["session"] == "f"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp files left


def test_export_unknown_format_is_a_usage_error(cli, model):
    cli("ask", "-s", "f", "hi")
    result = cli("history", "export", "f", "--format", "xml")
    assert result.exit_code == 2 and "xml" in result.stderr


def test_sessions_list_pages_by_last_activity_and_does_not_scan(cli, model, rdb):
    for name in ["s1", "s2", "s3"]:
        cli("ask", "-s", name, f"hello from {name}")
        time.sleep(0.01)
    cli("ask", "-s", "s1", "s1 again")  # s1 is now the most recently active
    langchain_history("unindexed", cli.environ["CHATCLI_REDIS_URL"]).add_user_message("written elsewhere")
    rdb.config_resetstat()

    page1 = json.loads(cli("sessions", "list", "--json", "--limit", "2").stdout)
    assert [s["id"] for s in page1["sessions"]] == ["s1", "s3"]
    assert page1["sessions"][0]["messages"] == 4
    assert page1["sessions"][0]["title"] == "hello from s1"
    assert page1["sessions"][0]["created"].endswith("Z") and page1["sessions"][0]["updated"].endswith("Z")
    page2 = json.loads(cli("sessions", "list", "--json", "--limit", "2", "--cursor", page1["next_cursor"]).stdout)
    assert [s["id"] for s in page2["sessions"]] == ["s2"]
    assert page2["next_cursor"] is None
    assert "cmdstat_scan" not in rdb.info("commandstats")
    assert "cmdstat_keys" not in rdb.info("commandstats")

    table = cli("sessions", "list").stdout
    assert table.index("s1") < table.index("s3") < table.index("s2")
    assert "unindexed" not in table


def test_sessions_list_bad_cursor_is_a_usage_error(cli, model):
    assert cli("sessions", "list", "--cursor", "abc").exit_code == 2


@pytest.mark.any_redis
def test_sessions_delete_removes_only_the_named_sessions(cli, model, rdb):
    for name in ["d1", "d2", "keep"]:
        cli("ask", "-s", name, "hi")
    result = cli("sessions", "delete", "d1", "d2")
    assert result.exit_code == 0
    ids = [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert ids == ["keep"]
    assert rdb.exists("message_store:d1", "chatcli:meta:{message_store:d1}") == 0


@pytest.mark.any_redis
def test_sessions_delete_of_a_missing_id_deletes_nothing(cli, model, rdb):
    cli("ask", "-s", "d1", "hi")
    result = cli("sessions", "delete", "d1", "ghost")
    assert result.exit_code == 5 and "ghost" in result.stderr
    assert rdb.exists("message_store:d1") == 1


@pytest.mark.any_redis
def test_sessions_clear_removes_every_indexed_session_and_nothing_else(cli, model, rdb):
    for name in ["c1", "c2", "c3"]:
        cli("ask", "-s", name, "hi")
    rdb.set("unrelated:key", "still here")
    rdb.lpush("message_store:written-by-another-app", '{"type": "human", "data": {"content": "x"}}')

    refused = cli("sessions", "clear")  # stdin is not a terminal and no --yes
    assert refused.exit_code == 2 and "3 sessions" in refused.stderr
    assert rdb.exists("message_store:c1") == 1

    result = cli("sessions", "clear", "--yes")
    assert result.exit_code == 0 and "deleted 3 sessions" in result.stderr
    assert json.loads(cli("sessions", "list", "--json").stdout)["sessions"] == []
    assert sorted(rdb.keys()) == [b"message_store:written-by-another-app", b"unrelated:key"]


@pytest.mark.any_redis
@pytest.mark.parametrize("corrupt", [b"not json", b'{"type": "alien", "data": {}}', b"\xff\xfe"])
def test_unreadable_entries_are_skipped_and_counted(cli, model, rdb, corrupt):
    cli("ask", "-s", "bad", "hi")
    rdb.lpush("message_store:bad", corrupt)
    shown = cli("history", "show", "bad", "--json")
    assert shown.exit_code == 0
    assert len(json.loads(shown.stdout)["messages"]) == 2
    assert "skipped 1" in shown.stderr
    again = cli("ask", "-s", "bad", "next")
    assert again.exit_code == 0
    assert [m["content"] for m in model.last_messages()[1:]] == ["hi", "echo: hi", "next"]
