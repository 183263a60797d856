"""Deployments of projects' builds, and the states they go through."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment, with the commit of its build (None once the build is gone)."""

    id: str
    project_id: str
    build_id: str | None
    ref: str
    status: str
    source: str
    created_at: float
    updated_at: float
    live_at: float | None
    previous_id: str | None
    commit_sha: str | None = None


def _deployment(row: Row) -> Deployment:
    live_at = row["live_at"]
    return Deployment(
        row["id"],
        row["project_id"],
        row["build_id"],
        row["ref"],
        row["status"],
        row["source"],
        float(row["created_at"]),
        float(row["updated_at"]),
        None if live_at is None else float(live_at),
        row["previous_id"],
        row["commit_sha"],
    )


_DEPLOYMENT = (
    "SELECT d.id, d.project_id, d.build_id, d.ref, d.status, d.source, d.created_at, "
    "d.updated_at, d.live_at, d.previous_id, b.commit_sha "
    "FROM deployments d LEFT JOIN builds b ON b.id = d.build_id"
)
# Deployment ids are ordered by when they were made (see cloud/projects.py), which breaks
# ties between deployments queued within the same clock reading.
_NEWEST_FIRST = "ORDER BY d.created_at DESC, d.id DESC"


# How long a deployment is counted as made: longer than any month, so that the month in
# progress is always whole.
MADE_KEPT_SECONDS = 62 * 86400


class DeploymentsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def by_id(self, deployment_id: str) -> Deployment | None:
        row = await self.db.one(f"{_DEPLOYMENT} WHERE d.id = ?", deployment_id)
        return None if row is None else _deployment(row)

    async def of_project(self, project_id: str, deployment_id: str) -> Deployment | None:
        """The project's deployment `deployment_id`, if it is the project's."""
        row = await self.db.one(
            f"{_DEPLOYMENT} WHERE d.project_id = ? AND d.id = ?", project_id, deployment_id
        )
        return None if row is None else _deployment(row)

    async def deployments(self, project_id: str) -> list[Deployment]:
        """The project's deployments, newest first."""
        rows = await self.db.all(
            f"{_DEPLOYMENT} WHERE d.project_id = ? {_NEWEST_FIRST}", project_id
        )
        return [_deployment(r) for r in rows]

    async def latest(self, project_id: str) -> Deployment | None:
        row = await self.db.one(
            f"{_DEPLOYMENT} WHERE d.project_id = ? {_NEWEST_FIRST} LIMIT 1", project_id
        )
        return None if row is None else _deployment(row)

    async def live(self, project_id: str) -> Deployment | None:
        row = await self.db.one(
            f"{_DEPLOYMENT} WHERE d.project_id = ? AND d.status = 'live'", project_id
        )
        return None if row is None else _deployment(row)

    async def superseded(self, deployment_id: str) -> Deployment | None:
        """The deployment `deployment_id` if it is superseded (what a rollback returns to)."""
        row = await self.db.one(
            f"{_DEPLOYMENT} WHERE d.id = ? AND d.status = 'superseded'", deployment_id
        )
        return None if row is None else _deployment(row)

    async def stale_ids(self, project_id: str, cutoff: float) -> list[str]:
        """The project's deployments still queued or building whose last change is older than
        `cutoff`, oldest first."""
        rows = await self.db.all(
            "SELECT id FROM deployments WHERE project_id = ? "
            "AND status IN ('queued', 'building') AND updated_at < ? ORDER BY created_at, id",
            project_id,
            float(cutoff),
        )
        return [str(r["id"]) for r in rows]

    async def add(self, deployment: Deployment) -> None:
        await self.db.run(
            "INSERT INTO deployments (id, project_id, build_id, ref, status, source, created_at, "
            "updated_at, live_at, previous_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            deployment.id,
            deployment.project_id,
            deployment.build_id,
            deployment.ref,
            deployment.status,
            deployment.source,
            float(deployment.created_at),
            float(deployment.updated_at),
            None if deployment.live_at is None else float(deployment.live_at),
            deployment.previous_id,
        )
        await self._count_made(deployment)

    async def _count_made(self, deployment: Deployment) -> None:
        """The deployment counted against its tenant's month, for as long as a month's usage
        is asked for (the records of months before the last are let go)."""
        await self.db.run(
            "INSERT INTO deployments_made (deployment_id, tenant_id, created_at) "
            "SELECT ?, tenant_id, ? FROM projects WHERE id = ?",
            deployment.id,
            float(deployment.created_at),
            deployment.project_id,
        )
        await self.db.run(
            "DELETE FROM deployments_made WHERE tenant_id = "
            "(SELECT tenant_id FROM projects WHERE id = ?) AND created_at < ?",
            deployment.project_id,
            float(deployment.created_at) - MADE_KEPT_SECONDS,
        )

    async def set_status(
        self, deployment_id: str, status: str, updated_at: float, live_at: float | None
    ) -> int:
        return await self.db.run(
            "UPDATE deployments SET status = ?, updated_at = ?, live_at = ? WHERE id = ?",
            status,
            float(updated_at),
            None if live_at is None else float(live_at),
            deployment_id,
        )

    async def set_previous(self, deployment_id: str, previous_id: str) -> None:
        await self.db.run(
            "UPDATE deployments SET previous_id = ? WHERE id = ?", previous_id, deployment_id
        )
