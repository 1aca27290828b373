"""sessions list --all finds sessions other programs wrote (SCAN on the prefix); sessions adopt indexes them."""

from __future__ import annotations

import json
import time

import pytest


def rows(cli, *extra: str) -> list[dict]:
    result = cli("sessions", "list", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["sessions"]


def lc_entry(content: str) -> str:
    return json.dumps({"type": "human", "data": {"content": content}})


@pytest.mark.any_redis
def test_list_all_shows_unindexed_sessions_and_adopt_indexes_them(cli, model, rdb, is_cluster, monkeypatch):
    cli("ask", "-s", "mine", "hi")
    for sid in ["elsewhere", "other[1]", "glob*"]:
        rdb.lpush(f"message_store:{sid}", lc_entry(f"from {sid}"))
    if is_cluster:  # they live on different primaries: every primary is scanned
        assert len({rdb.get_node_from_key(f"message_store:{s}").name for s in ["elsewhere", "other[1]", "glob*"]}) > 1
    rdb.lpush("message_storeX:not-ours", lc_entry("other prefix"))
    rdb.set("message_store:a-string", "not a list")

    everything = rows(cli, "--all")  # looks, adopts nothing
    assert [(r["id"], r["indexed"]) for r in everything] == [
        ("mine", True),
        ("elsewhere", False),
        ("glob*", False),
        ("other[1]", False),
    ]
    assert everything[1]["title"] == "from elsewhere" and everything[1]["messages"] == 1
    table = cli("sessions", "list", "--all").stdout
    assert "unindexed" in table and "other[1]" in table

    monkeypatch.setattr("chatcli.catalog.NOTICE_MAX_KEYS", 3)  # a "large" database: plain listing adopts nothing
    assert [r["id"] for r in rows(cli)] == ["mine"]
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
    assert [r["id"] for r in rows(cli)] == ["lc"]  # adopted by the listing
    assert [r["id"] for r in rows(cli, "--all")] == ["lc"]


@pytest.mark.any_redis
def test_sessions_other_programs_wrote_are_listed_by_activity_without_adopt(cli, model, rdb, redis_url):
    """The first page of `sessions list` adopts them, scored by when their list was last touched."""
    from tests.test_storage import langchain_history

    for sid in ("lc-recent", "lc-stale"):
        app = langchain_history(sid, redis_url)
        app.add_user_message(f"hello from {sid}")
        app.add_ai_message("hi")
    for sid, idle in (("lc-recent", 60), ("lc-stale", 3600)):  # last written that long ago
        key = f"message_store:{sid}"
        rdb.restore(key, 0, rdb.dump(key), replace=True, idletime=idle)
    assert cli("ask", "-s", "old-mine", "hi").exit_code == 0
    assert cli("ask", "-s", "mine", "hi").exit_code == 0
    half_hour_ago = time.time() - 1800
    rdb.hset("chatcli:meta:{message_store:old-mine}", "updated", repr(half_hour_ago))
    rdb.zadd("chatcli:index:{message_store:}", {"old-mine": half_hour_ago})

    listed = rows(cli)
    assert [r["id"] for r in listed] == ["mine", "lc-recent", "old-mine", "lc-stale"]
    assert listed[1]["title"] == "hello from lc-recent" and listed[1]["messages"] == 2
    assert rdb.zscore("chatcli:index:{message_store:}", "lc-stale") is not None
    table = cli("sessions", "list")
    assert table.exit_code == 0 and "large database" not in table.stderr
    assert [r["id"] for r in rows(cli)] == ["mine", "lc-recent", "old-mine", "lc-stale"]  # stable once adopted


def test_a_large_database_is_not_scanned_on_every_listing(cli, model, rdb, monkeypatch):
    rdb.lpush("message_store:lc", lc_entry("from an app"))
    rdb.set("unrelated", "x")
    monkeypatch.setattr("chatcli.catalog.NOTICE_MAX_KEYS", 1)
    result = cli("sessions", "list")
    assert result.exit_code == 0 and "`--all` also finds sessions other programs wrote" in result.stderr
    assert rdb.zcard("chatcli:index:{message_store:}") == 0  # nothing adopted
    assert [(r["id"], r["indexed"]) for r in rows(cli, "--all")] == [("lc", False)]


def test_a_server_that_does_not_track_idle_time_still_gets_them_listed(cli, model, rdb):
    """With an LFU maxmemory policy OBJECT IDLETIME is an error: the session is adopted as active now."""
    rdb.lpush("message_store:lc", lc_entry("from an app"))
    assert cli("ask", "-s", "mine", "hi").exit_code == 0
    before = rdb.config_get("maxmemory-policy")["maxmemory-policy"]
    rdb.config_set("maxmemory-policy", "allkeys-lfu")
    try:
        listed = rows(cli)
    finally:
        rdb.config_set("maxmemory-policy", before)
    assert [r["id"] for r in listed] == ["lc", "mine"]


def test_a_user_who_may_not_write_still_gets_the_listing(cli, model, rdb, redis_url, monkeypatch):
    """Adopting is a write: where Redis refuses it (a read-only user or replica) the listing goes on."""
    assert cli("ask", "-s", "mine", "hi").exit_code == 0
    rdb.lpush("message_store:lc", lc_entry("from an app"))
    rdb.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["~*"], commands=["+@all", "-@write"])
    try:
        monkeypatch.setenv("CHATCLI_REDIS_URL", redis_url.replace("redis://", "redis://reader:pw@", 1))
        assert [r["id"] for r in rows(cli)] == ["mine"]
    finally:
        rdb.acl_deluser("reader")
    assert rdb.zscore("chatcli:index:{message_store:}", "lc") is None
