"""The Redis with JSON and Search modules the LangChain-store tests run on (tests/stack.py)."""

from __future__ import annotations

import redis
from redis.commands.search.field import TagField
from redis.commands.search.index_definition import IndexDefinition, IndexType


def test_the_stack_server_answers_json_and_search(stack_url: str) -> None:
    client = redis.Redis.from_url(stack_url, decode_responses=True)
    # the index first: documents written after it are indexed as they are written (before it, in the background)
    client.ft("idx").create_index(
        [TagField("$.session_id", as_name="session_id")],
        definition=IndexDefinition(prefix=["doc:"], index_type=IndexType.JSON),
    )
    client.json().set("doc:1", "$", {"session_id": "s", "n": 1})
    assert client.json().get("doc:1", "$.n") == [1]
    assert client.ft("idx").search("@session_id:{s}").total == 1
