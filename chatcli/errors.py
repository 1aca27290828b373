"""The error hierarchy and the exit codes every command maps errors to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    STORAGE = 3
    MODEL = 4
    NOT_FOUND = 5
    INTERRUPTED = 130


class ChatcliError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ChatcliError):
    exit_code = ExitCode.USAGE


class StorageError(ChatcliError):
    exit_code = ExitCode.STORAGE


class StorageUnavailable(StorageError):
    """Redis did not answer (refused, closed, timed out): what a spool can wait out, unlike bad credentials."""


class ModelError(ChatcliError):
    exit_code = ExitCode.MODEL


class NotFoundError(ChatcliError):
    exit_code = ExitCode.NOT_FOUND
