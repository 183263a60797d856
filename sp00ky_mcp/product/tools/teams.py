"""Tools of the 'teams' area (scopes tenants:read and tenants:write)."""

from __future__ import annotations

from typing import Any

from ..cloud import teams
from .base import CURSOR, STR, TENANT_ID, TIME, Call, Spec, limit, list_of, nullable, obj, text

ROLE = {"type": "string", "enum": list(teams.ROLES)}
TEAM_ID = {**TENANT_ID, "description": "The team's tenant id, as list_teams shows it."}
ROLES_NOTE = (
    "Roles: any member may read; an admin or owner may invite and remove members "
    "and invitations; only an owner may invite or remove an owner (or cancel an "
    "owner's invitation); the last owner "
    "can never be removed. Your personal tenant is not a team and has no members "
    "to manage."
)

TEAM = obj(
    {
        "tenant_id": STR,
        "name": STR,
        "kind": {"type": "string", "enum": ["personal", "team"]},
        "plan": STR,
        "role": ROLE,
        "members": {"type": "integer", "minimum": 1},
    }
)
MEMBER = obj(
    {
        "user_id": nullable(STR),
        "email": STR,
        "name": nullable(STR),
        "role": ROLE,
        "status": {"type": "string", "enum": ["active", "pending"]},
        "invitation_id": nullable(STR),
        "since": TIME,
    }
)


async def list_teams(call: Call) -> dict[str, Any]:
    return call.page(await teams.list_teams(call.cloud, call.user_id), 50)


LIST_TEAMS = Spec(
    name="list_teams",
    scope="tenants:read",
    title="List teams",
    description=(
        "List the tenants you belong to: your personal tenant first, then your teams, "
        "each with its kind, plan, your role and its member count. Use it to find the "
        "tenant_id to pass to other tools when acting in a team."
    ),
    arguments={"cursor": CURSOR, "limit": limit(50, 200)},
    required=(),
    output=list_of(TEAM),
    handler=list_teams,
    read_only=True,
    pure=True,
    idempotent=True,
    tenant_scoped=False,
)


async def list_team_members(call: Call) -> dict[str, Any]:
    return call.page(await teams.members(call.cloud, call.tenant), 100)


LIST_TEAM_MEMBERS = Spec(
    name="list_team_members",
    scope="tenants:read",
    title="List team members",
    description=(
        "List a team's members (user id, email, name, role; status active) followed by "
        "its pending invitations (status pending, with the invitation_id that "
        "remove_team_invitation takes). Use it before inviting or removing someone. " + ROLES_NOTE
    ),
    arguments={"tenant_id": TEAM_ID, "cursor": CURSOR, "limit": limit(100, 500)},
    required=("tenant_id",),
    output=list_of(MEMBER),
    handler=list_team_members,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def create_team(call: Call) -> dict[str, Any]:
    return await teams.create_team(call.cloud, call.user_id, call.args["name"])


CREATE_TEAM = Spec(
    name="create_team",
    scope="tenants:write",
    title="Create a team",
    description=(
        "Create a team tenant (on the hobby plan) with you as its owner, to share "
        "projects with other people; invite them next with invite_team_member. Team "
        "names are unique among the teams you belong to, so repeating the call creates "
        "nothing more."
    ),
    arguments={"name": text(64, "The team's name, 1 to 64 characters.")},
    required=("name",),
    output=obj(
        {
            "tenant_id": STR,
            "name": STR,
            "kind": {"type": "string", "const": "team"},
            "plan": STR,
            "role": {"type": "string", "const": "owner"},
            "created_at": TIME,
        }
    ),
    handler=create_team,
    idempotent=True,
    tenant_scoped=False,
)


async def invite_team_member(call: Call) -> dict[str, Any]:
    return await teams.invite(
        call.cloud, call.tenant, call.user_id, call.args["email"], call.args.get("role", "member")
    )


INVITE_TEAM_MEMBER = Spec(
    name="invite_team_member",
    scope="tenants:write",
    title="Invite a team member",
    description=(
        "Invite someone to a team by email with a role (member by default). The "
        "invitation stays pending, holding a seat of the team's plan, until the "
        "invitee accepts it in the Sp00ky dashboard or with the spky CLI; this server "
        "cannot accept on anyone's behalf. Inviting the same email twice is refused. " + ROLES_NOTE
    ),
    arguments={
        "tenant_id": TEAM_ID,
        "email": text(254, "The invitee's email address.", min_length=3),
        "role": {
            **ROLE,
            "default": "member",
            "description": "member (default), admin, or owner (owners only).",
        },
    },
    required=("tenant_id", "email"),
    output=obj(
        {
            "invitation_id": STR,
            "tenant_id": STR,
            "email": STR,
            "role": ROLE,
            "status": {"type": "string", "const": "pending"},
            "invited_at": TIME,
        }
    ),
    handler=invite_team_member,
    idempotent=True,
)


async def remove_team_member(call: Call) -> dict[str, Any]:
    member = await teams.check_removal(call.cloud, call.tenant, call.args["member"])
    await call.confirm(f"remove {member.email} ({member.role}) from team '{call.tenant.name}'")
    return await teams.remove_member(call.cloud, call.user_id, call.tenant.id, call.args["member"])


REMOVE_TEAM_MEMBER = Spec(
    name="remove_team_member",
    scope="tenants:write",
    title="Remove a team member",
    description=(
        "Remove a member from a team; they lose access to its projects at once. Use it "
        "when someone leaves the team. Takes the member's user id or email as "
        "list_team_members shows them. " + ROLES_NOTE
    ),
    arguments={
        "tenant_id": TEAM_ID,
        "member": text(254, "The member's user id or email."),
    },
    required=("tenant_id", "member"),
    output=obj(
        {
            "tenant_id": STR,
            "user_id": STR,
            "email": STR,
            "role": ROLE,
            "removed": {"type": "boolean", "const": True},
        }
    ),
    handler=remove_team_member,
    destructive=True,
    idempotent=True,
)


async def remove_team_invitation(call: Call) -> dict[str, Any]:
    invitation = await teams.find_invitation(call.cloud, call.tenant, call.args["invitation_id"])
    await call.confirm(
        f"cancel the invitation of {invitation.email} "
        f"({invitation.role}) to team '{call.tenant.name}'"
    )
    return await teams.remove_invitation(
        call.cloud, call.user_id, call.tenant.id, call.args["invitation_id"]
    )


REMOVE_TEAM_INVITATION = Spec(
    name="remove_team_invitation",
    scope="tenants:write",
    title="Cancel a team invitation",
    description=(
        "Cancel a pending invitation to a team, freeing its seat; the emailed link "
        "stops working. Use it for a mistyped email or to re-invite with another role. "
        + ROLES_NOTE
    ),
    arguments={
        "tenant_id": TEAM_ID,
        "invitation_id": text(64, "The invitation_id from list_team_members."),
    },
    required=("tenant_id", "invitation_id"),
    output=obj(
        {
            "invitation_id": STR,
            "tenant_id": STR,
            "email": STR,
            "role": ROLE,
            "removed": {"type": "boolean", "const": True},
        }
    ),
    handler=remove_team_invitation,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        LIST_TEAMS,
        LIST_TEAM_MEMBERS,
        CREATE_TEAM,
        INVITE_TEAM_MEMBER,
        REMOVE_TEAM_MEMBER,
        REMOVE_TEAM_INVITATION,
    )
