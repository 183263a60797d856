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
from typing import Any

from ..names import folded, normal
from ..store.repos import Repos
from ..store.repos.teams import Invitation, Member
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
from .billing import plan_limit

ROLES = tuple(ROLE_RANK)
NAME_MAX = 64
EMAIL_MAX = 254
# Deliberately plain: one @, a dotted domain, no spaces or control characters.
_LABEL = r"[^@\s.\x00-\x1f\x7f]+"
_EMAIL = re.compile(rf"[^@\s\x00-\x1f\x7f]+@{_LABEL}(\.{_LABEL})+")


# --- reads -------------------------------------------------------------------------------


async def list_teams(cloud: Cloud, user_id: str) -> list[dict[str, Any]]:
    """Every tenant the user belongs to, the personal one first, with the user's role."""
    return [
        {
            "tenant_id": team.id,
            "name": team.name,
            "kind": team.kind,
            "plan": team.plan,
            "role": team.role,
            "members": team.members,
        }
        for team in await cloud.reads.teams.teams_of(user_id)
    ]


async def members(cloud: Cloud, tenant: Tenant) -> list[dict[str, Any]]:
    """The team's members (owners first) followed by its pending invitations."""
    require_team(tenant)
    people = await cloud.reads.teams.members(tenant.id)
    pending = await cloud.reads.teams.invitations(tenant.id)
    return [*map(_active, people), *map(_pending, pending)]


def _active(member: Member) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "email": member.email,
        "name": member.name,
        "role": member.role,
        "status": "active",
        "invitation_id": None,
        "since": iso(member.since),
    }


def _pending(invitation: Invitation) -> dict[str, Any]:
    return {
        "user_id": None,
        "email": invitation.email,
        "name": None,
        "role": invitation.role,
        "status": "pending",
        "invitation_id": invitation.id,
        "since": iso(invitation.created_at),
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


# --- writes ------------------------------------------------------------------------------


async def create_team(cloud: Cloud, user_id: str, name: str) -> dict[str, Any]:
    """A new team tenant on the hobby plan with the caller as its owner."""
    name = valid_name(name)
    now = cloud.clock()
    tenant_id = new_id("ten")
    async with cloud.transaction() as tx:
        # Compared here, not by SQL: team names are the same name in any case and any
        # Unicode spelling, rows of older versions included.
        taken = await tx.teams.team_names_of(user_id)
        if folded(name) in {folded(existing) for existing in taken}:
            raise Conflict(
                f"You already belong to a team named '{name}'; pick another name, "
                "or pass that team's tenant_id (list_teams shows it)."
            )
        await tx.teams.add_team(tenant_id, name, user_id, now)
    return {
        "tenant_id": tenant_id,
        "name": name,
        "kind": "team",
        "plan": "hobby",
        "role": "owner",
        "created_at": iso(now),
    }


async def invite(
    cloud: Cloud, tenant: Tenant, user_id: str, email: str, role: str
) -> dict[str, Any]:
    """A pending invitation of `email` to the team with `role`."""
    require_team(tenant)
    email = valid_email(email)
    tenant.require_role("admin", "invite team members")
    if role == "owner":
        tenant.require_role("owner", "invite an owner")
    now = cloud.clock()
    invitation = Invitation(new_id("inv"), tenant.id, email, role, user_id, now)
    async with cloud.transaction() as tx:
        await _check_invitable(tx, tenant, email)
        await tx.teams.add_invitation(invitation)
    return {
        "invitation_id": invitation.id,
        "tenant_id": tenant.id,
        "email": email,
        "role": role,
        "status": "pending",
        "invited_at": iso(now),
    }


async def _check_invitable(tx: Repos, tenant: Tenant, email: str) -> None:
    """Refuses an invitation of a member, of an email already invited, or past the seats.
    Addresses compare folded: the same in any case and any Unicode spelling."""
    if folded(email) in {folded(e) for e in await tx.teams.member_emails(tenant.id)}:
        raise Conflict(
            f"{email} is already a member of '{tenant.name}'; list_team_members shows the members."
        )
    if folded(email) in {folded(e) for e in await tx.teams.invited_emails(tenant.id)}:
        raise Conflict(
            f"{email} already has a pending invitation to '{tenant.name}'; "
            "remove_team_invitation cancels it if you want to invite again."
        )
    # The plan read inside the write: a plan change that lands first bounds the seats.
    plan = await tx.billing.plan(tenant.id) or tenant.plan
    seats = plan_limit(plan, "team_members")
    if await tx.teams.seats_used(tenant.id) >= seats:
        raise Refused(
            f"The {plan} plan of '{tenant.name}' has {seats} seats and "
            "members plus pending invitations already fill them; upgrade with "
            "change_plan or create_checkout_session first."
        )


async def find_member(cloud: Cloud, tenant: Tenant, ref: str, tx: Repos | None = None) -> Member:
    """A member of the team by user id or email."""
    found = await (tx or cloud.reads).teams.member(tenant.id, ref)
    if found is None:
        raise NotFound(
            f"No member '{ref}' in '{tenant.name}'; list_team_members shows the members."
        )
    return found


async def check_removal(cloud: Cloud, tenant: Tenant, ref: str, tx: Repos | None = None) -> Member:
    """The member `ref` if the caller may remove them now; raises the reason otherwise."""
    require_team(tenant)
    tenant.require_role("admin", "remove team members")
    member = await find_member(cloud, tenant, ref, tx)
    if member.role == "owner":
        tenant.require_role("owner", "remove an owner")
        if await (tx or cloud.reads).teams.owners(tenant.id) <= 1:
            raise Conflict(
                f"{member.email} is the last owner of '{tenant.name}' and a team "
                "always keeps one; invite another owner with invite_team_member first."
            )
    return member


async def remove_member(cloud: Cloud, user_id: str, tenant_id: str, ref: str) -> dict[str, Any]:
    """Removes the member, re-checking every rule inside the write: roles and owners may have
    changed while the caller was asked to confirm."""
    async with cloud.transaction() as tx:
        tenant = await _tenant_now(tx, user_id, tenant_id)
        member = await check_removal(cloud, tenant, ref, tx)
        await tx.teams.remove_member(tenant.id, member.user_id)
    return {
        "tenant_id": tenant.id,
        "user_id": member.user_id,
        "email": member.email,
        "role": member.role,
        "removed": True,
    }


async def _tenant_now(tx: Repos, user_id: str, tenant_id: str) -> Tenant:
    """The tenant with the user's role as it stands inside the write."""
    found = await tx.tenancy.membership(tenant_id, user_id)
    if found is None:
        raise NotFound(
            f"No tenant '{tenant_id}' is reachable by this token; list_teams "
            "shows the tenants you belong to."
        )
    return Tenant(found.id, found.name, found.kind, found.plan, found.role)


async def find_invitation(
    cloud: Cloud, tenant: Tenant, invitation_id: str, tx: Repos | None = None
) -> Invitation:
    require_team(tenant)
    tenant.require_role("admin", "cancel invitations")
    found = await (tx or cloud.reads).teams.invitation(invitation_id, tenant.id)
    if found is None:
        raise NotFound(
            f"No pending invitation '{invitation_id}' in '{tenant.name}'; "
            "list_team_members shows the pending invitations."
        )
    if found.role == "owner":
        # An owner's invitation is an owner to be: only an owner may invite one, and only an
        # owner may take the invitation back.
        tenant.require_role("owner", "cancel an owner's invitation")
    return found


async def remove_invitation(
    cloud: Cloud, user_id: str, tenant_id: str, invitation_id: str
) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        tenant = await _tenant_now(tx, user_id, tenant_id)
        found = await find_invitation(cloud, tenant, invitation_id, tx)
        await tx.teams.remove_invitation(found.id)
    return {
        "invitation_id": found.id,
        "tenant_id": tenant.id,
        "email": found.email,
        "role": found.role,
        "removed": True,
    }


async def accept_invitation(cloud: Cloud, user_id: str, invitation_id: str) -> dict[str, Any]:
    """The invitee joins the team with the invited role (the dashboard's and CLI's accept; not
    an MCP tool: a token cannot accept on its user's behalf).  Single use."""
    user = await cloud.accounts.user(user_id)
    now = cloud.clock()
    # Read inside the write: an invitation cancelled meanwhile admits nobody.
    async with cloud.transaction() as tx:
        found = await tx.teams.invitation(invitation_id)
        if user is None or found is None or folded(found.email) != folded(user.email):
            raise NotFound(f"No pending invitation '{invitation_id}' for this user.")
        if not await tx.teams.is_member(found.tenant_id, user_id):
            await tx.teams.add_member(found.tenant_id, user_id, found.role, now)
        await tx.teams.remove_invitation(invitation_id)
    return {
        "tenant_id": found.tenant_id,
        "user_id": user_id,
        "role": found.role,
        "joined_at": iso(now),
    }


async def invitations_of(cloud: Cloud, user_id: str) -> list[dict[str, Any]]:
    """The invitations waiting for the user's answer (the CLI's `spky mcp invitations`)."""
    user = await cloud.accounts.user(user_id)
    if user is None:
        return []
    found = await cloud.reads.teams.invitations_to(user.email)
    return [
        {
            "invitation_id": invitation.id,
            "tenant_id": invitation.tenant_id,
            "team": team,
            "role": invitation.role,
            "invited_at": iso(invitation.created_at),
        }
        for invitation, team in found
        if folded(invitation.email) == folded(user.email)
    ]


async def decline_invitation(cloud: Cloud, user_id: str, invitation_id: str) -> dict[str, Any]:
    """The invitee says no: the invitation is gone, and the team may invite again."""
    user = await cloud.accounts.user(user_id)
    async with cloud.transaction() as tx:
        found = await tx.teams.invitation(invitation_id)
        if user is None or found is None or folded(found.email) != folded(user.email):
            raise NotFound(f"No pending invitation '{invitation_id}' for this user.")
        await tx.teams.remove_invitation(invitation_id)
    return {"invitation_id": invitation_id, "tenant_id": found.tenant_id, "declined": True}


__all__ = [
    "ROLES",
    "accept_invitation",
    "check_removal",
    "create_team",
    "decline_invitation",
    "find_invitation",
    "invitations_of",
    "invite",
    "list_teams",
    "members",
    "remove_invitation",
    "remove_member",
]
