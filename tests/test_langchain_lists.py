"""Sessions a LangChain app keeps in the list layout (langchain_community's RedisChatMessageHistory), used
from chatcli without losses: their opening, their TTL, their expiry, their place in `sessions list`."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from tests.test_repl import term  # noqa: F401 - the pty fixture
from tests.test_storage import langchain_history


def sent(model) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in model.last_messages()]


def test_a_leading_system_message_is_the_system_prompt_and_a_greeting_stays(cli, model, redis_url):
    app = langchain_history("greeted", redis_url)
    app.add_message(SystemMessage("You are a pirate."))
    app.add_message(AIMessage("Ahoy! What be yer question?"))
    app.add_message(HumanMessage("Where is the treasure?"))
    app.add_message(AIMessage("Under the palm."))

    result = cli("ask", "-s", "greeted", "Which palm?")
    assert result.exit_code == 0, result.stderr
    assert sent(model) == [
        ("system", "You are a pirate."),  # not chatcli's default, and not sent twice
        ("assistant", "Ahoy! What be yer question?"),
        ("user", "Where is the treasure?"),
        ("assistant", "Under the palm."),
        ("user", "Which palm?"),
    ]
    # LangChain reads the session back whole, chatcli's turn appended
    kinds = [type(m).__name__ for m in app.messages]
    assert kinds == ["SystemMessage", "AIMessage", "HumanMessage", "AIMessage", "HumanMessage", "AIMessage"]


def test_the_users_system_prompt_wins_over_the_stored_one(cli, model, redis_url):
    app = langchain_history("greeted", redis_url)
    app.add_message(SystemMessage("You are a pirate."))
    app.add_message(AIMessage("Ahoy!"))
    assert cli("ask", "-s", "greeted", "--system", "You are a clerk.", "Hello").exit_code == 0
    assert sent(model) == [("system", "You are a clerk."), ("assistant", "Ahoy!"), ("user", "Hello")]
    # kept with the session: the next turn without --system still uses the user's
    assert cli("ask", "-s", "greeted", "Again").exit_code == 0
    assert sent(model)[0] == ("system", "You are a clerk.")


def test_a_long_sessions_system_message_is_read_from_the_lists_start(cli, model, redis_url, monkeypatch):
    """When the window does not reach the list's start, the system prompt still comes from there; the
    greeting, far outside the budget, is trimmed like any old message."""
    monkeypatch.setenv("CHATCLI_MAX_HISTORY_TOKENS", "200")
    app = langchain_history("long", redis_url)
    app.add_message(SystemMessage("Rule one."))
    app.add_message(SystemMessage("Rule two."))
    app.add_message(AIMessage("Hello!"))
    for i in range(40):
        app.add_message(HumanMessage(f"question {i} " + "x" * 40))
        app.add_message(AIMessage(f"answer {i} " + "y" * 40))
    assert cli("ask", "-s", "long", "last").exit_code == 0
    messages = sent(model)
    assert messages[0] == ("system", "Rule one.\n\nRule two.")
    assert messages[1][0] == "user" and messages[-1] == ("user", "last")
    assert "Hello!" not in [content for _role, content in messages]
    assert len(messages) < 20  # trimmed to the budget


def test_a_key_of_another_type_is_not_a_session(cli, rdb):
    rdb.set("message_store:text", "a string another program keeps here")
    rdb.hset("message_store:hash", "field", "value")
    for args in (("history", "show", "text"), ("history", "export", "hash"), ("history", "show", "hash", "-n", "2")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "not a session" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert rdb.get("message_store:text") == b"a string another program keeps here"  # untouched
    assert cli("history", "show", "absent").exit_code == 5


LIST, META, TURNS = "message_store:timed", "chatcli:meta:{message_store:timed}", "chatcli:turns:{message_store:timed}"


@pytest.mark.any_redis
def test_a_langchain_ttl_is_kept_and_refreshed_by_each_turn(cli, model, redis_url, rdb):
    app = langchain_history("timed", redis_url, ttl=600)
    app.add_user_message("hi")
    app.add_ai_message("hello")
    assert cli("ask", "-s", "timed", "first").exit_code == 0
    assert 590 <= int(rdb.hget(META, "ttl")) <= 600  # the length chatcli saw, recorded
    assert all(590 <= rdb.ttl(k) <= 600 for k in (LIST, META, TURNS))  # the whole session expires together

    for key in (LIST, META, TURNS):  # ten minutes less a hundred seconds later
        rdb.expire(key, 100)
    assert cli("ask", "-s", "timed", "second").exit_code == 0
    assert all(590 <= rdb.ttl(k) <= 600 for k in (LIST, META, TURNS))  # refreshed to the original length

    assert cli("ask", "-s", "timed", "--ttl", "50", "third").exit_code == 0  # --ttl says otherwise
    assert all(0 < rdb.ttl(k) <= 50 for k in (LIST, META, TURNS)) and rdb.hget(META, "ttl") == b"50"
    assert cli("ask", "-s", "timed", "fourth").exit_code == 0  # and is the session's policy from then on
    assert all(0 < rdb.ttl(k) <= 50 for k in (LIST, META, TURNS))

    rdb.persist(LIST)  # another program keeps the list for good: so is the rest of the session
    assert cli("ask", "-s", "timed", "fifth").exit_code == 0
    assert [rdb.ttl(k) for k in (LIST, META, TURNS)] == [-1, -1, -1] and rdb.hget(META, "ttl") is None
    assert len(app.messages) == 12


def ids_and_counts(cli) -> list[tuple[str, int]]:
    result = cli("sessions", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return [(r["id"], r["messages"]) for r in json.loads(result.stdout)["sessions"]]


@pytest.mark.any_redis
def test_an_expired_list_leaves_no_ghost_row(cli, model, redis_url, rdb):
    """Metadata that outlived its list (written before chatcli kept a LangChain TTL, or the list deleted by
    the LangChain app's clear()) is no session: not listed, and cleaned up; a session that is only metadata
    (a system prompt set before the first question) stays."""
    assert cli("ask", "-s", "timed", "hi").exit_code == 0
    assert cli("ask", "-s", "kept", "hi").exit_code == 0
    rdb.hset("chatcli:meta:{message_store:prompt-only}", mapping={"created": "1", "updated": "1", "system": "S"})
    rdb.zadd("chatcli:index:{message_store:}", {"prompt-only": 1})
    rdb.delete(LIST)  # expired

    assert ids_and_counts(cli) == [("kept", 2), ("prompt-only", 0)]
    assert rdb.exists(META, TURNS) == 0 and rdb.zscore("chatcli:index:{message_store:}", "timed") is None
    assert rdb.exists("chatcli:meta:{message_store:prompt-only}") == 1


def test_the_most_recent_session_skips_and_cleans_a_ghost(cli, model, rdb):
    assert cli("ask", "-s", "older", "hi").exit_code == 0
    assert cli("ask", "-s", "timed", "hi").exit_code == 0
    rdb.delete(LIST)
    assert cli("ask", "--continue", "again").exit_code == 0
    assert rdb.llen("message_store:older") == 4 and rdb.exists(META, TURNS) == 0


def test_resuming_names_the_stored_system_prompt(term, cli, model, redis_url):  # noqa: F811
    app = langchain_history("greeted", redis_url)
    app.add_message(SystemMessage("You are a pirate.\nSpeak like one."))
    app.add_message(AIMessage("Ahoy!"))
    assert cli("sessions", "list").exit_code == 0  # adopted: the most recent session
    result = cli("chat", "-c", input="")
    assert result.exit_code == 0, result.stderr
    assert "system: You are a pirate." in result.stderr and "(the default)" not in result.stderr
    t = term("chat", "-s", "greeted")
    t.wait_prompt("greeted", 1)
    t.enter("/system")
    t.wait_for("system prompt: You are a pirate.")
    t.enter("/exit")
    assert t.exited() == 0
