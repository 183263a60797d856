"""Handshake-era sessions: identity, state machine and the bounded registry.  Pure.

Transports, "Session Management": the server assigns a session id in the InitializeResult's
response headers; it must be globally unique and cryptographically secure, and contain only
visible ASCII (0x21-0x7E).  A session is bound to the principal (token) that created it.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class SessionState(Enum):
    INITIALIZING = "initializing"
    READY = "ready"
    CLOSED = "closed"


class SessionEvent(Enum):
    INITIALIZED = "initialized"
    REQUEST = "request"
    CLOSE = "close"


# The state machine as data.  Requests are allowed while INITIALIZING: lifecycle says a client
# SHOULD NOT send them before `initialized`, not that a server must refuse them.
TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (SessionState.INITIALIZING, SessionEvent.INITIALIZED): SessionState.READY,
    (SessionState.INITIALIZING, SessionEvent.REQUEST): SessionState.INITIALIZING,
    (SessionState.INITIALIZING, SessionEvent.CLOSE): SessionState.CLOSED,
    (SessionState.READY, SessionEvent.INITIALIZED): SessionState.READY,
    (SessionState.READY, SessionEvent.REQUEST): SessionState.READY,
    (SessionState.READY, SessionEvent.CLOSE): SessionState.CLOSED,
}


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


@dataclass(slots=True)
class Session:
    id: str
    owner: str | None
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    last_seen: float
    state: SessionState = SessionState.INITIALIZING
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    # IO-side companions (event streams, pending requests) hang here, owned by the service.
    runtime: Any = None

    def advance(self, event: SessionEvent) -> bool:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            return False
        self.state = nxt
        return True


class SessionRegistry:
    """In-memory session store with global and per-owner caps; the least recently used session
    is evicted first, and an evicted id answers 404 so the client re-initializes."""

    def __init__(
        self,
        max_sessions: int,
        max_per_owner: int,
        idle_ttl: float,
        on_end: Callable[[Session], None] = lambda session: None,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_owner = max_per_owner
        self.idle_ttl = idle_ttl
        # Told of every session that ends, however it ends (deleted, evicted, expired), so
        # that whatever the session still holds is released.
        self.on_end = on_end
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> list[Session]:
        """Store a new session; returns the sessions evicted to make room."""
        evicted = self._evict_for(session.owner)
        self._sessions[session.id] = session
        return evicted

    def get(self, session_id: str, now: float) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if now - session.last_seen > self.idle_ttl:
            self.remove(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def ids(self) -> list[str]:
        return list(self._sessions)

    def peek(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: str) -> Session | None:
        if session_id not in self._sessions:
            return None
        return self._pop(session_id)

    def remove_owner(self, owner: str) -> list[Session]:
        ids = [s.id for s in self._sessions.values() if s.owner == owner]
        return [s for s in (self.remove(i) for i in ids) if s is not None]

    def expired(self, now: float) -> list[Session]:
        ids = [s.id for s in self._sessions.values() if now - s.last_seen > self.idle_ttl]
        return [s for s in (self.remove(i) for i in ids) if s is not None]

    def _evict_for(self, owner: str | None) -> list[Session]:
        evicted: list[Session] = []
        owned = [s.id for s in self._sessions.values() if s.owner == owner]
        while len(owned) >= self.max_per_owner:
            evicted.append(self._pop(owned.pop(0)))
        while len(self._sessions) >= self.max_sessions:
            evicted.append(self._pop(next(iter(self._sessions))))
        return evicted

    def _pop(self, session_id: str) -> Session:
        session = self._sessions.pop(session_id)
        session.advance(SessionEvent.CLOSE)
        self.on_end(session)
        return session
