"""Input in the REPL: a prompt before the chain is loaded, keys typed during start-up, the editor."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

# a sitecustomize that holds `import langchain_openai` until a gate file exists: the chain cannot load
# until the test opens the gate, so a prompt on screen before that proves start-up did not wait for it
GATE = textwrap.dedent(
    """
    import importlib.abc, os, sys, time

    class Gate(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "langchain_openai":
                while not os.path.exists(os.environ["CHATCLI_TEST_GATE"]):
                    time.sleep(0.02)
            return None

    sys.meta_path.insert(0, Gate())
    """
)


def gated(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "gate"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GATE)
    gate = tmp_path / "gate-open"
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "CHATCLI_TEST_GATE": str(gate)}, gate


def stored(rdb, session: str) -> list[dict]:
    return [json.loads(raw) for raw in reversed(rdb.lrange(f"message_store:{session}", 0, -1))]


def test_the_prompt_is_up_before_the_chain_loads_and_the_first_turn_waits_for_it(terminal, model, rdb, tmp_path):
    extra, gate = gated(tmp_path)
    t = terminal("chat", "-s", "early", **extra)
    t.wait_prompt("early", 1)  # langchain_openai cannot have loaded: the gate is closed
    t.enter("quick question")
    t.wait_for("loading the model client (Ctrl-C cancels this message)")
    assert model.chat_requests() == []
    gate.touch()
    screen = t.wait_prompt("early", 2)
    assert "echo: quick question" in screen
    assert [m["data"]["content"] for m in stored(rdb, "early")] == ["quick question", "echo: quick question"]


def test_ctrl_c_while_the_chain_loads_cancels_that_message_only(terminal, model, rdb, tmp_path):
    extra, gate = gated(tmp_path)
    t = terminal("chat", "-s", "wait", **extra)
    t.wait_prompt("wait", 1)
    t.enter("never mind")
    t.wait_for("loading the model client (Ctrl-C cancels this message)")
    t.ctrl("c")  # the turn waits for the chain: the gate is closed
    t.wait_for("(interrupted: nothing sent)")
    t.wait_prompt("wait", 2)
    gate.touch()
    t.enter("now")
    t.wait_for("echo: now")
    t.wait_prompt("wait", 3)
    assert [r["messages"][-1]["content"] for r in model.chat_requests()] == ["now"]
    assert [m["data"]["content"] for m in stored(rdb, "wait")] == ["now", "echo: now"]


def test_a_paste_during_start_up_is_one_message(terminal, model, rdb, tmp_path):
    extra, gate = gated(tmp_path)
    lines = [f"pasted line {i:02d}" for i in range(20)]
    t = terminal("chat", "-s", "paste", **extra)
    t.type("\r".join(lines) + "\r")  # at once, long before the prompt is up
    t.wait_for("paste> pasted line 00")  # the whole paste is the first prompt's draft
    gate.touch()
    t.enter()  # Enter sends it, as one message
    t.wait_for("echo: pasted line 00")
    t.wait_prompt("paste", 2)
    requests = model.chat_requests()
    assert len(requests) == 1
    assert requests[0]["messages"][-1] == {"role": "user", "content": "\n".join(lines)}
    assert stored(rdb, "paste")[0]["data"]["content"] == "\n".join(lines)


def editor_script(tmp_path: Path) -> str:
    """An $EDITOR that rewrites the file it is given as "edited: " + what it held."""
    script = tmp_path / "editor.sh"
    script.write_text('#!/bin/sh\n{ printf "edited: "; cat "$1"; } > "$1.new" && mv "$1.new" "$1"\n')
    script.chmod(0o755)
    return str(script)


def test_ctrl_x_ctrl_e_edits_the_draft_in_the_editor_and_sends_it(terminal, model, rdb, tmp_path):
    t = terminal("chat", "-s", "ed", EDITOR=editor_script(tmp_path), VISUAL="")
    t.wait_prompt("ed", 1)
    t.type("my draft")
    t.wait_for("ed> my draft")
    t.ctrl("x")
    t.ctrl("e")
    t.wait_for("echo: edited: my draft")
    assert model.last_messages()[-1] == {"role": "user", "content": "edited: my draft"}


def test_slash_edit_resends_the_last_question_edited_or_edits_its_text(terminal, model, rdb, tmp_path):
    t = terminal("chat", "-s", "ed2", VISUAL=editor_script(tmp_path), EDITOR="false")
    t.wait_prompt("ed2", 1)
    t.enter("first question")
    t.wait_prompt("ed2", 2)
    t.enter("/edit")
    t.wait_prompt("ed2", 3)
    t.enter("/edit some text")
    t.wait_prompt("ed2", 4)
    sent = [r["messages"][-1]["content"] for r in model.chat_requests()]
    assert sent == ["first question", "edited: first question", "edited: some text"]
    assert [m["data"]["content"] for m in stored(rdb, "ed2")][::2] == sent


def test_slash_edit_with_a_failing_editor_sends_nothing(terminal, model, tmp_path):
    t = terminal("chat", "-s", "ed3", VISUAL="", EDITOR="false")
    t.wait_prompt("ed3", 1)
    t.enter("/edit hello")
    t.wait_for("exited with status 1: nothing sent")
    t.wait_prompt("ed3", 2)
    assert model.chat_requests() == []
