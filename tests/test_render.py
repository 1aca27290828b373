"""The streamed Markdown renderer, in-process: what it prints equals the whole answer rendered at once."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from chatcli.render import MarkdownAnswer, markdown, sanitize

DOCS = {
    "paragraphs": "First paragraph with **bold**.\n\nSecond one,\nwith a soft break.\n\nThird.\n",
    "heading and list": "# Title\n\nIntro:\n\n- one\n- two\n- three\n\nAfter the list.\n",
    "code": "Run this:\n\n```python\ndef f(x):\n    return x + 1\n```\n\nThen that.\n",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |\n\nend\n",
    "long list": "".join(f"{i}. item {i}\n" for i in range(1, 40)) + "\nDone.\n",
    "five lines": "Here are 5 lines:\none\ntwo\nthree\nfour\nfive\n",
    "long paragraph": "".join(f"line {i} of a poem that goes on and on, " * 2 + "\n" for i in range(30)),
    "long loose list": "".join(f"- point {i}\n  more on {i}\n\n" for i in range(12)) + "after\n",
    "nested list": "".join(f"{i}. top {i}\n   - sub a\n   - sub b\n" for i in range(1, 9)) + "\nend\n",
    "long table": "| n | square |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(20)) + "\nok\n",
    "long code": "```python\n" + "".join(f"x{i} = {i}\n" for i in range(25)) + "```\nafter code\n",
    "quote": "> " + "\n> ".join(f"quoted line {i}" for i in range(12)) + "\n\nplain\n",
    "heading then text": "## Steps\nfirst\nsecond\n### More\nthird\n",
    "links": "See [the docs](https://example.com/docs), <https://x.org> and ![a chart](http://a/c.png).\n",
}


def lines(text: str) -> list[str]:
    """The visible lines, with runs of blank lines as one (Rich pads code blocks and tables unevenly)."""
    result: list[str] = []
    for line in (raw.rstrip() for raw in text.strip("\n").split("\n")):
        if line or (result and result[-1]):
            result.append(line)
    return result


def streamed(doc: str, step: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None, force_terminal=False)
    answer = MarkdownAnswer(console)
    for i in range(0, len(doc), step):
        answer.write(doc[i : i + step])
    answer.finish()
    return out.getvalue()


def whole(doc: str) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(markdown(doc))
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize("step", [1, 3, 64])
def test_streaming_in_any_chunks_prints_the_same_as_rendering_the_whole(name, step):
    doc = DOCS[name]
    assert lines(streamed(doc, step)) == lines(whole(doc))


def test_escape_sequences_and_controls_are_removed_for_the_screen():
    text = "a\x1b[31mred\x1b[0m b\x1b]8;;http://x\x07link\x1b]8;;\x07 c\x07\x08 d\x9b2J\te\nf"
    assert sanitize(text) == "ared blink c d\te\nf"
