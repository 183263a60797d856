"""Persistence: the embedded SQLite store (one file, WAL, foreign keys on, versioned
migrations).  The layers above use its small interface (transactions and a few lookups), so a
server database can implement the same interface later.

Writes go through `transaction()`, which is BEGIN IMMEDIATE ... COMMIT: a failed call rolls
back and changes nothing; an acknowledged write is on disk (synchronous=FULL in WAL mode).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "sp00ky.db"


class StoreError(Exception):
    """The data directory cannot be used; the message says what to fix."""


Migration = tuple[int, str]
_MIGRATIONS: list[Migration] = []


def migration(version: int, sql: str) -> None:
    """Register a schema step.  Versions are applied in order, each in its own transaction."""
    if any(v == version for v, _ in _MIGRATIONS):
        raise ValueError(f"migration {version} registered twice")
    _MIGRATIONS.append((version, sql))
    _MIGRATIONS.sort()


migration(
    1,
    """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'team')),
    plan TEXT NOT NULL DEFAULT 'hobby',
    created_at REAL NOT NULL
);
CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX tokens_by_user ON tokens(user_id);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    token_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant_id TEXT,
    tool TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_ms REAL NOT NULL
);
CREATE INDEX audit_by_token ON audit_log(token_id, at);
""",
)


def default_data_dir() -> Path:
    """$SP00KY_MCP_DATA_DIR, else the platform's user data directory (XDG on Linux)."""
    configured = os.environ.get("SP00KY_MCP_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sp00ky-mcp"


class Store:
    """One connection, serialised by a lock; SQLite does the durable part."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = _connect(self.path)
        self.migrate()

    @classmethod
    def open(cls, data_dir: str | Path | None) -> Store:
        directory = Path(data_dir).expanduser() if data_dir else default_data_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the data directory {directory}: {exc.strerror}; "
                "pass a writable --data-dir."
            ) from None
        return cls(directory / DB_NAME)

    @classmethod
    def in_memory(cls) -> Store:
        return cls(":memory:")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        return max(self.applied(), default=0)

    def applied(self) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT version FROM schema_migrations").fetchall()
        return {int(row[0]) for row in rows}

    def migrate(self) -> None:
        """Applies every registered step not applied yet.  Applied versions are recorded one
        by one, so a step registered later (by a module imported later) is never skipped."""
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
        done = self.applied()
        for version, sql in _MIGRATIONS:
            if version not in done:
                self._apply(version, sql)

    def _apply(self, version: int, sql: str) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _statements(sql):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, julianday('now'))", (version,)
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"Cannot migrate the store at {self.path}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: the block's writes commit together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits: a cheap way to know
        when cached rows may be stale (SQLite, PRAGMA data_version)."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])


def _connect(path: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 5000")
        if path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        return db
    except sqlite3.Error as exc:
        raise StoreError(
            f"Cannot open the store at {path}: {exc}; check that the data "
            "directory is writable, has free space and is not locked."
        ) from None


def _statements(sql: str) -> list[str]:
    return [part.strip() for part in sql.split(";") if part.strip()]
