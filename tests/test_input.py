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
    t.wait_for("early> quick question")
    assert model.chat_requests() == []
    gate.touch()
    screen = t.wait_prompt("early", 2)
    assert "echo: quick question" in screen
    assert [m["data"]["content"] for m in stored(rdb, "early")] == ["quick question", "echo: quick question"]


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
