"""Ports for what replicas behind a load balancer must share beyond sessions: the log of a
session's event streams, for Last-Event-ID replay from any replica (transports,
"Resumability and Redelivery"), and a bus that carries what arrives at one replica to the
one it concerns (a client's answer to a server request, a cancellation) or to all of them (an
announcement, a session ended).

The in-memory implementations are those of one process, where every stream, call and
listener is local: the log keeps nothing beyond the streams themselves and the bus carries
nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

# What happened on a stream, in the order it happened: an event, a cut (the HTTP response
# following the stream ends there; 2025-11-25 SSE polling), its end; and its opening, kept
# before its priming event is sent (at sequence 0, after any cut there).
EVENT, CUT, END, OPEN = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Entry:
    kind: int
    seq: int
    data: bytes = b""
    final: bool = False


class EventLog:
    """Where the event streams of handshake-era sessions are kept for other replicas; this
    base keeps nothing (one process)."""

    shared = False

    def record(self, session_id: str, stream_id: str, entry: Entry) -> None:
        """Keeps `entry` of the stream, in order with everything recorded before."""
        return None

    async def settle(self) -> bool:
        """Waits until everything recorded is kept; False if it could not be (the events
        still reach the client they were sent to, but not a replay elsewhere)."""
        return True

    async def exists(self, session_id: str, stream_id: str) -> bool:
        """Whether the stream is kept here (it was made on another replica)."""
        return False

    def follow(
        self, session_id: str, stream_id: str, after: int, keepalive: float
    ) -> AsyncIterator[Entry | None]:
        """The stream's entries past `after`, then live ones until it ends or is cut; None
        marks a quiet interval."""
        raise LookupError(stream_id)

    async def run(self) -> None:
        """Background work for as long as the server serves."""
        return None


class LocalEventLog(EventLog):
    """One process: its streams are all the log there is."""


Message = dict[str, Any]


class Bus(ABC):
    """Carries messages between replicas; `deliver` is told of each one another replica
    sent (never of this replica's own)."""

    deliver: Callable[[Message], None] = staticmethod(lambda message: None)
    shared = False

    @abstractmethod
    async def publish(self, message: Message, confirm: bool = False) -> None:
        """Sends `message` (JSON-serialisable) to every other replica, at most once; with
        `confirm`, returns once every replica that heard it has acted on it (or a bounded
        wait has passed), so that what a request changed holds at the client's next one."""

    async def run(self) -> None:
        """Receives for as long as the server serves."""
        return None


class LocalBus(Bus):
    """One process: there is no other replica to tell."""

    async def publish(self, message: Message, confirm: bool = False) -> None:
        return None
