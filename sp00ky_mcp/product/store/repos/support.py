"""What tests and operators' checks ask of a whole store: row counts, a snapshot of every
table, a project's log, and tenants and projects seeded directly."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ...secretbox import ENV_VALUE, SecretBox
from ..port import Db


class SupportRepo:
    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def tables(self) -> list[str]:
        if self.db.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        else:
            sql = (
                "SELECT table_name AS name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        return [str(r["name"]) for r in await self.db.all(sql)]

    async def count(self, table: str) -> int:
        if table not in await self.tables():
            raise ValueError(f"no table {table!r}")
        row = await self.db.one(f"SELECT count(*) AS n FROM {table}")
        assert row is not None
        return int(row["n"])

    async def snapshot(
        self, leave_out: Collection[str], columns_left_out: Mapping[str, str]
    ) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but `leave_out` (and the backend's own bookkeeping),
        sorted; without the column `columns_left_out[table]` of a table."""
        shot: dict[str, list[tuple[Any, ...]]] = {}
        for table in await self.tables():
            if table in leave_out or table in ("sqlite_sequence", "store_version"):
                continue
            rows = await self.db.all(f"SELECT * FROM {table}")
            dropped = columns_left_out.get(table)
            kept = [tuple(_plain(v) for k, v in dict(r).items() if k != dropped) for r in rows]
            shot[table] = sorted(kept, key=repr)
        return shot

    async def log_messages(self, project_id: str) -> list[str]:
        rows = await self.db.all(
            "SELECT message FROM log_lines WHERE project_id = ? ORDER BY id", project_id
        )
        return [str(r["message"]) for r in rows]

    async def all_log_messages(self) -> list[str]:
        """Every project's log lines' messages, oldest first."""
        rows = await self.db.all("SELECT message FROM log_lines ORDER BY id")
        return [str(r["message"]) for r in rows]

    async def all_env_values(self) -> dict[tuple[str, str], str]:
        """Every environment variable of every project: (project id, key) to its value."""
        rows = await self.db.all("SELECT project_id, key, value FROM env_vars")
        return {
            (r["project_id"], r["key"]): self.box.open(
                ENV_VALUE, (r["project_id"], r["key"]), r["value"]
            )
            for r in rows
        }

    async def add_project(
        self, project_id: str, tenant_id: str, name: str, region: str, now: float
    ) -> None:
        """A project with one service, web."""
        await self.db.run(
            "INSERT INTO projects (id, tenant_id, name, region, created_at) VALUES (?, ?, ?, ?, ?)",
            project_id,
            tenant_id,
            name,
            region,
            now,
        )
        await self.db.run(
            "INSERT INTO services (id, project_id, name) VALUES (?, ?, 'web')",
            f"svc_{project_id}",
            project_id,
        )

    async def add_team(
        self, tenant_id: str, name: str, plan: str, members: Sequence[tuple[str, str]], now: float
    ) -> None:
        """A team tenant with these (user id, role) members."""
        await self.db.run(
            "INSERT INTO tenants (id, name, kind, plan, created_at) VALUES (?, ?, 'team', ?, ?)",
            tenant_id,
            name,
            plan,
            now,
        )
        for user_id, role in members:
            await self.db.run(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) "
                "VALUES (?, ?, ?, ?)",
                tenant_id,
                user_id,
                role,
                now,
            )


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
