"""Retention: --ttl / CHATCLI_TTL expire idle sessions; `sessions prune --older-than` deletes idle ones."""

from __future__ import annotations

import json
import time

import pytest

from chatcli.errors import UsageError
from chatcli.settings import parse_duration

INDEX = "chatcli:index:{message_store:}"


def listed(cli) -> list[str]:
    result = cli("sessions", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return [s["id"] for s in json.loads(result.stdout)["sessions"]]


@pytest.mark.any_redis
def test_an_expired_session_disappears_from_the_list_and_from_continue(cli, model, rdb):
    assert cli("ask", "-s", "kept", "first").exit_code == 0
    time.sleep(0.01)
    assert cli("ask", "-s", "brief", "--ttl", "1", "second").exit_code == 0
    assert 0 < rdb.ttl("message_store:brief") <= 1
    assert 0 < rdb.ttl("chatcli:meta:{message_store:brief}") <= 1
    assert rdb.ttl("message_store:kept") == -1  # no TTL unless asked for
    assert listed(cli) == ["brief", "kept"]

    time.sleep(1.3)
    assert listed(cli) == ["kept"]
    assert rdb.zscore(INDEX, "brief") is None  # the index is consistent again
    result = cli("chat", "--continue", input="again\n")
    assert result.exit_code == 0, result.stderr
    assert [m["content"] for m in model.last_messages()[1:]] == ["first", "echo: first", "again"]


def test_ttl_from_the_environment_is_refreshed_on_each_turn(cli, model, rdb, monkeypatch):
    monkeypatch.setenv("CHATCLI_TTL", "100")
    cli("ask", "-s", "t", "one")
    rdb.expire("message_store:t", 5)
    rdb.expire("chatcli:meta:{message_store:t}", 5)
    cli("ask", "-s", "t", "two")
    assert 95 <= rdb.ttl("message_store:t") <= 100
    assert 95 <= rdb.ttl("chatcli:meta:{message_store:t}") <= 100
    assert cli("ask", "-s", "t", "--ttl", "0", "x").exit_code == 2  # a TTL must be positive


@pytest.mark.any_redis
def test_prune_deletes_only_sessions_idle_longer_than_asked_and_confirms_first(cli, model, rdb):
    for name in ["old1", "old2", "recent"]:
        assert cli("ask", "-s", name, "hi").exit_code == 0
    day = 86400
    for name, days in [("old1", 40), ("old2", 31)]:
        then = time.time() - days * day
        rdb.zadd(INDEX, {name: then})
        rdb.hset(f"chatcli:meta:{{message_store:{name}}}", "updated", repr(then))

    refused = cli("sessions", "prune", "--older-than", "30d")  # stdin is not a terminal, no --yes
    assert refused.exit_code == 2 and "2 sessions" in refused.stderr
    assert sorted(listed(cli)) == ["old1", "old2", "recent"]

    result = cli("sessions", "prune", "--older-than", "30d", "--yes")
    assert result.exit_code == 0 and "deleted 2 sessions" in result.stderr
    assert listed(cli) == ["recent"]
    assert rdb.exists("message_store:old1") == 0 and rdb.exists("chatcli:meta:{message_store:old2}") == 0
    assert rdb.llen("message_store:recent") == 2

    nothing = cli("sessions", "prune", "--older-than", "1w", "--yes")
    assert nothing.exit_code == 0 and "no sessions" in nothing.stderr
    assert cli("sessions", "prune", "--older-than", "soon").exit_code == 2


def test_durations_parse():
    assert [parse_duration(t) for t in ["90s", "15m", "12h", "30d", "2w", "45", "1.5h"]] == [
        90,
        900,
        43200,
        2592000,
        1209600,
        45,
        5400,
    ]
    for bad in ["", "d", "-3d", "0s", "3y"]:
        with pytest.raises(UsageError):
            parse_duration(bad)
