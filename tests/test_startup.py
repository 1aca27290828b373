"""Commands that do not chat must not pay for LangChain or the OpenAI client (a fresh process each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("langchain_core", "langchain_openai", "openai")


def imported_modules(args: list[str]) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "chatcli", *args], capture_output=True, text=True, timeout=60
    )
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return result.returncode, modules


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["sessions", "list"],
        ["history", "show", "foo"],
        ["history", "export", "foo"],
        ["history", "import", "{export}", "--session", "imported"],
        ["sessions", "list", "--all"],
        ["sessions", "rename", "foo", "bar"],
        ["sessions", "prune", "--older-than", "1d", "--yes"],
        ["search", "hi", "--all"],
        ["doctor"],
    ],
)
def test_non_chat_commands_import_neither_langchain_nor_openai(cli, model, args, tmp_path):
    cli("ask", "-s", "foo", "hi")
    export = tmp_path / "foo.jsonl"
    cli("history", "export", "foo", "-f", "jsonl", "-o", str(export))
    args = [str(export) if a == "{export}" else a for a in args]
    code, modules = imported_modules(args)
    assert code == 0
    assert "chatcli" in modules
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_chat_does_import_the_chain(cli, model):
    code, modules = imported_modules(["ask", "-s", "foo", "hi"])
    assert code == 0
    assert {"langchain_core", "openai"} <= modules
