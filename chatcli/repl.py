"""The interactive loop: prompt-toolkit input, slash commands, Ctrl-C at the prompt.

The loop takes callables (read a line, send a message, run a command) so it can be driven without a
terminal; `make_reader` builds the prompt-toolkit one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatcli.errors import ChatcliError
from chatcli.notices import Notices

EXIT = object()  # returned by a command to end the loop


@dataclass
class Command:
    name: str
    args: str  # usage of the arguments, for /help
    help: str
    run: Callable[[str], Any]


def make_reader(
    history_file: Path,
    prompt: Callable[[], str],
    command_names: Callable[[], list[str]],
    draft: Callable[[], str] = str,
    drawn: Callable[[], None] = lambda: None,
) -> Callable[[], str]:
    """A prompt-toolkit line reader: persistent input history, Ctrl-R search, suggestions from history,
    Esc+Enter for a newline (pasted text keeps its newlines), Tab completion of slash commands, Ctrl-X Ctrl-E
    to edit the line in $VISUAL or $EDITOR. `draft()` is the text each prompt starts with; `drawn()` is called
    each time the prompt has been drawn."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    history_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not history_file.exists():
        os.close(os.open(history_file, os.O_WRONLY | os.O_CREAT, 0o600))

    paths = PathCompleter(expanduser=True)

    class SlashCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Any:
            text = document.text_before_cursor
            if text.startswith("/attach "):  # the rest is a path
                yield from paths.get_completions(Document(text.removeprefix("/attach ")), complete_event)
            elif text.startswith("/") and " " not in text:
                for name in command_names():
                    if name.startswith(text[1:]):
                        yield Completion("/" + name, start_position=-len(text))

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event: Any) -> None:
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt())

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_file)),
        auto_suggest=AutoSuggestFromHistory(),
        completer=SlashCompleter(),
        complete_while_typing=False,
        key_bindings=bindings,
        enable_history_search=False,
        enable_open_in_editor=True,
    )
    session.app.after_render += lambda _app: drawn()

    def read() -> str:
        return session.prompt(prompt, default=draft())

    return read


def run_loop(
    read: Callable[[], str],
    send: Callable[[str], None],
    commands: dict[str, Command],
    say: Callable[[str], None],
) -> None:
    """Read lines until /exit (or `exit` or `quit` alone), Ctrl-D, or Ctrl-C twice at an empty prompt. One bad
    turn never ends it. A line starting with "//" is sent with one "/" less."""
    interrupted = False
    while True:
        try:
            line = read()
        except EOFError:
            return
        except KeyboardInterrupt:
            if interrupted:
                return
            interrupted = True
            try:
                say("(press Ctrl-C again or Ctrl-D to exit)")
            except KeyboardInterrupt:  # pressed again before the prompt took the terminal back: that is twice
                return
            continue
        interrupted = False
        text = line.strip()
        if not text:
            continue
        if text in ("exit", "quit"):  # as in `llm chat`; "//exit" would send it
            return
        if text.startswith("/") and not text.startswith("//"):
            name, _, arg = text[1:].partition(" ")
            command = commands.get(name)
            if command is None:
                say(unknown_command(name, commands))
                continue
            if not command.args and arg.strip():
                say(f"usage: /{name} (it takes no argument)")
                continue
            try:
                if command.run(arg.strip()) is EXIT:
                    return
            except (ChatcliError, OSError) as exc:  # a failed command never ends the REPL
                say(f"/{name}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if text.startswith("//"):
            line = line.replace("//", "/", 1)  # "//path" sends a message that starts with "/"
        send(line)


def unknown_command(name: str, commands: dict[str, Command]) -> str:
    """One line: the closest commands, where /help is, and how to send the text as a message."""
    import difflib

    close = difflib.get_close_matches(name, [n for n in commands if n != "help"], n=3, cutoff=0.6)
    close += [n for n in commands if n.startswith(name[:2]) and n not in close and n != "help"][: 3 - len(close)]
    guess = f" (did you mean {', '.join('/' + n for n in close)}?)" if name and close else ""
    return f"unknown command /{name}{guess}; /help lists them; //{name} sends it as a message"


class ChatRepl:
    """`chatcli chat` in a terminal: the loop above wired to a session, its store and the assistant."""

    def __init__(self, settings: Any, store: Any, assistant: Any, session_id: str, console: Any, err: Any):
        self.settings = settings
        self.store = store
        self.assistant = assistant
        self.session_id = session_id
        self.console = console
        self.err = err
        self.own_turns: list[str] = []  # ids of the turns this REPL saved in this session, oldest first
        self.titles: list[Any] = []  # threads writing a title (CHATCLI_AUTO_TITLE)
        self.news = Notices(store, session_id)  # other clients' turns and answers (chatcli.notices)
        self.attachments: list[dict[str, Any]] = []  # content blocks that go with the next message (/attach)
        self.commands = {
            c.name: c
            for c in [
                Command("help", "", "list the commands", self.cmd_help),
                Command("exit", "", "leave (Ctrl-D does too)", lambda _a: EXIT),
                Command("history", "[N]", "show the last N messages (default 10)", self.cmd_history),
                Command("clear", "", "delete every message of this session (asks first)", self.cmd_clear),
                Command("undo", "", "remove your last question and its answer", self.cmd_undo),
                Command("retry", "", "ask your last question again, replacing its answer", self.cmd_retry),
                Command("attach", "[PATH]", "attach a file to your next message (no PATH: list them)", self.cmd_attach),
                Command(
                    "copy", "[code [N]]", "copy the last answer, or its Nth code block, to the clipboard", self.cmd_copy
                ),
                Command("edit", "[TEXT]", "send TEXT, else your last question, edited in $EDITOR", self.cmd_edit),
                Command("system", "[TEXT]", "show or set this session's system prompt", self.cmd_system),
                Command("model", "[NAME]", "show or set this session's model (kept with it)", self.cmd_model),
                Command("title", "[TEXT]", "show or set this session's title", self.cmd_title),
                Command("role", "[NAME [k=v…]]", "use a role's prompt as this session's system prompt", self.cmd_role),
                Command("session", "[ID]", "show the session id, or switch to another session", self.cmd_session),
                Command("export", "FILE", "write this session to FILE (.md, .jsonl, else json)", self.cmd_export),
                Command("tokens", "", "token usage of this session", self.cmd_tokens),
                Command("follow", "", "watch other clients' turns and answers here, until Ctrl-C", self.cmd_follow),
                Command("search", "QUERY", 'search every session: words, or a "phrase"', self.cmd_search),
            ]
        }

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, typeahead: Callable[[], str] = str, drawn: Callable[[], None] = lambda: None) -> None:
        """`typeahead()`: what was typed before the prompt came up, the first prompt's draft; `drawn()`: called
        when a prompt has been drawn (the chain starts loading then)."""
        from chatcli import render

        drafts = [typeahead]
        read = make_reader(
            self.settings.home / "input_history",
            lambda: f"{render.sanitize(self.session_id)}> ",
            lambda: sorted(self.commands),
            lambda: drafts.pop()() if drafts else "",
            drawn,
        )
        render.print_notice(self.err, "type /help for commands, Ctrl-D to leave")
        self.news.start()
        try:
            run_loop(read, self.send, self.commands, self.say)
        finally:
            for job in self.titles:  # a title still being written is waited for, briefly
                job.join(self.settings.timeout)

    def say(self, message: str) -> None:
        from chatcli import render

        render.print_notice(self.err, message)

    def send(self, text: str | list[Any]) -> Any:
        """Send a message (text, or content blocks), with what /attach attached, and show the answer."""
        from chatcli import render
        from chatcli.compose import message_content
        from chatcli.errors import ChatcliError
        from chatcli.startup import loading

        self.news.tell(self.say)
        content = message_content(text, self.attachments) if isinstance(text, str) else text
        waiting = loading(self.assistant) and self.err.is_terminal
        status = self.err.status("loading the model client (Ctrl-C cancels this message)") if waiting else None
        try:  # Ctrl-C while the chain (or what shows a turn) is still loading: this message is not sent
            with status or contextlib.nullcontext():  # a spinner, gone once the chain is there
                from chatcli.conversation import show_turn

                turn = self.assistant.turn(self.session_id, content)
        except KeyboardInterrupt:
            self.say("(interrupted: nothing sent)")
            return None
        self.attachments = []
        try:
            shown = show_turn(turn, self.console, self.err)
        except ChatcliError as exc:  # one bad turn never ends the REPL (render scrubs secrets from it)
            render.print_error(self.err, str(exc))
            return None
        finally:
            if turn.saved:
                self.own_turns.append(turn.id)
                self.news.own(turn.id)
        from chatcli.assistant import title_job

        job = title_job(self.assistant, turn)
        if job is not None:
            self.titles.append(job)
        return shown

    # -- commands ------------------------------------------------------------------------------------
    def cmd_help(self, _arg: str) -> None:
        for c in self.commands.values():
            self.say(f"/{c.name} {c.args}".ljust(18) + c.help)
        self.say("//text sends /text; exit or quit alone leaves too")
        self.say("Esc+Enter inserts a newline; Ctrl-R searches input history; Ctrl-C stops an answer")
        self.say("Ctrl-X Ctrl-E edits the line in $VISUAL or $EDITOR and sends it")

    def cmd_history(self, arg: str) -> None:
        from chatcli import render
        from chatcli.errors import UsageError
        from chatcli.settings import MAX_LIST_LENGTH

        digits = arg.lstrip("0")
        if arg and not (digits.isascii() and digits.isdigit()):
            raise UsageError(f"not a number of messages: {arg!r} (usage: /history [N], N from 1; default 10)")
        count = min(int(digits[:11]), MAX_LIST_LENGTH) if arg else 10
        window = self.store.window(self.session_id, count)
        if not window.messages:
            self.say("(no messages yet)")
        render.print_messages(self.console, window.messages, show_reasoning=self.settings.show_reasoning)

    def _confirm(self, question: str) -> bool:
        from prompt_toolkit import prompt

        try:
            return prompt(f"{question} [y/N] ").strip().lower() in ("y", "yes")
        except (EOFError, KeyboardInterrupt):
            return False

    def cmd_clear(self, _arg: str) -> None:
        count = self.store.count(self.session_id)
        if not count:
            self.say("(this session has no messages)")
        elif self._confirm(f"Delete all {count} messages of {self.session_id}?"):
            self.store.clear_messages(self.session_id)
            self.say(f"deleted {count} messages")
        else:
            self.say("nothing deleted")

    def _take_back(self) -> Any:
        """Remove this REPL's newest turn from the session (not another client's): the RemovedTurn, or None."""
        while self.own_turns:
            removed = self.store.remove_turn(self.session_id, self.own_turns.pop())
            if removed is not None:
                if removed.newer:
                    self.say(f"({removed.newer} newer messages from another client stay where they are)")
                return removed
        return None

    def cmd_undo(self, _arg: str) -> None:
        removed = self._take_back()
        self.say("removed your last question and its answer" if removed else "(nothing of yours to undo)")

    def cmd_retry(self, _arg: str) -> None:
        from chatcli.records import TurnRecord, turn_of

        removed = self._take_back()
        if removed is None:
            self.say("(nothing of yours to retry)")
            return
        before = len(self.own_turns)
        self.send(removed.entries[0].get("data", {}).get("content", ""))  # attachments too
        if len(self.own_turns) == before:  # nothing new was saved: put the old exchange back
            turn_id = turn_of(removed.entries[0].get("data", {}).get("id")) or ""
            self.store.append_turn(TurnRecord(self.session_id, removed.entries, turn_id))
            self.own_turns.append(turn_id)
            self.say("(the previous answer was kept)")

    def cmd_attach(self, arg: str) -> None:
        from chatcli.compose import attachment, describe

        if arg:
            self.attachments.append(attachment(arg))
        names = ", ".join(describe(block) for block in self.attachments)
        self.say(f"attached to your next message: {names}" if names else "(nothing attached; usage: /attach PATH)")

    def cmd_copy(self, arg: str) -> None:
        from chatcli import clipboard, exporting, reasoning
        from chatcli.errors import UsageError

        what, _, number = arg.partition(" ")
        if what not in ("", "code") or (number and not (number.isascii() and number.isdigit() and int(number))):
            raise UsageError("usage: /copy, or /copy code [N] for the Nth code block (N from 1)")
        answers = [m for m in self.store.window(self.session_id, 50).messages if exporting.role(m) == "assistant"]
        if not answers:
            self.say("(no answer to copy yet)")
            return
        text = reasoning.split_think(exporting.text(answers[-1]))[1].strip("\n")
        label = "the last answer"
        if what == "code":
            blocks, n = clipboard.code_blocks(text), int(number or 1)
            if n > len(blocks):
                self.say(f"(the last answer has {len(blocks)} code blocks)")
                return
            text, label = blocks[n - 1].removesuffix("\n"), f"code block {n} of the last answer"
        out = self.console.file
        reason = clipboard.why_not(out)
        if reason is not None:
            self.say(f"cannot copy: {reason}; /export writes the session to a file")
            return
        out.write(clipboard.osc52(text))
        out.flush()
        self.say(f"copied {label} ({len(text)} characters) to the clipboard (OSC 52)")

    def cmd_edit(self, arg: str) -> None:
        from chatcli import exporting
        from chatcli.compose import edit_text

        if not arg:
            questions = [m for m in self.store.window(self.session_id, 50).messages if exporting.role(m) == "user"]
            arg = exporting.text(questions[-1]) if questions else ""
        text = edit_text(arg)
        if text.strip():
            self.send(text)
        else:
            self.say("(empty: nothing sent)")

    def cmd_system(self, arg: str) -> None:
        if not arg:
            current = self.assistant.system or self.store.get_meta(self.session_id).get("system")
            if not current:  # the system message a LangChain app's list opens with
                from chatcli.opening import stored_system

                current = stored_system(self.store, self.session_id)
            self.say(f"system prompt: {current}" if current else "(default system prompt)")
            return
        self.assistant.system, self.assistant.role = arg, None
        self.store.set_meta(self.session_id, system=arg, role="")  # a prompt of your own: no role any more
        self.say("system prompt set for this session")

    def cmd_model(self, arg: str) -> None:
        if arg:
            from chatcli.settings import utf8_text

            self.assistant.use_model(self.session_id, utf8_text("the model name", arg))
            self.say(f"model of session {self.session_id} is now {arg}")
            return
        self.say(f"model: {self.assistant.session_model(self.session_id)}")

    def cmd_title(self, arg: str) -> None:
        if not arg:
            meta = self.store.get_meta(self.session_id)
            self.say(f"title: {meta['title']}" if meta.get("title") else "(no title: the first question is shown)")
            return
        from chatcli.settings import utf8_text

        self.store.set_meta(self.session_id, title=utf8_text("the title", arg), title_by="user")
        self.say("title set")

    def cmd_role(self, arg: str) -> None:
        from chatcli.roles import RoleBook, parse_vars

        book = RoleBook(self.store)
        if not arg:
            role = self.assistant.role or self.store.get_meta(self.session_id).get("role")
            names = ", ".join(r.name for r in book.all()) or "none yet (`chatcli roles add`)"
            self.say((f"role: {role}; " if role else "no role; ") + f"roles: {names}")
            return
        name, *pairs = arg.split()
        prompt = book.prompt_for(name, parse_vars(pairs))
        self.assistant.system, self.assistant.role = prompt, name
        self.store.set_meta(self.session_id, system=prompt, role=name)
        self.say(f"role {name}: its prompt is this session's system prompt now")

    def cmd_session(self, arg: str) -> None:
        if arg:
            from chatcli.errors import UsageError
            from chatcli.keys import validate_session_id

            try:
                validate_session_id(arg)
            except UsageError as exc:
                self.say(str(exc))
                return
            self.session_id = arg
            self.own_turns = []
            self.news = Notices(self.store, arg)
            self.assistant.system = self.assistant.role = None
        self.say(f"session: {self.session_id} ({self.store.count(self.session_id)} messages)")

    def cmd_export(self, arg: str) -> None:
        from chatcli import exporting
        from chatcli.files import write_atomically

        if not arg:
            self.say("usage: /export FILE")
            return
        path = Path(arg).expanduser()
        fmt = "markdown" if path.suffix in (".md", ".markdown") else "jsonl" if path.suffix == ".jsonl" else "json"
        if path.exists():
            self.say(f"{path} exists; choose another name")
            return
        header = exporting.session_header(self.session_id, self.store.get_meta(self.session_id))
        entries = self.store.iter_messages(self.session_id)
        count = write_atomically(path, lambda out: exporting.WRITERS[fmt](out, self.session_id, entries, header))
        self.say(f"wrote {count} messages to {path} ({fmt})")

    def cmd_tokens(self, _arg: str) -> None:
        meta = self.store.get_meta(self.session_id)
        self.say(f"tokens this session: {meta.get('input_tokens', 0)} in, {meta.get('output_tokens', 0)} out")

    def cmd_follow(self, _arg: str) -> None:
        from chatcli.follow import Transcript, follow

        self.say("following this session: Ctrl-C comes back to the prompt")
        try:
            follow(getattr(self.store, "store", self.store), self.session_id, Transcript(self.console))
        except KeyboardInterrupt:
            self.say("(stopped following)")
        self.news.start()  # what /follow showed is known

    def cmd_search(self, arg: str) -> None:
        from chatcli import search

        search.repl_search(self.store, arg, self.console, self.err, search.auto_side(self.settings.redis_url))
