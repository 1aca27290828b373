"""Self-checks for tests/model_server.py against the real openai / langchain clients."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_server import ModelServer, Reply, split_chunks

TEXT = "Hello there!  This is a  scripted\nreply, with   odd spacing.\n\nEnd. "
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer() as srv:
        yield srv


def oa_client(server: ModelServer, timeout: float | None = None) -> openai.OpenAI:
    if timeout is None:
        return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=timeout)


def lc_model(server: ModelServer) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="x",  # type: ignore[arg-type]
        model="test-model",
        stream_usage=True,
        max_retries=0,
    )


def test_split_chunks_roundtrip() -> None:
    for text in ["", " ", "a", TEXT, "  lead", "trail  ", "one two three four five six seven"]:
        assert "".join(split_chunks(text)) == text
    assert split_chunks("one two three four five") == ["one two three ", "four five"]


def test_models_and_echo(server: ModelServer) -> None:
    client = oa_client(server)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "test-model"]
    resp = client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert resp.choices[0].message.content == "echo: Say hello"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "test-model"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == len("You are terse.Say hello") // 4 + 1
    assert resp.usage.completion_tokens == len("echo: Say hello") // 4 + 1


def test_openai_stream_exact_text_and_usage(server: ModelServer) -> None:
    server.script(Reply(text=TEXT, delay=0.001, usage=(11, 22)))
    client = oa_client(server)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model == "gpt-4o-mini"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 22)
    assert chunks[-1].usage.total_tokens == 33
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_openai_stream_without_include_usage_and_explicit_chunks(server: ModelServer) -> None:
    server.script(Reply(chunks=["a", "b c", "", " d"], finish_reason="length"))
    chunks = list(oa_client(server).chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["", "a", "b c", "", " d", None]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_langchain_stream_exact_text_and_usage(server: ModelServer) -> None:
    server.script(Reply(text=TEXT, usage=(5, 7)))
    chunks = list(lc_model(server).stream([("system", "sys"), ("user", "hi there")]))
    assert "".join(str(c.content) for c in chunks) == TEXT
    usage_chunks = [c for c in chunks if c.usage_metadata]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].usage_metadata == {
        "input_tokens": 5,
        "output_tokens": 7,
        "total_tokens": 12,
        "input_token_details": {},
        "output_token_details": {},
    }
    assert any(c.response_metadata.get("finish_reason") == "stop" for c in chunks)
    # the exact messages were recorded
    assert server.last_messages() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi there"},
    ]
    body = server.chat_requests()[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "test-model"


def test_langchain_invoke_default_responder(server: ModelServer) -> None:
    server.responder = lambda msgs: f"{len(msgs)} messages"
    result = lc_model(server).invoke([("system", "s"), ("user", "u")])
    assert result.content == "2 messages"
    assert result.usage_metadata is not None
    assert result.usage_metadata["input_tokens"] == 1


def test_requests_recorded(server: ModelServer) -> None:
    client = oa_client(server)
    client.chat.completions.create(model="test-model", messages=MESSAGES)
    client.models.list()
    assert [(r["method"], r["path"]) for r in server.requests] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    chat = server.requests[0]
    assert chat["headers"]["authorization"] == "Bearer x"
    assert chat["headers"]["content-type"] == "application/json"
    assert chat["body"]["messages"] == MESSAGES
    assert server.requests[1]["body"] is None
    assert server.chat_requests() == [chat["body"]]
    assert server.last_messages() == MESSAGES
    server.script("queued")
    server.reset()
    assert server.requests == [] and server.pending_scripts() == 0
    with pytest.raises(AssertionError):
        server.last_messages()


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_status(server: ModelServer, status: int, exc: type[Exception]) -> None:
    server.script(Reply(status=status, text="nope", headers={"Retry-After": "7"}))
    with pytest.raises(exc) as info:
        oa_client(server).chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    err = info.value
    assert isinstance(err, openai.APIStatusError)
    assert err.status_code == status
    assert err.response.headers["retry-after"] == "7"
    assert isinstance(err.body, dict) and err.body["message"] == "nope"


def test_langchain_error_status(server: ModelServer) -> None:
    server.script(Reply(status=429))
    with pytest.raises(openai.RateLimitError):
        lc_model(server).invoke("hi")


def test_unknown_path_404(server: ModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/v1/nope")
    resp = conn.getresponse()
    assert resp.status == 404
    assert "error" in json.loads(resp.read())


def test_drop_after_openai_raises_connection_error(server: ModelServer) -> None:
    # Observed behaviour: openai wraps httpx.RemoteProtocolError ("incomplete
    # chunked read") in APIConnectionError; no finish_reason chunk is seen.
    server.script(Reply(text="one two three four five six seven", drop_after=2))
    stream = oa_client(server).chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    pieces: list[str] = []
    finish: list[str | None] = []
    with pytest.raises(openai.APIConnectionError) as info:
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
            finish.append(chunk.choices[0].finish_reason)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert type(info.value.__cause__).__name__ == "RemoteProtocolError"
    assert "".join(pieces) == "one two three four five six "
    assert finish == [None, None, None]


def test_drop_after_langchain_raises_connection_error(server: ModelServer) -> None:
    server.script(Reply(text="one two three four five six seven", drop_after=1))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in lc_model(server).stream("hi"):
            received.append(str(chunk.content))
            assert "finish_reason" not in chunk.response_metadata
    assert "".join(received) == "one two three "
    # the server keeps working afterwards
    assert lc_model(server).invoke("again").content == "echo: again"


def test_hang_timeout_and_prompt_stop() -> None:
    server = ModelServer().start()
    try:
        server.script(Reply(hang=True))
        client = oa_client(server, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="test-model", messages=MESSAGES)
        assert time.monotonic() - t0 < 3
        # a second hung request still in flight while we stop
        server.script(Reply(hang=True))
        errors: list[BaseException] = []

        def call() -> None:
            try:
                oa_client(server, timeout=30).chat.completions.create(model="test-model", messages=MESSAGES)
            except BaseException as e:
                errors.append(e)

        th = threading.Thread(target=call)
        th.start()
        assert server.wait_for_requests(2)
    finally:
        t1 = time.monotonic()
        server.stop()
        assert time.monotonic() - t1 < 1.0
    th.join(5)
    assert not th.is_alive()
    assert errors and isinstance(errors[0], openai.APIConnectionError)


def test_first_delay_and_delay(server: ModelServer) -> None:
    server.script(Reply(text="a b c d e f g", chunks=None, delay=0.05, first_delay=0.1))
    t0 = time.monotonic()
    stream = oa_client(server).chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    times = [time.monotonic() - t0 for _ in stream]
    assert times[0] >= 0.1
    assert times[-1] - times[0] >= 0.09  # 3 content chunks -> 2 gaps


def test_raw_http_chunked_and_keepalive(server: ModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    events = [e for e in resp.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    first_sock = conn.sock
    conn.request("GET", "/v1/models")
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["object"] == "list"
    assert conn.sock is first_sock  # same connection reused (keep-alive)
    conn.close()


def test_client_disconnect_is_silent(capfd: pytest.CaptureFixture[str]) -> None:
    with ModelServer() as server:
        server.script(Reply(text=" ".join(["word"] * 300), delay=0.005))
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
        time.sleep(0.3)
    _out, err = capfd.readouterr()
    assert err == ""
