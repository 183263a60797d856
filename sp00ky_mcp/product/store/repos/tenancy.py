"""What the control plane checks on every call: a user's tenant and role, whether a token
still holds, and the secret values a tenant's output is masked with."""

from __future__ import annotations

from dataclasses import dataclass

from ...secretbox import SEALED, Column, SecretBox
from ..port import Db


@dataclass(frozen=True, slots=True)
class Membership:
    """A tenant as one of its members sees it."""

    id: str
    name: str
    kind: str
    plan: str
    role: str


@dataclass(frozen=True, slots=True)
class TokenState:
    revoked_at: float | None
    expires_at: float | None


class TenancyRepo:
    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def membership(self, tenant_id: str, user_id: str) -> Membership | None:
        row = await self.db.one(
            "SELECT t.id, t.name, t.kind, t.plan, m.role FROM tenants t "
            "JOIN memberships m ON m.tenant_id = t.id WHERE t.id = ? AND m.user_id = ?",
            tenant_id,
            user_id,
        )
        if row is None:
            return None
        return Membership(row["id"], row["name"], row["kind"], row["plan"], row["role"])

    async def role(self, tenant_id: str, user_id: str) -> str | None:
        row = await self.db.one(
            "SELECT role FROM memberships WHERE tenant_id = ? AND user_id = ?", tenant_id, user_id
        )
        return None if row is None else str(row["role"])

    async def token_state(self, token_id: str) -> TokenState | None:
        row = await self.db.one("SELECT revoked_at, expires_at FROM tokens WHERE id = ?", token_id)
        return None if row is None else TokenState(row["revoked_at"], row["expires_at"])

    async def secret_values(self, tenant_id: str) -> set[str]:
        """The plaintext of every sealed value under the tenant's projects."""
        values: set[str] = set()
        for column in SEALED:
            values.update(await self._opened(column, tenant_id))
        return values

    async def _opened(self, column: Column, tenant_id: str) -> list[str]:
        identity = ", ".join(f"x.{part}" for part in column.identity)
        rows = await self.db.all(
            f"SELECT {identity}, x.{column.column} AS sealed FROM {column.table} x "
            "JOIN projects p ON p.id = x.project_id WHERE p.tenant_id = ?",
            tenant_id,
        )
        return [
            self.box.open(column, [row[part] for part in column.identity], row["sealed"])
            for row in rows
        ]
