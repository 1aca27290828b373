"""What a REPL tells its user before each answer about the other clients of its session.

- Turns another client added since this REPL last looked: "2 new messages from another client", then the
  exchange, each message one short line. They are in the model's context already (each turn reads the window);
  this is so the user sees them too.
- A session answering elsewhere now (the presence key, chatcli.live): "session foo is answering on HOST since
  12:03". The turn goes on: both turns are stored whole, each question with its own answer.

One pipelined round trip (the newest messages and the presence share the session's slot). A message is known
by its id (`<turn>-0/-1`), or by its content when another program wrote it without one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from chatcli import exporting
from chatcli.errors import StorageError
from chatcli.follow import message_key
from chatcli.live import Presence, answering_line
from chatcli.recap import short
from chatcli.store import SessionStore, parse_entries

LOOK_BACK = 50  # newest messages read before each turn
QUIET = 30.0  # seconds without a look after Redis did not answer one
WIDTH = 100


class Notices:
    """Per session: the messages this REPL knows; `check` tells what is new since, and who is answering."""

    def __init__(self, store: Any, session_id: str):
        self.store = getattr(store, "store", store)  # the SessionStore under the spool layer
        self.session_id = session_id
        self.known: set[str] | None = None  # None: not looked yet
        # Redis did not answer: no look until then, so a REPL whose Redis is down waits for no extra timeout
        self.quiet_until = time.monotonic() + QUIET if getattr(store, "offline", False) else 0.0
        if not isinstance(self.store, SessionStore):  # another layout (--source langchain-redis): no notices
            self.quiet_until = math.inf

    def _read(self) -> tuple[list[dict[str, Any]], Presence | None]:
        listed, presence = self.store.keys.session(self.session_id), self.store.keys.answering(self.session_id)
        items, raw = self.store.pipeline_execute(lambda p: (p.lrange(listed, 0, LOOK_BACK - 1), p.get(presence)))
        newest_first, _skipped = parse_entries(items)
        return newest_first, Presence.from_raw(raw)

    def start(self) -> None:
        """What the session holds now is known (the resume recap showed it)."""
        if time.monotonic() < self.quiet_until:
            return
        try:
            newest_first, _presence = self._read()
        except StorageError:
            self.quiet_until = time.monotonic() + QUIET
            return
        self.known = {message_key(entry) for entry in newest_first}

    def own(self, turn_id: str) -> None:
        """A turn this REPL saved: known."""
        if self.known is not None:
            self.known |= {f"{turn_id}-0", f"{turn_id}-1"}

    def check(self) -> tuple[list[dict[str, Any]], Presence | None]:
        """The messages other clients added since the last look (oldest first), and who else is answering now.
        Nothing when Redis does not answer (the turn says so itself)."""
        if time.monotonic() < self.quiet_until:
            return [], None
        try:
            newest_first, presence = self._read()
        except StorageError:
            self.quiet_until = time.monotonic() + QUIET
            return [], None
        if presence is not None and presence.is_mine():
            presence = None
        if self.known is None:
            self.known = {message_key(entry) for entry in newest_first}
            return [], presence
        new = []
        for entry in newest_first:
            if message_key(entry) in self.known:
                break
            new.append(entry)
        self.known |= {message_key(entry) for entry in newest_first}
        new.reverse()
        return new, presence

    def tell(self, say: Callable[[str], None]) -> None:
        """Say what `check` found."""
        new, presence = self.check()
        if new:
            say(f"{len(new)} new message{'s' if len(new) != 1 else ''} from another client:")
            for entry in new:
                say(f"  {exporting.role(entry)}: {short(exporting.text(entry), WIDTH)}")
        if presence is not None:
            say(answering_line(self.session_id, presence) + " (your turn goes on; both are kept)")


def tell_answering(store: Any, session_id: str, say: Callable[[str], None]) -> None:
    """`ask`: say when the session is answering elsewhere now (one GET; nothing when Redis does not answer)."""
    from chatcli.live import answering

    if getattr(store, "offline", False):  # Redis did not answer: nobody can be seen answering, no wait for it
        return
    presence = answering(getattr(store, "store", store), session_id)
    if presence is not None and not presence.is_mine():
        say(answering_line(session_id, presence) + " (your turn goes on; both are kept)")
