"""The secrets of this run (the API key, passwords and secret parameters of the URLs), and `scrub`, which
takes them out of any text before it is shown or stored, whoever wrote that text (a library's error
message, a model server that echoes the key back).

Import-light on purpose (no LangChain, no redis, no rich): render, the CLI and the chain all use it.
"""

from __future__ import annotations

import json
from typing import Any

from chatcli.settings import url_secrets

MIN_LENGTH = 3  # shorter "secrets" would mangle ordinary text; never masked
MASK = "***"

_known: set[str] = set()


def remember(settings: Any) -> None:
    """Add the secrets of `settings`: its API key, and the passwords and secret query parameters of its
    Redis and model URLs (as written and percent-decoded), each also as JSON and repr() would escape it."""
    found = [settings.api_key, *url_secrets(settings.redis_url), *url_secrets(settings.base_url)]
    for secret in found:
        if secret and len(secret) >= MIN_LENGTH:
            _known.update({secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]})


def scrub(text: str) -> str:
    """`text` with every remembered secret replaced by ***."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class StreamScrubber:
    """`scrub` for text that arrives in pieces (a streamed answer), where a secret may be cut in two.

    `feed(piece)` returns what is safe to show (or store) now; it holds back the last characters that could
    still be the start of a secret. `flush()` returns the rest, when the stream ends or stops. However the
    text is cut, no remembered secret appears in what it returns, and (unless two secrets overlap) all of
    it joined equals `scrub` of the whole text.
    """

    def __init__(self) -> None:
        self.held = ""

    def feed(self, piece: str) -> str:
        text = scrub(self.held + piece)
        keep = _unfinished_tail(text)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self.held = scrub(self.held), ""
        return text


def _unfinished_tail(text: str) -> int:
    """The length of the longest end of `text` that is a proper beginning of a remembered secret."""
    longest = 0
    for secret in _known:
        for size in range(min(len(secret) - 1, len(text)), longest, -1):
            if secret.startswith(text[len(text) - size :]):
                longest = size
                break
    return longest
