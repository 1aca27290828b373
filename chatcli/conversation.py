"""One turn on screen: spinner, streamed answer, Ctrl-C, usage line and flags.

Shared by `ask`, scripted `chat` (stdin not a terminal) and the REPL.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from rich.console import Console

from chatcli import render
from chatcli.errors import ChatcliError


def answer_stream(console: Console, out: IO[str] | None = None) -> render.AnswerStream:
    return render.MarkdownAnswer(console) if console.is_terminal else render.PlainAnswer(out or sys.stdout)


def show_turn(assistant: Any, session_id: str, text: str, console: Console, err: Console) -> Any:
    """Stream one answer to `console`. Ctrl-C stops the answer (what arrived is kept and saved) and
    returns normally; model errors are raised after the partial answer is shown and saved."""
    turn = assistant.turn(session_id, text)
    stream = answer_stream(console)
    status = console.status("", spinner="dots") if console.is_terminal else None
    if status is not None:
        status.start()
    pieces = iter(turn)
    try:
        for piece in pieces:
            if status is not None:
                status.stop()
                status = None
            stream.write(piece)
    except KeyboardInterrupt:
        pieces.close()  # the turn saves what it yielded, marked interrupted
    except ChatcliError:
        stream.finish()
        raise
    finally:
        if status is not None:
            status.stop()
    stream.finish()
    if turn.skipped:
        render.print_notice(err, f"(skipped {turn.skipped} stored entries that are not readable messages)")
    if turn.status == "interrupted":
        render.print_notice(
            err, "(interrupted: the partial answer was saved)" if turn.saved else "(interrupted: nothing saved)"
        )
    elif turn.status == "cut_off":
        render.print_notice(err, "(the answer was cut off: the stream ended without a finish reason)")
    if console.is_terminal:
        render.print_usage(console, turn.usage)
    return turn
