"""Stored messages <-> json / jsonl / markdown. Pure functions over LangChain's message dicts.

A stored message is `message_to_dict(m)`: `{"type": "human"|"ai"|..., "data": {"content": ..., ...}}`;
the functions here take the dicts `parse_entry` (chatcli.codec) accepted. Nothing here imports LangChain:
the non-chat commands read and write these dicts directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

# A list element -> a message dict, None when the chain could not send it: the one check (chatcli.codec).
from chatcli.codec import parse_entry as parse_entry

ROLE_NAMES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}

FORMATS = ("json", "jsonl", "markdown")


def encode_entry(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False)


def role(entry: dict[str, Any]) -> str:
    kind = str(entry.get("type", "")).replace("MessageChunk", "").lower()
    if kind == "chat":
        return str(entry.get("data", {}).get("role") or "chat")
    return ROLE_NAMES.get(kind, kind)


def text(entry: dict[str, Any]) -> str:
    """The text of a message; list contents (multimodal) keep their text parts."""
    content = entry.get("data", {}).get("content", "")
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "".join(parts)


def flags(entry: dict[str, Any]) -> dict[str, Any]:
    """chatcli's own flags on a message (interrupted, cut_off, error), kept in response_metadata."""
    meta = entry.get("data", {}).get("response_metadata") or {}
    found = meta.get("chatcli") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def title_from(entry: dict[str, Any] | None, width: int = 60) -> str:
    if entry is None or role(entry) != "user":
        return ""
    line = " ".join(text(entry).split())
    return line if len(line) <= width else line[: width - 1] + "…"


# The session's own settings an export carries (and `history import` restores), in this order.
HEADER_FIELDS = ("title", "title_by", "system", "role", "model", "temperature", "created", "updated")
HEADER_TIMES = ("created", "updated")


def session_header(session_id: str, meta: dict[str, str]) -> dict[str, Any]:
    """The export header of a session: its id and the HEADER_FIELDS its metadata has (times as ISO-8601 UTC)."""
    from datetime import datetime, timezone

    header: dict[str, Any] = {"session": session_id}
    for name in HEADER_FIELDS:
        value = meta.get(name)
        if not value:
            continue
        if name in HEADER_TIMES:
            try:
                when = datetime.fromtimestamp(float(value), tz=timezone.utc)
            except (ValueError, OverflowError, OSError):
                continue
            value = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        header[name] = value
    return header


def write_json(
    out: Any, session_id: str, entries: Iterable[dict[str, Any]], header: dict[str, Any] | None = None
) -> int:
    """`{"session": ID, "header": {...}, "messages": [...]}`, written message by message (constant memory)."""
    out.write('{"session": ' + json.dumps(session_id, ensure_ascii=False))
    if header:
        out.write(', "header": ' + json.dumps(header, ensure_ascii=False))
    out.write(', "messages": [')
    count = 0
    for entry in entries:
        out.write(("\n  " if count == 0 else ",\n  ") + encode_entry(entry))
        count += 1
    out.write("\n]}\n" if count else "]}\n")
    return count


def write_jsonl(
    out: Any, session_id: str, entries: Iterable[dict[str, Any]], header: dict[str, Any] | None = None
) -> int:
    """One message per line; with a header, a first line `{"header": {...}}`."""
    if header:
        out.write(json.dumps({"header": header}, ensure_ascii=False) + "\n")
    count = 0
    for entry in entries:
        out.write(encode_entry(entry) + "\n")
        count += 1
    return count


def front_matter(header: dict[str, Any]) -> str:
    """YAML front matter; every value a JSON string, which YAML reads as a double-quoted scalar."""
    lines = [f"{name}: {json.dumps(str(value), ensure_ascii=False)}" for name, value in header.items()]
    return "---\n" + "\n".join(lines) + "\n---\n\n"


def markdown_blocks(
    session_id: str, entries: Iterable[dict[str, Any]], header: dict[str, Any] | None = None
) -> Iterator[str]:
    if header:
        yield front_matter(header)
    yield f"# Session {session_id}\n"
    for entry in entries:
        note = ", ".join(k.replace("_", " ") for k, v in flags(entry).items() if v)
        heading = f"## {role(entry)}" + (f" ({note})" if note else "")
        yield f"\n{heading}\n\n{markdown_body(entry)}\n"


def _fence(body: str, info: str = "") -> str:
    """`body` as a fenced code block, the fence longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    marker = "`" * max(3, longest + 1)
    return f"{marker}{info}\n{body}\n{marker}"


def markdown_body(entry: dict[str, Any]) -> str:
    """A message in the Markdown export: its text as written, reasoning in a folded <details> block, a tool's
    output as a code block, and one line each for the tool calls it makes and its images and files."""
    from chatcli import contents

    blocks = []
    answered = contents.tool_result(entry)
    if answered:
        blocks.append(f"*{answered}*")
    for part in contents.parts(entry):
        if part.kind == "reasoning":
            blocks.append(f"<details><summary>reasoning</summary>\n\n{part.text.strip()}\n\n</details>")
        elif part.kind == "attachment":
            blocks.append(f"*{part.text}*")
        else:
            blocks.append(_fence(part.text) if answered else part.text)
    for call in contents.tool_calls(entry):
        note = "invalid tool call" if call.invalid else "tool call"
        blocks.append(
            f"**{note}:** {call.name or '?'}"
            + (f" (id: {call.id})" if call.id else "")
            + "\n\n"
            + _fence(call.args, "json")
        )
    return "\n\n".join(blocks)


def write_markdown(
    out: Any, session_id: str, entries: Iterable[dict[str, Any]], header: dict[str, Any] | None = None
) -> int:
    count = -2 if header else -1  # the front matter and the heading are not messages
    for block in markdown_blocks(session_id, entries, header):
        out.write(block)
        count += 1
    return count


WRITERS = {"json": write_json, "jsonl": write_jsonl, "markdown": write_markdown}
