"""`chatcli doctor`: one line per check. Imports neither LangChain nor the OpenAI client (httpx only).

Checks: every setting and where it came from (flag, env, .env, config.toml, default; secrets masked, Redis
URLs redacted), CHATCLI_HOME writable, Redis reachable and usable the way chatcli uses it (a write probe
on scratch keys of chatcli's layout: a turn's MULTI/EXEC, then every command chatcli sends, each on its own,
so that each refused command or key is named; nothing is left behind), the model endpoint reachable and
the model known (GET {base_url}/models), the API key present.
URLs are shown through settings.redact_url: no password, no secret query parameter.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chatcli.errors import ChatcliError
from chatcli.files import private_dir
from chatcli.settings import Settings, key_destination_problem, mask_secret, redact_url

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass
class Check:
    ok: bool
    name: str
    detail: str


PROBE_ID = "__chatcli_doctor__"  # scratch session ids: PROBE_ID + random hex
PROBE_TTL = 60  # seconds: the scratch keys expire even when the clean-up is refused
WRITES = "chatcli keeps its spool, input history and embedded server data there"


def home_check(settings: Settings) -> Check:
    """CHATCLI_HOME can be created (when missing) and written: a temporary file is made and removed, and
    the directories made for the test are removed again."""
    home = settings.home
    shown = f"{home}  [{settings.sources.get('home', 'default')}]"
    missing = []
    current = home
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        private_dir(home)
        fd, scratch = tempfile.mkstemp(dir=home, prefix=".chatcli-doctor-")
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        return Check(False, "home", f"{shown}: cannot be written ({exc.strerror or exc}); {WRITES}")
    finally:
        for directory in missing:
            with contextlib.suppress(OSError):
                directory.rmdir()
    return Check(True, "home", shown)


def setting_checks(settings: Settings) -> list[Check]:
    shown: dict[str, Callable[[Any], str]] = {
        "api_key": mask_secret,
        "redis_url": lambda v: redact_url(v) if v else "(not set: embedded server)",
        "base_url": lambda v: redact_url(v) if v else f"(not set: {OPENAI_BASE_URL})",
        "ttl": lambda v: f"{v} s" if v else "(not set: sessions live forever)",
        "timeout": lambda v: f"{v:g} s",
        "api": lambda v: v or f"(not set: {settings.chosen_api})",
        "auto_title": lambda v: "on" if v else "off",
    }
    checks = [home_check(settings)]
    names = ("api_key", "base_url", "api", "model", "redis_url", "key_prefix", "max_history_tokens", "timeout", "ttl")
    for name in (*names, "auto_title"):
        value = getattr(settings, name)
        text = shown.get(name, repr)(value)
        checks.append(Check(True, name, f"{text}  [{settings.sources.get(name, 'default')}]"))
    return checks


def redis_check(settings: Settings) -> Check:
    """Redis answers and chatcli can use it: the server at the URL, or the embedded one if it runs (one that
    does not run yet is started by the first command that needs it). INFO gives the version where the user
    may run it; a user that may not is not a failure."""
    from redis.cluster import RedisCluster

    from chatcli import redis_server

    if settings.redis_url:
        try:
            conn = redis_server.connect(settings)
        except ChatcliError as exc:
            return Check(False, "redis", str(exc))
        version = server_version(conn.client)
        version = f"Redis {version}" if version else None
    else:
        try:
            status = redis_server.embedded_status(settings.home)
        except ChatcliError as exc:  # an unsafe socket directory, say
            return Check(False, "redis", str(exc))
        if status.not_answering:
            return Check(
                False,
                "redis",
                f"embedded server (pid {status.pid or 'unknown'}) running but not answering ({status.not_answering}); "
                "`chatcli server stop` ends it",
            )
        if not status.running:
            if status.binary:
                return Check(True, "redis", f"embedded server not running; starts on first use ({status.binary})")
            return Check(False, "redis", "no CHATCLI_REDIS_URL and no redis-server binary to run an embedded server")
        conn = redis_server.offline_connection(settings)  # its socket; never starts a server
        version = str(status.version) if status.version else None  # "Redis 7.0.15", "Valkey 9.1.2"
    cluster = isinstance(conn.client, RedisCluster)
    shape = f"Redis Cluster, {len(conn.client.get_primaries())} primaries, " if cluster else ""
    try:
        problem = storage_problem(conn.client, settings.key_prefix)
    except ChatcliError as exc:
        problem = str(exc)
    finally:
        conn.client.close()
    if problem:
        return Check(False, "redis", f"{conn.where}: {problem}")
    shown = version or "Redis (version not shown: this user may not run INFO)"
    return Check(True, "redis", f"{conn.where}: {shape}{shown}; a test turn was written and removed")


def server_version(client: Any) -> str | None:
    import redis

    try:
        info = client.info("server")
    except redis.RedisError:  # INFO is @dangerous: a least-privilege user may not run it
        return None
    return str(info.get("redis_version") or "") or None


def storage_problem(client: Any, prefix: str) -> str | None:
    """None when chatcli can work on this Redis, else why not, in one line.

    Writes a scratch session `<prefix>__chatcli_doctor__<random>` in chatcli's layout (chatcli.keys): first a
    turn with the very command chatcli writes one with (SessionStore.turn_command: the turn script, which on a
    single node also updates the index), then every command chatcli sends, each on its own (one pipeline), so
    that each refused command (ACL category) or key (ACL key pattern) is named; the last of them delete the
    scratch keys and the index row. The keys expire after PROBE_TTL seconds even when the clean-up is refused.
    A read-only replica, a full disk (MISCONF), maxmemory (OOM) fail the first write and are named.
    """
    import redis

    from chatcli import exporting
    from chatcli.keys import glob_escape
    from chatcli.records import TurnRecord
    from chatcli.redis_errors import reply_code
    from chatcli.store import SessionStore

    store = SessionStore(client, prefix)
    session = PROBE_ID + secrets.token_hex(6)
    lkey, mkey, tkey = store.keys.of_session(session)
    ikey = store.keys.index
    shown = dict(zip((lkey, mkey, tkey, ikey), (*store.keys.of_session("<id>"), ikey), strict=True))
    now = time.time()
    message = {"type": "human", "data": {"type": "human", "content": "chatcli doctor"}}
    entry = exporting.encode_entry(message)
    denied: dict[str, set[str]] = {}  # key as shown ("" for the command itself) -> refused commands
    failures: list[str] = []

    def refused(command: str, key: str | None, exc: Exception) -> None:
        """Note what failed. key None: the turn, whose refused keys the single commands name."""
        if isinstance(exc, redis.exceptions.NoScriptError):
            return  # EVALSHA of a script the server does not know: the user may run it
        reason = str(exc).rsplit("caused error: ", 1)[-1].splitlines()[0]
        if isinstance(exc, redis.exceptions.ReadOnlyError) or reply_code(exc) == "READONLY":  # in a script: 6.2
            failures.insert(0, "the server is a read-only replica: point CHATCLI_REDIS_URL at the primary")
        elif isinstance(exc, redis.exceptions.NoPermissionError):
            named = re.search(r"'([^']+)' command", reason)
            if named or "command" in reason:
                denied.setdefault("", set()).add(named.group(1).upper() if named else command)
            elif key is not None:
                denied.setdefault(shown.get(key, key), set()).add(command)
        elif "user executing the script" in reason:  # a command the script runs is refused
            denied.setdefault("", set()).add(f"the commands of chatcli's turn script ({command})")
        elif isinstance(exc, redis.ResponseError):
            failures.append(f"{command} failed: {reason}")
        else:
            failures.append(f"stopped answering during the write test: {reason}")

    def turn() -> None:
        record = TurnRecord(session, [message], meta={"title": "chatcli doctor"}, incr={"input_tokens": 0})
        record.ttl = PROBE_TTL
        client.execute_command(*store.turn_command(record))

    calls: list[tuple[Any, ...]] = [
        ("LPUSH", lkey, entry), ("EXPIRE", lkey, PROBE_TTL), ("RPUSH", lkey, entry), ("LRANGE", lkey, 0, 1),
        ("LLEN", lkey), ("LINDEX", lkey, -1), ("PEXPIRE", lkey, PROBE_TTL * 1000), ("PTTL", lkey),
        ("EXISTS", lkey), ("HSET", mkey, "updated", repr(now)), ("EXPIRE", mkey, PROBE_TTL),
        ("HSETNX", mkey, "created", repr(now)), ("HINCRBY", mkey, "input_tokens", 0), ("HGET", mkey, "updated"),
        ("HGETALL", mkey), ("EXISTS", mkey), ("ZADD", ikey, now, session), ("ZSCORE", ikey, session),
        ("ZCARD", ikey), ("ZRANGE", ikey, 0, 0), ("ZREVRANGE", ikey, 0, 0), ("ZRANGEBYSCORE", ikey, "-inf", "(0"),
        ("LREM", lkey, 1, entry), ("TYPE", lkey), ("SISMEMBER", tkey, "t"), ("SADD", tkey, "t"), ("SMEMBERS", tkey),
        ("SREM", tkey, "t"), ("EXPIRE", tkey, PROBE_TTL), ("EVAL", "return 1", 1, lkey), ("EVALSHA", "0" * 40, 1, lkey),
        ("HDEL", mkey, "ttl"), ("PERSIST", tkey), ("DBSIZE",),  # a TTL policy dropped; `sessions list` adopting
        ("ZREM", ikey, session), ("DEL", lkey), ("DEL", mkey), ("DEL", tkey),  # the clean-up, last
    ]  # fmt: skip
    cleaned = False
    try:
        try:
            turn()
        except redis.RedisError as exc:
            refused("EVAL", None, exc)
            if failures:  # a replica, a full disk, a dropped connection: the rest would say the same
                return failures[0]
        pipe = client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call)
        results = pipe.execute(raise_on_error=False)
        cleaned = True
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, Exception):
                refused(call[0], next((arg for arg in call if arg in shown), None), result)
        try:
            client.scan(match=glob_escape(lkey), count=10, _type="list")  # `sessions list --all`
        except redis.RedisError as exc:
            refused("SCAN", None, exc)
        try:  # import, rename, fork and /undo: MULTI/EXEC under WATCH
            with client.pipeline(transaction=True) as transaction:
                transaction.watch(lkey)
                transaction.multi()
                transaction.exists(lkey)
                transaction.execute()
        except redis.RedisError as exc:
            refused("WATCH", lkey, exc)
    except redis.RedisError as exc:
        refused("the write test", None, exc)
    finally:
        if not cleaned:
            with contextlib.suppress(redis.RedisError):
                for key in (lkey, mkey, tkey):
                    client.delete(key)
                client.zrem(ikey, session)
    problems = failures[:1]  # after a refused write, the other writes fail the same way
    if denied:
        keys = "; ".join(f"{key} ({', '.join(sorted(commands))})" for key, commands in sorted(denied.items()) if key)
        parts = [f"may not run {', '.join(sorted(denied['']))}"] if "" in denied else []
        parts += [f"may not use the keys {keys}"] if keys else []
        problems.append(f"this Redis user {' and '.join(parts)}; chatcli needs them (see the ACL rule in the README)")
    return "; ".join(problems) or None


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
    refused = key_destination_problem(settings)
    if refused:
        return [Check(False, "api key", refused), Check(False, "model endpoint", f"{base}: not checked")]
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
        return [key, *chat_checks(settings, headers, f"{shown}: HTTP {response.status_code}")]
    try:
        ids = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return [key, *chat_checks(settings, headers, f"{shown}: not an OpenAI-style model list")]
    endpoint = Check(True, "model endpoint", f"{base}: reachable, lists {len(ids)} models")
    if settings.model in ids:
        return [key, endpoint, Check(True, "model known", f"{settings.model} is available")]
    return [key, endpoint, Check(False, "model known", f"{settings.model} is not among the models {base} lists")]


def chat_checks(settings: Settings, headers: dict[str, str], problem: str) -> list[Check]:
    """The model list could not be read (`problem`): many OpenAI-compatible servers have no /models. A
    one-token request on the API chatcli uses tells whether chat itself works: then the missing list is only
    a warning."""
    import httpx

    base = (settings.base_url or OPENAI_BASE_URL).rstrip("/")
    responses = settings.chosen_api == "responses"
    path = "/responses" if responses else "/chat/completions"
    if responses:
        body: dict[str, Any] = {"model": settings.model, "input": "Say ok.", "max_output_tokens": 16}
    else:
        body = {"model": settings.model, "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 1}
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))
    try:
        response = httpx.post(url, headers=headers, json=body, timeout=settings.timeout)
        worked = response.status_code == 200
        why = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        worked, why = False, f"cannot connect: {exc}"
    if not worked:
        return [Check(False, "model endpoint", f"{problem}; a test chat (POST {path}) failed too: {why}")]
    return [
        Check(True, "model endpoint", f"warning: {problem} (no model list); a test chat (POST {path}) worked"),
        Check(True, "model known", f"{settings.model} answered a test chat"),
    ]


def spool_check(settings: Settings) -> Check:
    """What waits in the local spool: fine when it is only for this Redis (the next command sends it), a
    failure when turns wait for another Redis, were refused for good, or cannot be read (`chatcli spool`)."""
    from chatcli import redis_server
    from chatcli.spool import Spool

    spool = Spool(settings.home)
    if not spool.exists():
        return Check(True, "spool", "empty: Redis has every turn")
    try:
        here = redis_server.where(settings)
        rows = spool.rows()
    except ChatcliError as exc:
        return Check(False, "spool", str(exc))
    mine = sum(r.state == "pending" and r.target == here for r in rows)
    elsewhere: dict[str, int] = {}
    for r in rows:
        if r.state == "pending" and r.target != here:
            elsewhere[r.target] = elsewhere.get(r.target, 0) + 1
    aside = sum(r.state == "set_aside" for r in rows)
    unreadable = sum(r.state == "unreadable" for r in rows)
    parts = [f"{mine} turns wait for this Redis (the next command sends them)"] if mine else []
    parts += [f"{n} turns wait for Redis at {target}" for target, n in sorted(elsewhere.items())]
    parts += [f"{aside} turns Redis refused for good"] if aside else []
    parts += [f"{unreadable} records cannot be read"] if unreadable else []
    if not parts:
        return Check(True, "spool", "empty: Redis has every turn")
    attention = bool(elsewhere or aside or unreadable)
    advice = "; `chatcli spool list` shows them, `chatcli spool send` writes them to this Redis" if attention else ""
    return Check(not attention, "spool", "; ".join(parts) + advice)


def run(settings: Settings) -> list[Check]:
    return [*setting_checks(settings), redis_check(settings), spool_check(settings), *model_checks(settings)]
