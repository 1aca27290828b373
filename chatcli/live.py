"""Live answers: what a turn publishes while it streams, and which client is answering (presence).

A capped Redis Stream per session (`Keys.live`, XADD MAXLEN ~), not pub/sub: a follower that starts in the
middle of an answer reads the stream from the answer's `start` entry (the presence key names it), so it sees
the answer from its start; a follower that lost its connection for a moment goes on from the last id it read,
losing nothing. The stream key carries the session's hash tag, so on a Redis Cluster it lives on the node of the
session itself and plain XADD/XREAD work across nodes, on every server chatcli runs (the embedded Redis 6.2
has no sharded pub/sub; SPUBLISH needs 7.0). The stream is capped (~STREAM_LENGTH entries) and expires
STREAM_TTL seconds after the last answer, so it never grows with the session.

Presence (`Keys.answering`): a JSON string {host, pid, started, turn, since} with a PRESENCE_TTL-second TTL,
refreshed every REFRESH seconds while the answer streams and deleted at its end (only if it is still this
turn's): a client that crashed leaves it for at most PRESENCE_TTL seconds.

Publishing never slows or fails a turn: the turn only puts its pieces on a queue; a thread sends them, at
most one pipeline every LINGER seconds with what queued up meanwhile (a follower is at most that much later;
fewer sends are less work taken from the turn, which shares the interpreter's lock), and stops at its first
error (which it keeps in `failed`, never raises).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

STREAM_LENGTH = 10_000  # entries kept (approximately): a long answer's pieces, from its start
STREAM_TTL = 600  # seconds the stream outlives the last answer published to it
PRESENCE_TTL = 10  # seconds a client that stopped refreshing (crashed) is still said to be answering
REFRESH = 3.0  # seconds between refreshes of the presence key while answering
LINGER = 0.02  # seconds the pieces that follow a send are gathered for the next (an answer's end is not held)
END_WAIT = 0.5  # at most this long the process's exit waits for its publishers to send what they queued

# KEYS: presence   ARGV: the value this turn set. Deletes the key only while it is still this turn's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Presence:
    """Who is answering in a session: host and process, since when (epoch seconds), which turn, and the id of
    the turn's `start` entry in the session's stream."""

    host: str
    pid: int
    started: float
    turn: str
    since: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_raw(cls, raw: Any) -> Presence | None:
        """The presence stored in `raw` (bytes or str), or None when there is none or it is not one."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["host"]), int(data["pid"]), float(data["started"]), str(data["turn"]), data["since"])
        except (ValueError, KeyError, TypeError):
            return None

    def is_mine(self) -> bool:
        return self.host == host_name() and self.pid == os.getpid()


def host_name() -> str:
    return socket.gethostname() or "localhost"


def text_of(question: Any) -> str:
    """A question as text: a string, or (a question with attachments) content blocks."""
    if isinstance(question, str):
        return question
    from chatcli import exporting

    return exporting.text({"data": {"content": question}})


class Publisher:
    """Publishes one turn to the session's stream from a thread; every method returns at once and never raises.

    Entries: {kind: start, turn, question, host, pid, started}, {kind: piece, turn, text}, {kind: end, turn,
    status}. The presence key is set with the start entry and refreshed until the end entry.
    """

    def __init__(self, client: Any, keys: Any, session_id: str, turn_id: str, question: Any):
        self.client = client
        self.stream = keys.live(session_id)
        self.presence_key = keys.answering(session_id)
        self.turn = turn_id
        self.question = question
        self.started = time.time()
        self.queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.failed: BaseException | None = None
        self.sent = 0  # entries sent
        self.thread = threading.Thread(target=self._run, name="chatcli-live", daemon=True)
        self.thread.start()

    def piece(self, text: str) -> None:
        self.queue.put(("piece", text))

    def end(self, status: str) -> None:
        """The answer ended (it is saved): the thread publishes the end and releases the presence. Nothing
        waits for it but the screen, once the answer is shown, and the end of the process (`settle`)."""
        self.queue.put(("end", status))
        _ending.add(self.thread)

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            presence = self._start()
            refreshed = sent = time.monotonic()
            ended = False
            while not ended:
                try:
                    batch = [self.queue.get(timeout=REFRESH)]
                except queue.Empty:
                    batch = []
                # what comes within LINGER of the last send goes with it: one pipeline, not one per piece
                while batch and batch[-1][0] != "end":
                    try:
                        batch.append(self.queue.get(timeout=max(0.0, sent + LINGER - time.monotonic())))
                    except queue.Empty:
                        break
                ended = any(kind == "end" for kind, _ in batch)
                pipe = self.client.pipeline(transaction=False)
                for kind, value in batch:
                    fields = {"kind": kind, "turn": self.turn, ("status" if kind == "end" else "text"): value}
                    pipe.xadd(self.stream, fields, maxlen=STREAM_LENGTH, approximate=True)
                if not ended and time.monotonic() - refreshed >= REFRESH:
                    pipe.set(self.presence_key, presence, ex=PRESENCE_TTL)
                    refreshed = time.monotonic()
                if ended:
                    pipe.expire(self.stream, STREAM_TTL)
                    pipe.execute_command(
                        "EVAL", _RELEASE, 1, self.presence_key, presence
                    )  # a cluster pipe has no eval()
                pipe.execute()
                sent = time.monotonic()
                self.sent += len(batch)
        except Exception as exc:  # publishing is a nicety: the turn goes on and is saved all the same
            self.failed = exc
        finally:
            _ending.discard(threading.current_thread())

    def _start(self) -> str:
        """The start entry, then the presence naming it: two round trips, on this thread."""
        fields = {
            "kind": "start",
            "turn": self.turn,
            "question": text_of(self.question),
            "host": host_name(),
            "pid": str(os.getpid()),
            "started": repr(self.started),
        }
        since = self.client.xadd(self.stream, fields, maxlen=STREAM_LENGTH, approximate=True)
        since = since.decode() if isinstance(since, bytes) else str(since)
        presence = Presence(host_name(), os.getpid(), self.started, self.turn, since).to_json()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.presence_key, presence, ex=PRESENCE_TTL)
        pipe.expire(self.stream, STREAM_TTL)
        pipe.execute()
        self.sent += 1
        return presence


_ending: set[threading.Thread] = set()


@atexit.register
def settle() -> None:
    """Wait (at most END_WAIT) until the answers that ended are published and their presence released: once
    an answer is on screen (conversation.show_turn), and at the process's exit."""
    deadline = time.monotonic() + END_WAIT
    for thread in list(_ending):
        thread.join(max(0.0, deadline - time.monotonic()))


class NoPublisher:
    """A turn on a store that cannot publish (no Redis client): nothing is sent."""

    failed = None

    def piece(self, text: str) -> None:
        pass

    def end(self, status: str) -> None:
        pass


def publisher(
    store: Any, session_id: str, turn_id: str, question: Any, offline: bool = False
) -> Publisher | NoPublisher:
    """A publisher for a turn of `store`'s session (a SessionStore or the spool layer around one); never raises.
    `offline`: Redis did not answer the turn's read, so nobody could follow it: nothing is sent."""
    if offline:
        return NoPublisher()
    try:
        return Publisher(store.client, store.keys, session_id, turn_id, question)
    except Exception:
        return NoPublisher()


def answering(store: Any, session_id: str) -> Presence | None:
    """Who is answering in the session now, or None; a Redis error is None too (it is only a notice)."""
    try:
        return Presence.from_raw(store.client.get(store.keys.answering(session_id)))
    except Exception:
        return None


def answering_line(session_id: str, presence: Presence) -> str:
    """ "session foo is answering on HOST since 12:03" """
    since = time.strftime("%H:%M", time.localtime(presence.started))
    return f"session {session_id} is answering on {presence.host} since {since}"
