"""The key layout: the only code that names a Redis key.

Compatible with langchain_community's RedisChatMessageHistory:
  <prefix><id>                      list, newest first (LPUSH), each element json.dumps(message_to_dict(m))
What chatcli adds (never required to read a session):
  chatcli:meta:{<prefix><id>}       hash: created, updated, title, title_by (user | model), system, role, model,
                                    temperature, input_tokens, output_tokens, ttl (the TTL every turn
                                    refreshes the session to: --ttl, or the length of the list's own)
  chatcli:turns:{<prefix><id>}      set of the turn ids stored in the list: a turn is written once
  chatcli:index:{<prefix>}          sorted set of session ids scored by last activity (epoch seconds)
  chatcli:roles:{<prefix>}          hash: role name -> its system prompt (shared by every machine on this Redis)
  chatcli:live:{<prefix><id>}       stream, capped (XADD MAXLEN ~), expiring: the pieces of answers as they stream
                                    (start, piece, end entries), read by `chatcli follow` (chatcli.live)
  chatcli:answering:{<prefix><id>}  string, short TTL: which client is answering in the session now (presence)
The braces are Redis Cluster hash tags: a session's list, metadata and turn ids share one slot.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from chatcli.errors import UsageError

MAX_ID_LENGTH = 256


def validate_session_id(session_id: str) -> str:
    """Session ids: 1-256 characters, no braces, no control characters, no edge white space.

    Every other character is literal (glob characters included): ids are never used as patterns.
    """
    if not session_id:
        raise UsageError("session id is empty")
    if len(session_id) > MAX_ID_LENGTH:
        raise UsageError(f"session id is {len(session_id)} characters long; the limit is {MAX_ID_LENGTH}")
    for ch in session_id:
        if ch in "{}":
            raise UsageError("session id may not contain '{' or '}'")
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise UsageError(f"session id may not contain control characters (found {ch!r})")
    if session_id != session_id.strip():
        raise UsageError("session id may not start or end with white space")
    return session_id


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH / KEYS pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True)
class Keys:
    """The keys of one key prefix."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix.strip():
            # an empty prefix makes every list in the database a "session": `clear` would delete them
            raise UsageError("the key prefix is empty: set CHATCLI_KEY_PREFIX (default message_store:)")

    def session(self, session_id: str) -> str:
        """The session's list: the key LangChain's RedisChatMessageHistory reads."""
        return f"{self.prefix}{session_id}"

    def meta(self, session_id: str) -> str:
        return f"chatcli:meta:{{{self.prefix}{session_id}}}"

    def turns(self, session_id: str) -> str:
        return f"chatcli:turns:{{{self.prefix}{session_id}}}"

    def live(self, session_id: str) -> str:
        """The stream of the answers being generated in the session (chatcli.live)."""
        return f"chatcli:live:{{{self.prefix}{session_id}}}"

    def answering(self, session_id: str) -> str:
        """The presence key: which client is answering in the session, while it is (short TTL)."""
        return f"chatcli:answering:{{{self.prefix}{session_id}}}"

    def of_session(self, session_id: str) -> tuple[str, str, str]:
        """Every key of one session (one cluster slot): list, metadata, turn ids."""
        return self.session(session_id), self.meta(session_id), self.turns(session_id)

    @property
    def index(self) -> str:
        return f"chatcli:index:{{{self.prefix}}}"

    @property
    def roles(self) -> str:
        return f"chatcli:roles:{{{self.prefix}}}"

    @property
    def sessions_pattern(self) -> str:
        """SCAN MATCH pattern of every session list of this prefix."""
        return glob_escape(self.prefix) + "*"

    def session_id_of(self, key: str) -> str | None:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else None
