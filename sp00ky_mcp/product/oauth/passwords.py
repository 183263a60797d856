"""Password hashes: scrypt (RFC 7914), memory-hard, from the standard library.

A hash is stored as `scrypt$N$r$p$salt$key` (base64), so the cost can be raised later and old
hashes still verify.  Hashing takes about a tenth of a second and 32 MiB, so it runs in a
worker thread, a few at a time: sign-in attempts cannot take the event loop or the memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import anyio

N, R, P = 2**15, 8, 1
MAXMEM = 64 * 1024 * 1024
SHORTEST, LONGEST = 10, 1024
_hashing = anyio.CapacityLimiter(2)
# Sign-ins waiting for a hash at most; past that one is turned away at once, so that a crowd
# of attempts (each a few tens of milliseconds of scrypt) cannot queue without end.
MOST_WAITING = 16


class HashingBusy(Exception):
    """Too many passwords wait to be checked."""


def problem(password: str) -> str | None:
    if len(password) < SHORTEST:
        return f"A password needs at least {SHORTEST} characters."
    if len(password) > LONGEST:
        return f"A password may have at most {LONGEST} characters."
    return None


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    secret = password.encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=32)


def hashed(password: str) -> str:
    salt = os.urandom(16)
    key = _derive(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verifies(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, base64.b64decode(key))


async def hash_in_worker(password: str) -> str:
    return await anyio.to_thread.run_sync(hashed, password, limiter=_hashing)


def busy() -> bool:
    """As many passwords wait to be checked as may: another would be turned away."""
    return _hashing.statistics().tasks_waiting >= MOST_WAITING


async def verify_in_worker(password: str, stored: str | None) -> bool:
    """Whether `password` is the one `stored` was made from; with no hash stored (no such user,
    or no password set) a hash is still computed, so the answer takes as long either way."""
    if busy():
        raise HashingBusy
    if len(password) > LONGEST:  # no one's password: not worth hashing
        return False
    if stored is None:
        await anyio.to_thread.run_sync(hashed, password, limiter=_hashing)
        return False
    return await anyio.to_thread.run_sync(verifies, password, stored, limiter=_hashing)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
