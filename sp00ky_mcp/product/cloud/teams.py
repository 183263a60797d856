"""Teams: tenants a user belongs to, their members and pending invitations.

Every user has a personal tenant (created with the user, never shared) and may belong to any
number of team tenants.  Roles rank member < admin < owner:

- any member may list a team's members and invitations;
- an admin or owner may invite (an owner only may invite an owner) and remove members and
  invitations (an owner only may remove an owner or cancel an owner's invitation);
- the last owner of a team can never be removed, so no team is ever left without one.

An invitation stays pending until the invitee accepts it in the Sp00ky dashboard or CLI (here:
`accept_invitation`), whether or not the email already belongs to a Sp00ky user; a pending
invitation holds a seat of the team's plan.  The personal tenant is not a team: membership
operations on it are refused.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..names import folded, normal
from .base import (
    ROLE_RANK,
    Cloud,
    Conflict,
    Invalid,
    NotFound,
    Refused,
    Tenant,
    check_visible,
    iso,
    new_id,
)
from .billing import plan_limit, seats_used

ROLES = tuple(ROLE_RANK)
NAME_MAX = 64
EMAIL_MAX = 254
# Deliberately plain: one @, a dotted domain, no spaces or control characters.
_LABEL = r"[^@\s.\x00-\x1f\x7f]+"
_EMAIL = re.compile(rf"[^@\s\x00-\x1f\x7f]+@{_LABEL}(\.{_LABEL})+")


# --- reads -------------------------------------------------------------------------------


def list_teams(cloud: Cloud, user_id: str) -> list[dict[str, Any]]:
    """Every tenant the user belongs to, the personal one first, with the user's role."""
    rows = cloud.store.all(
        "SELECT t.id, t.name, t.kind, t.plan, m.role, "
        "(SELECT COUNT(*) FROM memberships x WHERE x.tenant_id = t.id) AS members "
        "FROM tenants t JOIN memberships m ON m.tenant_id = t.id WHERE m.user_id = ? "
        "ORDER BY t.kind = 'team', t.created_at, t.name, t.id",
        (user_id,),
    )
    return [
        {
            "tenant_id": r["id"],
            "name": r["name"],
            "kind": r["kind"],
            "plan": r["plan"],
            "role": r["role"],
            "members": r["members"],
        }
        for r in rows
    ]


def members(cloud: Cloud, tenant: Tenant) -> list[dict[str, Any]]:
    """The team's members (owners first) followed by its pending invitations."""
    require_team(tenant)
    people = cloud.store.all(
        "SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m "
        "JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ? "
        "ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, "
        "u.email, u.id",
        (tenant.id,),
    )
    pending = cloud.store.all(
        "SELECT id, email, role, created_at FROM invitations WHERE tenant_id = ? "
        "ORDER BY created_at, email, id",
        (tenant.id,),
    )
    return [*map(_active, people), *map(_pending, pending)]


def _active(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "user_id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "status": "active",
        "invitation_id": None,
        "since": iso(row["created_at"]),
    }


def _pending(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "user_id": None,
        "email": row["email"],
        "name": None,
        "role": row["role"],
        "status": "pending",
        "invitation_id": row["id"],
        "since": iso(row["created_at"]),
    }


# --- rules -------------------------------------------------------------------------------


def require_team(tenant: Tenant) -> None:
    if tenant.kind != "team":
        raise Invalid(
            f"'{tenant.name}' is your personal tenant, not a team, so it has no "
            "members to manage; create_team makes a team you can invite people to."
        )


def valid_name(name: str) -> str:
    """The name as stored: NFKC, without surrounding spaces; refused when blank, too long or
    holding a character that does not show."""
    cleaned = normal(name).strip()
    if not 1 <= len(cleaned) <= NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in cleaned):
        raise Invalid(
            f"A team name must be 1 to {NAME_MAX} printable characters; pass another name."
        )
    check_visible("name", cleaned)
    return cleaned


def valid_email(email: str) -> str:
    """The address as stored: NFKC, without surrounding spaces."""
    cleaned = normal(email).strip()
    check_visible("email", cleaned)
    if len(cleaned) > EMAIL_MAX or _EMAIL.fullmatch(cleaned) is None:
        raise Invalid(f"'{cleaned}' is not an email address; pass one like name@example.com.")
    return cleaned


def _is_member(cloud: Cloud, tenant_id: str, user_id: str) -> bool:
    row = cloud.store.one(
        "SELECT 1 FROM memberships WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)
    )
    return row is not None


# --- writes ------------------------------------------------------------------------------


def create_team(cloud: Cloud, user_id: str, name: str) -> dict[str, Any]:
    """A new team tenant on the hobby plan with the caller as its owner."""
    name = valid_name(name)
    now = cloud.clock()
    tenant_id = new_id("ten")
    with cloud.transaction() as db:
        # Compared in Python, not by SQL's NOCASE (ASCII only): team names are the same
        # name in any case and any Unicode spelling, rows of older versions included.
        teams = db.execute(
            "SELECT t.name FROM tenants t JOIN memberships m ON m.tenant_id = t.id "
            "WHERE m.user_id = ? AND t.kind = 'team'",
            (user_id,),
        ).fetchall()
        if folded(name) in {folded(row["name"]) for row in teams}:
            raise Conflict(
                f"You already belong to a team named '{name}'; pick another name, "
                "or pass that team's tenant_id (list_teams shows it)."
            )
        db.execute(
            "INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, 'team', ?)",
            (tenant_id, name, now),
        )
        db.execute("INSERT INTO memberships VALUES (?, ?, 'owner', ?)", (tenant_id, user_id, now))
    return {
        "tenant_id": tenant_id,
        "name": name,
        "kind": "team",
        "plan": "hobby",
        "role": "owner",
        "created_at": iso(now),
    }


def invite(cloud: Cloud, tenant: Tenant, user_id: str, email: str, role: str) -> dict[str, Any]:
    """A pending invitation of `email` to the team with `role`."""
    require_team(tenant)
    email = valid_email(email)
    tenant.require_role("admin", "invite team members")
    if role == "owner":
        tenant.require_role("owner", "invite an owner")
    now = cloud.clock()
    invitation_id = new_id("inv")
    with cloud.transaction() as db:
        _check_invitable(cloud, tenant, email)
        db.execute(
            "INSERT INTO invitations VALUES (?, ?, ?, ?, ?, ?)",
            (invitation_id, tenant.id, email, role, user_id, now),
        )
    return {
        "invitation_id": invitation_id,
        "tenant_id": tenant.id,
        "email": email,
        "role": role,
        "status": "pending",
        "invited_at": iso(now),
    }


def _check_invitable(cloud: Cloud, tenant: Tenant, email: str) -> None:
    """Refuses an invitation of a member, of an email already invited, or past the seats."""
    if folded(email) in _emails(cloud, tenant, _MEMBER_EMAILS):
        raise Conflict(
            f"{email} is already a member of '{tenant.name}'; list_team_members shows the members."
        )
    if folded(email) in _emails(cloud, tenant, _INVITED_EMAILS):
        raise Conflict(
            f"{email} already has a pending invitation to '{tenant.name}'; "
            "remove_team_invitation cancels it if you want to invite again."
        )
    seats = plan_limit(tenant.plan, "team_members")
    if seats_used(cloud, tenant.id) >= seats:
        raise Refused(
            f"The {tenant.plan} plan of '{tenant.name}' has {seats} seats and "
            "members plus pending invitations already fill them; upgrade with "
            "change_plan or create_checkout_session first."
        )


_MEMBER_EMAILS = (
    "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ?"
)
_INVITED_EMAILS = "SELECT email FROM invitations WHERE tenant_id = ?"


def _emails(cloud: Cloud, tenant: Tenant, sql: str) -> set[str]:
    """The emails `sql` selects for the tenant, folded: an address is the same in any case
    and any Unicode spelling (at most the plan's seats of them)."""
    return {folded(row["email"]) for row in cloud.store.all(sql, (tenant.id,))}


def find_member(cloud: Cloud, tenant: Tenant, ref: str) -> sqlite3.Row:
    """A member of the team by user id or email."""
    row = cloud.store.one(
        "SELECT u.id, u.email, u.name, m.role FROM memberships m JOIN users u "
        "ON u.id = m.user_id WHERE m.tenant_id = ? AND (u.id = ? OR u.email = ?)",
        (tenant.id, ref, ref),
    )
    if row is None:
        raise NotFound(
            f"No member '{ref}' in '{tenant.name}'; list_team_members shows the members."
        )
    return row


def check_removal(cloud: Cloud, tenant: Tenant, ref: str) -> sqlite3.Row:
    """The member `ref` if the caller may remove them now; raises the reason otherwise."""
    require_team(tenant)
    tenant.require_role("admin", "remove team members")
    member = find_member(cloud, tenant, ref)
    if member["role"] == "owner":
        tenant.require_role("owner", "remove an owner")
        _keep_an_owner(cloud, tenant, member)
    return member


def _keep_an_owner(cloud: Cloud, tenant: Tenant, member: sqlite3.Row) -> None:
    row = cloud.store.one(
        "SELECT COUNT(*) AS n FROM memberships WHERE tenant_id = ? AND role = 'owner'", (tenant.id,)
    )
    assert row is not None
    if row["n"] <= 1:
        raise Conflict(
            f"{member['email']} is the last owner of '{tenant.name}' and a team "
            "always keeps one; invite another owner with invite_team_member first."
        )


def remove_member(cloud: Cloud, user_id: str, tenant_id: str, ref: str) -> dict[str, Any]:
    """Removes the member, re-checking every rule inside the write: roles and owners may have
    changed while the caller was asked to confirm."""
    with cloud.transaction() as db:
        tenant = cloud.tenant(user_id, tenant_id)
        member = check_removal(cloud, tenant, ref)
        db.execute(
            "DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?", (tenant.id, member["id"])
        )
    return {
        "tenant_id": tenant.id,
        "user_id": member["id"],
        "email": member["email"],
        "role": member["role"],
        "removed": True,
    }


def find_invitation(cloud: Cloud, tenant: Tenant, invitation_id: str) -> sqlite3.Row:
    require_team(tenant)
    tenant.require_role("admin", "cancel invitations")
    row = cloud.store.one(
        "SELECT * FROM invitations WHERE tenant_id = ? AND id = ?", (tenant.id, invitation_id)
    )
    if row is None:
        raise NotFound(
            f"No pending invitation '{invitation_id}' in '{tenant.name}'; "
            "list_team_members shows the pending invitations."
        )
    if row["role"] == "owner":
        # An owner's invitation is an owner to be: only an owner may invite one, and only an
        # owner may take the invitation back.
        tenant.require_role("owner", "cancel an owner's invitation")
    return row


def remove_invitation(
    cloud: Cloud, user_id: str, tenant_id: str, invitation_id: str
) -> dict[str, Any]:
    with cloud.transaction() as db:
        tenant = cloud.tenant(user_id, tenant_id)
        row = find_invitation(cloud, tenant, invitation_id)
        db.execute("DELETE FROM invitations WHERE id = ?", (row["id"],))
    return {
        "invitation_id": row["id"],
        "tenant_id": tenant.id,
        "email": row["email"],
        "role": row["role"],
        "removed": True,
    }


def accept_invitation(cloud: Cloud, user_id: str, invitation_id: str) -> dict[str, Any]:
    """The invitee joins the team with the invited role (the dashboard's and CLI's accept; not
    an MCP tool: a token cannot accept on its user's behalf).  Single use."""
    user = cloud.accounts.user(user_id)
    now = cloud.clock()
    # Read under the write lock: an invitation cancelled meanwhile admits nobody.
    with cloud.transaction() as db:
        row = db.execute("SELECT * FROM invitations WHERE id = ?", (invitation_id,)).fetchone()
        if user is None or row is None or folded(row["email"]) != folded(user.email):
            raise NotFound(f"No pending invitation '{invitation_id}' for this user.")
        if not _is_member(cloud, row["tenant_id"], user_id):
            db.execute(
                "INSERT INTO memberships VALUES (?, ?, ?, ?)",
                (row["tenant_id"], user_id, row["role"], now),
            )
        db.execute("DELETE FROM invitations WHERE id = ?", (invitation_id,))
    return {
        "tenant_id": row["tenant_id"],
        "user_id": user_id,
        "role": row["role"],
        "joined_at": iso(now),
    }


__all__ = [
    "ROLES",
    "accept_invitation",
    "check_removal",
    "create_team",
    "find_invitation",
    "invite",
    "list_teams",
    "members",
    "remove_invitation",
    "remove_member",
]
