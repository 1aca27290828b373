"""What a search looks for and how a message matches it: the query (words and "phrases"), the text of a
message that is searched, where the matches are, the snippet shown around them. Pure functions, no Redis."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from chatcli.contents import TEXT_TYPES
from chatcli.errors import UsageError

SNIPPET_WIDTH = 160


# -- the query ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What to find: every word (a substring, case-insensitive) and every phrase (words in this order,
    separated by any white space)."""

    text: str
    words: tuple[str, ...]
    phrases: tuple[str, ...]

    @property
    def needles(self) -> tuple[str, ...]:
        return self.words + self.phrases

    def filter_words(self) -> list[str]:
        """What Redis (or keep_indexes) looks for in an element's raw JSON, lower-cased: the runs of ASCII letters
        and digits of every word and phrase, which JSON encoders write as they are (they escape quotes,
        backslashes, control characters and, some of them, `/ < > & '` and non-ASCII text). Longest first."""
        runs = {run for needle in self.needles for run in re.findall(r"[a-z0-9]+", needle)}
        return sorted(runs, key=lambda run: (-len(run), run))


_QUOTED = re.compile(r'"([^"]*)"?')


def parse_query(text: str) -> Query:
    """Words and "quoted phrases" (an unclosed quote runs to the end). Case and white space do not matter."""
    if any(ch in text for ch in "\x00\x1b") or "\ufffd" in text:
        raise UsageError("the search query may not contain control characters")
    phrases = tuple(p for p in (fold(m.group(1)) for m in _QUOTED.finditer(text)) if p)
    rest = fold(_QUOTED.sub(" ", text))
    words = tuple(w for w in dict.fromkeys(rest.split(" ")) if w)
    if not words and not phrases:
        raise UsageError('the search query is empty: give words, or a "phrase" in quotes')
    return Query(text, words, phrases)


def fold(text: str) -> str:
    """Lower case, white space runs as one space, no edge spaces: the form queries and texts are compared in."""
    return " ".join(text.lower().split())


# -- matching and snippets --------------------------------------------------------------------------------


def searchable_text(entry: dict[str, Any]) -> str:
    """What a message says: its text parts (not reasoning, tool calls or attachments), one space between
    parts and for every run of white space."""
    content = entry.get("data", {}).get("content", "")
    items = [content] if isinstance(content, str) else content if isinstance(content, list) else []
    pieces = [
        item if isinstance(item, str) else item["text"]
        for item in items
        if isinstance(item, str)
        or (isinstance(item, dict) and isinstance(item.get("text"), str) and item.get("type", "text") in TEXT_TYPES)
    ]
    return " ".join(" ".join(pieces).split())


def _lowered(text: str) -> tuple[str, list[int] | None]:
    """`text` lower-cased, and where that changed lengths (a few letters lower to two characters), the
    index in `text` of each lower-case character."""
    low = text.lower()
    if len(low) == len(text):
        return low, None
    where: list[int] = []
    for i, ch in enumerate(text):
        where += [i] * len(ch.lower())
    return low, where


def match_spans(query: Query, text: str) -> list[tuple[int, int]] | None:
    """Where the query's words and phrases occur in `text` (one line, as searchable_text gives), merged and in
    order; None unless every one of them occurs."""
    low, where = _lowered(text)
    spans: list[tuple[int, int]] = []
    for needle in query.needles:
        start = low.find(needle)
        if start < 0:
            return None
        while start >= 0:
            spans.append((start, start + len(needle)))
            start = low.find(needle, start + len(needle))
    if where is not None:
        spans = [(where[s], where[e - 1] + 1) for s, e in spans]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@dataclass
class Snippet:
    """A window of a message's text around its first match, and the matches in it (offsets into `text`)."""

    text: str
    spans: list[tuple[int, int]]


def make_snippet(text: str, spans: list[tuple[int, int]], width: int = SNIPPET_WIDTH) -> Snippet:
    """At most `width` characters around the first match (a third of the room before it), cut at spaces where
    one is near, with "…" where text was left out."""
    if len(text) <= width:
        return Snippet(text, spans)
    first = spans[0][0] if spans else 0
    start = max(0, min(first - width // 3, len(text) - width))
    if start:
        space = text.find(" ", start, first)
        start = space + 1 if 0 <= space < start + 20 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", max(start, end - 20), end)
        end = space if space > spans[0][1] else end
    head, tail = ("…" if start else ""), ("…" if end < len(text) else "")
    shift = len(head) - start
    kept = [(max(s, start) + shift, min(e, end) + shift) for s, e in spans if e > start and s < end]
    return Snippet(head + text[start:end] + tail, kept)


def parse_since(text: str, now: float | None = None) -> float:
    """--since: a duration back from now (90s, 15m, 12h, 30d, 2w) or a date (2026-11-01, 2026-11-01T09:30,
    local time unless it says otherwise). Epoch seconds."""
    from datetime import datetime

    from chatcli.settings import parse_duration

    raw = text.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d([ T].*)?", raw):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"invalid --since {text!r}: use a date (2026-11-01) or a duration (30d)") from None
        return when.timestamp()
    try:
        return (now if now is not None else time.time()) - parse_duration(raw)
    except UsageError:
        raise UsageError(
            f"invalid --since {text!r}: use a duration (90s, 15m, 12h, 30d, 2w) or a date (2026-11-01)"
        ) from None
