"""The backups area's records and SQL: backups, restores, the backup schedule, and what a
snapshot of a project's data takes."""

from __future__ import annotations

from dataclasses import dataclass

from ...secretbox import OVERHEAD
from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class Backup:
    id: str
    project_id: str
    status: str
    trigger: str
    size_bytes: int
    created_at: float
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class Restore:
    id: str
    backup_id: str
    project_id: str
    status: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class BackupConfig:
    project_id: str
    schedule: str
    retention_days: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a project's data holds: the bytes of its environment variables' keys and values
    (in plaintext) and of its log lines' messages, and how many services, deployments and
    domains it has."""

    env_bytes: int
    log_bytes: int
    services: int
    deployments: int
    domains: int


_BACKUP = (
    "SELECT id, project_id, status, trigger, size_bytes, created_at, completed_at FROM backups"
)
_RESTORE = "SELECT id, backup_id, project_id, status, created_at, updated_at FROM restores"
_UNFINISHED = "status != 'completed' ORDER BY created_at, id"


def _backup(row: Row) -> Backup:
    return Backup(
        row["id"],
        row["project_id"],
        row["status"],
        row["trigger"],
        int(row["size_bytes"]),
        row["created_at"],
        row["completed_at"],
    )


def _restore(row: Row) -> Restore:
    return Restore(
        row["id"],
        row["backup_id"],
        row["project_id"],
        row["status"],
        row["created_at"],
        row["updated_at"],
    )


class BackupsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- backups ---------------------------------------------------------------------------

    async def backups(self, project_id: str) -> list[Backup]:
        """The project's backups, newest first."""
        rows = await self.db.all(
            f"{_BACKUP} WHERE project_id = ? ORDER BY created_at DESC, id DESC", project_id
        )
        return [_backup(row) for row in rows]

    async def backup(self, project_id: str, backup_id: str) -> Backup | None:
        row = await self.db.one(f"{_BACKUP} WHERE project_id = ? AND id = ?", project_id, backup_id)
        return None if row is None else _backup(row)

    async def add(self, backup: Backup) -> None:
        await self.db.run(
            "INSERT INTO backups (id, project_id, status, trigger, size_bytes, created_at, "
            "completed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            backup.id,
            backup.project_id,
            backup.status,
            backup.trigger,
            int(backup.size_bytes),
            float(backup.created_at),
            None if backup.completed_at is None else float(backup.completed_at),
        )

    async def delete(self, backup_id: str) -> None:
        await self.db.run("DELETE FROM backups WHERE id = ?", backup_id)

    async def footprint(self, project_id: str) -> Footprint:
        """What a snapshot of the project's data would hold (see `Footprint`)."""
        dialect = self.db.dialect
        key, value, message = (_octets(dialect, c) for c in ("key", "value", "message"))
        row = await self.db.one(
            "SELECT "
            # A value is stored sealed: its plaintext is OVERHEAD bytes shorter.
            f"(SELECT COALESCE(SUM({key} + {value} - {OVERHEAD}), 0) "
            "FROM env_vars WHERE project_id = ?) AS env_bytes, "
            f"(SELECT COALESCE(SUM({message}), 0) "
            "FROM log_lines WHERE project_id = ?) AS log_bytes, "
            "(SELECT count(*) FROM services WHERE project_id = ?) AS services, "
            "(SELECT count(*) FROM deployments WHERE project_id = ?) AS deployments, "
            "(SELECT count(*) FROM domains WHERE project_id = ?) AS domains",
            *[project_id] * 5,
        )
        assert row is not None
        return Footprint(
            int(row["env_bytes"]),
            int(row["log_bytes"]),
            int(row["services"]),
            int(row["deployments"]),
            int(row["domains"]),
        )

    # --- restores --------------------------------------------------------------------------

    async def restore(self, project_id: str, restore_id: str) -> Restore | None:
        row = await self.db.one(
            f"{_RESTORE} WHERE project_id = ? AND id = ?", project_id, restore_id
        )
        return None if row is None else _restore(row)

    async def unfinished_restores(self, project_id: str) -> list[Restore]:
        """The project's restores that have not completed, oldest first."""
        rows = await self.db.all(f"{_RESTORE} WHERE project_id = ? AND {_UNFINISHED}", project_id)
        return [_restore(row) for row in rows]

    async def unfinished_restore_of(self, backup_id: str) -> Restore | None:
        """A restore of the backup that has not completed, if any."""
        row = await self.db.one(f"{_RESTORE} WHERE backup_id = ? AND {_UNFINISHED}", backup_id)
        return None if row is None else _restore(row)

    async def add_restore(self, restore: Restore) -> None:
        await self.db.run(
            "INSERT INTO restores (id, backup_id, project_id, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            restore.id,
            restore.backup_id,
            restore.project_id,
            restore.status,
            float(restore.created_at),
            float(restore.updated_at),
        )

    async def set_restore_status(self, restore_id: str, status: str, since: float) -> None:
        await self.db.run(
            "UPDATE restores SET status = ?, updated_at = ? WHERE id = ?",
            status,
            float(since),
            restore_id,
        )

    # --- the schedule ----------------------------------------------------------------------

    async def config(self, project_id: str) -> BackupConfig | None:
        row = await self.db.one(
            "SELECT project_id, schedule, retention_days, updated_at FROM backup_configs "
            "WHERE project_id = ?",
            project_id,
        )
        if row is None:
            return None
        return BackupConfig(
            row["project_id"], row["schedule"], int(row["retention_days"]), row["updated_at"]
        )

    async def put_config(self, config: BackupConfig) -> None:
        await self.db.run(
            "INSERT INTO backup_configs (project_id, schedule, retention_days, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET "
            "schedule = excluded.schedule, retention_days = excluded.retention_days, "
            "updated_at = excluded.updated_at",
            config.project_id,
            config.schedule,
            int(config.retention_days),
            float(config.updated_at),
        )

    async def delete_config(self, project_id: str) -> bool:
        """Whether there was a configuration to delete."""
        gone = await self.db.run("DELETE FROM backup_configs WHERE project_id = ?", project_id)
        return gone > 0


def _octets(dialect: str, column: str) -> str:
    """The SQL for the size in bytes of a column's value.  SQLite 3.40 has no octet_length:
    there the length of the value as a BLOB is its bytes."""
    if dialect == "sqlite":
        return f"length(CAST({column} AS BLOB))"
    return f"octet_length({column})"
