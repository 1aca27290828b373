"""Storage: LangChain compatibility both ways, history show/export, sessions list/delete/clear."""

from __future__ import annotations

import json
import time
import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage


def langchain_history(session_id: str, url: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        # LangChain's own client notices a cluster node (INFO cluster_enabled) and uses RedisCluster
        return RedisChatMessageHistory(session_id, url=url.replace("redis+cluster://", "redis://", 1), **options)


@pytest.mark.any_redis
def test_a_session_written_by_langchain_is_shown_and_continued(cli, model, redis_url):
    lc = langchain_history("lc1", redis_url)
    lc.add_user_message("Hi! I'm bob")
    lc.add_ai_message("Hello bob")

    shown = cli("history", "show", "lc1", "--json")
    assert shown.exit_code == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert payload["session"] == "lc1"
    assert [(m["type"], m["data"]["content"]) for m in payload["messages"]] == [
        ("human", "Hi! I'm bob"),
        ("ai", "Hello bob"),
    ]

    result = cli("ask", "-s", "lc1", "Whats my name")
    assert result.exit_code == 0, result.stderr
    assert [(m["role"], m["content"]) for m in model.last_messages()[1:]] == [
        ("user", "Hi! I'm bob"),
        ("assistant", "Hello bob"),
        ("user", "Whats my name"),
    ]
    # ...and LangChain reads the continued conversation back, in order, with the right types
    messages = langchain_history("lc1", redis_url).messages
    assert [(type(m), m.content) for m in messages] == [
        (HumanMessage, "Hi! I'm bob"),
        (AIMessage, "Hello bob"),
        (HumanMessage, "Whats my name"),
        (AIMessage, "echo: Whats my name"),
    ]


@pytest.mark.any_redis
def test_a_session_written_by_chatcli_reads_back_through_langchain(cli, model, redis_url):
    cli("chat", "-s", "cc", input="first\nsecond\n")
    messages = langchain_history("cc", redis_url).messages
    assert [(type(m).__name__, m.content) for m in messages] == [
        ("HumanMessage", "first"),
        ("AIMessage", "echo: first"),
        ("HumanMessage", "second"),
        ("AIMessage", "echo: second"),
    ]
    assert messages[1].usage_metadata is not None


@pytest.mark.any_redis
def test_history_show_renders_the_conversation_in_order(cli, model):
    cli("chat", "-s", "h", input="alpha\nbeta\n")
    result = cli("history", "show", "h")
    assert result.exit_code == 0
    blocks = [block.split("\n") for block in result.stdout.strip().split("\n\n")]
    assert blocks == [["user", "alpha"], ["assistant", "echo: alpha"], ["user", "beta"], ["assistant", "echo: beta"]]

    last = json.loads(cli("history", "show", "h", "--json", "--last", "2").stdout)
    assert [m["data"]["content"] for m in last["messages"]] == ["beta", "echo: beta"]


@pytest.mark.any_redis
def test_history_of_an_unknown_session_is_not_found(cli, model):
    for args in (["history", "show", "nope"], ["history", "export", "nope"]):
        result = cli(*args)
        assert result.exit_code == 5
        assert "nope" in result.stderr


@pytest.mark.any_redis
def test_export_formats_parse_back_to_the_same_messages(cli, model, tmp_path):
    cli("chat", "-s", "ex", input="one\ntwo\n")
    shown = json.loads(cli("history", "show", "ex", "--json").stdout)

    as_json = json.loads(cli("history", "export", "ex", "--format", "json").stdout)
    assert as_json == shown
    assert as_json["session"] == "ex" and len(as_json["messages"]) == 4

    assert as_json["header"]["session"] == "ex" and as_json["header"]["model"] == "gpt-4o-mini"

    lines = cli("history", "export", "ex", "--format", "jsonl").stdout.splitlines()
    assert json.loads(lines[0]) == {"header": shown["header"]}
    assert [json.loads(line) for line in lines[1:]] == shown["messages"]

    md = cli("history", "export", "ex", "--format", "markdown").stdout
    assert md.startswith('---\nsession: "ex"\n') and "\n---\n\n# Session ex\n" in md
    sections = md.split("\n## ")[1:]
    assert [s.split("\n\n", 1)[0] for s in sections] == ["user", "assistant", "user", "assistant"]
    assert [s.split("\n\n", 1)[1].strip() for s in sections] == ["one", "echo: one", "two", "echo: two"]


@pytest.mark.any_redis
def test_export_to_a_file_refuses_to_overwrite_without_force(cli, model, tmp_path):
    cli("ask", "-s", "f", "hi")
    target = tmp_path / "out.jsonl"
    assert cli("history", "export", "f", "-f", "jsonl", "-o", str(target)).exit_code == 0
    first = target.read_text()
    assert len(first.splitlines()) == 3  # the header, then the two messages

    target.write_text("precious")
    refused = cli("history", "export", "f", "-o", str(target))
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert target.read_text() == "precious"

    assert cli("history", "export", "f", "-o", str(target), "--force").exit_code == 0
    assert json.loads(target.read_text())["session"] == "f"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp files left


def test_export_to_an_unusable_path_is_one_line(cli, model, tmp_path):
    cli("ask", "-s", "f", "hi")
    missing_dir = cli("history", "export", "f", "-o", str(tmp_path / "nodir" / "x.json"))
    assert missing_dir.exit_code == 5 and "no such directory" in missing_dir.stderr
    a_dir = cli("history", "export", "f", "-o", str(tmp_path), "--force")
    assert a_dir.exit_code == 2 and "is a directory" in a_dir.stderr
    unwritable = cli.run("history", "export", "f", "-o", "/proc/chatcli-export.json")
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr
    assert unwritable.stderr.count("\n") == 1


def test_a_reader_that_goes_away_is_not_an_error(cli, model, rdb):
    import subprocess
    import sys

    cli("ask", "-s", "big", "x " * 20000)
    for args in (["history", "show", "big"], ["history", "show", "big", "--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err


def test_export_unknown_format_is_a_usage_error(cli, model):
    cli("ask", "-s", "f", "hi")
    result = cli("history", "export", "f", "--format", "xml")
    assert result.exit_code == 2 and "xml" in result.stderr


def test_sessions_list_of_a_large_database_pages_by_last_activity_and_does_not_scan(cli, model, rdb, monkeypatch):
    monkeypatch.setattr("chatcli.catalog.NOTICE_MAX_KEYS", 5)  # fewer than the sessions' keys below
    for name in ["s1", "s2", "s3"]:
        cli("ask", "-s", name, f"hello from {name}")
        time.sleep(0.01)
    cli("ask", "-s", "s1", "s1 again")  # s1 is now the most recently active
    langchain_history("unindexed", cli.environ["CHATCLI_REDIS_URL"]).add_user_message("written elsewhere")
    rdb.config_resetstat()

    page1 = json.loads(cli("sessions", "list", "--json", "--limit", "2").stdout)
    assert [s["id"] for s in page1["sessions"]] == ["s1", "s3"]
    assert page1["sessions"][0]["messages"] == 4
    assert page1["sessions"][0]["title"] == "hello from s1"
    assert page1["sessions"][0]["created"].endswith("Z") and page1["sessions"][0]["updated"].endswith("Z")
    page2 = json.loads(cli("sessions", "list", "--json", "--limit", "2", "--cursor", page1["next_cursor"]).stdout)
    assert [s["id"] for s in page2["sessions"]] == ["s2"]
    assert page2["next_cursor"] is None
    assert "cmdstat_scan" not in rdb.info("commandstats")
    assert "cmdstat_keys" not in rdb.info("commandstats")

    table = cli("sessions", "list").stdout
    assert table.index("s1") < table.index("s3") < table.index("s2")
    assert "unindexed" not in table


def test_pages_stay_whole_when_indexed_sessions_have_vanished(cli, model, rdb):
    for i in range(1, 7):
        cli("ask", "-s", f"p{i}", "hi")
        time.sleep(0.01)
    rdb.delete("message_store:p6", "chatcli:meta:{message_store:p6}")  # expired, or deleted by another program
    rdb.delete("message_store:p4", "chatcli:meta:{message_store:p4}")
    seen, cursor, pages = [], None, 0
    while True:
        args = ["sessions", "list", "--json", "--limit", "2"] + (["--cursor", cursor] if cursor else [])
        page = json.loads(cli(*args).stdout)
        seen += [s["id"] for s in page["sessions"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p5", "p3", "p2", "p1"]
    assert pages == 2
    assert rdb.zcard("chatcli:index:{message_store:}") == 4  # the vanished ones left the index


def test_long_session_ids_are_never_shortened_in_the_table(cli, model):
    long_id = "project-alpha-2026-11-24-design-review-" + "x" * 30
    cli("ask", "-s", long_id, "a question with a long title " * 5)
    assert long_id in cli.run("sessions", "list").stdout  # piped: 80 columns


def test_sessions_list_bad_cursor_is_a_usage_error(cli, model):
    assert cli("sessions", "list", "--cursor", "abc").exit_code == 2


@pytest.mark.any_redis
def test_sessions_delete_removes_only_the_named_sessions(cli, model, rdb):
    for name in ["d1", "d2", "keep"]:
        cli("ask", "-s", name, "hi")
    result = cli("sessions", "delete", "d1", "d2")
    assert result.exit_code == 0
    ids = [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert ids == ["keep"]
    assert rdb.exists("message_store:d1", "chatcli:meta:{message_store:d1}") == 0


@pytest.mark.any_redis
def test_sessions_delete_of_a_missing_id_deletes_nothing(cli, model, rdb):
    cli("ask", "-s", "d1", "hi")
    result = cli("sessions", "delete", "d1", "ghost")
    assert result.exit_code == 5 and "ghost" in result.stderr
    assert rdb.exists("message_store:d1") == 1


@pytest.mark.any_redis
def test_sessions_clear_removes_every_indexed_session_and_nothing_else(cli, model, rdb):
    for name in ["c1", "c2", "c3"]:
        cli("ask", "-s", name, "hi")
    rdb.set("unrelated:key", "still here")
    rdb.lpush("message_store:written-by-another-app", '{"type": "human", "data": {"content": "x"}}')

    refused = cli("sessions", "clear")  # stdin is not a terminal and no --yes
    assert refused.exit_code == 2 and "3 sessions" in refused.stderr
    assert rdb.exists("message_store:c1") == 1

    result = cli("sessions", "clear", "--yes")
    assert result.exit_code == 0 and "deleted 3 sessions" in result.stderr
    assert sorted(rdb.keys()) == [b"message_store:written-by-another-app", b"unrelated:key"]
    # never listed before, so never indexed nor cleared: the next listing shows it
    assert [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]] == [
        "written-by-another-app"
    ]


@pytest.mark.any_redis
@pytest.mark.parametrize("corrupt", [b"not json", b'{"type": "alien", "data": {}}', b"\xff\xfe"])
def test_unreadable_entries_are_skipped_and_counted(cli, model, rdb, corrupt):
    cli("ask", "-s", "bad", "hi")
    rdb.lpush("message_store:bad", corrupt)
    shown = cli("history", "show", "bad", "--json")
    assert shown.exit_code == 0
    assert len(json.loads(shown.stdout)["messages"]) == 2
    assert "skipped 1" in shown.stderr
    again = cli("ask", "-s", "bad", "next")
    assert again.exit_code == 0
    assert [m["content"] for m in model.last_messages()[1:]] == ["hi", "echo: hi", "next"]


def test_export_and_chat_skip_unreadable_entries_say_how_many_and_keep_the_rest(cli, model, rdb, tmp_path):
    cli("chat", "-s", "mixed", input="one\ntwo\n")
    key = "message_store:mixed"
    # written by another program: interleaved with the valid ones (LINSERT keeps their positions)
    for pivot, junk in [(0, b"{broken"), (2, b'{"type": "alien", "data": {"content": "x"}}'), (3, b"\xff\xfe")]:
        rdb.linsert(key, "BEFORE", rdb.lindex(key, pivot), junk)
    assert rdb.llen(key) == 7
    valid = [("human", "one"), ("ai", "echo: one"), ("human", "two"), ("ai", "echo: two")]

    as_json = cli("history", "export", "mixed", "--format", "json")
    assert as_json.exit_code == 0
    assert [(m["type"], m["data"]["content"]) for m in json.loads(as_json.stdout)["messages"]] == valid
    assert "skipped 3" in as_json.stderr
    target = tmp_path / "mixed.jsonl"
    as_file = cli("history", "export", "mixed", "--format", "jsonl", "-o", str(target))
    assert as_file.exit_code == 0 and "skipped 3" in as_file.stderr and "wrote 4 messages" in as_file.stderr
    assert [(m["type"], m["data"]["content"]) for m in map(json.loads, target.read_text().splitlines()[1:])] == valid
    as_md = cli("history", "export", "mixed", "--format", "markdown")
    assert as_md.exit_code == 0 and as_md.stdout.count("\n## ") == 4 and "skipped 3" in as_md.stderr

    chat = cli("chat", "-s", "mixed", input="three\n")
    assert chat.exit_code == 0 and chat.stdout == "echo: three\n"
    assert "skipped 3" in chat.stderr
    assert [(m["role"], m["content"]) for m in model.last_messages()[1:]] == [
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
    ]
    assert rdb.llen(key) == 9  # the unreadable entries are left where they are, never dropped


def test_an_export_that_fails_midway_leaves_the_forced_target_intact(cli, model, rdb, redis_proc, tmp_path):
    """Redis dies between two chunks of an export: exit 3, the old file untouched, no temp file left."""
    import subprocess
    import sys

    entry = json.dumps({"type": "human", "data": {"content": "m" * 50}})
    pipe = rdb.pipeline(transaction=False)
    for _ in range(5):
        pipe.lpush("message_store:big", *[entry] * 1000)  # 5 chunks of 1000 for the export to read
    pipe.execute()
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "big.json"
    target.write_text("precious")
    monitor_conn = redis_proc.client()
    with monitor_conn.monitor() as monitor:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatcli", "history", "export", "big", "-o", str(target), "--force"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while "LRANGE" not in monitor.next_command()["command"]:
                pass
            # the first chunk was read: hold every later command, then kill the server under them
            redis_proc.client().client_pause(10_000)
            redis_proc.proc.kill()
            redis_proc.proc.wait(10)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            redis_proc.restart()
    assert proc.returncode == 3, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert target.read_text() == "precious"
    assert [p.name for p in target.parent.iterdir()] == ["big.json"]  # no temp file left behind
