"""What storage tells the user, as typed events: storage never writes English, the CLI renders these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Spooling:
    """Redis did not answer: turns are kept in the local spool until it does."""

    where: str
    spool: Path


@dataclass(frozen=True)
class OfflineRead:
    """Redis did not answer a read: the model sees the messages this process and the spool know."""

    where: str
    messages: int


@dataclass(frozen=True)
class Flushed:
    """Spooled turns reached Redis."""

    where: str
    turns: int
    messages: int


@dataclass(frozen=True)
class SetAside:
    """Redis refused a spooled turn for good (the key holds another type): kept apart, listed by `chatcli spool`."""

    session: str
    reason: str
    record: int


@dataclass(frozen=True)
class WaitingElsewhere:
    """Turns are spooled for another Redis than the current one (another URL, port or host name)."""

    where: str
    turns: int


@dataclass(frozen=True)
class IndexNotUpdated:
    """A cluster write stored the session but not its index row; the next write or `sessions adopt` redoes it."""

    reason: str


@dataclass(frozen=True)
class SpoolNotWritable:
    """The spool cannot be written (full disk): the turn went to Redis only, with no local copy first."""

    reason: str


@dataclass(frozen=True)
class Unreadable:
    """Records of the spool that cannot be read were moved aside, never deleted."""

    count: int
    spool: Path


Event = Spooling | OfflineRead | Flushed | SetAside | WaitingElsewhere | IndexNotUpdated | SpoolNotWritable | Unreadable
Emit = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """An Emit that drops every event (library use, tests)."""


def describe(event: Event) -> str:
    """The one line a user reads for an event."""
    match event:
        case Spooling(where, spool):
            return (
                f"(Redis at {where} does not answer: history is being spooled to {spool} "
                "and will be written to Redis when it answers again)"
            )
        case OfflineRead(where, messages):
            return (
                f"(Redis at {where} does not answer: the model sees this session's {messages} messages "
                "kept locally, as far as the history budget allows)"
            )
        case Flushed(where, turns, messages):
            return f"(Redis at {where} answers again: wrote {messages} spooled messages ({turns} turns) to it)"
        case SetAside(session, reason, record):
            return (
                f"(Redis refused a spooled turn of session {session!r} for good: {reason}; it is kept as "
                f"spool record {record}: `chatcli spool list`, `chatcli spool export {record}`)"
            )
        case WaitingElsewhere(where, turns):
            return (
                f"({turns} spooled turns wait for Redis at {where}, not the one in use: "
                "`chatcli spool send` writes them here, `chatcli spool list` shows them)"
            )
        case IndexNotUpdated(reason):
            return f"(the session is saved, but the session index was not updated: {reason})"
        case SpoolNotWritable(reason):
            return f"(the turn was saved in Redis, but the local spool cannot be written: {reason})"
        case Unreadable(count, spool):
            return f"({count} records of the spool {spool} cannot be read: they are kept aside, `chatcli spool list`)"
    raise AssertionError(event)  # pragma: no cover
