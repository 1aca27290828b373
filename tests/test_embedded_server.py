"""The embedded redis-server chatcli starts when no Redis URL is set."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chatcli.redis_server import socket_path, stop_embedded


@pytest.fixture
def embedded(cli, monkeypatch, home):
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    yield home
    stop_embedded(home)


def redis_processes_for(sock: Path) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"redis-server" in a for a in args[:1]) and str(sock).encode() in b" ".join(args):
            pids.append(int(cmdline.parent.name))
    return pids


def test_sessions_survive_a_restart_of_the_embedded_server(cli, model, embedded):
    first = cli.run("ask", "-s", "e1", "remember me")
    assert first.returncode == 0, first.stderr

    status = cli.run("server", "status")
    assert status.returncode == 0
    assert "embedded server: running" in status.stdout
    assert str(socket_path(embedded)) in status.stdout

    data = embedded / "redis"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    aof = data / "appendonly.aof" if (data / "appendonly.aof").exists() else data / "appendonlydir"  # Redis 7
    assert stat.S_IMODE(aof.stat().st_mode) & 0o077 == 0

    stopped = cli.run("server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert "embedded server: stopped" in cli.run("server", "status").stdout
    assert redis_processes_for(socket_path(embedded)) == []

    shown = cli.run("history", "show", "e1", "--json")  # starts the server again, from its AOF
    assert shown.returncode == 0, shown.stderr
    assert "remember me" in shown.stdout and "echo: remember me" in shown.stdout


def test_two_commands_starting_at_once_start_one_server(cli, model, embedded):
    import os

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chatcli", "sessions", "list", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ),
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert len(redis_processes_for(socket_path(embedded))) == 1


def test_a_deep_home_falls_back_to_a_short_socket_path(cli, model, monkeypatch, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    monkeypatch.setenv("CHATCLI_HOME", str(deep))
    try:
        result = cli.run("ask", "-s", "deep", "hi")
        assert result.returncode == 0, result.stderr
        sock = socket_path(deep)
        assert len(str(sock)) <= 107 and not str(sock).startswith(str(deep))
        data = deep / "redis"  # the data still lives under CHATCLI_HOME (appendonlydir/ on Redis 7)
        assert (data / "appendonly.aof").exists() or (data / "appendonlydir").is_dir()
    finally:
        stop_embedded(deep)


def test_the_embedded_server_listens_on_no_tcp_port(cli, model, embedded):
    assert cli.run("sessions", "list").returncode == 0
    pid = redis_processes_for(socket_path(embedded))[0]
    inodes = {Path(f).resolve().name for f in Path(f"/proc/{pid}/fd").iterdir() if "socket" in str(Path(f).resolve())}
    listening_tcp = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and f"socket:[{fields[9]}]" in inodes:  # 0A = LISTEN
                listening_tcp.append(fields[1])
    assert listening_tcp == []
