"""`chatcli threads list|show|export`: LangGraph threads written by the real langgraph + RedisSaver, read by
chatcli with redis-py alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from tests.conftest import start_redis
from tests.langchain_apps import langgraph_chat


@pytest.fixture
def redis_url(stack_url: str) -> str:
    """Every fixture (env, cli, rdb) uses the Redis with the JSON and Search modules."""
    return stack_url


@pytest.fixture
def threads(redis_url: str, model) -> None:
    with langgraph_chat(redis_url, model.base_url) as say:
        say("trip", ("system", "be brief"), ("user", "plan a trip"))
        say("trip", ("user", "to Lisbon"))
        say("recipes", ("user", "a soup"))


def test_list_shows_each_thread_newest_first_with_its_message_count(cli, threads) -> None:
    result = cli("threads", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["threads"]
    found = [(r["id"], r["messages"], r["title"]) for r in rows]
    assert found == [("recipes", 2, "a soup"), ("trip", 5, "plan a trip")]
    assert rows[0]["updated"] >= rows[1]["updated"]
    plain = cli("threads", "list")
    assert plain.stdout.splitlines()[1].startswith("trip\t5\t")


def test_show_json_is_the_threads_conversation_in_message_to_dict_form(cli, threads) -> None:
    from langchain_core.messages import messages_from_dict

    result = cli("threads", "show", "trip", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["session"] == "trip" and payload["header"]["thread"] == "trip"
    messages = messages_from_dict(payload["messages"])  # LangChain reads what chatcli prints
    assert [(m.type, m.content) for m in messages] == [
        ("system", "be brief"),
        ("human", "plan a trip"),
        ("ai", "echo: plan a trip"),
        ("human", "to Lisbon"),
        ("ai", "echo: to Lisbon"),
    ]


def test_show_prints_the_conversation(cli, threads) -> None:
    result = cli("threads", "show", "trip")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n\n") == [
        "system\nbe brief",
        "user\nplan a trip",
        "assistant\necho: plan a trip",
        "user\nto Lisbon",
        "assistant\necho: to Lisbon\n",
    ]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "markdown"])
def test_export_writes_every_format(cli, threads, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"trip.{fmt}"
    result = cli("threads", "export", "trip", "--format", fmt, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 5 messages" in result.stderr
    text = out.read_text()
    if fmt == "jsonl":
        header, *lines = [json.loads(line) for line in text.splitlines()]
        assert header["header"]["thread"] == "trip"
        assert [m["data"]["content"] for m in lines][-1] == "echo: to Lisbon"
    elif fmt == "json":
        assert len(json.loads(text)["messages"]) == 5
    else:
        assert "## assistant\n\necho: to Lisbon" in text


def test_an_exported_thread_imports_as_a_chatcli_session(cli, threads, tmp_path: Path) -> None:
    out = tmp_path / "trip.json"
    assert cli("threads", "export", "trip", "-o", str(out)).exit_code == 0
    assert cli("history", "import", str(out), "--session", "trip-copy").exit_code == 0
    shown = cli("history", "show", "trip-copy", "--json")
    assert [m["data"]["content"] for m in json.loads(shown.stdout)["messages"]][-1] == "echo: to Lisbon"


def test_an_unknown_thread_is_not_found(cli, threads) -> None:
    result = cli("threads", "show", "nope")
    assert result.exit_code == 5
    assert "no LangGraph thread 'nope'" in result.stderr


def test_no_threads_is_a_notice(cli) -> None:
    result = cli("threads", "list")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no LangGraph threads" in result.stderr


def test_a_redis_without_the_json_module_is_a_usage_error(cli, tmp_path: Path) -> None:
    plain = start_redis(tmp_path / "plain")
    try:
        for args in (["threads", "list"], ["threads", "show", "trip"]):
            result = cli(*args, "--redis-url", plain.url)
            assert result.exit_code == 2, result.output
            assert "has no JSON module" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    finally:
        plain.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["threads", "list"],
        ["threads", "show", "trip"],
        ["threads", "export", "trip", "-f", "markdown"],
        ["sessions", "list", "--source", "langchain-redis"],
        ["history", "show", "soup", "--source", "langchain-redis"],
    ],
)
def test_reading_the_langchain_stores_imports_neither_langchain_nor_openai(cli, threads, args) -> None:
    from tests.langchain_apps import lc_history
    from tests.test_startup import HEAVY, imported_modules

    lc_history(os.environ["CHATCLI_REDIS_URL"], "soup").add_message(HumanMessage("a soup"))
    code, modules = imported_modules(args)
    assert code == 0
    assert "chatcli" in modules and modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_tool_calls_and_results_of_a_thread_are_shown(cli, redis_url) -> None:
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from tests.langchain_apps import run_graph

    def agent(state: MessagesState) -> dict:
        call = {"name": "weather", "args": {"city": "Lisbon"}, "id": "call_1"}
        return {
            "messages": [
                AIMessage("", tool_calls=[call]),
                ToolMessage("sunny", tool_call_id="call_1", name="weather"),
                AIMessage("It is sunny."),
            ]
        }

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")
    run_graph(redis_url, graph, "agent", {"messages": [("user", "weather in Lisbon?")]})
    result = cli("threads", "show", "agent")
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.stderr
    assert result.stdout.split("\n\n") == [
        "user\nweather in Lisbon?",
        'assistant\ntool call: weather {"city": "Lisbon"} (id: call_1)',
        "tool\nresult of weather (id: call_1)\nsunny",
        "assistant\nIt is sunny.\n",
    ]
