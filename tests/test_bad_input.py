"""Hostile input: session ids of every shape, model output that tries to drive the terminal, and stored
messages the chain cannot send."""

from __future__ import annotations

import json
import os
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatcli.records import TurnRecord
from chatcli.store import SessionStore
from tests.bad_messages import MALFORMED
from tests.model_server import Reply

SEEDED = ("a", "ab", "a*", "a?", "[a]", "neighbour")
# glob, brace, control, white space and unicode characters, mixed with ordinary ones
HOSTILE = st.sampled_from([*"*?[]^!-\\{}", "\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", " "])
ID_TEXT = st.text(
    alphabet=st.one_of(HOSTILE, st.sampled_from("ab"), st.characters(codec="utf-8", exclude_categories=["Cs"])),
    max_size=12,
)


def documented_valid(session_id: str) -> bool:
    """README: 1-256 characters, no braces, no control characters, no leading or trailing white space."""
    return (
        1 <= len(session_id) <= 256
        and not any(c in "{}" or unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in session_id)
        and session_id == session_id.strip()
    )


def snapshot(client) -> dict:
    """Every key and its whole content."""
    out = {}
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            out[key] = client.dump(key)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_id=st.one_of(ID_TEXT, st.just("x" * 10_240), st.just("y" * 256), st.just("")))
@example(session_id="*")
@example(session_id="a[b]")
@example(session_id="{a}")
@example(session_id="näme ✓ 会話")
@example(session_id="-0")
def test_session_ids_valid_ones_live_alone_invalid_ones_change_nothing(cli, model, rdb, session_id):
    if session_id in SEEDED:
        return
    rdb.flushall()
    model.reset()
    store = SessionStore(rdb)
    for sid in SEEDED:
        store.append_turn(TurnRecord(sid, [{"type": "human", "data": {"content": f"I am {sid}"}}]))
    before = snapshot(rdb)

    if not documented_valid(session_id):
        for args in (
            ["ask", "-s", session_id, "hi"],
            ["chat", "-s", session_id],
            ["history", "show", "--", session_id],  # "--": an id may start with "-"
            ["history", "export", "--", session_id],
            ["sessions", "delete", "--", session_id],
        ):
            result = cli(*args, input="hi\n")
            assert result.exit_code == 2, (args, result.stderr)
            assert "session id" in result.stderr
        assert snapshot(rdb) == before
        assert model.chat_requests() == []
        return

    asked = cli("ask", "-s", session_id, "hi")
    assert asked.exit_code == 0, asked.stderr
    shown = cli("history", "show", "--json", "--", session_id)
    assert shown.exit_code == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert payload["session"] == session_id
    assert [m["data"]["content"] for m in payload["messages"]] == ["hi", "echo: hi"]
    listed = json.loads(cli("sessions", "list", "--json").stdout)["sessions"]
    assert sorted(s["id"] for s in listed) == sorted([*SEEDED, session_id])
    deleted = cli("sessions", "delete", "--", session_id)
    assert deleted.exit_code == 0, deleted.stderr
    assert snapshot(rdb) == before  # nothing but its own keys was ever touched


# -- model output that tries to drive the terminal ---------------------------------------------------------

HOSTILE_ANSWER = (
    "Hello \x1b]0;pwned title\x07there \x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ "
    "\x1b]52;c;ZXZpbA==\x07\x1b[31mred\x1b[0m \x1b[2J[bold red]markup[/bold red] done"
)
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]")


def run_in_terminal(*args: str) -> bytes:
    """chatcli in a real pseudo-terminal (fixed size); every raw byte it wrote."""
    from tests.terminal import spawn

    child = spawn(list(args), dict(os.environ))
    raw = child.read()
    child.close()
    assert child.exitstatus == 0, raw
    return bytes(raw)


def test_escape_sequences_and_markup_from_the_model_are_inert_on_a_terminal_and_stored_unchanged(cli, model, rdb):
    model.script(Reply(text=HOSTILE_ANSWER))
    for raw in (run_in_terminal("ask", "-s", "hostile", "hi"), run_in_terminal("history", "show", "hostile")):
        assert b"\x1b]" not in raw  # no OSC from the model: no title, hyperlink or clipboard write
        assert b"\x1b[31m" not in raw and b"\x1b[2J" not in raw  # no colour or screen clearing from the model
        visible = ANSI.sub(b"", raw).decode()
        assert "[bold red]markup[/bold red]" in visible  # Rich markup shown as text, not applied
        assert "red" in visible and "done" in visible
    answer = json.loads(rdb.lindex("message_store:hostile", 0))
    assert answer["data"]["content"] == HOSTILE_ANSWER  # stored byte for byte


# -- stored messages the chain cannot send: one bad element must not make a session unusable ---------------


@pytest.mark.parametrize(("raw", "problem"), MALFORMED)
def test_a_session_with_a_malformed_element_goes_on_without_it(cli, model, rdb, raw, problem):
    """Written by an import or another program beside good messages (LangChain's layout: LPUSH, newest first)."""
    key = "message_store:mixed"
    good = [("human", "Hi! I'm bob"), ("ai", "Hello bob"), ("human", "I like tea"), ("ai", "Noted")]
    for kind, text in good[:2]:
        rdb.lpush(key, json.dumps({"type": kind, "data": {"content": text}}))
    rdb.lpush(key, raw.encode("utf-8", "surrogatepass"))
    for kind, text in good[2:]:
        rdb.lpush(key, json.dumps({"type": kind, "data": {"content": text}}))
    skipped = "(skipped 1 stored entries that are not readable messages)"

    asked = cli("ask", "-s", "mixed", "Whats my name")
    assert asked.exit_code == 0, asked.stderr
    assert asked.stdout == "echo: Whats my name\n"
    assert skipped in asked.stderr and "Error" not in asked.stderr
    assert [(m["role"], m["content"]) for m in model.last_messages()] == [
        ("system", "You are a helpful assistant."),
        ("user", "Hi! I'm bob"),
        ("assistant", "Hello bob"),
        ("user", "I like tea"),
        ("assistant", "Noted"),
        ("user", "Whats my name"),
    ]

    shown = cli("history", "show", "mixed")
    assert shown.exit_code == 0, shown.stderr
    assert skipped in shown.stderr
    assert [line for line in shown.stdout.splitlines() if line] == [
        "user",
        "Hi! I'm bob",
        "assistant",
        "Hello bob",
        "user",
        "I like tea",
        "assistant",
        "Noted",
        "user",
        "Whats my name",
        "assistant",
        "echo: Whats my name",
    ]
    for fmt in ("json", "markdown"):
        exported = cli("history", "export", "mixed", "-f", fmt)
        assert exported.exit_code == 0, exported.stderr
        assert skipped in exported.stderr and "Whats my name" in exported.stdout
    assert rdb.llen(key) == 7  # the bad element stays where it was: reading never drops data


def test_traceback_shows_the_traceback_and_keeps_the_exit_code(cli, rdb):
    plain = cli.run("history", "show", "nosuch")
    traced = cli.run("--traceback", "history", "show", "nosuch")
    assert plain.returncode == traced.returncode == 5
    assert "Traceback" not in plain.stderr and plain.stderr.count("\n") == 1
    assert "Traceback (most recent call last)" in traced.stderr and traced.stderr.endswith(plain.stderr)
