"""The chat REPL driven in a real pseudo-terminal, read through a terminal emulator."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from tests.model_server import Reply
from tests.terminal import Terminal


@pytest.fixture
def term(env):
    opened: list[Terminal] = []

    def spawn(*args: str, **extra_env: str) -> Terminal:
        terminal = Terminal(list(args), {**os.environ, **extra_env})
        opened.append(terminal)
        return terminal

    yield spawn
    for terminal in opened:
        terminal.close()


def stored(rdb, session: str) -> list[dict]:
    return [json.loads(raw) for raw in reversed(rdb.lrange(f"message_store:{session}", 0, -1))]


def contents(rdb, session: str) -> list[str]:
    return [m["data"]["content"] for m in stored(rdb, session)]


def test_a_turn_streams_and_is_stored(term, model, rdb):
    t = term("chat", "-s", "r1")
    t.wait_prompt("r1", 1)
    t.enter("hello there")
    screen = t.wait_prompt("r1", 2)
    assert "r1> hello there\necho: hello there\n" in screen
    assert re.search(r"tokens: \d+ in, \d+ out", screen)  # per-turn usage, shown after the answer
    assert contents(rdb, "r1") == ["hello there", "echo: hello there"]


def test_ctrl_c_stops_a_slow_answer_and_what_is_stored_equals_the_screen(term, model, rdb):
    words = [f"w{i:03d} " for i in range(300)]
    model.script(Reply(chunks=words, delay=0.02))
    t = term("chat", "-s", "cc")
    t.wait_prompt("cc", 1)
    t.enter("count slowly")
    t.wait_for("w020")
    t.ctrl("c")
    screen = t.wait_prompt("cc", 2)
    assert "(interrupted: the partial answer was saved)" in screen
    answer = stored(rdb, "cc")[1]
    assert answer["data"]["response_metadata"]["chatcli"] == {"interrupted": True}
    partial = answer["data"]["content"]
    assert partial.startswith("w000 w001 ") and 20 <= len(partial.split()) < 300
    shown = screen.split("cc> count slowly\n", 1)[1].split("(interrupted", 1)[0]
    assert shown.split() == partial.split()  # the screen shows exactly what was stored

    t.enter("still alive?")  # the REPL did not exit
    t.wait_prompt("cc", 3)
    assert contents(rdb, "cc")[2:] == ["still alive?", "echo: still alive?"]
    assert [m["content"] for m in model.last_messages()[1:3]] == ["count slowly", partial]


def test_ctrl_c_at_the_prompt_clears_the_line_and_twice_exits(term, model):
    t = term("chat", "-s", "p")
    t.wait_prompt("p", 1)
    t.type("half typed")
    t.wait_for("p> half typed")
    t.ctrl("c")
    t.wait(lambda _s: t.screen.display[t.screen.cursor.y].rstrip() == "p>", what="a cleared line")
    t.ctrl("c")
    t.wait_for("press Ctrl-C again or Ctrl-D to exit")
    assert t.child.isalive()
    t.ctrl("c")
    assert t.exited() == 0
    assert model.chat_requests() == []


def test_ctrl_d_and_exit_leave(term, model):
    t = term("chat", "-s", "d")
    t.wait_prompt("d", 1)
    t.ctrl("d")
    assert t.exited() == 0
    t2 = term("chat", "-s", "d")
    t2.wait_prompt("d", 1)
    t2.enter("/exit")
    assert t2.exited() == 0


def test_undo_removes_the_last_exchange_and_retry_replaces_the_answer(term, model, rdb):
    t = term("chat", "-s", "u")
    t.wait_prompt("u", 1)
    t.enter("first")
    t.wait_prompt("u", 2)
    t.enter("second")
    t.wait_prompt("u", 3)
    t.enter("/undo")
    t.wait_for("removed your last question and its answer")
    assert contents(rdb, "u") == ["first", "echo: first"]

    model.script(Reply(text="a better answer"))
    t.enter("/retry")
    t.wait_for("a better answer")
    t.wait_prompt("u", 5)
    assert contents(rdb, "u") == ["first", "a better answer"]
    assert [m["content"] for m in model.last_messages()[1:]] == ["first"]  # the old answer was not sent


def test_undo_takes_back_this_clients_turn_not_the_one_another_client_wrote_since(term, model, cli, rdb):
    t = term("chat", "-s", "shared")
    t.wait_prompt("shared", 1)
    t.enter("mine")
    t.wait_prompt("shared", 2)
    assert cli("ask", "-s", "shared", "theirs").exit_code == 0  # another client, same session
    t.enter("/undo")
    t.wait_for("(2 newer messages from another client stay where they are)")
    t.wait_for("removed your last question and its answer")
    assert contents(rdb, "shared") == ["theirs", "echo: theirs"]
    t.enter("/undo")
    t.wait_for("(nothing of yours to undo)")
    assert contents(rdb, "shared") == ["theirs", "echo: theirs"]


def test_system_prompt_persists_across_processes(term, model, cli, rdb):
    t = term("chat", "-s", "sys")
    t.wait_prompt("sys", 1)
    t.enter("/system You are a pirate.")
    t.wait_for("system prompt set")
    t.enter("/exit")
    assert t.exited() == 0
    result = cli("chat", "-s", "sys", input="ahoy\n")  # a later process
    assert result.exit_code == 0
    assert model.last_messages()[0] == {"role": "system", "content": "You are a pirate."}
    assert rdb.llen("message_store:sys") == 2  # the system prompt is metadata, not a list element


def test_tab_completes_slash_commands(term, model):
    t = term("chat", "-s", "tab")
    t.wait_prompt("tab", 1)
    t.type("/he")
    t.type("\t")
    t.wait_for("tab> /help")
    t.enter()
    screen = t.wait_for("Ctrl-C stops an answer")  # the last line of /help
    assert "/undo" in screen and "/export FILE" in screen
    assert model.chat_requests() == []


def test_unknown_command_is_a_hint_not_a_message(term, model):
    t = term("chat", "-s", "unk")
    t.wait_prompt("unk", 1)
    t.enter("/frobnicate")
    t.wait_for("unknown command /frobnicate")
    t.enter("//etc/hosts is a path")  # a doubled slash sends a message that starts with "/"
    t.wait_prompt("unk", 3)
    assert [r["messages"][-1]["content"] for r in model.chat_requests()] == ["/etc/hosts is a path"]


def test_multiline_input_arrives_as_one_message(term, model):
    t = term("chat", "-s", "ml")
    t.wait_prompt("ml", 1)
    t.type("line one")
    t.type("\x1b\r")  # Esc+Enter: a newline, not a submit
    t.type("line two")
    t.enter()
    t.wait_prompt("ml", 2)
    t.type("\x1b[200~pasted one\npasted two\x1b[201~")  # bracketed paste keeps its newlines
    t.enter()
    t.wait_prompt("ml", 3)
    sent = [r["messages"][-1]["content"] for r in model.chat_requests()]
    assert sent == ["line one\nline two", "pasted one\npasted two"]


@pytest.mark.parametrize("kind", ["list", "code"])
def test_a_2000_line_answer_shows_every_line_once_and_in_order(term, model, kind):
    if kind == "list":
        text = "".join(f"{i}. line {i:04d}\n" for i in range(1, 2001))
    else:
        text = "```python\n" + "".join(f"x = {i}  # line {i:04d}\n" for i in range(1, 2001)) + "```\n"
    model.script(Reply(chunks=[text[i : i + 7] for i in range(0, len(text), 7)]))
    t = term("chat", "-s", "long")
    t.wait_prompt("long", 1)
    t.enter("count")
    t.wait_prompt("long", 2, timeout=60)
    found = re.findall(r"line (\d{4})", t.text())
    assert found == [f"{i:04d}" for i in range(1, 2001)]
    assert "..." not in t.text()
    answer = t.lines()[t.lines().index("long> count") + 1 :][:2000]
    assert all(line.strip() for line in answer)  # one block: no gaps where it was printed in pieces


def test_code_blocks_are_highlighted_and_no_color_is_respected(term, model):
    answer = "Here:\n\n```python\ndef f(x):\n    return x + 1\n```\n\nDone.\n"
    model.script(Reply(text=answer), Reply(text=answer))
    colored = term("chat", "-s", "code")
    colored.wait_prompt("code", 1)
    colored.enter("show code")
    screen = colored.wait_prompt("code", 2)
    assert "def f(x):" in screen and "return x + 1" in screen and "```" not in screen
    assert re.search(rb"\x1b\[[0-9;]*38;[25];", colored.raw)  # syntax colours

    plain = term("chat", "-s", "code2", NO_COLOR="1")
    plain.wait_prompt("code2", 1)
    plain.enter("show code")
    screen = plain.wait_prompt("code2", 2)
    assert "return x + 1" in screen
    assert not re.search(rb"\x1b\[[0-9;]*(3[0-7]|38;[25];[0-9;]+)m", plain.raw)


def test_a_spinner_shows_while_waiting_for_the_first_token(term, model):
    model.script(Reply(text="finally", first_delay=0.8))
    t = term("chat", "-s", "spin")
    t.wait_prompt("spin", 1)
    t.enter("wait")
    screen = t.wait_prompt("spin", 2)
    before_answer = t.raw.split(b"finally", 1)[0]
    assert re.search("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]".encode(), before_answer)
    assert not re.search("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]", screen)  # cleared when text arrived


def test_a_cut_off_answer_is_flagged(term, model, rdb):
    model.script(Reply(text="it was the best of", finish_reason=None))
    t = term("chat", "-s", "cut")
    t.wait_prompt("cut", 1)
    t.enter("go")
    screen = t.wait_prompt("cut", 2)
    assert "the answer was cut off" in screen
    assert stored(rdb, "cut")[1]["data"]["response_metadata"]["chatcli"] == {"cut_off": True}


def test_model_errors_leave_the_repl_running(term, model, rdb):
    model.script(Reply(status=500, text="boom"), Reply(status=500), Reply(status=500))
    t = term("chat", "-s", "err")
    t.wait_prompt("err", 1)
    t.enter("this fails")
    t.wait_for("HTTP 500")
    t.wait_prompt("err", 2)
    assert rdb.exists("message_store:err") == 0  # a failed turn stores nothing
    t.type("\x1b[A")  # the question is one Up-arrow away
    t.wait_for("err> this fails", count=2)
    t.enter()
    t.wait_prompt("err", 3)
    assert contents(rdb, "err") == ["this fails", "echo: this fails"]


def test_history_tokens_clear_session_model_and_export_commands(term, model, rdb, tmp_path):
    model.script(Reply(text="answer one", usage=(10, 3)))
    t = term("chat", "-s", "cmd")
    t.wait_prompt("cmd", 1)
    t.enter("question one")
    t.wait_prompt("cmd", 2)

    t.enter("/history 2")
    t.wait_for("answer one", count=2)
    t.enter("/tokens")
    t.wait_for("tokens this session: 10 in, 3 out")

    target = tmp_path / "out.md"
    t.enter(f"/export {target}")
    t.wait_for("wrote 2 messages")
    assert target.read_text().startswith('---\nsession: "cmd"\n') and "\n# Session cmd\n" in target.read_text()

    t.enter("/model test-model")
    t.wait_for("model of session cmd is now test-model")
    t.enter("/session other")
    t.wait_for("session: other (0 messages)")
    t.enter("in the other session")
    t.wait_prompt("other", 1 + 1)
    assert model.chat_requests()[-1]["model"] == "test-model"
    assert contents(rdb, "other") == ["in the other session", "echo: in the other session"]

    t.enter("/clear")
    t.wait_for("[y/N]")
    t.enter("n")
    t.wait_for("nothing deleted")
    assert rdb.llen("message_store:other") == 2
    t.enter("/clear")
    t.wait_for("[y/N]", count=2)
    t.enter("y")
    t.wait_for("deleted 2 messages")
    assert rdb.llen("message_store:other") == 0
    assert rdb.llen("message_store:cmd") == 2


def test_a_failing_command_does_not_end_the_repl(term, model, tmp_path):
    t = term("chat", "-s", "fail")
    t.wait_prompt("fail", 1)
    t.enter(f"/export {tmp_path}/nodir/x.json")
    t.wait_for("/export: no such directory")
    t.enter("/export /proc/x.md")
    t.wait_for("/export: cannot write /proc/x.md")
    t.enter("still here")
    t.wait_for("echo: still here")
    assert t.child.isalive()


def test_retry_whose_new_answer_breaks_keeps_what_arrived(term, model, rdb):
    t = term("chat", "-s", "rb")
    t.wait_prompt("rb", 1)
    t.enter("first")
    t.wait_prompt("rb", 2)
    model.script(Reply(chunks=["new ", "partial ", "answer"], drop_after=2))
    t.enter("/retry")
    t.wait_for("lost or could not open the connection")
    t.wait_prompt("rb", 3)
    messages = stored(rdb, "rb")
    assert [m["data"]["content"] for m in messages] == ["first", "new partial "]
    assert "error" in messages[1]["data"]["response_metadata"]["chatcli"]


def test_input_history_persists_across_processes_privately(term, model, home):
    t = term("chat", "-s", "ih")
    t.wait_prompt("ih", 1)
    t.enter("remember this line")
    t.wait_prompt("ih", 2)
    t.ctrl("d")
    t.exited()
    history = home / "input_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    t2 = term("chat", "-s", "ih2")
    t2.wait_prompt("ih2", 1)
    t2.type("\x1b[A")  # Up: the line typed in the earlier process
    t2.wait_for("ih2> remember this line")
    t2.ctrl("c")  # clears it
    t2.wait(lambda _s: t2.screen.display[t2.screen.cursor.y].rstrip() == "ih2>", what="a cleared line")
    t2.type("rem")
    t2.wait_for("ih2> remember this line")  # suggested from history as you type
    t2.ctrl("c")
    t2.ctrl("r")  # reverse search
    t2.type("this")
    t2.wait_for("`this': remember this line")
    t2.enter()
    t2.enter()
    t2.wait_prompt("ih2", 2)
    assert t2.text().count("echo: remember this line") == 1


def test_with_redis_down_the_answer_is_drawn_once_and_the_spool_notice_follows_it(term, model, tmp_path):
    from tests.conftest import free_port

    t = term("chat", "-s", "down", CHATCLI_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    t.wait_prompt("down", 1)
    t.enter("hello")
    screen = t.wait_prompt("down", 2)
    assert screen.count("echo: hello") == 1, screen
    answer_at, notice_at = screen.index("echo: hello"), screen.index("history is being spooled")
    assert answer_at < notice_at  # printed under a live answer it would draw the answer again


FIVE_LINES = "Roses are red\nViolets are blue\nSugar is sweet\nAnd so are you\nThe end"


def test_an_answer_and_history_show_keep_the_lines_the_model_and_the_user_wrote(term, model, rdb):
    model.script(Reply(text=FIVE_LINES, delay=0.005))
    t = term("chat", "-s", "poem")
    t.wait_prompt("poem", 1)
    t.type("give me 5 lines")
    t.type("\x1b\r")
    t.type("short ones")
    t.enter()
    lines = t.wait_prompt("poem", 2).split("\n")
    start = lines.index("Roses are red")
    assert lines[start : start + 5] == FIVE_LINES.split("\n")
    t.enter("/exit")
    assert t.exited() == 0
    shown = term("history", "show", "poem")
    assert shown.exited() == 0
    assert shown.lines()[:10] == ["user", "give me 5 lines", "short ones", "", "assistant", *FIVE_LINES.split("\n")]


@pytest.mark.parametrize("word", ["exit", "quit", "  quit  "])
def test_exit_or_quit_alone_leaves(term, model, word):
    t = term("chat", "-s", "bye")
    t.wait_prompt("bye", 1)
    t.enter(word)
    assert t.exited() == 0
    assert model.chat_requests() == []


def test_a_doubled_slash_sends_one_and_the_hint_says_so_once(term, model):
    t = term("chat", "-s", "slash")
    t.wait_prompt("slash", 1)
    t.enter("/histroy")
    screen = t.wait_for("unknown command /histroy")
    hint = next(line for line in screen.split("\n") if line.startswith("unknown command"))
    assert (
        hint == "unknown command /histroy (did you mean /history?); /help lists them; //histroy sends it as a message"
    )
    t.enter("//histroy")
    t.wait_prompt("slash", 3)
    assert [r["messages"][-1]["content"] for r in model.chat_requests()] == ["/histroy"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/history abc", "/history: not a number of messages: 'abc' (usage: /history [N], N from 1; default 10)"),
        ("/history 0", "/history: not a number of messages: '0' (usage: /history [N], N from 1; default 10)"),
        ("/undo now", "usage: /undo (it takes no argument)"),
        ("/tokens please", "usage: /tokens (it takes no argument)"),
    ],
)
def test_bad_slash_arguments_are_a_one_line_usage_error(term, model, cli, line, error):
    cli("ask", "-s", "args", "one")
    t = term("chat", "-s", "args")
    t.wait_prompt("args", 1)
    t.enter(line)
    screen = t.wait_for(error)
    assert "echo: one" not in screen.split(f"args> {line}", 1)[1]  # no history was shown by a default (the
    # resume recap above the first prompt shows the last exchange, which is fine)
    t.enter("/exit")
    assert t.exited() == 0
