"""Redis Cluster specifics: one slot per session, the index in its own idempotent step."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.any_redis


def test_a_session_shares_one_slot_and_the_index_is_repaired_by_the_next_write(cli, model, rdb, is_cluster):
    for name in ["alpha", "beta", "gamma", "delta"]:
        assert cli("ask", "-s", name, f"hi {name}").exit_code == 0
    if is_cluster:
        list_slot = rdb.keyslot("message_store:alpha")
        assert rdb.keyslot("chatcli:meta:{message_store:alpha}") == list_slot
        assert rdb.keyslot("chatcli:index:{message_store:}") != list_slot
        # the sessions really are spread over more than one primary
        nodes = {rdb.get_node_from_key(f"message_store:{n}").name for n in ["alpha", "beta", "gamma", "delta"]}
        assert len(nodes) > 1
    # the index step lost (as if it failed after the session's transaction): the next write puts it back
    rdb.zrem("chatcli:index:{message_store:}", "alpha")
    assert "alpha" not in [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert cli("ask", "-s", "alpha", "again").exit_code == 0
    ids = [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert ids[0] == "alpha" and sorted(ids) == ["alpha", "beta", "delta", "gamma"]
    assert rdb.llen("message_store:alpha") == 4
