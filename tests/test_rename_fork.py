"""sessions rename / fork: messages, metadata and the index move or are copied; refusals change nothing."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.any_redis


def shown(cli, session_id: str) -> list[dict]:
    result = cli("history", "show", session_id, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["messages"]


def listed(cli) -> list[str]:
    return [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]


def test_rename_moves_messages_metadata_and_the_place_in_the_list(cli, model, rdb):
    cli("ask", "-s", "a", "--system", "Be terse.", "one")
    time.sleep(0.01)
    cli("ask", "-s", "c", "two")
    before = shown(cli, "a")

    result = cli("sessions", "rename", "a", "b")
    assert result.exit_code == 0, result.stderr
    assert shown(cli, "b") == before
    assert rdb.exists("message_store:a") == 0 and rdb.exists("chatcli:meta:{message_store:a}") == 0
    assert rdb.hget("chatcli:meta:{message_store:b}", "system") == b"Be terse."
    assert listed(cli) == ["c", "b"]  # b keeps a's last activity
    cli("ask", "-s", "b", "three")
    assert model.last_messages()[0] == {"role": "system", "content": "Be terse."}
    assert [m["content"] for m in model.last_messages()[1:]] == ["one", "echo: one", "three"]


def test_rename_and_fork_refuse_an_existing_target_and_a_missing_source(cli, model, rdb):
    cli("ask", "-s", "x", "one")
    cli("ask", "-s", "y", "two")
    for command in ("rename", "fork"):
        taken = cli("sessions", command, "x", "y")
        assert taken.exit_code == 2 and "'y' exists" in taken.stderr
        missing = cli("sessions", command, "ghost", "z")
        assert missing.exit_code == 5 and "ghost" in missing.stderr
        assert cli("sessions", command, "x", "bad{id}").exit_code == 2
    assert [m["content"] for m in (json.loads(rdb.lindex(f"message_store:{s}", -1))["data"] for s in "xy")] == [
        "one",
        "two",
    ]
    assert sorted(listed(cli)) == ["x", "y"]
    assert rdb.exists("message_store:z") == 0


def test_fork_copies_a_session_to_try_another_branch(cli, model, rdb):
    cli("ask", "-s", "base", "--system", "Be terse.", "q1")
    result = cli("sessions", "fork", "base", "branch")
    assert result.exit_code == 0, result.stderr
    assert "2 messages" in result.stderr
    assert shown(cli, "branch") == shown(cli, "base")
    assert rdb.hget("chatcli:meta:{message_store:branch}", "forked_from") == b"base"

    cli("ask", "-s", "branch", "q2")
    assert [(m["role"], m["content"]) for m in model.last_messages()] == [
        ("system", "Be terse."),
        ("user", "q1"),
        ("assistant", "echo: q1"),
        ("user", "q2"),
    ]
    assert len(shown(cli, "base")) == 2 and len(shown(cli, "branch")) == 4
    assert listed(cli) == ["branch", "base"]


def test_a_session_written_only_by_langchain_can_be_renamed(cli, model, rdb):
    rdb.lpush("message_store:lc", json.dumps({"type": "human", "data": {"content": "from elsewhere"}}))
    assert cli("sessions", "rename", "lc", "mine").exit_code == 0
    assert [m["data"]["content"] for m in shown(cli, "mine")] == ["from elsewhere"]
    assert listed(cli) == ["mine"]


def test_rename_and_fork_keep_the_remaining_ttl(cli, model, rdb):
    assert cli("ask", "-s", "t1", "--ttl", "1000", "hi").exit_code == 0
    rdb.expire("message_store:t1", 500)  # as if it had been idle for a while
    rdb.expire("chatcli:meta:{message_store:t1}", 500)
    assert cli("sessions", "rename", "t1", "t2").exit_code == 0
    assert cli("sessions", "fork", "t2", "t3").exit_code == 0
    for sid in ("t2", "t3"):
        for key in (f"message_store:{sid}", f"chatcli:meta:{{message_store:{sid}}}"):
            assert 490 <= rdb.ttl(key) <= 500, (key, rdb.ttl(key))
    assert cli("ask", "-s", "n1", "no ttl").exit_code == 0
    assert cli("sessions", "fork", "n1", "n2").exit_code == 0
    assert rdb.ttl("message_store:n2") == -1
