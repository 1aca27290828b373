"""A prompt at once: the chain loads in a thread while the prompt is up, and keys typed before it are kept.

`from langchain_openai import ChatOpenAI` alone takes seconds on a slow machine, so `chatcli chat` shows its
prompt first and builds the assistant in the background (`Background`); the first turn waits for it only when
the user was faster. Keys typed or pasted while the process starts are held quietly by the terminal
(`Typeahead`) and become the first prompt's draft: one message, never one turn per pasted line.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """An object built by `build()` in a daemon thread, started by `start()` (or the first `get()`); `get()`
    waits for it and re-raises what building raised. Started once the prompt is drawn, the thread's imports
    do not compete with the prompt's own for the interpreter lock."""

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="chatcli-load", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._build()
        except BaseException as exc:  # handed to the caller of get(), in the main thread
            self._error = exc
        finally:
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def get(self) -> T:
        self.start()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class LazyProxy:
    """Reads and writes attributes of a Background's object, waiting for it the first time one is needed."""

    def __init__(self, background: Background[Any]):
        object.__setattr__(self, "_background", background)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._background.get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._background.get(), name, value)


def loading(value: Any) -> bool:
    """Whether `value` is a LazyProxy whose object is still being built."""
    return isinstance(value, LazyProxy) and not value._background.ready


# what a terminal sends besides text: escape sequences (arrow keys, focus reports) and other control characters
_CONTROL = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|O.|[^\[O])|[\x00-\x08\x0b-\x1f\x7f]")


class Typeahead:
    """Holds the keys a user types while the program starts: no echo and no line editing by the terminal,
    so a paste is not drawn under the prompt nor split into lines; `take()` returns them as one draft and
    gives the terminal its own settings back. A no-op when `fd` is not a terminal."""

    def __init__(self, fd: int):
        self.fd = fd
        self.saved: list[Any] | None = None
        try:
            import termios
        except ImportError:
            return
        try:
            if os.isatty(fd):
                self.saved = termios.tcgetattr(fd)
                quiet = termios.tcgetattr(fd)
                quiet[3] &= ~(termios.ECHO | termios.ICANON)  # signals stay: Ctrl-C still interrupts start-up
                quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 0, 0
                termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except (OSError, ValueError, termios.error):
            self.saved = None

    def take(self) -> str:
        """What was typed so far, as one draft (newlines kept, the last one dropped); restores the terminal."""
        if self.saved is None:
            return ""
        chunks = []
        try:
            while chunk := os.read(self.fd, 65536):
                chunks.append(chunk)
        except OSError:
            pass
        self.restore()
        text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return _CONTROL.sub("", text).rstrip("\n")

    def restore(self) -> None:
        if self.saved is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
            self.saved = None
