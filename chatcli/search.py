"""Search every session of a key prefix (what matches is chatcli.matching's business).

Sessions are searched newest activity first (the index, then with `include_unindexed` the lists other
programs wrote), each newest message first, and hits are yielded as they are found: nothing is loaded whole.
A session is read in slices counted from the tail, so turns pushed meanwhile shift nothing.

A byte filter runs first, here (`keep_indexes`, after plain LRANGEs) or in Redis (FILTER_SLICE, a Lua script
over at most SLICE_BYTES of one session, a millisecond or two of Redis time): an element goes on only when its
raw JSON, lower-cased, holds every ASCII letter-and-digit run of the query. That is a superset of the hits;
Python then decides on the message text itself, so the filter saves work and bytes and never changes a result.
One script per session slice works on a Redis Cluster too (a session's keys share one slot); a round trip
carries as many slices as fit in ROUND_BYTES, so no pipeline keeps Redis busy for long.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chatcli import exporting
from chatcli.errors import UsageError
from chatcli.matching import Query, Snippet, make_snippet, match_spans, parse_query, searchable_text
from chatcli.store import SessionStore, as_text

ROLES = ("user", "assistant")
SIDES = ("here", "redis")  # where elements are filtered: in this process (after LRANGE), or in Redis (Lua)
SLICE_BYTES = 256 * 1024  # the most one script call reads: about a millisecond of Redis time
SLICE_ELEMENTS = 256  # messages a slice read here holds
LUA_CHUNK = 128  # messages the script reads with one LRANGE (and filters at once)
ROUND_BYTES = 4 * 1024 * 1024  # what one pipelined round trip reads at most, over all its calls (one extra slice)
# ... when filtering here, where it is also what comes back: replies of a few MB parse slower (measured: 4 MB
# rounds took 1.5 × the raw read, 1 MB rounds 1.3 ×)
ROUND_BYTES_HERE = 1024 * 1024
PAGE = 200  # index rows read at a time
AHEAD = 2  # rounds read ahead of the one being filtered
SEEN_MOST = 500_000  # session ids a search remembers (about 40 MB), to search the ones written to meanwhile

# KEYS: the session's list   ARGV: elements left to read counted from the tail (0: start at the head), the
# most bytes to read, elements per LRANGE, then the ASCII words (lower-case) every element must contain.
# Reads newest first with indexes counted from the tail, so turns pushed meanwhile shift nothing.
# Returns {left, read (elements), read (bytes), position, element, position, element, ...}; a position is the
# message's number counted from the oldest (1 is the first message).
FILTER_SLICE = r"""
local key, left, budget, chunk = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if left == 0 then left = redis.call('LLEN', key) end
local words = {}
for i = 4, #ARGV do words[#words + 1] = ARGV[i] end
-- calls fn(i) once for each element i (of the chunk joined with '\n') that holds `needle` (no '\n' in it)
local function each_holding(joined, starts, needle, fn)
  local at, i, n = 1, 1, #starts
  while true do
    local s = string.find(joined, needle, at, true)
    if not s then return end
    while i < n and starts[i + 1] <= s do i = i + 1 end
    fn(i)
    if i == n then return end
    at = starts[i + 1]
  end
end
local out = {0, 0, 0}
local count, used = 0, 0
while left > 0 and used < budget do
  local first = -left
  local items = redis.call('LRANGE', key, first, math.min(first + chunk - 1, -1))
  if #items == 0 then left = 0; break end
  local keep = {}
  if #words == 0 then
    for i = 1, #items do keep[i] = true end
  else
    local starts, at = {}, 1
    for i, element in ipairs(items) do starts[i] = at; at = at + #element + 1 end
    local joined = table.concat(items, '\n')
    local low = string.lower(joined)
    local found = {}
    for w, word in ipairs(words) do
      each_holding(low, starts, word, function(i) if (found[i] or 0) == w - 1 then found[i] = w end end)
    end
    for i = 1, #items do keep[i] = found[i] == #words end
    -- the two letters that lower to ASCII ones (U+212A, U+0130), escaped or not: Python judges those
    for _, odd in ipairs({'\\u212a', '\\u0130', '\226\132\170', '\196\176'}) do
      each_holding(low, starts, odd, function(i) keep[i] = true end)
    end
  end
  for i, element in ipairs(items) do
    if keep[i] then out[#out + 1] = left - i + 1; out[#out + 1] = element end
    used = used + #element
  end
  count = count + #items
  left = left - #items
end
out[1], out[2], out[3] = left, count, used
return out
"""


# The two letters that lower to ASCII ones (KELVIN SIGN, LATIN CAPITAL I WITH DOT ABOVE): an element holding
# one is judged by Python whatever its bytes say. As JSON escapes (any case), then as UTF-8.
_ODD = (b"\\u212a", b"\\u0130", "\u212a".encode(), "\u0130".encode())


@functools.lru_cache(maxsize=64)
def _pattern(*needles: bytes) -> Any:
    """A compiled search for any of `needles`, ASCII letters in any case (a bytes pattern folds ASCII only)."""
    import regex

    return regex.compile(b"|".join(regex.escape(n) for n in needles), regex.IGNORECASE)


def _each_holding(joined: bytes, starts: list[int], pattern: Any) -> Iterator[int]:
    """The index of each element (of `joined`, elements joined by newlines, beginning at `starts`) that holds a
    match of `pattern` (which never matches a newline)."""
    found = pattern.search(joined, concurrent=True)
    while found is not None:
        i = bisect.bisect_right(starts, found.start()) - 1
        yield i
        if i + 1 >= len(starts):
            return
        found = pattern.search(joined, starts[i + 1], concurrent=True)


def keep_indexes(items: list[bytes], words: list[str]) -> list[int]:
    """FILTER_SLICE's test, here: the elements whose raw bytes, ASCII case aside, hold every word, and those
    holding U+212A or U+0130. A superset of the hits: never a hit left out."""
    return _keep_and_size(items, words)[0]


def _keep_and_size(items: list[bytes], words: list[str]) -> tuple[list[int], int]:
    """keep_indexes, and the elements' size in bytes (from their join: no pass of its own).

    The searches run with the GIL released (the `regex` module's concurrent mode) on the raw bytes, with no
    lower-cased copy: the thread reading ahead parses Redis's next replies meanwhile."""
    if not words or not items:
        return list(range(len(items))), sum(map(len, items))
    joined = b"\n".join(items)
    size = len(joined) - len(items) + 1
    escaped = joined.find(b"\\") >= 0  # one memchr: most chunks have no escape at all
    odd = _ODD[:2] * escaped + _ODD[2:] * (not joined.isascii())
    first = _pattern(words[0].encode())
    if first.search(joined, concurrent=True) is None and not (odd and _pattern(*odd).search(joined, concurrent=True)):
        return [], size  # the common case of a rare word: no element to place
    starts = list(itertools.accumulate((len(item) + 1 for item in items[:-1]), initial=0))
    found: dict[int, int] = {}
    for w, word in enumerate(words):
        for i in _each_holding(joined, starts, _pattern(word.encode())):
            if found.get(i, 0) == w:
                found[i] = w + 1
    keep = {i for i, n in found.items() if n == len(words)}
    if odd:
        keep.update(_each_holding(joined, starts, _pattern(*odd)))
    return sorted(keep), size


# -- the search ---------------------------------------------------------------------------------------------


@dataclass
class Hit:
    session: str
    position: int  # the message's number in its session, counted from the oldest (1 is the first)
    role: str
    updated: float | None  # the session's last activity (messages carry no time of their own)
    indexed: bool
    message_id: str | None
    snippet: Snippet


@dataclass
class Stats:
    sessions: int = 0  # sessions searched
    messages: int = 0  # messages Redis read
    candidates: int = 0  # elements the byte filter let through (here or in Redis)
    bytes_read: int = 0  # bytes Redis read on the search's behalf
    bytes_received: int = 0  # bytes of elements sent back to this process
    round_trips: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Slice:
    session: str
    updated: float | None
    indexed: bool
    left: int = 0  # elements still to read, counted from the tail; 0 before the first slice
    number: int = 0  # the session's place in the search (1 is the first searched)
    # filtering here: the first slice of a session that may be longer, read but not yet numbered (its length is
    # asked next), and whether a first slice is read with the list's length (when that check failed)
    held: list[bytes] | None = None
    with_length: bool = False

    def then(self, left: int = 0, held: list[bytes] | None = None, with_length: bool = False) -> _Slice:
        """The session's next slice."""
        return _Slice(self.session, self.updated, self.indexed, left, self.number, held, with_length)


@dataclass
class _Read:
    """What one slice read: the slice to read next in its session (None: the session is done), the elements
    read, and either the candidates Redis filtered (flat: number, element, ...; with the bytes Redis read) or
    the elements to filter here."""

    next: _Slice | None
    count: int
    used: int = 0
    flat: list[Any] | None = None
    items: list[bytes] = field(default_factory=list)
    newest: int = 0  # the number of items[0], counted from the oldest


class Search:
    """One search: `hits()` yields Hit objects as they are found; `stats` counts what it cost."""

    def __init__(
        self,
        store: SessionStore,
        query: Query,
        *,
        role: str | None = None,
        since: float | None = None,
        session: str | None = None,
        include_unindexed: bool = False,
        side: str = "here",
        on_progress: Callable[[Stats], None] | None = None,
    ):
        if role is not None and role not in ROLES:
            raise UsageError(f"--role must be user or assistant, got {role!r}")
        if side not in SIDES:
            raise UsageError(f"--filter must be one of {', '.join(SIDES)}, got {side!r}")
        self.side = side
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.query = query
        self.role = role
        self.since = since
        self.session = session
        self.include_unindexed = include_unindexed
        self.on_progress = on_progress or (lambda _stats: None)
        self.stats = Stats()
        self.words = query.filter_words()
        self._sha: str | None = None
        self._element_bytes = 600.0  # an element's size, as the filter here last saw it (sizes the rounds)

    def total(self) -> int | None:
        """How many sessions the search goes through (None when unindexed ones are included: not known yet)."""
        if self.session is not None:
            return 1
        if self.include_unindexed and self.since is None:
            return None
        low = "-inf" if self.since is None else repr(self.since)
        return int(self.store.run(self.client.zcount, self.keys.index, low, "+inf"))

    # -- which sessions, in which order --
    def sessions(self) -> Iterator[_Slice]:
        if self.session is not None:
            self.store.require(self.session)
            score = self.store.run(self.client.zscore, self.keys.index, self.session)
            yield _Slice(self.session, float(score) if score is not None else None, score is not None)
            return
        yield from self._indexed()
        if self.include_unindexed and self.since is None:  # other programs' sessions have no activity time
            from chatcli.catalog import SessionCatalog

            for sid in SessionCatalog(self.store).unindexed_ids():
                yield _Slice(sid, None, False)

    def _indexed(self) -> Iterator[_Slice]:
        """The index, newest activity first, as it was when the search started; then the sessions written to
        meanwhile (they moved above where it started) that it had not reached: a search misses no session
        for another machine's turn. Ids searched are remembered up to SEEN_MOST (then such a session may be
        searched twice)."""
        low = "-inf" if self.since is None else repr(self.since)
        seen: set[str] | None = set()
        start: float | None = None
        for part in self._index_pass(low):
            if start is None:
                start = part.updated
            if seen is not None:
                seen.add(part.session)
                if len(seen) > SEEN_MOST:
                    seen = None
            yield part
        if start is None:
            return
        for part in self._index_pass(f"({start!r}"):
            if seen is None or part.session not in seen:
                yield part

    def _index_pass(self, low: str) -> Iterator[_Slice]:
        """Index rows from the top score down to `low`, paged by score (rows that move meanwhile shift no page)."""
        top: Any = "+inf"
        at_top: set[str] = set()  # members already yielded whose score is `top`
        while True:
            rows = self.store.run(
                self.client.zrevrangebyscore,
                self.keys.index,
                top,
                low,
                start=0,
                num=PAGE + len(at_top),
                withscores=True,
            )
            fresh = [(as_text(m), float(s)) for m, s in rows if not (float(s) == top and as_text(m) in at_top)]
            if not fresh:
                return
            for sid, score in fresh:
                yield _Slice(sid, score, True)
            last = fresh[-1][1]
            at_top = {sid for sid, score in fresh if score == last} | (at_top if last == top else set())
            top = last

    # -- reading --
    def hits(self) -> Iterator[Hit]:
        """Hits as they are found: sessions newest activity first, each newest message first (the hits of a
        session read beside a long one's first slice wait until the long one has ended).

        A thread reads ahead (at most AHEAD rounds, so memory stays bounded) while this one filters and
        judges: Redis answers the next round while Python looks at the last one."""
        import queue
        import threading

        ready: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()

        def hand_over(item: Any) -> bool:
            """Put `item` in the queue unless the reader of the hits stopped (False then)."""
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for round_ in self._rounds():
                    if not hand_over(round_):
                        return  # the hits are not wanted any more (--limit reached, Ctrl-C)
                hand_over(None)
            except BaseException as exc:  # handed to the reader of the hits, raised there
                hand_over(exc)

        # a long session is read in several slices, and the sessions read beside its first one have their hits
        # first: those are held (by session, in search order) until every session before theirs has ended
        held: dict[int, list[Hit]] = {}
        ended: set[int] = set()
        reader = threading.Thread(target=read, name="chatcli-search-read", daemon=True)
        reader.start()
        try:
            while True:
                round_ = ready.get()
                if round_ is None:
                    return
                if isinstance(round_, BaseException):
                    raise round_
                for (part, read_), flat in zip(round_, self._candidates(round_), strict=True):
                    self.stats.messages += read_.count
                    held.setdefault(part.number, []).extend(self._judge(part, flat))
                    if read_.next is None:
                        ended.add(part.number)
                    while held:  # the first session's hits go now; a later one's wait until it is the first
                        first = next(iter(held))
                        hits, held[first] = held[first], []
                        yield from hits
                        if first not in ended:
                            break
                        del held[first]
                        ended.discard(first)
                self.on_progress(self.stats)
        finally:
            stop.set()

    def _candidates(self, round_: list[tuple[_Slice, _Read]]) -> list[list[Any]]:
        """Each read's candidates (flat: number, element, ...): as Redis filtered them, or filtered here, every
        element of the round at once (one long search with the GIL released rather than one per session)."""
        items = [item for _, read_ in round_ if read_.flat is None for item in read_.items]
        kept, size = _keep_and_size(items, self.words)
        self.stats.bytes_read += size + sum(read_.used for _, read_ in round_)
        self.stats.bytes_received += size
        if items:
            self._element_bytes = max(1.0, size / len(items))
        out: list[list[Any]] = []
        at = 0  # the round's index of this read's first element
        for _, read_ in round_:
            if read_.flat is not None:
                out.append(read_.flat)
                continue
            end = at + len(read_.items)
            mine = kept[bisect.bisect_left(kept, at) : bisect.bisect_left(kept, end)]
            out.append([x for i in mine for x in (read_.newest - (i - at), read_.items[i - at])])
            at = end
        return out

    def _rounds(self) -> Iterator[list[tuple[_Slice, _Read]]]:
        """Round trips of slices: as many sessions as fit in ROUND_BYTES (as far as the last round tells); the
        rest of the long sessions among them before any next session, so the hits held back meanwhile (see
        hits) are at most one round's."""
        pending: list[_Slice] = []
        again: list[_Slice] = []
        sessions = self.sessions()
        per_slice = 64 * 1024.0  # a guess of what one slice reads, refined as slices come back
        exhausted = False
        while True:
            if again:
                batch, again = again, []
            else:
                want = max(1, int((ROUND_BYTES if self.side == "redis" else ROUND_BYTES_HERE) // per_slice))
                while len(pending) < want and not exhausted:
                    nxt = next(sessions, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        self.stats.sessions += 1
                        nxt.number = self.stats.sessions
                        pending.append(nxt)
                if not pending:
                    return
                batch, pending = pending[:want], pending[want:]
            reads = self._round_in_redis(batch) if self.side == "redis" else self._round_here(batch)
            self.stats.round_trips += 1
            again = [read_.next for read_ in reads if read_.next is not None]
            if self.side == "redis":
                per_slice = max(1024.0, sum(r.used for r in reads) / len(batch))
            else:  # what came back, in elements; their size is what the filter last saw (_candidates)
                held = sum(len(part.held or ()) for part in again)
                per_slice = max(1024.0, (sum(r.count for r in reads) + held) * self._element_bytes / len(batch))
            yield list(zip(batch, reads, strict=True))

    def _round_in_redis(self, batch: list[_Slice]) -> list[_Read]:
        """One pipelined round trip: a FILTER_SLICE call per slice (EVALSHA; EVAL where a node lacks it)."""
        from redis.exceptions import NoScriptError

        if self._sha is None:
            self._sha = str(self.store.run(self.client.script_load, FILTER_SLICE))

        def call(pipe: Any, command: str, script: str, part: _Slice) -> None:
            key = self.keys.session(part.session)
            pipe.execute_command(command, script, 1, key, part.left, SLICE_BYTES, LUA_CHUNK, *self.words)

        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for part in batch:
                call(pipe, "EVALSHA", self._sha or "", part)
            results = list(pipe.execute(raise_on_error=False))
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # a node restarted, or joined the cluster, since the script was loaded
                pipe = self.client.pipeline(transaction=False)
                for i in missing:
                    call(pipe, "EVAL", FILTER_SLICE, batch[i])
                for i, result in zip(missing, pipe.execute(raise_on_error=False), strict=True):
                    results[i] = result
            return results

        out = []
        for part, result in zip(batch, self.store.run(execute), strict=True):
            left, count, used, *flat = self._checked(result, [0, 0, 0])
            self.stats.bytes_received += sum(map(len, flat[1::2]))
            nxt = part.then(int(left)) if int(left) else None
            out.append(_Read(nxt, int(count), int(used), flat=flat))
        return out

    def _round_here(self, batch: list[_Slice]) -> list[_Read]:
        """One pipelined round trip of plain LRANGEs, to be filtered here (keep_indexes) as Redis would.

        A session's first slice is its newest SLICE_ELEMENTS messages: fewer, and that is the whole list (one
        LRANGE: nothing to number it by but itself). A full first slice may have more behind it: the next round
        asks the list's length, with its head element to see that nothing was pushed meanwhile (else the first
        slice is read again, with LLEN beside it). Later slices count from the tail, as the script does, so
        turns pushed meanwhile shift nothing. No LLEN for the many sessions of one slice, no sizes summed here:
        this thread's time is the search's (see hits)."""

        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for part in batch:
                key = self.keys.session(part.session)
                if part.held is not None:
                    pipe.llen(key)
                    pipe.lindex(key, 0)
                elif part.left == 0:
                    pipe.lrange(key, 0, SLICE_ELEMENTS - 1)
                    if part.with_length:
                        pipe.llen(key)
                else:
                    pipe.lrange(key, -part.left, min(-part.left + SLICE_ELEMENTS - 1, -1))
            return list(pipe.execute(raise_on_error=False))

        results = iter(self.store.run(execute))
        out = []
        for part in batch:
            then = part.then
            if part.held is not None:
                total, head = int(self._checked(next(results), 0)), self._checked(next(results), None)
                if head != part.held[0] or total < len(part.held):  # pushed to (or cut) meanwhile: read again
                    out.append(_Read(then(with_length=True), 0))
                    continue
                items, newest = part.held, total
            elif part.left == 0:
                items = self._checked(next(results), [])
                if part.with_length:
                    newest = int(self._checked(next(results), 0))
                elif len(items) < SLICE_ELEMENTS:
                    newest = len(items)  # the whole list
                else:
                    out.append(_Read(then(held=items), 0))  # numbered once its length is known
                    continue
            else:
                items, newest = self._checked(next(results), []), part.left
            left = newest - len(items) if items else 0
            out.append(_Read(then(left) if left > 0 else None, len(items), items=items, newest=newest))
        return out

    def _checked(self, result: Any, empty: Any) -> Any:
        """A pipelined reply, or `empty` where the key is not a list any more (WRONGTYPE: nothing to find)."""
        if not isinstance(result, Exception):
            return result
        if "WRONGTYPE" in str(result):
            return empty
        from chatcli.redis_errors import translate

        raise translate(result, self.store.where)

    def _judge(self, part: _Slice, flat: list[Any]) -> Iterator[Hit]:
        for i in range(0, len(flat), 2):
            raw = flat[i + 1]
            self.stats.candidates += 1
            entry = exporting.parse_entry(raw)
            if entry is None:
                continue
            who = exporting.role(entry)
            if self.role is not None and who != self.role:
                continue
            text = searchable_text(entry)
            spans = match_spans(self.query, text)
            if spans is None:
                continue
            message_id = entry.get("data", {}).get("id")
            yield Hit(
                part.session,
                int(flat[i]),
                who,
                part.updated,
                part.indexed,
                message_id if isinstance(message_id, str) else None,
                make_snippet(text, spans),
            )


def auto_side(redis_url: str | None) -> str:
    """Where to filter when --filter is auto: here when Redis is on this machine (the embedded server, a unix
    socket, a loopback address), where moving every byte is cheaper than Redis's Lua; in Redis otherwise, where
    the network is the cost."""
    if not redis_url or redis_url.startswith("unix:"):
        return "here"
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(redis_url).hostname or "").lower()
    except ValueError:
        return "redis"
    return "here" if host in ("localhost", "::1") or host.startswith("127.") else "redis"


def continue_command(session_id: str) -> str:
    import shlex

    return f"chatcli chat -s {shlex.quote(session_id)}"


def hit_json(hit: Hit) -> dict[str, Any]:
    from chatcli.render import iso

    return {
        "session": hit.session,
        "message": hit.position,
        "role": hit.role,
        "time": iso(hit.updated),
        "indexed": hit.indexed,
        "id": hit.message_id,
        "snippet": hit.snippet.text,
        "highlights": [list(span) for span in hit.snippet.spans],
        "continue": continue_command(hit.session),
    }


def show(search: Search, limit: int, console: Any, err: Any, as_json: bool = False, progress_after: float = 1.0) -> int:
    """Run `search` and print its hits as they come (at most `limit`; 0: all), then a summary line on stderr
    (or, with `as_json`, one JSON document written as the hits come). Returns the number of hits."""
    import json

    from chatcli import render

    progress = render.ProgressLine(err, after=progress_after)
    total = search.total()
    of_total = f" of {total:,}" if total is not None else ""

    def tell(stats: Stats) -> None:
        progress.update(f"searching… {stats.sessions:,}{of_total} sessions, {stats.messages:,} messages, {found} hits")

    search.on_progress = tell
    found = 0
    out = console.file
    first: Hit | None = None
    if as_json:
        out.write('{"query": ' + json.dumps(search.query.text, ensure_ascii=False) + ', "hits": [')
    try:
        for hit in search.hits():
            progress.clear()
            if as_json:
                out.write(("," if found else "") + "\n  " + json.dumps(hit_json(hit), ensure_ascii=False))
                out.flush()
            else:
                render.print_hit(console, hit)
            first = first or hit
            found += 1
            if limit and found >= limit:
                break
    finally:
        progress.clear()
    stats = search.stats
    if as_json:
        summary = {
            "sessions": stats.sessions,
            "messages": stats.messages,
            "bytes_received": stats.bytes_received,
            "round_trips": stats.round_trips,
            "filter": search.side,
            "complete": not (limit and found >= limit),
        }
        out.write(("\n" if found else "") + '], "stats": ' + json.dumps(summary) + "}\n")
        out.flush()
        return found
    notices = console if console.is_terminal else err
    cost = (
        f"{stats.messages:,} messages in {stats.sessions:,} sessions, {stats.bytes_received / 1e3:,.0f} kB from Redis"
    )
    if first is None:
        render.print_notice(notices, f"no messages match ({cost})")
        return 0
    more = f"; the first {found} (--limit 0 for all)" if limit and found >= limit else ""
    render.print_notice(notices, f"{found} hit{'s' if found != 1 else ''}{more} ({cost})")
    render.print_notice(notices, f"continue a session: {continue_command(first.session)}")
    return found


def repl_search(store: Any, text: str, console: Any, err: Any, side: str = "here", limit: int = 20) -> int:
    """`/search QUERY` in the REPL: the first `limit` hits over every indexed session."""
    if not text.strip():
        raise UsageError('usage: /search WORDS or /search "a phrase"')
    return show(Search(store, parse_query(text), side=side), limit, console, err)
