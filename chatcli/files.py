"""Files chatcli writes: atomically, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatcli.errors import ChatcliError, NotFoundError, StorageError, UsageError

# the longest path a unix socket can be bound at (sun_path is 108 bytes on Linux, with its NUL)
MAX_SOCKET_PATH = 107


def write_atomically(path: Path, write: Callable[[Any], int]) -> int:
    """Write to a temporary file beside `path`, then rename it over: readers never see half a file."""
    directory = path.resolve().parent
    if not directory.is_dir():
        raise NotFoundError(f"no such directory: {directory}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory: give a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ChatcliError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            count = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A text file's content; UsageError naming the line when it is not UTF-8 (OSError passes through)."""
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 text (byte {exc.start})") from None


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents with mode 0700 (whatever the umask); existing ones are left alone."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)
    return path


def short_socket_dir() -> Path:
    """`$TMPDIR/chatcli-<uid>`, created 0700; StorageError when it exists and is not the user's alone.

    Whoever can write to that directory can put a socket of theirs in it and read every turn sent to it."""
    path = Path(tempfile.gettempdir()) / f"chatcli-{os.getuid()}"
    old_umask = os.umask(0o077)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot create the socket directory {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "it is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "it is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"it belongs to uid {info.st_uid}, not to you"
    elif info.st_mode & 0o022:
        problem = f"others can write to it (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem:
        raise StorageError(
            f"the embedded server's socket directory {path} is not safe to use ({problem}): remove it, "
            "or set CHATCLI_HOME to a shorter path so the socket lives under it"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)  # the user's own: only read/search bits for others, taken away
    return path
