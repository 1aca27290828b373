"""Writing a message outside the prompt: in the user's editor, and with files attached."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from chatcli.errors import ChatcliError, NotFoundError, UsageError


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


# -- attachments ------------------------------------------------------------------------------------------

TEXT_LIMIT = 512 * 1024  # bytes of one attached text file: about 130k tokens, more than most contexts
IMAGE_LIMIT = 5 * 1024 * 1024  # bytes of one attached image (OpenAI takes up to 20 MB; data URLs grow by 4/3)
IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def image_type(data: bytes) -> str | None:
    """The MIME type of a png, jpeg, gif or webp image, by its first bytes (not its name); else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_TYPES.items() if data.startswith(magic)), None)


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MiB" if count >= 1024 * 1024 else f"{count / 1024:.0f} KiB"


def attachment(path: str, stdin: Any = None) -> dict[str, Any]:
    """A file as a LangChain content block: an image as an `image_url` data URL, text as a `text` block that
    names the file and holds it fenced. `-` reads `stdin` (a binary stream). A directory, a binary file or
    one over its limit is a UsageError (exit 2) naming the limit; a missing file a NotFoundError."""
    import base64

    from chatcli.exporting import _fence

    if path == "-":
        name, data = "stdin", (stdin or sys.stdin.buffer).read(IMAGE_LIMIT + 1)
    else:
        file = Path(path).expanduser()
        name = path
        if file.is_dir():
            raise UsageError(f"cannot attach {path}: it is a directory (attach its files one by one)")
        try:
            with file.open("rb") as fh:
                data = fh.read(IMAGE_LIMIT + 1)
        except FileNotFoundError:
            raise NotFoundError(f"cannot attach {path}: no such file") from None
        except OSError as exc:
            raise UsageError(f"cannot attach {path}: {exc.strerror}") from None
    mime = image_type(data)
    if mime is not None:
        if len(data) > IMAGE_LIMIT:
            raise UsageError(f"cannot attach {name}: over the {_size(IMAGE_LIMIT)} limit for an image")
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return {"type": "image_url", "image_url": {"url": url}}
    if len(data) > TEXT_LIMIT:
        raise UsageError(f"cannot attach {name}: over the {_size(TEXT_LIMIT)} limit for a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise UsageError(
            f"cannot attach {name}: a binary file (text files up to {_size(TEXT_LIMIT)} and png, jpeg, gif or webp"
            f" images up to {_size(IMAGE_LIMIT)} can be attached)"
        )
    return {"type": "text", "text": f"File: {name}\n\n{_fence(text.removesuffix(chr(10)))}"}


def describe(block: dict[str, Any]) -> str:
    """One line for an attachment block: its file name, or the image's type and size."""
    if block.get("type") == "text":
        return str(block["text"]).split("\n", 1)[0].removeprefix("File: ")
    url = str(block.get("image_url", {}).get("url", ""))
    return f"{url[5 : url.find(';')]} image, {_size(len(url) * 3 // 4)}"


def message_content(question: str, attachments: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """What a human message holds: the question alone, or, with attachments, content blocks (the question's
    text first)."""
    if not attachments:
        return question
    return ([{"type": "text", "text": question}] if question.strip() else []) + attachments
