"""Projects and their services and builds."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    tenant_id: str
    name: str
    region: str
    created_at: float


def project_of(row: Row) -> Project:
    return Project(row["id"], row["tenant_id"], row["name"], row["region"], row["created_at"])


class ProjectsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def by_ref(self, tenant_id: str, ref: str) -> Project | None:
        """A project of the tenant by id or by name."""
        row = await self.db.one(
            "SELECT * FROM projects WHERE tenant_id = ? AND (id = ? OR name = ?)",
            tenant_id,
            ref,
            ref,
        )
        return None if row is None else project_of(row)

    async def service_names(self, project_id: str) -> list[str]:
        rows = await self.db.all(
            "SELECT name FROM services WHERE project_id = ? ORDER BY name", project_id
        )
        return [r["name"] for r in rows]
