"""One turn on screen: spinner, streamed answer, Ctrl-C, usage line and flags.

Shared by `ask`, scripted `chat` (stdin not a terminal) and the REPL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from rich.console import Console

from chatcli import live, render
from chatcli.errors import ChatcliError
from chatcli.reasoning import Thought


def answer_stream(
    console: Console, out: IO[str] | None = None, show_reasoning: bool = True, waiting: Any = None
) -> render.AnswerStream:
    if console.is_terminal:
        return render.MarkdownAnswer(console, show_reasoning=show_reasoning, waiting=waiting)
    return render.PlainAnswer(out or sys.stdout)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while an answer streams: the turn saves what was shown, then the command ends."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DeferredInterrupt:
    """SIGINT, SIGTERM or SIGHUP while an answer streams: raised at once while waiting for the network, but
    held back while the screen is being drawn (an interrupted redraw leaves the live region half-cleared) and
    swallowed once the first one was raised, so the turn can always finish saving what arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.depth = 0  # nested drawing() blocks: a piece handed over by the turn, then drawn
        self.pending: int | None = None
        self.raised = False
        self.terminated: int | None = None  # SIGTERM or SIGHUP came: end the command once the turn is saved

    def handler(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGINT:
            self.terminated = signum
        if self.depth or self.raised:
            self.pending = signum
            return
        self.raised = True
        raise self.exception(signum)

    @staticmethod
    def exception(signum: int) -> KeyboardInterrupt:
        return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)

    @contextlib.contextmanager
    def drawing(self) -> Iterator[None]:
        """A block no signal cuts short; one that came meanwhile is raised when the outermost block ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending is not None and not self.raised:
            self.raised = True
            raise self.exception(self.pending)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.handler) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@contextlib.contextmanager
def no_echo(stream: IO[str]) -> Iterator[None]:
    """Keep the terminal from echoing keys while an answer is drawn: an echoed "^C" or a stray key moves
    the cursor under Rich's live region, which then clears the wrong lines. Ctrl-C still sends SIGINT."""
    try:
        import termios

        fd = stream.fileno()
        if not os.isatty(fd):
            raise OSError
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def show_turn(turn: Any, console: Console, err: Console) -> Any:
    """Stream one answer (an assistant.Turn) to `console`. Ctrl-C stops the answer (what arrived is kept,
    shown and saved) and returns normally; model errors are raised after the partial answer is shown and
    saved; SIGTERM and SIGHUP raise Terminated once it is saved."""
    status = console.status("", spinner="dots") if console.is_terminal else None
    settings = getattr(getattr(turn, "assistant", None), "settings", None)
    stream = answer_stream(console, show_reasoning=getattr(settings, "show_reasoning", True), waiting=status)
    interrupts = DeferredInterrupt()
    turn.guard = interrupts.drawing  # from a piece's hand-over to its drawing: what is saved is what is shown
    with interrupts.installed(), no_echo(sys.stdin), render.notices_held():
        if status is not None:
            status.start()
        pieces = iter(turn)
        try:
            for piece in pieces:
                with interrupts.drawing():  # the stream stops the spinner when it draws
                    if isinstance(piece, Thought):
                        stream.think(piece)
                    else:
                        stream.write(piece)
        except KeyboardInterrupt:
            interrupts.raised = True
            pieces.close()  # the turn saves what it yielded, marked interrupted
        except ChatcliError:
            interrupts.raised = True
            _finish(status, stream)
            raise
        _finish(status, stream)
    live.settle()  # the answer is shown: its end reaches followers before the next prompt or the exit
    if interrupts.terminated is not None:  # the turn is saved: now end the command as the signal asked
        raise Terminated(interrupts.terminated)
    if turn.skipped:
        render.print_notice(err, f"(skipped {turn.skipped} stored entries that are not readable messages)")
    if turn.status == "interrupted":
        saved = "the partial answer was saved" if turn.saved else "nothing saved"
        render.print_notice(err, f"(interrupted: {saved})")
    elif turn.status == "cut_off":
        render.print_notice(err, "(the answer was cut off: the stream ended without a finish reason)")
    if console.is_terminal:
        render.print_usage(console, turn.usage)
    return turn


def _finish(status: Any, stream: render.AnswerStream) -> None:
    if status is not None:
        status.stop()
    stream.finish()
