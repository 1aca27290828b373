"""A turn parses only the newest messages its token budget keeps, not the whole window it read."""

from __future__ import annotations

import json

from chatcli.assistant import budget, trim
from chatcli.store import SessionStore


def _entry(kind: str, text: str) -> dict:
    return {"type": kind, "data": {"content": text, "additional_kwargs": {}, "response_metadata": {}}}


def test_window_with_a_budget_keeps_what_trim_keeps_and_stops_parsing_there(rdb):
    store = SessionStore(rdb)
    key = store.list_key("long")
    rdb.lpush(key, b"not json")  # the oldest element: far outside any budget below
    entries = [_entry("human" if i % 2 == 0 else "ai", f"message {i:03d} " + "x" * 36) for i in range(100)]
    rdb.lpush(key, *[json.dumps(e) for e in entries])
    rdb.lpush(key, b"\xff\xfe")  # the newest element: unreadable, inside the budget

    whole = store.window("long", 200)
    assert whole.skipped == 2 and len(whole.messages) == 100

    lazy = store.window("long", 200, budget(100))
    assert lazy.skipped == 1  # the old unreadable element was never parsed
    assert lazy.messages == whole.messages[-len(lazy.messages) :]
    assert trim(lazy.messages, 100) == trim(whole.messages, 100) != []
