"""Server signing keys: the newest signs, and every key still in the configuration verifies;
a key that leaves the configuration keeps verifying for a stated window, so that what was
signed with it just before a rotation still holds for as long as it may live.  Pure: the
clock is given.

Behind a load balancer every replica must hold the same keys (a requestState signed by one
is verified by another), so they come from configuration; a single process may make its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence

Clock = Callable[[], float]
KEY_BYTES = 32


class KeyRing:
    def __init__(
        self, keys: Sequence[bytes] = (), window: float = 0.0, clock: Clock = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._current: tuple[bytes, ...] = tuple(keys) or (secrets.token_bytes(KEY_BYTES),)
        # Keys no longer configured, each with the moment it stops verifying.
        self._retired: dict[bytes, float] = {}

    @property
    def signing(self) -> bytes:
        return self._current[0]

    def verifying(self) -> list[bytes]:
        now = self.clock()
        self._retired = {k: until for k, until in self._retired.items() if until > now}
        return [*self._current, *self._retired]

    def replace(self, keys: Sequence[bytes]) -> None:
        """The configured keys changed (newest first): the ones gone verify for `window`
        seconds more."""
        if not keys:
            raise ValueError("a key ring needs at least one key")
        until = self.clock() + self.window
        for key in self._current:
            if key not in keys:
                self._retired[key] = until
        for key in keys:
            self._retired.pop(key, None)
        self._current = tuple(keys)

    def mac(self, body: bytes) -> bytes:
        return hmac.new(self.signing, body, hashlib.sha256).digest()

    def check(self, mac: bytes, body: bytes) -> bool:
        """Whether any verifying key made `mac` over `body` (compared in constant time)."""
        found = False
        for key in self.verifying():
            expected = hmac.new(key, body, hashlib.sha256).digest()
            found |= hmac.compare_digest(mac, expected)
        return found
