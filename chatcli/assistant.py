"""The chain, and what a turn saves.

`ChatPromptTemplate(system, history, human) | ChatOpenAI`, wrapped in `RunnableWithMessageHistory`, whose
history object (`SessionHistory`) is the turn's one read path and one write path. LangChain saves nothing
when the stream raises and may save a partial answer shorter than what was shown when the reader stops
early, so the history object bound to a turn writes what the turn yielded, flagged when it is not a whole
answer, exactly once (the turn id), whether LangChain or the turn itself asks first.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, message_to_dict, messages_from_dict
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from pydantic import SecretStr

from chatcli import exporting, opening, reasoning
from chatcli.choice import DEFAULT_SYSTEM, choose
from chatcli.errors import ChatcliError, ModelError
from chatcli.live import publisher
from chatcli.records import TurnRecord, message_id, new_turn_id, with_id
from chatcli.secrets import StreamScrubber, scrub
from chatcli.settings import Settings, require_model_key
from chatcli.store import Window

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3


def approx_tokens(entry: dict[str, Any]) -> int:
    return len(exporting.text(entry)) // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE


def read_sizes(max_tokens: int) -> tuple[int, int]:
    """How many of the newest messages a turn reads first, and at most (SessionStore.window).

    The first read is sized for messages of ~32 approximate tokens (~116 characters) on average, so a long
    session costs the bytes its budget holds, not 4× them; when all of those fit, a second read goes up to
    what messages of ~8 tokens would fill.
    """
    return max(16, max_tokens // 32), max(16, max_tokens // 8)


def budget(max_tokens: int) -> Callable[[dict[str, Any]], bool]:
    """A predicate that accepts messages, newest first, while they fit in `max_tokens`."""
    remaining = max_tokens

    def fits(entry: dict[str, Any]) -> bool:
        nonlocal remaining
        cost = approx_tokens(entry)
        if cost > remaining:
            return False
        remaining -= cost
        return True

    return fits


def read_window(store: Any, session_id: str, max_tokens: int, hint: int = 0) -> Window:
    """The newest messages a turn may send, and the session's metadata.

    `hint`: how many elements the previous turn of this session used (see Assistant.turn); the first read
    covers that and a margin, so a session of short messages pays its second read once, not every turn.
    """
    first, most = read_sizes(max_tokens)
    if hint:
        first = min(most, max(first, hint + hint // 4 + 4))
    return store.window(session_id, first, functools.partial(budget, max_tokens), most)


def trim(entries: Sequence[dict[str, Any]], max_tokens: int, whole: bool = False) -> list[dict[str, Any]]:
    """The newest messages that fit in `max_tokens` (approximate), starting on a user message, without tool
    results whose call is not among them (a skipped or trimmed call): OpenAI refuses those with HTTP 400.
    `whole`: `entries` open the conversation; when they all fit, its opening (an AI greeting) is kept."""
    kept = list(itertools.takewhile(budget(max_tokens), reversed(entries)))
    kept.reverse()
    while kept and exporting.role(kept[0]) != "user" and not (whole and len(kept) == len(entries)):
        kept.pop(0)
    calls: set[Any] = set()
    answered = []
    for entry in kept:
        data = entry.get("data", {})
        if exporting.role(entry) == "tool" and data.get("tool_call_id") not in calls:
            continue
        if exporting.role(entry) == "assistant":
            calls = {c.get("id") for c in data.get("tool_calls") or []}
            calls |= {c.get("id") for c in (data.get("additional_kwargs") or {}).get("tool_calls") or []}
        elif exporting.role(entry) != "tool":
            calls = set()
        answered.append(entry)
    return answered


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP while a turn is saved, and deliver them when it is: a save is never
    cut in half. The Python handlers are swapped, not the thread's signal mask: in a process with other
    threads the kernel hands a signal to any thread that does not block it, and Python runs the handler in the
    main thread all the same."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        if signum not in caught:
            caught.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held in caught:
            signal.raise_signal(held)  # to the handler in force again


class SessionHistory(BaseChatMessageHistory):
    """A LangChain chat history over a chatcli session: the turn's one read path and one write path.

    `messages` is the newest window that fits the token budget (one windowed read, kept for the turn);
    `add_messages` writes through the store in one round trip as one idempotent turn. Bound to a Turn, it
    writes that turn's exchange as chatcli saves it (what was shown, flagged when not whole) exactly once,
    whoever calls first: RunnableWithMessageHistory when the stream ends, or the Turn when it did not.
    """

    def __init__(self, store: Any, session_id: str, max_tokens: int, hint: int = 0, turn: Turn | None = None):
        self.store = store
        self.session_id = session_id
        self.max_tokens = max_tokens
        self.hint = hint
        self.turn = turn
        self.window: Window | None = None
        self.system: str | None = None  # the system prompt the list opens with (chatcli.opening)
        self.entries: list[dict[str, Any]] = []  # the window's messages after it
        self.skipped = 0
        self.saved: bool | None = None  # None: not yet; True: in Redis; False: waiting in the spool

    def load(self) -> Window:
        if self.window is None:
            self.window = read_window(self.store, self.session_id, self.max_tokens, self.hint)
            self.system, self.entries = opening.split(self.store, self.session_id, self.window)
        return self.window

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        window = self.load()
        messages = []
        self.skipped = window.skipped
        for entry in trim(self.entries, self.max_tokens, window.whole):
            try:  # a model's reasoning is never sent back to it
                messages.extend(messages_from_dict([reasoning.for_model(entry)]))
            except Exception:  # what LangChain cannot read is skipped, the session goes on
                self.skipped += 1
        return messages

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if self.turn is not None:
            # called by RunnableWithMessageHistory at the stream's end, which logs what this raises and goes
            # on: a failure here is left to the turn's own call of save_turn, which reports it
            with contextlib.suppress(Exception):
                self.save_turn()
            return
        record = TurnRecord(self.session_id, [])
        record.entries = [with_id(message_to_dict(m), message_id(record.turn, i)) for i, m in enumerate(messages)]
        self._write(record)

    def save_turn(self) -> None:
        """Write the bound turn's exchange, once: nothing when no text arrived."""
        turn = self.turn
        if turn is None or self.saved is not None or not (turn.received or turn.reasoning):
            return
        with signals_held():
            self._write(turn.record())
        turn.saved = True

    def _write(self, record: TurnRecord) -> None:
        save = getattr(self.store, "save_turn", None)
        self.saved = save(record) if save is not None else self.store.append_turn(record) or True
        self.window = None

    def clear(self) -> None:
        self.store.delete([self.session_id])
        self.window = None


@dataclass
class Turn:
    """One question and its streamed answer. Iterate it for text; afterwards read the outcome."""

    assistant: Assistant
    session_id: str
    question: str | list[Any]  # text, or LangChain content blocks (attachments: chatcli.compose)
    id: str = field(default_factory=new_turn_id)
    received: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)  # what the server sent as reasoning, beside the text
    status: str = "pending"  # complete | cut_off | interrupted | failed
    usage: tuple[int, int] | None = None
    error: ChatcliError | None = None
    saved: bool = False
    skipped: int = 0  # stored elements that were not usable messages
    finish_reason: str | None = None
    response_metadata: dict[str, Any] = field(default_factory=dict)
    history: SessionHistory | None = None
    live: Any = None  # publishes the answer's pieces for followers (chatcli.live)
    redactor: StreamScrubber | None = None
    thought_redactor: StreamScrubber | None = None
    # held from handing a piece over until the consumer asks for the next: a signal meanwhile waits, so a
    # piece is in `received` exactly when the consumer got it (conversation.show_turn draws it in that time)
    guard: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    model: str = ""  # the model asked: --model, else the session's, else CHATCLI_MODEL
    temperature: float | None = None
    first: bool = False  # the session had no messages before this turn
    meta: dict[str, str] = field(default_factory=dict)  # the session's metadata as the turn read it

    @property
    def text(self) -> str:
        return "".join(self.received)

    def __iter__(self) -> Iterator[str]:
        assistant = self.assistant
        self.history = history = SessionHistory(
            assistant.store,
            self.session_id,
            assistant.settings.max_history_tokens,
            assistant._used.get(self.session_id, 0),
            turn=self,
        )
        window = history.load()
        assistant._used[self.session_id] = len(window.messages) + window.skipped
        system = assistant.system or window.meta.get("system") or history.system or DEFAULT_SYSTEM
        self.model, self.temperature = assistant.choose(window.meta)
        self.first = not window.messages and not window.skipped and not window.offline
        self.meta = window.meta
        chain = assistant.chain_for(self.model, self.temperature)
        self.redactor = redactor = StreamScrubber()
        self.thought_redactor = StreamScrubber()
        tap = assistant.tap
        tap.reset()
        self.status = "streaming"
        self.live = live = publisher(assistant.store, self.session_id, self.id, self.question, window.offline)
        try:
            stream = chain.stream(
                {"input": [HumanMessage(content=self.question)], "system": system},
                config={"configurable": {"session_id": self.session_id, "turn": self}},
            )
            for chunk in stream:
                self._take_metadata(chunk)
                text = exporting.text({"data": {"content": chunk.content}})
                yield from self._thoughts(tap.take(bool(text)), last=bool(text))
                piece = redactor.feed(text)
                if piece:
                    with self.guard():
                        self.received.append(piece)
                        live.piece(piece)
                        yield piece
            yield from self._thoughts(tap.rest(), last=True)
            rest = redactor.flush()
            if rest:
                with self.guard():
                    self.received.append(rest)
                    live.piece(rest)
                    yield rest
            self.status = self._ended()
        except (GeneratorExit, KeyboardInterrupt):
            self.status = "interrupted"
            raise
        except ChatcliError as exc:
            self.status, self.error = "failed", exc
        except Exception as exc:
            self.status, self.error = "failed", model_error(exc, assistant)
        finally:
            self.skipped = history.skipped or window.skipped
            if self.status == "streaming":  # stopped between pieces: what was shown is what is saved
                self.status = "interrupted"
            try:
                history.save_turn()
            finally:  # saved first: a follower that sees the end finds the turn stored
                live.end(self.status)
        if self.error is not None:
            raise self.error

    def _thoughts(self, thoughts: list[str], last: bool) -> Iterator[str]:
        """Reasoning pieces as the turn yields them (reasoning.Thought); `last`: the answer's text follows, so
        what the scrubber held back is shown now, before it."""
        redactor = self.thought_redactor or StreamScrubber()
        pieces = [redactor.feed(thought) for thought in thoughts] + ([redactor.flush()] if last else [])
        for piece in pieces:
            if piece:
                with self.guard():
                    self.reasoning.append(piece)
                    yield reasoning.Thought(piece)

    def _take_metadata(self, chunk: Any) -> None:
        meta = getattr(chunk, "response_metadata", None) or {}
        self.finish_reason = meta.get("finish_reason") or self.finish_reason
        for key in ("model_name", "system_fingerprint"):
            if meta.get(key):
                self.response_metadata[key] = meta[key]
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            self.usage = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))

    def _ended(self) -> str:
        return "complete" if self.finish_reason else "cut_off"

    def record(self) -> TurnRecord:
        """The turn as it is stored: the question and the text received, flagged when it is not a whole answer."""
        text = self.text
        status = self.status
        if status == "streaming":  # the stream's end, as LangChain reports it: the held-back tail follows
            status = self._ended()
            text += self.redactor.held if self.redactor else ""
        flags = {"complete": {}, "cut_off": {"cut_off": True}, "interrupted": {"interrupted": True}}.get(
            status, {"error": str(self.error) if self.error else True}
        )
        metadata = dict(self.response_metadata)
        if self.finish_reason:
            metadata["finish_reason"] = self.finish_reason
        if flags:
            metadata["chatcli"] = flags
        thought = "".join(self.reasoning)
        if self.status == "streaming":  # as above: the reasoning not yielded yet follows
            pending = "".join(t for t, _ in self.assistant.tap.events)
            thought += scrub((self.thought_redactor.held if self.thought_redactor else "") + pending)
        extra = {reasoning.KEY: thought} if thought else {}
        answer = AIMessage(content=text, additional_kwargs=extra, response_metadata=metadata, id=message_id(self.id, 1))
        if self.usage:
            answer.usage_metadata = {
                "input_tokens": self.usage[0],
                "output_tokens": self.usage[1],
                "total_tokens": sum(self.usage),
            }
        meta: dict[str, str] = {}
        if self.assistant.system:
            meta["system"] = self.assistant.system
        if self.assistant.role:
            meta["role"] = self.assistant.role
        # a session keeps the model (and temperature) it started with, or that /model set: a flag wins for
        # one run only
        defaults = {"model": self.model or self.assistant.model}
        if self.temperature is not None:
            defaults["temperature"] = repr(self.temperature)
        incr = {"input_tokens": self.usage[0], "output_tokens": self.usage[1]} if self.usage else {}
        question = HumanMessage(content=self.question, id=message_id(self.id, 0))
        entries = [message_to_dict(question), message_to_dict(answer)]
        return TurnRecord(self.session_id, entries, self.id, meta, incr, defaults=defaults)


class Assistant:
    """Builds a chain per model; `turn(session_id, text)` streams one answer and saves it.

    `model`, `temperature` and `system` are what the command line gave for this run: they win over what the
    session keeps (its metadata), which wins over the settings (CHATCLI_MODEL, ...).
    """

    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        model: str | None = None,
        temperature: float | None = None,
        system: str | None = None,
        role: str | None = None,
    ):
        require_model_key(settings)
        self.settings = settings
        self.store = store
        self.model_flag = model
        self.temperature_flag = temperature
        self.model = model or settings.model  # the model of the latest turn
        self.new_session_model = settings.model  # a session with no model of its own: CHATCLI_MODEL, or /model
        self.temperature = temperature
        self.system = system
        self.role = role  # the role whose prompt `system` is: kept with the session
        self._used: dict[str, int] = {}  # per session: list elements the last turn's window used
        self.tap = reasoning.ReasoningTap()
        # reads the reasoning deltas ChatOpenAI drops; OPENAI_PROXY, which ChatOpenAI would apply to its own
        # client (and refuses beside one given), is applied here
        self.http_client = self.tap.client(proxy=os.environ.get("OPENAI_PROXY") or None)
        self._chains: dict[tuple[str, float | None], tuple[Any, Any]] = {}
        self.chain = self.chain_for(self.model, self.temperature)

    def choose(self, meta: dict[str, str]) -> tuple[str, float | None]:
        """The model and temperature of a turn in a session with this metadata."""
        self.model, self.temperature = choose(meta, self.model_flag, self.temperature_flag, self.new_session_model)
        return self.model, self.temperature

    def chain_for(self, model: str, temperature: float | None) -> Any:
        key = (model, temperature)
        if key not in self._chains:
            self._chains[key] = self._build_chain(model, temperature)
        self.chain, self.llm = self._chains[key]
        self.api = api_name(self.llm)
        return self.chain

    def _build_chain(self, model: str, temperature: float | None) -> Any:
        from langchain_core.runnables import ConfigurableFieldSpec, RunnableLambda
        from langchain_core.runnables.history import RunnableWithMessageHistory

        # "input" is the question's text (as LangChain callers pass it) or a list of messages (content blocks)
        prompt = RunnableLambda(_input_as_messages) | ChatPromptTemplate.from_messages(
            [("system", "{system}"), MessagesPlaceholder("history"), MessagesPlaceholder("input")]
        )
        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        llm = chat_model(self.settings, model, http_client=self.http_client, openai_proxy=None, **options)
        with warnings.catch_warnings():
            # "RunnableWithMessageHistory is deprecated, use LangGraph persistence": the product asks for it.
            warnings.simplefilter("ignore", DeprecationWarning)
            chain = RunnableWithMessageHistory(
                prompt | llm,
                self._history_for,
                input_messages_key="input",
                history_messages_key="history",
                history_factory_config=[
                    ConfigurableFieldSpec(id="session_id", annotation=str, name="Session id", default=""),
                    ConfigurableFieldSpec(id="turn", annotation=Any, name="The turn being answered", default=None),
                ],
            )
        return chain, llm

    def _history_for(self, session_id: str, turn: Turn | None) -> SessionHistory:
        """The history RunnableWithMessageHistory reads and writes: the turn's own (config `turn`), or, for a
        caller that passes `{"session_id": ID, "turn": None}`, a plain one that saves what LangChain hands it."""
        if turn is not None and turn.history is not None:
            return turn.history
        return SessionHistory(self.store, session_id, self.settings.max_history_tokens)

    def use_model(self, session_id: str, model: str) -> None:
        """`/model NAME`: the session's model from now on (kept in its metadata; a --model flag no longer wins)."""
        self.model_flag = None
        self.store.set_meta(session_id, model=model)
        self.model = self.new_session_model = model  # and of the sessions this REPL starts from now on

    def session_model(self, session_id: str) -> str:
        """The model the next turn of this session will use."""
        return self.choose(self.store.get_meta(session_id))[0]

    def turn(self, session_id: str, content: str | list[Any]) -> Turn:
        """One turn; `content` is the question's text or its content blocks (chatcli.compose.message_content)."""
        return Turn(self, session_id, content)


def _input_as_messages(values: dict[str, Any]) -> dict[str, Any]:
    question = values["input"]
    return {**values, "input": [HumanMessage(content=question)] if isinstance(question, str) else question}


def chat_model(settings: Settings, model: str, **options: Any) -> Any:
    """ChatOpenAI for `model`, on the API settings.chosen_api names: langchain-openai picks the Responses API
    by itself for some model names (codex, -pro), which Chat-Completions-only servers answer with a misleading
    404, so chatcli says which API to use unless asked to let it choose (CHATCLI_API=auto)."""
    from langchain_openai import ChatOpenAI

    api = settings.chosen_api
    if api != "auto":
        options["use_responses_api"] = api == "responses"
    return ChatOpenAI(
        model=model,
        api_key=SecretStr(settings.api_key or "not-needed"),
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=2,
        stream_usage=True,
        **options,
    )


def api_name(llm: Any) -> str:
    """Which OpenAI API `llm` calls, for error messages."""
    return "Responses API, POST /responses" if llm.use_responses_api else "Chat Completions API, POST /chat/completions"


def model_error(exc: Exception, assistant: Assistant) -> ChatcliError:
    """One clear line for whatever the OpenAI client raised; never the API key, even if the server echoed it."""
    error = _model_error(exc, assistant)
    return type(error)(scrub(str(error)))


def _model_error(exc: Exception, assistant: Assistant) -> ChatcliError:
    import openai

    from chatcli.settings import redact_url

    host = redact_url(assistant.settings.base_url) if assistant.settings.base_url else "api.openai.com"
    where = f"{host} ({assistant.api})"
    if isinstance(exc, openai.AuthenticationError):
        return ModelError(f"the model API at {where} rejected the API key (HTTP 401): check OPENAI_API_KEY")
    if isinstance(exc, openai.PermissionDeniedError):
        return ModelError(f"the model API at {where} denied access (HTTP 403)")
    if isinstance(exc, openai.NotFoundError):
        hint = "; CHATCLI_API=chat uses Chat Completions" if "Responses" in assistant.api else ""
        return ModelError(f"the model API at {where} does not know model {assistant.model!r} (HTTP 404){hint}")
    if isinstance(exc, openai.RateLimitError):
        return ModelError(f"the model API at {where} is rate limiting (HTTP 429), still after retries; try again later")
    if isinstance(exc, openai.APIStatusError):
        detail = _short(getattr(exc, "message", "") or str(exc))
        return ModelError(f"the model API at {where} failed with HTTP {exc.status_code}: {detail}")
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(
            f"no answer from the model API at {where} within {assistant.settings.timeout:g} s (CHATCLI_TIMEOUT)"
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return ModelError(f"lost or could not open the connection to the model API at {where}: {_short(str(cause))}")
    return ModelError(f"the model call failed: {type(exc).__name__}: {_short(str(exc))}")


def _short(text: str, width: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


TITLE_PROMPT = (
    "Write a title for the conversation below: at most six words, in the language of the conversation. "
    "Answer with the title alone: no quotes, no punctuation at the end."
)
TITLE_WIDTH = 80


def title_job(assistant: Assistant, turn: Turn) -> threading.Thread | None:
    """With CHATCLI_AUTO_TITLE, after a session's first answer: a thread that asks the model for a short
    title and stores it unless the session has one (a title the user set is never overwritten: HSETNX).
    The answer is already shown; nothing waits for the thread but the end of the command."""
    if not assistant.settings.auto_title or not turn.first or turn.status != "complete" or turn.meta.get("title"):
        return None
    thread = threading.Thread(target=write_title, args=(assistant, turn), name="chatcli-title", daemon=True)
    thread.start()
    return thread


def write_title(assistant: Assistant, turn: Turn) -> str | None:
    """Ask for a title and store it where the session has none; any failure leaves the default title."""
    from langchain_core.messages import SystemMessage

    try:
        llm = assistant._chains[(turn.model, turn.temperature)][1]  # built by the turn; read, not changed
        question = exporting.text({"data": {"content": turn.question}})
        conversation = f"User: {question[:2000]}\n\nAssistant: {turn.text[:2000]}"
        reply = llm.invoke([SystemMessage(TITLE_PROMPT), HumanMessage(conversation)])
        title = clean_title(exporting.text({"data": {"content": reply.content}}))
        if title:
            assistant.store.set_fields(turn.session_id, {"title": title, "title_by": "model"}, only_missing=True)
        return title or None
    except Exception:  # a title is a nicety: the session keeps its default title (the first question)
        return None


def clean_title(text: str) -> str:
    """The first line of a model's answer, without quotes, markup or a final full stop, cut short."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = scrub(" ".join(line.split())).strip("#*_`\"'“”‘’ ").removeprefix("Title:").strip().rstrip(".")
    return line if len(line) <= TITLE_WIDTH else line[: TITLE_WIDTH - 1] + "…"
