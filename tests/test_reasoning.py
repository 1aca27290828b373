"""A reasoning model's thinking: read from the stream, shown apart, stored beside the answer, never sent back."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from chatcli.reasoning import ReasoningTap, SseEvents
from tests.model_server import Reply

THOUGHT = "The user asks for two lines.\nI will write them.\n"
ANSWER = "First line\nSecond line"


def stored(rdb, session: str) -> list[dict]:
    return [json.loads(raw) for raw in reversed(rdb.lrange(f"message_store:{session}", 0, -1))]


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_chat_openai_with_the_tap_gives_reasoning_before_the_content_that_followed_it(model, key):
    """Pins the one hook chatcli uses: ChatOpenAI(http_client=...) and an httpx response hook see the deltas
    ChatOpenAI drops, in step with the chunks it yields."""
    from langchain_openai import ChatOpenAI

    model.script(Reply(reasoning_chunks=["Think", "ing.\n", "Done."], chunks=["A", "B"], reasoning_key=key))
    tap = ReasoningTap()
    llm = ChatOpenAI(model="m", api_key="x", base_url=model.base_url, http_client=tap.client())
    seen = []
    for chunk in llm.stream("hi"):
        seen += [("thought", t) for t in tap.take(bool(chunk.content))]
        if chunk.content:
            seen.append(("text", chunk.content))
        assert "reasoning_content" not in chunk.additional_kwargs  # still dropped by ChatOpenAI itself
    assert seen + [("thought", t) for t in tap.rest()] == [
        ("thought", "Think"),
        ("thought", "ing.\n"),
        ("thought", "Done."),
        ("text", "A"),
        ("text", "B"),
    ]


def test_server_sent_events_are_read_however_the_bytes_are_cut_and_gzipped():
    body = (
        b'data: {"choices": [{"delta": {"reasoning_content": "r\\u00e9"}}]}\r\n\r\n'
        b': a comment\n\ndata: {"choices": [{"delta": {"content": "c"}}]}\n\ndata: [DONE]\n\n'
    )
    for raw, coding in ((body, "identity"), (gzip.compress(body), "gzip")):
        for size in (1, 3, len(raw)):
            events = SseEvents(coding)
            found = [e for i in range(0, len(raw), size) for e in events.feed(raw[i : i + size])]
            assert [json.loads(e)["choices"][0]["delta"] for e in found] == [
                {"reasoning_content": "ré"},
                {"content": "c"},
            ]


def test_ask_stores_the_reasoning_beside_the_answer_and_never_sends_it_back(cli, model, rdb):
    model.script(Reply(text=ANSWER, reasoning=THOUGHT))
    result = cli("ask", "-s", "r", "two lines please")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ANSWER + "\n"  # piped: the answer only
    answer = stored(rdb, "r")[1]
    assert answer["data"]["content"] == ANSWER
    assert answer["data"]["additional_kwargs"] == {"reasoning_content": THOUGHT}

    cli("ask", "-s", "r", "again")
    sent = model.last_messages()
    assert sent[2] == {"role": "assistant", "content": ANSWER}
    assert "The user asks" not in json.dumps(model.chat_requests()[-1])


def test_an_answer_with_a_think_block_is_stored_as_written_and_sent_back_without_it(cli, model, rdb):
    text = "<think>\nprivate musing\n</think>\n\nThe answer."
    model.script(Reply(text=text))
    assert cli("ask", "-s", "t", "q").exit_code == 0
    assert stored(rdb, "t")[1]["data"]["content"] == text  # byte for byte
    cli("ask", "-s", "t", "next")
    assert model.last_messages()[2] == {"role": "assistant", "content": "The answer."}


def test_a_stream_lost_while_the_model_still_thinks_keeps_the_reasoning_that_came(cli, model, rdb):
    model.script(Reply(reasoning="thinking hard about it", text="never sent", drop_after=1))
    result = cli("ask", "-s", "d", "q")
    assert result.exit_code == 4  # the model API failed mid-answer
    answer = stored(rdb, "d")[1]
    assert answer["data"]["content"] == ""
    assert answer["data"]["additional_kwargs"] == {"reasoning_content": "thinking hard about "}
    assert "error" in answer["data"]["response_metadata"]["chatcli"]


def test_ask_in_a_terminal_shows_the_reasoning_apart_then_the_answer_line_by_line(terminal, model, rdb):
    model.script(Reply(reasoning=THOUGHT, text=ANSWER, delay=0.01))
    t = terminal("ask", "-s", "pty", "two lines please")
    assert t.exited() == 0
    lines = t.lines()
    start = lines.index("│ The user asks for two lines.")
    assert lines[start : start + 5] == [
        "│ The user asks for two lines.",
        "│ I will write them.",
        "",
        *ANSWER.split("\n"),
    ]
    assert stored(rdb, "pty")[1]["data"]["additional_kwargs"] == {"reasoning_content": THOUGHT}


def test_no_reasoning_hides_it_on_screen_and_still_stores_it(terminal, model, rdb, monkeypatch):
    model.script(Reply(reasoning=THOUGHT, text=ANSWER), Reply(reasoning=THOUGHT, text=ANSWER))
    t = terminal("ask", "-s", "quiet", "--no-reasoning", "two lines please")
    assert t.exited() == 0
    assert "The user asks" not in t.text() and "First line\nSecond line" in t.text()
    assert stored(rdb, "quiet")[1]["data"]["additional_kwargs"] == {"reasoning_content": THOUGHT}
    t2 = terminal("ask", "-s", "quiet2", "two lines please", CHATCLI_SHOW_REASONING="false")
    assert t2.exited() == 0
    assert "The user asks" not in t2.text() and "First line\nSecond line" in t2.text()


def test_a_bad_show_reasoning_value_is_a_usage_error(cli, model, monkeypatch, rdb):
    monkeypatch.setenv("CHATCLI_SHOW_REASONING", "maybe")
    result = cli("ask", "-s", "x", "hi")
    assert result.exit_code == 2
    assert "CHATCLI_SHOW_REASONING must be true or false" in result.stderr
    assert model.chat_requests() == [] and rdb.dbsize() == 0


def test_ctrl_c_while_the_model_thinks_keeps_exactly_the_reasoning_shown(terminal, model, rdb):
    model.script(Reply(reasoning_chunks=[f"step {i:03d}\n" for i in range(300)], text="never", delay=0.02))
    t = terminal("chat", "-s", "think")
    t.wait_prompt("think", 1)
    t.enter("ponder")
    t.wait_for("│ step 010")
    t.ctrl("c")
    screen = t.wait_prompt("think", 2)
    assert "(interrupted: the partial answer was saved)" in screen
    answer = stored(rdb, "think")[1]
    assert answer["data"]["content"] == ""
    kept = answer["data"]["additional_kwargs"]["reasoning_content"]
    assert re.findall(r"step \d{3}", screen) == re.findall(r"step \d{3}", kept)
    assert 10 <= len(re.findall(r"step \d{3}", kept)) < 300

    t.enter("and now?")  # the next turn sends the answer without its reasoning
    t.wait_prompt("think", 3)
    assert model.last_messages()[2] == {"role": "assistant", "content": ""}
    assert "step 000" not in json.dumps(model.chat_requests()[-1])


def test_openai_proxy_still_carries_the_requests(cli, model, rdb, monkeypatch):
    """ChatOpenAI applies OPENAI_PROXY to its own client and refuses it beside a given one: the tap's client
    takes it over. The model server answers absolute-form (proxy) requests; the base URL is a closed port."""
    monkeypatch.setenv("OPENAI_PROXY", f"http://127.0.0.1:{model.port}")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model.script(Reply(reasoning="via the proxy", text="ok"))
    result = cli("ask", "-s", "proxied", "hi")
    assert result.exit_code == 0, result.stderr
    assert stored(rdb, "proxied")[1]["data"]["additional_kwargs"] == {"reasoning_content": "via the proxy"}
