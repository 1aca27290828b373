"""chat and ask end to end: real CLI, real Redis, real HTTP to the local model server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import redis

from tests.model_server import Reply


def roles_and_contents(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


@pytest.mark.any_redis
def test_bob_is_remembered_across_two_processes(cli, model):
    model.responder = lambda msgs: (
        "Your name is bob." if any("I'm bob" in m["content"] for m in msgs[:-1]) else "Hello bob!"
    )
    first = cli.run("chat", "--session", "foo", input="Hi! I'm bob\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Hello bob!\n"

    second = cli.run("chat", "--session", "foo", input="Whats my name\n")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "Your name is bob.\n"
    assert roles_and_contents(model.last_messages()) == [
        ("system", "You are a helpful assistant."),
        ("user", "Hi! I'm bob"),
        ("assistant", "Hello bob!"),
        ("user", "Whats my name"),
    ]
    # streamed, with usage requested (stream_usage=True)
    request = model.chat_requests()[-1]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


@pytest.mark.any_redis
def test_scripted_chat_answers_each_line_in_turn(cli, model):
    result = cli("chat", "-s", "s1", input="one\n\ntwo\nthree\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: one\necho: two\necho: three\n"
    contents = [roles_and_contents(r["messages"]) for r in model.chat_requests()]
    assert contents[2][1:] == [
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
    ]


@pytest.mark.any_redis
def test_chat_without_session_generates_one_and_says_which(cli, model, rdb):
    result = cli.run("chat", input="hello\n")
    assert result.returncode == 0
    assert result.stdout == "echo: hello\n"  # stdout stays clean for pipes
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("session: ")]
    assert len(line) == 1
    session_id = line[0].removeprefix("session: ")
    assert rdb.llen(f"message_store:{session_id}") == 2


@pytest.mark.any_redis
def test_continue_resumes_the_most_recently_active_session(cli, model):
    cli("ask", "--session", "older", "first")
    time.sleep(0.01)
    cli("ask", "--session", "newer", "second")
    result = cli("chat", "--continue", input="again\n")
    assert result.exit_code == 0, result.stderr
    assert roles_and_contents(model.last_messages())[1:] == [
        ("user", "second"),
        ("assistant", "echo: second"),
        ("user", "again"),
    ]


def test_continue_with_no_sessions_is_not_found(cli, model):
    result = cli("chat", "--continue", input="x\n")
    assert result.exit_code == 5
    assert "no session to continue" in result.stderr


@pytest.mark.any_redis
def test_ask_reads_stdin_and_appends_it_to_the_question(cli, model):
    result = cli("ask", "--session", "q", "Summarise:", input="line one\nline two\n")
    assert result.exit_code == 0, result.stderr
    assert model.last_messages()[-1] == {"role": "user", "content": "Summarise:\n\nline one\nline two"}
    piped_only = cli("ask", "--session", "q2", input="just stdin\n")
    assert piped_only.stdout == "echo: just stdin\n"


def test_ask_with_nothing_to_ask_is_a_usage_error(cli, model):
    result = cli("ask", "--session", "q", input="")
    assert result.exit_code == 2
    assert "nothing to ask" in result.stderr
    assert model.chat_requests() == []


@pytest.mark.any_redis
def test_options_reach_the_model(cli, model, rdb):
    result = cli("ask", "-s", "opts", "--model", "test-model", "--temperature", "0.3", "--system", "Be terse.", "hi")
    assert result.exit_code == 0, result.stderr
    request = model.chat_requests()[-1]
    assert request["model"] == "test-model"
    assert request["temperature"] == 0.3
    assert request["messages"][0] == {"role": "system", "content": "Be terse."}
    # the system prompt is stored with the session (metadata, not a list element) and used next time
    assert rdb.hget("chatcli:meta:{message_store:opts}", "system") == b"Be terse."
    assert rdb.llen("message_store:opts") == 2
    cli("ask", "-s", "opts", "again")
    assert model.chat_requests()[-1]["messages"][0] == {"role": "system", "content": "Be terse."}


def test_base_url_flag_overrides_the_environment(cli, model, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # closed port
    result = cli("ask", "-s", "b", "--base-url", model.base_url, "hi")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "echo: hi\n"


def test_model_text_is_printed_raw_to_a_pipe_never_as_markup(cli, model, rdb):
    text = "[bold red]not bold[/bold red] and **markdown** stays \x1b[31mraw\x1b[0m"
    model.script(Reply(text=text))
    result = cli.run("ask", "-s", "raw", "hi")
    assert result.stdout == text + "\n"
    stored = json.loads(rdb.lindex("message_store:raw", 0))
    assert stored["data"]["content"] == text  # stored unchanged


@pytest.mark.any_redis
def test_usage_and_finish_reason_are_kept_in_the_stored_answer(cli, model, rdb):
    model.script(Reply(text="counted answer", usage=(11, 7)))
    cli("ask", "-s", "u", "hi")
    answer = json.loads(rdb.lindex("message_store:u", 0))
    assert answer["type"] == "ai"
    assert answer["data"]["usage_metadata"] == {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    assert answer["data"]["response_metadata"]["finish_reason"] == "stop"
    meta = rdb.hgetall("chatcli:meta:{message_store:u}")
    assert meta[b"input_tokens"] == b"11" and meta[b"output_tokens"] == b"7"


@pytest.mark.any_redis
def test_a_cut_off_stream_is_flagged_to_the_user_and_in_the_metadata(cli, model, rdb):
    model.script(Reply(text="half an ans", finish_reason=None))
    result = cli("ask", "-s", "cut", "hi")
    assert result.stdout == "half an ans\n"
    assert "cut off" in result.stderr
    answer = json.loads(rdb.lindex("message_store:cut", 0))
    assert answer["data"]["content"] == "half an ans"
    assert answer["data"]["response_metadata"]["chatcli"] == {"cut_off": True}


@pytest.mark.any_redis
def test_missing_api_key_is_one_line_exit_4_before_anything_runs(cli, model, monkeypatch, rdb):
    monkeypatch.delenv("OPENAI_BASE_URL")
    result = cli.run("chat", "--session", "k", input="hi\n")
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1
    assert "OPENAI_API_KEY" in result.stderr and ".env" in result.stderr
    assert "Traceback" not in result.stderr
    assert model.chat_requests() == []
    assert rdb.dbsize() == 0


def test_api_key_from_dotenv_is_sent(cli, model, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL")
    (tmp_path / "cwd" / ".env").write_text(f'OPENAI_API_KEY="sk-test-123"\nOPENAI_BASE_URL={model.base_url}\n')
    result = cli.run("ask", "-s", "dotenv", "hi")
    assert result.returncode == 0, result.stderr
    assert model.chat_requests()[-1] is not None
    assert model.requests[-1]["headers"]["authorization"] == "Bearer sk-test-123"


@pytest.mark.any_redis
def test_model_api_error_is_one_line_exit_4_and_stores_nothing(cli, model, rdb):
    model.script(Reply(status=401, text="bad key"))
    result = cli.run("ask", "-s", "e", "hi")
    assert result.returncode == 4
    assert "401" in result.stderr and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert rdb.exists("message_store:e") == 0


def test_unreachable_redis_is_exit_3_fast_and_one_line(cli, model):
    closed = "redis://127.0.0.1:9/0"
    started = time.monotonic()
    result = cli.run("sessions", "list", "--redis-url", closed)
    elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 10  # the 2 s figure is measured in benchmarks/, this only guards a hang


def test_redis_that_never_answers_is_exit_3(cli, model):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections, never answers
        port = listener.getsockname()[1]
        result = cli.run("ask", "-s", "x", "hi", "--redis-url", f"redis://:secretpw@127.0.0.1:{port}/0")
    assert result.returncode == 3
    assert "secretpw" not in result.stderr  # the password is redacted
    assert model.chat_requests() == []


def test_redis_going_away_mid_session_is_reported_not_a_traceback(cli, model, redis_proc):
    redis_proc.stop()
    try:
        result = cli.run("history", "show", "foo")
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
    finally:
        redis_proc.restart()


@pytest.mark.any_redis
def test_invalid_session_id_is_a_usage_error(cli, model, rdb):
    for bad in ["", "a{b}", "line\nbreak", "x" * 300, " padded "]:
        result = cli("ask", "--session", bad, "hi")
        assert result.exit_code == 2, bad
        assert "session id" in result.stderr
    assert model.chat_requests() == []
    assert rdb.dbsize() == 0


@pytest.mark.any_redis
def test_ids_with_glob_characters_are_literal(cli, model, rdb):
    cli("ask", "-s", "a*", "one")
    cli("ask", "-s", "ab", "two")
    result = cli("sessions", "delete", "a*")
    assert result.exit_code == 0
    assert rdb.exists("message_store:ab") == 1
    assert rdb.exists("message_store:a*") == 0


def test_version_and_help(cli):
    from chatcli import __version__

    assert cli("--version").stdout == f"chatcli {__version__}\n"
    commands = ["chat", "ask", "history show", "history export", "sessions list", "sessions delete"]
    commands += ["sessions clear", "server status", "server stop"]
    for args in [["--help"]] + [[*c.split(), "--help"] for c in commands]:
        result = cli(*args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout


@pytest.mark.parametrize("value", ["soon", "inf", "0", "-3"])
def test_settings_errors_are_usage_errors(cli, model, monkeypatch, value):
    monkeypatch.setenv("CHATCLI_TIMEOUT", value)
    result = cli("ask", "-s", "x", "hi")
    assert result.exit_code == 2
    assert "CHATCLI_TIMEOUT" in result.stderr
    assert model.chat_requests() == []


def test_stdin_that_is_not_utf8_is_read_with_replacement(cli, model):
    result = subprocess.run(
        [sys.executable, "-m", "chatcli", "ask", "-s", "latin1"], input=b"caf\xe9 cr\xe8me\n", capture_output=True
    )
    assert result.returncode == 0, result.stderr
    assert model.last_messages()[-1]["content"] == "caf\ufffd cr\ufffdme"


def interrupt_after_first_text(args: list[str], stdin: bytes | None = None) -> tuple[int, bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if stdin is not None:
        proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # closed: communicate() must not flush it
    first = proc.stdout.read(4)  # the answer has started
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err
    return proc.returncode, first + rest


def test_ctrl_c_during_ask_keeps_the_partial_answer_and_exits_130(cli, model, rdb):
    model.script(Reply(chunks=[f"w{i:03d} " for i in range(400)], delay=0.01))
    code, out = interrupt_after_first_text(["ask", "-s", "int", "go"])
    assert code == 130
    answer = json.loads(rdb.lindex("message_store:int", 0))
    assert answer["data"]["response_metadata"]["chatcli"] == {"interrupted": True}
    assert out.decode().strip() == answer["data"]["content"].strip()  # stored == shown
    assert 0 < len(answer["data"]["content"].split()) < 400


def test_ctrl_c_ends_a_scripted_chat(cli, model, rdb):
    model.script(Reply(chunks=[f"w{i:03d} " for i in range(400)], delay=0.01))
    code, _ = interrupt_after_first_text(["chat", "-s", "script"], stdin=b"one\ntwo\nthree\n")
    assert code == 130
    assert [r["messages"][-1]["content"] for r in model.chat_requests()] == ["one"]  # two, three never sent
    assert rdb.llen("message_store:script") == 2


def test_timeout_setting_bounds_a_hanging_model(cli, model, monkeypatch, rdb):
    monkeypatch.setenv("CHATCLI_TIMEOUT", "0.5")
    model.script(Reply(hang=True), Reply(hang=True), Reply(hang=True))
    result = cli("ask", "-s", "slow", "hi")
    assert result.exit_code == 4
    assert "CHATCLI_TIMEOUT" in result.stderr
    assert rdb.exists("message_store:slow") == 0


@pytest.mark.any_redis
def test_a_stream_dropped_after_text_is_stored_as_received_and_marked(cli, model, rdb):
    model.script(Reply(chunks=["partial ", "answer ", "never finished"], drop_after=2))
    result = cli("ask", "-s", "drop", "hi")
    assert result.exit_code == 4
    assert result.stdout.startswith("partial answer ")
    answer = json.loads(rdb.lindex("message_store:drop", 0))
    assert answer["data"]["content"] == "partial answer "
    assert "error" in answer["data"]["response_metadata"]["chatcli"]


def test_history_window_and_trimming(cli, model, rdb, monkeypatch):
    """A turn reads one window of the newest messages and sends only what fits the token budget."""
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    for i in range(300):
        question, answer = f"question {i:03d} " + "x" * 40, f"answer {i:03d} " + "y" * 60
        for m in (HumanMessage(content=question), AIMessage(content=answer)):
            rdb.lpush("message_store:long", json.dumps(message_to_dict(m)))
    monkeypatch.setenv("CHATCLI_MAX_HISTORY_TOKENS", "200")
    monitor_conn = redis.Redis.from_url(cli.environ["CHATCLI_REDIS_URL"], decode_responses=True)
    with monitor_conn.monitor() as monitor:
        result = cli("ask", "-s", "long", "newest")
        commands = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cmd = monitor.next_command()["command"]
            commands.append(cmd)
            if cmd.startswith("ZADD"):  # the script's last command: the index row
                break
    assert result.exit_code == 0, result.stderr
    sent = model.last_messages()
    # 200 tokens at ~4 chars a token (+3 a message): a question costs 16, an answer 20, so the newest
    # 5 exchanges fit, and one more answer, dropped: the history starts on a user message
    assert [m["content"].split()[:2] for m in sent[1:-1]] == [
        [kind, f"{i:03d}"] for i in range(295, 300) for kind in ("question", "answer")
    ]
    assert sent[-1] == {"role": "user", "content": "newest"}
    reads = [c for c in commands if c.startswith("LRANGE")]
    assert reads == ["LRANGE message_store:long 0 15"]  # one windowed read, never the whole list
    write = commands[[c.startswith("EVAL") for c in commands].index(True) :]  # the turn: one script
    assert sum(c.startswith("EVAL") for c in commands) == 1
    assert any(c.startswith("LPUSH message_store:long ") for c in write)
    assert rdb.llen("message_store:long") == 602


def test_a_chat_of_short_messages_reads_its_window_twice_once_then_once_a_turn(cli, model, rdb, monkeypatch):
    """The first read is sized for ~116-character messages; a chat remembers what the last turn used."""
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    for i in range(150):
        for m in (HumanMessage(content=f"q{i:03d}"), AIMessage(content=f"a{i:03d}")):  # 4 tokens each
            rdb.lpush("message_store:short", json.dumps(message_to_dict(m)))
    monkeypatch.setenv("CHATCLI_MAX_HISTORY_TOKENS", "200")  # reads 16 first, 25 at most
    monitor_conn = redis.Redis.from_url(cli.environ["CHATCLI_REDIS_URL"], decode_responses=True)
    with monitor_conn.monitor() as monitor:
        result = cli("chat", "-s", "short", input="one\ntwo\nthree\n")
        commands: list[str] = []
        deadline = time.monotonic() + 5
        while sum(c.startswith("EVAL") for c in commands) < 3 and time.monotonic() < deadline:
            command = monitor.next_command()["command"]
            if "chatcli:answering:" not in command:  # the presence a turn releases (chatcli.live), not a turn
                commands.append(command)
    assert result.exit_code == 0, result.stderr
    reads = [c.removeprefix("LRANGE message_store:short ") for c in commands if c.startswith("LRANGE")]
    assert reads == ["0 15", "0 24", "0 24", "0 24"]
    # what the budget holds of the newest 25, from a question on; the second and third turns' own
    # exchanges are among them
    sent = model.last_messages()
    assert [m["content"] for m in sent[-5:]] == ["one", "echo: one", "two", "echo: two", "three"]
    assert len(sent) == 1 + 24 + 1


def test_ask_with_stdin_closed_answers_the_question_without_a_traceback(cli, model):
    """`chatcli ask q <&-`: Python starts with sys.stdin None; it reads as empty input."""
    result = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -m chatcli ask -s closed "just this" <&-'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "echo: just this\n"), result.stderr
    assert "Traceback" not in result.stderr
