"""`chatcli doctor`: one line per check. Imports neither LangChain nor the OpenAI client (httpx only).

Checks: every setting and where it came from (flag, env, .env, config.toml, default; secrets masked, Redis
URLs redacted), Redis reachable (URL or embedded, server version), the model endpoint reachable and the
model known (GET {base_url}/models), the API key present.
URLs are shown through settings.redact_url: no password, no secret query parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chatcli.errors import ChatcliError
from chatcli.settings import Settings, mask_secret, redact_url

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass
class Check:
    ok: bool
    name: str
    detail: str


def setting_checks(settings: Settings) -> list[Check]:
    shown: dict[str, Callable[[Any], str]] = {
        "api_key": mask_secret,
        "redis_url": lambda v: redact_url(v) if v else "(not set: embedded server)",
        "base_url": lambda v: redact_url(v) if v else f"(not set: {OPENAI_BASE_URL})",
        "ttl": lambda v: f"{v} s" if v else "(not set: sessions live forever)",
        "timeout": lambda v: f"{v:g} s",
    }
    checks = [Check(True, "home", f"{settings.home}  [{settings.sources.get('home', 'default')}]")]
    for name in ("api_key", "base_url", "model", "redis_url", "key_prefix", "max_history_tokens", "timeout", "ttl"):
        value = getattr(settings, name)
        text = shown.get(name, repr)(value)
        checks.append(Check(True, name, f"{text}  [{settings.sources.get(name, 'default')}]"))
    return checks


def redis_check(settings: Settings) -> Check:
    from redis.cluster import RedisCluster

    from chatcli import redis_server

    if not settings.redis_url:
        try:
            status = redis_server.embedded_status(settings.home)
        except ChatcliError as exc:  # an unsafe socket directory, say
            return Check(False, "redis", str(exc))
        if status.running:
            return Check(True, "redis", f"embedded server ({status.socket}), Redis {status.version}")
        if status.not_answering:
            return Check(
                False,
                "redis",
                f"embedded server (pid {status.pid or 'unknown'}) running but not answering ({status.not_answering}); "
                "`chatcli server stop` ends it",
            )
        if status.binary:
            return Check(True, "redis", f"embedded server not running; starts on first use ({status.binary})")
        return Check(False, "redis", "no CHATCLI_REDIS_URL and no redis-server binary to run an embedded server")
    try:
        conn = redis_server.connect(settings)
    except ChatcliError as exc:
        return Check(False, "redis", str(exc))
    try:
        info = conn.client.info("server")
        version = info.get("redis_version", "?")
        if isinstance(conn.client, RedisCluster):
            primaries = len(conn.client.get_primaries())
            return Check(True, "redis", f"{conn.where}: Redis Cluster, {primaries} primaries, Redis {version}")
        return Check(True, "redis", f"{conn.where}: Redis {version}")
    except Exception as exc:  # a reachable server that fails INFO (ACLs) is still a failed check
        return Check(False, "redis", f"{conn.where} answered PING but not INFO: {exc}")
    finally:
        conn.client.close()


def models_url(base_url: str) -> str:
    """GET {base_url}/models: the path goes before the base URL's query (`/v1?api-version=x` ->
    `/v1/models?api-version=x`); the query is kept (Azure-style gateways want it)."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/models"))


def model_checks(settings: Settings) -> list[Check]:
    import httpx

    base = redact_url((settings.base_url or OPENAI_BASE_URL).rstrip("/"))  # what is shown: never a secret
    try:
        url = models_url(settings.base_url or OPENAI_BASE_URL)
    except ValueError as exc:
        return [Check(False, "model endpoint", f"{base}: not a valid URL: {exc}")]
    shown = redact_url(url)
    if not settings.api_key and not settings.base_url:
        return [
            Check(False, "api key", "OPENAI_API_KEY is not set (needed for api.openai.com)"),
            Check(False, "model endpoint", f"{base}: not checked without an API key"),
        ]
    if settings.api_key:
        key = Check(True, "api key", f"{mask_secret(settings.api_key)}  [{settings.sources.get('api_key')}]")
    else:
        key = Check(True, "api key", f"not set: a placeholder is sent to {base}")
    headers = {"Authorization": f"Bearer {settings.api_key or 'not-needed'}"}
    try:
        response = httpx.get(url, headers=headers, timeout=settings.timeout)
    except httpx.TimeoutException:
        return [key, Check(False, "model endpoint", f"{base}: no answer within {settings.timeout:g} s")]
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return [key, Check(False, "model endpoint", f"{base}: cannot connect: {exc}")]
    if response.status_code in (401, 403):
        key = Check(False, "api key", f"{base} rejected it (HTTP {response.status_code})")
        return [key, Check(False, "model endpoint", f"{shown}: HTTP {response.status_code}")]
    if response.status_code != 200:
        return [key, Check(False, "model endpoint", f"{shown}: HTTP {response.status_code}")]
    try:
        ids = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return [key, Check(False, "model endpoint", f"{shown}: not an OpenAI-style model list")]
    endpoint = Check(True, "model endpoint", f"{base}: reachable, lists {len(ids)} models")
    if settings.model in ids:
        return [key, endpoint, Check(True, "model known", f"{settings.model} is available")]
    return [key, endpoint, Check(False, "model known", f"{settings.model} is not among the models {base} lists")]


def run(settings: Settings) -> list[Check]:
    return [*setting_checks(settings), redis_check(settings), *model_checks(settings)]
