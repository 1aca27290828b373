"""`chatcli chat --thread ID`: a LangGraph thread continued through LangGraph itself, then by the app again;
threads chatcli must not touch are refused before anything is written."""

from __future__ import annotations

import json
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AnyMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from tests.langchain_apps import langgraph_chat, run_graph


@pytest.fixture
def redis_url(stack_url: str) -> str:
    return stack_url


def test_chat_continues_the_thread_and_the_app_goes_on_after_it(cli, model, redis_url) -> None:
    with langgraph_chat(redis_url, model.base_url) as say:
        say("trip", ("system", "be brief"), ("user", "plan a trip"))
        result = cli("chat", "--thread", "trip", input="to Lisbon\n")
        assert result.exit_code == 0, result.output
        assert result.stdout == "echo: to Lisbon\n"
        sent = [(m["role"], m["content"]) for m in model.last_messages()]
        assert sent == [
            ("system", "be brief"),
            ("user", "plan a trip"),
            ("assistant", "echo: plan a trip"),
            ("user", "to Lisbon"),
        ]
        state = say("trip", ("user", "and back"))  # the app that owns the thread goes on
    assert [(m.type, m.content) for m in state["messages"]][-4:] == [
        ("human", "to Lisbon"),
        ("ai", "echo: to Lisbon"),
        ("human", "and back"),
        ("ai", "echo: and back"),
    ]
    shown = json.loads(cli("threads", "show", "trip", "--json").stdout)["messages"]
    assert len(shown) == 7


def test_a_new_thread_starts_with_chatclis_system_prompt(cli, model, redis_url) -> None:
    result = cli("chat", "--thread", "fresh", "--system", "be terse", input="hello\n")
    assert result.exit_code == 0, result.output
    assert [(m["role"], m["content"]) for m in model.last_messages()] == [("system", "be terse"), ("user", "hello")]
    stored = json.loads(cli("threads", "show", "fresh", "--json").stdout)["messages"]
    assert [m["type"] for m in stored] == ["human", "ai"]  # the system prompt is not stored


def _checkpoints(rdb) -> list[bytes]:
    return sorted(rdb.keys("checkpoint*"))


class Summarised(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    summary: str


def _refused(cli, rdb, thread: str, why: str) -> None:
    before = _checkpoints(rdb)
    result = cli("chat", "--thread", thread, input="hi\n")
    assert result.exit_code == 2, result.output
    assert f"will not continue LangGraph thread {thread!r}" in result.stderr and why in result.stderr
    assert _checkpoints(rdb) == before  # nothing written


def test_a_thread_with_other_state_keys_is_refused(cli, rdb, redis_url) -> None:
    graph = StateGraph(Summarised)
    graph.add_node("note", lambda state: {"summary": "short"})
    graph.add_edge(START, "note")
    run_graph(redis_url, graph, "notes", {"messages": [("user", "hi")]})
    _refused(cli, rdb, "notes", "keys other than messages (summary)")


def test_a_thread_waiting_on_an_interrupt_is_refused(cli, rdb, redis_url) -> None:
    graph = StateGraph(MessagesState)
    graph.add_node("ask", lambda state: {"messages": [("ai", interrupt("approve?"))]})
    graph.add_edge(START, "ask")
    run_graph(redis_url, graph, "approval", {"messages": [("user", "deploy")]})
    _refused(cli, rdb, "approval", "interrupt")


def test_a_thread_with_subgraph_state_is_refused(cli, rdb, redis_url) -> None:
    inner = StateGraph(MessagesState)
    inner.add_node("inner", lambda state: {"messages": [("ai", "inside")]})
    inner.add_edge(START, "inner")
    outer = StateGraph(MessagesState)
    outer.add_node("sub", inner.compile(checkpointer=True))  # a subgraph that keeps its own state
    outer.add_edge(START, "sub")
    run_graph(redis_url, outer, "nested", {"messages": [("user", "hi")]})
    _refused(cli, rdb, "nested", "subgraph state")


def test_thread_goes_alone(cli) -> None:
    result = cli("chat", "--thread", "t", "--session", "s", input="hi\n")
    assert result.exit_code == 2 and "--thread goes alone" in result.stderr


def test_a_model_error_is_exit_4_with_one_line(cli, model, redis_url) -> None:
    from tests.model_server import Reply

    model.script(Reply(status=401, text="bad key"))
    result = cli("chat", "--thread", "t", input="hi\n")
    assert result.exit_code == 4, result.output
    assert "rejected the API key (HTTP 401)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_langgraph_the_extra_is_named(cli, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.redis", None)  # as if the extra were not installed
    result = cli("chat", "--thread", "t", input="hi\n")
    assert result.exit_code == 2
    assert "pip install 'chatcli[langgraph]'" in result.stderr


def test_a_failed_turn_leaves_the_thread_as_it_was(cli, model, rdb, redis_url) -> None:
    from tests.model_server import Reply

    with langgraph_chat(redis_url, model.base_url) as say:
        say("trip", ("user", "plan a trip"))
    before = _checkpoints(rdb)
    model.script(Reply(status=401, text="bad key"))
    assert cli("chat", "--thread", "trip", input="to Lisbon\n").exit_code == 4
    assert _checkpoints(rdb) == before
    result = cli("chat", "--thread", "trip", input="to Lisbon\n")  # and chatcli can go on with it
    assert result.exit_code == 0, result.output


def test_at_a_terminal_each_line_is_a_turn_until_ctrl_d(terminal, model, redis_url) -> None:
    t = terminal("chat", "--thread", "typed")
    t.wait_prompt("typed", 1)
    t.enter("hello")
    t.wait_for("echo: hello")
    t.wait_prompt("typed", 2)
    t.ctrl("d")
    assert t.exited() == 0
    assert [m["content"] for m in model.last_messages()][-1] == "hello"


def test_a_thread_whose_run_failed_midway_is_refused(cli, rdb, redis_url) -> None:
    def broken(state: MessagesState) -> dict:
        raise RuntimeError("tool crashed")

    graph = StateGraph(MessagesState)
    graph.add_node("agent", broken)
    graph.add_edge(START, "agent")
    with pytest.raises(RuntimeError):
        run_graph(redis_url, graph, "crashed", {"messages": [("user", "hi")]})
    _refused(cli, rdb, "crashed", "pending tasks (agent)")
