"""A warm worker for `chatcli ask`: LangChain and the OpenAI client imported once, forked per command.

`ask` spends most of its time importing (`langchain_openai` alone takes seconds on a slow machine). The
first `ask` starts a worker process in the background (and answers by itself, as without one); later ones
connect to the worker's unix socket, and the worker forks a child that already has everything imported.
The child runs the ordinary command with the client's own terminal: the client sends its stdin, stdout and
stderr (SCM_RIGHTS), its arguments, environment, working directory and umask, then waits for the exit code
and forwards Ctrl-C, SIGTERM and SIGHUP. What the user sees and the exit code are those of a plain run.

- Invisible: started on demand; a worker of another chatcli version (its files, or the packages installed
  beside it, changed) is not used, and exits within seconds; idle for IDLE_SECONDS it exits.
- No secrets in it: the worker starts with a bare environment; the environment (API key included) travels
  over the socket to the child only, in memory, and is never written anywhere.
- `chatcli server stop` stops it; `CHATCLI_WORKER=0` turns it off; when it cannot start or answer, `ask`
  runs by itself. A command is either run by a child or not started at all: the client sends its request
  only after the worker said which child will run it, so a fallback never asks twice.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

IDLE_SECONDS = 15 * 60
CHECK_SECONDS = 2.0  # how often an idle worker checks that it is still the one to use
CONNECT_TIMEOUT = 1.0
MAX_REQUEST = 4 * 1024 * 1024
RUN, STATUS, STOP = b"R", b"S", b"Q"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# what the worker's own environment keeps: how to find Python and chatcli, nothing else (no keys, no URLs)
KEPT_ENVIRONMENT = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")


# -- where a worker lives ---------------------------------------------------------------------------------


def fingerprint(package: Path | None = None) -> str:
    """What a worker's code is: this Python, chatcli's files, and the packages installed beside them. A
    different value means a different chatcli (upgraded, edited, or another install) and another worker."""
    package = package or Path(__file__).resolve().parent
    parts = [sys.executable, sys.version, str(package)]
    for path in sorted(package.glob("*.py")):
        info = path.stat()
        parts.append(f"{path.name}:{info.st_mtime_ns}:{info.st_size}")
    for entry in sys.path:  # installing or removing a package changes its site-packages directory's mtime
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry):
            parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def home_digest(home: Path) -> str:
    return hashlib.sha256(str(home.absolute()).encode()).hexdigest()[:10]


def socket_for(home: Path, code: str) -> Path:
    """The socket of the worker of CHATCLI_HOME `home` running code `code`, in the private per-user socket
    directory; a short name, for AF_UNIX's ~107 bytes (`fits` says whether it does)."""
    from chatcli.files import short_socket_dir

    return short_socket_dir() / f"w-{home_digest(home)}-{code[:10]}.sock"


def fits(path: Path) -> bool:
    """Whether a unix socket can be bound at `path` (a very long TMPDIR leaves no room: then no worker)."""
    from chatcli.files import MAX_SOCKET_PATH

    return len(str(path).encode()) <= MAX_SOCKET_PATH


def sockets_of(home: Path) -> list[Path]:
    """Every worker socket of this home, whatever its code."""
    from chatcli.files import short_socket_dir

    return sorted(short_socket_dir().glob(f"w-{home_digest(home)}-*.sock"))


def _connect(path: Path, op: bytes) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        conn.connect(str(path))
        conn.sendall(op)
    except OSError:
        conn.close()
        return None
    return conn


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# -- the client: `chatcli ask` ------------------------------------------------------------------------------


def run_in_worker(argv: list[str]) -> int | None:
    """Run `chatcli ARGV` in the warm worker and return its exit code; None when it was not run there (no
    worker, turned off, or it did not answer): then the caller runs it. A missing worker is started."""
    if not (hasattr(os, "fork") and hasattr(socket, "SCM_RIGHTS") and hasattr(socket, "AF_UNIX")):
        return None
    try:
        from chatcli.settings import load_settings

        settings = load_settings()
        if not settings.worker:
            return None
        path = socket_for(settings.home, fingerprint())
    except Exception:  # a bad setting or an unsafe socket directory: the command itself says so
        return None
    if not fits(path):
        return None  # no worker can listen there: none is started either
    body = _request(argv)
    if len(body) > MAX_REQUEST:  # a child would refuse it (a huge environment): nothing is started
        return None
    conn = _connect(path, RUN)
    if conn is None:
        start_worker(settings.home)
        return None
    with conn:
        header = None
        with contextlib.suppress(OSError):
            header = _recv_exact(conn, 4)
        if header is None:
            return None  # no child was made: nothing ran
        (pid,) = struct.unpack("!i", header)
        return _drive(conn, pid, body)


def _request(argv: list[str]) -> bytes:
    umask = os.umask(0)
    os.umask(umask)
    streams = (sys.stdin, sys.stdout, sys.stderr)
    return json.dumps(
        {
            "argv": [sys.argv[0], *argv],
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "umask": umask,
            "encodings": [[getattr(s, "encoding", None), getattr(s, "errors", None)] for s in streams],
            # how Click names the program in usage lines: `chatcli` or `python -m chatcli`
            "main_package": getattr(sys.modules.get("__main__"), "__package__", None),
        }
    ).encode()


def _drive(conn: socket.socket, pid: int, body: bytes) -> int:
    """Hand the command to child `pid`, forward signals to it, and return its exit code."""
    fds = []
    for stream, fallback in ((sys.stdin, "r"), (sys.stdout, "w"), (sys.stderr, "w")):
        try:
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):
            fds.append(os.open(os.devnull, os.O_RDONLY if fallback == "r" else os.O_WRONLY))
    previous = {sig: signal.signal(sig, lambda number, _frame: _forward(pid, number)) for sig in FORWARDED}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, lambda *_: _suspend(pid))
    previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, lambda number, _frame: _forward(pid, number))
    try:
        conn.settimeout(None)
        conn.sendmsg(
            [struct.pack("!I", len(body))],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())],
        )
        conn.sendall(body)
        _let_go(fds[1])
        status = _recv_exact(conn, 4)
    except OSError:
        status = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status is None:
        sys.stderr.write("chatcli: the worker stopped before the command ended (CHATCLI_WORKER=0 turns it off)\n")
        return 1
    code = int(struct.unpack("!i", status)[0])
    if code < 0:  # the child was killed by signal -code: so is the client, as a plain run would have been
        _die_of(-code)  # (the shell says so, and gives the terminal its own settings back)
        return 128 - code
    return code


def _die_of(number: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
        signal.signal(number, signal.SIG_DFL)
    with contextlib.suppress(OSError, ValueError):
        os.kill(os.getpid(), number)


def _let_go(fd: int) -> None:
    """The client lets go of its stdout once the child has it: a pipe reading the answer ends when the child
    closes it (as `ask` does before waiting for a title, CHATCLI_AUTO_TITLE), not when the client exits."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _suspend(pid: int) -> None:
    """Ctrl-Z: the child stops (SIGSTOP: in the worker's orphaned process group a SIGTSTP would be dropped),
    then the client itself, as a plain run would; `fg` or `bg` continues both."""
    _forward(pid, signal.SIGSTOP)
    handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT
    signal.signal(signal.SIGTSTP, handler)
    _forward(pid, signal.SIGCONT)


def _forward(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, number)


def start_worker(home: Path) -> None:
    """Start the worker of this home in the background, with a bare environment; never fails the caller."""
    import subprocess

    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    with (
        contextlib.suppress(OSError),
        open(os.open(log_path(home), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log,
    ):
        os.fchmod(log.fileno(), 0o600)  # one an older version made with the umask's mode too
        subprocess.Popen(
            [sys.executable, "-m", "chatcli.worker", str(home.absolute())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )


def log_path(home: Path) -> Path:
    """Where a worker's own errors go (it has no terminal): CHATCLI_HOME/worker.log."""
    from chatcli.files import private_dir

    return private_dir(home) / "worker.log"


def query(home: Path, op: bytes) -> list[dict[str, Any]]:
    """Ask every worker of this home for its status (STATUS) or to stop (STOP); what each one said."""
    answers = []
    for path in sockets_of(home):
        conn = _connect(path, op)
        if conn is None:
            _remove_if_dead(path)
            continue
        with conn:
            conn.settimeout(10)
            with contextlib.suppress(OSError, ValueError):
                answers.append(json.loads(conn.makefile("rb").readline() or b"{}"))
    return answers


def _remove_if_dead(path: Path) -> None:
    """Remove the socket a killed worker left: only when no worker holds its lock (one may be starting)."""
    import fcntl

    with contextlib.suppress(OSError):
        lock = os.open(f"{path}.lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            os.unlink(f"{path}.lock")
        finally:
            os.close(lock)


def stop_workers(home: Path) -> int:
    """Stop the workers of this home (each lets its running commands end first); how many there were."""
    return len(query(home, STOP))


# -- the worker -----------------------------------------------------------------------------------------------


def warm_up() -> None:
    """Import and exercise what `ask` needs, so a forked child finds it ready: the chain's classes, the OpenAI
    client (its lazily loaded resources too), Rich's Markdown with a highlighted code block."""
    import io
    import warnings

    import chatcli.assistant
    import chatcli.cli
    import chatcli.compose
    import chatcli.conversation
    import chatcli.spooled  # noqa: F401
    from chatcli import render
    from chatcli.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: F401

        from chatcli.assistant import chat_model

        settings = Settings(home=Path("/nonexistent"), api_key="warm-up", base_url="http://127.0.0.1:9")
        chat_model(settings, "warm-up").client  # noqa: B018 - builds the OpenAI client, loads its resources
    console = render.make_console(io.StringIO())
    console.print(render.markdown("# warm\n\n- *up* [link](http://x)\n\n```python\nprint('x')\n```\n"))


class Worker:
    """The worker of one home: a single-threaded loop (forking is safe) over its socket, the SIGCHLD wake-up
    pipe and the processes of the clients whose commands run."""

    def __init__(self, home: Path):
        self.home = home
        self.code = fingerprint()
        self.path = socket_for(home, self.code)
        self.started = time.time()
        self.served = 0
        self.children: dict[int, tuple[socket.socket, int | None]] = {}  # pid -> (client conn, client pidfd)
        self.stopping = False
        self.last_active = time.monotonic()

    def serve(self) -> None:
        import fcntl

        if not fits(self.path):
            sys.stderr.write(f"chatcli worker: {self.path} is too long for a unix socket: no worker\n")
            return
        lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another worker of this code and home is there
        self.lock = lock
        warm_up()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        listener.listen(16)
        self.listener = listener
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.wake_r, self.wake_w = wake_r, wake_w
        self.bound = os.stat(self.path).st_ino
        try:
            self._loop()
        finally:
            self._close_listener()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}.lock")

    def _stop(self) -> None:
        self.stopping = True

    def _close_listener(self) -> None:
        """A stopping worker takes no more commands: its socket goes at once (a client then runs by itself and
        `server status` says so), not when its last command ends; an unaccepted connection would spin the loop."""
        if self.listener.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.bound:  # still ours: nobody removed it and bound another
                self.path.unlink()
        self.listener.close()

    def _loop(self) -> None:
        next_check = time.monotonic() + CHECK_SECONDS
        while not (self.stopping and not self.children):
            if self.stopping:
                self._close_listener()
            for key, _events in self.selector.select(timeout=CHECK_SECONDS):
                if key.data == "accept" and not self.stopping:
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                elif isinstance(key.data, int):  # the client of this child went away (killed): hang up
                    _forward(key.data, signal.SIGHUP)
                    self.selector.unregister(key.fileobj)
            self._reap()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_SECONDS
                if not self.children and self._retired():
                    self.stopping = True

    def _retired(self) -> bool:
        """Whether this worker should go: idle too long, its code changed, its home or socket gone."""
        if time.monotonic() - self.last_active > IDLE_SECONDS or not self.home.is_dir():
            return True
        try:
            if not self.path.exists() or fingerprint() != self.code:
                return True
        except OSError:
            return True
        return False

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            uid, client_pid = _peer(conn)
            op = conn.recv(1)
        except OSError:
            conn.close()
            return
        if uid != os.getuid():
            conn.close()
            return
        self.last_active = time.monotonic()
        if op == RUN:
            self._run(conn, client_pid)
            return
        with conn:
            answer = {"pid": os.getpid(), "code": self.code, "since": self.started, "served": self.served}
            if op == STOP:
                self.stopping = True
                answer["running"] = len(self.children)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode() + b"\n")

    def _run(self, conn: socket.socket, client_pid: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                self.selector.close()
                self.listener.close()
                for fd in (self.wake_r, self.wake_w, self.lock):  # the lock: a new worker may come when this one dies
                    os.close(fd)
                for other, pidfd in self.children.values():
                    other.close()
                    if pidfd is not None:
                        os.close(pidfd)
                code = run_child(conn) & 0xFF
                # the child says its exit code itself: the command's client learns it even when the worker
                # is gone (killed) by then; the worker says it too, for a child killed by a signal
                with contextlib.suppress(OSError):
                    conn.sendall(struct.pack("!i", code))
            finally:
                os._exit(code)
        self.served += 1
        pidfd = None
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(client_pid)
            self.selector.register(pidfd, selectors.EVENT_READ, pid)
        self.children[pid] = (conn, pidfd)
        with contextlib.suppress(OSError):  # the client is gone: the child reads no request and exits
            conn.sendall(struct.pack("!i", pid))

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 1 << 8
            if done == 0:
                continue
            conn, pidfd = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.sendall(struct.pack("!i", code))  # -N: killed by signal N
            conn.close()
            if pidfd is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(pidfd)
                os.close(pidfd)
            self.last_active = time.monotonic()


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(uid, pid) of the process at the other end of a unix socket."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return uid, pid


def run_child(conn: socket.socket) -> int:
    """In a forked child: take the client's request and terminal, and run the command as `chatcli` would."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)
    conn.settimeout(None)
    fd_size = array.array("i").itemsize
    try:
        head, ancillary, _flags, _addr = conn.recvmsg(4, socket.CMSG_SPACE(3 * fd_size))
    except OSError:
        return 1
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fd_size])
    if len(head) != 4 or len(fds) != 3:
        return 1  # the client went away before it sent its request: nothing ran
    (size,) = struct.unpack("!I", head)
    body = _recv_exact(conn, size) if size <= MAX_REQUEST else None
    if body is None:
        return 1
    request = json.loads(body)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    _become(request)
    from chatcli.cli import main

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _become(request: dict[str, Any]) -> None:
    """The child takes on the client's working directory, environment, umask, arguments and standard streams."""
    import io
    import tempfile

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(int(request["umask"]))
    tempfile.tempdir = None  # TMPDIR is the client's
    sys.argv = list(request["argv"])
    sys.modules["__main__"].__package__ = request.get("main_package")
    streams = []
    for fd, (encoding, errors) in enumerate(request["encodings"]):
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered: Any = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        streams.append(
            io.TextIOWrapper(
                buffered,
                encoding=encoding or "utf-8",
                errors=errors or ("backslashreplace" if fd == 2 else "strict"),
                line_buffering=fd == 2 or os.isatty(fd),
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def launch() -> None:
    """The `chatcli` command: `ask` through the warm worker when it is there, everything else as it is."""
    argv = sys.argv[1:]
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command == "ask" and "--help" not in argv:
        code = run_in_worker(argv)
        if code is not None:
            sys.exit(code)
    from chatcli.cli import main

    main()


def main() -> None:
    """`python -m chatcli.worker HOME` (what start_worker runs)."""
    Worker(Path(sys.argv[1])).serve()


if __name__ == "__main__":
    main()
