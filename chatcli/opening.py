"""How a stored conversation opens: the leading system messages and greeting a LangChain app writes.

A LangChain app may start a session's list with a system message (`history.add_message(SystemMessage(...))`)
and an AI greeting. Its chain sends both. chatcli keeps the system prompt as metadata and never writes one
into a list, so leading system messages are read as the session's stored system prompt (used unless the user
set one: --system, --role, or one kept in chatcli's metadata) and never sent again as history; an AI
greeting at the start of the list stays in the history as long as the whole conversation fits.

Pure but for one read: nothing here imports LangChain.
"""

from __future__ import annotations

from typing import Any

from chatcli import exporting
from chatcli.store import Window

HEAD = 8  # how many of the oldest elements are read for the leading system messages of a long session


def leading_system(entries: list[dict[str, Any]]) -> tuple[str | None, int]:
    """The text of the leading system messages (joined by a blank line, as `history import` joins them) and
    how many there are."""
    count = 0
    while count < len(entries) and exporting.role(entries[count]) == "system":
        count += 1
    texts = [exporting.text(e) for e in entries[:count]]
    return ("\n\n".join(texts) or None) if count else None, count


def stored_system(store: Any, session_id: str) -> str | None:
    """The system prompt a session's list opens with, if any (`/system` shows it)."""
    return split(store, session_id, store.window(session_id, 1))[0]


def split(store: Any, session_id: str, window: Window) -> tuple[str | None, list[dict[str, Any]]]:
    """The stored system prompt (None: the list opens with none) and the window's messages without it.

    When the window does not reach back to the list's start, the oldest element says whether there is one;
    only then are the oldest few read (a second round trip, for sessions that open with a system message).
    """
    if window.whole:
        system, count = leading_system(window.messages)
        return system, window.messages[count:]
    if window.oldest is None or exporting.role(window.oldest) != "system":
        return None, window.messages
    return leading_system(store.oldest(session_id, HEAD))[0], window.messages
