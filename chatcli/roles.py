"""Roles: named system prompts kept in Redis beside the sessions, so every machine on that Redis has them.

A role's prompt may hold `{placeholders}`, filled from `--var name=value`; `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from chatcli.errors import NotFoundError, UsageError
from chatcli.settings import utf8_text
from chatcli.store import SessionStore, as_text

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_PROMPT = 100_000


def checked_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"invalid role name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def placeholders(prompt: str) -> list[str]:
    """The names of a prompt's {placeholders}, in order, once each; UsageError for a malformed one."""
    try:
        fields = [field for _text, field, _spec, _conv in string.Formatter().parse(prompt) if field is not None]
    except ValueError as exc:
        raise UsageError(f"the role's prompt has a stray brace ({exc}): write {{{{ and }}}} for braces") from None
    for field in fields:
        if not field.isidentifier():
            raise UsageError(f"the role's prompt has a placeholder {{{field}}} that is not a name (braces: {{{{ }}}})")
    return list(dict.fromkeys(fields))


def parse_vars(pairs: Iterable[str]) -> dict[str, str]:
    """`--var name=value` options as a mapping; UsageError naming a malformed one."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip().isidentifier():
            raise UsageError(f"--var {pair!r}: write --var name=value")
        found[name.strip()] = utf8_text(f"--var {name.strip()}", value)
    return found


def fill(name: str, prompt: str, values: dict[str, str]) -> str:
    """The prompt with its placeholders filled; UsageError naming each missing one (or an unused --var)."""
    wanted = placeholders(prompt)
    missing = [p for p in wanted if p not in values]
    if missing:
        needs = ", ".join(f"--var {p}=..." for p in missing)
        raise UsageError(f"role {name!r} needs {needs} (missing {', '.join(missing)})")
    unused = [v for v in values if v not in wanted]
    if unused:
        has = ", ".join(wanted) if wanted else "none"
        raise UsageError(f"role {name!r} has no placeholder {', '.join(unused)} (its placeholders: {has})")
    return prompt.format_map(values)


@dataclass
class Role:
    name: str
    prompt: str

    @property
    def summary(self) -> str:
        first = next((line.strip() for line in self.prompt.splitlines() if line.strip()), "")
        return first


class RoleBook:
    """The roles of one key prefix: the hash `chatcli:roles:{<prefix>}` (name -> prompt)."""

    def __init__(self, store: SessionStore):
        self.store = store
        self.key = store.keys.roles

    def add(self, name: str, prompt: str, replace: bool = False) -> bool:
        """Store a role; False (nothing changed) when it exists and `replace` is not given."""
        checked_name(name)
        utf8_text("the role's prompt", prompt)
        if not prompt.strip():
            raise UsageError("the role's prompt is empty")
        if len(prompt) > MAX_PROMPT:
            raise UsageError(f"the role's prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT}")
        placeholders(prompt)
        client = self.store.client
        if replace:
            self.store.run(client.hset, self.key, name, prompt)
            return True
        return bool(self.store.run(client.hsetnx, self.key, name, prompt))

    def get(self, name: str) -> Role:
        checked_name(name)
        raw = self.store.run(self.store.client.hget, self.key, name)
        if raw is None:
            raise NotFoundError(f"no role named {name!r} (`chatcli roles list` shows them)")
        return Role(name, as_text(raw))

    def all(self) -> list[Role]:
        raw = self.store.run(self.store.client.hgetall, self.key)
        return sorted((Role(as_text(k), as_text(v)) for k, v in raw.items()), key=lambda r: r.name)

    def delete(self, name: str) -> None:
        checked_name(name)
        if not self.store.run(self.store.client.hdel, self.key, name):
            raise NotFoundError(f"no role named {name!r}")

    def prompt_for(self, name: str, values: dict[str, str]) -> str:
        return fill(name, self.get(name).prompt, values)
