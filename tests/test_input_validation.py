"""Bad settings and bad input: one clear line and the right exit code, never a traceback, nothing stored.

Every setting is validated when it is loaded (chatcli/settings.py), from whichever source it came, so a
command fails before it writes anything: Redis MULTI/EXEC does not roll back, so an EXPIRE that Redis refuses
after the LPUSH ran used to leave a turn stored with no expiry.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatcli.errors import UsageError
from chatcli.settings import MAX_HISTORY_TOKENS, MAX_TTL, load_settings
from tests.test_bad_input import snapshot
from tests.test_doctor_config import lines


def one_line_error(result: Any, code: int, *words: str) -> str:
    """The result of a CliRunner call or a subprocess: exit `code`, stderr one "Error: ..." line naming
    `words`, no traceback."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr
    assert exit_code == code, stderr
    assert "Traceback" not in stderr and stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr, stderr
    return str(stderr)


def nothing_happened(rdb: Any, before: dict, model: Any, home: Path) -> None:
    assert snapshot(rdb) == before
    assert model.chat_requests() == []
    assert not (home / "spool.jsonl").exists()


# -- 10: an empty key prefix -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("source", ["config.toml", "env", ".env"])
def test_an_empty_key_prefix_is_refused_from_every_source_and_other_lists_survive(
    cli, model, rdb, home, monkeypatch, source, value
):
    rdb.rpush("jobs:queue", "job-1", "job-2")  # another application's lists, in the same database
    rdb.rpush("celery", "task")
    cli("ask", "-s", "mine", "hi")
    before = snapshot(rdb)
    if source == "config.toml":
        (home / "config.toml").write_text(f'key_prefix = "{value}"\n')
    elif source == "env":
        monkeypatch.setenv("CHATCLI_KEY_PREFIX", value)
    else:
        Path(".env").write_text(f'CHATCLI_KEY_PREFIX="{value}"\n')
    name = "key_prefix" if source == "config.toml" else "CHATCLI_KEY_PREFIX"

    for command in (["sessions", "adopt"], ["sessions", "clear", "--yes"], ["sessions", "list", "--all"]):
        one_line_error(cli(*command), 2, name, "empty")
    assert snapshot(rdb) == before


@pytest.mark.parametrize("value", ["", " \t"])
def test_an_empty_key_prefix_flag_is_refused(tmp_path, value):
    with pytest.raises(UsageError, match="key prefix is required"):
        load_settings({"key_prefix": value}, environ={"CHATCLI_HOME": str(tmp_path)}, cwd=tmp_path)


# -- 11: numbers out of range ------------------------------------------------------------------------------

HUGE = "100000000000000000000"  # 10**20: Redis refuses EXPIRE with it


@pytest.mark.parametrize(
    ("where", "setting", "value"),
    [
        ("env", "CHATCLI_TTL", HUGE),
        ("env", "CHATCLI_TTL", str(MAX_TTL + 1)),
        ("env", "CHATCLI_TTL", "9" * 5000),  # more digits than int() takes
        ("env", "CHATCLI_TTL", "1e20"),
        ("env", "CHATCLI_TTL", "0"),
        ("config.toml", "ttl", HUGE),
        ("config.toml", "ttl", "1e20"),  # a TOML float
        ("config.toml", "ttl", "3600.0"),
        ("flag", "--ttl", HUGE),
        ("env", "CHATCLI_MAX_HISTORY_TOKENS", "10" + "0" * 24),
        ("env", "CHATCLI_MAX_HISTORY_TOKENS", str(MAX_HISTORY_TOKENS + 1)),
        ("config.toml", "max_history_tokens", "10" + "0" * 24),
        ("env", "CHATCLI_TIMEOUT", "nan"),
        ("env", "CHATCLI_TIMEOUT", "inf"),
        ("config.toml", "timeout", "nan"),
        ("config.toml", "timeout", "inf"),
    ],
)
def test_a_number_out_of_range_is_refused_before_anything_is_written(
    cli, model, rdb, home, monkeypatch, where, setting, value
):
    before = snapshot(rdb)
    flags: list[str] = []
    if where == "env":
        monkeypatch.setenv(setting, value)
    elif where == "config.toml":
        (home / "config.toml").write_text(f"{setting} = {value}\n")
    else:
        flags = [setting, value]
    one_line_error(cli("ask", "-s", "t", "hi", *flags), 2, setting)
    nothing_happened(rdb, before, model, home)


def test_the_largest_ttl_is_accepted_and_applied(cli, model, rdb):
    result = cli("ask", "-s", "t", "hi", "--ttl", str(MAX_TTL))
    assert result.exit_code == 0, result.stderr
    assert MAX_TTL - 60 < rdb.ttl("message_store:t") <= MAX_TTL


def test_a_huge_count_or_cursor_or_a_nan_temperature_is_not_a_storage_or_model_error(cli, model, rdb, home):
    cli("ask", "-s", "t", "hi")
    shown = cli("history", "show", "t", "--last", HUGE)  # more than a list can hold: all of it
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.count("hi") == 2
    one_line_error(cli("sessions", "list", "--cursor", HUGE), 2, "--cursor")
    before = snapshot(rdb)
    requests = len(model.chat_requests())
    one_line_error(cli("ask", "-s", "t", "again", "--temperature", "nan"), 2, "--temperature")
    assert snapshot(rdb) == before and len(model.chat_requests()) == requests


# -- 12: bytes that are not UTF-8 --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["config.toml", ".env"])
def test_a_settings_file_that_is_not_utf8_is_one_line_and_a_doctor_fail(cli, model, rdb, home, where):
    path = home / "config.toml" if where == "config.toml" else Path.cwd() / ".env"
    raw = b'model = "ok"\nkey_prefix = "caf\xe9:"\n' if where == "config.toml" else b"CHATCLI_MODEL=ok\nX=caf\xe9\n"
    path.write_bytes(raw)
    before = snapshot(rdb)

    one_line_error(cli("sessions", "list"), 2, str(path), "line 2", "not UTF-8")
    one_line_error(cli("ask", "-s", "t", "hi"), 2, str(path), "line 2")
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "Traceback" not in doctor.stdout + doctor.stderr
    byte = raw.index(b"\xe9")
    assert lines(doctor.stdout)["settings"] == f"FAIL {path}: line 2: not UTF-8 text (byte {byte})"
    nothing_happened(rdb, before, model, home)


def test_a_question_argument_that_is_not_utf8_is_refused(cli, model, rdb, home):
    before = snapshot(rdb)
    for args in ([b"ask", b"-s", b"t", b"caf\xe9?"], [b"ask", b"-s", b"t", b"--system", b"\xff", b"hi"]):
        result = subprocess.run(
            [sys.executable.encode(), b"-m", b"chatcli", *args], capture_output=True, text=True, timeout=60
        )
        one_line_error(result, 2, "not valid UTF-8")
    nothing_happened(rdb, before, model, home)


# -- 12: Redis URLs -----------------------------------------------------------------------------------------


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # not on the stderr the CLI is tested on
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain HTTP server on loopback: what a Redis URL with the wrong port might reach."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_a_redis_url_at_an_http_port_is_a_storage_error_in_one_line_and_nothing_is_spooled(
    cli, model, home, http_port, scheme
):
    """Exit 3, not 2: the URL itself is valid, only connecting shows what answers there. Not spooled
    either (StorageError, not StorageUnavailable): a wrong address does not come back by itself."""
    url = f"{scheme}://127.0.0.1:{http_port}" + ("/0" if scheme == "redis" else "")
    for command in (["sessions", "list"], ["ask", "-s", "t", "hi"]):
        one_line_error(cli(*command, "--redis-url", url), 3, "did not answer like a Redis server")
    doctor = cli("doctor", "--redis-url", url)
    assert doctor.exit_code == 1 and "Traceback" not in doctor.stdout + doctor.stderr
    assert lines(doctor.stdout)["redis"].startswith(f"FAIL {url} did not answer like a Redis server")
    assert model.chat_requests() == [] and not (home / "spool.jsonl").exists()


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?ssl_cert_reqs=bogus", ["unknown option 'ssl_cert_reqs'", "rediss://"]),
        ("?socket_timeout=-1", ["socket_timeout must be at least"]),
        ("?socket_timeout=nan", ["socket_timeout must be at least"]),
        ("?socket_connect_timeout=0", ["socket_connect_timeout must be at least"]),
        ("?db=-1", ["db must be at least 0"]),
        ("?no_such_option=1", ["unknown option 'no_such_option'"]),
        ("?protocol=9", ["protocol"]),
    ],
)
def test_a_redis_url_with_a_bad_option_is_a_usage_error(cli, model, rdb, home, query, words):
    url = cli.environ["CHATCLI_REDIS_URL"] + query  # the test's own, working Redis
    before = snapshot(rdb)
    for command in (["sessions", "list"], ["ask", "-s", "t", "hi"]):
        one_line_error(cli(*command, "--redis-url", url), 2, "--redis-url", *words)
    doctor = cli("doctor", "--redis-url", url)
    assert doctor.exit_code == 1 and lines(doctor.stdout)["settings"].startswith("FAIL --redis-url")
    nothing_happened(rdb, before, model, home)


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=bogus",
        "rediss+cluster://127.0.0.1:6380?ssl_cert_reqs=bogus",
        "redis+cluster://127.0.0.1:6380/2",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/0\nx",
        "http://127.0.0.1:6379/0",
    ],
)
def test_a_redis_url_that_cannot_work_is_refused_when_settings_load(tmp_path, url):
    with pytest.raises(UsageError, match="CHATCLI_REDIS_URL"):
        load_settings(environ={"CHATCLI_HOME": str(tmp_path), "CHATCLI_REDIS_URL": url}, cwd=tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://u:p@127.0.0.1:6380/0?ssl_ca_certs=/k/ca.pem&ssl_cert_reqs=none&ssl_check_hostname=false",
        "unix:///tmp/r.sock?db=1&password=pw",
        "redis+cluster://127.0.0.1:7000",
        "rediss+cluster://127.0.0.1:7000?ssl_cert_reqs=required",
        "redis://127.0.0.1/0?socket_timeout=2.5&health_check_interval=0&client_name=me",
    ],
)
def test_redis_urls_that_work_are_accepted(tmp_path, url):
    settings = load_settings(environ={"CHATCLI_HOME": str(tmp_path), "CHATCLI_REDIS_URL": url}, cwd=tmp_path)
    assert settings.redis_url == url


# -- 12: model base URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:notaport/v1",
        "http://127.0.0.1:99999/v1",
        "http://127.0.0.1:8000/v1\nX-Injected: 1",
        "http://127.0.0.1:8000/v 1",
        "ftp://127.0.0.1/v1",
        "http:///v1",
    ],
)
def test_a_base_url_that_cannot_work_is_a_usage_error(cli, model, rdb, home, monkeypatch, base_url):
    before = snapshot(rdb)
    one_line_error(cli("ask", "-s", "t", "hi", "--base-url", base_url), 2, "--base-url")
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    one_line_error(cli("ask", "-s", "t", "hi"), 2, "OPENAI_BASE_URL")
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and lines(doctor.stdout)["settings"].startswith("FAIL OPENAI_BASE_URL")
    nothing_happened(rdb, before, model, home)


# -- 12: deeply nested JSON to import ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("lists.json", "[" * 100_000 + "]" * 100_000),
        ("wrapped.json", '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("inside.json", '[{"role": "user", "content": "hi", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]"),
        ("lines.jsonl", '{"role": "user", "content": "hi"}\n' + "[" * 100_000 + "]" * 100_000 + "\n"),
    ],
)
def test_importing_deeply_nested_json_is_a_usage_error(cli, model, rdb, home, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    before = snapshot(rdb)
    one_line_error(cli("history", "import", str(path), "-s", "deep"), 2, name, "nested too deeply")
    nothing_happened(rdb, before, model, home)


def test_the_import_parser_names_the_line_of_a_too_deep_jsonl_line():
    from chatcli.importing import parse

    with pytest.raises(UsageError, match=r"^x.jsonl: line 3: JSON nested too deeply"):
        parse('{"role": "user", "content": "a"}\n\n' + "[" * 50_000 + "]" * 50_000, "x.jsonl", jsonl=True)


def test_settings_files_are_read_as_text_without_a_traceback_for_odd_values(tmp_path):
    """config.toml values of the wrong TOML type are one clear line (not str() of a table, nor the value)."""
    for line, word in (("model = 5", "must be text.*not int$"), ('key_prefix = {a = "b"}', "must be text")):
        (tmp_path / "config.toml").write_text(line + "\n")
        with pytest.raises(UsageError, match=word):
            load_settings(environ={"CHATCLI_HOME": str(tmp_path)}, cwd=tmp_path)
