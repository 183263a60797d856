"""The env area's records and SQL: a project's environment variables.  Their values are
secrets, sealed here on the way in (the associated data names the project and key) and
opened here on the way out, so callers see plaintext only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...secretbox import ENV_VALUE, SecretBox
from ..port import Db

_UPSERT = (
    "INSERT INTO env_vars (project_id, key, value, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (project_id, key) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at"
)


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable, its value in plaintext."""

    key: str
    value: str
    updated_at: float


class EnvRepo:
    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    # --- reads -----------------------------------------------------------------------------

    async def variables(self, project_id: str) -> list[Variable]:
        """The project's variables, sorted by key."""
        rows = await self.db.all(
            "SELECT key, value, updated_at FROM env_vars WHERE project_id = ?", project_id
        )
        found = [
            Variable(r["key"], self._opened(project_id, r["key"], r["value"]), r["updated_at"])
            for r in rows
        ]
        # Sorted here by code point: PostgreSQL's ORDER BY follows the database's collation,
        # which need not be SQLite's byte order.
        return sorted(found, key=lambda variable: variable.key)

    async def values(self, project_id: str) -> dict[str, str]:
        """The project's variables, key to plaintext value."""
        return {v.key: v.value for v in await self.variables(project_id)}

    async def exists(self, project_id: str, key: str) -> bool:
        row = await self.db.one(
            "SELECT 1 AS found FROM env_vars WHERE project_id = ? AND key = ?", project_id, key
        )
        return row is not None

    async def count(self, project_id: str) -> int:
        """How many variables the project has."""
        row = await self.db.one(
            "SELECT count(*) AS n FROM env_vars WHERE project_id = ?", project_id
        )
        return 0 if row is None else int(row["n"])

    # --- writes ----------------------------------------------------------------------------

    async def put(self, project_id: str, key: str, value: str, now: float) -> None:
        """Creates or replaces one variable."""
        await self.db.run(_UPSERT, *self._row(project_id, key, value, now))

    async def put_many(
        self, project_id: str, values: Iterable[tuple[str, str]], now: float
    ) -> None:
        """Creates or replaces each (key, value)."""
        rows = [self._row(project_id, key, value, now) for key, value in values]
        if rows:
            await self.db.many(_UPSERT, rows)

    async def delete(self, project_id: str, key: str) -> int:
        """Deletes one variable; how many there were (0 or 1)."""
        return await self.db.run(
            "DELETE FROM env_vars WHERE project_id = ? AND key = ?", project_id, key
        )

    async def delete_many(self, project_id: str, keys: Sequence[str]) -> None:
        if keys:
            await self.db.many(
                "DELETE FROM env_vars WHERE project_id = ? AND key = ?",
                [(project_id, key) for key in keys],
            )

    # --- the sealed bytes themselves (for checks of what is at rest) ----------------------

    async def sealed(self, project_id: str) -> dict[str, bytes | str]:
        """The project's values as stored, key to sealed bytes (text would be a value left
        in clear)."""
        rows = await self.db.all("SELECT key, value FROM env_vars WHERE project_id = ?", project_id)
        return {r["key"]: _stored(r["value"]) for r in rows}

    async def replace_sealed(self, project_id: str, key: str, sealed: bytes) -> None:
        """Stores `sealed` as the value as it is, unopened: what tampering with the store
        looks like."""
        await self.db.run(
            "UPDATE env_vars SET value = ? WHERE project_id = ? AND key = ?",
            sealed,
            project_id,
            key,
        )

    # --- sealing ---------------------------------------------------------------------------

    def _row(self, project_id: str, key: str, value: str, now: float) -> tuple[object, ...]:
        sealed = self.box.seal(ENV_VALUE, (project_id, key), value)
        return (project_id, key, sealed, float(now))

    def _opened(self, project_id: str, key: str, sealed: bytes | str | memoryview) -> str:
        return self.box.open(ENV_VALUE, (project_id, key), _stored(sealed))


def _stored(value: bytes | str | memoryview) -> bytes | str:
    """A stored value as bytes (a driver may hand out a buffer), or as the text it is."""
    return bytes(value) if isinstance(value, memoryview) else value
