"""What the replicas of one deployment share: the state on Redis, and the signing keys of
the one key file each is given.  Apart from the product's store, so that conformance replicas
load only what they use."""

from __future__ import annotations

from pathlib import Path

from ..engine.config import Limits
from ..engine.keys import KeyRing
from ..product.secretbox import KeyFileError, load_box
from ..product.shared import SharedState, SharedStateError, connect_shared
from ..product.signing import FileKeyRing
from .common import CliError


def file_key_ring(path: Path) -> KeyRing:
    """The signing keys of the key file at `path` (made there by the first replica)."""
    try:
        box = load_box(path.expanduser(), ())
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    return FileKeyRing(lambda: box)


async def shared_state(url: str, limits: Limits) -> SharedState:
    try:
        return await connect_shared(url, limits)
    except SharedStateError as exc:
        raise CliError(str(exc)) from None
