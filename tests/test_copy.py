"""/copy: the last answer or one of its code blocks, to the clipboard through OSC 52."""

from __future__ import annotations

import base64
import io
import os
import re

from chatcli import clipboard
from tests.terminal import Terminal

ANSWER = "<think>plan it</think>Two ways:\n\n```python\nprint('one')\n```\n\nor\n\n```sh\necho two\nls\n```\n"


def copies(raw: bytes) -> list[str]:
    """Every clipboard payload the program wrote, decoded."""
    return [base64.b64decode(m).decode() for m in re.findall(rb"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", raw)]


def test_copy_sends_the_last_answer_and_its_code_blocks_as_osc_52(terminal, model):
    model.script(ANSWER)
    t = terminal("chat", "-s", "cp")
    t.wait_prompt("cp", 1)
    t.enter("/copy")
    t.wait_for("(no answer to copy yet)")
    t.enter("show me")
    t.wait_prompt("cp", 3)
    t.enter("/copy")
    t.wait_for("copied the last answer")
    t.enter("/copy code 2")
    t.wait_for("copied code block 2 of the last answer")
    t.enter("/copy code")
    t.wait_for("copied code block 1 of the last answer")
    t.enter("/copy code 3")
    t.wait_for("(the last answer has 2 code blocks)")
    t.enter("/copy everything")
    t.wait_for("usage: /copy, or /copy code [N] for the Nth code block")
    t.wait_prompt("cp", 8)
    answer = ANSWER.split("</think>")[1].strip("\n")  # the reasoning inside <think> is not copied
    assert copies(t.raw) == [answer, "echo two\nls", "print('one')"]


def test_inside_tmux_the_sequence_is_passed_through():
    sequence = clipboard.osc52("hi", {"TMUX": "/tmp/tmux-1/default,1,0", "TERM": "screen"})
    assert sequence == "\x1bPtmux;\x1b\x1b]52;c;aGk=\x07\x1b\\"
    assert clipboard.osc52("hi", {"TERM": "xterm"}) == "\x1b]52;c;aGk=\x07"


def test_copy_is_refused_with_a_reason_where_no_terminal_can_take_it():
    assert clipboard.why_not(io.StringIO(), {"TERM": "xterm"}) == "the output is not a terminal"
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert clipboard.why_not(tty, {"TERM": "dumb"}) == "the terminal (TERM=dumb) takes no escape sequences"
            assert clipboard.why_not(tty, {}) == "the terminal (TERM=unset) takes no escape sequences"
            assert clipboard.why_not(tty, {"TERM": "xterm-256color"}) is None
    finally:
        os.close(leader)
        os.close(follower)


def test_copy_in_a_dumb_terminal_says_why_and_writes_no_sequence(env, model):
    model.script("the answer")
    t = Terminal(["chat", "-s", "dumb"], env, term="dumb")
    try:
        t.wait_for("dumb>")
        t.enter("hi")
        t.wait_for("the answer")
        t.enter("/copy")
        t.wait_for("cannot copy: the terminal (TERM=dumb) takes no escape sequences")
        assert copies(t.raw) == []
    finally:
        t.close()
