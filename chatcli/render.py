"""Every Rich call. Functions take a Console (or a text stream) so tests and pipes can swap them.

Model text is never interpreted as Rich markup, and is sanitised for the screen only (escape and
control sequences removed); what is stored and what goes to a pipe is the raw text.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO, Any, Protocol

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from chatcli import exporting

# CSI, OSC (ended by BEL or ST), other two-byte escapes, and C0/C1 controls but tab and newline.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def sanitize(text: str) -> str:
    """Text safe to show in a terminal: escape sequences and control characters removed."""
    return _ESCAPES.sub("", text)


def make_console(stream: IO[str] | None = None, *, stderr: bool = False) -> Console:
    return Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def print_error(console: Console, message: str) -> None:
    console.print(Text(f"Error: {sanitize(message)}", style="bold red"), soft_wrap=True)


def print_notice(console: Console, message: str) -> None:
    console.print(Text(sanitize(message), style="dim"), soft_wrap=True)


# -- conversations ------------------------------------------------------------------------------------

_ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


def print_messages(console: Console, entries: Iterable[dict[str, Any]]) -> int:
    """A conversation: a role line, then the text as Markdown on a terminal or as plain text elsewhere."""
    count = 0
    for entry in entries:
        who = exporting.role(entry)
        notes = [k.replace("_", " ") for k, v in exporting.flags(entry).items() if v]
        header = Text(who, style=_ROLE_STYLES.get(who, "bold"))
        if notes:
            header.append(f" ({', '.join(notes)})", style="yellow")
        if count:
            console.print()
        console.print(header)
        body = exporting.text(entry)
        if console.is_terminal:
            console.print(Markdown(sanitize(body)))
        else:
            console.print(Text(body), soft_wrap=True)
        count += 1
    return count


def print_sessions(console: Console, rows: Iterable[Any]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("session")
    table.add_column("messages", justify="right")
    table.add_column("last activity")
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=60)
    for row in rows:
        updated = datetime.fromtimestamp(row.updated).strftime("%Y-%m-%d %H:%M") if row.updated else ""
        if not getattr(row, "indexed", True):
            updated = f"{updated} (unindexed)".strip()
        table.add_row(Text(sanitize(row.id)), str(row.messages), updated, Text(sanitize(row.title)))
    console.print(table)


def print_checks(console: Console, checks: Iterable[Any]) -> None:
    """`chatcli doctor`: one line per check, "ok" or "FAIL", the name, the detail."""
    for check in checks:
        mark = Text("ok  ", style="green") if check.ok else Text("FAIL", style="bold red")
        console.print(Text.assemble(mark, f"  {check.name:<19} ", sanitize(check.detail)), soft_wrap=True)


def print_usage(console: Console, usage: tuple[int, int] | None) -> None:
    if usage:
        console.print(Text(f"tokens: {usage[0]} in, {usage[1]} out", style="dim"))


# -- streamed answers ---------------------------------------------------------------------------------


class AnswerStream(Protocol):
    def write(self, piece: str) -> None: ...

    def finish(self) -> None: ...


class PlainAnswer:
    """Not a terminal: the raw text, as it arrives."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout
        self.last = ""

    def write(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()
        self.last = piece

    def finish(self) -> None:
        if self.last and not self.last.endswith("\n"):
            self.out.write("\n")
        self.out.flush()


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
MAX_LIVE_LINES = 8


class MarkdownAnswer:
    """A terminal: finished Markdown blocks are printed once and stay in the scrollback; only the
    unfinished tail is redrawn (in a transient Live region), so each token costs the tail, not the answer.
    """

    def __init__(self, console: Console):
        from rich.live import Live

        self.console = console
        self.tail = ""  # text not printed yet
        self.fence: tuple[str, str] | None = None  # (marker, language) of an open code fence
        self.live = Live(console=console, auto_refresh=False, transient=True, vertical_overflow="visible")
        self.started = False

    def write(self, piece: str) -> None:
        if not piece:
            return
        if not self.started:
            self.live.start()
            self.started = True
        self.tail += sanitize(piece).replace("\r", "")
        self._commit()
        self.live.update(self._markdown(self.tail), refresh=True)

    def finish(self) -> None:
        if self.started:
            self.live.update(Text(""), refresh=True)
            self.live.stop()
        if self.tail.strip():
            self.console.print(self._markdown(self.tail))
        self.tail = ""

    def _markdown(self, text: str) -> Markdown:
        if self.fence is not None:
            marker, lang = self.fence
            text = f"{marker}{lang}\n{text}\n{marker}"
        return Markdown(text)

    def _commit(self) -> None:
        """Print every finished block at the head of the tail."""
        while "\n" in self.tail:
            lines = self.tail.split("\n")
            complete = lines[:-1]  # the last one is still being written
            cut = None
            for i, line in enumerate(complete):
                match = _FENCE.match(line)
                if self.fence is None:
                    if match and i == 0:
                        self.fence = (match.group(1), match.group(2))
                        self.tail = "\n".join(lines[1:])
                        cut = -1
                        break
                    if match:  # a fence opens: first print what stands before it
                        cut = i
                        break
                    if not line.strip() and i > 0:
                        cut = i + 1
                        break
                elif match and match.group(1).startswith(self.fence[0][0]) and not match.group(2):
                    cut = i  # the fence closes
                    break
            if cut == -1:
                continue
            if cut is None and len(complete) > MAX_LIVE_LINES:
                cut = len(complete)  # a long block: print its finished lines now
            if cut is None:
                return
            if self.fence is not None and cut < len(complete) and _FENCE.match(complete[cut]):
                block = "\n".join(lines[:cut])
                self.tail = "\n".join(lines[cut + 1 :])
                self._print_block(block)
                self.fence = None
                continue
            block = "\n".join(lines[:cut])
            self.tail = "\n".join(lines[cut:])
            self._print_block(block)

    def _print_block(self, block: str) -> None:
        if block.strip():
            self.console.print(self._markdown(block.rstrip("\n")))
