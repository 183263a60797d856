"""PKCE with S256 only (RFC 7636; OAuth 2.1 section 4.1.1 requires it of every client).  Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# RFC 7636 section 4.1: 43 to 128 unreserved characters; a challenge is a SHA-256 digest in
# base64url without padding, 43 characters.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_challenge(challenge: str) -> bool:
    return CHALLENGE.fullmatch(challenge) is not None


def verifies(verifier: str, challenge: str) -> bool:
    """Whether `verifier` is the one `challenge` was made from (compared in constant time)."""
    if VERIFIER.fullmatch(verifier) is None:
        return False
    return hmac.compare_digest(s256(verifier), challenge)
