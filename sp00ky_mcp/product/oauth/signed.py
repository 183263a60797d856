"""Values the browser carries between the pages of a sign-in, signed so it cannot change them:
the authorization request being answered, who signed in, and the CSRF token of each form.

A signed value is `base64url(JSON).base64url(HMAC-SHA256)` over a purpose word and the JSON,
with an expiry inside; it verifies under any of the ring's keys, so a key rotation does not
break a sign-in under way.  Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

import orjson

from ...engine.keys import KeyRing
from ..accounts import Clock


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, ring: KeyRing, clock: Clock = time.time) -> None:
        self.ring = ring
        self.clock = clock

    def sign(self, purpose: str, value: dict[str, Any], seconds: float) -> str:
        body = orjson.dumps({**value, "exp": self.clock() + seconds})
        return _b64(body) + "." + _b64(self._mac(self.ring.signing, purpose, body))

    def open(self, purpose: str, signed: str | None) -> dict[str, Any] | None:
        """The value, if `signed` is one this server signed for `purpose` and it has not
        expired; None otherwise."""
        if not signed or signed.count(".") != 1:
            return None
        encoded, mac = signed.split(".")
        try:
            body, given = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not any(
            hmac.compare_digest(self._mac(key, purpose, body), given)
            for key in self.ring.verifying()
        ):
            return None
        value = orjson.loads(body)
        if not isinstance(value, dict) or not self.clock() < value.get("exp", 0):
            return None
        return value

    def csrf(self, nonce: str, request: str) -> str:
        """The CSRF token of a form: bound to the browser's nonce cookie and to the request
        the form answers, so a token from another browser or another request fails."""
        digest = hashlib.sha256(request.encode()).digest()
        return _b64(self._mac(self.ring.signing, "csrf", nonce.encode() + b"|" + digest))

    def csrf_holds(self, nonce: str | None, request: str, token: str | None) -> bool:
        if not nonce or not token:
            return False
        digest = hashlib.sha256(request.encode()).digest()
        body = nonce.encode() + b"|" + digest
        # Compared as bytes: compare_digest refuses str holding anything but ASCII.
        given = token.encode("utf-8", "surrogatepass")
        return any(
            hmac.compare_digest(_b64(self._mac(key, "csrf", body)).encode(), given)
            for key in self.ring.verifying()
        )

    @staticmethod
    def _mac(key: bytes, purpose: str, body: bytes) -> bytes:
        return hmac.new(key, purpose.encode() + b"\0" + body, hashlib.sha256).digest()
