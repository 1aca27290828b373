"""Faults against the real parts: Redis stopping and coming back, model endpoint errors, concurrent writers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pending_turns, spool_rows, start_redis
from tests.model_server import Reply
from tests.terminal import spawn


def stored(client, session_id: str) -> list[tuple[str, str]]:
    """The session as (type, content), oldest first."""
    items = [json.loads(raw) for raw in reversed(client.lrange(f"message_store:{session_id}", 0, -1))]
    return [(m["type"], m["data"]["content"]) for m in items]


def exchange(*questions: str) -> list[tuple[str, str]]:
    return [pair for q in questions for pair in (("human", q), ("ai", f"echo: {q}"))]


# -- 1. Redis stops during a session and comes back ---------------------------------------------------


def test_redis_down_mid_session_spools_turns_and_flushes_them_in_order(cli, model, tmp_path, monkeypatch, home):
    """9 turns, Redis down for turns 3-5: every turn answered, 0 lost, order kept, user told once."""
    server = start_redis(tmp_path / "aof-redis", "--appendonly", "yes")
    monkeypatch.setenv("CHATCLI_REDIS_URL", server.url)
    questions = [f"q{i:02d}" for i in range(9)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", "chat", "-s", "spooled"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i, question in enumerate(questions):
            if i == 3:
                server.stop()
            if i == 6:
                server.restart()
            proc.stdin.write(question + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"echo: {question}\n"  # answered, Redis or not
            if i == 4:
                # Redis down: the model still had the conversation so far (read before, spooled since)
                sent = [m["content"] for m in model.last_messages()[1:]]
                assert sent == [c for _t, c in exchange(*questions[:4])] + ["q04"]
                spool = home / "spool.db"
                assert stat.S_IMODE(spool.stat().st_mode) == 0o600
                assert [row.session for row in pending_turns(home)] == ["spooled"] * 2
        proc.stdin.close()
        assert proc.wait(60) == 0
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    server.restart()  # from its AOF: what was flushed is durable
    try:
        assert stored(server.client(), "spooled") == exchange(*questions)  # 18 messages, 0 lost, in order
        # after the flush, the model saw the spooled turns as history
        assert [m["content"] for m in model.chat_requests()[6]["messages"][1:]][-3:] == ["q05", "echo: q05", "q06"]
    finally:
        server.stop()
    assert err.count("history is being spooled") == 1, err  # told once
    assert err.count("the model sees this session's 6 messages kept locally") == 1, err
    assert err.count("answers again: wrote 6 spooled messages") == 1, err
    assert "Traceback" not in err
    assert pending_turns(home) == []


def test_a_start_with_redis_down_spools_and_the_next_start_flushes(cli, model, redis_proc, home):
    redis_proc.stop()
    try:
        first = cli.run("ask", "-s", "cold", "first")
        assert first.returncode == 0, first.stderr
        assert first.stdout == "echo: first\n"
        assert "history is being spooled" in first.stderr
        second = cli.run("ask", "-s", "cold", "second")
        assert second.returncode == 0, second.stderr
        # the model sees the spooled turn as context, and the user is told where it came from
        assert [(m["role"], m["content"]) for m in model.last_messages()[1:]] == [
            ("user", "first"),
            ("assistant", "echo: first"),
            ("user", "second"),
        ]
        assert "kept locally" in second.stderr
        listing = cli.run("sessions", "list")  # not a chat: Redis down is still exit 3
        assert listing.returncode == 3 and "Traceback" not in listing.stderr
    finally:
        redis_proc.restart()
    shown = cli.run("history", "show", "cold", "--json")  # the next start flushes before reading
    assert shown.returncode == 0, shown.stderr
    messages = json.loads(shown.stdout)["messages"]
    assert [(m["type"], m["data"]["content"]) for m in messages] == exchange("first", "second")
    assert "answers again: wrote 4 spooled messages" in shown.stderr
    assert pending_turns(home) == []


def test_two_chats_spooling_at_once_while_redis_is_down_lose_nothing(cli, model, redis_proc, home):
    lines = {p: [f"{p}-{i:02d}" for i in range(15)] for p in ("s1", "s2")}
    redis_proc.stop()
    try:
        procs = {
            p: subprocess.Popen(
                [sys.executable, "-m", "chatcli", "chat", "-s", "both"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in lines
        }
        outputs = {p: proc.communicate("\n".join(lines[p]) + "\n", timeout=60) for p, proc in procs.items()}
    finally:
        redis_proc.restart()
    for p, proc in procs.items():
        assert proc.returncode == 0, outputs[p][1]
        assert outputs[p][0].splitlines() == [f"echo: {q}" for q in lines[p]]
        assert outputs[p][1].count("history is being spooled") == 1
    assert cli.run("sessions", "list").returncode == 0  # the next start flushes
    messages = stored(redis_proc.client(), "both")
    assert len(messages) == 60  # 0 lost
    for i in range(0, 60, 2):
        assert messages[i][0] == "human" and messages[i + 1] == ("ai", f"echo: {messages[i][1]}")
    for p in lines:
        assert [c for kind, c in messages if kind == "human" and c.startswith(p)] == lines[p]
    assert pending_turns(home) == []


def test_an_old_spool_is_taken_over_its_refused_turn_set_aside_and_its_torn_line_kept(cli, model, rdb, home, redis_url):
    """A spool.jsonl of an earlier chatcli: readable records are sent, a record Redis refuses for good (a key
    of another type) is set aside and listed, a torn last line is kept and named, never deleted."""

    def record(session: str, text: str) -> str:
        entries = [{"type": "human", "data": {"content": text}}, {"type": "ai", "data": {"content": f"echo: {text}"}}]
        return json.dumps({"target": redis_url, "prefix": "message_store:", "session": session, "entries": entries})

    rdb.set("message_store:typed", "not a list")  # another program took the key: LPUSH gets WRONGTYPE
    legacy = home / "spool.jsonl"
    legacy.write_text(record("fine", "one") + "\n" + record("typed", "two") + "\n" + '{"torn": ')
    result = cli("history", "show", "fine", "--json")
    assert result.exit_code == 0, result.stderr
    assert [m["data"]["content"] for m in json.loads(result.stdout)["messages"]] == ["one", "echo: one"]
    assert "wrote 2 spooled messages" in result.stderr
    assert "Redis refused a spooled turn of session 'typed'" in result.stderr
    assert "1 records of the spool" in result.stderr and "cannot be read" in result.stderr
    assert not legacy.exists()  # taken over: its records live in spool.db now
    rows = {row.state: row for row in spool_rows(home)}
    assert sorted(rows) == ["set_aside", "unreadable"]
    assert rows["set_aside"].session == "typed" and "WRONGTYPE" in (rows["set_aside"].reason or "")
    assert rows["unreadable"].text == '{"torn": '  # the bytes are kept as they were
    assert stat.S_IMODE((home / "spool.db").stat().st_mode) == 0o600
    # the next commands do not apply it again
    meta_before = rdb.hgetall("chatcli:meta:{message_store:typed}")
    for _ in range(2):
        again = cli("history", "show", "fine")
        assert again.exit_code == 0 and "Redis refused" not in again.stderr
    assert rdb.hgetall("chatcli:meta:{message_store:typed}") == meta_before
    assert rdb.get("message_store:typed") == b"not a list"
    assert rdb.llen("message_store:fine") == 2  # sent once, not again


# -- 2. The model endpoint fails: one clear line, the chat goes on, a failed turn stores nothing ----------

RETRY_FAST = {"Retry-After": "0.1"}


@pytest.mark.parametrize(
    ("replies", "requests", "line"),
    [
        pytest.param([Reply(status=401, text="bad key")], 1, "rejected the API key (HTTP 401)", id="401"),
        pytest.param(
            [Reply(status=429, headers=RETRY_FAST)] * 3, 3, "rate limiting (HTTP 429), still after retries", id="429"
        ),
        pytest.param([Reply(status=500, text="boom", headers=RETRY_FAST)] * 3, 3, "failed with HTTP 500", id="500"),
        pytest.param([Reply(hang=True)] * 3, 3, "within 0.5 s (CHATCLI_TIMEOUT)", id="timeout"),
    ],
)
def test_a_failed_model_call_is_one_line_the_chat_goes_on_and_nothing_is_stored(
    cli, model, rdb, monkeypatch, replies, requests, line
):
    monkeypatch.setenv("CHATCLI_TIMEOUT", "0.5")
    model.script(*replies)
    result = cli("chat", "-s", "faulty", input="doomed\nfine\n")
    assert result.exit_code == 4
    assert result.stdout == "echo: fine\n"  # the next line was answered
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and line in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    # 429/5xx/timeouts were retried by the client (max_retries=2) before giving up
    asked = [r["messages"][-1]["content"] for r in model.chat_requests()]
    assert asked == ["doomed"] * requests + ["fine"]
    assert stored(rdb, "faulty") == exchange("fine")  # the failed turn stored nothing


def test_a_rate_limit_is_retried_and_then_answered_once(cli, model, rdb):
    model.script(Reply(status=429, headers=RETRY_FAST), Reply(status=503, headers=RETRY_FAST))
    result = cli("chat", "-s", "retried", input="patience\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: patience\n" and "Error" not in result.stderr
    assert len(model.chat_requests()) == 3
    assert stored(rdb, "retried") == exchange("patience")


def test_a_refused_connection_is_one_line_per_turn_and_the_chat_goes_on(cli, model, rdb, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    result = cli("chat", "-s", "refused", input="one\ntwo\n")
    assert result.exit_code == 4
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 2 and all("could not open the connection to the model API" in e for e in errors)
    assert "Traceback" not in result.stderr
    assert rdb.exists("message_store:refused") == 0


def test_a_stream_dropped_mid_answer_keeps_the_text_flags_it_and_the_chat_goes_on(cli, model, rdb):
    model.script(Reply(chunks=["half ", "an ", "answer"], drop_after=2))
    result = cli("chat", "-s", "dropped", input="first\nsecond\n")
    assert result.exit_code == 4
    assert result.stdout == "half an \necho: second\n"
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "connection to the model API" in errors[0], result.stderr
    assert stored(rdb, "dropped") == [("human", "first"), ("ai", "half an "), *exchange("second")]
    partial = json.loads(rdb.lindex("message_store:dropped", 2))
    assert "error" in partial["data"]["response_metadata"]["chatcli"]


# -- 3. Two chat processes on one session at once --------------------------------------------------------


def test_two_chats_on_one_session_at_once_lose_nothing_and_keep_each_answer_next_to_its_question(
    cli, model, rdb, monkeypatch
):
    monkeypatch.setenv("CHATCLI_MAX_HISTORY_TOKENS", "64")  # small windows: this measures writes, not reads
    lines = {p: [f"{p}-{i:03d}" for i in range(500)] for p in ("p1", "p2")}
    procs = {
        p: subprocess.Popen(
            [sys.executable, "-m", "chatcli", "chat", "-s", "shared"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for p in lines
    }
    outputs = {p: proc.communicate("\n".join(lines[p]) + "\n", timeout=110) for p, proc in procs.items()}
    for p, proc in procs.items():
        assert proc.returncode == 0, outputs[p][1]
        assert outputs[p][0].splitlines() == [f"echo: {q}" for q in lines[p]]
    messages = stored(rdb, "shared")
    assert len(messages) == 2000  # none lost
    questions = [i for i, (kind, _c) in enumerate(messages) if kind == "human"]
    assert len(questions) == 1000
    for i in questions:  # every question is immediately followed by its own answer
        assert messages[i + 1] == ("ai", f"echo: {messages[i][1]}")
    for p in lines:  # and each process's questions are in the order it asked them
        assert [c for kind, c in messages if kind == "human" and c.startswith(p)] == lines[p]


# -- files under CHATCLI_HOME ----------------------------------------------------------------------------


def test_files_under_chatcli_home_are_the_users_alone(cli, model, monkeypatch, tmp_path):
    """A REPL on the embedded server, which stops mid-session: home, server data, socket, input history and
    spool are all created 0700/0600 (and the turn made meanwhile is answered and spooled)."""
    import pexpect

    from chatcli.redis_server import socket_path, stop_embedded

    home = tmp_path / "fresh" / "chatcli-home"  # does not exist yet: chatcli creates it
    monkeypatch.delenv("CHATCLI_REDIS_URL")
    monkeypatch.setenv("CHATCLI_HOME", str(home))
    child = spawn(["chat", "-s", "modes"], dict(os.environ))
    try:
        child.expect_exact("modes>")
        child.sendline("hello")
        child.expect_exact("echo: hello")
        child.expect_exact("modes>")
        assert stop_embedded(home)
        child.sendline("again")
        child.expect_exact("echo: again")
        child.expect_exact("history is being spooled")  # after the answer, not under it
        child.expect_exact("modes>")
        child.sendline("/undo")  # needs Redis: one line, and the REPL stays
        child.expect_exact("/undo: lost the connection to Redis")
        child.expect_exact("modes>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        stop_embedded(home)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(home) == 0o700
    assert mode(home / "redis") == 0o700
    assert mode(socket_path(home).parent) == 0o700
    assert mode(home / "input_history") == 0o600
    assert "again" in (home / "input_history").read_text()
    assert mode(home / "spool.db") == 0o600 and mode(home / "spool.lock") == 0o600
    loose = [
        str(p.relative_to(home))
        for p in home.rglob("*")
        if (p.is_dir() and mode(p) != 0o700) or (p.is_file() and mode(p) & 0o077)
    ]
    assert loose == []


def test_in_the_repl_a_failed_turn_is_one_line_stores_nothing_and_is_one_up_arrow_away(cli, model, rdb):
    import pexpect

    model.script(Reply(status=401, text="no"))
    child = spawn(["chat", "-s", "repl-fail"], dict(os.environ))
    try:
        child.expect_exact("repl-fail>")
        child.sendline("lost question")
        child.expect_exact("rejected the API key (HTTP 401)")
        child.expect_exact("repl-fail>")  # the REPL stays
        assert rdb.exists("message_store:repl-fail") == 0  # the failed turn stored nothing
        child.send("\x1b[A")  # Up: the question is back in the input line
        child.expect_exact("lost question")
        child.send("\r")
        child.expect_exact("echo: lost question")
        child.expect_exact("repl-fail>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert stored(rdb, "repl-fail") == exchange("lost question")
