"""Stored elements the chain cannot send, as raw JSON text, each with the words of the problem chatcli names.

Used by tests/test_messages.py (the check itself, and proof that each shape really breaks LangChain or a
reader), tests/test_bad_input.py (a session holding one goes on) and tests/test_import.py (a file holding
one is refused). BREAKS: shapes on which langchain-core 1.8 / langchain-openai 1.7 or `history show/export`
raise. ODD: shapes that go through but are not messages an OpenAI-compatible server can take.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


def element(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, "data": data})


def cases(*rows: tuple[str, str, str]) -> list[Any]:
    """(id, raw element, words of the problem) -> pytest params (raw, problem)."""
    return [pytest.param(raw, problem, id=name) for name, raw, problem in rows]


DEEP = 100_000  # json.loads itself raises RecursionError on this
NESTED_LIST = '{"type": "human", "data": {"content": ' + "[" * DEEP + "]" * DEEP + "}}"
# 500 levels in a content block: json.loads reads it, but LangChain's tracer recurses past the limit and
# prints "Error in RootListenersTracer.on_chat_model_start callback: RecursionError" on every turn
NESTED_BLOCK = '{"type": "human", "data": {"content": [{"type": "x", "v": ' + "[" * 500 + "]" * 500 + "}]}}"

BREAKS = cases(
    # the shapes of the bug report
    ("tool_calls-not-a-list", element("ai", content="x", tool_calls="notalist"), '"data.tool_calls" must be a list'),
    ("chat-without-role", element("chat", content="x"), 'a chat message needs "data.role"'),
    ("tool-without-call-id", element("tool", content="x"), 'a tool message needs "data.tool_call_id"'),
    ("no-content", '{"type": "human", "data": {}}', 'no "data.content"'),
    ("content-nested-100000-deep", NESTED_LIST, "nested"),
    # found by experiment
    ("content-part-a-number", element("human", content=[5]), "data.content[0]: must be text or an object"),
    ("content-null", element("human", content=None), '"data.content" must be text or a list'),
    ("text-block-without-text", element("ai", content=[{"type": "text"}]), 'a text block needs "text"'),
    (
        "v0-image-without-url",
        element("human", content=[{"type": "image", "source_type": "url"}]),
        "'url' must be non-empty text",
    ),
    (
        "image-without-mime-type",
        element("human", content=[{"type": "image", "base64": "AA"}]),
        "'mime_type' must be non-empty text",
    ),
    (
        "v0-file-with-two-ids",
        element("human", content=[{"type": "file", "source_type": "id", "id": "f", "file_id": "g"}]),
        "cannot have 'file_id'",
    ),
    ("video-block", element("human", content=[{"type": "video", "url": "u"}]), "a video block cannot be sent"),
    ("additional-tools-block", element("human", content=[{"type": "additional_tools"}]), "additional_tools"),
    (
        "tool-call-args-text",
        element("ai", content="x", tool_calls=[{"name": "f", "args": "{}", "id": "1"}]),
        "'args' must be an object",
    ),
    ("tool-call-without-id", element("ai", content="x", tool_calls=[{"name": "f", "args": {}}]), "no 'id'"),
    (
        "tool-call-extra-field",
        element("ai", content="x", tool_calls=[{"name": "f", "args": {}, "id": "1", "index": 0}]),
        "unknown field 'index'",
    ),
    (
        "invalid-tool-call-name",
        element("ai", content="x", invalid_tool_calls=[{"name": 5}]),
        "'name' must be text or null",
    ),
    (
        "tool-call-chunks",
        element("AIMessageChunk", content="x", tool_call_chunks="no"),
        '"data.tool_call_chunks" must be a list',
    ),
    (
        "openai-tool-calls-of-text",
        element("ai", content="x", additional_kwargs={"tool_calls": ["x"]}),
        "data.additional_kwargs.tool_calls[0]",
    ),
    (
        "openai-tool-call-arguments-a-list",
        element(
            "ai",
            content="x",
            additional_kwargs={"tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "[1]"}}]},
        ),
        '"arguments" must be a JSON object',
    ),
    (
        "audio-a-list",
        element("ai", content="x", additional_kwargs={"audio": ["id"]}),
        '"data.additional_kwargs.audio" must be an object',
    ),
    (
        "additional-kwargs-null",
        element("human", content="x", additional_kwargs=None),
        '"data.additional_kwargs" must be an object',
    ),
    (
        "response-metadata-a-number",
        element("human", content="x", response_metadata=5),
        '"data.response_metadata" must be an object',
    ),
    ("name-a-number", element("human", content="x", name=5), '"data.name" must be text or null'),
    ("type-mismatch", element("human", content="x", type="ai"), "\"data.type\" is 'ai'"),
    (
        "usage-incomplete",
        element("ai", content="x", usage_metadata={"input_tokens": 1}),
        "'output_tokens' must be a whole number",
    ),
    ("tool-status", element("tool", content="x", tool_call_id="1", status="weird"), '"data.status" must be'),
    ("function-without-name", element("function", content="x"), 'a function message needs "data.name"'),
    ("remove-type", element("remove", content="", id="m1"), "unknown message type 'remove'"),
    ("nan", '{"type": "human", "data": {"content": [{"type": "text", "text": "x", "n": NaN}]}}', "NaN"),
    (
        "number-out-of-range",  # json.loads reads 1e400 as inf, which the request body cannot hold
        '{"type": "human", "data": {"content": [{"type": "text", "text": "x", "n": 1e400}]}}',
        "out of range",
    ),
    (
        "tool-call-chunk-args-escaping-a-surrogate",  # LangChain parses the args, then cannot send them
        element("AIMessageChunk", content="", tool_call_chunks=[{"name": "f", "args": '{"a": "\\ud800"}', "index": 0}]),
        "lone surrogate",
    ),
    (
        "openai-tool-call-arguments-escaping-a-surrogate",
        element(
            "ai",
            content="",
            additional_kwargs={"tool_calls": [{"id": "1", "function": {"name": "f", "arguments": '["\\udfff"]'}}]},
        ),
        "lone surrogate",
    ),
    (
        "server-tool-call-args-escaping-a-surrogate",
        element(
            "AIMessageChunk",
            content=[{"type": "server_tool_call", "id": "s1", "name": "search", "args": '{"q": "\\ud800"}'}],
            chunk_position="last",
            response_metadata={"output_version": "v1"},
        ),
        "lone surrogate",
    ),
    ("lone-surrogate", '{"type": "human", "data": {"content": "\\ud800"}}', "surrogate"),
    (
        "lone-surrogate-in-metadata",
        '{"type": "ai", "data": {"content": "x", "response_metadata": {"note": "\\udfff"}}}',
        "surrogate",
    ),
    ("content-block-nested-500-deep", NESTED_BLOCK, "nested more than 100 levels"),
)

ODD = cases(
    (
        "openai-tool-call-without-function",
        element("ai", content="x", additional_kwargs={"tool_calls": [{"id": "1"}]}),
        'needs "function"',
    ),
    (
        "openai-role-a-number",
        element("system", content="x", additional_kwargs={"__openai_role__": 5}),
        "__openai_role__",
    ),
    ("content-blocks", element("human", content="x", content_blocks=[{"type": "text", "text": "y"}]), "content_blocks"),
    ("block-without-type", element("human", content=[{"text": "x"}]), 'needs a "type"'),
    (
        "image-url-a-string",
        element("human", content=[{"type": "image_url", "image_url": "http://x"}]),
        "an image_url block is",
    ),
    ("tool-call-id-a-number", element("tool", content="x", tool_call_id=7), 'a tool message needs "data.tool_call_id"'),
)

MALFORMED = BREAKS + ODD
