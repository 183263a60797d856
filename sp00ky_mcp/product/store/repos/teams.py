"""Teams: tenants a user belongs to, their members and pending invitations."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row
from .accounts import ascii_lower


@dataclass(frozen=True, slots=True)
class TeamOf:
    """A tenant as one of its members lists it."""

    id: str
    name: str
    kind: str
    plan: str
    role: str
    members: int


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    name: str
    role: str
    since: float


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    tenant_id: str
    email: str
    role: str
    invited_by: str
    created_at: float


ROLE_ORDER = {"owner": 0, "admin": 1, "member": 2}


def _member(row: Row) -> Member:
    return Member(row["id"], row["email"], row["name"], row["role"], row["created_at"])


def _invitation(row: Row) -> Invitation:
    return Invitation(
        row["id"],
        row["tenant_id"],
        row["email"],
        row["role"],
        row["invited_by"],
        row["created_at"],
    )


class TeamsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- reads -----------------------------------------------------------------------------

    async def teams_of(self, user_id: str) -> list[TeamOf]:
        """Every tenant the user belongs to, the personal one first, then by creation."""
        rows = await self.db.all(
            "SELECT t.id, t.name, t.kind, t.plan, t.created_at, m.role, "
            "(SELECT COUNT(*) FROM memberships x WHERE x.tenant_id = t.id) AS members "
            "FROM tenants t JOIN memberships m ON m.tenant_id = t.id WHERE m.user_id = ?",
            user_id,
        )
        rows = sorted(
            rows, key=lambda r: (r["kind"] == "team", r["created_at"], r["name"], r["id"])
        )
        return [
            TeamOf(r["id"], r["name"], r["kind"], r["plan"], r["role"], int(r["members"]))
            for r in rows
        ]

    async def team_names_of(self, user_id: str) -> list[str]:
        rows = await self.db.all(
            "SELECT t.name FROM tenants t JOIN memberships m ON m.tenant_id = t.id "
            "WHERE m.user_id = ? AND t.kind = 'team'",
            user_id,
        )
        return [str(r["name"]) for r in rows]

    async def members(self, tenant_id: str) -> list[Member]:
        """Owners first, then admins, then members; by email within a role."""
        rows = await self.db.all(
            "SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m "
            "JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ?",
            tenant_id,
        )
        found = [_member(r) for r in rows]
        return sorted(found, key=lambda m: (ROLE_ORDER[m.role], m.email, m.user_id))

    async def invitations(self, tenant_id: str) -> list[Invitation]:
        rows = await self.db.all("SELECT * FROM invitations WHERE tenant_id = ?", tenant_id)
        found = [_invitation(r) for r in rows]
        return sorted(found, key=lambda i: (i.created_at, i.email, i.id))

    async def member(self, tenant_id: str, ref: str) -> Member | None:
        """A member by user id or by email."""
        row = await self.db.one(
            "SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m JOIN users u "
            "ON u.id = m.user_id WHERE m.tenant_id = ? AND (u.id = ? OR lower(u.email) = ?)",
            tenant_id,
            ref,
            ascii_lower(ref),
        )
        return None if row is None else _member(row)

    async def is_member(self, tenant_id: str, user_id: str) -> bool:
        row = await self.db.one(
            "SELECT 1 AS found FROM memberships WHERE tenant_id = ? AND user_id = ?",
            tenant_id,
            user_id,
        )
        return row is not None

    async def owners(self, tenant_id: str) -> int:
        row = await self.db.one(
            "SELECT COUNT(*) AS n FROM memberships WHERE tenant_id = ? AND role = 'owner'",
            tenant_id,
        )
        return 0 if row is None else int(row["n"])

    async def seats_used(self, tenant_id: str) -> int:
        """Members plus pending invitations: each pending invitation holds a seat."""
        row = await self.db.one(
            "SELECT (SELECT COUNT(*) FROM memberships WHERE tenant_id = ?) + "
            "(SELECT COUNT(*) FROM invitations WHERE tenant_id = ?) AS n",
            tenant_id,
            tenant_id,
        )
        return 0 if row is None else int(row["n"])

    async def member_emails(self, tenant_id: str) -> list[str]:
        rows = await self.db.all(
            "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.tenant_id = ?",
            tenant_id,
        )
        return [str(r["email"]) for r in rows]

    async def invited_emails(self, tenant_id: str) -> list[str]:
        rows = await self.db.all("SELECT email FROM invitations WHERE tenant_id = ?", tenant_id)
        return [str(r["email"]) for r in rows]

    async def invitations_to(self, email: str) -> list[tuple[Invitation, str]]:
        """Pending invitations addressed to `email` (ASCII case aside: the caller compares
        folded), with their team's name, oldest first."""
        rows = await self.db.all(
            "SELECT i.*, t.name AS team FROM invitations i JOIN tenants t ON t.id = i.tenant_id "
            "WHERE lower(i.email) = ? ORDER BY i.created_at, i.id",
            ascii_lower(email),
        )
        return [(_invitation(row), str(row["team"])) for row in rows]

    async def invitation(
        self, invitation_id: str, tenant_id: str | None = None
    ) -> Invitation | None:
        """An invitation by id (of the tenant, when one is given)."""
        row = await self.db.one("SELECT * FROM invitations WHERE id = ?", invitation_id)
        if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
            return None
        return _invitation(row)

    # --- writes ----------------------------------------------------------------------------

    async def add_team(self, tenant_id: str, name: str, owner_id: str, now: float) -> None:
        """A team tenant on the hobby plan with its owner."""
        await self.db.run(
            "INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, 'team', ?)",
            tenant_id,
            name,
            now,
        )
        await self.add_member(tenant_id, owner_id, "owner", now)

    async def add_member(self, tenant_id: str, user_id: str, role: str, now: float) -> None:
        await self.db.run(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
            tenant_id,
            user_id,
            role,
            now,
        )

    async def remove_member(self, tenant_id: str, user_id: str) -> None:
        await self.db.run(
            "DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?", tenant_id, user_id
        )

    async def add_invitation(self, invitation: Invitation) -> None:
        await self.db.run(
            "INSERT INTO invitations (id, tenant_id, email, role, invited_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            invitation.id,
            invitation.tenant_id,
            invitation.email,
            invitation.role,
            invitation.invited_by,
            invitation.created_at,
        )

    async def remove_invitation(self, invitation_id: str) -> None:
        await self.db.run("DELETE FROM invitations WHERE id = ?", invitation_id)

    async def set_role(self, tenant_id: str, user_id: str, role: str) -> None:
        await self.db.run(
            "UPDATE memberships SET role = ? WHERE tenant_id = ? AND user_id = ?",
            role,
            tenant_id,
            user_id,
        )
