"""A local, scriptable, OpenAI-compatible HTTP server for tests.

Standard library only.  Typical use::

    with ModelServer() as server:
        server.script(Reply(text="Hello there, how are you?", delay=0.01))
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="test-model")
        ...
        assert server.last_messages()[-1]["content"] == "hi"

Endpoints (also reachable without the ``/v1`` prefix):

* ``GET  /v1/models``            -> list of ``server.models`` (a 404 with ``serve_models = False``)
* ``POST /v1/chat/completions``  -> scripted reply (``server.script``) or
  ``server.responder(messages)``; streaming (SSE, chunked) and non-streaming.
* anything else                  -> 404 OpenAI-style JSON error

Run ``python tests/model_server.py [--port N]`` to serve in the foreground.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["ModelServer", "Reply", "default_responder", "split_chunks"]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "test-model")

# Errors meaning "the peer went away"; swallowed silently everywhere.
_DISCONNECT_ERRORS: tuple[type[OSError], ...] = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout_error", "timeout"),
    409: ("conflict_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
}

_WORD_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


def split_chunks(text: str, words_per_chunk: int = 3) -> list[str]:
    """Split *text* into pieces of ~``words_per_chunk`` words.

    All whitespace is kept, so ``"".join(split_chunks(t)) == t`` always.
    An empty text gives no chunks.
    """
    if not text:
        return []
    words = _WORD_BOUNDARY.split(text)  # each piece: word + trailing whitespace
    n = max(1, words_per_chunk)
    return ["".join(words[i : i + n]) for i in range(0, len(words), n)]


@dataclass
class Reply:
    """One scripted answer to a chat completion request.

    text:          the full assistant text.
    chunks:        explicit streaming pieces; if given, the reply text is
                   ``"".join(chunks)`` (``text`` is then ignored).  Default:
                   ``split_chunks(text)`` (~3 words per chunk).
    delay:         seconds slept between chunks, reasoning then content (streaming).
    first_delay:   seconds slept before answering at all (before the status
                   line / headers are sent), in both modes.
    status:        if not 200, that status is sent with an OpenAI-style error
                   JSON body (``text`` is used as the message if non-empty).
    headers:       extra response headers (e.g. ``{"Retry-After": "1"}``).
    finish_reason: finish_reason of the last chunk / the choice (None -> null).
    drop_after:    streaming only: after this many chunks (reasoning, then content) close the
                   connection without the final chunk, [DONE] or the
                   terminating HTTP chunk.
    hang:          never answer; the handler waits until the server stops,
                   then closes the connection.
    usage:         (prompt_tokens, completion_tokens); default is computed.
    reasoning:     streamed before the text as ``reasoning_key`` deltas (with
                   ``"content": null``), the way vLLM, DeepSeek, Ollama or
                   LiteLLM send a reasoning model's thinking; ``reasoning_chunks``
                   gives the pieces explicitly (default: ``split_chunks``).
                   Non-streaming: a field of the message.
    reasoning_key: ``"reasoning_content"`` (DeepSeek, vLLM < 0.10) or
                   ``"reasoning"`` (Ollama, OpenRouter, newer vLLM).
    """

    text: str = ""
    chunks: list[str] | None = None
    delay: float = 0.0
    first_delay: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = "stop"
    drop_after: int | None = None
    hang: bool = False
    usage: tuple[int, int] | None = None
    reasoning: str = ""
    reasoning_chunks: list[str] | None = None
    reasoning_key: str = "reasoning_content"

    def reasoning_pieces(self) -> list[str]:
        return list(self.reasoning_chunks) if self.reasoning_chunks is not None else split_chunks(self.reasoning)

    @property
    def full_text(self) -> str:
        return "".join(self.chunks) if self.chunks is not None else self.text

    def pieces(self) -> list[str]:
        return list(self.chunks) if self.chunks is not None else split_chunks(self.text)


def _content_text(content: Any) -> str:
    """Text of a message ``content`` (plain string or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return str(content)


def default_responder(messages: list[dict[str, Any]]) -> str:
    """``"echo: " + <content of the last user message>``."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return "echo: " + _content_text(message.get("content"))
    return "echo: "


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return total // 4 + 1


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must never wait for hung handlers
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.owner.stopping:  # disconnects are OSErrors
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ModelServer/1.0"
    sys_version = ""

    @property
    def owner(self) -> ModelServer:
        return cast(_HTTPServer, self.server).owner

    # -- connection lifecycle -------------------------------------------------

    def setup(self) -> None:
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # includes the disconnect errors
            pass
        finally:
            self.owner._untrack(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _DISCONNECT_ERRORS:
            self.close_connection = True
        except OSError:
            if not self.owner.stopping:
                raise
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- low level writing ----------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error_json(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        err_type: str | None = None,
        code: str | None = None,
    ) -> None:
        default_type, default_code = _ERROR_KINDS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        payload = {
            "error": {
                "message": message,
                "type": err_type or default_type,
                "param": None,
                "code": code if code is not None else default_code,
            }
        }
        self._send_json(status, payload, headers)

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (hex length CRLF data CRLF), written at once."""
        if not data:
            return
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_event(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self._write_chunk(("data: " + data + "\n\n").encode("utf-8"))

    def _drop_connection(self) -> None:
        """Close abruptly: no terminating chunk; the client sees EOF mid-body."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- request parsing ------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    break
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)  # CRLF after the data
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _record(self) -> Any:
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        self.owner._record(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "raw": raw,
            }
        )
        return body

    def _route(self) -> str:
        path = urlsplit(self.path).path.rstrip("/")
        if path.startswith("/v1/") or path == "/v1":
            path = path[3:]
        return path

    # -- methods --------------------------------------------------------------

    def do_GET(self) -> None:
        self._record()
        if self._route() == "/models" and self.owner.serve_models:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.owner.models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._not_found()

    def do_POST(self) -> None:
        body = self._record()
        if self._route() == "/chat/completions":
            self._chat(body)
        else:
            self._not_found()

    def do_DELETE(self) -> None:
        self._record()
        self._not_found()

    do_PUT = do_PATCH = do_DELETE

    def _not_found(self) -> None:
        self._send_error_json(
            404,
            f"Unknown request URL: {self.command} {urlsplit(self.path).path}",
            err_type="invalid_request_error",
            code="unknown_url",
        )

    # -- chat completions -----------------------------------------------------

    def _chat(self, body: Any) -> None:
        owner = self.owner
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_error_json(400, "Request body must be JSON with a 'messages' list.")
            return
        messages: list[dict[str, Any]] = body["messages"]
        reply = owner._next_reply()
        if reply is None:
            try:
                reply = Reply(text=owner.responder(messages))
            except Exception as exc:  # a broken test responder: say so instead of dropping
                traceback.print_exc()
                self._send_error_json(500, f"responder raised {exc!r}")
                return

        if reply.hang:
            owner._stop_event.wait()
            self._drop_connection()
            return

        if reply.first_delay > 0 and owner._stop_event.wait(reply.first_delay):
            self._drop_connection()
            return

        if reply.status != 200:
            self._send_error_json(
                reply.status,
                reply.text or f"Scripted error (status {reply.status})",
                reply.headers,
            )
            return

        model = str(body.get("model") or "test-model")
        text = reply.full_text
        if reply.usage is not None:
            prompt_tokens, completion_tokens = reply.usage
        else:
            prompt_tokens, completion_tokens = _prompt_tokens(messages), len(text) // 4 + 1
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = owner._new_id()
        created = int(time.time())

        if not body.get("stream"):
            self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                                **({reply.reasoning_key: reply.reasoning} if reply.reasoning else {}),
                            },
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                    "usage": usage,
                },
                reply.headers,
            )
            return

        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()

        self._send_event(
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            )
        )
        thinking = [{reply.reasoning_key: piece, "content": None} for piece in reply.reasoning_pieces()]
        deltas = thinking + [{"content": piece} for piece in reply.pieces()]
        for i, delta in enumerate(deltas):
            if reply.drop_after is not None and i >= reply.drop_after:
                self._drop_connection()
                return
            if i > 0 and reply.delay > 0 and owner._stop_event.wait(reply.delay):
                self._drop_connection()
                return
            self._send_event(chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
        if reply.drop_after is not None:
            self._drop_connection()
            return
        self._send_event(chunk([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]))
        if include_usage:
            self._send_event(chunk([], usage=usage))
        self._send_event("[DONE]")
        self._end_chunks()


class ModelServer:
    """Scriptable local OpenAI-compatible server (see module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] | None = None,
        responder: Callable[[list[dict[str, Any]]], str] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.models: list[str] = list(models) if models is not None else list(DEFAULT_MODELS)
        self.serve_models = True  # False: GET /models is a 404, as on servers that have no model list
        self.responder: Callable[[list[dict[str, Any]]], str] = responder or default_responder
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._scripts: collections.deque[Reply] = collections.deque()
        self._connections: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> ModelServer:
        if self._httpd is not None:
            return self
        self._stop_event = threading.Event()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ModelServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stop_event.set()  # wakes hanging / sleeping handlers
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock idle keep-alive readers
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ModelServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting ------------------------------------------------------------

    def script(self, *replies: Reply | str) -> None:
        """Queue replies (a str means ``Reply(text=s)``); one per chat request."""
        with self._lock:
            for reply in replies:
                self._scripts.append(Reply(text=reply) if isinstance(reply, str) else reply)

    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._scripts)

    def reset(self) -> None:
        """Forget recorded requests and queued scripts."""
        with self._lock:
            self.requests.clear()
            self._scripts.clear()
            self.serve_models = True

    # -- inspection -----------------------------------------------------------

    def chat_requests(self) -> list[Any]:
        """Bodies of all ``POST .../chat/completions`` requests, oldest first."""
        with self._lock:
            recorded = list(self.requests)
        return [
            r["body"]
            for r in recorded
            if r["method"] == "POST"
            and urlsplit(r["path"]).path.rstrip("/") in ("/v1/chat/completions", "/chat/completions")
        ]

    def last_raw_body(self) -> bytes:
        """The bytes of the most recent request body, as they arrived."""
        with self._lock:
            if not self.requests:
                raise AssertionError("ModelServer received no requests")
            return bytes(self.requests[-1]["raw"])

    def last_messages(self) -> list[dict[str, Any]]:
        """``messages`` of the most recent chat request."""
        chats = self.chat_requests()
        if not chats:
            raise AssertionError("ModelServer received no chat completion requests")
        body = chats[-1]
        return list(body.get("messages", [])) if isinstance(body, dict) else []

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least *count* requests were recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return True
            time.sleep(0.005)
        with self._lock:
            return len(self.requests) >= count

    # -- internals used by the handler ----------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._scripts.popleft() if self._scripts else None

    def _new_id(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"chatcmpl-test{n:06d}"

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible test server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the port (default: a free one, printed at start)")
    args = parser.parse_args(argv)
    # Ctrl-C (and SIGTERM) stop the server, even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = ModelServer(host=args.host, port=args.port).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
