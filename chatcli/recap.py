"""What `chat` shows when it resumes a session: where you were.

The message count, the model the next turn uses, the role and the system prompt's first line, and the last
exchange, each cut short. Two reads (the newest two messages with the metadata, and the length).
"""

from __future__ import annotations

from typing import Any

from chatcli import exporting, opening
from chatcli.choice import DEFAULT_SYSTEM, choose
from chatcli.errors import StorageError

WIDTH = 72


def short(text: str, width: int = WIDTH) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def recap_lines(
    store: Any, session_id: str, settings: Any, *, model_flag: str | None, system: str | None, role: str | None
) -> list[str]:
    """The lines to show for a resumed session; none when Redis does not answer (the store says so). The flags
    are this run's (--model, the --system or --role prompt, --role)."""
    try:
        window = store.window(session_id, 2)
        count = store.count(session_id)
    except StorageError:
        return []
    meta = window.meta
    model = choose(meta, model_flag, None, settings.model)[0]
    flag = " (--model, for this run)" if model_flag and meta.get("model") not in (None, model) else ""
    lines = [f"{count} message{'s' if count != 1 else ''}, model {model}{flag}"]
    if meta.get("title"):
        lines.append(f"title: {short(meta['title'])}")
    system = system or meta.get("system") or opening.split(store, session_id, window)[0]
    role = role or meta.get("role")
    shown = short(first_line(system)) if system else f"{DEFAULT_SYSTEM} (the default)"
    lines.append(f"system: {shown}" + (f"  [role {role}]" if role else ""))
    for entry in window.messages[-2:]:
        who = {"user": "you", "assistant": "assistant"}.get(exporting.role(entry), exporting.role(entry))
        lines.append(f"{who}: {short(exporting.text(entry))}")
    return lines
