"""The chain, and what a turn saves.

`ChatPromptTemplate(system, history, human) | ChatOpenAI`, wrapped in `RunnableWithMessageHistory`.
RunnableWithMessageHistory reads the history through `SessionHistory`; the writes are ours: LangChain
saves nothing when the stream raises and may save a partial answer shorter than what was shown when the
reader stops early, so a turn saves exactly the text it yielded, flagged when it is not a whole answer.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, message_to_dict, messages_from_dict
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from pydantic import SecretStr

from chatcli import exporting
from chatcli.errors import ChatcliError, ModelError
from chatcli.settings import Settings, require_model_key
from chatcli.store import SessionStore, Window

DEFAULT_SYSTEM = "You are a helpful assistant."
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


def read_window(store: SessionStore, session_id: str, max_tokens: int, hint: int = 0) -> Window:
    """The newest messages a turn may send, and the session's metadata.

    `hint`: how many elements the previous turn of this session used (see Assistant.turn); the first read
    covers that and a margin, so a session of short messages pays its second read once, not every turn.
    """
    first, most = read_sizes(max_tokens)
    if hint:
        first = min(most, max(first, hint + hint // 4 + 4))
    return store.window(session_id, first, functools.partial(budget, max_tokens), most)


def trim(entries: Sequence[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
    """The newest messages that fit in `max_tokens` (approximate), starting on a user message."""
    kept = list(itertools.takewhile(budget(max_tokens), reversed(entries)))
    kept.reverse()
    while kept and exporting.role(kept[0]) != "user":
        kept.pop(0)
    return kept


class SessionHistory(BaseChatMessageHistory):
    """A LangChain chat history over a chatcli session: reads a trimmed window, appends in one round trip."""

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        max_tokens: int,
        window: Window | None = None,
        autosave: bool = True,
    ):
        self.store = store
        self.session_id = session_id
        self.max_tokens = max_tokens
        self.window = window
        self.autosave = autosave

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        if self.window is None:
            self.window = read_window(self.store, self.session_id, self.max_tokens)
        return messages_from_dict(trim(self.window.messages, self.max_tokens))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if self.autosave:
            self.store.append(self.session_id, [message_to_dict(m) for m in messages])
            self.window = None

    def clear(self) -> None:
        self.store.delete([self.session_id])
        self.window = None


@dataclass
class Turn:
    """One question and its streamed answer. Iterate it for text; afterwards read the outcome."""

    assistant: Assistant
    session_id: str
    question: str
    received: list[str] = field(default_factory=list)
    status: str = "pending"  # complete | cut_off | interrupted | failed
    usage: tuple[int, int] | None = None
    error: ChatcliError | None = None
    saved: bool = False
    skipped: int = 0  # stored elements that were not usable messages
    response_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.received)

    def __iter__(self) -> Iterator[str]:
        assistant = self.assistant
        max_tokens = assistant.settings.max_history_tokens
        window = read_window(assistant.store, self.session_id, max_tokens, assistant._used.get(self.session_id, 0))
        assistant._used[self.session_id] = len(window.messages) + window.skipped
        self.skipped = window.skipped
        system = assistant.system or window.meta.get("system") or DEFAULT_SYSTEM
        history = SessionHistory(
            assistant.store, self.session_id, assistant.settings.max_history_tokens, window, autosave=False
        )
        assistant._pending[self.session_id] = history
        finish_reason: str | None = None
        try:
            stream = assistant.chain.stream(
                {"input": self.question, "system": system},
                config={"configurable": {"session_id": self.session_id}},
            )
            for chunk in stream:
                meta = getattr(chunk, "response_metadata", None) or {}
                finish_reason = meta.get("finish_reason") or finish_reason
                for key in ("model_name", "system_fingerprint"):
                    if meta.get(key):
                        self.response_metadata[key] = meta[key]
                usage = getattr(chunk, "usage_metadata", None)
                if usage:
                    self.usage = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
                piece = (
                    chunk.content
                    if isinstance(chunk.content, str)
                    else exporting.text({"data": {"content": chunk.content}})
                )
                if piece:
                    self.received.append(piece)
                    yield piece
            self.status = "complete" if finish_reason else "cut_off"
        except (GeneratorExit, KeyboardInterrupt):
            self.status = "interrupted"
            raise
        except ChatcliError as exc:
            self.status, self.error = "failed", exc
        except Exception as exc:
            self.status, self.error = "failed", model_error(exc, assistant)
        finally:
            if finish_reason:
                self.response_metadata["finish_reason"] = finish_reason
            self._save()
        if self.error is not None:
            raise self.error

    def _save(self) -> None:
        """Store what was received: nothing when no text arrived, else the question and the answer so far."""
        if not self.received:
            return
        flags = {"complete": {}, "cut_off": {"cut_off": True}, "interrupted": {"interrupted": True}}.get(
            self.status, {"error": str(self.error) if self.error else True}
        )
        metadata = dict(self.response_metadata)
        if flags:
            metadata["chatcli"] = flags
        answer = AIMessage(content=self.text, response_metadata=metadata)
        if self.usage:
            answer.usage_metadata = {
                "input_tokens": self.usage[0],
                "output_tokens": self.usage[1],
                "total_tokens": sum(self.usage),
            }
        meta = {"model": self.assistant.model}
        if self.assistant.system:
            meta["system"] = self.assistant.system
        incr = {"input_tokens": self.usage[0], "output_tokens": self.usage[1]} if self.usage else None
        entries = [message_to_dict(HumanMessage(content=self.question)), message_to_dict(answer)]
        self.assistant.store.append(self.session_id, entries, meta=meta, incr=incr)
        self.saved = True


class Assistant:
    """Builds the chain once; `turn(session_id, text)` streams one answer and saves it."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        *,
        model: str | None = None,
        temperature: float | None = None,
        system: str | None = None,
    ):
        require_model_key(settings)
        self.settings = settings
        self.store = store
        self.model = model or settings.model
        self.temperature = temperature
        self.system = system
        self._pending: dict[str, SessionHistory] = {}
        self._used: dict[str, int] = {}  # per session: list elements the last turn's window used
        self.chain = self._build_chain()

    def _build_chain(self) -> Any:
        from langchain_core.runnables.history import RunnableWithMessageHistory

        prompt = ChatPromptTemplate.from_messages(
            [("system", "{system}"), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        llm = chat_openai_class()(
            model=self.model,
            api_key=SecretStr(self.settings.api_key or "not-needed"),
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            max_retries=2,
            stream_usage=True,
            **options,
        )
        with warnings.catch_warnings():
            # "RunnableWithMessageHistory is deprecated, use LangGraph persistence": the product asks for it.
            warnings.simplefilter("ignore", DeprecationWarning)
            return RunnableWithMessageHistory(
                prompt | llm,
                self._history_for,
                input_messages_key="input",
                history_messages_key="history",
            )

    def _history_for(self, session_id: str) -> SessionHistory:
        # RunnableWithMessageHistory passes only the session id; the turn already read the window.
        pending = self._pending.pop(session_id, None)
        if pending is not None:
            return pending
        return SessionHistory(self.store, session_id, self.settings.max_history_tokens, autosave=False)

    def set_model(self, model: str) -> None:
        self.model = model
        self.chain = self._build_chain()

    def turn(self, session_id: str, text: str) -> Turn:
        return Turn(self, session_id, text)


@functools.cache
def chat_openai_class() -> type:
    """ChatOpenAI, handing the SDK the message dicts LangChain already built, as they are.

    Before sending, the OpenAI SDK walks the whole request body against its typed-dict unions (to rename
    aliased keys and format dates and files): about 0.1 ms a message here, 8 ms of a turn that sends 76
    messages, most of what grows with the history sent. No chat message field has an alias or a format,
    so for messages the walk changes nothing. They go in `extra_body`, which the SDK merges into the body
    without the walk, under the same key in the same place: the request bytes are the same
    (tests/test_chat.py::test_the_request_body_is_what_stock_chat_openai_sends).
    """
    from langchain_openai import ChatOpenAI

    class ChatOpenAIPlainMessages(ChatOpenAI):
        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
            messages = payload.get("messages")
            extra = payload.get("extra_body") or {}
            if isinstance(messages, list) and "response_format" not in payload and "messages" not in extra:
                payload["extra_body"] = {**extra, "messages": messages}
                payload["messages"] = []
            return payload

    return ChatOpenAIPlainMessages


def model_error(exc: Exception, assistant: Assistant) -> ChatcliError:
    """One clear line for whatever the OpenAI client raised; never the API key, even if the server echoed it."""
    error = _model_error(exc, assistant)
    key = assistant.settings.api_key
    if key and key in str(error):
        error = type(error)(str(error).replace(key, "***"))
    return error


def _model_error(exc: Exception, assistant: Assistant) -> ChatcliError:
    import openai

    from chatcli.settings import redact_url

    where = redact_url(assistant.settings.base_url) if assistant.settings.base_url else "api.openai.com"
    if isinstance(exc, openai.AuthenticationError):
        return ModelError(f"the model API at {where} rejected the API key (HTTP 401): check OPENAI_API_KEY")
    if isinstance(exc, openai.PermissionDeniedError):
        return ModelError(f"the model API at {where} denied access (HTTP 403)")
    if isinstance(exc, openai.NotFoundError):
        return ModelError(f"the model API at {where} does not know model {assistant.model!r} (HTTP 404)")
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
