"""Drive a program in a real pseudo-terminal and read what a user would see.

pexpect runs the program; everything it writes is fed to pyte, a VT100 emulator with scrollback, so
tests assert on the screen (after cursor movement, redraws and clearing) rather than on raw bytes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pexpect
import pyte

ROWS, COLS = 30, 100


def spawn(
    args: list[str], env: dict[str, str], rows: int = ROWS, cols: int = COLS, term: str = "xterm"
) -> pexpect.spawn:
    """`python -m chatcli ARGS` in a real pseudo-terminal of a fixed size, prompt-toolkit without CPR."""
    environ = {**env, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": term, "COLUMNS": str(cols), "LINES": str(rows)}
    return pexpect.spawn(sys.executable, ["-m", "chatcli", *args], env=environ, dimensions=(rows, cols), timeout=30)


class Terminal:
    def __init__(
        self, args: list[str], env: dict[str, str], rows: int = ROWS, cols: int = COLS, term: str = "xterm-256color"
    ):
        self.rows, self.cols = rows, cols
        self.screen = pyte.HistoryScreen(cols, rows, history=100_000, ratio=0.5)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""
        self.child = spawn(args, env, rows, cols, term=term)

    # -- reading ---------------------------------------------------------------------------------------
    def _pump(self, timeout: float) -> bool:
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return False
        except pexpect.EOF:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def lines(self) -> list[str]:
        """Every line a user could scroll back to, then the visible screen (trailing blanks removed)."""
        history = ["".join(ch.data for ch in line.values()) if isinstance(line, dict) else "" for line in []]
        history = [self._row(line) for line in self.screen.history.top]
        visible = list(self.screen.display)
        while visible and not visible[-1].strip():
            visible.pop()
        return [line.rstrip() for line in history + visible]

    def _row(self, line: dict) -> str:
        return "".join(line[x].data if x in line else " " for x in range(self.cols))

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait(self, predicate: Callable[[str], bool], timeout: float = 20, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}; screen:\n{text[-3000:]}")
            if not self._pump(0.05) and not self.child.isalive():
                self._pump(0.1)
                if predicate(self.text()):
                    return self.text()
                raise AssertionError(f"program exited waiting for {what}; screen:\n{self.text()[-3000:]}")

    def wait_for(self, needle: str, timeout: float = 20, count: int = 1) -> str:
        return self.wait(lambda t: t.count(needle) >= count, timeout, repr(needle))

    def prompt_count(self, session: str) -> int:
        return sum(1 for line in self.lines() if line.startswith(f"{session}>"))

    def wait_prompt(self, session: str, count: int, timeout: float = 20) -> str:
        return self.wait(
            lambda _t: self.prompt_count(session) >= count and self.cursor_on_prompt(session),
            timeout,
            f"prompt #{count}",
        )

    def cursor_on_prompt(self, session: str) -> bool:
        row = self.screen.display[self.screen.cursor.y]
        return row.startswith(f"{session}>")

    # -- typing ----------------------------------------------------------------------------------------
    def type(self, text: str) -> None:
        self.child.send(text)

    def enter(self, text: str = "") -> None:
        self.child.send(text + "\r")

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def close(self) -> int | None:
        if self.child.isalive():
            self.child.sendcontrol("d")
            deadline = time.monotonic() + 10
            while self.child.isalive() and time.monotonic() < deadline:
                self._pump(0.05)
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
        return self.child.exitstatus

    def exited(self, timeout: float = 10) -> int | None:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self._pump(0.05)
        self._pump(0.05)
        if self.child.isalive():
            raise AssertionError("still running")
        self.child.close()
        return self.child.exitstatus


def dump(term: Terminal, path: str) -> None:  # pragma: no cover - a debugging aid
    with open(path, "wb") as fh:
        fh.write(term.raw)
    os.sync()
