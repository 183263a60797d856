"""Where a server keeps what may live outside its process.  Each port has an in-memory
implementation, the default, which is right for one process; a deployment of several
replicas behind a load balancer gives shared ones (the product's, on Redis), so that a
request never depends on which replica served the one before it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Bus, EventLog, LocalBus, LocalEventLog
from .keys import KeyRing
from .quotas import LocalQuotas, Quotas
from .sessions import SessionStore


@dataclass(frozen=True, slots=True)
class Ports:
    # Handshake-era sessions (None: in this process, bounded by the server's limits).
    sessions: SessionStore | None = None
    # Their event streams, for Last-Event-ID replay from any replica.
    events: EventLog = field(default_factory=LocalEventLog)
    # Answers, cancellations, announcements and ended sessions, to the replica concerned.
    bus: Bus = field(default_factory=LocalBus)
    # A token's rate and calls in flight, counted once for all replicas.
    quotas: Quotas = field(default_factory=LocalQuotas)
    # The keys that sign what clients carry between requests (requestState); None: this
    # process makes its own, which no other replica knows.
    keys: KeyRing | None = None
