"""Sessions remember how they were started: model, temperature, title; resuming shows where you were;
`ask -c`; exports carry the session and imports restore it; prune and clear say what would go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.model_server import default_responder
from tests.test_repl import term  # noqa: F401 - the pty fixture


def meta(rdb, session: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in rdb.hgetall(f"chatcli:meta:{{message_store:{session}}}").items()}


def last_request(model) -> dict:
    return model.chat_requests()[-1]


# -- the model and temperature ------------------------------------------------------------------------------


@pytest.mark.any_redis
def test_a_session_keeps_its_model_and_a_flag_wins_for_one_run(cli, model, rdb, monkeypatch):
    assert cli("chat", "-s", "m", "-m", "gpt-4o", "-t", "0.3", input="hi\n").exit_code == 0
    assert (last_request(model)["model"], last_request(model)["temperature"]) == ("gpt-4o", 0.3)

    assert cli("ask", "x", "-s", "m").exit_code == 0  # no flags: the session's model and temperature
    assert (last_request(model)["model"], last_request(model)["temperature"]) == ("gpt-4o", 0.3)

    assert cli("ask", "y", "-s", "m", "-m", "test-model").exit_code == 0  # a flag wins for that run...
    assert last_request(model)["model"] == "test-model"
    monkeypatch.setenv("CHATCLI_MODEL", "other-model")  # ...and CHATCLI_MODEL is for new sessions only
    assert cli("ask", "z", "-s", "m").exit_code == 0
    assert last_request(model)["model"] == "gpt-4o"
    assert (meta(rdb, "m")["model"], meta(rdb, "m")["temperature"]) == ("gpt-4o", "0.3")

    assert cli("ask", "new", "-s", "n").exit_code == 0
    assert last_request(model)["model"] == "other-model" and "temperature" not in last_request(model)


def test_slash_model_changes_the_sessions_model_and_says_so(term, model, rdb, cli):  # noqa: F811
    assert cli("ask", "first", "-s", "sm").exit_code == 0  # the session starts with gpt-4o-mini
    t = term("chat", "-s", "sm")
    t.wait_prompt("sm", 1)
    t.enter("/model test-model")
    t.wait_for("model of session sm is now test-model")
    t.enter("hello")
    t.wait_prompt("sm", 3)
    assert last_request(model)["model"] == "test-model"
    t.enter("/exit")
    assert t.exited() == 0
    assert cli("ask", "again", "-s", "sm").exit_code == 0  # a later process
    assert last_request(model)["model"] == "test-model"


# -- resuming -------------------------------------------------------------------------------------------------


def test_resuming_shows_where_you_were(term, model, rdb, cli):  # noqa: F811
    options = ["-s", "res", "-m", "test-model", "--system", "Be brief.\nAlways."]
    assert cli("ask", "what is a hash tag?", *options).exit_code == 0
    t = term("chat", "-s", "res")
    screen = t.wait_prompt("res", 1)
    assert "session: res (resumed)" in screen
    assert "2 messages, model test-model" in screen
    assert "system: Be brief." in screen and "Always." not in screen  # the first line
    assert "you: what is a hash tag?" in screen and "assistant: echo: what is a hash tag?" in screen


def test_continue_without_a_terminal_tells_where_you_were_on_stderr(cli, model, rdb):
    assert cli("ask", "first question", "-s", "older").exit_code == 0
    assert cli("ask", "x" * 300, "-s", "newer").exit_code == 0
    result = cli("chat", "-c", input="")
    assert result.exit_code == 0 and result.stdout == ""
    assert "session: newer (resumed)" in result.stderr
    assert "2 messages, model gpt-4o-mini" in result.stderr
    assert "system: You are a helpful assistant. (the default)" in result.stderr
    assert "you: " + "x" * 60 in result.stderr and "x" * 100 not in result.stderr  # cut short


@pytest.mark.any_redis
def test_ask_continue_goes_on_with_the_most_recent_session(cli, model, rdb):
    assert cli("ask", "one", "-s", "a").exit_code == 0
    assert cli("ask", "two", "-s", "b").exit_code == 0
    result = cli("ask", "-c", "three")
    assert result.exit_code == 0, result.stderr
    assert [m["content"] for m in model.last_messages()[1:]] == ["two", "echo: two", "three"]
    assert rdb.llen("message_store:b") == 4 and rdb.llen("message_store:a") == 2
    assert cli("ask", "-c", "-s", "a", "x").exit_code == 2


# -- titles ---------------------------------------------------------------------------------------------------


def listed_titles(cli) -> dict[str, str]:
    return {s["id"]: s["title"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]}


def test_the_default_title_is_the_first_question_and_sessions_title_sets_one(cli, model, rdb):
    assert cli("ask", "how do hash tags work", "-s", "t").exit_code == 0
    assert listed_titles(cli)["t"] == "how do hash tags work"
    result = cli("sessions", "title", "t", "Hash tags")
    assert result.exit_code == 0, result.stderr
    assert listed_titles(cli)["t"] == "Hash tags"
    assert meta(rdb, "t")["title_by"] == "user"
    assert cli("sessions", "title", "nope", "x").exit_code == 5
    assert rdb.exists("chatcli:meta:{message_store:nope}") == 0


def test_slash_title_sets_the_title(term, model, rdb, cli):  # noqa: F811
    t = term("chat", "-s", "st")
    t.wait_prompt("st", 1)
    t.enter("/title My own title")
    t.wait_for("title set")
    t.enter("/exit")
    assert t.exited() == 0
    assert listed_titles(cli)["st"] == "My own title"


TITLE_ASKED = "Write a title for the conversation"


def titling(title: str, hold: threading.Event | None = None, before: object = None):
    def respond(messages: list[dict]) -> str:
        if TITLE_ASKED in str(messages[0].get("content")):
            if callable(before):
                before()
            if hold is not None:
                hold.wait(60)
            return title
        return default_responder(messages)

    return respond


def test_auto_title_is_written_after_the_first_answer_only(cli, model, rdb, monkeypatch):
    monkeypatch.setenv("CHATCLI_AUTO_TITLE", "1")
    model.responder = titling('"Redis hash tags."')
    result = cli("ask", "how do hash tags work", "-s", "auto")
    assert result.exit_code == 0 and result.stdout == "echo: how do hash tags work\n"
    assert meta(rdb, "auto")["title"] == "Redis hash tags" and meta(rdb, "auto")["title_by"] == "model"
    titles_asked = len(model.chat_requests())
    assert cli("ask", "and then?", "-s", "auto").exit_code == 0
    assert len(model.chat_requests()) == titles_asked + 1  # the second answer asks for no title


def test_auto_title_never_overwrites_a_title_the_user_set_meanwhile(cli, model, rdb, monkeypatch):
    monkeypatch.setenv("CHATCLI_AUTO_TITLE", "1")
    key = "chatcli:meta:{message_store:race}"
    user_sets_a_title = lambda: rdb.hset(key, mapping={"title": "Mine", "title_by": "user"})  # noqa: E731
    model.responder = titling("Model title", before=user_sets_a_title)
    assert cli("ask", "q", "-s", "race").exit_code == 0
    assert len(model.chat_requests()) == 2  # the title was asked for...
    assert meta(rdb, "race")["title"] == "Mine"  # ...and not written over the user's


def test_auto_title_does_not_delay_the_answer(model, rdb, env):
    """The answer is out, and stdout closed, while the title request still waits."""
    hold = threading.Event()
    model.responder = titling("Late title", hold)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcli", "ask", "-s", "slow", "a question"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CHATCLI_AUTO_TITLE": "1"},
    )
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # to EOF
    reader.start()
    reader.join(60)
    try:
        assert not reader.is_alive(), "stdout stayed open while the title was being written"
        assert out == [b"echo: a question\n"]
        assert proc.poll() is None  # still writing the title
    finally:
        hold.set()
    assert proc.wait(60) == 0
    assert meta(rdb, "slow")["title"] == "Late title"


# -- exports carry the session --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "jsonl", "markdown"])
def test_export_import_chat_sends_the_same_system_prompt(cli, model, rdb, tmp_path, fmt):
    system = 'Be a pirate.\nSay "arr" {often}.'
    assert cli("ask", "hello", "-s", "src", "-m", "test-model", "--system", system, "-t", "0.5").exit_code == 0
    assert cli("sessions", "title", "src", "Pirate talk").exit_code == 0
    path = tmp_path / f"src.{'md' if fmt == 'markdown' else fmt}"
    assert cli("history", "export", "src", "-f", fmt, "-o", str(path)).exit_code == 0
    source = meta(rdb, "src")
    cli("sessions", "delete", "src")

    result = cli("history", "import", str(path))
    assert result.exit_code == 0, result.stderr
    copied = meta(rdb, "src")
    for field in ("system", "model", "title", "title_by", "temperature"):
        assert copied[field] == source[field], field
    for field in ("created", "updated"):  # kept to the second (ISO-8601 in the file)
        assert int(float(copied[field])) == int(float(source[field])), field
    assert rdb.zscore("chatcli:index:{message_store:}", "src") == float(copied["updated"])

    assert cli("ask", "again", "-s", "src").exit_code == 0
    request = last_request(model)
    assert request["messages"][0] == {"role": "system", "content": system}
    assert request["model"] == "test-model" and request["temperature"] == 0.5
    assert [m["content"] for m in request["messages"][1:]] == ["hello", "echo: hello", "again"]


def test_a_bad_header_is_exit_2_and_writes_nothing(cli, model, rdb, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"header": {"created": "last tuesday"}}\n{"role": "user", "content": "hi"}\n')
    result = cli("history", "import", str(path))
    assert result.exit_code == 2 and "line 1" in result.stderr and "created" in result.stderr
    assert rdb.dbsize() == 0


# -- prune and clear say what would go -----------------------------------------------------------------------


def aged(cli, rdb, ids: list[str], days: float) -> None:
    for i, sid in enumerate(ids):
        assert cli("ask", "q", "-s", sid).exit_code == 0
        when = time.time() - days * 86400 + i  # later ids are newer
        rdb.zadd("chatcli:index:{message_store:}", {sid: when})
        rdb.hset(f"chatcli:meta:{{message_store:{sid}}}", "updated", repr(when))


def test_prune_dry_run_lists_and_deletes_nothing_and_the_confirmation_names_the_newest(cli, model, rdb):
    aged(cli, rdb, ["old-a", "old-b", "old-c", "old-d", "old-e"], days=40)
    aged(cli, rdb, ["fresh"], days=0)
    dry = cli("sessions", "prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    shown = [line.split("\t")[0] for line in dry.stdout.splitlines()]  # piped: rows, no header
    assert shown == ["old-e", "old-d", "old-c", "old-b", "old-a"]
    assert "would delete 5 sessions idle longer than 30d; nothing deleted" in dry.stderr
    assert rdb.exists("message_store:old-a") == 1 and rdb.zcard("chatcli:index:{message_store:}") == 6

    asked = cli("sessions", "prune", "--older-than", "30d")  # stdin is not a terminal: exit 2, nothing deleted
    assert asked.exit_code == 2
    assert "5 sessions (newest: old-e, old-d, old-c and 2 more) idle longer than 30d" in asked.stderr
    assert rdb.exists("message_store:old-a") == 1


def test_clear_dry_run_lists_every_session_and_the_confirmation_names_the_newest(cli, model, rdb):
    aged(cli, rdb, ["c1", "c2"], days=1)
    dry = cli("sessions", "clear", "--dry-run")
    assert dry.exit_code == 0
    assert [line.split("\t")[0] for line in dry.stdout.splitlines()] == ["c2", "c1"]
    assert "would delete 2 sessions" in dry.stderr and rdb.exists("message_store:c1") == 1
    asked = cli("sessions", "clear")
    assert asked.exit_code == 2 and "all 2 sessions (newest: c2, c1)" in asked.stderr
    assert rdb.exists("message_store:c2") == 1
