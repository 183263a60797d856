"""Storage behind a port (`port`), with two backends: SQLite (`sqlite`, embedded, the
default) and PostgreSQL (`postgres`, the `[postgres]` extra).  The repositories (`repos`) hold
all the SQL; nothing above this package knows which backend it has."""

from .port import (
    Busy,
    Clash,
    ReadCache,
    Store,
    StoreError,
    StoreInDoubt,
    StoreUnavailable,
    Vanished,
    Version,
    database_url,
    default_data_dir,
    open_store,
)
from .repos import Repos

__all__ = [
    "Busy",
    "Clash",
    "ReadCache",
    "Repos",
    "Store",
    "StoreError",
    "StoreInDoubt",
    "StoreUnavailable",
    "Vanished",
    "Version",
    "database_url",
    "default_data_dir",
    "open_store",
]
