"""Chat sessions kept by the server: at most `max_sessions`, the least recently used evicted first."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from agent.chat.session import ChatSession
from retrieval.errors import UnknownSessionError


@dataclass
class SessionEntry:
    """One conversation and the lock that makes its turns run one at a time."""

    session: ChatSession
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Chat sessions by id, thread-safe, bounded with LRU eviction.

    Args:
        max_sessions: sessions kept; opening one more evicts the least recently used.
    """

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<SessionStore {len(self):,}/{self.max_sessions:,} sessions>"

    def open(self, session_id: str | None, user_id: str) -> tuple[str, SessionEntry]:
        """The session `session_id` names (marked most recently used), or a new one for `user_id` when None.

        Raises:
            UnknownSessionError: the id was never issued, or its session was evicted.
        """
        with self._lock:
            if session_id is None:
                session_id = uuid.uuid4().hex
                self._entries[session_id] = SessionEntry(ChatSession(user=user_id))
                while len(self._entries) > self.max_sessions:
                    self._entries.popitem(last=False)
                return session_id, self._entries[session_id]
            entry = self._entries.get(session_id)
            if entry is None:
                raise UnknownSessionError(f"unknown chat session {session_id[:64]!r} (never started, or evicted "
                                          f"after {self.max_sessions:,} newer sessions): leave session_id out "
                                          "to start a new one")
            self._entries.move_to_end(session_id)
            return session_id, entry
