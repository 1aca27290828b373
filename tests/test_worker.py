"""The warm worker of `ask` (chatcli.worker), through the real `chatcli` processes: what the user sees and
the exit code are those of a plain run; signals reach the answer; it holds no secret; it goes when told."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chatcli.worker import Worker, fingerprint
from tests.durable import stored
from tests.model_server import Reply


@pytest.fixture
def wenv(env, tmp_path):
    """The test user's environment with the worker on, and a TMPDIR of the test's own (the socket directory)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    values = {**env, "CHATCLI_WORKER": "1", "TMPDIR": str(tmpdir), "OPENAI_API_KEY": "sk-worker-secret-0042"}
    yield values
    subprocess.run([sys.executable, "-m", "chatcli", "server", "stop"], env=values, capture_output=True, timeout=60)


def chatcli(wenv, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatcli", *args], input=input, capture_output=True, text=True, env=wenv, timeout=60
    )


def worker_line(wenv) -> str:
    return chatcli(wenv, "server", "status").stdout.splitlines()[-1]


def wait_for_worker(wenv, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while "running (pid" not in (line := worker_line(wenv)):
        assert time.monotonic() < deadline, line
        time.sleep(0.3)
    return line


def worker_pid(wenv) -> int:
    return int(worker_line(wenv).split("pid ")[1].split(",")[0])


def long_answer_in_the_worker(wenv, model, session: str, delay: float) -> Any:
    """`chatcli ask` of a 400-word answer, streaming, run by a warm worker."""
    chatcli(wenv, "ask", "-s", "warm", "up")
    wait_for_worker(wenv)
    model.script(Reply(chunks=[f"w{i:03d} " for i in range(400)], delay=delay))
    return subprocess.Popen(
        [sys.executable, "-m", "chatcli", "ask", "-s", session, "go"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=wenv,
        bufsize=0,  # unbuffered: read(4) takes 4 bytes, and communicate() gets all the rest
    )


def test_ask_starts_a_worker_then_runs_in_it_with_its_own_stdin_stdout_and_exit_code(wenv, model, rdb):
    first = chatcli(wenv, "ask", "-s", "w", "one")
    assert (first.returncode, first.stdout) == (0, "echo: one\n"), first.stderr
    assert "0 commands" in wait_for_worker(wenv)  # started by the first ask, which answered by itself

    second = chatcli(wenv, "ask", "-s", "w", "two", input="piped text\n")
    assert (second.returncode, second.stdout) == (0, "echo: two\n\npiped text\n"), second.stderr
    assert "1 command " in worker_line(wenv)  # ... and this one ran in the worker
    assert [m["data"]["content"] for m in stored(rdb, "w")][-2:] == ["two\n\npiped text", "echo: two\n\npiped text"]

    model.script(Reply(text="no such model", status=404))
    failed = chatcli(wenv, "ask", "-s", "w", "three")
    assert failed.returncode == 4 and "Traceback" not in failed.stderr and failed.stderr.strip()
    usage = chatcli(wenv, "ask", "--temperature", "7", "x")
    assert usage.returncode == 2 and "temperature" in usage.stderr
    assert "3 commands" in worker_line(wenv)


def test_ctrl_c_to_the_client_stops_the_answer_in_the_worker_and_keeps_what_was_shown(wenv, model, rdb):
    proc = long_answer_in_the_worker(wenv, model, "int", delay=0.01)
    first = proc.stdout.read(4)  # the answer has started
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    answer = stored(rdb, "int")[1]["data"]
    assert answer["response_metadata"]["chatcli"] == {"interrupted": True}
    assert (first + rest).decode().strip() == answer["content"].strip()
    assert 0 < len(answer["content"].split()) < 400
    assert "1 command " in worker_line(wenv)


def test_a_killed_client_hangs_up_its_command_which_stores_what_it_had(wenv, model, rdb):
    proc = long_answer_in_the_worker(wenv, model, "gone", delay=0.02)
    proc.stdout.read(8)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while len(stored(rdb, "gone")) < 2:
        assert time.monotonic() < deadline, "the command of a killed client never ended"
        time.sleep(0.1)
    answer = stored(rdb, "gone")[1]["data"]
    assert answer["response_metadata"]["chatcli"] == {"interrupted": True}
    assert len(answer["content"].split()) < 400


def test_the_worker_holds_no_secret_and_server_stop_stops_it(wenv, model, home, tmp_path):
    chatcli(wenv, "ask", "-s", "s", "one")
    wait_for_worker(wenv)
    assert chatcli(wenv, "ask", "-s", "s", "two").returncode == 0  # the key went through it to a child
    pid = worker_pid(wenv)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"sk-worker-secret-0042" not in environ and b"CHATCLI_REDIS_URL" not in environ
    for path in [*home.rglob("*"), *(tmp_path / "tmp").rglob("*")]:
        if path.is_file():
            assert b"sk-worker-secret-0042" not in path.read_bytes(), path
    stopped = chatcli(wenv, "server", "stop")
    assert "ask worker stopped" in stopped.stderr
    assert "not running" in worker_line(wenv)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid):
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.1)
    assert not list((tmp_path / "tmp").rglob("worker-*.sock"))


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def test_ask_answers_by_itself_when_no_worker_can_start(wenv, model, tmp_path):
    unsafe = tmp_path / "tmp" / f"chatcli-{os.getuid()}"
    unsafe.mkdir()
    unsafe.chmod(0o777)  # others could put a socket there: no worker, and none is started
    for question in ("one", "two"):
        result = chatcli(wenv, "ask", "-s", "alone", question)
        assert (result.returncode, result.stdout) == (0, f"echo: {question}\n"), result.stderr
    assert not list(unsafe.iterdir())


def test_with_the_worker_off_ask_starts_none(wenv, model):
    off = {**wenv, "CHATCLI_WORKER": "0"}
    assert chatcli(off, "ask", "-s", "o", "one").returncode == 0
    time.sleep(0.5)
    assert "off (CHATCLI_WORKER=0)" in worker_line(off)
    assert "not running" in worker_line(wenv)


def test_the_code_fingerprint_changes_with_the_package_files(tmp_path):
    package = tmp_path / "chatcli"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = fingerprint(package)
    assert fingerprint(package) == before
    (package / "a.py").write_text("x = 22\n")
    assert fingerprint(package) != before
    (package / "b.py").write_text("")
    assert fingerprint(package) != before


def test_a_worker_retires_when_its_code_changes_or_its_home_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    home = tmp_path / "home"
    home.mkdir()
    worker = Worker(home)
    worker.path.touch()
    assert not worker._retired()
    worker.code = "another version"
    assert worker._retired()
    worker.code = fingerprint()
    home.rmdir()
    assert worker._retired()
