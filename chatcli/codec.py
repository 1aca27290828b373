"""The message codec: a stored list element -> the message dict chatcli uses, and the one check of it.

A session's list holds `json.dumps(message_to_dict(m))` elements written by chatcli, by LangChain's
RedisChatMessageHistory, by `history import` or by any other program. `problem(entry)` says why a message
dict is not one the chain can send, or returns None: LangChain's `messages_from_dict` must build the message
and langchain-openai must turn it into a Chat Completions request that serialises. Reading skips what fails
(`parse_entry` returns None), `history import` refuses it, naming the problem.

The rules mirror what langchain-core 1.8 and langchain-openai 1.7 do with each field, found by experiment
(tests/test_messages.py holds them to the real libraries, property-based). Where LangChain would coerce a
value (an int id, a str-able tool content) the rule is the plain type message_to_dict writes. Beyond what
LangChain needs, an element must be plain JSON: no NaN/Infinity, no lone surrogates (they cannot be written
as UTF-8 by `history show` or an export), nested at most MAX_DEPTH containers deep (a deeper one makes
json.loads, pydantic or json.dumps recurse past Python's limit).

Pure: nothing here imports LangChain, so the non-chat commands stay fast.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# The types LangChain's messages_from_dict() builds and langchain-openai can send ("remove" it cannot).
KNOWN_TYPES = frozenset(
    {
        "human",
        "ai",
        "system",
        "chat",
        "function",
        "tool",
        "HumanMessageChunk",
        "AIMessageChunk",
        "SystemMessageChunk",
        "ChatMessageChunk",
        "FunctionMessageChunk",
        "ToolMessageChunk",
    }
)

MAX_DEPTH = 100  # containers (objects, arrays) nested in one element, the element itself included

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(rb"\\ud[89a-f]", re.IGNORECASE)  # \ud800 to \udfff, as JSON escapes


class _NotJson(ValueError):
    """NaN, Infinity, or a number too large for a float (1e400 reads as inf): JSON cannot write them back."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(name)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotJson(text)
    return number


def parse_entry(raw: bytes | str) -> dict[str, Any] | None:
    """One list element as a message dict, or None when it is not one the chain can send."""
    try:
        entry = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError and _NotJson are ValueErrors
        return None
    if not isinstance(entry, dict):
        return None
    # The walk over every value costs more than the rest: skip it when the raw bytes show it cannot fail.
    # Numbers were checked above; UTF-8 holds no surrogates, so only \ud800-style escapes can make one
    # (json.loads also reads UTF-16 and UTF-32, whose bytes hide the escape: they hold NUL bytes, UTF-8 JSON
    # never does); nesting needs brackets.
    walk = (
        isinstance(raw, str)
        or b"\x00" in raw
        or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        or _ESCAPED_SURROGATE.search(raw) is not None
    )
    return entry if problem(entry, walk=walk) is None else None


def problem(entry: Any, *, walk: bool = True) -> str | None:
    """Why `entry` is not a message the chain can send, in a few words; None when it is one.

    `walk=False` skips the check of every value (depth, numbers, surrogates): only for a caller that has
    ruled those out another way, as parse_entry does.
    """
    if not isinstance(entry, dict):
        return f"expected a message object, got {type(entry).__name__}"
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in KNOWN_TYPES:
        return f"unknown message type {_short(kind)}"
    data = entry.get("data")
    if not isinstance(data, dict):
        return '"data" must be an object'
    if walk:
        found = _value_problem(entry)
        if found:
            return found
    return _data_problem(kind, data)


# -- plain JSON ----------------------------------------------------------------------------------------


def _value_problem(value: Any) -> str | None:
    """Nested too deep, a number JSON cannot hold, or a string UTF-8 cannot: without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            for key, child in item.items():
                if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                    return "text with a lone surrogate (not writable as UTF-8)"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return "text with a lone surrogate (not writable as UTF-8)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "a number JSON cannot hold (NaN, Infinity or out of range)"
    return None


# -- the message ---------------------------------------------------------------------------------------


def _data_problem(kind: str, data: dict[str, Any]) -> str | None:
    base = kind.removesuffix("MessageChunk").lower()  # HumanMessageChunk -> human, AIMessageChunk -> ai
    if "content" not in data:
        return 'no "data.content"'
    found = content_problem(data["content"], "data.content")
    if found:
        return found
    if data.get("type", kind) != kind:
        return f'"data.type" is {_short(data.get("type"))}, not {kind!r}'
    for field in ("additional_kwargs", "response_metadata"):
        if field in data and not isinstance(data[field], dict):
            return f'"data.{field}" must be an object'
    for field in ("name", "id"):
        if not _text_or_none(data.get(field)):
            return f'"data.{field}" must be text or null'
    if data.get("content_blocks") is not None:  # a constructor argument that would replace the content
        return '"data.content_blocks" is not a stored field'
    extra = data.get("additional_kwargs") or {}
    if not _text_or_none(extra.get("name")):  # sent as the message's name when it has none
        return '"data.additional_kwargs.name" must be text'
    if base == "chat" and not isinstance(data.get("role"), str):
        return 'a chat message needs "data.role" (text)'
    if base == "function" and not isinstance(data.get("name"), str):
        return 'a function message needs "data.name" (text)'
    if base == "tool":
        if not isinstance(data.get("tool_call_id"), str):
            return 'a tool message needs "data.tool_call_id" (text)'
        if data.get("status", "success") not in ("success", "error"):
            return '"data.status" must be "success" or "error"'
    if base == "system" and not isinstance(extra.get("__openai_role__", ""), str):
        return '"data.additional_kwargs.__openai_role__" must be text'
    if base == "ai":
        return _ai_problem(data, extra)
    return None


# LangChain builds each through a keyword-only factory (tool_call(), invalid_tool_call(), tool_call_chunk()):
# an unknown key is a TypeError, a wrong type a ValidationError. field -> (key types, required keys, "type")
_CALL_SHAPES: dict[str, tuple[dict[str, Any], frozenset[str], str]] = {
    "tool_calls": ({"name": str, "args": dict, "id": (str, None)}, frozenset({"name", "args", "id"}), "tool_call"),
    "invalid_tool_calls": (
        {"name": (str, None), "args": (str, None), "id": (str, None), "error": (str, None)},
        frozenset(),
        "invalid_tool_call",
    ),
    "tool_call_chunks": (
        {"name": (str, None), "args": (str, None), "id": (str, None), "index": (int, None)},
        frozenset(),
        "tool_call_chunk",
    ),
}


def _ai_problem(data: dict[str, Any], extra: dict[str, Any]) -> str | None:
    for field, (types, required, tag) in _CALL_SHAPES.items():
        if field not in data:
            continue
        calls = data[field]
        if not isinstance(calls, list):
            return f'"data.{field}" must be a list'
        for i, call in enumerate(calls):
            found = _call_problem(call, types, required, tag)
            if not found and tag == "tool_call_chunk" and isinstance(call.get("args"), str):
                found = _embedded_json_problem(call["args"])  # parsed into the tool call LangChain sends
                found = found and f"'args': {found}"
            if found:
                return f"data.{field}[{i}]: {found}"
    if data.get("chunk_position") not in (None, "last"):
        return '"data.chunk_position" must be "last" or null'
    usage = data.get("usage_metadata")
    if usage is not None:
        found = _usage_problem(usage)
        if found:
            return f"data.usage_metadata: {found}"
    if "tool_calls" in extra:
        found = tool_calls_problem(extra["tool_calls"])
        if found:
            return f"data.additional_kwargs.tool_calls{found}"
    for field in ("function_call", "audio"):
        if field in extra and not isinstance(extra[field], dict):
            return f'"data.additional_kwargs.{field}" must be an object'
    return None


def _call_problem(call: Any, types: dict[str, Any], required: frozenset[str], tag: str) -> str | None:
    if not isinstance(call, dict):
        return "must be an object"
    for key, value in call.items():
        if key == "type":
            if value != tag:
                return f'"type" must be {tag!r}'
        elif key == "extras" and tag == "tool_call":
            continue  # dropped by LangChain
        elif key not in types:
            return f"unknown field {_short(key)}"
        elif not _is(value, types[key]):
            return f"{key!r} must be {_describe(types[key])}"
    missing = sorted(required - call.keys())
    return f"no {missing[0]!r}" if missing else None


def tool_calls_problem(calls: Any) -> str | None:
    """OpenAI-format tool calls (an assistant message's `tool_calls`): None when langchain-openai can send
    them, else the problem, starting with the position (`[2].function: ...`) or `: ...` for the list."""
    if not isinstance(calls, list):
        return ": must be a list"
    for i, call in enumerate(calls):
        if not isinstance(call, dict):
            return f"[{i}]: must be an object"
        if not isinstance(call.get("id"), str):
            return f'[{i}]: needs "id" (text)'
        function = call.get("function")
        if not isinstance(function, dict):
            return f'[{i}]: needs "function" (an object)'
        if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
            return f'[{i}].function: needs "name" and "arguments" (text)'
        # LangChain parses the arguments into the message's tool_calls, whose args must be an object
        found = _embedded_json_problem(function["arguments"])
        if found:
            return f'[{i}].function: "arguments": {found}'
        try:
            args = json.loads(function["arguments"])
        except (ValueError, RecursionError):
            continue  # kept as an invalid tool call, sent as it is
        if args and not isinstance(args, dict):
            return f'[{i}].function: "arguments" must be a JSON object'
    return None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _embedded_json_problem(text: str) -> str | None:
    """JSON held in a string that LangChain parses and sends as values (tool call arguments), checked like an
    element when it could nest deeply or hold an escaped surrogate."""
    if text.count("[") + text.count("{") <= MAX_DEPTH and not _SURROGATE_ESCAPE.search(text):
        return None
    try:
        return _value_problem(json.loads(text))
    except (ValueError, RecursionError):  # LangChain may still read it as partial JSON
        return "deeply nested or escaped-surrogate JSON that does not parse"


_TOKEN_DETAILS = {
    "input_token_details": ("audio", "cache_creation", "cache_read"),
    "output_token_details": ("audio", "reasoning"),
}


def _usage_problem(usage: Any) -> str | None:
    if not isinstance(usage, dict):
        return "must be an object or null"
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        if not _is(usage.get(key), int):
            return f"{key!r} must be a whole number"
    for key, known in _TOKEN_DETAILS.items():
        if key not in usage:
            continue
        details = usage[key]
        if not isinstance(details, dict):
            return f"{key!r} must be an object"
        for name in known:
            if name in details and not _is(details[name], int):
                return f"{key}.{name} must be a whole number"
    return None


# -- content -------------------------------------------------------------------------------------------


def content_problem(content: Any, path: str = "content") -> str | None:
    """A message's content: text, or a list of text and content blocks langchain-openai can send.

    `path` names the content in the answer: `"data.content" must be ...`, `data.content[2]: ...`.
    """
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f'"{path}" must be text or a list of content blocks'
    for i, block in enumerate(content):
        if isinstance(block, str):
            continue
        found = _block_problem(block) if isinstance(block, dict) else "must be text or an object"
        if found:
            return f"{path}[{i}]: {found}"
    return None


def _block_problem(block: dict[str, Any]) -> str | None:
    kind = block.get("type")
    if not isinstance(kind, str):
        return 'a content block needs a "type" (text)'
    if kind == "text":
        return None if isinstance(block.get("text"), str) else 'a text block needs "text" (text)'
    wrapped = block.get("value") if kind == "non_standard" else None
    if kind == "additional_tools" or (isinstance(wrapped, dict) and wrapped.get("type") == "additional_tools"):
        return "an additional_tools block cannot be sent through Chat Completions"
    if kind in ("server_tool_call", "server_tool_call_chunk") and isinstance(block.get("args"), str):
        found = _embedded_json_problem(block["args"])  # parsed by AIMessageChunk, then sent
        if found:
            return f"'args': {found}"
    if kind in ("video", "text-plain"):
        return f"a {kind} block cannot be sent to an OpenAI chat model"
    checker = _DATA_BLOCKS.get(kind)
    if checker is None:
        return None  # other types go to the model as they are
    return checker(block) or _optional_text(block, "id")


def _image_block(block: dict[str, Any]) -> str | None:
    if "source_type" in block:  # LangChain v0
        return _v0_problem(block, {"url": ("url",), "base64": ("data", "mime_type")})
    if "url" in block:
        return _texts(block, "url") or _optional_text(block, "mime_type")
    if "base64" in block:
        return _texts(block, "base64", "mime_type")
    if any(key in block for key in ("file_id", "text")):
        return "an image block needs a url or base64 data with a mime_type"
    source = block.get("source")  # Anthropic's
    if isinstance(source, dict) and source.get("type") == "base64":
        return _texts(source, "media_type", "data")
    if isinstance(source, dict) and source.get("type") == "url":
        return _texts(source, "url")
    return "an image block needs a url or base64 data with a mime_type"


def _audio_block(block: dict[str, Any]) -> str | None:
    if "source_type" in block:
        return _v0_problem(block, {"base64": ("data", "mime_type")})
    if "base64" in block:
        return _texts(block, "base64", "mime_type")
    if any(key in block for key in ("url", "file_id", "text")):
        return "an audio block needs base64 data with a mime_type"
    return _texts(block, "id")  # a model's earlier audio answer, referred to by its id


def _file_block(block: dict[str, Any]) -> str | None:
    if "source_type" in block:
        return _v0_problem(block, {"base64": ("data", "mime_type"), "id": ("id",)})
    if "file" in block:  # OpenAI's
        file = block["file"]
        if (
            set(block) != {"type", "file"}
            or not isinstance(file, dict)
            or not file.keys()
            <= {
                "file_data",
                "file_id",
                "filename",
            }
        ):
            return 'an OpenAI file block is {"type": "file", "file": {"file_data" or "file_id", "filename"}}'
        if "file_data" not in file and "file_id" not in file:
            return 'an OpenAI file block needs "file_data" or "file_id"'
        return _texts(file, *file)
    if "base64" in block:
        return _texts(block, "base64", "mime_type") or _optional_text(block, "filename")
    if "file_id" in block:
        return _texts(block, "file_id")
    return "a file block needs base64 data with a mime_type, or a file_id"


def _image_url_block(block: dict[str, Any]) -> str | None:
    image_url = block.get("image_url")
    if not block.keys() <= {"type", "image_url", "detail"} or not isinstance(image_url, dict):
        return 'an image_url block is {"type": "image_url", "image_url": {"url": ...}}'
    return _texts(image_url, "url") or _optional_text(image_url, "detail")


def _input_audio_block(block: dict[str, Any]) -> str | None:
    audio = block.get("input_audio")
    if set(block) != {"type", "input_audio"} or not isinstance(audio, dict) or not audio.keys() <= {"data", "format"}:
        return 'an input_audio block is {"type": "input_audio", "input_audio": {"data": ..., "format": ...}}'
    return _texts(audio, "data", "format")


_DATA_BLOCKS = {
    "image": _image_block,
    "audio": _audio_block,
    "file": _file_block,
    "image_url": _image_url_block,
    "input_audio": _input_audio_block,
}


def _v0_problem(block: dict[str, Any], sources: dict[str, tuple[str, ...]]) -> str | None:
    """A LangChain v0 data block: {"type", "source_type", <the source's fields>, "mime_type"?}."""
    kind, source = block["type"], block["source_type"]
    if not isinstance(source, str) or source not in sources:
        return f"a {kind} block's source_type must be one of {', '.join(sources)}"
    # LangChain rebuilds it with create_*_block(<source fields>, **<the other keys>): another key could
    # name a parameter twice or add a second source
    allowed = {"type", "source_type", "mime_type", "metadata", "filename", *sources[source]}
    unknown = sorted(set(block) - allowed)
    if unknown:
        return f"a {kind} block with source_type {source!r} cannot have {unknown[0]!r}"
    return _texts(block, *sources[source]) or _optional_text(block, "mime_type")


def _texts(holder: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = holder.get(key)
        if not isinstance(value, str) or not value:
            return f"{key!r} must be non-empty text"
    return None


def _optional_text(holder: dict[str, Any], key: str) -> str | None:
    return None if _text_or_none(holder.get(key)) else f"{key!r} must be text"


# -- small helpers -------------------------------------------------------------------------------------


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is(value: Any, expected: Any) -> bool:
    """`expected`: a type, or a tuple of types and None. bool is not a whole number here."""
    options = expected if isinstance(expected, tuple) else (expected,)
    for option in options:
        if option is None and value is None:
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is not None and option is not int and isinstance(value, option):
            return True
    return False


def _describe(expected: Any) -> str:
    options = expected if isinstance(expected, tuple) else (expected,)
    names = {str: "text", dict: "an object", int: "a whole number", None: "null"}
    return " or ".join(names[o] for o in options)


def _short(value: Any, width: int = 40) -> str:
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        return f"(a JSON {'array' if isinstance(value, list) else 'object'})"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
