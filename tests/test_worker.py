"""The warm worker of `ask` (chatcli.worker), through the real `chatcli` processes: what the user sees and
the exit code are those of a plain run; signals reach the answer; it holds no secret; it goes when told."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
    # a short TMPDIR of the test's own: the socket directory's path must leave room for a unix socket name,
    # which pytest's deep tmp_path may not (see test_with_a_tmpdir_too_long_for_a_socket...)
    tmpdir = Path(tempfile.mkdtemp(prefix="cw-"))
    values = {**env, "CHATCLI_WORKER": "1", "TMPDIR": str(tmpdir), "OPENAI_API_KEY": "sk-worker-secret-0042"}
    yield values
    subprocess.run([sys.executable, "-m", "chatcli", "server", "stop"], env=values, capture_output=True, timeout=60)
    shutil.rmtree(tmpdir, ignore_errors=True)


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
        # a job of its own, as a shell makes it: the kernel drops a Ctrl-Z sent to an orphaned process group
        # (one whose parents are all in it or in another session: pytest run by setsid, say)
        process_group=0,
    )


def test_ask_starts_a_worker_then_runs_in_it_with_its_own_stdin_stdout_and_exit_code(wenv, model, rdb):
    first = chatcli(wenv, "ask", "-s", "w", "one")
    assert (first.returncode, first.stdout) == (0, "echo: one\n"), first.stderr
    assert "0 commands" in wait_for_worker(wenv)  # started by the first ask, which answered by itself
    assert Path(wenv["CHATCLI_HOME"], "worker.log").stat().st_mode & 0o777 == 0o600  # the user's alone

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
    for path in [*home.rglob("*"), *Path(wenv["TMPDIR"]).rglob("*")]:
        if path.is_file():
            assert b"sk-worker-secret-0042" not in path.read_bytes(), path
    stopped = chatcli(wenv, "server", "stop")
    assert "ask worker stopped" in stopped.stderr
    assert "not running" in worker_line(wenv)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid):
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.1)
    assert not list(Path(wenv["TMPDIR"]).rglob("w-*.sock"))


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def test_ask_answers_by_itself_when_no_worker_can_start(wenv, model, tmp_path):
    unsafe = Path(wenv["TMPDIR"]) / f"chatcli-{os.getuid()}"
    unsafe.mkdir()
    unsafe.chmod(0o777)  # others could put a socket there: no worker, and none is started
    for question in ("one", "two"):
        result = chatcli(wenv, "ask", "-s", "alone", question)
        assert (result.returncode, result.stdout) == (0, f"echo: {question}\n"), result.stderr
    assert not list(unsafe.iterdir())


def test_with_a_tmpdir_too_long_for_a_socket_ask_answers_and_starts_no_worker(wenv, model, home, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    long_tmp = {**wenv, "TMPDIR": str(deep)}
    for question in ("one", "two"):
        result = chatcli(long_tmp, "ask", "-s", "deep", question)
        assert (result.returncode, result.stdout) == (0, f"echo: {question}\n"), result.stderr
    assert not (home / "worker.log").exists()  # none was started (each would import everything, then fail)
    assert "not running" in worker_line(long_tmp)


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


def warm(wenv) -> int:
    """A worker started and ready (the first ask answers by itself); its pid."""
    chatcli(wenv, "ask", "-s", "warm", "up")
    wait_for_worker(wenv)
    return worker_pid(wenv)


def command_in_the_worker(wenv, worker: int, session: str) -> Any:
    """`chatcli ask` in the background, once a child of the worker runs it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", "ask", "-s", session, "go"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=wenv,
    )
    deadline = time.monotonic() + 30
    while not Path(f"/proc/{worker}/task/{worker}/children").read_text().split():
        assert time.monotonic() < deadline, "the command never reached the worker"
        time.sleep(0.05)
    return proc


def test_a_request_too_big_for_a_child_runs_by_itself_instead_of_failing(wenv, model):
    warm(wenv)
    # 1.4 MB of environment, under the kernel's limit, is more than 4 MB as JSON (\\u00e9 for each é)
    huge = {**wenv, **{f"CHATCLI_TEST_BIG{i}": "é" * 60_000 for i in range(12)}}
    result = chatcli(huge, "ask", "-s", "big", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")


def test_usage_lines_name_the_program_as_a_plain_run_does(wenv, model):
    warm(wenv)
    # the `chatcli` console script (its __main__ is no package), not `python -m chatcli`
    script = "import sys; from chatcli.worker import launch; sys.argv[0] = 'chatcli'; launch()"
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, "ask", "--temperature", "9", "x"],
            capture_output=True,
            text=True,
            env={**wenv, "CHATCLI_WORKER": worker},
            timeout=60,
        )
        for worker in ("0", "1")
    ]
    plain, warmed = runs
    assert plain.returncode == warmed.returncode == 2
    assert plain.stderr.startswith("Usage: chatcli ask ")
    assert warmed.stderr == plain.stderr
    assert "1 command " in worker_line(wenv)  # the second ran in the worker


def test_a_killed_worker_leaves_its_running_command_to_end_and_say_its_exit_code(wenv, model, rdb):
    proc = long_answer_in_the_worker(wenv, model, "orphan", delay=0.01)
    first = proc.stdout.read(4)  # the answer has started, in a child of the worker
    os.kill(worker_pid(wenv), signal.SIGKILL)
    rest, err = proc.communicate(timeout=30)
    # the client waited for the command, which ran to its end: all of the answer, exit 0, no false alarm
    assert (proc.returncode, err) == (0, b"")
    assert (first + rest).decode().split() == [f"w{i:03d}" for i in range(400)]
    assert len(stored(rdb, "orphan")) == 2


def test_a_pipe_reading_the_answer_ends_before_the_title_is_written_as_in_a_plain_run(wenv, model):
    worker = warm(wenv)
    model.script(Reply(text="the answer"), Reply(hang=True))  # the title (CHATCLI_AUTO_TITLE) never comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", "ask", "-s", "titled", "go"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**wenv, "CHATCLI_AUTO_TITLE": "1", "CHATCLI_TIMEOUT": "3"},
    )
    assert proc.stdout.read() == b"the answer\n"
    # the output ended while the command still waits for its title: its child is alive, not done
    children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
    assert [pid for pid in children if b"zombie" not in _state(int(pid))]
    assert proc.wait(timeout=60) == 0


def test_ctrl_z_stops_the_answer_in_the_worker_and_fg_continues_it(wenv, model):
    proc = long_answer_in_the_worker(wenv, model, "tstp", delay=0.01)
    first = proc.stdout.read(4)
    worker = worker_pid(wenv)
    (child,) = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
    proc.send_signal(signal.SIGTSTP)
    deadline = time.monotonic() + 20
    while b"(stopped)" not in _state(proc.pid) or b"(stopped)" not in _state(int(child)):
        assert time.monotonic() < deadline, (_state(proc.pid)[:60], _state(int(child))[:60])
        time.sleep(0.05)
    proc.send_signal(signal.SIGCONT)  # `fg`
    rest, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, b"")
    assert (first + rest).decode().split() == [f"w{i:03d}" for i in range(400)]


def test_a_command_killed_by_a_signal_kills_its_client_too_as_in_a_plain_run(wenv, model):
    proc = long_answer_in_the_worker(wenv, model, "k9", delay=0.01)
    proc.stdout.read(4)
    worker = worker_pid(wenv)
    (child,) = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
    os.kill(int(child), signal.SIGKILL)
    proc.communicate(timeout=30)
    # the shell sees a process killed by SIGKILL ("Killed"; it restores the terminal's settings), not exit 137
    assert proc.returncode == -signal.SIGKILL


def test_a_new_worker_comes_while_a_killed_workers_command_still_runs(wenv, model):
    worker = warm(wenv)
    model.script(Reply(hang=True))  # the model never answers this one
    orphan = command_in_the_worker(wenv, worker, "hung")
    os.kill(worker, signal.SIGKILL)
    assert chatcli(wenv, "ask", "-s", "next", "hi").returncode == 0  # by itself, and it starts a worker ...
    assert "0 commands" in wait_for_worker(wenv, timeout=30)  # ... which can take the place of the killed one
    assert orphan.poll() is None  # while the killed worker's command still runs
    orphan.send_signal(signal.SIGINT)
    assert orphan.wait(timeout=30) == 130


def test_server_stop_during_a_command_lets_it_end_and_takes_no_more(wenv, model, tmp_path):
    worker = warm(wenv)
    model.script(Reply(text="slow answer", first_delay=600))  # ends when the test interrupts it
    running = command_in_the_worker(wenv, worker, "slow")
    assert "ask worker stopped" in chatcli(wenv, "server", "stop").stderr
    # it waits for its command, but its socket is gone at once: no client waits on it (nor does `server
    # status`, for 10 s), and its loop does not spin on connections it will never accept
    assert not list(Path(wenv["TMPDIR"]).rglob("w-*.sock"))
    assert chatcli(wenv, "ask", "-s", "next", "hi").stdout == "echo: hi\n"
    assert "not running" in worker_line(wenv)
    assert running.poll() is None and Path(f"/proc/{worker}").exists()
    running.send_signal(signal.SIGINT)
    assert running.wait(timeout=30) == 130
