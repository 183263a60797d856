"""Projects and their services and builds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    tenant_id: str
    name: str
    region: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    project_id: str
    name: str
    replicas: int
    status: str
    restarted_at: float | None


@dataclass(frozen=True, slots=True)
class Build:
    id: str
    project_id: str
    ref: str
    commit_sha: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Contents:
    """How many of each kind of thing a project holds (what destroying it removes)."""

    services: int
    builds: int
    deployments: int
    env_vars: int
    backups: int
    domains: int
    link_runs: int


def project_of(row: Row) -> Project:
    return Project(row["id"], row["tenant_id"], row["name"], row["region"], row["created_at"])


def _service(row: Row) -> Service:
    restarted = row["restarted_at"]
    return Service(
        row["id"],
        row["project_id"],
        row["name"],
        int(row["replicas"]),
        row["status"],
        None if restarted is None else float(restarted),
    )


def _build(row: Row) -> Build:
    return Build(
        row["id"], row["project_id"], row["ref"], row["commit_sha"], float(row["created_at"])
    )


_PROJECT = "SELECT id, tenant_id, name, region, created_at FROM projects"
_SERVICE = "SELECT id, project_id, name, replicas, status, restarted_at FROM services"
_BUILD = "SELECT id, project_id, ref, commit_sha, created_at FROM builds"
# Build ids are ordered by when they were made (see cloud/projects.py), which breaks ties
# between builds recorded within the same clock reading.
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


class ProjectsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- projects --------------------------------------------------------------------------

    async def by_ref(self, tenant_id: str, ref: str) -> Project | None:
        """A project of the tenant by id or by name."""
        row = await self.db.one(
            f"{_PROJECT} WHERE tenant_id = ? AND (id = ? OR name = ?)", tenant_id, ref, ref
        )
        return None if row is None else project_of(row)

    async def by_id(self, project_id: str) -> Project | None:
        row = await self.db.one(f"{_PROJECT} WHERE id = ?", project_id)
        return None if row is None else project_of(row)

    async def of_tenant(self, tenant_id: str) -> list[Project]:
        """The tenant's projects, sorted by name."""
        rows = await self.db.all(f"{_PROJECT} WHERE tenant_id = ? ORDER BY name", tenant_id)
        return [project_of(r) for r in rows]

    async def name_taken(self, tenant_id: str, name: str) -> bool:
        row = await self.db.one(
            "SELECT 1 AS found FROM projects WHERE tenant_id = ? AND name = ?", tenant_id, name
        )
        return row is not None

    async def add(self, project: Project) -> None:
        await self.db.run(
            "INSERT INTO projects (id, tenant_id, name, region, created_at) VALUES (?, ?, ?, ?, ?)",
            project.id,
            project.tenant_id,
            project.name,
            project.region,
            float(project.created_at),
        )

    async def delete(self, project_id: str, tenant_id: str) -> int:
        """Deletes the project (and, by cascade, everything under it); how many it deleted."""
        return await self.db.run(
            "DELETE FROM projects WHERE id = ? AND tenant_id = ?", project_id, tenant_id
        )

    async def contents(self, project_id: str) -> Contents:
        row = await self.db.one(
            "SELECT "
            "(SELECT count(*) FROM services WHERE project_id = ?) AS services, "
            "(SELECT count(*) FROM builds WHERE project_id = ?) AS builds, "
            "(SELECT count(*) FROM deployments WHERE project_id = ?) AS deployments, "
            "(SELECT count(*) FROM env_vars WHERE project_id = ?) AS env_vars, "
            "(SELECT count(*) FROM backups WHERE project_id = ?) AS backups, "
            "(SELECT count(*) FROM domains WHERE project_id = ?) AS domains, "
            "(SELECT count(*) FROM link_runs WHERE project_id = ?) AS link_runs",
            *[project_id] * 7,
        )
        assert row is not None
        return Contents(*(int(row[f.name]) for f in fields(Contents)))

    # --- services --------------------------------------------------------------------------

    async def service_names(self, project_id: str) -> list[str]:
        rows = await self.db.all(
            "SELECT name FROM services WHERE project_id = ? ORDER BY name", project_id
        )
        return [r["name"] for r in rows]

    async def running_service_names(self, project_id: str) -> list[str]:
        """The names of the project's services that are not stopped, sorted."""
        rows = await self.db.all(
            "SELECT name FROM services WHERE project_id = ? AND status != 'stopped' ORDER BY name",
            project_id,
        )
        return [r["name"] for r in rows]

    async def services(self, project_id: str) -> list[Service]:
        """The project's services, sorted by name."""
        rows = await self.db.all(f"{_SERVICE} WHERE project_id = ? ORDER BY name", project_id)
        return [_service(r) for r in rows]

    async def service(self, project_id: str, name: str) -> Service | None:
        row = await self.db.one(f"{_SERVICE} WHERE project_id = ? AND name = ?", project_id, name)
        return None if row is None else _service(row)

    async def add_services(self, project_id: str, services: Sequence[tuple[str, str]]) -> None:
        """Services of the project, stopped with one replica: (id, name) each."""
        await self.db.many(
            "INSERT INTO services (id, project_id, name) VALUES (?, ?, ?)",
            [(service_id, project_id, name) for service_id, name in services],
        )

    async def set_services_status(self, project_id: str, status: str) -> None:
        """Every service of the project running, or stopped."""
        await self.db.run("UPDATE services SET status = ? WHERE project_id = ?", status, project_id)

    async def mark_restarted(self, service_id: str, at: float) -> None:
        await self.db.run(
            "UPDATE services SET status = 'running', restarted_at = ? WHERE id = ?",
            float(at),
            service_id,
        )

    async def set_replicas(self, service_id: str, replicas: int) -> None:
        await self.db.run(
            "UPDATE services SET replicas = ? WHERE id = ?", int(replicas), service_id
        )

    # --- builds ----------------------------------------------------------------------------

    async def add_build(self, build: Build) -> None:
        await self.db.run(
            "INSERT INTO builds (id, project_id, ref, commit_sha, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            build.id,
            build.project_id,
            build.ref,
            build.commit_sha,
            float(build.created_at),
        )

    async def build(self, build_id: str) -> Build | None:
        row = await self.db.one(f"{_BUILD} WHERE id = ?", build_id)
        return None if row is None else _build(row)

    async def latest_build(self, project_id: str) -> Build | None:
        row = await self.db.one(
            f"{_BUILD} WHERE project_id = ? {_NEWEST_FIRST} LIMIT 1", project_id
        )
        return None if row is None else _build(row)
