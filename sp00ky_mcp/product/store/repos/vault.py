"""The vault area's records and SQL: one vault per project.  Its key material is a secret,
sealed here on the way in (the associated data names the project) and opened here on the way
out, so callers see plaintext only."""

from __future__ import annotations

from dataclasses import dataclass

from ...secretbox import VAULT_MATERIAL, SecretBox
from ..port import Db


@dataclass(frozen=True, slots=True)
class Vault:
    """A project's vault, without its key material."""

    project_id: str
    ci_access: bool
    initialized_at: float


class VaultRepo:
    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def vault(self, project_id: str) -> Vault | None:
        row = await self.db.one(
            "SELECT project_id, ci_access, initialized_at FROM vaults WHERE project_id = ?",
            project_id,
        )
        if row is None:
            return None
        return Vault(row["project_id"], bool(row["ci_access"]), row["initialized_at"])

    async def create(self, project_id: str, material: str, now: float) -> bool:
        """A vault with CI access off, unless the project has one already; whether it made
        it."""
        sealed = self.box.seal(VAULT_MATERIAL, (project_id,), material)
        made = await self.db.run(
            "INSERT INTO vaults (project_id, key_material, ci_access, initialized_at) "
            "VALUES (?, ?, 0, ?) ON CONFLICT (project_id) DO NOTHING",
            project_id,
            sealed,
            float(now),
        )
        return made > 0

    async def set_ci_access(self, project_id: str, enabled: bool) -> None:
        await self.db.run(
            "UPDATE vaults SET ci_access = ? WHERE project_id = ?", int(enabled), project_id
        )

    # --- the key material (for checks of what is shown and what is at rest) ----------------

    async def material(self, project_id: str) -> str | None:
        """The vault's key material in plaintext."""
        sealed = await self.sealed(project_id)
        return None if sealed is None else self.box.open(VAULT_MATERIAL, (project_id,), sealed)

    async def sealed(self, project_id: str) -> bytes | str | None:
        """The vault's key material as stored: sealed bytes (text would be material left in
        clear)."""
        row = await self.db.one("SELECT key_material FROM vaults WHERE project_id = ?", project_id)
        if row is None:
            return None
        value = row["key_material"]
        return bytes(value) if isinstance(value, memoryview) else value
