"""The billing tools: get_usage, create_checkout_session, change_plan and
create_billing_portal_session, driven through the product server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sp00ky_mcp.product.accounts import User
from sp00ky_mcp.product.cloud import billing
from sp00ky_mcp.product.cloud.base import Conflict
from sp00ky_mcp.product.store.repos import Repos
from sp00ky_mcp.product.store.repos.backups import Backup
from sp00ky_mcp.product.store.repos.billing import BillingSession
from sp00ky_mcp.product.store.repos.deployments import Deployment
from sp00ky_mcp.product.store.repos.domains import Domain
from sp00ky_mcp.product.store.repos.projects import Project

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio
NOW = 1_768_478_400.0  # 2026-01-15T12:00:00Z
NOW_ISO = "2026-01-15T12:00:00.000Z"
DAY = 86_400.0
GIB = 1024**3
PLANS: list[dict[str, Any]] = [
    {
        "plan": "hobby",
        "price_usd_per_month": 0,
        "limits": {
            "projects": 3,
            "services": 12,
            "replicas": 6,
            "deployments_this_month": 100,
            "backups": 10,
            "backup_storage_bytes": GIB,
            "domains": 2,
            "env_vars": 100,
            "team_members": 3,
        },
    },
    {
        "plan": "pro",
        "price_usd_per_month": 20,
        "limits": {
            "projects": 20,
            "services": 80,
            "replicas": 40,
            "deployments_this_month": 1000,
            "backups": 100,
            "backup_storage_bytes": 50 * GIB,
            "domains": 20,
            "env_vars": 1000,
            "team_members": 10,
        },
    },
    {
        "plan": "team",
        "price_usd_per_month": 50,
        "limits": {
            "projects": 100,
            "services": 400,
            "replicas": 200,
            "deployments_this_month": 10000,
            "backups": 1000,
            "backup_storage_bytes": 500 * GIB,
            "domains": 200,
            "env_vars": 10000,
            "team_members": 100,
        },
    },
]


@pytest.fixture
def env(product: ProductEnv) -> ProductEnv:
    """The product profile with the clock stopped mid-month, at this module's NOW."""
    product.freeze(NOW)
    return product


async def seed_project(
    env: ProductEnv,
    tenant_id: str,
    name: str,
    *,
    services: dict[str, int] | None = None,
    deployments: tuple[float, ...] = (),
    backups: tuple[int, ...] = (),
    domains: int = 0,
    env_vars: int = 0,
) -> str:
    """A project with resources, written straight into the store."""
    project_id = f"prj_{name}"
    async with env.store.transaction() as tx:
        await tx.projects.add(Project(project_id, tenant_id, name, "eu-central", NOW))
        await seed_services(tx, name, project_id, services or {})
        for n, at in enumerate(deployments):
            await tx.deployments.add(
                Deployment(
                    f"dep_{name}_{n}",
                    project_id,
                    None,
                    "main",
                    "live",
                    "manual",
                    at,
                    at,
                    None,
                    None,
                )
            )
        for n, size in enumerate(backups):
            backup = Backup(f"bak_{name}_{n}", project_id, "completed", "manual", size, NOW, NOW)
            await tx.backups.add(backup)
        for n in range(domains):
            hostname = f"{n}.{name}.example.com"
            await tx.domains.add(
                Domain(f"dom_{name}_{n}", project_id, hostname, "pending", "tok", NOW, None)
            )
        await tx.env.put_many(project_id, [(f"KEY_{n}", "value") for n in range(env_vars)], NOW)
    return project_id


async def seed_services(tx: Repos, name: str, project_id: str, services: dict[str, int]) -> None:
    """The project's services, each with its number of replicas."""
    ids = {service: f"svc_{name}_{service}" for service in services}
    await tx.projects.add_services(project_id, [(ids[s], s) for s in services])
    for service, replicas in services.items():
        await tx.projects.set_replicas(ids[service], replicas)


async def plan_of(env: ProductEnv, tenant_id: str) -> str | None:
    return await env.store.reads.billing.plan(tenant_id)


async def events(env: ProductEnv, tenant_id: str) -> list[tuple[Any, ...]]:
    found = await env.store.reads.billing.events(tenant_id)
    return [(e.user_id, e.kind, e.from_plan, e.to_plan, e.session_id, e.at) for e in found]


async def team_with(env: ProductEnv, owner: User, member: User, role: str) -> str:
    token = await env.token(owner)
    team = (await env.ok(token, "create_team", {"name": "Acme"}))["tenant_id"]
    await env.join(token, team, member, role)
    return str(team)


def zero_usage(limits: dict[str, int]) -> dict[str, dict[str, int]]:
    return {
        metric: {"used": 1 if metric == "team_members" else 0, "limit": limit}
        for metric, limit in limits.items()
    }


# --- get_usage ----------------------------------------------------------------------------


async def test_get_usage_of_an_empty_personal_tenant(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    usage = await env.ok(await env.token(ada, "billing:read"), "get_usage", {})
    assert usage == {
        "tenant_id": await env.personal(ada),
        "tenant_name": "ada's workspace",
        "plan": "hobby",
        "price_usd_per_month": 0,
        "period": {"start": "2026-01-01T00:00:00.000Z", "end": "2026-02-01T00:00:00.000Z"},
        "usage": zero_usage(PLANS[0]["limits"]),
        "over_limit": [],
        "plans": PLANS,
    }


async def test_get_usage_counts_the_tenants_real_resources(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    await seed_project(
        env,
        tenant,
        "api",
        services={"api": 2, "worker": 1},
        deployments=(NOW, NOW - 10 * DAY, NOW - 20 * DAY),
        backups=(100, 250),
        domains=1,
        env_vars=3,
    )
    await seed_project(env, tenant, "web", services={"web": 3, "ssr": 1}, env_vars=2)
    other = await env.personal(await env.user("bob@example.com"))
    await seed_project(env, other, "elsewhere", services={"web": 5}, deployments=(NOW,), domains=1)
    usage = await env.ok(await env.token(ada), "get_usage", {})
    assert {m: v["used"] for m, v in usage["usage"].items()} == {
        "projects": 2,
        "services": 4,
        "replicas": 7,
        "deployments_this_month": 2,
        "backups": 2,
        "backup_storage_bytes": 350,
        "domains": 1,
        "env_vars": 5,
        "team_members": 1,
    }
    assert usage["over_limit"] == ["replicas"]


async def test_the_months_deployments_stay_counted_once_their_project_is_destroyed(
    env: ProductEnv,
) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    await seed_project(env, await env.personal(ada), "api", deployments=(NOW, NOW - 40 * DAY))

    async def deployed_this_month() -> int:
        usage = await env.ok(token, "get_usage", {})
        used: int = usage["usage"]["deployments_this_month"]["used"]
        return used

    before = await deployed_this_month()
    await env.ok(token, "destroy_project", {"project": "api"})
    assert (before, await deployed_this_month()) == (1, 1)
    assert await env.count("deployments") == 0


async def test_a_deployment_is_counted_as_made_for_two_months_and_then_let_go(
    env: ProductEnv,
) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    await seed_project(env, await env.personal(ada), "api", deployments=(NOW - 70 * DAY,))
    await seed_project(env, await env.personal(ada), "web", deployments=(NOW - 61 * DAY,))
    before = await env.count("deployments_made")
    await env.ok(token, "deploy", {"project": "api", "ref": "main"})
    assert (before, await env.count("deployments_made")) == (2, 2)


async def test_get_usage_of_a_team_counts_members_and_pending_invitations(
    env: ProductEnv,
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await team_with(env, ada, bob, "member")
    await env.ok(await env.token(ada), "invite_team_member", {"tenant_id": team, "email": "c@d.io"})
    usage = await env.ok(await env.token(bob, "billing:read"), "get_usage", {"tenant_id": team})
    assert (usage["tenant_name"], usage["usage"]["team_members"]) == (
        "Acme",
        {"used": 3, "limit": 3},
    )


async def test_get_usage_period_wraps_at_the_end_of_the_year(env: ProductEnv) -> None:
    env.freeze(1_798_675_200.0)  # 2026-12-31T00:00:00Z
    usage = await env.ok(await env.token(await env.user()), "get_usage", {})
    assert usage["period"] == {
        "start": "2026-12-01T00:00:00.000Z",
        "end": "2027-01-01T00:00:00.000Z",
    }


async def test_get_usage_of_another_users_tenant_is_not_found(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    tenant = await env.personal(ada)
    assert await env.error_text(mallory, "get_usage", {"tenant_id": tenant}) == (
        f"No tenant '{tenant}' is reachable by this token; list_teams shows the tenants you "
        "belong to."
    )


async def test_get_usage_rejects_unknown_arguments(env: ProductEnv) -> None:
    text = await env.error_text(await env.token(await env.user()), "get_usage", {"plan": "pro"})
    assert text.startswith("Invalid arguments for 'get_usage': ")


# --- create_checkout_session --------------------------------------------------------------


async def test_checkout_returns_a_single_use_url_and_records_it(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    session = await env.ok(
        await env.token(ada, "billing:write"), "create_checkout_session", {"plan": "pro"}
    )
    assert re.fullmatch(r"chk_[0-9a-f]{32}", session["session_id"])
    assert session == {
        "session_id": session["session_id"],
        "url": f"https://billing.sp00ky.cloud/checkout/{session['session_id']}",
        "tenant_id": tenant,
        "expires_at": "2026-01-16T12:00:00.000Z",
        "single_use": True,
        "plan": "pro",
        "price_usd_per_month": 20,
    }
    assert await env.store.reads.billing.session(session["session_id"]) == BillingSession(
        session["session_id"], tenant, "checkout", "pro", session["url"], NOW, None
    )
    assert await events(env, tenant) == [
        (ada.id, "checkout_session", None, "pro", session["session_id"], NOW)
    ]
    assert await plan_of(env, tenant) == "hobby"


async def test_every_checkout_session_has_its_own_id(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    first = await env.ok(token, "create_checkout_session", {"plan": "pro"})
    second = await env.ok(token, "create_checkout_session", {"plan": "team"})
    assert first["session_id"] != second["session_id"]


async def test_a_checkout_session_is_redeemed_once_and_moves_the_plan(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    session = await env.ok(await env.token(ada), "create_checkout_session", {"plan": "team"})
    assert await billing.redeem_session(env.cloud, session["session_id"]) == {
        "session_id": session["session_id"],
        "kind": "checkout",
        "tenant_id": tenant,
        "plan": "team",
        "used_at": NOW_ISO,
    }
    assert await plan_of(env, tenant) == "team"
    with pytest.raises(Conflict, match="already used"):
        await billing.redeem_session(env.cloud, session["session_id"])
    assert (await events(env, tenant))[-1] == (
        None,
        "session_redeemed",
        "hobby",
        "team",
        session["session_id"],
        NOW,
    )


async def test_an_expired_checkout_session_cannot_be_redeemed(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    session = await env.ok(await env.token(ada), "create_checkout_session", {"plan": "pro"})
    env.freeze(NOW + DAY)
    with pytest.raises(Conflict, match="expired"):
        await billing.redeem_session(env.cloud, session["session_id"])
    assert await plan_of(env, await env.personal(ada)) == "hobby"


async def test_checkout_refuses_the_free_plan(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_checkout_session", {"plan": "hobby"}) == (
        "The hobby plan is free and needs no checkout; change_plan moves to it."
    )
    assert await env.count("billing_sessions") == 0


async def test_checkout_refuses_the_current_plan(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    await env.ok(token, "change_plan", {"plan": "pro"})
    assert await env.error_text(token, "create_checkout_session", {"plan": "pro"}) == (
        "'ada's workspace' is already on the pro plan; create_billing_portal_session manages "
        "its payment details."
    )


async def test_checkout_refuses_a_plan_below_current_usage(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    token = await env.token(ada)
    await env.ok(token, "change_plan", {"plan": "team"})
    await seed_project(env, tenant, "big", services={"web": 41})
    assert await env.error_text(token, "create_checkout_session", {"plan": "pro"}) == (
        "'ada's workspace' uses more than the pro plan allows (total replicas 41 > 40); "
        "remove resources first or choose a larger plan."
    )


async def test_checkout_rejects_an_unknown_plan(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_checkout_session", {"plan": "gold"}) == (
        "Invalid arguments for 'create_checkout_session': Argument 'plan' must be one of "
        "'hobby', 'pro', 'team'."
    )
    assert (await env.error_text(token, "create_checkout_session", {})).startswith(
        "Invalid arguments for 'create_checkout_session': "
    )


async def test_a_team_member_may_not_check_out_but_an_admin_may(env: ProductEnv) -> None:
    ada, bob, cy = [await env.user(f"{n}@example.com") for n in ("ada", "bob", "cy")]
    team = await team_with(env, ada, bob, "member")
    assert await env.error_text(
        await env.token(bob), "create_checkout_session", {"tenant_id": team, "plan": "team"}
    ) == ("Only a team admin or above may change billing; your role in 'Acme' is member.")
    await env.join(await env.token(ada), team, cy, "admin")
    session = await env.ok(
        await env.token(cy), "create_checkout_session", {"tenant_id": team, "plan": "team"}
    )
    assert session["tenant_id"] == team


async def test_checkout_for_another_users_tenant_is_not_found(env: ProductEnv) -> None:
    tenant = await env.personal(await env.user("ada@example.com"))
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    text = await env.error_text(
        mallory, "create_checkout_session", {"tenant_id": tenant, "plan": "pro"}
    )
    assert text.startswith(f"No tenant '{tenant}' is reachable by this token")
    assert await env.count("billing_sessions") == 0


# --- create_billing_portal_session --------------------------------------------------------


async def test_portal_returns_a_single_use_url_and_records_it(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    session = await env.ok(
        await env.token(ada, "billing:write"), "create_billing_portal_session", {}
    )
    assert re.fullmatch(r"prt_[0-9a-f]{32}", session["session_id"])
    assert session == {
        "session_id": session["session_id"],
        "url": f"https://billing.sp00ky.cloud/portal/{session['session_id']}",
        "tenant_id": tenant,
        "expires_at": "2026-01-16T12:00:00.000Z",
        "single_use": True,
    }
    assert await events(env, tenant) == [
        (ada.id, "portal_session", None, None, session["session_id"], NOW)
    ]
    redeemed = await billing.redeem_session(env.cloud, session["session_id"])
    assert (redeemed["kind"], redeemed["plan"]) == ("portal", "hobby")
    with pytest.raises(Conflict, match="already used"):
        await billing.redeem_session(env.cloud, session["session_id"])
    assert await plan_of(env, tenant) == "hobby"


async def test_a_team_member_may_not_open_the_billing_portal(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await team_with(env, ada, bob, "member")
    assert await env.error_text(
        await env.token(bob), "create_billing_portal_session", {"tenant_id": team}
    ) == ("Only a team admin or above may change billing; your role in 'Acme' is member.")
    assert await env.count("billing_sessions") == 0


async def test_portal_rejects_unknown_arguments(env: ProductEnv) -> None:
    text = await env.error_text(
        await env.token(await env.user()), "create_billing_portal_session", {"plan": "pro"}
    )
    assert text.startswith("Invalid arguments for 'create_billing_portal_session': ")


# --- change_plan --------------------------------------------------------------------------


async def test_the_owner_changes_the_personal_plan_and_a_record_is_written(
    env: ProductEnv,
) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    changed = await env.ok(await env.token(ada, "billing:write"), "change_plan", {"plan": "pro"})
    assert changed == {
        "tenant_id": tenant,
        "previous_plan": "hobby",
        "plan": "pro",
        "price_usd_per_month": 20,
        "changed": True,
        "changed_at": NOW_ISO,
    }
    assert await plan_of(env, tenant) == "pro"
    assert await events(env, tenant) == [(ada.id, "plan_change", "hobby", "pro", None, NOW)]


async def test_changing_to_the_current_plan_changes_nothing(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    unchanged = await env.ok(await env.token(ada), "change_plan", {"plan": "hobby"})
    assert unchanged == {
        "tenant_id": tenant,
        "previous_plan": "hobby",
        "plan": "hobby",
        "price_usd_per_month": 0,
        "changed": False,
        "changed_at": None,
    }
    assert await events(env, tenant) == []


async def test_a_downgrade_below_current_usage_is_refused_naming_each_excess(
    env: ProductEnv,
) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    token = await env.token(ada)
    await env.ok(token, "change_plan", {"plan": "pro"})
    for name in ("a", "b", "c", "d"):
        await seed_project(env, tenant, name, domains=1)
    assert await env.error_text(token, "change_plan", {"plan": "hobby"}) == (
        "'ada's workspace' uses more than the hobby plan allows (projects 4 > 3, custom "
        "domains 4 > 2); remove resources first or choose a larger plan."
    )
    assert await plan_of(env, tenant) == "pro"
    assert len(await events(env, tenant)) == 1


async def test_a_downgrade_that_fits_goes_ahead(env: ProductEnv) -> None:
    ada = await env.user("ada@example.com")
    tenant = await env.personal(ada)
    token = await env.token(ada)
    await env.ok(token, "change_plan", {"plan": "team"})
    await seed_project(env, tenant, "api", services={"api": 2}, backups=(GIB,), domains=2)
    changed = await env.ok(token, "change_plan", {"plan": "hobby"})
    assert (changed["previous_plan"], changed["plan"], changed["changed"]) == (
        "team",
        "hobby",
        True,
    )


async def test_a_team_downgrade_counts_pending_invitations_as_seats(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    token = await env.token(ada)
    team = await team_with(env, ada, bob, "admin")
    await env.ok(token, "change_plan", {"tenant_id": team, "plan": "pro"})
    for name in ("c", "d"):
        await env.ok(
            token, "invite_team_member", {"tenant_id": team, "email": f"{name}@example.com"}
        )
    assert await env.error_text(
        await env.token(bob), "change_plan", {"tenant_id": team, "plan": "hobby"}
    ) == (
        "'Acme' uses more than the hobby plan allows (team members and pending invitations "
        "4 > 3); remove resources first or choose a larger plan."
    )


async def test_a_team_member_may_not_change_the_plan_but_an_admin_may(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await team_with(env, ada, bob, "member")
    assert await env.error_text(
        await env.token(bob), "change_plan", {"tenant_id": team, "plan": "team"}
    ) == ("Only a team admin or above may change billing; your role in 'Acme' is member.")
    assert await plan_of(env, team) == "hobby"
    cy = await env.user("cy@example.com")
    await env.join(await env.token(ada), team, cy, "admin")
    await env.ok(await env.token(cy), "change_plan", {"tenant_id": team, "plan": "team"})
    assert await plan_of(env, team) == "team"


async def test_change_plan_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "change_plan", {"plan": "enterprise"}) == (
        "Invalid arguments for 'change_plan': Argument 'plan' must be one of 'hobby', 'pro', "
        "'team'."
    )
    assert (await env.error_text(token, "change_plan", {})).startswith(
        "Invalid arguments for 'change_plan': "
    )


async def test_change_plan_of_another_users_tenant_is_not_found_and_changes_nothing(
    env: ProductEnv,
) -> None:
    tenant = await env.personal(await env.user("ada@example.com"))
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    text = await env.error_text(mallory, "change_plan", {"tenant_id": tenant, "plan": "team"})
    assert text.startswith(f"No tenant '{tenant}' is reachable by this token")
    assert await plan_of(env, tenant) == "hobby"
    assert await env.count("billing_events") == 0


async def test_change_plan_replays_its_first_result_for_a_repeated_idempotency_key(
    env: ProductEnv,
) -> None:
    ada = await env.user("ada@example.com")
    token = await env.token(ada)
    args = {"plan": "pro", "idempotency_key": "upgrade-1"}
    first = await env.ok(token, "change_plan", args)
    assert await env.ok(token, "change_plan", args) == first
    assert len(await events(env, await env.personal(ada))) == 1
