"""sessions list --all finds sessions other programs wrote (SCAN on the prefix); sessions adopt indexes them."""

from __future__ import annotations

import json

import pytest


def rows(cli, *extra: str) -> list[dict]:
    result = cli("sessions", "list", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["sessions"]


def lc_entry(content: str) -> str:
    return json.dumps({"type": "human", "data": {"content": content}})


@pytest.mark.any_redis
def test_list_all_shows_unindexed_sessions_and_adopt_indexes_them(cli, model, rdb, is_cluster):
    cli("ask", "-s", "mine", "hi")
    for sid in ["elsewhere", "other[1]", "glob*"]:
        rdb.lpush(f"message_store:{sid}", lc_entry(f"from {sid}"))
    if is_cluster:  # they live on different primaries: every primary is scanned
        assert len({rdb.get_node_from_key(f"message_store:{s}").name for s in ["elsewhere", "other[1]", "glob*"]}) > 1
    rdb.lpush("message_storeX:not-ours", lc_entry("other prefix"))
    rdb.set("message_store:a-string", "not a list")

    assert [r["id"] for r in rows(cli)] == ["mine"]  # the index only
    everything = rows(cli, "--all")
    assert [(r["id"], r["indexed"]) for r in everything] == [
        ("mine", True),
        ("elsewhere", False),
        ("glob*", False),
        ("other[1]", False),
    ]
    assert everything[1]["title"] == "from elsewhere" and everything[1]["messages"] == 1
    table = cli("sessions", "list", "--all").stdout
    assert "unindexed" in table and "other[1]" in table

    result = cli("sessions", "adopt")
    assert result.exit_code == 0 and "adopted 3 sessions" in result.stderr
    assert sorted(r["id"] for r in rows(cli)) == ["elsewhere", "glob*", "mine", "other[1]"]
    assert all(r["indexed"] for r in rows(cli, "--all"))
    assert "nothing to adopt" in cli("sessions", "adopt").stderr


def test_a_prefix_with_glob_characters_is_matched_literally(cli, model, rdb, monkeypatch):
    monkeypatch.setenv("CHATCLI_KEY_PREFIX", "app[1]*:")
    rdb.lpush("app[1]*:lc", lc_entry("same prefix"))
    rdb.lpush("app1x:lc", lc_entry("would match the unescaped pattern"))
    assert [(r["id"], r["indexed"]) for r in rows(cli, "--all")] == [("lc", False)]
    cli("sessions", "adopt")
    assert [r["id"] for r in rows(cli)] == ["lc"]
