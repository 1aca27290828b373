"""chatcli.secrets: the secrets of a run are never printed, whichever path prints the error or notice."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatcli import render, secrets
from chatcli.settings import Settings
from tests.model_server import Reply
from tests.terminal import Terminal

API_KEY = "sk-ECHOED-KEY-5151"
BASE_PASSWORD = "base-pw-ECHOED-77"
GATEWAY_KEY = "gw-ECHOED-1234"


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh registry (it is per process, like the secrets of one run)."""
    monkeypatch.setattr(secrets, "_known", set())


def settings(**values: str) -> Settings:
    return Settings(home=Path("/nonexistent"), **values)  # type: ignore[arg-type]


def test_remember_takes_the_key_and_every_url_secret_and_scrub_masks_each_form(known):
    secrets.remember(
        settings(
            api_key=API_KEY,
            base_url=f"http://bob:{BASE_PASSWORD}@127.0.0.1:1/v1?api-key={GATEWAY_KEY}&api-version=2024",
            redis_url="redis://:p%40ss-ECHOED@127.0.0.1:2/0?ssl_password=sp-ECHOED&ssl_keyfile=/k/key.pem",
        )
    )
    text = (
        f"key {API_KEY}; user bob:{BASE_PASSWORD}; gateway {GATEWAY_KEY}; redis p%40ss-ECHOED or p@ss-ECHOED; "
        "tls sp-ECHOED; file /k/key.pem; version 2024"
    )
    scrubbed = secrets.scrub(text)
    assert "ECHOED" not in scrubbed
    assert scrubbed == ("key ***; user bob:***; gateway ***; redis *** or ***; tls ***; file /k/key.pem; version 2024")


def test_a_secret_is_masked_as_json_and_repr_escape_it_and_short_ones_are_left_alone(known):
    secrets.remember(settings(api_key="ab", redis_url="redis://:pw%22ECHO%5CED@h:1/0"))
    # the password is pw"ECHO\ED: a JSON body and a repr() show it escaped
    text = '{"error": "pw\\"ECHO\\\\ED"} and \'pw"ECHO\\\\ED\' and pw"ECHO\\ED'
    assert secrets.scrub(text) == '{"error": "***"} and \'***\' and ***'
    assert secrets.scrub("ab abc") == "ab abc"  # 2 characters: too short to mask without mangling text


STREAM_KEY = "sk-ECHO-2"


def stream_scrubbed(pieces: list[str]) -> str:
    scrubber = secrets.StreamScrubber()
    return "".join(scrubber.feed(piece) for piece in pieces) + scrubber.flush()


def test_a_stream_scrubber_masks_a_secret_cut_anywhere(known):
    secrets.remember(settings(api_key=STREAM_KEY))
    text = f"a {STREAM_KEY} b {STREAM_KEY}{STREAM_KEY} c sk-ECH"  # ends on a secret's start that never ends
    for size in range(1, len(text) + 1):
        out = stream_scrubbed([text[i : i + size] for i in range(0, len(text), size)])
        assert out == "a *** b ****** c sk-ECH", size


@given(
    parts=st.lists(st.sampled_from([STREAM_KEY, "sk-", "sk-ECH", "O-2", "ECHO", "x", " ", "-2"]), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_a_stream_scrubber_gives_what_scrub_gives_however_the_text_is_cut(parts, cuts):
    with mock.patch.object(secrets, "_known", set()):
        secrets.remember(settings(api_key=STREAM_KEY))
        whole = "".join(parts)
        bounds = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
        out = stream_scrubbed([whole[a:b] for a, b in itertools.pairwise(bounds)])
        assert out == secrets.scrub(whole)
        assert STREAM_KEY not in out


def test_errors_notices_and_checks_are_scrubbed_where_they_are_printed(known):
    from chatcli.doctor import Check

    secrets.remember(settings(api_key=API_KEY))
    out = io.StringIO()
    console = render.make_console(out)
    render.print_error(console, f"the server said {API_KEY}")
    render.print_notice(console, f"(notice about {API_KEY})")
    render.print_checks(console, [Check(False, "api key", f"rejected {API_KEY}")])
    assert API_KEY not in out.getvalue()
    assert out.getvalue().count("***") == 3


def test_the_secrets_module_imports_neither_langchain_nor_the_clients():
    code = "import sys, chatcli.secrets; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("langchain_core", "openai", "redis", "rich", "httpx"):
        assert f"'{heavy}'" not in loaded


# -- every path that prints an error ------------------------------------------------------------------------


def echoing_model(model, monkeypatch) -> str:
    """The model server rejects each request with an error body that repeats the key and the URL password."""
    port = urlsplit(model.base_url).port
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://bob:{BASE_PASSWORD}@127.0.0.1:{port}/v1")
    body = f"no such key {API_KEY} for bob:{BASE_PASSWORD}"
    model.script(*[Reply(status=400, text=body)] * 3)
    return body


def test_the_repl_never_shows_a_secret_the_model_server_echoes(env, model, monkeypatch):
    echoing_model(model, monkeypatch)
    term = Terminal(["chat", "-s", "echo"], dict(os.environ))
    try:
        term.wait_prompt("echo", 1)
        term.enter("hi")
        flat = " ".join(term.wait_prompt("echo", 2).split())  # the error line wraps at the terminal's width
        assert "HTTP 400" in flat and "no such key *** for bob:***" in flat
    finally:
        term.close()
    assert API_KEY.encode() not in term.raw and BASE_PASSWORD.encode() not in term.raw


def test_ask_and_scripted_chat_never_show_a_secret_the_model_server_echoes(cli, model, monkeypatch):
    echoing_model(model, monkeypatch)
    asked = cli("ask", "-s", "echo", "hi")
    scripted = cli("chat", "-s", "echo", input="hi\n")
    for result in (asked, scripted):
        assert result.exit_code == 4
        assert "no such key *** for bob:***" in result.stderr
        assert API_KEY not in result.stdout + result.stderr and BASE_PASSWORD not in result.stdout + result.stderr
