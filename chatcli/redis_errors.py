"""Redis failures as chatcli errors: one line for the user, and whether waiting can help.

A Redis that cannot take a write now (down, timed out, out of memory, read-only, loading, busy with a
script, refusing by ACL, failing to persist) is StorageUnavailable: chat and ask keep the turn in the spool
and write it when Redis takes it. Only a refusal that cannot change (the key holds another type) is
StorageRefused: the spool sets that record aside instead of retrying it forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisClusterException

from chatcli.errors import StorageError, StorageUnavailable

T = TypeVar("T")

# error reply codes of a Redis that may take the same command later
TEMPORARY = (
    "OOM",
    "READONLY",
    "NOPERM",
    "MISCONF",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "NOSCRIPT",
)


class StorageRefused(StorageError):
    """Redis refused the command for a reason that does not go away by waiting (WRONGTYPE)."""


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def reply_code(exc: BaseException) -> str:
    """The code of a Redis error reply ("WRONGTYPE", "OOM", ...); scripts wrap it after "script:"."""
    text = str(exc)
    marker = text.find("-")
    if text.startswith("Error") and marker != -1:  # "Error running script (...): -OOM command not allowed..."
        text = text[marker + 1 :]
    return text.split(" ", 1)[0].upper()


def translate(exc: BaseException, where: str) -> StorageError:
    """The StorageError a Redis failure means."""
    if isinstance(exc, redis.AuthenticationError):
        return StorageError(f"Redis at {where} refused the credentials")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return StorageUnavailable(f"lost the connection to Redis at {where}: {first_line(exc)}")
    if isinstance(exc, (redis.exceptions.ClusterDownError, RedisClusterException)):
        return StorageUnavailable(f"Redis Cluster at {where} does not answer: {first_line(exc)}")
    if isinstance(exc, redis.ResponseError):
        code = reply_code(exc)
        # redis-py strips the code of the replies it has a class for
        stripped = (
            redis.exceptions.OutOfMemoryError,
            redis.exceptions.ReadOnlyError,
            redis.exceptions.NoPermissionError,
        )
        if isinstance(exc, stripped):
            code = "OOM"
        if code in TEMPORARY:
            return StorageUnavailable(f"Redis at {where} cannot take it now: {first_line(exc)}")
        if code == "WRONGTYPE":
            return StorageRefused(f"Redis at {where} refused: {first_line(exc)}")
        return StorageError(f"Redis at {where} answered with an error: {first_line(exc)}")
    return StorageError(f"Redis at {where} failed: {first_line(exc)}")


def call(where: str, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call Redis; its failures become StorageError with one line for the user."""
    try:
        return action(*args, **kwargs)
    except (redis.RedisError, OSError) as exc:
        raise translate(exc, where) from None
