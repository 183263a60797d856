"""The teams tools: list_teams, list_team_members, create_team, invite_team_member,
remove_team_member and remove_team_invitation, driven through the product server."""

from __future__ import annotations

import pytest

from sp00ky_mcp.product.cloud import teams
from sp00ky_mcp.product.cloud.base import NotFound

from .product_support import NOW_ISO, ProductEnv, accept, decline, lands_before_transaction

pytestmark = pytest.mark.anyio
ACME_MISSING = (
    "No tenant '{}' is reachable by this token; list_teams shows the tenants you belong to."
)


async def team_of(env: ProductEnv, token: str, name: str = "Acme") -> str:
    created = await env.ok(token, "create_team", {"name": name})
    tenant_id: str = created["tenant_id"]
    return tenant_id


async def memberships(env: ProductEnv, team: str) -> dict[str, str]:
    return {m.email: m.role for m in await env.store.reads.teams.members(team)}


async def invitations(env: ProductEnv, team: str) -> dict[str, str]:
    return {i.email: i.role for i in await env.store.reads.teams.invitations(team)}


# --- list_teams ---------------------------------------------------------------------------


async def test_list_teams_shows_the_personal_tenant_with_kind_and_role(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    listing = await env.ok(await env.token(ada, "tenants:read"), "list_teams", {})
    assert listing == {
        "items": [
            {
                "tenant_id": await env.personal(ada),
                "name": "ada's workspace",
                "kind": "personal",
                "plan": "hobby",
                "role": "owner",
                "members": 1,
            }
        ],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_teams_shows_teams_after_the_personal_tenant_with_the_users_role(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    ada_token, bob_token = await env.token(ada), await env.token(bob)
    acme = await team_of(env, ada_token, "Acme")
    await env.join(ada_token, acme, bob, "admin")
    listing = await env.ok(bob_token, "list_teams", {})
    assert listing["items"] == [
        {
            "tenant_id": await env.personal(bob),
            "name": "bob's workspace",
            "kind": "personal",
            "plan": "hobby",
            "role": "owner",
            "members": 1,
        },
        {
            "tenant_id": acme,
            "name": "Acme",
            "kind": "team",
            "plan": "hobby",
            "role": "admin",
            "members": 2,
        },
    ]


async def test_list_teams_pages_with_a_cursor(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token, "Acme")
    first = await env.ok(token, "list_teams", {"limit": 1})
    assert [t["kind"] for t in first["items"]] == ["personal"]
    assert first["truncated"] is True
    second = await env.ok(token, "list_teams", {"limit": 1, "cursor": first["next_cursor"]})
    assert [t["tenant_id"] for t in second["items"]] == [acme]
    assert (second["next_cursor"], second["truncated"]) == (None, False)


async def test_list_teams_rejects_a_limit_out_of_range(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "list_teams", {"limit": 0}) == (
        "Invalid arguments for 'list_teams': Argument 'limit' must be at least 1."
    )


async def test_list_teams_rejects_a_forged_cursor(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "list_teams", {"cursor": "page-2"}) == (
        "Invalid cursor: pass back a next_cursor value exactly as received."
    )


# --- create_team --------------------------------------------------------------------------


async def test_create_team_makes_the_caller_its_owner(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    created = await env.ok(
        await env.token(ada, "tenants:write"), "create_team", {"name": "  Acme Corp  "}
    )
    assert created == {
        "tenant_id": created["tenant_id"],
        "name": "Acme Corp",
        "kind": "team",
        "plan": "hobby",
        "role": "owner",
        "created_at": NOW_ISO,
    }
    assert created["tenant_id"].startswith("ten_")
    assert await memberships(env, created["tenant_id"]) == {"ada@example.com": "owner"}


async def test_create_team_refuses_a_name_the_caller_already_has(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    await team_of(env, token, "Acme")
    assert await env.error_text(token, "create_team", {"name": "acme"}) == (
        "You already belong to a team named 'acme'; pick another name, or pass that team's "
        "tenant_id (list_teams shows it)."
    )
    assert len(await env.store.reads.teams.teams_of((await env.user()).id)) == 2


async def test_another_user_may_create_a_team_with_the_same_name(env: ProductEnv) -> None:
    await team_of(env, await env.token(await env.user("ada@example.com")), "Acme")
    await team_of(env, await env.token(await env.user("bob@example.com")), "Acme")


async def test_create_team_refuses_a_blank_name(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_team", {"name": "   "}) == (
        "A team name must be 1 to 64 printable characters; pass another name."
    )
    assert await env.error_text(token, "create_team", {"name": "a\nb"}) == (
        "A team name must be 1 to 64 printable characters; pass another name."
    )


async def test_create_team_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_team", {"name": "x" * 65}) == (
        "Invalid arguments for 'create_team': Argument 'name' must be at most 64 characters."
    )
    assert (await env.error_text(token, "create_team", {})).startswith(
        "Invalid arguments for 'create_team': "
    )
    assert (await env.error_text(token, "create_team", {"name": "A", "tenant_id": "x"})).startswith(
        "Invalid arguments for 'create_team': "
    )


# --- list_team_members --------------------------------------------------------------------


async def test_list_team_members_shows_members_then_pending_invitations(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    invited = await env.ok(
        token,
        "invite_team_member",
        {"tenant_id": acme, "email": "cy@example.com", "role": "admin"},
    )
    listing = await env.ok(
        await env.token(bob, "tenants:read"), "list_team_members", {"tenant_id": acme}
    )
    assert listing == {
        "items": [
            {
                "user_id": ada.id,
                "email": "ada@example.com",
                "name": "ada",
                "role": "owner",
                "status": "active",
                "invitation_id": None,
                "since": NOW_ISO,
            },
            {
                "user_id": bob.id,
                "email": "bob@example.com",
                "name": "bob",
                "role": "member",
                "status": "active",
                "invitation_id": None,
                "since": NOW_ISO,
            },
            {
                "user_id": None,
                "email": "cy@example.com",
                "name": None,
                "role": "admin",
                "status": "pending",
                "invitation_id": invited["invitation_id"],
                "since": NOW_ISO,
            },
        ],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_team_members_refuses_the_personal_tenant(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    text = await env.error_text(
        await env.token(ada), "list_team_members", {"tenant_id": await env.personal(ada)}
    )
    assert text == (
        "'ada's workspace' is your personal tenant, not a team, so it has no "
        "members to manage; create_team makes a team you can invite people to."
    )


async def test_list_team_members_needs_a_tenant_id(env: ProductEnv) -> None:
    text = await env.error_text(await env.token(await env.user()), "list_team_members", {})
    assert text.startswith("Invalid arguments for 'list_team_members': ")
    assert "tenant_id" in text


async def test_list_team_members_of_another_users_team_is_not_found(env: ProductEnv) -> None:
    acme = await team_of(env, await env.token(await env.user("ada@example.com")))
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    assert await env.error_text(mallory, "list_team_members", {"tenant_id": acme}) == (
        ACME_MISSING.format(acme)
    )


# --- invite_team_member -------------------------------------------------------------------


async def test_invite_creates_a_pending_invitation_with_the_default_role(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user("ada@example.com"), "tenants:write")
    acme = await team_of(env, token)
    invited = await env.ok(
        token, "invite_team_member", {"tenant_id": acme, "email": " new@example.com "}
    )
    assert invited == {
        "invitation_id": invited["invitation_id"],
        "tenant_id": acme,
        "email": "new@example.com",
        "role": "member",
        "status": "pending",
        "invited_at": NOW_ISO,
    }
    assert await invitations(env, acme) == {"new@example.com": "member"}


async def test_an_existing_user_stays_pending_until_they_accept(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    invited = await env.ok(
        token,
        "invite_team_member",
        {"tenant_id": acme, "email": "BOB@example.com", "role": "admin"},
    )
    assert await memberships(env, acme) == {"ada@example.com": "owner"}
    bob_token = await env.token(bob)
    assert await env.error_text(bob_token, "list_team_members", {"tenant_id": acme}) == (
        ACME_MISSING.format(acme)
    )
    joined = await teams.accept_invitation(env.cloud, bob.id, invited["invitation_id"])
    assert joined == {"tenant_id": acme, "user_id": bob.id, "role": "admin", "joined_at": NOW_ISO}
    assert await memberships(env, acme) == {"ada@example.com": "owner", "bob@example.com": "admin"}
    assert await invitations(env, acme) == {}
    assert [t["role"] for t in (await env.ok(bob_token, "list_teams", {}))["items"]] == [
        "owner",
        "admin",
    ]


async def test_an_invitation_is_accepted_only_by_its_invitee_and_only_once(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    mallory = await env.user("mallory@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    invited = await env.ok(token, "invite_team_member", {"tenant_id": acme, "email": bob.email})
    with pytest.raises(NotFound, match="No pending invitation"):
        await teams.accept_invitation(env.cloud, mallory.id, invited["invitation_id"])
    await teams.accept_invitation(env.cloud, bob.id, invited["invitation_id"])
    with pytest.raises(NotFound, match="No pending invitation"):
        await teams.accept_invitation(env.cloud, bob.id, invited["invitation_id"])
    assert await memberships(env, acme) == {"ada@example.com": "owner", "bob@example.com": "member"}


async def test_inviting_the_same_email_twice_is_a_conflict(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    args = {"tenant_id": acme, "email": "new@example.com"}
    await env.ok(token, "invite_team_member", args)
    assert await env.error_text(
        token, "invite_team_member", {**args, "email": "NEW@example.com", "role": "admin"}
    ) == (
        "NEW@example.com already has a pending invitation to 'Acme'; remove_team_invitation "
        "cancels it if you want to invite again."
    )
    assert await invitations(env, acme) == {"new@example.com": "member"}


async def test_inviting_a_member_is_a_conflict(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    assert await env.error_text(
        token, "invite_team_member", {"tenant_id": acme, "email": "ada@example.com"}
    ) == ("ada@example.com is already a member of 'Acme'; list_team_members shows the members.")


@pytest.mark.parametrize(
    "email",
    [
        "bob",
        "bob@",
        "@example.com",
        "bob@example",
        "bob smith@example.com",
        "bob@@example.com",
        "bob@example..com",
    ],
)
async def test_invite_refuses_what_is_not_an_email_address(env: ProductEnv, email: str) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    text = await env.error_text(token, "invite_team_member", {"tenant_id": acme, "email": email})
    assert text in (
        f"'{email.strip()}' is not an email address; pass one like name@example.com.",
        "Invalid arguments for 'invite_team_member': Argument 'email' must be at least 3 "
        "characters.",
    )
    assert await invitations(env, acme) == {}


async def test_invite_rejects_an_unknown_role(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    assert await env.error_text(
        token, "invite_team_member", {"tenant_id": acme, "email": "a@b.co", "role": "boss"}
    ) == (
        "Invalid arguments for 'invite_team_member': Argument 'role' must be one of "
        "'member', 'admin', 'owner'."
    )


async def test_a_member_may_not_invite(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    assert await env.error_text(
        await env.token(bob), "invite_team_member", {"tenant_id": acme, "email": "cy@example.com"}
    ) == ("Only a team admin or above may invite team members; your role in 'Acme' is member.")
    assert await invitations(env, acme) == {}


async def test_an_admin_may_invite_members_and_admins_but_not_owners(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "admin")
    bob_token = await env.token(bob)
    await env.ok(
        bob_token,
        "invite_team_member",
        {"tenant_id": acme, "email": "cy@example.com", "role": "admin"},
    )
    assert await env.error_text(
        bob_token,
        "invite_team_member",
        {"tenant_id": acme, "email": "di@example.com", "role": "owner"},
    ) == ("Only a team owner or above may invite an owner; your role in 'Acme' is admin.")
    assert await invitations(env, acme) == {"cy@example.com": "admin"}


async def test_an_owner_may_invite_an_owner(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    await env.ok(
        token,
        "invite_team_member",
        {"tenant_id": acme, "email": "co@example.com", "role": "owner"},
    )
    assert await invitations(env, acme) == {"co@example.com": "owner"}


async def test_invitations_stop_when_the_plans_seats_are_full(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    for name in ("b", "c"):
        await env.ok(
            token, "invite_team_member", {"tenant_id": acme, "email": f"{name}@example.com"}
        )
    assert await env.error_text(
        token, "invite_team_member", {"tenant_id": acme, "email": "d@example.com"}
    ) == (
        "The hobby plan of 'Acme' has 3 seats and members plus pending invitations already "
        "fill them; upgrade with change_plan or create_checkout_session first."
    )
    await env.ok(token, "change_plan", {"tenant_id": acme, "plan": "pro"})
    await env.ok(token, "invite_team_member", {"tenant_id": acme, "email": "d@example.com"})


async def test_an_invitation_that_a_downgrade_lands_before_is_bounded_by_the_new_seats(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    await env.ok(token, "change_plan", {"tenant_id": acme, "plan": "pro"})
    for name in ("b", "c"):
        await env.ok(
            token, "invite_team_member", {"tenant_id": acme, "email": f"{name}@example.com"}
        )

    async def downgrade() -> None:
        await env.ok(token, "change_plan", {"tenant_id": acme, "plan": "hobby"})

    lands_before_transaction(monkeypatch, env.cloud, downgrade)
    assert await env.error_text(
        token, "invite_team_member", {"tenant_id": acme, "email": "d@example.com"}
    ) == (
        "The hobby plan of 'Acme' has 3 seats and members plus pending invitations already "
        "fill them; upgrade with change_plan or create_checkout_session first."
    )
    assert len(await invitations(env, acme)) == 2


async def test_invite_refuses_the_personal_tenant(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    text = await env.error_text(
        await env.token(ada),
        "invite_team_member",
        {"tenant_id": await env.personal(ada), "email": "b@example.com"},
    )
    assert text.startswith("'ada's workspace' is your personal tenant, not a team")
    assert await env.count("invitations") == 0


async def test_invite_into_another_users_team_is_not_found(env: ProductEnv) -> None:
    acme = await team_of(env, await env.token(await env.user("ada@example.com")))
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    assert await env.error_text(
        mallory, "invite_team_member", {"tenant_id": acme, "email": "m@example.com"}
    ) == (ACME_MISSING.format(acme))
    assert await invitations(env, acme) == {}


async def test_invite_replays_its_first_result_for_a_repeated_idempotency_key(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    args = {"tenant_id": acme, "email": "b@example.com", "idempotency_key": "k1"}
    first = await env.ok(token, "invite_team_member", args)
    assert await env.ok(token, "invite_team_member", args) == first
    assert await invitations(env, acme) == {"b@example.com": "member"}


# --- remove_team_member -------------------------------------------------------------------


async def test_an_admin_removes_a_member_by_email(env: ProductEnv) -> None:
    ada, bob, cy = [await env.user(f"{n}@example.com") for n in ("ada", "bob", "cy")]
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "admin")
    await env.join(token, acme, cy, "member")
    removed = await env.ok(
        await env.token(bob), "remove_team_member", {"tenant_id": acme, "member": "cy@example.com"}
    )
    assert removed == {
        "tenant_id": acme,
        "user_id": cy.id,
        "email": "cy@example.com",
        "role": "member",
        "removed": True,
    }
    assert await memberships(env, acme) == {"ada@example.com": "owner", "bob@example.com": "admin"}
    assert await env.error_text(await env.token(cy), "list_team_members", {"tenant_id": acme}) == (
        ACME_MISSING.format(acme)
    )


async def test_a_member_is_removed_by_email_in_any_case_on_every_store(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    removed = await env.ok(
        token, "remove_team_member", {"tenant_id": acme, "member": "BOB@Example.com"}
    )
    assert (removed["user_id"], removed["email"]) == (bob.id, "bob@example.com")
    assert await memberships(env, acme) == {"ada@example.com": "owner"}


async def test_a_member_is_removed_by_user_id_too(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    await env.ok(token, "remove_team_member", {"tenant_id": acme, "member": bob.id})
    assert await memberships(env, acme) == {"ada@example.com": "owner"}


async def test_a_member_may_not_remove_anyone(env: ProductEnv) -> None:
    ada, bob, cy = [await env.user(f"{n}@example.com") for n in ("ada", "bob", "cy")]
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    await env.join(token, acme, cy, "member")
    assert await env.error_text(
        await env.token(bob), "remove_team_member", {"tenant_id": acme, "member": cy.email}
    ) == ("Only a team admin or above may remove team members; your role in 'Acme' is member.")
    assert len(await memberships(env, acme)) == 3


async def test_an_admin_may_not_remove_an_owner(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "admin")
    assert await env.error_text(
        await env.token(bob), "remove_team_member", {"tenant_id": acme, "member": ada.email}
    ) == ("Only a team owner or above may remove an owner; your role in 'Acme' is admin.")
    assert (await memberships(env, acme))["ada@example.com"] == "owner"


async def test_the_last_owner_can_never_be_removed(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    assert await env.error_text(
        token, "remove_team_member", {"tenant_id": acme, "member": ada.email}
    ) == (
        "ada@example.com is the last owner of 'Acme' and a team always keeps one; invite "
        "another owner with invite_team_member first."
    )
    assert await memberships(env, acme) == {"ada@example.com": "owner"}


async def test_an_owner_may_remove_another_owner(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "owner")
    await env.ok(
        await env.token(bob), "remove_team_member", {"tenant_id": acme, "member": ada.email}
    )
    assert await memberships(env, acme) == {"bob@example.com": "owner"}
    bob_token = await env.token(bob)
    assert (
        await env.error_text(
            bob_token, "remove_team_member", {"tenant_id": acme, "member": bob.email}
        )
    ).startswith("bob@example.com is the last owner of 'Acme'")


async def test_removing_someone_who_is_not_a_member_is_not_found(env: ProductEnv) -> None:
    await env.user("bob@example.com")
    token = await env.token(await env.user("ada@example.com"))
    acme = await team_of(env, token)
    assert await env.error_text(
        token, "remove_team_member", {"tenant_id": acme, "member": "bob@example.com"}
    ) == ("No member 'bob@example.com' in 'Acme'; list_team_members shows the members.")


async def test_remove_team_member_refuses_the_personal_tenant(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    text = await env.error_text(
        await env.token(ada),
        "remove_team_member",
        {"tenant_id": await env.personal(ada), "member": ada.email},
    )
    assert text.startswith("'ada's workspace' is your personal tenant, not a team")
    assert await env.count("memberships") == 1


async def test_remove_team_member_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    text = await env.error_text(token, "remove_team_member", {"tenant_id": acme})
    assert text.startswith("Invalid arguments for 'remove_team_member': ")
    assert (
        await env.error_text(token, "remove_team_member", {"tenant_id": acme, "member": ""})
    ).startswith("Invalid arguments for 'remove_team_member': ")


async def test_remove_team_member_does_nothing_when_confirmation_is_declined(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool(
            "remove_team_member", {"tenant_id": acme, "member": bob.email}
        )
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: remove bob@example.com (member) from team 'Acme'."
    )
    assert await memberships(env, acme) == {"ada@example.com": "owner", "bob@example.com": "member"}


async def test_remove_team_member_goes_ahead_when_confirmed(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    async with env.sdk(token, mode="legacy", elicitation_callback=accept) as client:
        result = await client.call_tool(
            "remove_team_member", {"tenant_id": acme, "member": bob.email}
        )
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["removed"] is True
    assert await memberships(env, acme) == {"ada@example.com": "owner"}


async def test_remove_from_another_users_team_is_not_found(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    acme = await team_of(env, await env.token(ada))
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    assert await env.error_text(
        mallory, "remove_team_member", {"tenant_id": acme, "member": ada.email}
    ) == (ACME_MISSING.format(acme))
    assert await memberships(env, acme) == {"ada@example.com": "owner"}


# --- remove_team_invitation ---------------------------------------------------------------


async def test_remove_team_invitation_cancels_a_pending_invitation(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    invited = await env.ok(
        token,
        "invite_team_member",
        {"tenant_id": acme, "email": "new@example.com", "role": "admin"},
    )
    removed = await env.ok(
        token,
        "remove_team_invitation",
        {"tenant_id": acme, "invitation_id": invited["invitation_id"]},
    )
    assert removed == {
        "invitation_id": invited["invitation_id"],
        "tenant_id": acme,
        "email": "new@example.com",
        "role": "admin",
        "removed": True,
    }
    assert await invitations(env, acme) == {}


async def test_a_cancelled_invitation_can_no_longer_be_accepted(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    invited = await env.ok(token, "invite_team_member", {"tenant_id": acme, "email": bob.email})
    await env.ok(
        token,
        "remove_team_invitation",
        {"tenant_id": acme, "invitation_id": invited["invitation_id"]},
    )
    with pytest.raises(NotFound):
        await teams.accept_invitation(env.cloud, bob.id, invited["invitation_id"])


async def test_remove_team_invitation_of_an_unknown_id_is_not_found(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    assert await env.error_text(
        token, "remove_team_invitation", {"tenant_id": acme, "invitation_id": "inv_nope"}
    ) == (
        "No pending invitation 'inv_nope' in 'Acme'; list_team_members shows the pending "
        "invitations."
    )


async def test_a_member_may_not_cancel_invitations(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    acme = await team_of(env, token)
    await env.join(token, acme, bob, "member")
    invited = await env.ok(token, "invite_team_member", {"tenant_id": acme, "email": "c@d.io"})
    assert await env.error_text(
        await env.token(bob),
        "remove_team_invitation",
        {"tenant_id": acme, "invitation_id": invited["invitation_id"]},
    ) == ("Only a team admin or above may cancel invitations; your role in 'Acme' is member.")
    assert await invitations(env, acme) == {"c@d.io": "member"}


async def test_remove_team_invitation_refuses_the_personal_tenant(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    text = await env.error_text(
        await env.token(ada),
        "remove_team_invitation",
        {"tenant_id": await env.personal(ada), "invitation_id": "inv_x"},
    )
    assert text.startswith("'ada's workspace' is your personal tenant, not a team")


async def test_remove_team_invitation_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    text = await env.error_text(
        token, "remove_team_invitation", {"tenant_id": acme, "invitation_id": 7}
    )
    assert text == (
        "Invalid arguments for 'remove_team_invitation': Argument 'invitation_id' "
        "must be of type string."
    )


async def test_remove_team_invitation_does_nothing_when_confirmation_is_declined(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user())
    acme = await team_of(env, token)
    invited = await env.ok(
        token, "invite_team_member", {"tenant_id": acme, "email": "new@example.com"}
    )
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool(
            "remove_team_invitation", {"tenant_id": acme, "invitation_id": invited["invitation_id"]}
        )
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: cancel the invitation of new@example.com "
        "(member) to team 'Acme'."
    )
    assert await invitations(env, acme) == {"new@example.com": "member"}


async def test_another_users_invitation_is_not_found_even_from_their_own_team(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user("ada@example.com"))
    acme = await team_of(env, token)
    invited = await env.ok(token, "invite_team_member", {"tenant_id": acme, "email": "x@y.io"})
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    own = await team_of(env, mallory, "Mine")
    assert await env.error_text(
        mallory,
        "remove_team_invitation",
        {"tenant_id": own, "invitation_id": invited["invitation_id"]},
    ) == (
        f"No pending invitation '{invited['invitation_id']}' in 'Mine'; list_team_members "
        "shows the pending invitations."
    )
    assert await env.error_text(
        mallory,
        "remove_team_invitation",
        {"tenant_id": acme, "invitation_id": invited["invitation_id"]},
    ) == ACME_MISSING.format(acme)
    assert await invitations(env, acme) == {"x@y.io": "member"}
