"""Markdown as a chat shows it, and where a text still arriving can be cut into finished pieces.

A single newline is a line break (as in every chat UI), links keep their URL visible (an OSC-8 hyperlink alone
is invisible in tmux and in a scrollback copied as text), and an image is a one-line placeholder with its
address. Everything else is Rich's Markdown: headings, lists, tables, highlighted code.

Imported only when a terminal shows Markdown: markdown-it and rich.markdown cost every command that loads them.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.markdown import ListElement, Markdown, MarkdownElement


@functools.cache
def parser() -> MarkdownIt:
    """The parser Rich's Markdown uses (CommonMark, tables, strikethrough)."""
    return MarkdownIt().enable("strikethrough").enable("table")


class _List(ListElement):
    """Numbers at least two digits wide, so a list printed in pieces as it streams lines up as a whole one:
    Rich sizes them by the list's last number, which a piece does not know."""

    def __rich_console__(self, console: Any, options: Any) -> Any:
        if self.list_type == "bullet_list_open":
            yield from super().__rich_console__(console, options)
            return
        number = 1 if self.list_start is None else self.list_start
        last = max(number + len(self.items), 10)
        for index, item in enumerate(self.items):
            yield from item.render_number(console, options, number + index, last)


class ChatMarkdown(Markdown):
    """Rich's Markdown with the line breaks the model wrote, and links and images shown with their address."""

    elements: ClassVar[dict[str, type[MarkdownElement]]] = {
        **Markdown.elements,
        "bullet_list_open": _List,
        "ordered_list_open": _List,
    }

    def __init__(self, markup: str, **options: Any):
        super().__init__(markup, **options)
        for token in self.parsed:
            if token.children:
                token.children = _inline(token.children)


def _text_token(content: str) -> Token:
    return Token("text", "", 0, content=content)


def _inline(children: list[Token]) -> list[Token]:
    """Soft breaks become hard breaks; a link becomes its text and " (URL)" unless the text is the URL; an
    image becomes "[image: ALT] (URL)". No link reaches Rich, so it writes no OSC-8 sequence."""
    out: list[Token] = []
    i = 0
    while i < len(children):
        token = children[i]
        if token.type == "softbreak":
            out.append(Token("hardbreak", "br", 0))
        elif token.type == "link_open":
            end = next((j for j in range(i + 1, len(children)) if children[j].type == "link_close"), len(children))
            inner = children[i + 1 : end]
            href = str(token.attrs.get("href") or "")
            label = "".join(c.content for c in inner if c.type in ("text", "code_inline"))
            out.extend(_inline(inner))
            if href and href not in (label, "mailto:" + label):
                out.append(_text_token(f" ({href})"))
            i = end
        elif token.type == "image":
            src = str(token.attrs.get("src") or "")
            alt = token.content.strip()
            out.append(_text_token(f"[image{': ' + alt if alt else ''}]" + (f" ({src})" if src else "")))
        else:
            out.append(token)
        i += 1
    return out


# -- cutting a streamed text into finished pieces --------------------------------------------------------------

_CLOSING_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")


def closes_fence(line: str, marker: str) -> bool:
    """Whether `line` closes a code block opened with `marker` (``` or ~~~, at least as long)."""
    match = _CLOSING_FENCE.match(line)
    return match is not None and match.group(1)[0] == marker[0] and len(match.group(1)) >= len(marker)


_ENDED = frozenset({"heading_open", "hr"})  # one line, and nothing after them can change them
_LINE_BY_LINE = frozenset({"paragraph_open", "blockquote_open", "code_block"})  # lines shown as written
_LISTS = frozenset({"bullet_list_open", "ordered_list_open"})


def finished(lines: list[str], most: int) -> tuple[int, bool, tuple[str, str] | None]:
    """How many of `lines` (complete lines, more may follow) can be shown for good now.

    Returns (count, continues, fence): `continues` when the cut is inside a block (the next piece goes on
    without a blank line); `fence` = (marker, info) when the lines after the cut open a code block that is
    not closed yet (its opening line is line `count`).

    Every block but the last is finished (CommonMark never reopens a block once another began); the last
    one is finished when it cannot grow (a heading, a rule, a closed code block). A last block longer than
    `most` lines is cut where the rest cannot change what is shown: a paragraph or quote before its last line
    (each newline is a line break), a list before its last item. Tables are never cut.
    """
    tokens = parser().parse("\n".join(lines) + "\n")
    blocks = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
    if not blocks:
        return 0, False, None
    last = blocks[-1]
    start, end = last.map or (0, 0)
    if last.type == "fence":
        if end - 1 > start and closes_fence(lines[end - 1], last.markup):
            return end, False, None
        return start, False, (last.markup, last.info.strip())
    if last.type in _ENDED:
        return end, False, None
    if len(lines) - start > most:
        if last.type in _LINE_BY_LINE:
            return len(lines) - 1, True, None  # the last line waits: "---" under it would make a heading
        if last.type in _LISTS:
            items = [t.map[0] for t in tokens if t.type == "list_item_open" and t.level == 1 and t.map]
            if len(items) > 1:
                return items[-1], True, None
    return start, False, None
