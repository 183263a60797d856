"""What tests and operators' checks ask of a whole store: row counts, a snapshot of every
table, a project's log, and tenants and projects seeded directly."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ...secretbox import ENV_VALUE, SecretBox
from ..port import Db, Row


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

    async def dump(self) -> Dump:
        """Every row of every table of the data, to `load` back later (tests copy a world
        built once into each test's store this way)."""
        return {
            table: [{k: _plain(v) for k, v in dict(row).items()} for row in await self._rows(table)]
            for table in TABLES
        }

    async def _rows(self, table: str) -> list[Row]:
        return await self.db.all(f"SELECT * FROM {table}")

    async def load(self, dump: Dump) -> None:
        """Replaces every row of the data with those of `dump` (inside a transaction)."""
        for table in reversed(TABLES):
            await self.db.run(f"DELETE FROM {table}")
        for table in TABLES:
            await self._insert(table, dump.get(table, []))
        for table, column in SELF_REFERENCES.items():
            for row in dump.get(table, []):
                if row.get(column) is not None:
                    await self.db.run(
                        f"UPDATE {table} SET {column} = ? WHERE id = ?", row[column], row["id"]
                    )
        if self.db.dialect == "postgres":
            for table in NUMBERED:
                await self.db.one(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false) AS n"
                )

    async def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        column = SELF_REFERENCES.get(table)
        names = list(rows[0])
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        await self.db.many(sql, [[None if k == column else row[k] for k in names] for row in rows])

    async def set_role(self, tenant_id: str, user_id: str, role: str | None) -> None:
        """Changes a member's role, or (None) removes them, as the dashboard does."""
        if role is None:
            await self.db.run(
                "DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?", tenant_id, user_id
            )
            return
        await self.db.run(
            "UPDATE memberships SET role = ? WHERE tenant_id = ? AND user_id = ?",
            role,
            tenant_id,
            user_id,
        )

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


# Every table of the data, parents before children: the order rows are loaded in.
TABLES = (
    "users",
    "tenants",
    "memberships",
    "tokens",
    "audit_log",
    "projects",
    "services",
    "builds",
    "deployments",
    "log_lines",
    "env_vars",
    "vaults",
    "backups",
    "restores",
    "backup_configs",
    "domains",
    "repo_links",
    "link_runs",
    "invitations",
    "billing_sessions",
    "idempotency",
    "billing_events",
)
# Columns that refer to rows of their own table: loaded once every row is in.
SELF_REFERENCES = {"deployments": "previous_id"}
# Columns whose values a backend numbers itself.
NUMBERED = ("audit_log", "log_lines")
Dump = dict[str, list[dict[str, Any]]]


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
