"""history import: chatcli exports and the OpenAI format, all-or-nothing, round trip (property-based)."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, message_to_dict, messages_from_dict

from tests.bad_messages import MALFORMED, NESTED_LIST

_ids = itertools.count()


def stored(rdb, session_id: str) -> list[dict]:
    return [json.loads(raw) for raw in reversed(rdb.lrange(f"message_store:{session_id}", 0, -1))]


def listed(cli) -> list[str]:
    return [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
metadata = st.dictionaries(st.sampled_from(["a", "b", "model_name", "finish_reason"]), text, max_size=2)


@st.composite
def messages(draw):
    out = []
    parts = st.lists(st.builds(lambda t: {"type": "text", "text": t}, text), min_size=1, max_size=3)
    for i in range(draw(st.integers(1, 6))):
        content = draw(text | parts)  # plain text, or multimodal content parts
        if i % 2 == 0:
            out.append(HumanMessage(content=content, id=draw(st.none() | st.uuids().map(str))))
        else:
            usage = draw(st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)))
            out.append(
                AIMessage(
                    content=content,
                    response_metadata=draw(metadata),
                    additional_kwargs=draw(st.dictionaries(st.just("refusal"), text, max_size=1)),
                    usage_metadata=(
                        {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)}
                        if usage
                        else None
                    ),
                )
            )
    return out


@pytest.mark.any_redis
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(original=messages(), fmt=st.sampled_from(["json", "jsonl"]))
def test_export_then_import_gives_the_same_messages(cli, model, rdb, tmp_path, original, fmt):
    source, copy = f"src-{next(_ids)}", f"copy-{next(_ids)}"
    for m in original:  # written the way LangChain's RedisChatMessageHistory writes
        rdb.lpush(f"message_store:{source}", json.dumps(message_to_dict(m)))
    path = tmp_path / f"{source}.{fmt}"
    assert cli("history", "export", source, "-f", fmt, "-o", str(path), "--force").exit_code == 0

    result = cli("history", "import", str(path), "--session", copy)
    assert result.exit_code == 0, result.stderr
    assert stored(rdb, copy) == stored(rdb, source)
    assert messages_from_dict(stored(rdb, copy)) == original  # same types, contents and metadata
    again = cli("history", "export", copy, "-f", fmt).stdout
    # the same bytes, but for the header: the copy was created by the import, the source by another program
    assert without_times(again) == path.read_text().replace(json.dumps(source), json.dumps(copy))


def without_times(export: str) -> str:
    """An export with the created and updated times taken out of its header."""
    for field in ("created", "updated"):
        export = re.sub(f', "{field}": "[^"]*"', "", export)
    return export


@pytest.mark.any_redis
def test_import_refuses_an_existing_session_unless_append_or_replace(cli, model, rdb, tmp_path):
    cli("ask", "-s", "x", "hello")
    path = tmp_path / "more.jsonl"
    path.write_text(json.dumps(message_to_dict(HumanMessage("imported"))) + "\n")

    refused = cli("history", "import", str(path), "-s", "x")
    assert refused.exit_code == 2 and "--append" in refused.stderr
    assert [m["data"]["content"] for m in stored(rdb, "x")] == ["hello", "echo: hello"]

    assert cli("history", "import", str(path), "-s", "x", "--append").exit_code == 0
    assert [m["data"]["content"] for m in stored(rdb, "x")] == ["hello", "echo: hello", "imported"]
    assert cli("history", "import", str(path), "-s", "x", "--replace").exit_code == 0
    assert [m["data"]["content"] for m in stored(rdb, "x")] == ["imported"]
    assert listed(cli) == ["x"]
    assert cli("history", "import", str(path), "-s", "x", "--append", "--replace").exit_code == 2

    # the default session id: the file name (a json export's own "session" comes first)
    assert cli("history", "import", str(path)).exit_code == 0
    assert sorted(listed(cli)) == ["more", "x"]


@pytest.mark.any_redis
def test_openai_messages_are_imported_and_continued(cli, model, rdb, tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "Hi! I'm bob"},
                    {"role": "assistant", "content": "Hello bob"},
                ]
            }
        )
    )
    result = cli("history", "import", str(path), "-s", "oa")
    assert result.exit_code == 0, result.stderr
    assert "imported 2 messages" in result.stderr
    assert stored(rdb, "oa") == [message_to_dict(HumanMessage("Hi! I'm bob")), message_to_dict(AIMessage("Hello bob"))]
    assert rdb.hget("chatcli:meta:{message_store:oa}", "system") == b"Be terse."

    assert cli("ask", "-s", "oa", "Whats my name").exit_code == 0
    assert [(m["role"], m["content"]) for m in model.last_messages()] == [
        ("system", "Be terse."),
        ("user", "Hi! I'm bob"),
        ("assistant", "Hello bob"),
        ("user", "Whats my name"),
    ]
    # a bare list works too; a system message after the first turn stays in the conversation
    path.write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "developer", "content": "b"}]))
    assert cli("history", "import", str(path), "-s", "oa2").exit_code == 0
    assert messages_from_dict(stored(rdb, "oa2")) == [HumanMessage("a"), SystemMessage("b")]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", '{"role": "user", "content": "ok"}\n\n{"role": "user", "content": }\n', "line 3"),
        ("bad.jsonl", '{"role": "user", "content": "ok"}\n{"role": "wizard", "content": "x"}\n', "line 2"),
        ("bad.jsonl", '{"type": "alien", "data": {"content": "x"}}\n', "line 1"),
        ("bad.json", '{"messages": [\n  {"role": "user", "content": "ok"},\n  {"role": "user"\n]}', "line 4 column 1"),
        ("bad.json", '{"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": 7}]}', "message 2"),
        ("bad.json", '{"messages": [{"type": "human", "data": "nope"}]}', "message 1"),
        ("bad.json", '{"session": "x"}', '"messages"'),
        ("bad.json", "[]", "no messages"),
        ("bad.json", '{"messages": [{"role": "tool", "content": "r"}]}', "tool_call_id"),
    ],
)
def test_a_bad_file_is_exit_2_with_where_and_writes_nothing(cli, model, rdb, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    result = cli("history", "import", str(path), "-s", "bad")
    assert result.exit_code == 2, result.stderr
    assert expected in result.stderr and name in result.stderr
    assert rdb.dbsize() == 0


def test_a_missing_file_is_exit_5(cli, model, rdb, tmp_path):
    result = cli("history", "import", str(tmp_path / "nope.json"))
    assert result.exit_code == 5 and "nope.json" in result.stderr
    assert rdb.dbsize() == 0


def _jsonl(path, *messages) -> None:
    path.write_text("".join(json.dumps(message_to_dict(m)) + "\n" for m in messages))


@pytest.mark.any_redis
def test_a_leading_system_message_of_a_chatcli_export_becomes_the_system_prompt(cli, model, rdb, tmp_path):
    path = tmp_path / "lc.jsonl"
    _jsonl(path, SystemMessage("You are a pirate."), HumanMessage("Hi! I'm bob"), AIMessage("Arr, bob"))
    result = cli("history", "import", str(path), "-s", "lc")
    assert result.exit_code == 0, result.stderr
    assert "imported 2 messages into session lc; its system prompt is now" in result.stderr
    assert stored(rdb, "lc") == [message_to_dict(HumanMessage("Hi! I'm bob")), message_to_dict(AIMessage("Arr, bob"))]
    assert rdb.hget("chatcli:meta:{message_store:lc}", "system") == b"You are a pirate."
    shown = json.loads(cli("history", "show", "lc", "--json").stdout)["messages"]
    assert [(m["type"], m["data"]["content"]) for m in shown] == [("human", "Hi! I'm bob"), ("ai", "Arr, bob")]

    assert cli("ask", "-s", "lc", "Whats my name").exit_code == 0
    assert [(m["role"], m["content"]) for m in model.last_messages()] == [
        ("system", "You are a pirate."),
        ("user", "Hi! I'm bob"),
        ("assistant", "Arr, bob"),
        ("user", "Whats my name"),
    ]

    # the json export format too; --append sets the prompt as well, and says so
    doc = tmp_path / "more.json"
    doc.write_text(
        json.dumps({"messages": [message_to_dict(SystemMessage("Be terse.")), message_to_dict(HumanMessage("more"))]})
    )
    appended = cli("history", "import", str(doc), "-s", "lc", "--append")
    assert appended.exit_code == 0, appended.stderr
    assert "its system prompt is now the file's leading system message (replacing" in appended.stderr
    assert rdb.hget("chatcli:meta:{message_store:lc}", "system") == b"Be terse."
    assert [m["data"]["content"] for m in stored(rdb, "lc")] == [
        "Hi! I'm bob",
        "Arr, bob",
        "Whats my name",
        "echo: Whats my name",
        "more",
    ]


def test_a_system_message_after_the_first_message_stays_in_the_conversation(cli, model, rdb, tmp_path):
    path = tmp_path / "mid.jsonl"
    _jsonl(path, HumanMessage("a"), AIMessage("b"), SystemMessage("From now on, be brief."))
    assert cli("history", "import", str(path), "-s", "mid").exit_code == 0
    assert messages_from_dict(stored(rdb, "mid")) == [
        HumanMessage("a"),
        AIMessage("b"),
        SystemMessage("From now on, be brief."),
    ]
    assert rdb.hget("chatcli:meta:{message_store:mid}", "system") is None

    assert cli("ask", "-s", "mid", "c").exit_code == 0
    assert [(m["role"], m["content"]) for m in model.last_messages()][1:] == [
        ("user", "a"),
        ("assistant", "b"),
        ("system", "From now on, be brief."),
        ("user", "c"),
    ]

    only = tmp_path / "only.jsonl"
    _jsonl(only, SystemMessage("nothing else"))
    refused = cli("history", "import", str(only), "-s", "only")
    assert refused.exit_code == 2 and "only a system prompt" in refused.stderr


@pytest.mark.parametrize(("raw", "problem"), MALFORMED)
def test_a_file_holding_a_message_the_chain_cannot_send_is_refused(cli, model, rdb, tmp_path, raw, problem):
    """The same check as reading (chatcli.codec): what a session would skip, an import refuses, by position."""
    good = [json.dumps(message_to_dict(HumanMessage("hi"))), json.dumps(message_to_dict(AIMessage("hello")))]
    lines = tmp_path / "bad.jsonl"
    lines.write_text("\n".join([good[0], raw, good[1]]) + "\n", encoding="utf-8", errors="surrogatepass")
    result = cli("history", "import", str(lines), "-s", "bad")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: bad.jsonl: line 2: ") and problem in result.stderr, result.stderr

    document = tmp_path / "bad.json"
    document.write_text('{"messages": [' + ", ".join([good[0], raw, good[1]]) + "]}", errors="surrogatepass")
    result = cli("history", "import", str(document), "-s", "bad")
    assert result.exit_code == 2, result.stderr
    # a whole document too deep for json.loads has no message to point at
    where = "Error: bad.json: " if raw == NESTED_LIST else "Error: bad.json: message 2: "
    assert result.stderr.startswith(where) and problem in result.stderr, result.stderr
    assert rdb.dbsize() == 0


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "assistant", "content": None, "tool_calls": "notalist"}, "message 2: tool_calls: must be a list"),
        (
            {"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]},
            'message 2: tool_calls[0]: needs "function"',
        ),
        (
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "[]"}}],
            },
            "",  # an empty list parses to no arguments: fine
        ),
        ({"role": "user", "content": [5]}, "message 2: content[0]: must be text or an object"),
        ({"role": "user", "content": [{"type": "image_url"}]}, "message 2: content[0]: an image_url block is"),
        ({"role": "user", "content": "x", "name": "\ud800"}, "message 2: text with a lone surrogate"),
    ],
)
def test_openai_messages_are_checked_the_same_way(cli, model, rdb, tmp_path, message, expected):
    path = tmp_path / "oa.json"
    path.write_text(json.dumps([{"role": "user", "content": "hi"}, message]))
    result = cli("history", "import", str(path), "-s", "oa")
    if not expected:
        assert result.exit_code == 0, result.stderr
        assert cli("ask", "-s", "oa", "next").exit_code == 0  # and the chain sends it
        return
    assert result.exit_code == 2, result.stderr
    assert f"oa.json: {expected}" in result.stderr, result.stderr
    assert rdb.dbsize() == 0
