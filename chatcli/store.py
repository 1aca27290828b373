"""SessionStore: one session's messages and metadata in Redis (the repository).

Keys come from chatcli.keys (the only code that names one). A turn is one Lua script on the session's slot:
it checks the turn id against the session's set of stored turn ids and writes nothing when it is there, so a
retry, a spool flush or an EXEC that timed out on the client but ran on the server never stores a turn twice.
On a single node the script also updates the index of sessions (one round trip). On a Redis Cluster the index
lives in another slot, so the index step follows separately; it is idempotent (ZADD of a later score, ZREM of a
gone id), redone by the next write, and repaired by `sessions list` and `sessions adopt` (chatcli.catalog).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster

from chatcli import events, exporting
from chatcli.errors import NotFoundError, StorageError, UsageError
from chatcli.keys import Keys, validate_session_id
from chatcli.records import TurnRecord, turn_of
from chatcli.redis_errors import call, translate

__all__ = ["SessionStore", "Window", "validate_session_id"]

# KEYS: list, meta, turn ids[, index]   ARGV: turn id ('' = no check), now, ttl (0 = keep), session id,
#       number of meta pairs, pairs..., number of counters, pairs..., number of default pairs (HSETNX),
#       pairs..., entries (oldest first)
_APPEND_TURN = """
for k = 1, #KEYS do  -- list, meta, turn ids and (single node) the index: checked before any write
  local want = ({'list', 'hash', 'set', 'zset'})[k]
  local found = redis.call('TYPE', KEYS[k]).ok
  if found ~= want and found ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. found .. ', not a ' .. want)
  end
end
local turn = ARGV[1]
if turn ~= '' and redis.call('SISMEMBER', KEYS[3], turn) == 1 then
  return 0
end
local now, ttl = ARGV[2], tonumber(ARGV[3])
-- The TTL policy, read before LPUSH (which creates a missing list without one): ARGV's (--ttl, CHATCLI_TTL),
-- else the list's own (another program's, LangChain's ttl=...): its length is kept in the metadata as the
-- longest seen, and every turn refreshes the session to it. A list that exists without a TTL lives forever.
local live = redis.call('PTTL', KEYS[1])
local kept = tonumber(redis.call('HGET', KEYS[2], 'ttl'))
if ttl == 0 and live ~= -1 then
  ttl = math.max(kept or 0, live > 0 and math.ceil(live / 1000) or 0)
end
local i = 5
local meta = {'updated', now}
for _ = 1, tonumber(ARGV[i]) do
  meta[#meta + 1] = ARGV[i + 1]; meta[#meta + 1] = ARGV[i + 2]; i = i + 2
end
i = i + 1
local counters = {}
for _ = 1, tonumber(ARGV[i]) do
  counters[#counters + 1] = {ARGV[i + 1], ARGV[i + 2]}; i = i + 2
end
i = i + 1
local defaults = {}
for _ = 1, tonumber(ARGV[i]) do
  defaults[#defaults + 1] = {ARGV[i + 1], ARGV[i + 2]}; i = i + 2
end
i = i + 1
-- only a turn that adds messages keeps its id: turn ids without a list then mean the list is gone (expired,
-- deleted by another program) and what is left of the session is a ghost (chatcli.catalog.is_ghost); a
-- metadata change sent twice sets the same fields twice
local pushes = i <= #ARGV
while i <= #ARGV do
  local last = math.min(i + 99, #ARGV)
  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
if turn ~= '' and pushes then redis.call('SADD', KEYS[3], turn) end
redis.call('HSETNX', KEYS[2], 'created', now)
redis.call('HSET', KEYS[2], unpack(meta))
for _, c in ipairs(counters) do redis.call('HINCRBY', KEYS[2], c[1], c[2]) end
for _, d in ipairs(defaults) do redis.call('HSETNX', KEYS[2], d[1], d[2]) end
if ttl > 0 then
  if ttl ~= kept then redis.call('HSET', KEYS[2], 'ttl', ttl) end
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
elseif kept then  -- another program made the list persistent: so is the rest of the session
  redis.call('HDEL', KEYS[2], 'ttl')
  redis.call('PERSIST', KEYS[2]); redis.call('PERSIST', KEYS[3])
end
if KEYS[4] then redis.call('ZADD', KEYS[4], now, ARGV[4]) end
return 1
"""

# KEYS: list, meta   ARGV: "1" = only fields not set yet (HSETNX), pairs...   Returns 0 when the session is gone.
_SET_FIELDS = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local command = ARGV[1] == '1' and 'HSETNX' or 'HSET'
for i = 2, #ARGV, 2 do redis.call(command, KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass
class Window:
    """The newest messages of a session (oldest first) and its metadata, read in one round trip."""

    messages: list[dict[str, Any]]
    meta: dict[str, str]
    skipped: int = 0
    offline: bool = False  # Redis did not answer: these are the messages this process and the spool know
    whole: bool = False  # `messages` go back to the list's oldest element: nothing older was left out
    oldest: dict[str, Any] | None = None  # the list's oldest message (a LangChain app's system message, say)


@dataclass
class RemovedTurn:
    """A turn taken out of a session by `remove_turn`: its messages, and how many newer ones stay above it."""

    entries: list[dict[str, Any]]
    newer: int


def decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


def as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_entries(raw_items: Any) -> tuple[list[dict[str, Any]], int]:
    """Usable messages of raw list elements (in the order given) and how many were not usable."""
    messages, skipped = [], 0
    for raw in raw_items:
        entry = exporting.parse_entry(raw)
        if entry is None:
            skipped += 1
        else:
            messages.append(entry)
    return messages, skipped


# KEYS: a session's list, its turn ids. Inside remove_turn's MULTI, after its LREMs.
_FORGET_TURNS_IF_EMPTY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('DEL', KEYS[2]) end
return 0
"""


class SessionStore:
    """Reads and writes sessions on one Redis (a single node or a cluster)."""

    def __init__(
        self,
        client: Any,
        prefix: str = "message_store:",
        ttl: int | None = None,
        where: str = "Redis",
        emit: events.Emit = events.ignore,
    ):
        self.client = client
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.ttl = ttl
        self.where = where  # for error messages, already redacted; also names the spool's target
        self.emit = emit
        self.cluster = isinstance(client, RedisCluster)
        if self.cluster and ("{" in prefix or "}" in prefix):
            # the list key would hash on the prefix's own tag, not on the meta key's: CROSSSLOT
            raise UsageError(f"key prefix {prefix!r} contains '{{' or '}}': not usable on a Redis Cluster")
        self._append_script = client.register_script(_APPEND_TURN)
        self._fields_script = client.register_script(_SET_FIELDS)

    def run(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call Redis; its failures become StorageError with one line for the user."""
        return call(self.where, action, *args, **kwargs)

    def ping(self) -> None:
        self.run(self.client.ping)

    def pipeline_execute(self, build: Callable[[Any], Any], transaction: bool = False) -> list[Any]:
        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=transaction)
            build(pipe)
            return list(pipe.execute())

        return list(self.run(execute))

    # -- reading ---------------------------------------------------------------------------------
    def window(
        self,
        session_id: str,
        size: int,
        budget: Callable[[], Callable[[dict[str, Any]], bool]] | None = None,
        most: int = 0,
    ) -> Window:
        """The newest `size` messages (oldest first) and the metadata: one pipelined round trip.

        With `budget` (a factory of predicates that accept messages, newest first, while they fit), messages
        are parsed newest first and parsing stops at the first one the predicate rejects: a turn parses what
        its token budget keeps, not the whole window. When every one of the `size` messages fits and the list
        may hold more, the window is read again, up to `most` messages: a second round trip, only for
        sessions whose newest messages are much shorter than `size` assumed.
        """
        key, meta_key = self.keys.session(session_id), self.keys.meta(session_id)

        def read(count: int) -> Window:
            raw_items, raw_meta, length, raw_oldest = self.pipeline_execute(
                lambda p: (p.lrange(key, 0, count - 1), p.hgetall(meta_key), p.llen(key), p.lindex(key, -1))
            )
            oldest = exporting.parse_entry(raw_oldest) if raw_oldest is not None else None
            if budget is None:
                messages, skipped = parse_entries(reversed(raw_items))
                return Window(messages, decode_hash(raw_meta), skipped, whole=len(raw_items) == length, oldest=oldest)
            fits = budget()
            messages, skipped, full = [], 0, False
            for raw in raw_items:  # newest first
                entry = exporting.parse_entry(raw)
                if entry is None:
                    skipped += 1
                elif not fits(entry):
                    full = True
                    break
                else:
                    messages.append(entry)
            if not full and len(raw_items) == count < most:
                return read(most)
            messages.reverse()
            whole = not full and len(raw_items) == length
            return Window(messages, decode_hash(raw_meta), skipped, whole=whole, oldest=oldest)

        return read(size)

    def iter_messages(
        self, session_id: str, chunk: int = 1000, skipped: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every message, oldest first, read in chunks from the tail.

        Counting from the tail keeps the indexes stable while other writers LPUSH new turns.
        Unusable elements are skipped; their count is added to `skipped[0]` when given.
        """
        key = self.keys.session(session_id)
        begin = 1
        while True:
            items = self.run(self.client.lrange, key, -(begin + chunk - 1), -begin)
            messages, bad = parse_entries(reversed(items))
            if skipped is not None:
                skipped[0] += bad
            yield from messages
            if len(items) < chunk:
                return
            begin += chunk

    def oldest(self, session_id: str, count: int) -> list[dict[str, Any]]:
        """The `count` oldest usable messages of a session, oldest first (one LRANGE from the tail)."""
        return parse_entries(reversed(self.run(self.client.lrange, self.keys.session(session_id), -count, -1)))[0]

    def count(self, session_id: str) -> int:
        return int(self.run(self.client.llen, self.keys.session(session_id)))

    def exists(self, session_id: str) -> bool:
        key, meta = self.keys.session(session_id), self.keys.meta(session_id)
        return any(self.pipeline_execute(lambda p: (p.exists(key), p.exists(meta))))

    def require(self, session_id: str) -> None:
        """NotFoundError when there is no such session; UsageError when its key holds another type (a string,
        a hash another program wrote at `<prefix><id>`): not a session, and no reason to blame Redis."""
        key, meta = self.keys.session(session_id), self.keys.meta(session_id)
        found, has_meta = self.pipeline_execute(lambda p: (p.type(key), p.exists(meta)))
        kind = as_text(found)
        if kind not in ("list", "none"):
            raise UsageError(f"{key!r} holds a Redis {kind}, not a session (a list of messages)")
        if kind == "none" and not has_meta:
            raise NotFoundError(f"no session named {session_id!r}")

    def get_meta(self, session_id: str) -> dict[str, str]:
        return decode_hash(self.run(self.client.hgetall, self.keys.meta(session_id)))

    # -- writing ---------------------------------------------------------------------------------
    def _turn_args(self, record: TurnRecord) -> tuple[list[str], list[Any]]:
        keys = list(self.keys.of_session(record.session))
        if not self.cluster:
            keys.append(self.keys.index)
        ttl = record.ttl or self.ttl or 0
        args: list[Any] = [record.turn, repr(time.time()), ttl, record.session, len(record.meta)]
        for name, value in record.meta.items():
            args += [name, value]
        counters = [(name, amount) for name, amount in record.incr.items() if amount]
        args.append(len(counters))
        for name, amount in counters:
            args += [name, amount]
        args.append(len(record.defaults))
        for name, value in record.defaults.items():
            args += [name, value]
        args += [exporting.encode_entry(e) for e in record.entries]
        return keys, args

    def turn_command(self, record: TurnRecord) -> tuple[Any, ...]:
        """The one command that writes `record`: EVAL of the turn script (for pipelines and `doctor`)."""
        keys, args = self._turn_args(record)
        return ("EVAL", _APPEND_TURN, len(keys), *keys, *args)

    def append_turn(self, record: TurnRecord) -> bool:
        """Add a turn's messages (oldest first) and metadata changes, once: one round trip on a single node.

        Returns False when the turn id was already stored (nothing was written).
        """
        keys, args = self._turn_args(record)
        written = bool(self.run(self._append_script, keys=keys, args=args))
        self._index_step({record.session: time.time()})
        return written

    def append_turns(self, records: Sequence[TurnRecord]) -> list[bool | StorageError]:
        """Write many turns in one pipelined round trip (spool flushes): each is written at most once.

        Returns, per record, whether it was written (False: already stored), or the StorageError Redis
        answered for it; a lost connection raises StorageUnavailable (what ran may have run: ids make that safe).
        """
        if not records:
            return []

        def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for record in records:
                pipe.execute_command(*self.turn_command(record))
            return list(pipe.execute(raise_on_error=False))

        results: list[bool | StorageError] = []
        for outcome in self.run(execute):
            if isinstance(outcome, Exception):
                error = translate(outcome, self.where)
                results.append(error)
            else:
                results.append(bool(outcome))
        self._index_step({r.session: r.at for r, ok in zip(records, results, strict=True) if ok is True})
        return results

    def _index_step(self, sessions: dict[str, float]) -> None:
        """On a cluster, the index rows of sessions just written (on a single node the script did it)."""
        if not self.cluster or not sessions:
            return
        now = time.time()
        try:
            self.run(self.client.zadd, self.keys.index, dict.fromkeys(sessions, now))
        except StorageError as exc:
            # The session itself is written. Raising here would spool (and later write again) a turn that is
            # already stored; the index step is idempotent and the next write, list or adopt redoes it.
            self.emit(events.IndexNotUpdated(str(exc)))

    def set_meta(self, session_id: str, **fields: str) -> None:
        """Change metadata (system prompt, model, title) and mark the session active."""
        self.append_turn(TurnRecord(session_id, [], turn="", meta=dict(fields)))

    def set_fields(self, session_id: str, fields: dict[str, str], only_missing: bool = False) -> bool:
        """Set metadata fields of an existing session without marking it active (a title, say); with
        `only_missing`, only fields it does not have yet (HSETNX). False when the session does not exist."""
        keys = [self.keys.session(session_id), self.keys.meta(session_id)]
        args: list[Any] = ["1" if only_missing else "0"]
        for name, value in fields.items():
            args += [name, value]
        return bool(self.run(self._fields_script, keys=keys, args=args))

    def remove_turn(self, session_id: str, turn_id: str, search: int = 200) -> RemovedTurn | None:
        """Take one turn (by id) out of a session: its messages among the newest `search`, wherever they are.

        Each element carries its message id, so LREM of its exact bytes removes that element and no other,
        whatever other clients pushed meanwhile. When the answer is among them but not its question, the
        search goes further back until it finds it: a turn is taken out whole. None when it is not there.
        """
        key, turns_key = self.keys.session(session_id), self.keys.turns(session_id)
        while True:
            raw_items = self.run(self.client.lrange, key, 0, search - 1)
            found: list[tuple[int, Any, dict[str, Any]]] = []
            for position, raw in enumerate(raw_items):
                entry = exporting.parse_entry(raw)
                if entry is not None and turn_of(entry.get("data", {}).get("id")) == turn_id:
                    found.append((position, raw, entry))
            whole = any(str(entry["data"].get("id")).endswith("-0") for _p, _r, entry in found)
            if whole or len(raw_items) < search:
                break
            search *= 4  # the question lies further back
        if not found:
            return None

        def build(pipe: Any) -> None:
            for _position, raw, _entry in found:
                pipe.lrem(key, 1, raw)
            pipe.srem(turns_key, turn_id)
            # the last messages gone: no turn id stays (an older chatcli kept ids of metadata changes too), or
            # the session, now metadata only, would read as a ghost (chatcli.catalog.is_ghost) and be dropped
            pipe.execute_command("EVAL", _FORGET_TURNS_IF_EMPTY, 2, key, turns_key)

        removed = self.pipeline_execute(build, transaction=True)
        if not any(removed[:-2]):
            return None  # another client removed it first
        entries = [entry for _p, _r, entry in reversed(found)]  # oldest first
        return RemovedTurn(entries, newer=found[0][0])

    def clear_messages(self, session_id: str) -> None:
        """Delete a session's messages; its metadata (system prompt, totals) stays."""
        key, _meta, turns = self.keys.of_session(session_id)
        self.pipeline_execute(lambda p: (p.delete(key), p.delete(turns)), transaction=not self.cluster)
        self.set_meta(session_id)

    def delete(self, session_ids: list[str]) -> None:
        """Delete sessions and their index rows. One non-transactional pipeline: on a cluster it spans
        slots (redis-py sends each command to its node; multi-key DEL is not allowed there)."""

        def build(pipe: Any) -> None:
            for sid in session_ids:
                for key in (*self.keys.of_session(sid), self.keys.live(sid), self.keys.answering(sid)):
                    pipe.delete(key)  # the live stream too: a deleted session's answers do not linger there
            if session_ids:
                pipe.zrem(self.keys.index, *session_ids)

        self.pipeline_execute(build)

    def expire_in(self, pipe: Any, session_id: str, ttl: int | None = None) -> None:
        ttl = ttl or self.ttl
        if ttl:
            for key in self.keys.of_session(session_id):
                pipe.expire(key, ttl)
