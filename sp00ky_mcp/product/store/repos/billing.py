"""The billing area's records and SQL: tenants' plans, usage counted from their resources,
billing sessions and the billing events log."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row
from .teams import TeamsRepo


@dataclass(frozen=True, slots=True)
class BillingSession:
    id: str
    tenant_id: str
    kind: str
    plan: str | None
    url: str
    created_at: float
    used_at: float | None


@dataclass(frozen=True, slots=True)
class TenantPlan:
    """A tenant as billing sees it."""

    id: str
    name: str
    kind: str
    plan: str


@dataclass(frozen=True, slots=True)
class BillingEvent:
    id: str
    tenant_id: str
    user_id: str | None
    kind: str
    from_plan: str | None
    to_plan: str | None
    session_id: str | None
    at: float


# The usage counted over a tenant's projects: an aggregate, and over which table.  Fixed
# text, never a caller's, so it may be spliced in.
PER_PROJECT: dict[str, tuple[str, str]] = {
    "services": ("COUNT(*)", "services"),
    "replicas": ("SUM(x.replicas)", "services"),
    "backups": ("COUNT(*)", "backups"),
    "backup_storage_bytes": ("SUM(x.size_bytes)", "backups"),
    "domains": ("COUNT(*)", "domains"),
    "env_vars": ("COUNT(*)", "env_vars"),
}


def _session(row: Row) -> BillingSession:
    used_at = row["used_at"]
    return BillingSession(
        row["id"],
        row["tenant_id"],
        row["kind"],
        row["plan"],
        row["url"],
        float(row["created_at"]),
        None if used_at is None else float(used_at),
    )


def _event(row: Row) -> BillingEvent:
    return BillingEvent(
        row["id"],
        row["tenant_id"],
        row["user_id"],
        row["kind"],
        row["from_plan"],
        row["to_plan"],
        row["session_id"],
        float(row["at"]),
    )


class BillingRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- plans -----------------------------------------------------------------------------

    async def tenant(self, tenant_id: str) -> TenantPlan | None:
        row = await self.db.one("SELECT id, name, kind, plan FROM tenants WHERE id = ?", tenant_id)
        return None if row is None else TenantPlan(row["id"], row["name"], row["kind"], row["plan"])

    async def plan(self, tenant_id: str) -> str | None:
        row = await self.db.one("SELECT plan FROM tenants WHERE id = ?", tenant_id)
        return None if row is None else str(row["plan"])

    async def set_plan(self, tenant_id: str, plan: str) -> None:
        await self.db.run("UPDATE tenants SET plan = ? WHERE id = ?", plan, tenant_id)

    # --- usage -----------------------------------------------------------------------------

    async def usage(self, tenant_id: str, month_start: float) -> dict[str, int]:
        """Every metric counted from the tenant's resources now, and its deployments made
        from `month_start` on."""
        used = {"projects": await self._projects(tenant_id)}
        for metric, (aggregate, table) in PER_PROJECT.items():
            used[metric] = await self._per_project(tenant_id, aggregate, table)
        used["deployments_this_month"] = await self._deployments_made(tenant_id, month_start)
        used["team_members"] = await TeamsRepo(self.db).seats_used(tenant_id)
        return used

    async def _deployments_made(self, tenant_id: str, since: float) -> int:
        """Deployments made from `since` on, their projects destroyed since or not."""
        row = await self.db.one(
            "SELECT COUNT(*) AS n FROM deployments_made WHERE tenant_id = ? AND created_at >= ?",
            tenant_id,
            float(since),
        )
        return _number(row)

    async def _projects(self, tenant_id: str) -> int:
        row = await self.db.one("SELECT COUNT(*) AS n FROM projects WHERE tenant_id = ?", tenant_id)
        return _number(row)

    async def _per_project(self, tenant_id: str, aggregate: str, table: str) -> int:
        """`aggregate` over the rows of `table` in the tenant's projects."""
        sql = (
            f"SELECT {aggregate} AS n FROM {table} x JOIN projects p ON p.id = x.project_id "
            "WHERE p.tenant_id = ?"
        )
        return _number(await self.db.one(sql, tenant_id))

    # --- sessions and events ---------------------------------------------------------------

    async def add_session(
        self, session_id: str, tenant_id: str, kind: str, plan: str | None, url: str, at: float
    ) -> None:
        await self.db.run(
            "INSERT INTO billing_sessions (id, tenant_id, kind, plan, url, created_at, used_at) "
            "VALUES (?, ?, ?, ?, ?, ?, NULL)",
            session_id,
            tenant_id,
            kind,
            plan,
            url,
            float(at),
        )

    async def session(self, session_id: str) -> BillingSession | None:
        row = await self.db.one(
            "SELECT id, tenant_id, kind, plan, url, created_at, used_at "
            "FROM billing_sessions WHERE id = ?",
            session_id,
        )
        return None if row is None else _session(row)

    async def use_session(self, session_id: str, at: float) -> None:
        await self.db.run(
            "UPDATE billing_sessions SET used_at = ? WHERE id = ?", float(at), session_id
        )

    async def age_session(self, session_id: str, created_at: float) -> None:
        """Moves a session's creation time (tests make one expire this way)."""
        await self.db.run(
            "UPDATE billing_sessions SET created_at = ? WHERE id = ?", float(created_at), session_id
        )

    async def add_event(self, event: BillingEvent) -> None:
        await self.db.run(
            "INSERT INTO billing_events "
            "(id, tenant_id, user_id, kind, from_plan, to_plan, session_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            event.id,
            event.tenant_id,
            event.user_id,
            event.kind,
            event.from_plan,
            event.to_plan,
            event.session_id,
            float(event.at),
        )

    async def events(self, tenant_id: str) -> list[BillingEvent]:
        """The tenant's billing events, oldest first."""
        rows = await self.db.all(
            "SELECT id, tenant_id, user_id, kind, from_plan, to_plan, session_id, at "
            "FROM billing_events WHERE tenant_id = ? ORDER BY at, id",
            tenant_id,
        )
        return [_event(row) for row in rows]


def _number(row: Row | None) -> int:
    """A counted or summed column; SUM over no rows is NULL, which counts as 0."""
    return 0 if row is None or row["n"] is None else int(row["n"])
