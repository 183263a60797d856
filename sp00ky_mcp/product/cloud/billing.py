"""Billing: plans as data, usage computed from the tenant's real resources, checkout and
billing-portal sessions, and plan changes validated against current usage.

Plans and their limits are data (`PLANS`); nothing else in the code knows a price or a limit.
Usage is never stored as a figure: it is counted from the tenant's projects, services,
backups, domains, env vars and seats whenever it is asked for, so it cannot drift; the month's
deployments are counted from a record of each deployment made, which outlives its project
(destroying a project does not undo what was deployed that month).

Checkout and portal sessions are URLs with single-use ids, valid for `SESSION_TTL` seconds;
the billing site redeems them (`redeem_session`) once.  Every billing change (a session
created or redeemed, a plan changed) writes a `billing_events` record.  In a team, billing
changes need an admin or owner; a personal tenant's only member is its owner.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store.repos import Repos
from ..store.repos.billing import BillingEvent, BillingSession
from .base import Cloud, Conflict, Invalid, NotFound, Tenant, iso, ordered_id

BILLING_URL = "https://billing.sp00ky.cloud"
SESSION_TTL = 24 * 3600
GIB = 1024**3

# What `get_usage` reports, in order, with the words used in messages.
METRICS: tuple[tuple[str, str], ...] = (
    ("projects", "projects"),
    ("services", "services"),
    ("replicas", "total replicas"),
    ("deployments_this_month", "deployments this month"),
    ("backups", "backups"),
    ("backup_storage_bytes", "backup storage in bytes"),
    ("domains", "custom domains"),
    ("env_vars", "env vars"),
    ("team_members", "team members and pending invitations"),
)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price_usd_per_month: int
    limits: dict[str, int]


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan(
            "hobby",
            0,
            {
                "projects": 3,
                "services": 12,
                "replicas": 6,
                "deployments_this_month": 100,
                "backups": 10,
                "backup_storage_bytes": 1 * GIB,
                "domains": 2,
                "env_vars": 100,
                "team_members": 3,
            },
        ),
        Plan(
            "pro",
            20,
            {
                "projects": 20,
                "services": 80,
                "replicas": 40,
                "deployments_this_month": 1_000,
                "backups": 100,
                "backup_storage_bytes": 50 * GIB,
                "domains": 20,
                "env_vars": 1_000,
                "team_members": 10,
            },
        ),
        Plan(
            "team",
            50,
            {
                "projects": 100,
                "services": 400,
                "replicas": 200,
                "deployments_this_month": 10_000,
                "backups": 1_000,
                "backup_storage_bytes": 500 * GIB,
                "domains": 200,
                "env_vars": 10_000,
                "team_members": 100,
            },
        ),
    )
}
PLAN_NAMES = tuple(PLANS)


def plan_limit(plan: str, metric: str) -> int:
    return PLANS[plan].limits[metric]


def plan_view(plan: Plan) -> dict[str, Any]:
    return {
        "plan": plan.name,
        "price_usd_per_month": plan.price_usd_per_month,
        "limits": dict(plan.limits),
    }


def month_bounds(now: float) -> tuple[float, float]:
    """The calendar month (UTC) that `now` falls in, as [start, end)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.timestamp(), end.timestamp()


# --- usage -------------------------------------------------------------------------------


async def measure(cloud: Cloud, tenant_id: str, tx: Repos | None = None) -> dict[str, int]:
    """The tenant's usage, counted from its resources now (through `tx` inside a write)."""
    start, _ = month_bounds(cloud.clock())
    return await (tx or cloud.reads).billing.usage(tenant_id, start)


async def usage(cloud: Cloud, tenant: Tenant) -> dict[str, Any]:
    plan = PLANS[await _current_plan(cloud.reads, tenant.id)]
    used = await measure(cloud, tenant.id)
    start, end = month_bounds(cloud.clock())
    return {
        "tenant_id": tenant.id,
        "tenant_name": tenant.name,
        "plan": plan.name,
        "price_usd_per_month": plan.price_usd_per_month,
        "period": {"start": iso(start), "end": iso(end)},
        "usage": {m: {"used": used[m], "limit": plan.limits[m]} for m, _ in METRICS},
        "over_limit": [m for m, _ in METRICS if used[m] > plan.limits[m]],
        "plans": [plan_view(p) for p in PLANS.values()],
    }


async def check_fits(cloud: Cloud, tenant: Tenant, plan: Plan, tx: Repos | None = None) -> None:
    """Refuses a plan whose limits are below what the tenant uses now, naming each excess."""
    used = await measure(cloud, tenant.id, tx)
    over = [
        f"{label} {used[m]} > {plan.limits[m]}" for m, label in METRICS if used[m] > plan.limits[m]
    ]
    if over:
        raise Conflict(
            f"'{tenant.name}' uses more than the {plan.name} plan allows "
            f"({', '.join(over)}); remove resources first or choose a larger plan."
        )


async def _current_plan(repos: Repos, tenant_id: str) -> str:
    plan = await repos.billing.plan(tenant_id)
    assert plan is not None
    return plan


# --- changes -----------------------------------------------------------------------------


def _require_billing_role(tenant: Tenant) -> None:
    tenant.require_role("admin", "change billing")


async def _record(
    tx: Repos,
    cloud: Cloud,
    tenant_id: str,
    user_id: str | None,
    kind: str,
    from_plan: str | None = None,
    to_plan: str | None = None,
    session_id: str | None = None,
) -> None:
    # Ordered ids keep events made at one clock reading in the order they happened.
    event = BillingEvent(
        ordered_id("bev"), tenant_id, user_id, kind, from_plan, to_plan, session_id, cloud.clock()
    )
    await tx.billing.add_event(event)


async def _session(
    cloud: Cloud, tenant: Tenant, user_id: str, kind: str, plan: str | None
) -> dict[str, Any]:
    session_id = f"{'chk' if kind == 'checkout' else 'prt'}_{secrets.token_hex(16)}"
    url = f"{BILLING_URL}/{kind}/{session_id}"
    now = cloud.clock()
    async with cloud.transaction() as tx:
        await tx.billing.add_session(session_id, tenant.id, kind, plan, url, now)
        await _record(
            tx, cloud, tenant.id, user_id, f"{kind}_session", to_plan=plan, session_id=session_id
        )
    return {
        "session_id": session_id,
        "url": url,
        "tenant_id": tenant.id,
        "expires_at": iso(now + SESSION_TTL),
        "single_use": True,
    }


async def checkout(cloud: Cloud, tenant: Tenant, user_id: str, plan_name: str) -> dict[str, Any]:
    """A checkout session for moving to a paid plan."""
    _require_billing_role(tenant)
    plan = PLANS[plan_name]
    if plan.price_usd_per_month == 0:
        raise Invalid(
            f"The {plan.name} plan is free and needs no checkout; change_plan moves to it."
        )
    if await _current_plan(cloud.reads, tenant.id) == plan.name:
        raise Conflict(
            f"'{tenant.name}' is already on the {plan.name} plan; "
            "create_billing_portal_session manages its payment details."
        )
    await check_fits(cloud, tenant, plan)
    session = await _session(cloud, tenant, user_id, "checkout", plan.name)
    return {**session, "plan": plan.name, "price_usd_per_month": plan.price_usd_per_month}


async def portal(cloud: Cloud, tenant: Tenant, user_id: str) -> dict[str, Any]:
    """A billing-portal session: invoices, payment method, cancellation."""
    _require_billing_role(tenant)
    return await _session(cloud, tenant, user_id, "portal", None)


async def change_plan(cloud: Cloud, tenant: Tenant, user_id: str, plan_name: str) -> dict[str, Any]:
    """Moves the tenant to another plan at once, if its current usage fits the new limits."""
    _require_billing_role(tenant)
    plan = PLANS[plan_name]
    now = cloud.clock()
    async with cloud.transaction() as tx:
        previous = await _current_plan(tx, tenant.id)
        changed = previous != plan.name
        if changed:
            await check_fits(cloud, tenant, plan, tx)
            await tx.billing.set_plan(tenant.id, plan.name)
            await _record(tx, cloud, tenant.id, user_id, "plan_change", previous, plan.name)
    return {
        "tenant_id": tenant.id,
        "previous_plan": previous,
        "plan": plan.name,
        "price_usd_per_month": plan.price_usd_per_month,
        "changed": changed,
        "changed_at": iso(now) if changed else None,
    }


async def redeem_session(cloud: Cloud, session_id: str) -> dict[str, Any]:
    """The billing site's side: a session id works once and before it expires.  Completing a
    checkout moves the tenant to the session's plan (validated against usage again)."""
    now = cloud.clock()
    async with cloud.transaction() as tx:
        session = await _redeemable(tx, session_id, now)
        await tx.billing.use_session(session_id, now)
        previous = await _current_plan(tx, session.tenant_id)
        if session.kind == "checkout" and session.plan != previous:
            await _complete_checkout(cloud, tx, session)
        plan = session.plan or previous
        await _record(
            tx, cloud, session.tenant_id, None, "session_redeemed", previous, plan, session_id
        )
    return {
        "session_id": session_id,
        "kind": session.kind,
        "tenant_id": session.tenant_id,
        "plan": plan,
        "used_at": iso(now),
    }


async def _redeemable(tx: Repos, session_id: str, now: float) -> BillingSession:
    """The session, if it exists, is unused and has not expired."""
    session = await tx.billing.session(session_id)
    if session is None:
        raise NotFound(f"No billing session '{session_id}'.")
    if session.used_at is not None:
        raise Conflict("This billing session was already used; create a new one.")
    if now >= session.created_at + SESSION_TTL:
        raise Conflict("This billing session has expired; create a new one.")
    return session


async def _complete_checkout(cloud: Cloud, tx: Repos, session: BillingSession) -> None:
    """Moves the session's tenant to its plan, if the tenant's usage fits."""
    tenant = await tx.billing.tenant(session.tenant_id)
    assert tenant is not None and session.plan is not None
    check = Tenant(tenant.id, tenant.name, tenant.kind, tenant.plan, "owner")
    await check_fits(cloud, check, PLANS[session.plan], tx)
    await tx.billing.set_plan(session.tenant_id, session.plan)
