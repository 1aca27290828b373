"""One frozen Settings object, resolved as: flags > environment > .env > config.toml > defaults.

Every resolved value remembers where it came from (for `chatcli doctor` and for error messages), and is
validated here, whatever its source, before any command uses it: a bad value is a UsageError (exit 2) naming
the flag, variable or config.toml key, and nothing has been written yet.
"""

from __future__ import annotations

import io
import math
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from chatcli.errors import ModelError, UsageError
from chatcli.files import read_text

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_PREFIX = "message_store:"
DEFAULT_MAX_HISTORY_TOKENS = 8000
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 86400  # a day
MAX_TTL = 10 * 365 * 86400  # 315360000 s, ten years: far beyond any useful TTL, far within what Redis takes
MAX_HISTORY_TOKENS = 10_000_000  # more than any model's context window
MAX_LIST_LENGTH = 2**32 - 1  # the most elements a Redis list holds: asking for the last N > this means all

# setting name -> (environment variables read, in order; key in config.toml)
_SOURCES: dict[str, tuple[tuple[str, ...], str]] = {
    "api_key": (("OPENAI_API_KEY",), "openai_api_key"),
    "base_url": (("OPENAI_BASE_URL",), "openai_base_url"),
    "model": (("CHATCLI_MODEL",), "model"),
    # only chatcli's own name: a project's REDIS_URL (in its .env or the environment) must not redirect chatcli
    "redis_url": (("CHATCLI_REDIS_URL",), "redis_url"),
    "key_prefix": (("CHATCLI_KEY_PREFIX",), "key_prefix"),
    "max_history_tokens": (("CHATCLI_MAX_HISTORY_TOKENS",), "max_history_tokens"),
    "timeout": (("CHATCLI_TIMEOUT",), "timeout"),
    "ttl": (("CHATCLI_TTL",), "ttl"),
    "show_reasoning": (("CHATCLI_SHOW_REASONING",), "show_reasoning"),
    "api": (("CHATCLI_API",), "api"),
    "auto_title": (("CHATCLI_AUTO_TITLE",), "auto_title"),
    "worker": (("CHATCLI_WORKER",), "worker"),
}
API_CHOICES = ("chat", "responses", "auto")


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
    show_reasoning: bool = True  # show a reasoning model's thinking (dim) before its answer
    # which OpenAI API: "chat" (Chat Completions), "responses", "auto" (langchain-openai picks by model name);
    # None: "chat" for a custom base URL (most OpenAI-compatible servers have no /responses), else "auto"
    api: str | None = None
    auto_title: bool = False  # the model writes a short title after a session's first answer
    worker: bool = True  # `ask` runs in a warm worker process (chatcli.worker), started on demand
    # setting name -> "flag" | "env:NAME" | ".env:NAME" | "config.toml" | "default"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def chosen_api(self) -> str:
        """The API chatcli asks langchain-openai to use: "chat", "responses" or "auto"."""
        return self.api or ("chat" if self.base_url else "auto")


def default_home() -> Path:
    from platformdirs import user_data_path

    return user_data_path("chatcli", appauthor=False)


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(raw: Any) -> str:
    """A value in an error message: quoted when text, and cut short (a variable can be any length)."""
    return _cut(repr(raw) if isinstance(raw, str) else str(raw))


def _whole_number(name: str, raw: Any, most: int) -> int:
    """1 ..`most`, from a TOML integer or ASCII digits (no sign, no exponent, no "_")."""
    digits = raw.strip() if isinstance(raw, str) else str(raw) if type(raw) is int else ""
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{name} must be a whole number, got {_shown(raw)}")
    value = int(digits) if len(digits) <= len(str(most)) else most + 1  # never int() of 5,000 digits
    if not 1 <= value <= most:
        raise UsageError(f"{name} must be from 1 to {most}, got {_cut(digits)}")
    return value


def _positive_int(limit: int) -> Callable[[str, Any], int]:
    return lambda name, raw: _whole_number(name, raw, limit)


def _seconds(name: str, raw: Any) -> float:
    """More than 0 and at most MAX_TIMEOUT, from a TOML number or text."""
    try:
        if isinstance(raw, bool):  # config.toml: timeout = true
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number of seconds, got {_shown(raw)}") from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        raise UsageError(f"{name} must be more than 0 and at most {MAX_TIMEOUT} seconds, got {_shown(raw)}")
    return value


def utf8_text(name: str, value: str) -> str:
    """`value` unless it holds bytes that were not UTF-8 (Python keeps them in argv and the environment as
    lone surrogates, which no request or Redis command can encode)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{name} is not valid UTF-8 text") from None
    return value


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str):  # config.toml: model = 5, or a table (its value is not shown: it may be the key)
        raise UsageError(f"{name} must be text (a quoted string in config.toml), not {type(raw).__name__}")
    value = utf8_text(name, raw).strip()
    if not value:
        raise UsageError(f"{name} is set but empty")
    return value


def _key_prefix(name: str, raw: Any) -> str:
    """Kept exactly as written (it is part of every key), but never empty: with no prefix every list in the
    database would be a session, and `sessions adopt` + `sessions clear` would delete other programs' lists."""
    if isinstance(raw, str) and not raw.strip():
        raise UsageError(
            f"{name} is empty: a key prefix is required (every list in Redis would be a session); "
            f"use e.g. {DEFAULT_PREFIX!r}"
        )
    _text(name, raw)  # text, and UTF-8
    return str(raw)


def _url(name: str, raw: Any, schemes: tuple[str, ...]) -> str:
    """A URL with one of `schemes`, no white space or control character in it, and a numeric port."""
    url = _text(name, raw)
    bad = next((c for c in url if c.isspace() or unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise UsageError(f"{name} contains {bad!r}: a URL has no white space or control characters")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise UsageError(f"{name} is not a valid URL ({shown}): {exc}") from None
    if parts.scheme.lower() not in schemes:
        raise UsageError(f"{name} must start with {', '.join(s + '://' for s in schemes)} (got {shown})")
    return url


def _base_url(name: str, raw: Any) -> str:
    url = _url(name, raw, ("http", "https"))
    if not urlsplit(url).hostname:
        raise UsageError(f"{name} has no host name ({redact_url(url)})")
    return url


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
# Query parameters of a Redis URL that redis-py turns into numbers, and the least each may be (the URL's
# value wins over chatcli's own timeouts); non-finite and negative ones fail inside the socket layer.
_REDIS_MINIMUMS = {
    "db": 0,
    "socket_timeout": 0.001,
    "socket_connect_timeout": 0.001,
    "health_check_interval": 0,
    "max_connections": 1,
    "socket_read_size": 1,
}


def _redis_url(name: str, raw: Any) -> str:
    """A Redis URL whose options redis-py accepts: checked by building (not opening) the connection it
    describes, so a misspelt or out-of-range option is a usage error now, not a traceback at the first
    command (or a turn half written)."""
    url = _url(name, raw, REDIS_SCHEMES)
    scheme, rest = url.split("://", 1)
    cluster = scheme.lower().endswith("+cluster")
    plain = scheme.lower().removesuffix("+cluster") + "://" + rest
    shown = redact_url(url)
    import redis
    from redis.cluster import cleanup_kwargs
    from redis.connection import ConnectionPool, parse_url

    try:
        options = parse_url(plain)
        for option, least in _REDIS_MINIMUMS.items():
            value = options.get(option)
            if value is not None and not (math.isfinite(value) and value >= least):
                raise ValueError(f"{option} must be at least {least}, got {value}")
        if cluster and options.get("db", 0) != 0:
            raise ValueError("a cluster has only database 0")
        ConnectionPool(**(cleanup_kwargs(**options) if cluster else options)).make_connection()
    except TypeError as exc:
        unknown = re.search(r"keyword argument '(\w+)'", str(exc))
        option = unknown.group(1) if unknown else str(exc)
        hint = "; ssl_* options need rediss://" if option.startswith("ssl_") and scheme.lower() != "rediss" else ""
        raise UsageError(f"{name} ({shown}): unknown option {option!r}{hint}") from None
    except (ValueError, redis.RedisError) as exc:
        raise UsageError(f"{name} ({shown}): {exc}") from None
    return url


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(name: str, raw: Any) -> bool:
    """A flag's bool, a TOML boolean, or 1/0, true/false, yes/no, on/off (any case)."""
    if isinstance(raw, bool):
        return raw
    word = raw.strip().lower() if isinstance(raw, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise UsageError(f"{name} must be true or false (1/0, yes/no, on/off), got {_shown(raw)}")


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def convert(name: str, raw: Any) -> str:
        value = _text(name, raw).lower()
        if value not in choices:
            raise UsageError(f"{name} must be one of {', '.join(choices)}, got {_shown(raw)}")
        return value

    return convert


_CONVERT: dict[str, Callable[[str, Any], Any]] = {
    "api_key": _text,
    "base_url": _base_url,
    "model": _text,
    "redis_url": _redis_url,
    "key_prefix": _key_prefix,
    "max_history_tokens": _positive_int(MAX_HISTORY_TOKENS),
    "timeout": _seconds,
    "ttl": _positive_int(MAX_TTL),
    "show_reasoning": _boolean,
    "api": _choice(API_CHOICES),
    "auto_title": _boolean,
    "worker": _boolean,
}
# Settings whose empty value in the environment or .env is refused, not read as "unset": an empty key prefix
# is a dangerous value, not the absence of one.
_EMPTY_IS_A_VALUE = frozenset({"key_prefix"})


def _read_dotenv(cwd: Path) -> dict[str, str]:
    path = cwd / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        text = read_text(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(read_text(path))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _given(values: Mapping[str, str], var: str, name: str) -> bool:
    """Whether `var` sets setting `name`: an empty variable counts as unset, except where empty is refused."""
    value = values.get(var)
    return value is not None and (value != "" or name in _EMPTY_IS_A_VALUE)


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
            raw, where, label = flags[name], "flag", "--" + name.replace("_", "-")
        else:
            where = "default"
            for var in env_names:
                if _given(env, var, name):
                    raw, where, label = env[var], f"env:{var}", var
                    break
            else:
                for var in env_names:
                    if _given(dotenv, var, name):
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
    """ModelError unless a key is set or a base URL is (local servers need no key); UsageError when the key
    would go to a base URL it may not go to (see key_destination_problem)."""
    if not settings.api_key and not settings.base_url:
        raise ModelError(
            "OPENAI_API_KEY is not set: export it or add it to .env "
            "(or set OPENAI_BASE_URL to a server that needs no key)"
        )
    problem = key_destination_problem(settings)
    if problem:
        raise UsageError(problem)


def _chosen_by_directory(settings: Settings, name: str) -> bool:
    """Whether the working directory chose this setting: a .env line, or config.toml under a CHATCLI_HOME
    that a .env line chose."""
    source = settings.sources.get(name, "default")
    home_source = settings.sources.get("home", "default")
    return source.startswith(".env:") or (source == "config.toml" and home_source.startswith(".env:"))


def describe_source(settings: Settings, name: str) -> str:
    """Where a setting came from, in words: "./.env (OPENAI_BASE_URL)", "the environment (OPENAI_API_KEY)"..."""
    source = settings.sources.get(name, "default")
    kind, _, var = source.partition(":")
    if kind == ".env":
        return f"./.env ({var})"
    if kind == "env":
        return f"the environment ({var})"
    if kind == "flag":
        return "--" + name.replace("_", "-")
    if kind == "config.toml":
        return str(settings.config_file)
    return "the default"


def key_destination_problem(settings: Settings) -> str | None:
    """The API key goes only to a base URL from the same place as the key, or from a place the user controls
    (a flag, the environment, config.toml): a .env in whatever directory chatcli runs from must not send the
    user's key to a host it names. None when the key may go there, else the one line to show."""
    if not settings.api_key or not settings.base_url or not _chosen_by_directory(settings, "base_url"):
        return None
    key_file = settings.sources.get("api_key", "").partition(":")[0]
    if key_file == settings.sources.get("base_url", "").partition(":")[0]:
        return None  # both from the same .env (or the same config.toml)
    return (
        f"not sending the API key from {describe_source(settings, 'api_key')} to the base URL from "
        f"{describe_source(settings, 'base_url')}: a key goes only to a base URL from the same place or one "
        "you set yourself (--base-url, the environment, config.toml)"
    )
