"""What a stored message holds, for people: its text, its reasoning, the tool calls it makes or answers, and
its images, files and other non-text parts as one-line placeholders (LangChain apps write all of these).

Pure functions over LangChain's message dicts (`message_to_dict`); no LangChain here: `history show` and the
Markdown export use them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chatcli import reasoning

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
REASONING_TYPES = {"reasoning": "reasoning", "thinking": "thinking"}  # block type -> the key of its text
TOOL_CALL_TYPES = frozenset({"tool_use", "tool_call", "function_call"})
_LABELS = {
    "image": "image",
    "image_url": "image",
    "input_image": "image",
    "file": "file",
    "input_file": "file",
    "audio": "audio",
    "input_audio": "audio",
    "video": "video",
    "text-plain": "text file",
}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?[^,]*?(;base64)?,", re.IGNORECASE)


@dataclass
class Part:
    kind: str  # text | reasoning | attachment
    text: str


@dataclass
class ToolCall:
    name: str
    args: str  # as JSON text, or the raw text the model wrote when it is not JSON
    id: str
    invalid: bool = False

    def line(self) -> str:
        note = "invalid tool call" if self.invalid else "tool call"
        return f"{note}: {self.name or '?'} {self.args}" + (f" (id: {self.id})" if self.id else "")


def _data(entry: dict[str, Any]) -> dict[str, Any]:
    data = entry.get("data")
    return data if isinstance(data, dict) else {}


def parts(entry: dict[str, Any]) -> list[Part]:
    """The message's content in order: text runs, reasoning (the stored `reasoning_content` first, then
    reasoning blocks), and a placeholder line for each image, file or other part that is not text."""
    data = _data(entry)
    content = data.get("content", "")
    found: list[Part] = []
    kept = reasoning.stored_reasoning(entry)
    if kept:
        found.append(Part("reasoning", kept))
    items = [content] if isinstance(content, str) else content if isinstance(content, list) else []
    calls_listed = bool(tool_calls(entry))
    for item in items:
        if isinstance(item, str):
            _add(found, "text", item)
        elif not isinstance(item, dict):
            continue
        elif isinstance(item.get("text"), str) and _kind(item, "text") in TEXT_TYPES:
            _add(found, "text", item["text"])
        elif _kind(item) in REASONING_TYPES:
            value = item.get(REASONING_TYPES[_kind(item)])
            if isinstance(value, str) and value:
                _add(found, "reasoning", value)
        elif _kind(item) in TOOL_CALL_TYPES:
            if not calls_listed:  # LangChain lists them in tool_calls too: shown once, from there
                _add(found, "attachment", _block_call(item).line())
        else:
            _add(found, "attachment", placeholder(item))
    return [part for part in found if part.text]


def _kind(item: dict[str, Any], default: str = "") -> str:
    kind = item.get("type", default)
    return kind if isinstance(kind, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _add(found: list[Part], kind: str, text: str) -> None:
    if kind == "text" and found and found[-1].kind == "text":
        found[-1].text += text
    else:
        found.append(Part(kind, text))


def _block_call(item: dict[str, Any]) -> ToolCall:
    args = item.get("input", item.get("args", item.get("arguments")))
    return ToolCall(str(item.get("name") or ""), _args_text(args), str(item.get("id") or item.get("call_id") or ""))


def _args_text(args: Any) -> str:
    if isinstance(args, str):
        return args
    return json.dumps(args if args is not None else {}, ensure_ascii=False)


def tool_calls(entry: dict[str, Any]) -> list[ToolCall]:
    """The tool calls an assistant message makes: LangChain's `tool_calls` (and `invalid_tool_calls`), else
    the OpenAI-format ones in `additional_kwargs` (`tool_calls`, or a legacy `function_call`)."""
    data = _data(entry)
    calls: list[ToolCall] = []
    for key, invalid in (("tool_calls", False), ("invalid_tool_calls", True)):
        for call in _list(data.get(key)):
            if isinstance(call, dict):
                calls.append(
                    ToolCall(
                        str(call.get("name") or ""), _args_text(call.get("args")), str(call.get("id") or ""), invalid
                    )
                )
    if calls:
        return calls
    extra = data.get("additional_kwargs") or {}
    if not isinstance(extra, dict):
        return []
    raw = _list(extra.get("tool_calls")) or (
        [{"function": extra["function_call"]}] if extra.get("function_call") else []
    )
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(
                ToolCall(
                    str(function.get("name") or ""), _args_text(function.get("arguments")), str(call.get("id") or "")
                )
            )
    return calls


def tool_result(entry: dict[str, Any]) -> str:
    """For a tool (or function) message: the line saying which call it answers, else ''."""
    kind = str(entry.get("type", "")).replace("MessageChunk", "").lower()
    if kind not in ("tool", "function"):
        return ""
    data = _data(entry)
    name, call = str(data.get("name") or ""), str(data.get("tool_call_id") or "")
    status = " (error)" if data.get("status") == "error" else ""
    what = f"result of {name}" if name else "tool result"
    return what + (f" (id: {call})" if call else "") + status


def placeholder(item: dict[str, Any]) -> str:
    """One line for a content part that is not text: what it is, its name, type, size or address."""
    kind = _kind(item) or "part"
    label = _LABELS.get(kind, kind.replace("_", " "))
    nested, source, extras, metadata = (_dict(item, key) for key in (kind, "source", "extras", "metadata"))
    name = _first(item.get("filename"), nested.get("filename"), extras.get("filename"), metadata.get("filename"))
    name = name or _first(item.get("name"), extras.get("name"), metadata.get("name"))
    mime = _first(item.get("mime_type"), source.get("media_type"), nested.get("format"), item.get("format"))
    url = _first(
        item.get("url"),
        item.get("image_url") if isinstance(item.get("image_url"), str) else None,
        nested.get("url"),
        nested.get("file_data"),
        source.get("url"),
    )
    data = _first(item.get("base64"), item.get("data"), nested.get("data"), source.get("data"))
    size = None
    if url.lower().startswith("data:"):
        match = _DATA_URL.match(url)
        mime = mime or (match.group(1) if match and match.group(1) else "")
        data, url = url.split(",", 1)[1] if "," in url else "", ""
    if data:
        size = len(data.rstrip("=")) * 3 // 4
    file_id = _first(item.get("file_id"), item.get("id"), nested.get("file_id"), source.get("file_id"))
    details = [name, mime, _size(size) if size is not None else "", url, f"id {file_id}" if file_id and not url else ""]
    shown = ", ".join(d for d in details if d)
    return f"[{label}: {shown}]" if shown else f"[{label}]"


def _dict(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _first(*values: Any) -> str:
    return next((v for v in values if isinstance(v, str) and v), "")


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    for unit in ("kB", "MB", "GB"):
        count_f = count / 1000
        if count_f < 1000 or unit == "GB":
            return f"{count_f:.1f} {unit}" if count_f < 10 else f"{count_f:.0f} {unit}"
        count = int(count_f)
    return f"{count} B"  # pragma: no cover


def extras(entry: dict[str, Any]) -> list[str]:
    """The lines shown after a message's content: the tool calls it makes."""
    return [call.line() for call in tool_calls(entry)]


def snippet(entry: dict[str, Any], width: int = 200) -> str:
    """A message on one line, for lists: its answer text (no reasoning), else its first tool call or
    placeholder; at most `width` characters."""
    found = [part for part in parts(entry) if part.kind != "reasoning"]
    text = next((p.text for p in found if p.kind == "text"), "")
    if text:
        text = reasoning.split_think(text)[1]
    line = " ".join((text or next(iter(extras(entry) + [p.text for p in found]), "")).split())
    return line if len(line) <= width else line[: width - 1] + "…"
