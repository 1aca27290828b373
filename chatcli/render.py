"""Every Rich call. Functions take a Console (or a text stream) so tests and pipes can swap them.

Model text is never interpreted as Rich markup, and is sanitised for the screen only (escape and
control sequences removed); what is stored and what goes to a pipe is the raw text.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import IO, Any, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from chatcli import exporting
from chatcli.secrets import scrub

# rich.markdown (markdown-it) is imported only when a terminal shows Markdown: it costs every command.

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


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (`chatcli history show x | head`): stop quietly, like `cat` does."""
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())
        raise SystemExit(0)


def make_console(stream: IO[str] | None = None, *, stderr: bool = False) -> Console:
    return _Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def print_error(console: Console, message: str) -> None:
    """One error line. Errors, notices and checks are scrubbed here, the one place they are printed: whatever
    wrote the message (a library, a model server echoing the key), no remembered secret is shown."""
    console.print(Text(f"Error: {sanitize(scrub(message))}", style="bold red"), soft_wrap=True)


_held_notices: list[tuple[Console, Text]] | None = None


def print_notice(console: Console, message: str) -> None:
    """One notice line (dim); while an answer is drawn (`notices_held`), it waits until the answer is done."""
    line = Text(sanitize(scrub(message)), style="dim")
    if _held_notices is not None:
        _held_notices.append((console, line))
        return
    console.print(line, soft_wrap=True)


@contextlib.contextmanager
def notices_held() -> Iterator[None]:
    """Notices printed meanwhile (storage telling it spooled a turn, say) come after the block: a line printed
    under a live answer region would make the region draw the answer twice."""
    global _held_notices
    outer, _held_notices = _held_notices, []
    try:
        yield
    finally:
        held, _held_notices = _held_notices, outer
        if outer is not None:
            outer.extend(held)
        else:
            for console, line in held:
                console.print(line, soft_wrap=True)


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
            from rich.markdown import Markdown

            console.print(Markdown(sanitize(body)))
        else:
            console.print(Text(body), soft_wrap=True)
        count += 1
    return count


def print_sessions(console: Console, rows: Iterable[Any]) -> None:
    rows = list(rows)
    table = Table(box=None, pad_edge=False, header_style="bold")
    # ids are what users type next: never shortened; the title gives way instead
    table.add_column("session", no_wrap=True, min_width=max(len(sanitize(r.id)) for r in rows) if rows else 7)
    table.add_column("messages", justify="right", no_wrap=True, min_width=8)
    table.add_column("last activity", no_wrap=True)
    table.add_column("title", overflow="ellipsis", no_wrap=True, ratio=1)
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
        console.print(Text.assemble(mark, f"  {check.name:<19} ", sanitize(scrub(check.detail))), soft_wrap=True)


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


class Trimmed:
    """A renderable without the blank lines Rich puts above or below some elements (lists, tables, code
    padding), so blocks printed one by one are spaced like a whole document: one blank line apart."""

    def __init__(self, renderable: Any):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: Any) -> Any:
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options, pad=False)
        while lines and not "".join(seg.text for seg in lines[0]).strip():
            lines.pop(0)
        while lines and not "".join(seg.text for seg in lines[-1]).strip():
            lines.pop()
        for line in lines:
            yield from line
            yield Segment.line()


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
MAX_LIVE_LINES = 8
REFRESH_INTERVAL = 1 / 20  # seconds between redraws of the unfinished tail


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
        self.refreshed = 0.0
        self.blocks = 0  # blocks printed so far
        self.continued = False  # the last block printed was cut short: the next one goes on from it

    def write(self, piece: str) -> None:
        if not piece:
            return
        if not self.started:
            self.live.start()
            self.started = True
        self.tail += sanitize(piece).replace("\r", "")
        committed = self._commit()
        now = time.monotonic()
        if committed or now - self.refreshed >= REFRESH_INTERVAL:
            self.live.update(self._markdown(self.tail), refresh=True)
            self.refreshed = now

    def finish(self) -> None:
        if self.started:
            self.live.update(Text(""), refresh=True)
            self.live.stop()
        self._print_block(self.tail)
        self.tail = ""

    def _markdown(self, text: str) -> Trimmed:
        from rich.markdown import Markdown

        if self.fence is not None:
            marker, lang = self.fence
            text = f"{marker}{lang}\n{text}\n{marker}"
        return Trimmed(Markdown(text))

    def _commit(self) -> bool:
        """Print every finished block at the head of the tail. True when something was printed."""
        printed = False
        while "\n" in self.tail:
            lines = self.tail.split("\n")
            complete = lines[:-1]  # the last one is still being written
            cut, skip, forced, opening, closing = None, 0, False, None, False
            for i, line in enumerate(complete):
                match = _FENCE.match(line)
                if self.fence is None and match:
                    if i == 0:  # a code block opens: its lines are drawn as code from here on
                        opening = (match.group(1), match.group(2))
                        cut, skip = 0, 1
                    else:  # first print what stands before it
                        cut = i
                    break
                if self.fence is None and not line.strip() and i > 0:
                    cut, skip = i, 1  # a blank line ends a block
                    break
                if self.fence is not None and match and match.group(1)[0] == self.fence[0][0] and not match.group(2):
                    cut, skip, closing = i, 1, True  # the code block closes
                    break
            else:
                if len(complete) > MAX_LIVE_LINES:
                    cut, forced = len(complete), True  # a long block: print its finished lines now
            if cut is None:
                return printed
            self.tail = "\n".join(lines[cut + skip :])
            printed = self._print_block("\n".join(lines[:cut]), continues=forced) or printed
            if opening:
                self.fence = opening
            if closing:
                self.fence = None
        return printed

    def _print_block(self, block: str, continues: bool = False) -> bool:
        """Print a finished block, one blank line after the previous one unless it continues that one."""
        if not block.strip():
            return False
        if self.started:
            self.live.update(Text(""), refresh=False)  # the live region is redrawn below what is printed
        if self.blocks and not self.continued:
            self.console.print()
        self.console.print(self._markdown(block.strip("\n")))
        self.blocks += 1
        self.continued = continues
        return True
