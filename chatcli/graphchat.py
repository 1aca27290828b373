"""`chatcli chat --thread ID`: continue a LangGraph thread (langgraph-checkpoint-redis' RedisSaver) through
LangGraph itself, so that the app that owns the thread can go on with it afterwards.

Each line is one turn: ChatOpenAI streams an answer to the thread's messages (the newest that fit
CHATCLI_MAX_HISTORY_TOKENS, after the thread's own leading system message, or chatcli's system prompt, which
is not stored), then one run of a one-node graph on the thread, `StateGraph(MessagesState)`, whose node
returns that answer: LangGraph appends the question and the answer to the thread's state in new
checkpoints, as the app's own runs do. A failed answer runs no graph, so it writes nothing.

A thread this graph could corrupt is refused before anything is written: state keys other than `messages`,
pending tasks or interrupts, or subgraph namespaces (a graph with subgraphs keeps their state apart): read
from the raw checkpoint (chatcli.threads.ThreadState), since this graph's own view of the state shows only
the channels it declares.

LangGraph is an optional extra (`pip install 'chatcli[langgraph]'`); nothing else in chatcli imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from chatcli.errors import ModelError, UsageError
from chatcli.settings import Settings
from chatcli.threads import ThreadStore

EXTRA_HINT = "pip install 'chatcli[langgraph]'"


@dataclass
class _ModelContext:
    """What chatcli.assistant.model_error reads to word a model failure."""

    settings: Settings
    model: str
    api: str


class ThreadChat:
    """The one-node graph on a RedisSaver, run once per question."""

    def __init__(self, settings: Settings, store: ThreadStore, redis_url: str, model: str, temperature: float | None):
        try:
            from langgraph.checkpoint.redis import RedisSaver
            from langgraph.graph import START, MessagesState, StateGraph
        except ImportError:
            raise UsageError(f"chat --thread runs LangGraph, which is not installed: {EXTRA_HINT}") from None
        from chatcli.assistant import api_name, chat_model

        options = {"temperature": temperature} if temperature is not None else {}
        self.llm = chat_model(settings, model, **options)
        self.context = _ModelContext(settings, model, api_name(self.llm))
        self.settings = settings
        self.store = store
        self.system = ""
        self.pending: Any = None
        graph = StateGraph(MessagesState)
        graph.add_node("model", self._answer)
        graph.add_edge(START, "model")
        self._saver_cm = RedisSaver.from_conn_string(redis_url)
        saver = self._saver_cm.__enter__()
        saver.setup()
        self.app: Any = graph.compile(checkpointer=saver)

    def close(self) -> None:
        self._saver_cm.__exit__(None, None, None)

    def _answer(self, state: Any) -> dict[str, Any]:
        """The graph's one node: the answer ChatOpenAI streamed for this run (see ask)."""
        return {"messages": [self.pending]}

    def prompt(self, messages: list[Any]) -> list[Any]:
        """The thread's leading system message (else chatcli's prompt), then the newest messages that fit."""
        from langchain_core.messages import SystemMessage, message_to_dict, messages_from_dict

        from chatcli.assistant import DEFAULT_SYSTEM, trim

        lead = [messages[0]] if messages and messages[0].type == "system" else []
        rest = messages[len(lead) :]
        kept = messages_from_dict(trim([message_to_dict(m) for m in rest], self.settings.max_history_tokens))
        return (lead or [SystemMessage(self.system or DEFAULT_SYSTEM)]) + kept

    def config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def check(self, thread_id: str) -> None:
        """UsageError when the thread is one this graph must not continue."""
        why = self.store.inspect(thread_id).refusal()
        if why:
            raise UsageError(f"will not continue LangGraph thread {thread_id!r}: {why}")

    def ask(self, thread_id: str, question: str, out: Any) -> str:
        """One turn: ChatOpenAI's answer streamed to `out`, then one run of the graph on the thread that stores
        the question and that answer. The model is called before the run, so a failed or interrupted answer
        writes nothing: LangGraph checkpoints a failed run's input, which would leave the thread with a
        pending task."""
        from langchain_core.messages import HumanMessage, message_chunk_to_message

        from chatcli.assistant import model_error
        from chatcli.render import sanitize

        config = self.config(thread_id)
        history = list((self.app.get_state(config).values or {}).get("messages", []))
        human = HumanMessage(question)
        answer = None
        try:
            for chunk in self.llm.stream(self.prompt([*history, human])):
                answer = chunk if answer is None else answer + chunk
                if isinstance(chunk.content, str) and chunk.content:
                    out.write(sanitize(chunk.content))
                    out.flush()
        except Exception as exc:
            import openai

            if isinstance(exc, openai.OpenAIError):
                raise model_error(exc, self.context) from None  # type: ignore[arg-type]
            raise ModelError(f"the model call failed: {type(exc).__name__}: {exc}") from None
        out.write("\n")
        if answer is None:
            raise ModelError("the model sent no answer")
        self.pending = message_chunk_to_message(answer)
        self.app.invoke({"messages": [human]}, config)
        return str(self.pending.content)


def chat_thread(
    settings: Settings,
    thread_id: str,
    lines: Iterable[str],
    *,
    model: str | None = None,
    temperature: float | None = None,
    system: str | None = None,
) -> None:
    """Answer each line on the thread (refused first, before anything is written, when it is not plain chat)."""
    from chatcli import redis_server

    if not settings.redis_url:
        raise UsageError("chat --thread needs the Redis of the LangGraph app: give --redis-url or CHATCLI_REDIS_URL")
    conn = redis_server.connect(settings)
    store = ThreadStore(conn.client, conn.where)
    chat = ThreadChat(settings, store, settings.redis_url, model or settings.model, temperature)
    try:
        chat.system = system or ""
        chat.check(thread_id)
        for line in lines:
            question = line.rstrip("\n")
            if question.strip():
                chat.ask(thread_id, question, sys.stdout)
    finally:
        chat.close()


def typed_lines(prompt: str) -> Iterator[str]:
    """Lines typed at a terminal, until Ctrl-D or /exit."""
    while True:
        try:
            line = input(prompt)
        except EOFError:
            return
        if line.strip() in ("/exit", "/quit"):
            return
        yield line
