"""Handshake-era sessions: identity, state machine, the bounded registry (pure) and the port
through which the service keeps them: in this process (`LocalSessions`), or shared by every
replica behind a load balancer, where a client's next request may land on any of them.

Transports, "Session Management": the server assigns a session id in the InitializeResult's
response headers; it must be globally unique and cryptographically secure, and contain only
visible ASCII (0x21-0x7E).  A session is bound to the principal (token) that created it.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
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


# What a request may change in a session: its state, log level and subscriptions.
Mark = tuple[SessionState, str | None, frozenset[str]]


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
    # IO-side companions (event streams, pending requests) hang here, owned by the service:
    # they belong to this process and are never shared.
    runtime: Any = None

    def mark(self) -> Mark:
        """What a request may change and a shared store must then be told."""
        return self.state, self.log_level, frozenset(self.subscriptions)

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


class SessionStore(ABC):
    """Where the service keeps sessions.  `on_end` hears of every session this store ends
    (deleted, evicted, expired, or its token refused), by id, so this process releases what
    it holds for it; a session ended by another replica is found gone at its next use."""

    on_end: Callable[[str], None]

    @abstractmethod
    async def add(self, session: Session) -> None:
        """Stores a new session, evicting the least recently used beyond the caps."""

    @abstractmethod
    async def get(self, session_id: str, now: float) -> Session | None:
        """The session, marked as used now; None if it ended or idled past its TTL."""

    @abstractmethod
    async def save(self, session: Session, before: Mark) -> None:
        """Records what a request changed (state, log level, subscriptions) since `before`,
        and only that: a change another replica made meanwhile is kept."""

    @abstractmethod
    async def remove(self, session_id: str) -> bool: ...

    @abstractmethod
    async def remove_owner(self, owner: str) -> None: ...

    @abstractmethod
    async def sweep(self, now: float, held: list[str]) -> list[str]:
        """Ends what idled past its TTL; of `held` (sessions this process holds something
        for), the ids that have ended, wherever that happened."""

    def forget(self, session_id: str) -> None:
        """Another replica ended or changed the session: what this process keeps of it (a
        store that caches) is dropped, so its next use reads it again."""
        return None

    async def run(self) -> None:
        """Background upkeep for as long as the server serves (none in one process)."""
        return None

    async def close(self) -> None:
        return None


class LocalSessions(SessionStore):
    """The sessions of one process, in memory: the registry behind the port."""

    def __init__(
        self, max_sessions: int, max_per_owner: int, idle_ttl: float, on_end: Callable[[str], None]
    ) -> None:
        self.on_end = on_end
        self.registry = SessionRegistry(
            max_sessions, max_per_owner, idle_ttl, lambda session: self.on_end(session.id)
        )

    def __len__(self) -> int:
        return len(self.registry)

    def ids(self) -> list[str]:
        return self.registry.ids()

    def peek(self, session_id: str) -> Session | None:
        return self.registry.peek(session_id)

    async def add(self, session: Session) -> None:
        self.registry.add(session)

    async def get(self, session_id: str, now: float) -> Session | None:
        return self.registry.get(session_id, now)

    async def save(self, session: Session, before: Mark) -> None:
        return None  # the session is the stored object itself

    async def remove(self, session_id: str) -> bool:
        return self.registry.remove(session_id) is not None

    async def remove_owner(self, owner: str) -> None:
        self.registry.remove_owner(owner)

    async def sweep(self, now: float, held: list[str]) -> list[str]:
        self.registry.expired(now)
        return []
