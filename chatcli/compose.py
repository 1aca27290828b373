"""Writing a message outside the prompt: in the user's editor."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from chatcli.errors import ChatcliError


def editor_command() -> list[str]:
    """$VISUAL, else $EDITOR, else vi: split as a shell would (`code --wait` works)."""
    for name in ("VISUAL", "EDITOR"):
        value = os.environ.get(name, "").strip()
        if value:
            return shlex.split(value)
    return ["vi"]


def edit_text(text: str) -> str:
    """Open the editor on `text` in a private temporary file; what it holds when the editor exits (the last
    newline dropped). An editor that fails or cannot start is a ChatcliError."""
    fd, name = tempfile.mkstemp(prefix="chatcli-", suffix=".md")  # 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        command = editor_command()
        try:
            code = subprocess.call([*command, str(path)])
        except OSError as exc:
            raise ChatcliError(f"cannot run the editor {command[0]!r} ($VISUAL or $EDITOR): {exc.strerror}") from exc
        if code != 0:
            raise ChatcliError(f"the editor {command[0]!r} exited with status {code}: nothing sent")
        return path.read_text(encoding="utf-8", errors="replace").removesuffix("\n")
    finally:
        path.unlink(missing_ok=True)
