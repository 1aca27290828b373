"""Issue 13 §1-2: live answers, `chatcli follow`, presence, notices between clients.

In-process tests drive chatcli.live and chatcli.follow against a real Redis; end-to-end tests run two chatcli
processes with different CHATCLI_HOMEs on one Redis (single node and the 3-master cluster): two machines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chatcli import live
from chatcli.follow import Follower
from chatcli.keys import Keys
from chatcli.notices import Notices
from chatcli.records import TurnRecord
from chatcli.redis_server import client_for_url
from chatcli.store import SessionStore
from tests.model_server import Reply

KEYS = Keys("message_store:")
ANSWER = [f"piece{i:02d} " for i in range(12)]


def store_for(redis_url: str) -> SessionStore:
    return SessionStore(client_for_url(redis_url))


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "") -> Any:
    """Poll until `predicate()` is true (a wait on an outcome, never an assertion about time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or predicate}")
        time.sleep(0.02)


def entries(rdb: Any, session: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _id, fields in rdb.xrange(KEYS.live(session), "-", "+")
    ]


def exchange(session: str, question: str, answer: str) -> TurnRecord:
    record = TurnRecord(session, [])
    record.entries = [
        {"type": "human", "data": {"content": question, "type": "human", "id": f"{record.turn}-0"}},
        {"type": "ai", "data": {"content": answer, "type": "ai", "id": f"{record.turn}-1"}},
    ]
    return record


def drain(events: Any, until: Any, looks: int = 200) -> list[Any]:
    """The follower's events (idle looks left out) until one satisfies `until`; AssertionError after `looks`
    looks that found nothing new."""
    seen = []
    for event in events:
        if event.kind == "idle":
            looks -= 1
            if looks < 0:
                raise AssertionError(f"nothing more came; so far: {seen}")
            continue
        seen.append(event)
        if until(event):
            return seen
    raise AssertionError("the follower stopped")


def quiet(events: Any, looks: int = 3) -> list[Any]:
    """What the follower shows during `looks` looks."""
    seen = []
    for event in events:
        if event.kind == "idle":
            looks -= 1
            if not looks:
                return seen
        else:
            seen.append(event)
    return seen


# -- publishing and presence, in process ----------------------------------------------------------------


@pytest.mark.any_redis
def test_a_publisher_streams_start_pieces_end_and_holds_presence_while_answering(redis_url, rdb):
    store = store_for(redis_url)
    publisher = live.Publisher(store.client, store.keys, "pub", "t1", "what is up?")
    publisher.piece("hello ")
    publisher.piece("world")
    wait_until(lambda: rdb.xlen(KEYS.live("pub")) >= 3, what="the pieces")
    presence = live.Presence.from_raw(rdb.get(KEYS.answering("pub")))
    assert presence is not None and presence.turn == "t1" and presence.pid == os.getpid()
    assert 0 < rdb.ttl(KEYS.answering("pub")) <= live.PRESENCE_TTL
    first = rdb.xrange(KEYS.live("pub"), "-", "+")[0][0].decode()
    assert presence.since == first  # the answer's start: where a follower that comes late begins
    publisher.end("complete")
    wait_until(lambda: not publisher.thread.is_alive(), what="the publisher's end")
    got = entries(rdb, "pub")
    assert [e["kind"] for e in got] == ["start", "piece", "piece", "end"]
    assert got[0]["question"] == "what is up?" and got[0]["host"] == live.host_name()
    assert "".join(e["text"] for e in got if e["kind"] == "piece") == "hello world"
    assert got[-1]["status"] == "complete" and {e["turn"] for e in got} == {"t1"}
    assert rdb.get(KEYS.answering("pub")) is None  # released at the end of the answer
    assert 0 < rdb.ttl(KEYS.live("pub")) <= live.STREAM_TTL  # the stream never outlives its use for long
    assert publisher.failed is None
    store.delete(["pub"])  # `sessions delete`: its answers do not linger in the stream
    assert rdb.exists(KEYS.live("pub")) == 0


def test_the_end_of_an_answer_leaves_the_presence_of_a_later_answer_alone(redis_url, rdb):
    store = store_for(redis_url)
    first = live.Publisher(store.client, store.keys, "two", "t1", "q1")
    wait_until(lambda: rdb.get(KEYS.answering("two")), what="the first presence")
    second = live.Publisher(store.client, store.keys, "two", "t2", "q2")
    wait_until(lambda: b'"t2"' in (rdb.get(KEYS.answering("two")) or b""), what="the second presence")
    first.end("complete")
    wait_until(lambda: not first.thread.is_alive(), what="the first publisher's end")
    assert live.Presence.from_raw(rdb.get(KEYS.answering("two"))).turn == "t2"  # type: ignore[union-attr]
    second.end("complete")
    wait_until(lambda: not second.thread.is_alive(), what="the second publisher's end")
    assert rdb.get(KEYS.answering("two")) is None


def test_a_turn_publishes_what_it_saves_and_a_publishing_error_never_fails_it(env, redis_url, rdb, model, home):
    from chatcli.assistant import Assistant
    from chatcli.settings import Settings

    store = store_for(redis_url)
    settings = Settings(home=home, base_url=model.base_url, api_key="x", redis_url=redis_url)
    assistant = Assistant(settings, store)
    model.script(Reply(chunks=ANSWER))
    turn = assistant.turn("hooked", "count")
    assert "".join(turn) == "".join(ANSWER)
    assert turn.saved and turn.status == "complete"
    wait_until(lambda: not turn.live.thread.is_alive(), what="the end of the publishing")
    got = entries(rdb, "hooked")
    assert got[0]["kind"] == "start" and got[-1] == {"kind": "end", "turn": turn.id, "status": "complete"}
    assert "".join(e["text"] for e in got if e["kind"] == "piece") == "".join(ANSWER)
    assert rdb.get(KEYS.answering("hooked")) is None

    # a key of another type where the stream goes: XADD fails; the turn is answered and stored all the same
    rdb.set(KEYS.live("broken"), "not a stream")
    model.script(Reply(chunks=ANSWER))
    turn = assistant.turn("broken", "count")
    assert "".join(turn) == "".join(ANSWER)
    assert turn.saved and turn.status == "complete"
    wait_until(lambda: not turn.live.thread.is_alive(), what="the end of the publishing")
    assert turn.live.failed is not None and "WRONGTYPE" in str(turn.live.failed)
    stored = [json.loads(raw)["data"]["content"] for raw in reversed(rdb.lrange(KEYS.session("broken"), 0, -1))]
    assert stored == ["count", "".join(ANSWER)]


# -- the follower, in process ----------------------------------------------------------------------------


@pytest.mark.any_redis
def test_a_follower_that_starts_mid_answer_sees_it_from_its_start_then_new_turns(redis_url, rdb):
    store = store_for(redis_url)
    store.append_turn(exchange("mid", "old question", "old answer"))
    store.append_turn(exchange("mid", "last question", "last answer"))
    publisher = live.Publisher(store.client, store.keys, "mid", "t-live", "live question")
    for piece in ANSWER[:5]:
        publisher.piece(piece)
    wait_until(lambda: rdb.xlen(KEYS.live("mid")) >= 6, what="five pieces")
    events = iter(Follower(store, "mid", block_ms=100))
    first = drain(events, lambda e: e.kind == "token" and e.data["text"] == ANSWER[4])
    assert [e.data["content"] for e in first if e.kind == "message"] == ["last question", "last answer"]
    start = next(e for e in first if e.kind == "start")
    assert start.turn == "t-live" and start.data["question"] == "live question"
    for piece in ANSWER[5:]:
        publisher.piece(piece)
    publisher.end("complete")
    rest = drain(events, lambda e: e.kind == "end")
    tokens = [e.data["text"] for e in first + rest if e.kind == "token"]
    assert "".join(tokens) == "".join(ANSWER)  # from its start, each piece once, in order
    assert rest[-1].data["status"] == "complete"

    # a turn another program stored (no stream: LangChain's RedisChatMessageHistory, a spool flush) shows too
    store.append_turn(exchange("mid", "from elsewhere", "its answer"))
    later = drain(events, lambda e: e.kind == "message" and e.data["content"] == "its answer")
    assert [e.data["content"] for e in later if e.kind == "message"] == ["from elsewhere", "its answer"]
    # the live turn, now stored, is not shown twice
    assert all(e.turn != "t-live" for e in later)


def test_two_answers_streaming_at_once_are_both_followed_to_their_end(redis_url, rdb):
    store = store_for(redis_url)
    store.append_turn(exchange("both", "q0", "a0"))
    events = iter(Follower(store, "both", block_ms=100))
    drain(events, lambda e: e.kind == "message" and e.data["content"] == "a0")
    laptop = live.Publisher(store.client, store.keys, "both", "t-laptop", "from the laptop")
    wait_until(lambda: rdb.xlen(KEYS.live("both")) >= 1, what="the first start")
    server = live.Publisher(store.client, store.keys, "both", "t-server", "from the server")
    wait_until(lambda: rdb.xlen(KEYS.live("both")) >= 2, what="the second start")  # before any piece
    for i in range(4):
        laptop.piece(f"L{i} ")
        server.piece(f"S{i} ")
    laptop.end("complete")
    seen: list[Any] = []
    while not any(e.kind == "end" for e in seen) or not any(e.data.get("text") == "S3 " for e in seen):
        seen += drain(events, lambda e: e.kind == "end" or e.data.get("text") == "S3 ")
    assert quiet(events) == []  # the server's presence is there: its answer stays open
    server.end("interrupted")
    seen += drain(events, lambda e: e.kind == "end" and e.turn == "t-server")
    tokens = [e for e in seen if e.kind == "token"]
    text = {turn: "".join(e.data["text"] for e in tokens if e.turn == turn) for turn in ("t-laptop", "t-server")}
    assert text == {"t-laptop": "L0 L1 L2 L3 ", "t-server": "S0 S1 S2 S3 "}
    ends = {e.turn: e.data["status"] for e in seen if e.kind == "end"}
    assert ends == {"t-laptop": "complete", "t-server": "interrupted"}


def test_an_answer_whose_client_crashed_is_closed_when_its_presence_expires(redis_url, rdb):
    store = store_for(redis_url)
    # what a client leaves when it is killed mid-answer: a start and a piece, no end, its presence until the TTL
    since = rdb.xadd(KEYS.live("crash"), {"kind": "start", "turn": "t-dead", "question": "q", "host": "h"}).decode()
    rdb.xadd(KEYS.live("crash"), {"kind": "piece", "turn": "t-dead", "text": "half an "})
    rdb.set(KEYS.answering("crash"), live.Presence("h", 1, time.time(), "t-dead", since).to_json(), ex=60)
    events = iter(Follower(store, "crash", block_ms=100))
    shown = drain(events, lambda e: e.kind == "token")
    assert [e.kind for e in shown] == ["start", "token"]
    assert quiet(events) == []  # while its presence is there, the answer stays open
    rdb.delete(KEYS.answering("crash"))  # what PRESENCE_TTL does after a crash
    end = drain(events, lambda e: e.kind == "end")[-1]
    assert end.turn == "t-dead" and end.data["status"] == "stopped"


# -- notices, in process ---------------------------------------------------------------------------------


@pytest.mark.any_redis
def test_notices_tell_the_turns_another_client_added_and_who_is_answering(redis_url, rdb):
    store = store_for(redis_url)
    store.append_turn(exchange("n", "before", "known"))
    notices = Notices(store, "n")
    notices.start()
    assert notices.check() == ([], None)
    mine = exchange("n", "my question", "my answer")
    store.append_turn(mine)
    notices.own(mine.turn)
    store.append_turn(exchange("n", "their question", "their answer"))
    new, presence = notices.check()
    assert [m["data"]["content"] for m in new] == ["their question", "their answer"]
    assert presence is None
    assert notices.check() == ([], None)  # told once
    other = live.Presence("laptop", 1, time.time(), "t9", "0-1")
    rdb.set(KEYS.answering("n"), other.to_json())
    said: list[str] = []
    notices.tell(said.append)
    assert said == [live.answering_line("n", other) + " (your turn goes on; both are kept)"]
    assert said[0].startswith("session n is answering on laptop since ")


# -- two machines: two chatcli processes, two CHATCLI_HOMEs, one Redis -------------------------------------


def chatcli(args: list[str], home: Path, **popen: Any) -> subprocess.Popen[str]:
    home.mkdir(exist_ok=True)
    environ = {**os.environ, "CHATCLI_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "chatcli", *args], env=environ, text=True, **popen)


def slow_answer(model: Any, delay: float = 0.15) -> None:
    model.script(Reply(chunks=ANSWER, delay=delay))


@pytest.mark.any_redis
def test_follow_shows_an_answer_streaming_on_another_machine_from_its_start(env, model, rdb, tmp_path):
    slow_answer(model)
    asker = chatcli(["ask", "-s", "duo", "tell me slowly"], tmp_path / "laptop", stdout=subprocess.PIPE)
    wait_until(lambda: rdb.exists(KEYS.live("duo")) and rdb.xlen(KEYS.live("duo")) >= 3, what="the answer to start")
    follower = chatcli(["follow", "duo", "--json"], tmp_path / "phone", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = asker.communicate(timeout=60)
    assert asker.returncode == 0 and out.strip() == "".join(ANSWER).strip()
    lines = []
    assert follower.stdout is not None
    while True:
        lines.append(json.loads(follower.stdout.readline()))
        if lines[-1]["event"] == "end":
            break
    follower.send_signal(signal.SIGINT)
    _rest, err = follower.communicate(timeout=20)
    assert follower.returncode == 130, err  # Ctrl-C ends it, as DESIGN.md's "interrupted"
    assert lines[0]["event"] == "start" and lines[0]["question"] == "tell me slowly" and lines[0]["session"] == "duo"
    assert "".join(line["text"] for line in lines if line["event"] == "token") == "".join(ANSWER)
    assert lines[-1]["status"] == "complete"
    assert rdb.llen(KEYS.session("duo")) == 2  # killing the follower changed nothing stored


def test_follow_prints_the_last_exchange_then_new_turns_as_text(env, model, rdb, tmp_path, cli):
    assert cli("ask", "-s", "txt", "first question").exit_code == 0
    follower = chatcli(["follow", "txt"], tmp_path / "phone", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert follower.stdout is not None
    assert follower.stdout.readline() == "user\n"
    assert follower.stdout.readline() == "first question\n"
    assert follower.stdout.readline() == "assistant\n"
    assert follower.stdout.readline() == "echo: first question\n"
    slow_answer(model, 0.02)
    asker = chatcli(["ask", "-s", "txt", "second"], tmp_path / "laptop", stdout=subprocess.DEVNULL)
    assert asker.wait(60) == 0
    shown = []
    while not shown or shown[-1] != "".join(ANSWER) + "\n":
        shown.append(follower.stdout.readline())
    assert shown[0].startswith("user (on ") and shown[1:3] == ["second\n", "assistant:\n"]
    follower.send_signal(signal.SIGINT)
    follower.communicate(timeout=20)
    assert follower.returncode == 130


def test_follow_of_a_session_that_does_not_exist_is_not_found(env, cli, rdb):
    result = cli("follow", "nobody")
    assert result.exit_code == 5 and "no session named 'nobody'" in result.stderr
    result = cli("follow", "bad{id}")
    assert result.exit_code == 2


@pytest.mark.any_redis
def test_a_second_client_is_told_and_both_turns_are_stored_whole_and_a_killed_clients_presence_expires(
    env, model, rdb, tmp_path
):
    gate = threading.Event()  # the first answer waits until the second client has asked and been answered

    def responder(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == "first question":
            gate.wait(60)
            return "".join(ANSWER)
        return "second answer"

    model.responder = responder
    first = chatcli(["ask", "-s", "busy", "first question"], tmp_path / "laptop", stdout=subprocess.DEVNULL)
    wait_until(lambda: rdb.get(KEYS.answering("busy")), what="the first client to answer")
    second = chatcli(
        ["ask", "-s", "busy", "second question"],
        tmp_path / "server",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and out.strip() == "second answer"
    assert "session busy is answering on " in err and " since " in err
    gate.set()
    assert first.wait(60) == 0
    messages = [json.loads(raw)["data"] for raw in reversed(rdb.lrange(KEYS.session("busy"), 0, -1))]
    by_turn: dict[str, list[str]] = {}
    for i, message in enumerate(messages):
        by_turn.setdefault(message["id"][:-2], []).append(message["content"])
        if message["type"] == "human":  # each question is followed by its own answer
            assert messages[i + 1]["id"] == message["id"][:-2] + "-1"
    assert sorted(by_turn.values()) == [["first question", "".join(ANSWER)], ["second question", "second answer"]]
    assert rdb.get(KEYS.answering("busy")) is None

    # a client killed mid-answer: its presence stays no longer than its TTL
    model.responder = lambda _messages: gate.clear() or gate.wait(60) or ""  # answers only after the kill
    killed = chatcli(["ask", "-s", "busy", "never finished"], tmp_path / "laptop", stdout=subprocess.DEVNULL)
    wait_until(lambda: rdb.get(KEYS.answering("busy")), what="the answer to start")
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    assert 0 < rdb.ttl(KEYS.answering("busy")) <= live.PRESENCE_TTL
    wait_until(lambda: rdb.get(KEYS.answering("busy")) is None, timeout=live.PRESENCE_TTL + 10, what="expiry")
    gate.set()


def test_the_repl_shows_what_another_client_added_before_its_next_answer(env, model, rdb, terminal, tmp_path):
    t = terminal("chat", "-s", "shared")
    t.wait_prompt("shared", 1)
    t.enter("mine")
    t.wait_prompt("shared", 2)
    other = chatcli(["ask", "-s", "shared", "theirs"], tmp_path / "laptop", stdout=subprocess.DEVNULL)
    assert other.wait(60) == 0  # another machine, same session
    t.enter("mine again")
    screen = t.wait_prompt("shared", 3)
    told = screen.index("2 new messages from another client:")
    assert screen.index("user: theirs", told) < screen.index("assistant: echo: theirs", told)
    assert screen.index("assistant: echo: theirs") < screen.index("echo: mine again")
    assert screen.count("new message") == 1  # its own turns are not news


def test_slash_follow_in_the_repl_streams_another_clients_answer_until_ctrl_c(env, model, rdb, terminal, tmp_path):
    t = terminal("chat", "-s", "watch")
    t.wait_prompt("watch", 1)
    t.enter("/follow")
    t.wait_for("following this session")
    slow_answer(model, 0.02)
    asker = chatcli(["ask", "-s", "watch", "from the laptop"], tmp_path / "laptop", stdout=subprocess.DEVNULL)
    assert asker.wait(60) == 0
    t.wait_for(ANSWER[-1].strip())
    t.ctrl("c")
    screen = t.wait_prompt("watch", 2)
    assert "from the laptop" in screen and "(stopped following)" in screen


def test_follow_imports_neither_langchain_nor_openai(env, cli, model, tmp_path):
    from tests.test_startup import HEAVY

    assert cli("ask", "-s", "light", "hi").exit_code == 0
    environ = {**os.environ, "CHATCLI_HOME": str(tmp_path / "phone")}
    follower = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "chatcli", "follow", "light"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None and follower.stdout.readline() == "user\n"  # it is following
    follower.send_signal(signal.SIGINT)
    _out, err = follower.communicate(timeout=20)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in err.splitlines() if "import time:" in line}
    assert "chatcli" in modules and modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))
