"""Billing: plans as data, usage computed from the tenant's real resources, checkout and
billing-portal sessions, and plan changes validated against current usage.

Plans and their limits are data (`PLANS`); nothing else in the code knows a price or a limit.
Usage is never stored: it is counted from the tenant's projects, services, deployments,
backups, domains, env vars and seats whenever it is asked for, so it cannot drift.

Checkout and portal sessions are URLs with single-use ids, valid for `SESSION_TTL` seconds;
the billing site redeems them (`redeem_session`) once.  Every billing change (a session
created or redeemed, a plan changed) writes a `billing_events` record.  In a team, billing
changes need an admin or owner; a personal tenant's only member is its owner.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store import migration
from .base import Cloud, Conflict, Invalid, NotFound, Tenant, iso, new_id

migration(
    30,
    """
CREATE TABLE billing_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
    kind TEXT NOT NULL CHECK (kind IN ('checkout_session', 'portal_session', 'plan_change',
                                       'session_redeemed')),
    from_plan TEXT,
    to_plan TEXT,
    session_id TEXT,
    at REAL NOT NULL
);
CREATE INDEX billing_events_by_tenant ON billing_events(tenant_id, at);
""",
)

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
# The usage counted over the tenant's projects: an aggregate, over which rows, and whether
# only the rows created this month count.
_PER_PROJECT: dict[str, tuple[str, str, bool]] = {
    "services": ("COUNT(*)", "services", False),
    "replicas": ("SUM(x.replicas)", "services", False),
    "deployments_this_month": ("COUNT(*)", "deployments", True),
    "backups": ("COUNT(*)", "backups", False),
    "backup_storage_bytes": ("SUM(x.size_bytes)", "backups", False),
    "domains": ("COUNT(*)", "domains", False),
    "env_vars": ("COUNT(*)", "env_vars", False),
}


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


def seats_used(cloud: Cloud, tenant_id: str) -> int:
    """Members plus pending invitations: each pending invitation holds a seat."""
    return _count(
        cloud,
        "SELECT (SELECT COUNT(*) FROM memberships WHERE tenant_id = ?) + "
        "(SELECT COUNT(*) FROM invitations WHERE tenant_id = ?)",
        (tenant_id, tenant_id),
    )


def _count(cloud: Cloud, sql: str, params: tuple[Any, ...]) -> int:
    row = cloud.store.one(sql, params)
    assert row is not None
    return int(row[0] or 0)


def measure(cloud: Cloud, tenant_id: str) -> dict[str, int]:
    """The tenant's usage, counted from its resources now."""
    start, _ = month_bounds(cloud.clock())
    used = {
        "projects": _count(cloud, "SELECT COUNT(*) FROM projects WHERE tenant_id = ?", (tenant_id,))
    }
    for metric, (aggregate, table, monthly) in _PER_PROJECT.items():
        used[metric] = _per_project(cloud, tenant_id, aggregate, table, start if monthly else None)
    used["team_members"] = seats_used(cloud, tenant_id)
    return used


def _per_project(
    cloud: Cloud, tenant_id: str, aggregate: str, table: str, since: float | None
) -> int:
    """`aggregate` over the rows of `table` in the tenant's projects (created from `since`)."""
    sql = (
        f"SELECT {aggregate} FROM {table} x JOIN projects p ON p.id = x.project_id "
        "WHERE p.tenant_id = ?"
    )
    if since is None:
        return _count(cloud, sql, (tenant_id,))
    return _count(cloud, sql + " AND x.created_at >= ?", (tenant_id, since))


def usage(cloud: Cloud, tenant: Tenant) -> dict[str, Any]:
    plan = PLANS[_current_plan(cloud, tenant.id)]
    used = measure(cloud, tenant.id)
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


def check_fits(cloud: Cloud, tenant: Tenant, plan: Plan) -> None:
    """Refuses a plan whose limits are below what the tenant uses now, naming each excess."""
    used = measure(cloud, tenant.id)
    over = [
        f"{label} {used[m]} > {plan.limits[m]}" for m, label in METRICS if used[m] > plan.limits[m]
    ]
    if over:
        raise Conflict(
            f"'{tenant.name}' uses more than the {plan.name} plan allows "
            f"({', '.join(over)}); remove resources first or choose a larger plan."
        )


def _current_plan(cloud: Cloud, tenant_id: str) -> str:
    row = cloud.store.one("SELECT plan FROM tenants WHERE id = ?", (tenant_id,))
    assert row is not None
    return str(row["plan"])


def _set_plan(db: sqlite3.Connection, tenant_id: str, plan: str) -> None:
    db.execute("UPDATE tenants SET plan = ? WHERE id = ?", (plan, tenant_id))


# --- changes -----------------------------------------------------------------------------


def _require_billing_role(tenant: Tenant) -> None:
    tenant.require_role("admin", "change billing")


def _record(
    db: sqlite3.Connection,
    cloud: Cloud,
    tenant_id: str,
    user_id: str | None,
    kind: str,
    from_plan: str | None = None,
    to_plan: str | None = None,
    session_id: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO billing_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (new_id("bev"), tenant_id, user_id, kind, from_plan, to_plan, session_id, cloud.clock()),
    )


def _session(
    cloud: Cloud, tenant: Tenant, user_id: str, kind: str, plan: str | None
) -> dict[str, Any]:
    session_id = f"{'chk' if kind == 'checkout' else 'prt'}_{secrets.token_hex(16)}"
    url = f"{BILLING_URL}/{kind}/{session_id}"
    now = cloud.clock()
    with cloud.transaction() as db:
        db.execute(
            "INSERT INTO billing_sessions VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (session_id, tenant.id, kind, plan, url, now),
        )
        _record(
            db, cloud, tenant.id, user_id, f"{kind}_session", to_plan=plan, session_id=session_id
        )
    return {
        "session_id": session_id,
        "url": url,
        "tenant_id": tenant.id,
        "expires_at": iso(now + SESSION_TTL),
        "single_use": True,
    }


def checkout(cloud: Cloud, tenant: Tenant, user_id: str, plan_name: str) -> dict[str, Any]:
    """A checkout session for moving to a paid plan."""
    _require_billing_role(tenant)
    plan = PLANS[plan_name]
    if plan.price_usd_per_month == 0:
        raise Invalid(
            f"The {plan.name} plan is free and needs no checkout; change_plan moves to it."
        )
    if _current_plan(cloud, tenant.id) == plan.name:
        raise Conflict(
            f"'{tenant.name}' is already on the {plan.name} plan; "
            "create_billing_portal_session manages its payment details."
        )
    check_fits(cloud, tenant, plan)
    session = _session(cloud, tenant, user_id, "checkout", plan.name)
    return {**session, "plan": plan.name, "price_usd_per_month": plan.price_usd_per_month}


def portal(cloud: Cloud, tenant: Tenant, user_id: str) -> dict[str, Any]:
    """A billing-portal session: invoices, payment method, cancellation."""
    _require_billing_role(tenant)
    return _session(cloud, tenant, user_id, "portal", None)


def change_plan(cloud: Cloud, tenant: Tenant, user_id: str, plan_name: str) -> dict[str, Any]:
    """Moves the tenant to another plan at once, if its current usage fits the new limits."""
    _require_billing_role(tenant)
    plan = PLANS[plan_name]
    now = cloud.clock()
    with cloud.transaction() as db:
        previous = _current_plan(cloud, tenant.id)
        changed = previous != plan.name
        if changed:
            check_fits(cloud, tenant, plan)
            _set_plan(db, tenant.id, plan.name)
            _record(db, cloud, tenant.id, user_id, "plan_change", previous, plan.name)
    return {
        "tenant_id": tenant.id,
        "previous_plan": previous,
        "plan": plan.name,
        "price_usd_per_month": plan.price_usd_per_month,
        "changed": changed,
        "changed_at": iso(now) if changed else None,
    }


def redeem_session(cloud: Cloud, session_id: str) -> dict[str, Any]:
    """The billing site's side: a session id works once and before it expires.  Completing a
    checkout moves the tenant to the session's plan (validated against usage again)."""
    now = cloud.clock()
    with cloud.transaction() as db:
        row = _redeemable(cloud, session_id, now)
        db.execute("UPDATE billing_sessions SET used_at = ? WHERE id = ?", (now, session_id))
        previous = _current_plan(cloud, row["tenant_id"])
        if row["kind"] == "checkout" and row["plan"] != previous:
            _complete_checkout(cloud, db, row)
        plan = row["plan"] or previous
        _record(db, cloud, row["tenant_id"], None, "session_redeemed", previous, plan, session_id)
    return {
        "session_id": session_id,
        "kind": row["kind"],
        "tenant_id": row["tenant_id"],
        "plan": plan,
        "used_at": iso(now),
    }


def _redeemable(cloud: Cloud, session_id: str, now: float) -> sqlite3.Row:
    """The session, if it exists, is unused and has not expired."""
    row = cloud.store.one("SELECT * FROM billing_sessions WHERE id = ?", (session_id,))
    if row is None:
        raise NotFound(f"No billing session '{session_id}'.")
    if row["used_at"] is not None:
        raise Conflict("This billing session was already used; create a new one.")
    if now >= row["created_at"] + SESSION_TTL:
        raise Conflict("This billing session has expired; create a new one.")
    return row


def _complete_checkout(cloud: Cloud, db: sqlite3.Connection, session: sqlite3.Row) -> None:
    """Moves the session's tenant to its plan, if the tenant's usage fits."""
    tenant = cloud.store.one(
        "SELECT id, name, kind, plan FROM tenants WHERE id = ?", (session["tenant_id"],)
    )
    assert tenant is not None
    check_fits(
        cloud,
        Tenant(tenant["id"], tenant["name"], tenant["kind"], tenant["plan"], "owner"),
        PLANS[session["plan"]],
    )
    _set_plan(db, session["tenant_id"], session["plan"])
