"""A model's reasoning: shown apart from its answer, stored with it, never sent back to the model.

Two sources. OpenAI-compatible servers for reasoning models (vLLM, Ollama, DeepSeek, LiteLLM) stream it in
`reasoning_content` (or `reasoning`) deltas, which langchain-openai's ChatOpenAI drops: `ReasoningTap` reads
them from the HTTP stream itself, through the one public hook there is (the `http_client` ChatOpenAI takes).
Other models write it in the answer, inside `<think>…</think>`: `ThinkSplitter` tells it apart on screen, and
`for_model` leaves it out of what later turns send; the stored text stays as the model wrote it.

No LangChain here; the OpenAI client only inside the tap (chat and ask load it anyway).
"""

from __future__ import annotations

import codecs
import collections
import importlib
import json
import zlib
from collections.abc import Iterator
from typing import Any

OPEN, CLOSE = "<think>", "</think>"


class Thought(str):
    """A piece of reasoning, as a turn yields it beside the pieces of its answer (plain str)."""


KEY = "reasoning_content"  # where a stored answer keeps its reasoning (additional_kwargs), as LangChain's
# provider packages (langchain-deepseek, langchain-xai, ...) do
DELTA_KEYS = ("reasoning_content", "reasoning")  # DeepSeek, older vLLM, LiteLLM; Ollama, OpenRouter, newer vLLM


def _partial(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper beginning of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Splits an answer arriving in pieces into runs of (is_reasoning, text): a `<think>…</think>` block at
    the start of the answer (white space before it allowed) is reasoning; everything else is answer. A tag cut
    between two pieces is held back until it is whole; `flush()` returns what is held at the end."""

    def __init__(self) -> None:
        self.state = "start"  # start | think | answer
        self.held = ""

    def feed(self, piece: str) -> list[tuple[bool, str]]:
        text, self.held = self.held + piece, ""
        out: list[tuple[bool, str]] = []
        if self.state == "start":
            stripped = text.lstrip()
            if stripped.startswith(OPEN):
                self.state, text = "think", stripped[len(OPEN) :]
            elif OPEN.startswith(stripped):  # nothing yet, or the tag is still arriving
                self.held = text
                return out
            else:
                self.state = "answer"
        if self.state == "think":
            end = text.find(CLOSE)
            if end < 0:
                keep = _partial(text, CLOSE)
                self.held = text[len(text) - keep :] if keep else ""
                return [(True, text[: len(text) - keep])] if len(text) > keep else []
            out.append((True, text[:end]))
            self.state, text = "answer", text[end + len(CLOSE) :]
        if text:
            out.append((False, text))
        return [(reasoning, run) for reasoning, run in out if run]

    def flush(self) -> list[tuple[bool, str]]:
        held, self.held = self.held, ""
        return [(self.state == "think", held)] if held else []


def split_think(text: str) -> tuple[str, str]:
    """A whole answer as (reasoning written inside <think>…</think> at its start, the answer)."""
    splitter = ThinkSplitter()
    runs = splitter.feed(text) + splitter.flush()
    return "".join(t for r, t in runs if r), "".join(t for r, t in runs if not r)


def stored_reasoning(entry: dict[str, Any]) -> str:
    """The reasoning kept with a stored message (additional_kwargs), or ''."""
    extra = entry.get("data", {}).get("additional_kwargs") or {}
    if not isinstance(extra, dict):
        return ""
    found = next((extra[k] for k in DELTA_KEYS if isinstance(extra.get(k), str) and extra[k]), "")
    return str(found)


def for_model(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored answer as later turns send it: no reasoning (neither kept beside it nor inside <think>)."""
    data = entry.get("data")
    if not isinstance(data, dict) or str(entry.get("type", "")).lower() not in ("ai", "aimessagechunk"):
        return entry
    extra = data.get("additional_kwargs")
    content = data.get("content")
    thinking = isinstance(content, str) and content.lstrip().startswith(OPEN)
    if not thinking and not (isinstance(extra, dict) and any(k in extra for k in DELTA_KEYS)):
        return entry
    data = dict(data)
    if isinstance(extra, dict):
        data["additional_kwargs"] = {k: v for k, v in extra.items() if k not in DELTA_KEYS}
    if thinking:
        data["content"] = split_think(str(content))[1].lstrip("\n")
    return {**entry, "data": data}


# -- reading reasoning deltas from the HTTP stream ----------------------------------------------------------


class ReasoningTap:
    """Reads the reasoning deltas of a streamed chat completion on their way to the OpenAI client.

    ChatOpenAI drops the `reasoning_content` / `reasoning` fields of a delta, and has no public hook for the
    raw chunk (only a private method that provider packages override). What it does take, documented, is
    `http_client`: this tap is that client's response event hook (httpx, public API). It wraps the body of a
    `text/event-stream` response so that, as the OpenAI client reads it, each event's reasoning and whether it
    carries content are queued, in order. `take()` hands them to the turn chunk by chunk, so reasoning is
    shown where it came in the stream: before the content that followed it.
    """

    def __init__(self) -> None:
        self.events: collections.deque[tuple[str, bool]] = collections.deque()  # (reasoning, has content)

    def client(self, **options: Any) -> Any:
        """An httpx client for ChatOpenAI(http_client=...): the OpenAI client's own defaults, plus the tap."""
        import openai

        return openai.DefaultHttpxClient(event_hooks={"response": [self.on_response]}, **options)

    def reset(self) -> None:
        self.events.clear()

    def on_response(self, response: Any) -> None:
        # the OpenAI client's own httpx (openai 3 ships it as `httpx2`): its stream class, whichever it is
        package = importlib.import_module(type(response).__module__.split(".")[0])
        kind = response.headers.get("content-type", "")
        coding = response.headers.get("content-encoding", "identity").strip().lower()
        if response.status_code != 200 or not kind.startswith("text/event-stream"):
            return
        if coding not in ("identity", "", "gzip", "deflate"):
            return  # br, zstd: the answer streams as usual, only its reasoning is not read
        inner = response.stream

        class Tapped(package.SyncByteStream):  # type: ignore[name-defined]
            def __iter__(tapped) -> Iterator[bytes]:
                events = SseEvents(coding)
                for data in inner:
                    for event in events.feed(data):
                        self._take_event(event)
                    yield data

            def close(tapped) -> None:
                inner.close()

        response.stream = Tapped()

    def _take_event(self, payload: str) -> None:
        try:
            chunk = json.loads(payload)
        except ValueError:
            return
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = first.get("delta")
        if not isinstance(delta, dict):
            return
        thought = next((delta[k] for k in DELTA_KEYS if isinstance(delta.get(k), str) and delta[k]), "")
        has_content = bool(delta.get("content"))  # as ChatOpenAI's chunk will have it
        if thought or has_content:
            self.events.append((thought, has_content))

    def take(self, has_content: bool) -> list[str]:
        """The reasoning to show before a chunk of the answer: what came before that chunk's content when it
        has some, else what came before the next content."""
        found = []
        while self.events:
            thought, content = self.events[0]
            if content and not has_content:
                break
            self.events.popleft()
            if thought:
                found.append(thought)
            if content:
                break
        return found

    def rest(self) -> list[str]:
        """The reasoning left when the stream ends."""
        found = [thought for thought, _ in self.events if thought]
        self.events.clear()
        return found


class SseEvents:
    """Server-sent events from the bytes of a response body: the `data` of each event, as text."""

    def __init__(self, coding: str = "identity"):
        self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if coding in ("gzip", "deflate") else None
        self.decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.line = ""
        self.data: list[str] = []

    def feed(self, raw: bytes) -> list[str]:
        if self.inflate is not None:
            try:
                raw = self.inflate.decompress(raw)
            except zlib.error:
                self.inflate, raw = None, b""
        text = self.line + self.decode.decode(raw)
        carry = "\r" if text.endswith("\r") else ""  # maybe the first half of "\r\n"
        lines = text[: len(text) - len(carry)].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.line = lines.pop() + carry
        events = []
        for line in lines:
            if not line:
                if self.data:
                    events.append("\n".join(self.data))
                    self.data = []
            elif line.startswith("data:"):
                value = line[5:]
                self.data.append(value[1:] if value.startswith(" ") else value)
        return [event for event in events if event != "[DONE]"]
