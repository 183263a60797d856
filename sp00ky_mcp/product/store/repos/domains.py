"""Custom domains of projects: one hostname is attached to at most one project on the whole
platform."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row
from .projects import Project


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    project_id: str
    hostname: str
    status: str
    verification_token: str
    created_at: float
    verified_at: float | None


@dataclass(frozen=True, slots=True)
class Holder:
    """The project a hostname is attached to."""

    project_id: str
    tenant_id: str
    name: str


def _domain(row: Row) -> Domain:
    verified = row["verified_at"]
    return Domain(
        row["id"],
        row["project_id"],
        row["hostname"],
        row["status"],
        row["verification_token"],
        float(row["created_at"]),
        None if verified is None else float(verified),
    )


def _project(row: Row) -> Project:
    return Project(
        row["project_id"],
        row["tenant_id"],
        row["name"],
        row["region"],
        float(row["project_created"]),
    )


_COLUMNS = "d.id, d.project_id, d.hostname, d.status, d.verification_token, d.created_at, "
_COLUMNS += "d.verified_at"


class DomainsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def of_project(self, project_id: str) -> list[Domain]:
        """The project's domains, by hostname."""
        rows = await self.db.all(
            f"SELECT {_COLUMNS} FROM domains d WHERE d.project_id = ? ORDER BY d.hostname",
            project_id,
        )
        return [_domain(r) for r in rows]

    async def of_tenant(self, tenant_id: str) -> list[tuple[Domain, Project]]:
        """The domains of every project of the tenant, each with its project, by hostname."""
        rows = await self.db.all(
            f"SELECT {_COLUMNS}, p.tenant_id, p.name, p.region, p.created_at AS project_created "
            "FROM domains d JOIN projects p ON p.id = d.project_id "
            "WHERE p.tenant_id = ? ORDER BY d.hostname",
            tenant_id,
        )
        return [(_domain(r), _project(r)) for r in rows]

    async def by_hostname(self, hostname: str) -> Domain | None:
        row = await self.db.one(f"SELECT {_COLUMNS} FROM domains d WHERE d.hostname = ?", hostname)
        return None if row is None else _domain(row)

    async def of_project_by_hostname(self, project_id: str, hostname: str) -> Domain | None:
        row = await self.db.one(
            f"SELECT {_COLUMNS} FROM domains d WHERE d.project_id = ? AND d.hostname = ?",
            project_id,
            hostname,
        )
        return None if row is None else _domain(row)

    async def holder(self, hostname: str) -> Holder | None:
        """The project (of any tenant) the hostname is attached to, if any."""
        row = await self.db.one(
            "SELECT p.id, p.tenant_id, p.name FROM domains d JOIN projects p "
            "ON p.id = d.project_id WHERE d.hostname = ?",
            hostname,
        )
        return None if row is None else Holder(row["id"], row["tenant_id"], row["name"])

    async def hostnames(self) -> list[str]:
        """Every attached hostname on the platform, in order."""
        rows = await self.db.all("SELECT hostname FROM domains ORDER BY hostname")
        return [r["hostname"] for r in rows]

    async def mark_verified(self, hostname: str, at: float) -> int:
        """What the hosted platform does once the challenge record checks out."""
        return await self.db.run(
            "UPDATE domains SET status = 'verified', verified_at = ? WHERE hostname = ?",
            float(at),
            hostname,
        )

    async def add(self, domain: Domain) -> None:
        await self.db.run(
            "INSERT INTO domains (id, project_id, hostname, status, verification_token, "
            "created_at, verified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            domain.id,
            domain.project_id,
            domain.hostname,
            domain.status,
            domain.verification_token,
            float(domain.created_at),
            None if domain.verified_at is None else float(domain.verified_at),
        )

    async def remove(self, domain_id: str) -> int:
        return await self.db.run("DELETE FROM domains WHERE id = ?", domain_id)

    async def count(self, project_id: str) -> int:
        row = await self.db.one(
            "SELECT count(*) AS n FROM domains WHERE project_id = ?", project_id
        )
        return 0 if row is None else int(row["n"])
