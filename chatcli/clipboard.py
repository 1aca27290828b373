"""Copying to the user's clipboard through the terminal (OSC 52): works over SSH and in tmux, needs no
clipboard library, and is refused where no terminal can receive it."""

from __future__ import annotations

import base64
import os
from typing import IO


def osc52(text: str, environ: dict[str, str] | None = None) -> str:
    """The escape sequence that puts `text` on the clipboard; inside tmux or GNU screen, wrapped so the
    multiplexer passes it on to the outer terminal."""
    environ = dict(os.environ) if environ is None else environ
    sequence = f"\x1b]52;c;{base64.b64encode(text.encode('utf-8')).decode('ascii')}\x07"
    if environ.get("TMUX"):
        return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    if environ.get("TERM", "").startswith("screen"):
        return "\x1bP" + sequence + "\x1b\\"
    return sequence


def why_not(stream: IO[str], environ: dict[str, str] | None = None) -> str | None:
    """Why `stream` cannot take a copy (not a terminal, or TERM says it has no escape sequences); else None."""
    environ = dict(os.environ) if environ is None else environ
    try:
        tty = os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        tty = False
    if not tty:
        return "the output is not a terminal"
    term = environ.get("TERM", "")
    if term in ("", "dumb", "unknown"):
        return f"the terminal (TERM={term or 'unset'}) takes no escape sequences"
    return None


def code_blocks(markdown: str) -> list[str]:
    """The fenced and indented code blocks of a Markdown text, in order, as written."""
    from markdown_it import MarkdownIt

    return [t.content for t in MarkdownIt().parse(markdown) if t.type in ("fence", "code_block")]
