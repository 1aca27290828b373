"""A turn parses only the newest messages its token budget keeps, not the whole window it read."""

from __future__ import annotations

import json

from chatcli.assistant import budget, read_sizes, read_window, trim
from chatcli.store import SessionStore


def _entry(kind: str, text: str) -> dict:
    return {"type": kind, "data": {"content": text, "additional_kwargs": {}, "response_metadata": {}}}


def test_window_with_a_budget_keeps_what_trim_keeps_and_stops_parsing_there(rdb):
    store = SessionStore(rdb)
    key = store.keys.session("long")
    rdb.lpush(key, b"not json")  # the oldest element: far outside any budget below
    entries = [_entry("human" if i % 2 == 0 else "ai", f"message {i:03d} " + "x" * 36) for i in range(100)]
    rdb.lpush(key, *[json.dumps(e) for e in entries])
    rdb.lpush(key, b"\xff\xfe")  # the newest element: unreadable, inside the budget

    whole = store.window("long", 200)
    assert whole.skipped == 2 and len(whole.messages) == 100

    lazy = store.window("long", 200, lambda: budget(100))
    assert lazy.skipped == 1  # the old unreadable element was never parsed
    assert lazy.messages == whole.messages[-len(lazy.messages) :]
    assert trim(lazy.messages, 100) == trim(whole.messages, 100) != []


def _lrange_calls(rdb) -> int:
    return int(rdb.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0))


def test_a_budget_the_first_read_fills_costs_one_read(rdb):
    store = SessionStore(rdb)
    rdb.lpush(store.keys.session("wordy"), *[json.dumps(_entry("human", "w" * 400)) for _ in range(3000)])
    first, most = read_sizes(8000)
    before = _lrange_calls(rdb)
    window = read_window(store, "wordy", 8000)
    assert _lrange_calls(rdb) - before == 1
    assert len(window.messages) == 8000 // 103 < first < most  # 400 characters: 103 approximate tokens


def test_short_messages_past_the_first_read_are_read_again_up_to_the_most(rdb):
    store = SessionStore(rdb)
    entries = [_entry("human" if i % 2 == 0 else "ai", f"m{i:03d}") for i in range(300)]  # 4 tokens each
    rdb.lpush(store.keys.session("short"), *[json.dumps(e) for e in entries])
    first, most = read_sizes(200)
    assert (first, most) == (16, 25)
    before = _lrange_calls(rdb)
    window = read_window(store, "short", 200)
    assert _lrange_calls(rdb) - before == 2
    # 200 tokens would hold 50 of these; the second read stops at `most`, the newest 25, in order
    assert window.messages == entries[-most:]


def test_a_tool_result_whose_call_is_not_sent_is_not_sent_either():
    """A stored AI message with tool calls was skipped (unusable) or trimmed: its tool results would make an
    OpenAI-compatible server answer HTTP 400 on every turn, so they go too; answered calls stay."""
    from chatcli.assistant import trim

    def msg(kind: str, content: str = "x", **data: object) -> dict:
        return {"type": kind, "data": {"content": content, **data}}

    call = {"name": "f", "args": {}, "id": "c1", "type": "tool_call"}
    kept = trim(
        [
            msg("human", "q1"),
            msg("tool", "orphan", tool_call_id="c0"),  # its AI message was skipped
            msg("human", "q2"),
            msg("ai", "", tool_calls=[call]),
            msg("tool", "answered", tool_call_id="c1"),
            msg("ai", "done"),
            msg("tool", "late", tool_call_id="c1"),  # after another message: not an answer to c1 any more
        ],
        10_000,
    )
    assert [m["data"]["content"] for m in kept] == ["q1", "q2", "", "answered", "done"]
