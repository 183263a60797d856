"""Secret values at rest: AES-256-GCM with a random 96-bit nonce per value (NIST SP 800-38D),
under keys kept in a file of their own, never in the database.

A sealed value is one BLOB: a format byte, the 8-byte id of the key that sealed it, the nonce,
and the ciphertext with its 16-byte tag.  The associated data names where the value lives
(table, column and the row's identity), so a value copied to another row or column does not
open.  A copy of the database alone therefore reveals no secret value; the database and the key
file together reveal them all.

The key file holds one key per line, `<id hex> <key base64>`: the first seals, every one
opens.  Rotation writes the new key in front of the old ones, re-seals every value in one
transaction, and only then rewrites the file without the old keys, so no value is ever sealed
with a key that is not on disk.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..engine.errors import ToolError

log = logging.getLogger("sp00ky_mcp.secrets")
KEY_FILE_NAME = "secret.key"
KEY_FILE_ENV = "SP00KY_MCP_SECRET_KEY_FILE"
FORMAT = b"\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
# The bytes a sealed value takes beyond its plaintext.
OVERHEAD = len(FORMAT) + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES
_HEADER = (
    "# sp00ky-mcp secret keys: the first line's key encrypts, every key here decrypts.\n"
    "# Keep this file private (mode 0600) and back it up apart from the database.\n"
)
_LINE = re.compile(r"([0-9a-f]{16}) ([A-Za-z0-9+/]{43}=)")
UNREADABLE = (
    "A stored secret value could not be decrypted, so nothing was shown or changed; the "
    "server's operator has been told and must check its secret key file and database."
)
UNSEALABLE = (
    "A secret value could not be encrypted, so nothing was changed; the server's operator "
    "has been told and must check its secret key file."
)


class KeyFileError(Exception):
    """The key file cannot be used; the message says what to fix."""


class SecretUnreadable(ToolError):
    """A sealed value that does not open: tampered with, moved, or sealed under a key this
    server does not hold.  The client sees a generic sentence; the details go to the log."""

    def __init__(self) -> None:
        super().__init__(UNREADABLE)


class SecretUnsealable(ToolError):
    """The key file went missing or bad while serving: a write with a secret is refused."""

    def __init__(self) -> None:
        super().__init__(UNSEALABLE)


@dataclass(frozen=True, slots=True)
class Column:
    """A column that holds secret values, and the columns that identify its rows."""

    table: str
    column: str
    identity: tuple[str, ...]

    def aad(self, identity: Sequence[str]) -> bytes:
        return orjson.dumps([self.table, self.column, *identity])


ENV_VALUE = Column("env_vars", "value", ("project_id", "key"))
VAULT_MATERIAL = Column("vaults", "key_material", ("project_id",))
# Every column of the store that holds secrets: what rotation re-seals and what a start checks.
SEALED = (ENV_VALUE, VAULT_MATERIAL)


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    id: bytes
    secret: bytes

    @classmethod
    def new(cls) -> Key:
        return cls(secrets.token_bytes(KEY_ID_BYTES), AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def line(self) -> str:
        return f"{self.id.hex()} {base64.b64encode(self.secret).decode('ascii')}\n"


def key_file_for(db_path: str, given: str | Path | None = None) -> Path:
    """The key file: `given`, else $SP00KY_MCP_SECRET_KEY_FILE, else secret.key beside the
    database."""
    chosen = given or os.environ.get(KEY_FILE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return Path(db_path).parent / KEY_FILE_NAME


def parse_keys(path: Path, text: str) -> list[Key]:
    keys: list[Key] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise KeyFileError(
                f"Line {number} of the secret key file {path} is not '<16 hex digits> "
                "<base64 of 32 bytes>'; restore the file from its backup."
            )
        keys.append(Key(bytes.fromhex(match[1]), base64.b64decode(match[2])))
    if not keys:
        raise KeyFileError(
            f"The secret key file {path} holds no key; restore it from its backup, or delete "
            "it if the store holds no secrets yet."
        )
    return keys


def read_keys(path: Path) -> list[Key]:
    """The keys in `path`, refused unless only its owner can read it."""
    try:
        # A symlink is followed (mounted secrets are often links); the file it reaches is what
        # is checked, through the open descriptor, so it cannot be swapped in between.
        # Not blocking: a named pipe with no writer would wait for one for ever; it is refused
        # as not a regular file instead.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise KeyFileError(
            f"Cannot read the secret key file {path}: {exc.strerror}; make it a regular "
            "file readable by this user."
        ) from None
    try:
        # Checked before it is read: a directory opens, but fails only when read.
        _check_private(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        data = file.read()
    try:
        return parse_keys(path, data.decode("ascii"))
    except (UnicodeDecodeError, binascii.Error):
        raise KeyFileError(
            f"The secret key file {path} is not a key file; restore it from its backup."
        ) from None


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"The secret key file {path} is not a regular file; pass a file.")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"The secret key file {path} can be read by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`."
        )


def create_keys(path: Path, keys: Sequence[Key]) -> None:
    """Writes a new key file; fails if one exists (O_EXCL), so no key is ever overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(_HEADER + "".join(key.line() for key in keys))
        file.flush()
        os.fsync(file.fileno())
    _sync_directory(path.parent)


def replace_keys(path: Path, keys: Sequence[Key]) -> None:
    """Replaces the key file atomically: a crash leaves the old file or the new one whole."""
    spare = path.with_name(path.name + ".new")
    spare.unlink(missing_ok=True)
    create_keys(spare, keys)
    os.replace(spare, path)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the box -------------------------------------------------------------------------------


# Opened values kept: this many, each of at most this many sealed bytes, about this many
# bytes in all.
OPENED_KEPT = 4096
OPENED_LARGEST = 64 * 1024
OPENED_BYTES = 8 * 1024 * 1024


class SecretBox:
    """Seals and opens the store's secret values under the keys of one key file.  It follows
    the file: a rotation by another process is seen at this process's next write."""

    def __init__(self, keys: Sequence[Key], path: Path | None = None) -> None:
        self.path = path
        self._stamp = _stamp(path)
        # One attribute, replaced whole: a reader on another thread sees old keys or new.
        self._state = _state(keys)
        # Values already opened, by their sealed bytes and where they live: the read caches
        # are refilled after every write, and opening each value again costs more than the
        # rest of the read.  A tampered or moved value is another key, so it is never served
        # from here.  Emptied whole when full (thread-safe, and refilled by the next reads).
        self._opened: dict[tuple[bytes, bytes], str] = {}
        self._opened_bytes = 0

    @property
    def keys(self) -> list[Key]:
        return self._state[0]

    @property
    def current(self) -> Key:
        return self._state[0][0]

    def seal(self, column: Column, identity: Sequence[str], plaintext: str) -> bytes:
        try:
            self.follow()
        except KeyFileError as exc:
            log.error("cannot encrypt a secret value: %s", exc)
            raise SecretUnsealable() from None
        keys, ciphers = self._state
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = ciphers[keys[0].id].encrypt(
            nonce, plaintext.encode("utf-8", "surrogatepass"), column.aad(identity)
        )
        return FORMAT + keys[0].id + nonce + sealed

    def open(self, column: Column, identity: Sequence[str], sealed: object) -> str:
        """The plaintext of a sealed value; `SecretUnreadable` (logged) if it does not open."""
        try:
            return self._open(column.aad(identity), sealed)
        except (InvalidTag, KeyError, ValueError, KeyFileError) as exc:
            log.error(
                "the secret in %s.%s of row %s does not decrypt (%s): it was changed, moved "
                "or sealed under a key the key file does not hold",
                column.table,
                column.column,
                list(identity),
                type(exc).__name__,
            )
            raise SecretUnreadable() from None

    def _open(self, aad: bytes, sealed: object) -> str:
        if not isinstance(sealed, bytes) or len(sealed) < OVERHEAD or sealed[:1] != FORMAT:
            raise ValueError("not a sealed value")
        known = self._opened.get((aad, sealed))
        if known is not None:
            return known
        plaintext = self._decrypt(aad, sealed)
        if len(self._opened) >= OPENED_KEPT or self._opened_bytes >= OPENED_BYTES:
            self._opened.clear()
            self._opened_bytes = 0
        if len(sealed) <= OPENED_LARGEST:
            self._opened[aad, sealed] = plaintext
            self._opened_bytes += 2 * len(sealed) + len(aad)
        return plaintext

    def _decrypt(self, aad: bytes, sealed: bytes) -> str:
        key_id = sealed[1 : 1 + KEY_ID_BYTES]
        nonce = sealed[1 + KEY_ID_BYTES : 1 + KEY_ID_BYTES + NONCE_BYTES]
        cipher = self._state[1].get(key_id)
        if cipher is None:
            self.follow()
            cipher = self._state[1][key_id]
        body = sealed[1 + KEY_ID_BYTES + NONCE_BYTES :]
        return cipher.decrypt(nonce, body, aad).decode("utf-8", "surrogatepass")

    def follow(self) -> None:
        """Reads the key file again if it changed since it was read (a stat per write, which
        costs little beside the write's fsync), so that no value is sealed under a key that
        a rotation has retired."""
        if self.path is None:
            return
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self._state = _state(read_keys(self.path))
            self._stamp = stamp

    def key_ids(self) -> set[bytes]:
        return set(self._state[1])


def _state(keys: Sequence[Key]) -> tuple[list[Key], dict[bytes, AESGCM]]:
    return list(keys), {key.id: AESGCM(key.secret) for key in keys}


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten."""
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def load_box(path: Path, used: Iterable[bytes]) -> SecretBox:
    """The keys of `path`, made there on a first start.  A missing file is made only while the
    store holds no sealed value (`used` names the keys its values were sealed with): a new key
    over existing values would lose them."""
    used = set(used)
    if not path.exists() and not path.is_symlink():
        if used:
            raise KeyFileError(
                f"The secret key file {path} is missing, but the store holds secrets "
                "encrypted with it; restore it from its backup, or pass the --secret-key-file "
                "the store was written with."
            )
        try:
            create_keys(path, [Key.new()])
        except FileExistsError:
            log.info("another process made %s first; using its key", path)
        except OSError as exc:
            raise KeyFileError(
                f"Cannot create the secret key file {path}: {exc.strerror}; make its "
                "directory writable or pass --secret-key-file."
            ) from None
    box = SecretBox(read_keys(path), path)
    missing = sorted(key.hex() for key in used - box.key_ids())
    if missing:
        raise KeyFileError(
            f"The secret key file {path} lacks the key {missing[0]} that encrypts secrets in "
            "the store; pass the --secret-key-file the store was written with."
        )
    return box


def ephemeral_box() -> SecretBox:
    """For a store in memory: its values live no longer than the process, nor does the key."""
    return SecretBox([Key.new()])
