"""The command line: parse, build the context, call the core, map errors to exit codes.

No Redis keys and no LangChain here: `chat` and `ask` import the chain lazily, so every other command
starts without paying for langchain_core / openai.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from secrets import token_hex
from typing import Annotated, Any, TypeVar

import typer

from chatcli import __version__, exporting, render, secrets
from chatcli.errors import (
    ChatcliError,
    ExitCode,
    ModelError,
    NotFoundError,
    StorageError,
    StorageUnavailable,
    UsageError,
)
from chatcli.files import write_atomically
from chatcli.settings import MAX_LIST_LENGTH, MAX_TTL, Settings, load_settings, require_model_key, utf8_text

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    help="chatcli: a terminal chat assistant whose conversations live in Redis.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
history_app = typer.Typer(help="Show and export a session's messages.", no_args_is_help=True)
sessions_app = typer.Typer(help="List and delete sessions.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded redis-server chatcli runs when no Redis URL is set.", no_args_is_help=True)
app.add_typer(history_app, name="history")
app.add_typer(sessions_app, name="sessions")
app.add_typer(server_app, name="server")
spool_app = typer.Typer(
    help="Turns kept on this machine that Redis does not have yet: list, send, export, drop.", no_args_is_help=True
)
app.add_typer(spool_app, name="spool")
roles_app = typer.Typer(
    help="Roles: named system prompts kept in Redis, shared by every machine on it.", no_args_is_help=True
)
app.add_typer(roles_app, name="roles")
threads_app = typer.Typer(
    help="LangGraph threads (langgraph-checkpoint-redis' RedisSaver) in the same Redis: list, show, export.",
    no_args_is_help=True,
)
app.add_typer(threads_app, name="threads")

_state = {"traceback": False}


def stdout_console() -> Any:
    return render.make_console(sys.stdout)


def stderr_console() -> Any:
    return render.make_console(sys.stderr)


def handle_errors(fn: F) -> F:
    """The one place exceptions become a one-line message and an exit code (--traceback also prints the
    traceback first: the exit code stays the one DESIGN.md assigns).
    render scrubs every error and notice of the secrets settings_for remembered."""

    def traced() -> None:
        if _state["traceback"]:
            import traceback

            traceback.print_exc(file=sys.stderr)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ChatcliError as exc:
            traced()
            render.print_error(stderr_console(), str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt as exc:
            traced()
            signum = getattr(exc, "signum", None)  # SIGTERM or SIGHUP during an answer (conversation.Terminated)
            render.print_notice(stderr_console(), "interrupted" if signum is None else f"ended by {exc}")
            raise typer.Exit(int(ExitCode.INTERRUPTED) if signum is None else 128 + signum) from None
        except BrokenPipeError:
            # the reader went away (`chatcli history show x | head`): not an error worth a message
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            traced()
            where = f" {exc.filename}" if exc.filename else ""
            render.print_error(stderr_console(), f"cannot use{where}: {exc.strerror or exc}")
            raise typer.Exit(int(ExitCode.ERROR)) from None

    return wrapper  # type: ignore[return-value]


# -- shared options ---------------------------------------------------------------------------------

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis URL (redis://, rediss://, unix://, redis+cluster://); default: embedded server."
    ),
]
SessionArg = Annotated[str, typer.Argument(help="Session id.", show_default=False)]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--source",
        help="Where the sessions live: chatcli (LangChain's list layout) or langchain-redis (its JSON documents).",
    ),
]


def open_source(settings: Settings, source: str, spool: bool = False) -> Any:
    """The store of `--source`: chatcli's own (open_store), or langchain-redis' documents (chatcli.lcredis)."""
    if source == "chatcli":
        return open_store(settings, spool=spool)
    if source == "langchain-redis":
        from chatcli.lcredis import open_lcredis

        return open_lcredis(settings)
    raise UsageError(f"unknown --source {source!r}: use chatcli or langchain-redis")


def settings_for(**flags: Any) -> Settings:
    """The settings (flags given here win), their secrets remembered so that nothing prints them."""
    settings = load_settings(flags)
    secrets.remember(settings)
    return settings


def _notice(message: str) -> None:
    render.print_notice(stderr_console(), message)


def _on_event(event: Any) -> None:
    from chatcli.events import describe

    _notice(describe(event))


def open_store(settings: Settings, spool: bool = False) -> Any:
    """The session store. Turns spooled earlier for this Redis are sent first, by every command, and every
    command says when turns wait in the spool for another Redis.

    With `spool` (chat, ask) a Redis that does not answer is not an error: turns are kept in the spool under
    CHATCLI_HOME and written to Redis when it answers again (chatcli.spooled.SpooledStore).
    """
    from chatcli import redis_server, spooled
    from chatcli.files import private_dir
    from chatcli.spool import Spool
    from chatcli.store import SessionStore

    private_dir(settings.home)  # created 0700 when missing: input history, spool, embedded server live here
    offline = False
    try:
        conn = redis_server.connect(settings)
    except StorageUnavailable:
        if not spool:
            raise
        conn = redis_server.offline_connection(settings)
        offline = True
    store = SessionStore(conn.client, settings.key_prefix, settings.ttl, conn.where, _on_event)
    local = Spool(settings.home)
    if local.exists():
        try:
            spooled.flush(store, local, _on_event)
        except StorageUnavailable:
            if not spool:
                raise
        spooled.tell_waiting(store, local, _on_event)
    return spooled.SpooledStore(store, local, _on_event, offline) if spool else store


def open_catalog(settings: Settings) -> Any:
    from chatcli.catalog import SessionCatalog

    return SessionCatalog(open_store(settings))


def checked_id(session_id: str) -> str:
    from chatcli.keys import validate_session_id

    return validate_session_id(session_id)


def stdin_text() -> Any:
    """stdin as UTF-8 text; bytes that are not UTF-8 become U+FFFD instead of failing later."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    import io

    return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace", newline=None)


def new_session_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{token_hex(2)}"


def announce_session(session_id: str, resumed: bool = False) -> None:
    """Tell the user which session this is: on stdout in a terminal, else on stderr (pipes stay clean)."""
    message = f"session: {session_id}" + (" (resumed)" if resumed else "")
    console = stdout_console()
    render.print_notice(console if console.is_terminal else stderr_console(), message)


@app.callback(invoke_without_command=True)
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", is_eager=True)] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the Python traceback above an error's one line (same exit code).")
    ] = False,
) -> None:
    """A terminal chat assistant. Conversations live in Redis, in LangChain's RedisChatMessageHistory
    layout, so they survive restarts and can be shared by every machine that reaches the same Redis."""
    _state["traceback"] = traceback
    if version:
        typer.echo(f"chatcli {__version__}")
        raise typer.Exit(0)


# -- chat and ask -----------------------------------------------------------------------------------


def role_prompt(store: Any, system: str | None, role: str | None, variables: list[str] | None) -> str | None:
    """The system prompt of this run: --role's prompt (placeholders filled from --var), else --system."""
    if role is not None:
        from chatcli.roles import RoleBook, parse_vars

        return RoleBook(store).prompt_for(role, parse_vars(variables or []))
    if variables:
        raise UsageError("--var fills the placeholders of a role: give --role NAME too")
    return system


def _assistant(
    settings: Settings, store: Any, model: str | None, temperature: float | None, system: str | None, role: str | None
) -> Any:
    """The assistant for this run; `system` is role_prompt's, kept with the session together with the role's name."""
    from chatcli.assistant import Assistant

    return Assistant(settings, store, model=model, temperature=temperature, system=system, role=role)


def resolve_session(store: Any, session: str | None, continue_: bool, check: bool = True) -> tuple[str, bool]:
    """(the session id, whether it exists already) for --session / --continue / neither (a new id). With
    `check` False (ask), a --session is not looked up: whether it exists only matters to what chat shows."""
    if session is not None and continue_:
        raise UsageError("--session and --continue exclude each other")
    if continue_:
        from chatcli.catalog import SessionCatalog

        found = SessionCatalog(store.store).most_recent()
        if found is None:
            raise NotFoundError("no session to continue yet: start one with `chatcli chat`")
        return found, True
    if session is not None:
        if not check:
            return session, False
        try:
            return session, bool(store.exists(session))
        except StorageUnavailable:
            return session, False  # Redis is down: the turns are spooled (the store says so)
    return new_session_id(), False


def announce(
    store: Any,
    settings: Settings,
    session_id: str,
    resumed: bool,
    *,
    model: str | None,
    system: str | None,
    role: str | None,
) -> None:
    """The session line, and for a resumed session where you were (recap_lines)."""
    announce_session(session_id, resumed)
    if resumed:
        from chatcli.recap import recap_lines

        console = stdout_console()
        console = console if console.is_terminal else stderr_console()
        for line in recap_lines(store, session_id, settings, model_flag=model, system=system, role=role):
            render.print_notice(console, "  " + line)


def finish_titles(jobs: list[Any], settings: Settings) -> None:
    """Wait for the titles still being written (CHATCLI_AUTO_TITLE) once every answer is out: a pipe reading
    the answers is closed first, so nothing downstream waits for them."""
    jobs = [job for job in jobs if job is not None and job.is_alive()]
    if not jobs:
        return
    sys.stdout.flush()
    if not sys.stdout.isatty():
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's captured output)
            fd = -1
        if fd >= 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    for job in jobs:
        job.join(settings.timeout + 5)


Model = Annotated[str | None, typer.Option("--model", "-m", help="Model name (CHATCLI_MODEL).")]
System = Annotated[str | None, typer.Option("--system", help="System prompt; stored with the session.")]
Temperature = Annotated[
    float | None, typer.Option("--temperature", "-t", min=0.0, max=2.0, help="Sampling temperature.")
]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint (OPENAI_BASE_URL).")]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Session id; default: a new session.")]
ShowReasoning = Annotated[
    bool | None,
    typer.Option(
        "--reasoning/--no-reasoning",
        help="Show a reasoning model's thinking, dim, before its answer (CHATCLI_SHOW_REASONING; default: on).",
        show_default=False,
    ),
]
Continue = Annotated[bool, typer.Option("--continue", "-c", help="Resume the most recently active session.")]
RoleOpt = Annotated[
    str | None, typer.Option("--role", help="A role's prompt (`chatcli roles list`) as the system prompt.")
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="name=value for a {placeholder} of the role's prompt (repeatable).")
]
Ttl = Annotated[
    int | None,
    typer.Option("--ttl", help=f"Seconds an idle session lives, refreshed on each turn, 1 to {MAX_TTL} (CHATCLI_TTL)."),
]


def check_turn_options(system: str | None, temperature: float | None, role: str | None = None) -> None:
    """--system, --role and --temperature, before anything is written (typer's range check lets nan through)."""
    if system is not None and role is not None:
        raise UsageError("--system and --role exclude each other: a role is a system prompt")
    if role is not None:
        from chatcli.roles import checked_name

        checked_name(role)
    if system is not None:
        utf8_text("--system", system)
    if temperature is not None and not 0 <= temperature <= 2:
        raise UsageError(f"--temperature must be from 0 to 2, got {temperature}")


@app.command()
@handle_errors
def chat(
    session: SessionOpt = None,
    continue_: Continue = False,
    model: Model = None,
    system: System = None,
    temperature: Temperature = None,
    role: RoleOpt = None,
    var: VarOpt = None,
    base_url: BaseUrl = None,
    redis_url: RedisUrl = None,
    ttl: Ttl = None,
    reasoning: ShowReasoning = None,
    source: SourceOpt = "chatcli",
    thread: Annotated[
        str | None,
        typer.Option("--thread", help="Continue this LangGraph thread through LangGraph (the langgraph extra)."),
    ] = None,
) -> None:
    """Chat in a REPL (/help lists the commands). With stdin not a terminal, answer each line in turn.

    A session keeps its model, temperature, system prompt and role: --model and --temperature given for a
    session that has its own win for this run only."""
    typeahead = _hold_typeahead()
    if session is not None and continue_:
        raise UsageError("--session and --continue exclude each other")
    check_turn_options(system, temperature, role)
    settings = settings_for(model=model, base_url=base_url, redis_url=redis_url, ttl=ttl, show_reasoning=reasoning)
    require_model_key(settings)
    if thread is not None:
        if session is not None or continue_ or role or source != "chatcli":
            raise UsageError("--thread goes alone: not with --session, --continue, --role or --source")
        from chatcli.graphchat import chat_thread, typed_lines

        if typeahead is not None:
            typeahead.restore()  # input() reads lines: the terminal's own echo and line editing
        lines = stdin_text() if typeahead is None else typed_lines(f"{render.sanitize(thread)}> ")
        return chat_thread(settings, thread, lines, model=model, temperature=temperature, system=system)
    session = checked_id(session) if session is not None else None
    if source != "chatcli" and continue_:
        raise UsageError("--continue finds chatcli's own sessions: give --session ID with --source")
    store = open_source(settings, source, spool=True)
    session_id, resumed = resolve_session(store, session, continue_)
    system = role_prompt(store, system, role, var)
    if sys.stdin.isatty() or session is None:
        announce(store, settings, session_id, resumed, model=model, system=system, role=role)
    if typeahead is not None:
        from chatcli.repl import ChatRepl
        from chatcli.startup import Background, LazyProxy

        # the prompt comes up at once; the chain (seconds of imports) loads once it is drawn
        loading = Background(lambda: _assistant(settings, store, model, temperature, system, role))
        repl = ChatRepl(settings, store, LazyProxy(loading), session_id, stdout_console(), stderr_console())
        repl.run(typeahead.take, loading.start)
        return
    _scripted_chat(_assistant(settings, store, model, temperature, system, role), session_id)


def _hold_typeahead() -> Any:
    """On a terminal, hold what the user types from now until the prompt is up (chatcli.startup.Typeahead)."""
    if not sys.stdin.isatty():
        return None
    import atexit

    from chatcli.startup import Typeahead

    typeahead = Typeahead(sys.stdin.fileno())
    atexit.register(typeahead.restore)  # start-up failed before the prompt: the terminal gets its settings back
    return typeahead


def _scripted_chat(assistant: Any, session_id: str) -> None:
    from chatcli.assistant import title_job
    from chatcli.conversation import show_turn

    console, err = stdout_console(), stderr_console()
    failed: ChatcliError | None = None
    titles = []
    for line in stdin_text():
        text = line.rstrip("\n")
        if not text.strip():
            continue
        try:
            turn = show_turn(assistant.turn(session_id, text), console, err)
        except ModelError as exc:
            render.print_error(err, str(exc))
            failed = exc
            continue
        if turn.status == "interrupted":  # Ctrl-C ends a script: the lines after it are not sent
            raise typer.Exit(int(ExitCode.INTERRUPTED))
        titles.append(title_job(assistant, turn))
    finish_titles(titles, assistant.settings)
    if failed is not None:
        raise typer.Exit(int(failed.exit_code))


@app.command()
@handle_errors
def ask(
    question: Annotated[
        str | None, typer.Argument(help="The question; stdin (when piped) is appended.", show_default=False)
    ] = None,
    session: SessionOpt = None,
    continue_: Continue = False,
    model: Model = None,
    system: System = None,
    temperature: Temperature = None,
    role: RoleOpt = None,
    var: VarOpt = None,
    base_url: BaseUrl = None,
    redis_url: RedisUrl = None,
    ttl: Ttl = None,
    reasoning: ShowReasoning = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--file", "-f", help="Attach a text file or a png, jpeg, gif or webp image (repeatable; - is stdin)."
        ),
    ] = None,
) -> None:
    """Ask one question and print the answer (echo text | chatcli ask works too)."""
    from chatcli.compose import attachment, message_content

    if session is not None and continue_:
        raise UsageError("--session and --continue exclude each other")
    check_turn_options(system, temperature, role)
    attached = [attachment(path) for path in files or []]  # `-f -` reads stdin, which is then not appended
    piped = "" if sys.stdin.isatty() or "-" in (files or []) else stdin_text().read()
    text = "\n\n".join(part for part in (utf8_text("the question", question or ""), piped.strip("\n")) if part.strip())
    if not text and not attached:
        raise UsageError("nothing to ask: give a question, or pipe text on stdin")
    settings = settings_for(model=model, base_url=base_url, redis_url=redis_url, ttl=ttl, show_reasoning=reasoning)
    require_model_key(settings)
    session = checked_id(session) if session is not None else None
    store = open_store(settings, spool=True)
    session_id, _exists = resolve_session(store, session, continue_, check=False)
    assistant = _assistant(settings, store, model, temperature, role_prompt(store, system, role, var), role)
    if session is None:
        announce_session(session_id, resumed=continue_)
    from chatcli.assistant import title_job
    from chatcli.conversation import show_turn
    from chatcli.notices import tell_answering

    tell_answering(store, session_id, _notice)
    turn = show_turn(assistant.turn(session_id, message_content(text, attached)), stdout_console(), stderr_console())
    if turn.status == "interrupted":
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    finish_titles([title_job(assistant, turn)], settings)


@app.command()
@handle_errors
def follow(
    session_id: SessionArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event a line: message, start, token, end.")] = False,
    redis_url: RedisUrl = None,
    reasoning: ShowReasoning = None,
) -> None:
    """Show a session's last exchange, then every new turn as it happens, and an answer being generated on
    another machine token by token, until Ctrl-C (exit 130)."""
    from chatcli import follow as following

    checked_id(session_id)
    settings = settings_for(redis_url=redis_url, show_reasoning=reasoning)
    store = open_store(settings)
    following.require(store, session_id)
    sink: Any = following.JsonLines(session_id)
    if not as_json:
        sink = following.Transcript(stdout_console(), settings.show_reasoning)
    following.follow(store, session_id, sink)


# -- search -----------------------------------------------------------------------------------------


@app.command()
@handle_errors
def search(
    query: Annotated[
        list[str],
        typer.Argument(
            help='Words (every one must occur, in any case) and/or a "quoted phrase" (in single quotes for the shell).',
            show_default=False,
        ),
    ],
    session: Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only sessions active since: 12h, 30d, 2w, or a date (2026-11-01).")
    ] = None,
    role: Annotated[str | None, typer.Option("--role", help="Only user or only assistant messages.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Stop after N hits (0: every hit).")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"query", "hits": [...], "stats"} as JSON, hit by hit.')
    ] = False,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Also search sessions other programs wrote (not in the index).")
    ] = False,
    where: Annotated[
        str, typer.Option("--filter", help="Filter messages here, in Redis (Lua: fewer bytes moved), or auto.")
    ] = "auto",
    redis_url: RedisUrl = None,
) -> None:
    """Search every session, newest activity first, each newest message first; `chatcli chat -s ID` continues
    a session found."""
    from chatcli import search as searching
    from chatcli.matching import parse_query, parse_since

    parsed = parse_query(utf8_text("the query", " ".join(query)))
    cutoff = parse_since(since) if since is not None else None
    if where not in ("auto", *searching.SIDES):
        raise UsageError(f"--filter must be auto, here or redis, got {where!r}")
    if role is not None and role not in searching.ROLES:
        raise UsageError(f"--role must be user or assistant, got {role!r}")
    session = checked_id(session) if session is not None else None
    settings = settings_for(redis_url=redis_url)
    side = searching.auto_side(settings.redis_url) if where == "auto" else where
    store = open_store(settings)
    found = searching.Search(store, parsed, role=role, since=cutoff, session=session, include_unindexed=all_, side=side)
    searching.show(found, limit, stdout_console(), stderr_console(), as_json=as_json)


# -- history ----------------------------------------------------------------------------------------


def _skipped_notice(count: int) -> None:
    if count:
        render.print_notice(stderr_console(), f"(skipped {count} stored entries that are not readable messages)")


@history_app.command("show")
@handle_errors
def history_show(
    session_id: SessionArg,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"session", "header", "messages"} as JSON.')] = False,
    last: Annotated[int | None, typer.Option("--last", "-n", min=1, help="Only the last N messages.")] = None,
    redis_url: RedisUrl = None,
    reasoning: ShowReasoning = None,
    source: SourceOpt = "chatcli",
) -> None:
    """Show a session's conversation, oldest first."""
    checked_id(session_id)
    settings = settings_for(redis_url=redis_url, show_reasoning=reasoning)
    store = open_source(settings, source)
    store.require(session_id)
    skipped = [0]
    if last is not None:
        window = store.window(session_id, min(last, MAX_LIST_LENGTH))
        entries: Any = window.messages
        skipped[0] = window.skipped
    else:
        entries = store.iter_messages(session_id, skipped=skipped)
    if as_json:
        exporting.write_json(
            sys.stdout, session_id, entries, exporting.session_header(session_id, store.get_meta(session_id))
        )
    else:
        render.print_messages(stdout_console(), entries, show_reasoning=settings.show_reasoning)
    _skipped_notice(skipped[0])


@history_app.command("export")
@handle_errors
def history_export(
    session_id: SessionArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, jsonl or markdown.")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    redis_url: RedisUrl = None,
    source: SourceOpt = "chatcli",
) -> None:
    """Export a session (oldest first) as json, jsonl or markdown."""
    check_export_target(fmt, output, force)
    checked_id(session_id)
    store = open_source(settings_for(redis_url=redis_url), source)
    store.require(session_id)
    skipped = [0]
    header = exporting.session_header(session_id, store.get_meta(session_id))
    write_export(session_id, store.iter_messages(session_id, skipped=skipped), header, fmt, output)
    _skipped_notice(skipped[0])


def check_export_target(fmt: str, output: Path | None, force: bool) -> None:
    if fmt not in exporting.FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(exporting.FORMATS)}")
    if output is not None and output.is_dir():
        raise UsageError(f"{output} is a directory: give a file name")
    if output is not None and output.exists() and not force:
        raise UsageError(f"{output} exists: pass --force to replace it")


def write_export(name: str, entries: Any, header: dict[str, Any], fmt: str, output: Path | None) -> None:
    """Stdout, or OUTPUT written atomically (and a notice of how many messages went there)."""
    writer = exporting.WRITERS[fmt]
    if output is None:
        writer(sys.stdout, name, entries, header)
    else:
        count = write_atomically(output, lambda out: writer(out, name, entries, header))
        render.print_notice(stderr_console(), f"wrote {count} messages to {output}")


@history_app.command("import")
@handle_errors
def history_import(
    file: Annotated[Path, typer.Argument(help="A chatcli json/jsonl export, or OpenAI messages JSON.")],
    session: Annotated[
        str | None,
        typer.Option("--session", "-s", help="Session id; default: the export's session, else the file name."),
    ] = None,
    append: Annotated[bool, typer.Option("--append", help="Add to an existing session.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing session.")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Import a conversation: all of it or nothing. Refuses an existing session unless --append or --replace.

    Leading system messages become the session's system prompt (with --append too: it replaces the
    session's prompt); a system message after the first other message is kept in the conversation."""
    from chatcli.importing import read_conversation

    if append and replace:
        raise UsageError("--append and --replace exclude each other")
    conversation = read_conversation(file)  # validated completely before anything is written
    session_id = checked_id(session or conversation.session or file.stem)
    # the export's header (title, model, times...) restores the session as it was; appended to a session,
    # only its system prompt is taken, as the file's leading system messages are
    header = {} if append else dict(conversation.header)
    system = conversation.header.get("system") or conversation.system
    meta = {**header, **({"system": system} if system else {})}
    store = open_store(settings_for(redis_url=redis_url))
    mode = "append" if append else "replace" if replace else "new"
    from chatcli.transfers import import_session

    import_session(store, session_id, conversation.entries, mode=mode, meta=meta)
    count = len(conversation.entries)
    done = f"imported {_plural(count, 'message')} into session {session_id}"
    if system:  # the header's or the leading system message(s): metadata, not list elements
        replaced = " (replacing the session's previous one, if any)" if append else ""
        source = "export's" if conversation.header.get("system") else "file's leading system message"
        done += f"; its system prompt is now the {source}{replaced}"
    render.print_notice(stderr_console(), done)


# -- LangGraph threads (chatcli.threads) --------------------------------------------------------------


def open_threads(redis_url: str | None) -> Any:
    from chatcli import redis_server
    from chatcli.threads import ThreadStore

    conn = redis_server.connect(settings_for(redis_url=redis_url))
    return ThreadStore(conn.client, conn.where)


@threads_app.command("list")
@handle_errors
def threads_list(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"threads": [...]} as JSON.')] = False,
    redis_url: RedisUrl = None,
) -> None:
    """List LangGraph threads (id, messages, last activity), most recently active first."""
    rows = open_threads(redis_url).list_threads()
    if as_json:
        threads = [
            {"id": r.id, "messages": r.messages, "updated": render.iso(r.updated), "title": r.title} for r in rows
        ]
        sys.stdout.write(json.dumps({"threads": threads}, ensure_ascii=False, indent=2) + "\n")
    elif rows:
        render.print_sessions(stdout_console(), rows)
    else:
        render.print_notice(stderr_console(), "no LangGraph threads in this Redis")


@threads_app.command("show")
@handle_errors
def threads_show(
    thread_id: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"session", "header", "messages"} as JSON.')] = False,
    redis_url: RedisUrl = None,
    reasoning: ShowReasoning = None,
) -> None:
    """Show a LangGraph thread's messages (its newest checkpoint), oldest first."""
    from chatcli.threads import export_header

    settings = settings_for(redis_url=redis_url, show_reasoning=reasoning)
    thread = open_threads(redis_url).get(thread_id)
    entries = thread.messages()
    if as_json:
        exporting.write_json(sys.stdout, thread.id, entries, export_header(thread))
    else:
        render.print_messages(stdout_console(), entries, show_reasoning=settings.show_reasoning)
    _skipped_notice(thread.skipped)


@threads_app.command("export")
@handle_errors
def threads_export(
    thread_id: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, jsonl or markdown.")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Export a LangGraph thread (oldest first) as json, jsonl or markdown: `history import` reads the json."""
    from chatcli.threads import export_header

    check_export_target(fmt, output, force)
    thread = open_threads(redis_url).get(thread_id)
    write_export(thread.id, thread.messages(), export_header(thread), fmt, output)
    _skipped_notice(thread.skipped)


# -- sessions ---------------------------------------------------------------------------------------


@sessions_app.command("list")
@handle_errors
def sessions_list(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"sessions": [...], "next_cursor"} as JSON.')] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="Sessions per page.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of the previous page.")] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", "-a", help="Also find sessions other programs wrote (SCAN), marked unindexed."),
    ] = False,
    redis_url: RedisUrl = None,
    source: SourceOpt = "chatcli",
) -> None:
    """List sessions, most recently active first."""
    if source != "chatcli":
        if cursor is not None or all_:
            raise UsageError("--cursor and --all are for chatcli's own sessions, not --source " + source)
        rows = open_source(settings_for(redis_url=redis_url), source).list_sessions(limit)
        return print_session_rows(rows, None, as_json, all_)
    offset = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise UsageError(f"invalid --cursor {cursor!r}: pass the next_cursor of a previous page")
        offset = int(cursor)
    catalog = open_catalog(settings_for(redis_url=redis_url))
    unscanned = offset == 0 and not all_ and catalog.notice_unindexed() is None  # sessions other programs wrote
    rows, next_offset = catalog.list_sessions(limit=limit, offset=offset)
    if unscanned:
        render.print_notice(stderr_console(), "a large database: `--all` also finds sessions other programs wrote")
    if all_ and next_offset is None:  # unindexed sessions come after the last page of the index
        rows += catalog.unindexed_sessions()
    next_cursor = str(next_offset) if next_offset is not None else None
    print_session_rows(rows, next_cursor, as_json, all_)


def print_session_rows(rows: list[Any], next_cursor: str | None, as_json: bool, all_: bool) -> None:
    if as_json:
        payload = {
            "sessions": [
                {
                    "id": r.id,
                    "messages": r.messages,
                    "created": render.iso(r.created),
                    "updated": render.iso(r.updated),
                    "title": r.title,
                    **({"indexed": r.indexed} if all_ else {}),
                }
                for r in rows
            ],
            "next_cursor": next_cursor,
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    console = stdout_console()
    notices = console if console.is_terminal else stderr_console()  # piped rows stay rows
    if not rows:
        render.print_notice(notices, "no sessions yet: start one with `chatcli chat`")
        return
    render.print_sessions(console, rows)
    if next_cursor is not None:
        render.print_notice(notices, f"more: chatcli sessions list --cursor {next_cursor}")


@sessions_app.command("delete")
@handle_errors
def sessions_delete(
    session_ids: Annotated[list[str], typer.Argument(help="Session ids (exact: no patterns).", show_default=False)],
    redis_url: RedisUrl = None,
) -> None:
    """Delete sessions. If any id does not exist, nothing is deleted."""
    for sid in session_ids:
        checked_id(sid)
    store = open_store(settings_for(redis_url=redis_url))
    missing = [sid for sid in session_ids if not store.exists(sid)]
    if missing:
        raise NotFoundError("no session named " + ", ".join(repr(m) for m in missing) + "; nothing deleted")
    store.delete(session_ids)
    render.print_notice(stderr_console(), f"deleted {len(session_ids)} session{'s' if len(session_ids) != 1 else ''}")


DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="List what would be deleted; delete nothing.")]
NEWEST_NAMED = 3  # how many of the sessions to delete a confirmation names


def _doomed(count: int, newest: list[str]) -> str:
    """'12 sessions (newest: a, b, c and 9 more)': what a confirmation names."""
    shown = ", ".join(newest[:NEWEST_NAMED])
    more = f" and {count - len(newest[:NEWEST_NAMED])} more" if count > NEWEST_NAMED else ""
    return f"{_plural(count)} ({'newest: ' if count > 1 else ''}{shown}{more})"


def _dry_run(catalog: Any, ids: list[str], what: str) -> None:
    """`--dry-run`: the sessions that would go, newest activity first, as `sessions list` shows them."""
    rows = catalog.describe_ids(ids)
    render.print_sessions(stdout_console(), rows)
    render.print_notice(stderr_console(), f"would delete {_plural(len(ids))} {what}; nothing deleted (--dry-run)")


@sessions_app.command("clear")
@handle_errors
def sessions_clear(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRun = False,
    redis_url: RedisUrl = None,
) -> None:
    """Delete every session in chatcli's index (other keys in Redis are left alone)."""
    catalog = open_catalog(settings_for(redis_url=redis_url))
    count = catalog.session_count()
    if count == 0:
        render.print_notice(stderr_console(), "no sessions to delete")
        return
    if dry_run:
        _dry_run(catalog, catalog.newest(count), "(every session)")
        return
    _confirm(f"all {_doomed(count, catalog.newest(NEWEST_NAMED))}", yes)
    deleted = catalog.clear()
    render.print_notice(stderr_console(), f"deleted {_plural(deleted)}")


def _confirm(what: str, yes: bool) -> None:
    """Ask before deleting; stdin not a terminal and no --yes: exit 2, nothing changed."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"would delete {what}: pass --yes to confirm (stdin is not a terminal)")
    if not typer.confirm(f"Delete {what}?", default=False, err=True):
        render.print_notice(stderr_console(), "nothing deleted")
        raise typer.Exit(int(ExitCode.ERROR))


def _plural(count: int, word: str = "session") -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


@sessions_app.command("title")
@handle_errors
def sessions_title(
    session_id: SessionArg,
    title: Annotated[str, typer.Argument(help="The title (shown by `sessions list`).", show_default=False)],
    redis_url: RedisUrl = None,
) -> None:
    """Set a session's title (a title written by the model, CHATCLI_AUTO_TITLE, never replaces it)."""
    checked_id(session_id)
    text = " ".join(utf8_text("the title", title).split())
    if not text:
        raise UsageError("the title is empty")
    store = open_store(settings_for(redis_url=redis_url))
    if not store.set_fields(session_id, {"title": text, "title_by": "user"}):
        raise NotFoundError(f"no session named {session_id!r}")
    render.print_notice(stderr_console(), f"title of {session_id} set")


@sessions_app.command("adopt")
@handle_errors
def sessions_adopt(redis_url: RedisUrl = None) -> None:
    """Add sessions other programs wrote (`sessions list --all` shows them) to chatcli's index."""
    adopted = open_catalog(settings_for(redis_url=redis_url)).adopt()
    render.print_notice(stderr_console(), f"adopted {_plural(len(adopted))}" if adopted else "nothing to adopt")


@sessions_app.command("rename")
@handle_errors
def sessions_rename(
    old: Annotated[str, typer.Argument(help="The session to rename.", show_default=False)],
    new: Annotated[str, typer.Argument(help="Its new id (must not exist).", show_default=False)],
    redis_url: RedisUrl = None,
) -> None:
    """Rename a session (messages, metadata, place in the list)."""
    checked_id(old)
    checked_id(new)
    from chatcli.transfers import copy_session

    count = copy_session(open_store(settings_for(redis_url=redis_url)), old, new, move=True)
    render.print_notice(stderr_console(), f"renamed {old} to {new} ({_plural(count, 'message')})")


@sessions_app.command("fork")
@handle_errors
def sessions_fork(
    session_id: SessionArg,
    new: Annotated[str, typer.Argument(help="The id of the copy (must not exist).", show_default=False)],
    redis_url: RedisUrl = None,
) -> None:
    """Copy a session, to try another branch of the conversation without touching the original."""
    checked_id(session_id)
    checked_id(new)
    from chatcli.transfers import copy_session

    count = copy_session(open_store(settings_for(redis_url=redis_url)), session_id, new)
    render.print_notice(stderr_console(), f"forked {session_id} as {new} ({_plural(count, 'message')})")


@sessions_app.command("prune")
@handle_errors
def sessions_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Idle longer than this: 90s, 15m, 12h, 30d, 2w.", show_default=False)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRun = False,
    redis_url: RedisUrl = None,
) -> None:
    """Delete sessions idle longer than --older-than (by their last activity in the index)."""
    import time

    from chatcli.settings import parse_duration

    age = parse_duration(older_than)
    catalog = open_catalog(settings_for(redis_url=redis_url))
    ids = catalog.idle_sessions(time.time() - age)
    if not ids:
        render.print_notice(stderr_console(), f"no sessions idle longer than {older_than}")
        return
    newest = ids[::-1]  # idle_sessions gives them oldest first
    if dry_run:
        _dry_run(catalog, newest, f"idle longer than {older_than}")
        return
    _confirm(f"{_doomed(len(ids), newest)} idle longer than {older_than}", yes)
    deleted = catalog.delete_in_batches(ids)
    render.print_notice(stderr_console(), f"deleted {_plural(deleted)}")


# -- roles ------------------------------------------------------------------------------------------

RoleName = Annotated[str, typer.Argument(help="The role's name.", show_default=False)]


def open_roles(redis_url: str | None) -> Any:
    from chatcli.roles import RoleBook

    return RoleBook(open_store(settings_for(redis_url=redis_url)))


@roles_app.command("add")
@handle_errors
def roles_add(
    name: RoleName,
    prompt: Annotated[
        str | None, typer.Argument(help="The system prompt; {name} placeholders are filled by --var.")
    ] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="Read the prompt from this file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the role if it exists.")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Add a role: a named system prompt for `chat --role NAME` and `ask --role NAME`."""
    from chatcli.files import read_text
    from chatcli.roles import checked_name

    checked_name(name)
    if (prompt is None) == (from_file is None):
        raise UsageError("give the prompt as an argument or with --from FILE (one of them)")
    if from_file is not None:
        if not from_file.is_file():
            raise NotFoundError(f"no such file: {from_file}")
        prompt = read_text(from_file)
    assert prompt is not None
    if not open_roles(redis_url).add(name, prompt, replace=force):
        raise UsageError(f"role {name!r} exists: pass --force to replace it")
    render.print_notice(stderr_console(), f"role {name} saved")


@roles_app.command("list")
@handle_errors
def roles_list(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"roles": [{"name", "prompt"}]} as JSON.')] = False,
    redis_url: RedisUrl = None,
) -> None:
    """List the roles: name, placeholders and the prompt's first line."""
    from chatcli.roles import placeholders

    roles = open_roles(redis_url).all()
    if as_json:
        payload = {"roles": [{"name": r.name, "prompt": r.prompt} for r in roles]}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    console = stdout_console()
    if not roles:
        render.print_notice(console, 'no roles yet: add one with `chatcli roles add NAME "prompt"`')
        return
    width = max(len(r.name) for r in roles)
    for role in roles:
        try:
            needs = " ".join("{" + p + "}" for p in placeholders(role.prompt))
        except UsageError:
            needs = ""
        line = f"{role.name:<{width}}  {needs + '  ' if needs else ''}{role.summary}"
        console.print(render.sanitize(line), markup=False, highlight=False, soft_wrap=True, overflow="ellipsis")


@roles_app.command("show")
@handle_errors
def roles_show(name: RoleName, redis_url: RedisUrl = None) -> None:
    """Print a role's prompt as it is stored."""
    prompt = open_roles(redis_url).get(name).prompt
    sys.stdout.write(render.sanitize(prompt) if sys.stdout.isatty() else prompt)
    sys.stdout.write("" if prompt.endswith("\n") else "\n")


@roles_app.command("delete")
@handle_errors
def roles_delete(name: RoleName, redis_url: RedisUrl = None) -> None:
    """Delete a role (sessions started with it keep their system prompt)."""
    open_roles(redis_url).delete(name)
    render.print_notice(stderr_console(), f"role {name} deleted")


# -- doctor -----------------------------------------------------------------------------------------


@app.command()
@handle_errors
def doctor(
    model: Model = None,
    base_url: BaseUrl = None,
    redis_url: RedisUrl = None,
) -> None:
    """Check the setup, one line each: settings and where they came from, CHATCLI_HOME writable, Redis (a
    test turn written and removed as your Redis user), the model endpoint, the model and the API key.
    Exit code 1 when any check fails."""
    from chatcli import doctor as checks

    try:
        settings = settings_for(model=model, base_url=base_url, redis_url=redis_url)
    except UsageError as exc:
        results = [checks.Check(False, "settings", str(exc))]
    else:
        results = checks.run(settings)
    render.print_checks(stdout_console(), results)
    if not all(c.ok for c in results):
        raise typer.Exit(int(ExitCode.ERROR))


# -- the spool --------------------------------------------------------------------------------------


def _local_spool() -> Any:
    from chatcli.spool import Spool

    return Spool(load_settings().home)


SeqArgs = Annotated[list[int] | None, typer.Argument(help="Spool record numbers (`chatcli spool list`).")]


@spool_app.command("list")
@handle_errors
def spool_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """List the spooled turns: waiting for a Redis (pending), refused by it for good (set_aside), or unreadable."""
    rows = _local_spool().rows()
    if as_json:
        payload = [
            {
                "record": r.seq,
                "state": r.state,
                "session": r.session,
                "redis": r.target,
                "prefix": r.prefix,
                "turn": r.turn,
                "messages": r.messages,
                "added": render.iso(r.added),
                "reason": r.reason,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps({"records": payload}, ensure_ascii=False, indent=2) + "\n")
        return
    console = stdout_console()
    if not rows:
        render.print_notice(console, "the spool is empty: Redis has every turn")
        return
    for r in rows:
        line = f"{r.seq:>5}  {r.state:<10} {render.iso(r.added)}  {r.session!r} ({_plural(r.messages, 'message')})"
        line += f"  for {r.target} {r.prefix}"
        if r.reason:
            line += f"  [{r.reason}]"
        console.print(render.sanitize(line), markup=False, highlight=False, soft_wrap=True)


@spool_app.command("send")
@handle_errors
def spool_send(
    records: SeqArgs = None,
    redis_url: RedisUrl = None,
) -> None:
    """Write spooled turns to the Redis in use now: by default every turn waiting for another Redis (another
    URL, port or host name for the same server, say); with record numbers, those (set-aside ones included).
    A turn Redis already has is not written twice."""
    from chatcli import spooled
    from chatcli.store import SessionStore

    settings = settings_for(redis_url=redis_url)
    store = open_store(settings)
    assert isinstance(store, SessionStore)
    spool = _local_spool()
    rows = spool.rows()
    known = {r.seq for r in rows}
    missing = [seq for seq in records or [] if seq not in known]
    if missing:
        raise NotFoundError("no spool record " + ", ".join(str(m) for m in missing) + "; nothing sent")
    if records:
        chosen = [r for r in rows if r.seq in set(records)]
        unreadable = [r.seq for r in chosen if r.state == "unreadable"]
        if unreadable:
            raise UsageError(f"spool record {unreadable[0]} cannot be read: export it with `chatcli spool export`")
    else:
        chosen = [r for r in rows if r.state == "pending" and (r.target, r.prefix) != (store.where, store.prefix)]
    moved = spool.retarget([r.seq for r in chosen], store.where, store.prefix)
    written = spooled.flush(store, spool, lambda _event: None)
    left = [r for r in spool.rows() if r.seq in {c.seq for c in chosen}]
    render.print_notice(
        stderr_console(),
        f"sent {_plural(moved, 'turn')} to Redis at {store.where}: {written} written, "
        f"{moved - written - len(left)} were there already" + (f", {len(left)} still spooled" if left else ""),
    )
    if left:
        raise typer.Exit(int(ExitCode.STORAGE))


@spool_app.command("export")
@handle_errors
def spool_export(
    record: Annotated[int, typer.Argument(help="The spool record number.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Write one spooled turn as a chatcli JSON export (`chatcli history import` reads it); an unreadable
    record is written as the text it holds."""
    row = _local_spool().row(record)
    if row is None:
        raise NotFoundError(f"no spool record {record}")

    def write(out: Any) -> int:
        if row.record is None:
            out.write(row.text + "\n")
            return 0
        return exporting.write_json(out, row.session, row.record.entries)

    if output is None:
        write(sys.stdout)
    else:
        write_atomically(output, write)
        render.print_notice(stderr_console(), f"wrote spool record {record} to {output}")


@spool_app.command("drop")
@handle_errors
def spool_drop(
    records: Annotated[list[int], typer.Argument(help="Spool record numbers.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete spooled turns for good (export them first if you may want them)."""
    spool = _local_spool()
    missing = [seq for seq in records if spool.row(seq) is None]
    if missing:
        raise NotFoundError("no spool record " + ", ".join(str(m) for m in missing) + "; nothing dropped")
    _confirm(f"{_plural(len(records), 'spooled turn')} for good", yes)
    render.print_notice(stderr_console(), f"dropped {_plural(spool.drop(records), 'spooled turn')}")


# -- the embedded server ----------------------------------------------------------------------------


@server_app.command("status")
@handle_errors
def server_status() -> None:
    """Whether chatcli's embedded redis-server runs, and where."""
    from chatcli import redis_server

    settings = settings_for()
    status = redis_server.embedded_status(settings.home)
    console = stdout_console()
    if settings.redis_url:
        from chatcli.settings import redact_url

        render.print_notice(
            console, f"CHATCLI_REDIS_URL is set ({redact_url(settings.redis_url)}): the embedded server is not used"
        )
    state = "running" if status.running else "running but not answering" if status.not_answering else "stopped"
    lines = [
        f"embedded server: {state}",
        f"socket:          {status.socket}",
        f"data:            {status.data_dir}",
        f"binary:          {status.binary or 'none found (install redis-server)'}",
    ]
    if status.running:
        lines += [
            f"pid:             {status.pid}",
            f"version:         {status.version}",
            f"keys:            {status.keys}",
        ]
    if status.not_answering:
        lines += [
            f"pid:             {status.pid or 'unknown'}",
            f"problem:         {status.not_answering}; `chatcli server stop` ends it",
        ]
    lines.append(f"ask worker:      {_worker_state(settings)}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if status.not_answering:
        raise typer.Exit(int(ExitCode.STORAGE))
    if not status.running:
        raise typer.Exit(int(ExitCode.ERROR) if status.binary is None else 0)


def _worker_state(settings: Settings) -> str:
    from chatcli.worker import STATUS, query

    if not settings.worker:
        return "off (CHATCLI_WORKER=0)"
    workers = query(settings.home, STATUS)
    if not workers:
        return "not running (the next `ask` starts one)"
    return "; ".join(
        f"running (pid {w.get('pid')}, {w.get('served')} command{'s' if w.get('served') != 1 else ''} "
        f"since {render.short_time(w.get('since'))})"
        for w in workers
    )


@server_app.command("stop")
@handle_errors
def server_stop() -> None:
    """Stop the embedded redis-server, answering or not (its data stays on disk; the next command starts it)."""
    from chatcli import redis_server
    from chatcli.worker import stop_workers

    settings = settings_for()
    if stop_workers(settings.home):
        render.print_notice(stderr_console(), "ask worker stopped")
    if redis_server.stop_embedded(settings.home):
        render.print_notice(stderr_console(), "embedded server stopped")
    else:
        render.print_notice(stderr_console(), "embedded server was not running")


def main() -> None:
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:  # started with the stream closed (`chatcli ... >&-`, `<&-`)
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115
    try:
        app()
    except StorageError as exc:  # pragma: no cover - raised outside a command
        render.print_error(stderr_console(), str(exc))
        sys.exit(int(exc.exit_code))
