"""The server's signing keys come from its secret key file, the one configuration secret every
replica shares (`--secret-key-file`): each key of the file yields a signing key of its own
through HKDF-SHA256 (RFC 5869) with a label for the purpose, so a signature reveals nothing of
the key that encrypts stored secrets, and the two never serve each other's purpose.

The ring follows the file as the secret box does: a rotation (`spky mcp rotate-key`, or a new
file put in place on every replica) is seen at the next signature or check, and a key that
leaves the file still verifies for the lifetime of what it signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..engine.keys import KEY_BYTES, KeyRing
from ..engine.mrtr import STATE_TTL_SECONDS
from .secretbox import Key, KeyFileError, SecretBox

log = logging.getLogger("sp00ky_mcp.secrets")

REQUEST_STATE = b"sp00ky-mcp requestState signing key, version 1"
# The values a browser carries through a sign-in (see `oauth.signed`).
SIGN_IN = b"sp00ky-mcp sign-in signing key, version 1"


def derive(key: Key, purpose: bytes) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose)
    return kdf.derive(key.secret)


class FileKeyRing(KeyRing):
    """The signing keys of the secret key file that `box_of` gives (newest first)."""

    def __init__(
        self,
        box_of: Callable[[], SecretBox],
        purpose: bytes = REQUEST_STATE,
        window: float = STATE_TTL_SECONDS,
    ) -> None:
        self.box_of = box_of
        self.purpose = purpose
        self._ids: tuple[bytes, ...] = ()
        super().__init__(self._derived(box_of().keys), window)
        self._ids = tuple(key.id for key in box_of().keys)

    @property
    def signing(self) -> bytes:
        self._follow()
        return super().signing

    def verifying(self) -> list[bytes]:
        self._follow()
        return super().verifying()

    def _follow(self) -> None:
        box = self.box_of()
        try:
            box.follow()
        except KeyFileError as exc:
            # The keys already read keep serving; the store says the same at its next write.
            log.error("the secret key file cannot be read again: %s", exc)
        keys = box.keys
        ids = tuple(key.id for key in keys)
        if ids != self._ids:
            self.replace(self._derived(keys))
            self._ids = ids

    def _derived(self, keys: Sequence[Key]) -> list[bytes]:
        return [derive(key, self.purpose) for key in keys]
