"""Read a conversation to import: chatcli's json and jsonl exports, or the OpenAI messages format.

Everything is validated before anything is written, every message by the check readers use
(chatcli.codec.problem: what the chain can send); errors name the line (jsonl) or the message's position.
Leading system messages (chatcli's "type": "system" or OpenAI's "role": "system"/"developer") become
Conversation.system, the session's system prompt, never list elements: the storage contract keeps the system
prompt in the metadata, and the assistant's trim drops history that does not start on a user message.
Pure functions over LangChain's message dicts: nothing here imports LangChain or touches Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatcli import codec, exporting
from chatcli.errors import NotFoundError, UsageError
from chatcli.files import read_text

# OpenAI chat roles -> LangChain message types
OPENAI_ROLES = {"user": "human", "assistant": "ai", "system": "system", "developer": "system", "tool": "tool"}


@dataclass
class Conversation:
    entries: list[dict[str, Any]]
    session: str | None = None  # the "session" of a chatcli json export
    # the leading system messages, in any format, joined by a blank line: stored as the session's system
    # prompt (metadata). A system message after another message stays an entry, where it was.
    system: str | None = None
    format: str = "json"


def read_conversation(path: Path) -> Conversation:
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a file to import")
    text = read_text(path, "utf-8-sig")
    conversation = parse(text, path.name, jsonl=path.suffix.lower() in (".jsonl", ".ndjson"))
    if not conversation.entries:
        only = " (only a system prompt)" if conversation.system else ""
        raise UsageError(f"{path}: no messages to import{only}")
    return conversation


def _loads(text: str, where: str) -> Any:
    """json.loads, but a document nested too deeply for Python's parser is invalid input, not a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{where}: JSON nested too deeply to read") from None


def parse(text: str, name: str = "<input>", jsonl: bool = False) -> Conversation:
    if not jsonl:
        try:
            document = _loads(text, name)
        except json.JSONDecodeError as exc:
            if not _looks_like_jsonl(text):
                raise UsageError(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        else:
            return _from_document(document, name)
    return _from_lines(text, name)


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _from_lines(text: str, name: str) -> Conversation:
    entries: list[dict[str, Any]] = []
    system_parts: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = _loads(line, f"{name}: line {number}")
        except json.JSONDecodeError as exc:
            raise UsageError(f"{name}: line {number}: invalid JSON at column {exc.colno}: {exc.msg}") from None
        _add(item, f"{name}: line {number}", entries, system_parts)
    return Conversation(entries, system="\n\n".join(system_parts) or None, format="jsonl")


def _from_document(document: Any, name: str) -> Conversation:
    session = None
    if isinstance(document, dict):
        if not isinstance(document.get("messages"), list):
            raise UsageError(f'{name}: expected {{"messages": [...]}} or a list of messages')
        if isinstance(document.get("session"), str):
            session = document["session"]
        items = document["messages"]
    elif isinstance(document, list):
        items = document
    else:
        raise UsageError(f'{name}: expected {{"messages": [...]}} or a list of messages, got {type(document).__name__}')
    entries: list[dict[str, Any]] = []
    system_parts: list[str] = []
    for number, item in enumerate(items, start=1):
        _add(item, f"{name}: message {number}", entries, system_parts)
    return Conversation(entries, session=session, system="\n\n".join(system_parts) or None, format="json")


def _add(item: Any, where: str, entries: list[dict[str, Any]], system_parts: list[str]) -> None:
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a message object, got {type(item).__name__}")
    if "type" in item and "data" in item:
        entry = item  # a message_to_dict() dict, kept exactly as it is (so export -> import round-trips)
    elif "role" in item:
        entry = _openai_entry(item, where)
    else:
        raise UsageError(f'{where}: a message needs "type" and "data" (chatcli export) or "role" (OpenAI format)')
    found = codec.problem(entry)  # exactly what readers skip
    if found:
        raise UsageError(f"{where}: {found}")
    if exporting.role(entry) == "system" and not entries:
        # the system prompt is metadata, not a list element (the assistant's trim would drop it)
        system_parts.append(exporting.text(entry))
    else:
        entries.append(entry)


def _openai_entry(item: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI chat message as the message_to_dict() dict LangChain would store; its fields are checked
    here under their OpenAI names, the result again by codec.problem() like any message."""
    role = item.get("role")
    kind = OPENAI_ROLES.get(role) if isinstance(role, str) else None
    if kind is None:
        raise UsageError(f"{where}: unknown role {role!r} (use {', '.join(OPENAI_ROLES)})")
    content = item.get("content")
    if content is None and kind == "ai":
        content = ""  # an assistant message that only calls tools
    found = codec.content_problem(content)
    if found:
        raise UsageError(f"{where}: {found}")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise UsageError(f'{where}: "name" must be text')
    data: dict[str, Any] = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": kind,
        "name": name,
        "id": None,
    }
    # the same fields message_to_dict() writes (langchain-core 1.x)
    if kind == "ai":
        if item.get("tool_calls"):
            found = codec.tool_calls_problem(item["tool_calls"])
            if found:
                raise UsageError(f"{where}: tool_calls{found}")
            data["additional_kwargs"]["tool_calls"] = item["tool_calls"]
        data.update(tool_calls=[], invalid_tool_calls=[], usage_metadata=None)
    elif kind == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise UsageError(f'{where}: a tool message needs "tool_call_id"')
        data.update(tool_call_id=call_id, artifact=None, status="success")
    return {"type": kind, "data": data}
