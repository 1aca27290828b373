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

from rich.cells import cell_len, get_character_cell_size
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


def print_messages(console: Console, entries: Iterable[dict[str, Any]], show_reasoning: bool = True) -> int:
    """A conversation: a role line, then each message's content. On a terminal the text is Markdown (a newline
    is a line break), reasoning is dim behind a gutter, tool results are plain text; elsewhere the text is as
    stored. Tool calls, images and files are one line each, everywhere."""
    from chatcli import contents
    from chatcli.reasoning import split_think

    terminal = console.is_terminal
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
        answered = contents.tool_result(entry)
        if answered:
            console.print(Text(sanitize(answered), style="dim"), soft_wrap=not terminal)
        thought_shown = False
        for part in contents.parts(entry):
            pieces = [("reasoning", part.text)] if part.kind == "reasoning" else [(part.kind, part.text)]
            if terminal and part.kind == "text" and who == "assistant":
                thought, answer = split_think(part.text)
                pieces = [("reasoning", thought), ("text", answer.lstrip("\n"))]
            for kind, body in pieces:
                if not body or (kind == "reasoning" and not (terminal and show_reasoning)):
                    continue
                if thought_shown:
                    console.print()  # the answer stands apart from the reasoning before it
                thought_shown = kind == "reasoning"
                if not terminal:
                    console.print(Text(body), soft_wrap=True)
                elif kind == "reasoning":
                    console.print(Reasoning(sanitize(body).strip("\n")))
                elif kind == "attachment":
                    console.print(Text(sanitize(body), style="dim"))
                elif answered:  # a tool's output is data, not prose
                    console.print(Text(sanitize(body)))
                else:
                    console.print(markdown(sanitize(body)))
        for line in contents.extras(entry):
            console.print(Text(sanitize(line), style="yellow" if terminal else ""), soft_wrap=not terminal)
        count += 1
    return count


def short_time(ts: float | None, now: float | None = None) -> str:
    """A local time that stays readable in a narrow column: "14:03" today, "Nov 24 14:03" within a year,
    "2025-11-24" before."""
    if not ts:
        return ""
    when = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(now if now is not None else time.time())
    if when.date() == today.date():
        return when.strftime("%H:%M")
    if abs((today - when).days) < 330:
        return when.strftime("%b %d %H:%M")
    return when.strftime("%Y-%m-%d")


def _one_line(text: str) -> str:
    return " ".join(sanitize(text).split())


def print_sessions(console: Console, rows: Iterable[Any]) -> None:
    """`sessions list`. On a terminal, a table that fits its width: ids are never cut, times stay whole, the
    title and the snippet of the last message give way. Elsewhere, one full row per session, tab-separated
    (id, messages, last activity in ISO-8601 UTC, title, last message), no header and no frame."""
    rows = list(rows)
    if not console.is_terminal:
        for row in rows:
            fields = [row.id, str(row.messages), iso(row.updated) or "", row.title, getattr(row, "last", "")]
            if not getattr(row, "indexed", True):
                fields.append("unindexed")
            console.file.write("\t".join(_one_line(field) for field in fields) + "\n")
        console.file.flush()
        return
    times = []
    for row in rows:
        shown = short_time(row.updated)
        times.append(shown if getattr(row, "indexed", True) else f"{shown} (unindexed)".strip())
    widths = [
        max([len("session")] + [len(sanitize(r.id)) for r in rows]),
        max([len("messages")] + [len(str(r.messages)) for r in rows]),
        max([len("last activity")] + [len(t) for t in times]),
    ]
    room = console.width - sum(widths) - 2 * len(widths)
    if room < len("title"):  # the ids alone fill the line: one session per line, wrapped
        for row, shown in zip(rows, times, strict=True):
            line = Text(sanitize(row.id), style="bold")
            line.append(f"  {row.messages} messages  {shown}  {_one_line(row.title)}")
            console.print(line, soft_wrap=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("session", no_wrap=True, width=widths[0])
    table.add_column("messages", justify="right", no_wrap=True, width=widths[1])
    table.add_column("last activity", no_wrap=True, width=widths[2])
    about_header = "title · last message" if room >= len("title · last message") else "title"
    table.add_column(about_header, no_wrap=True, overflow="ellipsis", width=room)
    for row, shown in zip(rows, times, strict=True):
        about = Text(_one_line(row.title))
        last = _one_line(getattr(row, "last", ""))
        if last:
            about.append((" · " if about else "") + last, style="dim")
        table.add_row(Text(sanitize(row.id)), str(row.messages), shown, about)
    console.print(table)


MATCH_STYLE = "bold reverse"


def print_hit(console: Console, hit: Any) -> None:
    """One search hit. On a terminal: the session id, when it was last active, the role and the message's
    number, then the snippet with every match highlighted; the text sanitised piece by piece, so the highlight
    stays where the match is. Elsewhere one tab-separated row: id, last activity (ISO-8601 UTC), role,
    message number, snippet (sanitised too: rows stay rows)."""
    snippet = hit.snippet
    if not console.is_terminal:
        fields = [hit.session, iso(hit.updated) or "", hit.role, str(hit.position), snippet.text]
        console.file.write("\t".join(_one_line(field) for field in fields) + "\n")
        console.file.flush()
        return
    head = Text(sanitize(hit.session), style="bold")
    when = short_time(hit.updated) or ("unindexed" if not hit.indexed else "")
    head.append(f"  {when + ' · ' if when else ''}{hit.role} #{hit.position}", style="dim")
    body = Text("  ")
    at = 0
    for start, end in snippet.spans:
        body.append(sanitize(snippet.text[at:start]))
        body.append(sanitize(snippet.text[start:end]), style=MATCH_STYLE)
        at = end
    body.append(sanitize(snippet.text[at:]))
    console.print(head, soft_wrap=True)
    console.print(body, soft_wrap=False, overflow="fold")


class ProgressLine:
    """A line on stderr about a long task, once it has run `after` seconds: on a terminal one line redrawn in
    place (`clear` takes it away before other output), elsewhere a line every `every` seconds."""

    def __init__(self, console: Console, after: float = 1.0, every: float = 5.0):
        self.console = console
        self.after = after
        self.every = every
        self.started = time.monotonic()
        self.shown = False
        self.last = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if now - self.started < self.after:
            return
        line = sanitize(text)
        if self.console.is_terminal:
            self.console.file.write("\r\x1b[2K" + line[: max(1, self.console.width - 1)])
            self.console.file.flush()
            self.shown = True
        elif now - self.last >= self.every:
            self.console.print(Text(line, style="dim"), soft_wrap=True)
            self.last = now

    def clear(self) -> None:
        if self.shown:
            self.console.file.write("\r\x1b[2K")
            self.console.file.flush()
            self.shown = False


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

    def think(self, piece: str) -> None: ...

    def finish(self) -> None: ...


class PlainAnswer:
    """Not a terminal: the raw text, as it arrives; reasoning a server sent beside it is not printed."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout
        self.last = ""

    def write(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()
        self.last = piece

    def think(self, piece: str) -> None:
        pass

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


REASONING_STYLE = "dim italic"
GUTTER = "│ "


class Reasoning:
    """Reasoning as it is shown: dim, behind a gutter ("│ "), so it reads apart from the answer also where
    the terminal shows no dim text; its lines as written."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console: Console, options: Any) -> Any:
        from rich.segment import Segment

        width = max(1, options.max_width - len(GUTTER))
        body = Text(self.text, style=REASONING_STYLE)
        for line in console.render_lines(body, options.update(width=width), pad=False):
            yield Segment(GUTTER, console.get_style("dim"))
            yield from line
            yield Segment.line()


def _row_end(line: str, width: int) -> int:
    """Where the first screen row of `line` ends, `width` cells wide: after the last word that fits (as Rich
    wraps), or inside a word longer than the row."""
    used = 0
    for index, char in enumerate(line):
        used += get_character_cell_size(char)
        if used > width:
            space = line.rfind(" ", 0, index + 1)
            return space if space > 0 else max(1, index)
    return len(line)


def markdown(text: str) -> Trimmed:
    """Model text as Markdown (chatcli.markdown: line breaks kept, link addresses shown), trimmed."""
    from chatcli.markdown import ChatMarkdown

    return Trimmed(ChatMarkdown(text))


MAX_LIVE_LINES = 8
REFRESH_INTERVAL = 1 / 20  # seconds between redraws of the unfinished tail


class MarkdownAnswer:
    """A terminal: finished Markdown blocks are printed once and stay in the scrollback; only the
    unfinished tail is redrawn (in a transient Live region), so each token costs the tail, not the answer.

    Reasoning (`think`, or a <think> block at the start of the answer) is shown before the answer, dim and
    behind a gutter, line by line as it arrives; with `show_reasoning` off it is not shown, and the spinner
    (`waiting`, stopped when something is drawn) says "thinking" meanwhile.
    """

    def __init__(self, console: Console, *, show_reasoning: bool = True, waiting: Any = None):
        from rich.live import Live

        from chatcli.reasoning import ThinkSplitter

        self.console = console
        self.show_reasoning = show_reasoning
        self.waiting = waiting
        self.splitter = ThinkSplitter()
        self.section: str | None = None  # "reasoning" or "answer": what the tail holds
        self.tail = ""  # text not printed yet
        self.fence: tuple[str, str] | None = None  # (marker, language) of an open code block
        self.live = Live(console=console, auto_refresh=False, transient=True, vertical_overflow="ellipsis")
        self.started = False
        self.refreshed = 0.0
        self.printed = False  # something was printed
        self.continued = False  # the last thing printed was cut short: the next one goes on from it

    def write(self, piece: str) -> None:
        for is_reasoning, text in self.splitter.feed(piece):
            self._add(is_reasoning, text)

    def think(self, piece: str) -> None:
        self._add(True, piece)

    def finish(self) -> None:
        for is_reasoning, text in self.splitter.flush():
            self._add(is_reasoning, text)
        if self.started:
            self.live.update(Text(""), refresh=True)
            self.live.stop()
        self._close_section()

    # -- what arrives ----------------------------------------------------------------------------------
    def _add(self, is_reasoning: bool, text: str) -> None:
        text = sanitize(text).replace("\r", "")
        if not text:
            return
        if is_reasoning and not self.show_reasoning:
            if self.waiting is not None:
                self.waiting.update("thinking")
            return
        section = "reasoning" if is_reasoning else "answer"
        if not self.started:
            if self.waiting is not None:
                self.waiting.stop()
            self.live.start()
            self.started = True
        if section != self.section:
            self._close_section()
            self.section = section
            text = text.lstrip("\n")
        self.tail += text
        committed = self._commit_reasoning() if is_reasoning else "\n" in text and self._commit()
        now = time.monotonic()
        if committed or now - self.refreshed >= REFRESH_INTERVAL:
            self.live.update(self._view(self.tail), refresh=True)
            self.refreshed = now

    def _view(self, text: str) -> Any:
        if self.section == "reasoning":
            return Reasoning(text)
        if self.fence is not None:
            marker, lang = self.fence
            text = f"{marker}{lang}\n{text}\n{marker}"
        return markdown(text)

    def _close_section(self) -> None:
        """Print what is left of the reasoning or the answer; the next section starts after a blank line."""
        if self.section == "reasoning":  # blank lines held before its last text are shown, not those after
            rest = self.tail.rstrip()
            if rest.strip():
                self._emit(Reasoning(rest), continues=False)
        else:
            self._print(self.tail)
        self.tail, self.fence, self.continued = "", None, False

    # -- what is printed for good ----------------------------------------------------------------------
    def _commit_reasoning(self) -> bool:
        """Print the finished lines of the reasoning, and the full screen rows of the line still arriving (a
        reasoning paragraph is often one long line); blank lines wait for the text after them."""
        *done, line = self.tail.split("\n")
        rows = []
        width = max(1, self.console.width - len(GUTTER))
        while cell_len(line) > width:
            cut = _row_end(line, width)
            rows.append(line[:cut].rstrip(" "))
            line = line[cut:].lstrip(" ")
        if rows:
            printed, kept = done + rows, [line]
        else:
            end = len(done)
            while end and not done[end - 1].strip():
                end -= 1
            printed, kept = done[:end], [*done[end:], line]
        if not printed:
            return False
        self.tail = "\n".join(kept)
        self._emit(Reasoning("\n".join(printed)), continues=True)
        return True

    def _commit(self) -> bool:
        """Print every finished piece at the head of the tail. True when something was printed."""
        from chatcli.markdown import closes_fence, finished

        printed = False
        while "\n" in self.tail:
            lines = self.tail.split("\n")
            complete = lines[:-1]  # the last one is still being written
            if self.fence is not None:  # inside a code block: its lines are shown as code
                close = next((i for i, line in enumerate(complete) if closes_fence(line, self.fence[0])), None)
                if close is None and len(complete) <= MAX_LIVE_LINES:
                    return printed
                cut = len(complete) if close is None else close
                self.tail = "\n".join(lines[cut + (close is not None) :])
                printed = self._print("\n".join(complete[:cut]), continues=True) or printed
                if close is not None:
                    self.fence, self.continued = None, False
                continue
            cut, continues, opening = finished(complete, MAX_LIVE_LINES)
            if opening is not None:  # a code block opens: first print what stands before it
                printed = self._print("\n".join(complete[:cut])) or printed
                self.tail, self.fence = "\n".join(lines[cut + 1 :]), opening
                continue
            if not cut:
                return printed
            self.tail = "\n".join(lines[cut:])
            printed = self._print("\n".join(complete[:cut]), continues=continues) or printed
        return printed

    def _print(self, block: str, continues: bool = False) -> bool:
        """Print a finished piece, one blank line after the previous one unless it continues that one."""
        if not block.strip():
            return False
        self._emit(self._view(block if self.fence is not None else block.strip("\n")), continues)
        return True

    def _emit(self, renderable: Any, continues: bool) -> None:
        if self.started:
            self.live.update(Text(""), refresh=False)  # the live region is redrawn below what is printed
        if self.printed and not self.continued:
            self.console.print()
        self.console.print(renderable)
        self.printed = True
        self.continued = continues
