"""A Redis Cluster that is down when chat starts: turns are spooled, and flushed through the cluster later."""

from __future__ import annotations

import json
import time

from tests.conftest import pending_turns


def test_chat_spools_when_the_cluster_is_down_at_start_and_flushes_when_back(cli, model, tmp_path):
    from tests.conftest import start_cluster

    cluster = start_cluster(tmp_path / "down-cluster")
    try:
        cluster.stop()
        result = cli.run("ask", "-s", "offline", "while down", "--redis-url", cluster.url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "echo: while down\n"  # the model still answers
        assert "history is being spooled" in result.stderr
        for node in cluster.nodes:
            node.restart()
        deadline = time.monotonic() + 30
        while not all(n.client().cluster("info")["cluster_state"] == "ok" for n in cluster.nodes):
            assert time.monotonic() < deadline, "the cluster did not come back"
            time.sleep(0.05)
        shown = cli.run("history", "show", "offline", "--json", "--redis-url", cluster.url)
        assert shown.returncode == 0, shown.stderr
        assert [m["data"]["content"] for m in json.loads(shown.stdout)["messages"]] == [
            "while down",
            "echo: while down",
        ]
        listed = json.loads(cli.run("sessions", "list", "--json", "--redis-url", cluster.url).stdout)
        assert [s["id"] for s in listed["sessions"]] == ["offline"]
    finally:
        cluster.stop()


def test_a_plain_redis_at_a_cluster_url_is_a_clear_error_not_a_spool(cli, model, redis_proc, home):
    result = cli.run("ask", "-s", "x", "hi", "--redis-url", f"redis+cluster://127.0.0.1:{redis_proc.port}")
    assert result.returncode == 3
    assert "is not a cluster: use redis://" in result.stderr
    assert pending_turns(home) == []
