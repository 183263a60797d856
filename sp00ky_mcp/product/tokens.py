"""The `mcp_live_` token format.  Pure.

A token is `mcp_live_` + 32 characters of CSPRNG base62 + a 6-character base62 CRC-32 of the
random part, so a secret scanner can tell a real token from a typo offline (the scheme GitHub
uses for its tokens).  Only the SHA-256 of a token is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

PREFIX = "mcp_live_"
API_KEY_PREFIX = "spk_live_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
# How long a minted token lives unless its minter says otherwise.
DEFAULT_TOKEN_DAYS = 90
TOKEN_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH


def base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def checksum(random_part: str) -> str:
    return base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def mint() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + checksum(random_part)


def well_formed(token: str) -> bool:
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body = token[len(PREFIX) :]
    # ASCII letters and digits are exactly the base62 alphabet.
    if not (body.isascii() and body.isalnum()):
        return False
    random_part, check = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return hmac.compare_digest(checksum(random_part), check)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hint(token: str) -> str:
    """What may be shown later to tell tokens apart: the prefix and four characters."""
    return token[: len(PREFIX) + 4]


def masked(token_hint: str) -> str:
    return f"{token_hint}{'•' * 6}"


def new_token_id() -> str:
    return "tok_" + "".join(secrets.choice(ALPHABET) for _ in range(16))
