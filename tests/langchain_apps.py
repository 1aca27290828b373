"""The LangChain apps whose Redis stores chatcli reads, written with the real libraries: a LangGraph chat graph
on langgraph-checkpoint-redis' RedisSaver, and langchain-redis' RedisChatMessageHistory. The model is the
tests' local model server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def langgraph_chat(redis_url: str, base_url: str) -> Iterator[Any]:
    """`say(thread, *messages)`: one run of a one-node chat graph (MessagesState + ChatOpenAI) on a thread."""
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.redis import RedisSaver
    from langgraph.graph import START, MessagesState, StateGraph

    llm = ChatOpenAI(base_url=base_url, api_key="x", model="test-model")  # type: ignore[arg-type]

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", model)
    graph.add_edge(START, "model")
    with RedisSaver.from_conn_string(redis_url) as saver:
        saver.setup()
        app = graph.compile(checkpointer=saver)

        def say(thread: str, *messages: Any) -> Any:
            return app.invoke({"messages": list(messages)}, {"configurable": {"thread_id": thread}})

        say.app = app  # type: ignore[attr-defined]
        yield say


def lc_history(redis_url: str, session_id: str, **options: Any) -> Any:
    """langchain-redis' RedisChatMessageHistory on a session (default key prefix and index).

    Its client speaks RESP2: langchain-redis 0.2.6 parses FT.INFO's reply as a RESP2 list, and with redis-py
    8's RESP3 default it fails (AttributeError: 'dict' object has no attribute 'index') on every instance made
    once the index exists: a bug of the library, not of chatcli."""
    import warnings

    import redis
    from langchain_redis import RedisChatMessageHistory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "RedisChatMessageHistory was deprecated in LangChain 0.2.6"
        return RedisChatMessageHistory(session_id, redis_client=redis.Redis.from_url(redis_url, protocol=2), **options)


def run_graph(redis_url: str, graph: Any, thread: str, state: Any) -> Any:
    """One run of `graph` (a StateGraph) on a RedisSaver thread."""
    from langgraph.checkpoint.redis import RedisSaver

    with RedisSaver.from_conn_string(redis_url) as saver:
        saver.setup()
        return graph.compile(checkpointer=saver).invoke(state, {"configurable": {"thread_id": thread}})
