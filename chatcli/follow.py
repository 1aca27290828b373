"""`chatcli follow ID` and the REPL's `/follow`: a session's last exchange, then every new turn as it happens,
and an answer being generated elsewhere token by token (chatcli.live publishes it).

The follower reads the presence key and the stream's last id first, then the newest messages: an answer that
ends meanwhile is shown once (turn ids), one that starts meanwhile is read from the stream. It then blocks on
XREAD; each time it wakes without news, and after each answer's end, it looks at the length of the list for
turns no stream announced (written by another program, or flushed from a spool) and shows them. A client that
crashed mid-answer leaves its presence to expire: the answer is then closed as "stopped".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from chatcli import exporting
from chatcli.live import Presence, text_of
from chatcli.recap import short
from chatcli.records import turn_of

BLOCK_MS = 1000  # XREAD waits this long at most: then the list and the presence are looked at
READ_COUNT = 500
NEW_LIMIT = 100  # messages shown at most when many turns arrive at once without a stream


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def message_key(entry: dict[str, Any]) -> str:
    """What identifies a stored message: its id, else its content (messages LangChain wrote have no id)."""
    data = entry.get("data") or {}
    return str(data.get("id") or exporting.encode_entry(entry))


def last_exchange(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest user message and what follows it (oldest first); the newest message when there is none."""
    for i in range(len(messages) - 1, -1, -1):
        if exporting.role(messages[i]) == "user":
            return messages[i:]
    return messages[-1:]


@dataclass
class Event:
    """One thing a follower shows: `kind` message | start | token | end (| idle: nothing new), and its fields."""

    kind: str
    turn: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Follower:
    """Follows one session of a SessionStore. Iterate for Events until the caller stops (Ctrl-C)."""

    def __init__(self, store: Any, session_id: str, block_ms: int = BLOCK_MS):
        self.store = store
        self.client = store.client
        self.session_id = session_id
        self.key = store.keys.session(session_id)
        self.stream = store.keys.live(session_id)
        self.presence_key = store.keys.answering(session_id)
        self.block_ms = block_ms
        self.shown: set[str] = set()  # turn ids (and keys of id-less messages) already shown
        self.length = 0  # the list's length when last looked at
        self.open: dict[str, str] = {}  # the answers streaming (started, not ended): turn id -> question
        self.cursor = "0-0"

    def __iter__(self) -> Iterator[Event]:
        yield from self._begin()
        while True:
            reply = self.store.run(self.client.xread, {self.stream: self.cursor}, count=READ_COUNT, block=self.block_ms)
            entries = [entry for _stream, items in reply or [] for entry in items]
            ended = False
            for entry_id, raw in entries:
                self.cursor = _text(entry_id)
                for event in self._entry(_fields(raw)):
                    ended = ended or event.kind == "end"
                    yield event
            if not entries or ended:
                yield from self._stored()
            if not entries and self.open:
                yield from self._check_alive()
            if not entries:
                yield Event("idle")  # a look that found nothing new: the sinks show nothing

    # -- steps -----------------------------------------------------------------------------------
    def _begin(self) -> Iterator[Event]:
        raw_presence, last = self.store.pipeline_execute(
            lambda p: (p.get(self.presence_key), p.xrevrange(self.stream, count=1))
        )
        self.cursor = _text(last[0][0]) if last else "0-0"
        # the length first: a turn stored between the two reads is in the window, and not shown again
        self.length = self.store.count(self.session_id)
        window = self.store.window(self.session_id, 20)
        for entry in window.messages:  # every message read counts as shown: only the last exchange is printed
            self.shown.add(self._turn_key(entry))
        for entry in last_exchange(window.messages):
            yield self._message(entry)
        presence = Presence.from_raw(raw_presence)
        if presence is not None and presence.since and presence.turn not in self.shown:
            # an answer is streaming: from its start entry to the stream's last id
            for entry_id, raw in self.store.run(self.client.xrange, self.stream, presence.since, self.cursor):
                yield from self._entry(_fields(raw))
                self.cursor = max(self.cursor, _text(entry_id), key=_stream_id)

    def _entry(self, fields: dict[str, str]) -> Iterator[Event]:
        turn, kind = fields.get("turn", ""), fields.get("kind")
        if kind == "start":
            if turn in self.shown:
                return
            self.shown.add(turn)
            self.open[turn] = fields.get("question", "")
            data: dict[str, Any] = {"question": fields.get("question", ""), "host": fields.get("host", "")}
            try:
                data["pid"], data["started"] = int(fields.get("pid") or 0), float(fields.get("started") or 0)
            except ValueError:
                data["pid"], data["started"] = 0, 0.0
            yield Event("start", turn, data)
        elif turn not in self.open:  # an answer shown whole from the list, or begun before the follower
            return
        elif kind == "piece":
            yield Event("token", turn, {"text": fields.get("text", ""), "question": self.open[turn]})
        elif kind == "end":
            del self.open[turn]
            yield Event("end", turn, {"status": fields.get("status", "")})

    def _stored(self) -> Iterator[Event]:
        """Turns stored since the list was last looked at that no stream announced."""
        length = self.store.count(self.session_id)
        grown, self.length = length - self.length, length
        if grown <= 0:
            return
        items = self.store.run(self.client.lrange, self.key, 0, min(grown, NEW_LIMIT) - 1)
        fresh: set[str] = set()  # a turn's question and answer share its key
        for raw in reversed(items):
            entry = exporting.parse_entry(raw)
            if entry is None:
                continue
            key = self._turn_key(entry)
            if key not in self.shown or key in fresh:
                fresh.add(key)
                yield self._message(entry)
        self.shown |= fresh

    def _check_alive(self) -> Iterator[Event]:
        """Nobody is answering any more (the presence expired: the client crashed): close the open answers."""
        if Presence.from_raw(self.store.run(self.client.get, self.presence_key)) is None:
            for turn in list(self.open):
                del self.open[turn]
                yield Event("end", turn, {"status": "stopped"})

    def _turn_key(self, entry: dict[str, Any]) -> str:
        return turn_of((entry.get("data") or {}).get("id")) or message_key(entry)

    def _message(self, entry: dict[str, Any]) -> Event:
        data = entry.get("data") or {}
        turn = turn_of(data.get("id"))
        return Event("message", turn, {"role": exporting.role(entry), "content": exporting.text(entry), "entry": entry})


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


# -- showing ---------------------------------------------------------------------------------------------


class JsonLines:
    """`--json`: one JSON object a line, flushed: {"event": message|start|token|end, "session", "turn", ...}."""

    def __init__(self, session_id: str, out: IO[str] | None = None):
        self.session_id = session_id
        self.out = out or sys.stdout

    def show(self, event: Event) -> None:
        if event.kind == "idle":
            return
        data = {k: v for k, v in event.data.items() if k not in ("entry", "question") or event.kind == "start"}
        if event.kind == "message":
            data["message"] = event.data["entry"]
            del data["content"]
        line = {"event": event.kind, "session": self.session_id, "turn": event.turn, **data}
        self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.out.flush()


class Transcript:
    """For people: stored messages as `history show` prints them; a streaming answer as plain text, as it
    comes (escape sequences removed on a terminal), under the question and the host that is answering."""

    def __init__(self, console: Any, show_reasoning: bool = True):
        self.console = console
        self.show_reasoning = show_reasoning
        self.out = console.file
        self.midline = False
        self.current: str | None = None  # the turn whose answer the last token belongs to

    def show(self, event: Event) -> None:
        from chatcli import render

        clean = render.sanitize if self.console.is_terminal else str
        if event.kind == "idle":
            return
        if event.kind == "message":
            render.print_messages(self.console, [event.data["entry"]], show_reasoning=self.show_reasoning)
        elif event.kind == "start":
            self._break_line()
            self.current = event.turn
            since = render.short_time(event.data["started"])
            render.print_notice(self.console, f"user (on {event.data['host']}, {since}):")
            self.console.print(clean(text_of(event.data["question"])), soft_wrap=True, markup=False, highlight=False)
            render.print_notice(self.console, "assistant:")
        elif event.kind == "token":
            if event.turn != self.current:  # two answers at once: say which one goes on
                self._break_line()
                self.current = event.turn
                render.print_notice(self.console, f"assistant (answering: {short(text_of(event.data['question']))}):")
            self.out.write(clean(event.data["text"]))
            self.out.flush()
            self.midline = not event.data["text"].endswith("\n")
        elif event.kind == "end":
            if event.turn == self.current:
                self._break_line()
            status = str(event.data.get("status") or "")
            if status == "stopped":
                render.print_notice(self.console, "(the answering client stopped before the end of the answer)")
            elif status not in ("complete", ""):
                render.print_notice(self.console, f"({status.replace('_', ' ')})")
            self.out.flush()

    def _break_line(self) -> None:
        if self.midline:
            self.out.write("\n")
            self.out.flush()
            self.midline = False


def require(store: Any, session_id: str) -> None:
    """NotFoundError unless the session has messages or metadata, or an answer is streaming in it (a new
    session's first answer is not stored before its end)."""
    from chatcli.errors import NotFoundError

    keys = store.keys
    names = (keys.session(session_id), keys.meta(session_id), keys.live(session_id), keys.answering(session_id))
    if not any(store.pipeline_execute(lambda p: [p.exists(name) for name in names])):
        raise NotFoundError(f"no session named {session_id!r}")


def follow(store: Any, session_id: str, sink: Any) -> None:
    """Show the session through `sink` until Ctrl-C (KeyboardInterrupt, left to the caller)."""
    for event in Follower(store, session_id):
        sink.show(event)
