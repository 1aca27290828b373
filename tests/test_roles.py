"""Roles: named system prompts in Redis, shared by every machine (and CHATCLI_HOME) on it."""

from __future__ import annotations

import json

import pytest

from chatcli.errors import UsageError
from chatcli.roles import fill, parse_vars

ROLES_KEY = "chatcli:roles:{message_store:}"


def system_sent(model) -> str:
    return model.last_messages()[0]["content"]


@pytest.mark.any_redis
def test_add_list_show_delete(cli, model, rdb, tmp_path):
    assert cli("roles", "add", "reviewer", "You review code.\nBe strict.").exit_code == 0
    prompt_file = tmp_path / "translator.txt"
    prompt_file.write_text("Translate everything into {lang}, in a {tone} tone.\n")
    assert cli("roles", "add", "translator", "--from", str(prompt_file)).exit_code == 0
    assert rdb.hget(ROLES_KEY, "translator").decode() == prompt_file.read_text()

    listed = cli("roles", "list")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        "reviewer    You review code.",
        "translator  {lang} {tone}  Translate everything into {lang}, in a {tone} tone.",
    ]
    as_json = json.loads(cli("roles", "list", "--json").stdout)
    assert [r["name"] for r in as_json["roles"]] == ["reviewer", "translator"]
    assert cli("roles", "show", "reviewer").stdout == "You review code.\nBe strict.\n"

    again = cli("roles", "add", "reviewer", "other")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert rdb.hget(ROLES_KEY, "reviewer").decode() == "You review code.\nBe strict."
    assert cli("roles", "add", "reviewer", "Be kind.", "--force").exit_code == 0
    assert cli("roles", "show", "reviewer").stdout == "Be kind.\n"

    assert cli("roles", "delete", "reviewer").exit_code == 0
    assert cli("roles", "show", "reviewer").exit_code == 5
    assert cli("roles", "delete", "reviewer").exit_code == 5
    assert cli("roles", "add", "bad name", "x").exit_code == 2
    assert cli("roles", "add", "broken", "a {stray").exit_code == 2
    assert rdb.hkeys(ROLES_KEY) == [b"translator"]


@pytest.mark.any_redis
def test_chat_and_ask_with_a_role_and_the_session_remembers_it(cli, model, rdb):
    assert cli("roles", "add", "translator", "Translate into {lang}.").exit_code == 0
    result = cli("chat", "-s", "tr", "--role", "translator", "--var", "lang=French", input="hello\n")
    assert result.exit_code == 0, result.stderr
    assert system_sent(model) == "Translate into French."
    meta = rdb.hgetall("chatcli:meta:{message_store:tr}")
    assert (meta[b"role"], meta[b"system"]) == (b"translator", b"Translate into French.")

    assert cli("ask", "and goodbye", "-s", "tr").exit_code == 0  # later, no --role: the session's
    assert system_sent(model) == "Translate into French."

    assert cli("ask", "bonjour", "--role", "translator", "--var", "lang=German", "-s", "de").exit_code == 0
    assert system_sent(model) == "Translate into German."


def test_a_missing_placeholder_is_exit_2_naming_it_and_nothing_is_sent(cli, model, rdb):
    assert cli("roles", "add", "translator", "Translate into {lang} for {audience}.").exit_code == 0
    result = cli("ask", "hi", "-s", "x", "--role", "translator", "--var", "lang=French")
    assert result.exit_code == 2
    assert "--var audience=" in result.stderr and result.stderr.count("\n") == 1
    assert model.requests == [] and rdb.exists("message_store:x") == 0
    assert cli("ask", "hi", "--role", "nope").exit_code == 5
    assert cli("ask", "hi", "--var", "lang=x").exit_code == 2  # --var without --role
    assert cli("ask", "hi", "--role", "translator", "--system", "x").exit_code == 2
    assert model.requests == []


def test_two_homes_on_one_redis_see_the_same_roles(cli, model, rdb, monkeypatch, tmp_path):
    monkeypatch.setenv("CHATCLI_HOME", str(tmp_path / "laptop"))
    assert cli("roles", "add", "shared", "Be shared.").exit_code == 0
    monkeypatch.setenv("CHATCLI_HOME", str(tmp_path / "server"))
    assert cli("roles", "show", "shared").stdout == "Be shared.\n"
    assert cli("ask", "hi", "-s", "s", "--role", "shared").exit_code == 0
    assert system_sent(model) == "Be shared."


def test_slash_role_sets_the_sessions_prompt(cli, model, rdb, home):
    from chatcli.assistant import Assistant
    from chatcli.cli import open_store
    from chatcli.render import make_console
    from chatcli.repl import ChatRepl
    from chatcli.settings import load_settings

    assert cli("roles", "add", "poet", "Answer in {form}.").exit_code == 0
    settings = load_settings()
    store = open_store(settings, spool=True)
    said: list[str] = []
    repl = ChatRepl(settings, store, Assistant(settings, store), "p", make_console(), make_console())
    repl.say = said.append
    repl.cmd_role("poet form=haiku")
    assert said[-1].startswith("role poet")
    repl.send("the sea")
    assert system_sent(model) == "Answer in haiku."
    assert rdb.hget("chatcli:meta:{message_store:p}", "role") == b"poet"
    with pytest.raises(UsageError, match="form"):
        repl.cmd_role("poet")


def test_placeholders_are_filled_and_literal_braces_stay():
    assert fill("r", "Use {{json}} for {what}.", parse_vars(["what=output"])) == "Use {json} for output."
    with pytest.raises(UsageError, match="no placeholder extra"):
        fill("r", "Hi {a}.", {"a": "1", "extra": "2"})
    with pytest.raises(UsageError, match="name=value"):
        parse_vars(["novalue"])
