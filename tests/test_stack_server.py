"""The Redis with JSON and Search modules the LangChain-store tests run on (tests/stack.py)."""

from __future__ import annotations

import redis

from tests.stack import stack_proc, stack_url  # noqa: F401  (fixtures)


def test_the_stack_server_answers_json_and_search(stack_url: str) -> None:
    client = redis.Redis.from_url(stack_url, decode_responses=True)
    client.json().set("doc:1", "$", {"session_id": "s", "n": 1})
    assert client.json().get("doc:1", "$.n") == [1]
    client.ft("idx").create_index(
        [redis.commands.search.field.TagField("$.session_id", as_name="session_id")],
        definition=redis.commands.search.index_definition.IndexDefinition(
            prefix=["doc:"], index_type=redis.commands.search.index_definition.IndexType.JSON
        ),
    )
    assert client.ft("idx").search("@session_id:{s}").total == 1
