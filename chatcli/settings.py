"""One frozen Settings object, resolved as: flags > environment > .env > config.toml > defaults.

Every resolved value remembers where it came from (for `chatcli doctor` and for error messages).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from chatcli.errors import ModelError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_PREFIX = "message_store:"
DEFAULT_MAX_HISTORY_TOKENS = 8000
DEFAULT_TIMEOUT = 60.0

# setting name -> (environment variables read, in order; key in config.toml)
_SOURCES: dict[str, tuple[tuple[str, ...], str]] = {
    "api_key": (("OPENAI_API_KEY",), "openai_api_key"),
    "base_url": (("OPENAI_BASE_URL",), "openai_base_url"),
    "model": (("CHATCLI_MODEL",), "model"),
    "redis_url": (("CHATCLI_REDIS_URL", "REDIS_URL"), "redis_url"),
    "key_prefix": (("CHATCLI_KEY_PREFIX",), "key_prefix"),
    "max_history_tokens": (("CHATCLI_MAX_HISTORY_TOKENS",), "max_history_tokens"),
    "timeout": (("CHATCLI_TIMEOUT",), "timeout"),
    "ttl": (("CHATCLI_TTL",), "ttl"),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    api_key: str | None = None
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    redis_url: str | None = None
    key_prefix: str = DEFAULT_PREFIX
    max_history_tokens: int = DEFAULT_MAX_HISTORY_TOKENS
    timeout: float = DEFAULT_TIMEOUT
    ttl: int | None = None
    # setting name -> "flag" | "env:NAME" | ".env:NAME" | "config.toml" | "default"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"


def default_home() -> Path:
    from platformdirs import user_data_path

    return user_data_path("chatcli", appauthor=False)


def _positive_int(name: str, raw: Any) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise UsageError(f"{name} must be a whole number, got {str(raw)!r}") from None
    if value <= 0:
        raise UsageError(f"{name} must be greater than 0, got {value}")
    return value


def _positive_float(name: str, raw: Any) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds, got {str(raw)!r}") from None
    if not 0 < value <= 86400:
        raise UsageError(f"{name} must be more than 0 and at most 86400 seconds, got {raw}")
    return value


def _text(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not value:
        raise UsageError(f"{name} is set but empty")
    return value


_CONVERT: dict[str, Callable[[str, Any], Any]] = {
    "api_key": _text,
    "base_url": _text,
    "model": _text,
    "redis_url": _text,
    "key_prefix": lambda _n, raw: str(raw),
    "max_history_tokens": _positive_int,
    "timeout": _positive_float,
    "ttl": _positive_int,
}


def _read_dotenv(cwd: Path) -> dict[str, str]:
    path = cwd / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve every setting. `flags` holds command-line values (None = not given)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if environ is None else environ
    dotenv = _read_dotenv(cwd or Path.cwd())

    home_raw = env.get("CHATCLI_HOME") or dotenv.get("CHATCLI_HOME")
    home = (Path(home_raw).expanduser() if home_raw else default_home()).absolute()
    config = _read_config(home / "config.toml")
    unknown = sorted(set(config) - {key for _, key in _SOURCES.values()})
    if unknown:
        raise UsageError(f"{home / 'config.toml'}: unknown setting(s): {', '.join(unknown)}")

    values: dict[str, Any] = {}
    home_source = "env:CHATCLI_HOME" if env.get("CHATCLI_HOME") else ".env:CHATCLI_HOME" if home_raw else "default"
    sources: dict[str, str] = {"home": home_source}
    for name, (env_names, config_key) in _SOURCES.items():
        label = env_names[0]
        raw: Any = None
        if name in flags:
            raw, where = flags[name], "flag"
        else:
            where = "default"
            for var in env_names:
                if env.get(var):
                    raw, where, label = env[var], f"env:{var}", var
                    break
            else:
                for var in env_names:
                    if dotenv.get(var):
                        raw, where, label = dotenv[var], f".env:{var}", var
                        break
                else:
                    if config_key in config:
                        raw, where, label = config[config_key], "config.toml", config_key
        if raw is None:
            sources[name] = "default"
            continue
        values[name] = _CONVERT[name](label, raw)
        sources[name] = where
    return Settings(home=home, sources=sources, **values)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '30d', '2w' (or a bare number of seconds) -> seconds."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 30d)") from None
    if not value > 0:
        raise UsageError(f"invalid duration {text!r}: it must be greater than 0")
    return value * _DURATION_UNITS[unit]


# Query parameters whose values are secrets (compared lower-case, with "-" read as "_").
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "key", "auth", "credential")
_SECRET_NAMES = frozenset({"pass", "sig", "signature"})
# ...unless the parameter names a file or a directory: ssl_keyfile, ssl_certfile, ssl_ca_certs, ssl_ca_path
_PATH_SUFFIXES = ("file", "path", "dir", "certs")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter's value is a secret, by the parameter's name (see redact_url)."""
    key = unquote_plus(name).strip().lower().replace("-", "_")
    if key.endswith(_PATH_SUFFIXES):
        return False
    return key in _SECRET_NAMES or any(word in key for word in _SECRET_WORDS)


def _split_userinfo(netloc: str) -> tuple[str, str | None, str]:
    """netloc -> (user, password or None, host[:port]); the same split urllib.parse uses, on the raw text."""
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return "", None, netloc
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), hostport


def redact_url(url: str) -> str:
    """The URL with its secrets replaced by '***', otherwise exactly as written (readable, and stable: the
    same URL always gives the same text, so the spool can use it as the identity of its target).

    Masked: the password of the user-info part (the user name is kept), and the value of every query
    parameter whose name, lower-cased with '-' read as '_', is "pass", "sig" or "signature" or contains
    "password", "passwd", "pwd", "secret", "token", "key", "auth" or "credential"
    (password, ssl_password, api-key, access_token, client_secret, ...) -- except names that end in "file",
    "path", "dir" or "certs", which name files, not secrets (ssl_keyfile, ssl_certfile, ssl_ca_certs,
    ssl_ca_path). Empty values stay empty. Nothing is re-encoded or re-ordered; host, port, path, other
    parameters and the fragment are kept as they are.
    """
    try:
        urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    prefix, netloc, rest, query, fragment = _split_raw(url)
    user, password, hostport = _split_userinfo(netloc)
    if password is not None:
        netloc = f"{user}:***@{hostport}"
    if query:
        fields = []
        for field_ in query[1:].split("&"):
            name, eq, value = field_.partition("=")
            fields.append(f"{name}=***" if eq and value and is_secret_param(name) else field_)
        query = "?" + "&".join(fields)
    return prefix + netloc + rest + query + fragment


def _split_raw(url: str) -> tuple[str, str, str, str, str]:
    """url -> ("scheme://", netloc, path, "?query", "#fragment"), each part as written (the separators kept,
    so joining them gives `url` back: urlunsplit would rewrite some URLs, e.g. drop the // of unix:///x)."""
    head, hash_, fragment = url.partition("#")
    head, mark, query = head.partition("?")
    scheme = _SCHEME.match(head)
    if scheme is None:
        return "", "", head, mark + query, hash_ + fragment
    netloc, slash, path = head[scheme.end() :].partition("/")
    return scheme.group(), netloc, slash + path, mark + query, hash_ + fragment


def url_secrets(url: str | None) -> list[str]:
    """The secrets redact_url masks in `url` (as written and percent-decoded), for scrubbing other output."""
    if not url:
        return []
    _prefix, netloc, _path, query, _fragment = _split_raw(url)
    found = []
    password = _split_userinfo(netloc)[1]
    if password:
        found += [password, unquote(password)]
    for field_ in query[1:].split("&") if query else []:
        name, eq, value = field_.partition("=")
        if eq and value and is_secret_param(name):
            found += [value, unquote_plus(value)]
    return list(dict.fromkeys(found))


def mask_secret(value: str | None) -> str:
    if not value:
        return "(not set)"
    if len(value) <= 8:
        return "***"
    return f"{value[:3]}…{value[-4:]}"


def require_model_key(settings: Settings) -> None:
    """ModelError unless a key is set or a base URL is (local servers need no key)."""
    if not settings.api_key and not settings.base_url:
        raise ModelError(
            "OPENAI_API_KEY is not set: export it or add it to .env "
            "(or set OPENAI_BASE_URL to a server that needs no key)"
        )
