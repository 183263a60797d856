"""Backups of a project, their restores, and the backup schedule.

In the embedded store a backup completes at once; its size is that of the project's data
(`BASE_BYTES` of metadata, plus env keys and values, log lines, and a fixed amount per service,
deployment and domain).  A restore advances with the clock: `pending` for its first
`PENDING_SECONDS`, `restoring` until `COMPLETED_AFTER` seconds after it was requested, then
`completed`; the advanced status is written back (with a log line per transition) whenever it
is read.  No scheduler runs in the embedded store: the schedule and retention are recorded and
reported, and take effect on the hosted platform.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from ..store.repos import Repos
from ..store.repos.backups import Backup, BackupConfig, Restore
from ..store.repos.projects import Project
from .base import Cloud, Conflict, Invalid, NotFound, ascii_digits, iso, iso_or_none

BASE_BYTES = 16 * 1024
SERVICE_BYTES = 256
DEPLOYMENT_BYTES = 512
DOMAIN_BYTES = 256
PENDING_SECONDS = 5.0
COMPLETED_AFTER = 35.0
NAMED_SCHEDULES = ("hourly", "daily", "weekly")
DEFAULT_SCHEDULE = "daily"
DEFAULT_RETENTION_DAYS = 7
RESTORE_STATES = ("pending", "restoring", "completed")


# --- backups ------------------------------------------------------------------------------


def backup_view(project: Project, backup: Backup) -> dict[str, Any]:
    return {
        "backup_id": backup.id,
        "project": project.name,
        "status": backup.status,
        "trigger": backup.trigger,
        "size_bytes": backup.size_bytes,
        "created_at": iso(backup.created_at),
        "completed_at": iso_or_none(backup.completed_at),
    }


async def list_backups(cloud: Cloud, project: Project) -> list[dict[str, Any]]:
    """Newest first."""
    return [backup_view(project, b) for b in await cloud.reads.backups.backups(project.id)]


async def backup(cloud: Cloud, project: Project, backup_id: str, tx: Repos | None = None) -> Backup:
    """A backup of the project (read through `tx` inside a write), or NotFound."""
    found = await (tx or cloud.reads).backups.backup(project.id, backup_id)
    if found is None:
        raise NotFound(
            f"No backup '{backup_id}' of project '{project.name}'; list_backups shows its backups."
        )
    return found


async def project_size(tx: Repos, project_id: str) -> int:
    """The bytes a snapshot of the project's data takes."""
    held = await tx.backups.footprint(project_id)
    return (
        BASE_BYTES
        + held.env_bytes
        + held.log_bytes
        + held.services * SERVICE_BYTES
        + held.deployments * DEPLOYMENT_BYTES
        + held.domains * DOMAIN_BYTES
    )


async def create_backup(cloud: Cloud, project: Project, backup_id: str) -> dict[str, Any]:
    now = cloud.clock()
    async with cloud.transaction() as tx:
        size = await project_size(tx, project.id)
        await cloud.log(tx, project.id, None, "info", f"Backup {backup_id} started.")
        made = Backup(backup_id, project.id, "completed", "manual", size, now, now)
        await tx.backups.add(made)
        await cloud.log(
            tx, project.id, None, "info", f"Backup {backup_id} completed ({size} bytes)."
        )
    return backup_view(project, made)


async def delete_backup(cloud: Cloud, project: Project, backup_id: str) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        await _advance_restores(cloud, tx, project.id)
        await backup(cloud, project, backup_id, tx)
        busy = await tx.backups.unfinished_restore_of(backup_id)
        if busy is not None:
            raise Conflict(
                f"Backup '{backup_id}' is being restored by {busy.id}; delete it "
                "after get_restore_status reports completed."
            )
        await tx.backups.delete(backup_id)
        await cloud.log(tx, project.id, None, "info", f"Backup {backup_id} deleted.")
    return {"backup_id": backup_id, "project": project.name, "deleted": True}


# --- restores -----------------------------------------------------------------------------


def restore_view(project: Project, restore: Restore) -> dict[str, Any]:
    return {
        "restore_id": restore.id,
        "backup_id": restore.backup_id,
        "project": project.name,
        "status": restore.status,
        "created_at": iso(restore.created_at),
        "updated_at": iso(restore.updated_at),
        "completes_at": iso(restore.created_at + COMPLETED_AFTER),
    }


def _due(created_at: float, now: float) -> tuple[str, float]:
    """The status a restore requested at `created_at` has at `now`, and since when."""
    elapsed = now - created_at
    if elapsed >= COMPLETED_AFTER:
        return "completed", created_at + COMPLETED_AFTER
    if elapsed >= PENDING_SECONDS:
        return "restoring", created_at + PENDING_SECONDS
    return "pending", created_at


async def _advance(cloud: Cloud, tx: Repos, restore: Restore) -> Restore:
    """Moves a restore forward to where the clock says it is (never back), logging each
    step; the restore as it is now."""
    due, since = _due(restore.created_at, cloud.clock())
    current = RESTORE_STATES.index(restore.status)
    target = RESTORE_STATES.index(due)
    if target <= current:
        return restore
    for state in RESTORE_STATES[current + 1 : target + 1]:
        message = (
            f"Restore {restore.id} is restoring backup {restore.backup_id}."
            if state == "restoring"
            else f"Restore {restore.id} completed; the project was restored from backup "
            f"{restore.backup_id}."
        )
        await cloud.log(tx, restore.project_id, None, "info", message)
    await tx.backups.set_restore_status(restore.id, due, since)
    return replace(restore, status=due, updated_at=since)


async def _advance_restores(cloud: Cloud, tx: Repos, project_id: str) -> None:
    for restore in await tx.backups.unfinished_restores(project_id):
        await _advance(cloud, tx, restore)


async def restore_status(cloud: Cloud, project: Project, restore_id: str) -> dict[str, Any]:
    async with cloud.transaction(upkeep=True) as tx:
        found = await tx.backups.restore(project.id, restore_id)
        if found is None:
            raise NotFound(
                f"No restore '{restore_id}' of project '{project.name}'; "
                "restore_backup returns the restore_id to pass."
            )
        now = await _advance(cloud, tx, found)
    return restore_view(project, now)


async def check_restorable(cloud: Cloud, project: Project, backup_id: str) -> Backup:
    """The backup to restore, or the reason it cannot be restored now."""
    found = await backup(cloud, project, backup_id)
    if found.status != "completed":
        raise Conflict(
            f"Backup '{backup_id}' is {found.status}, not completed; restore a "
            "completed backup from list_backups."
        )
    async with cloud.transaction(upkeep=True) as tx:
        await _advance_restores(cloud, tx, project.id)
        await _no_restore_running(tx, project)
    return found


async def _no_restore_running(tx: Repos, project: Project) -> None:
    running = await tx.backups.unfinished_restores(project.id)
    if running:
        raise Conflict(
            f"Restore {running[0].id} of project '{project.name}' is still in "
            "progress; wait until get_restore_status reports completed."
        )


async def start_restore(
    cloud: Cloud, project: Project, backup_id: str, restore_id: str
) -> dict[str, Any]:
    now = cloud.clock()
    async with cloud.transaction() as tx:
        await _advance_restores(cloud, tx, project.id)
        await _no_restore_running(tx, project)
        await backup(cloud, project, backup_id, tx)
        started = Restore(restore_id, backup_id, project.id, "pending", now, now)
        await tx.backups.add_restore(started)
        await cloud.log(
            tx,
            project.id,
            None,
            "warning",
            f"Restore {restore_id} of backup {backup_id} requested; the project's data "
            "will be replaced.",
        )
    return restore_view(project, started)


# --- configuration ------------------------------------------------------------------------

_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ATOM = re.compile(r"[0-9]{1,2}|[A-Za-z]{3}")


def normalize_schedule(schedule: str) -> str:
    """hourly, daily, weekly (any case), or a valid 5-field cron expression (single-spaced)."""
    text = schedule.strip()
    if text.lower() in NAMED_SCHEDULES:
        return text.lower()
    fields = text.split()
    if len(fields) != 5:
        raise Invalid(
            f"The schedule '{text}' must be hourly, daily, weekly or a cron "
            "expression of 5 fields (minute hour day-of-month month day-of-week); "
            f"it has {len(fields)} field{'s' if len(fields) != 1 else ''}."
        )
    for number, (field, spec) in enumerate(zip(fields, _CRON_FIELDS, strict=True), start=1):
        name, low, high, names = spec
        if not all(_cron_part(part, low, high, names) for part in field.split(",")):
            named = f" or {names[0].upper()}-{names[-1].upper()}" if names else ""
            raise Invalid(
                f"Field {number} ({name}) of the cron schedule '{text}' is not valid: "
                f"use *, a value from {low} to {high}{named}, a range a-b, a step /n, "
                "or a comma-separated list of these."
            )
    return " ".join(fields)


def _cron_value(atom: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if not _ATOM.fullmatch(atom):
        return None
    if atom.isdigit():
        value = int(atom)
    elif atom.lower() in names:
        value = names.index(atom.lower()) + (1 if low == 1 else 0)
    else:
        return None
    return value if low <= value <= high else None


def _cron_part(part: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    base, slash, step = part.partition("/")
    if slash and not (ascii_digits(step) and 1 <= int(step) <= high):
        return False
    if base == "*":
        return True
    first, dash, last = base.partition("-")
    start = _cron_value(first, low, high, names)
    if start is None:
        return False
    if not dash:
        return True
    end = _cron_value(last, low, high, names)
    return end is not None and start <= end


def config_view(project: Project, config: BackupConfig | None) -> dict[str, Any]:
    if config is None:
        return {
            "project": project.name,
            "schedule": DEFAULT_SCHEDULE,
            "retention_days": DEFAULT_RETENTION_DAYS,
            "is_default": True,
            "updated_at": None,
        }
    return {
        "project": project.name,
        "schedule": config.schedule,
        "retention_days": config.retention_days,
        "is_default": False,
        "updated_at": iso(config.updated_at),
    }


async def configure(
    cloud: Cloud, project: Project, schedule: str | None, retention_days: int | None
) -> dict[str, Any]:
    if schedule is None and retention_days is None:
        raise Invalid("Pass schedule, retention_days or both to change the backup configuration.")
    normalized = normalize_schedule(schedule) if schedule is not None else None
    now = cloud.clock()
    async with cloud.transaction() as tx:
        old = config_view(project, await tx.backups.config(project.id))
        new = BackupConfig(
            project.id,
            normalized if normalized is not None else old["schedule"],
            retention_days if retention_days is not None else old["retention_days"],
            now,
        )
        await tx.backups.put_config(new)
        await cloud.log(
            tx,
            project.id,
            None,
            "info",
            f"Backup schedule set to '{new.schedule}', keeping backups "
            f"{new.retention_days} day{'s' if new.retention_days != 1 else ''}.",
        )
    return config_view(project, new)


async def reset_config(cloud: Cloud, project: Project) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        if await tx.backups.delete_config(project.id):
            await cloud.log(
                tx,
                project.id,
                None,
                "info",
                f"Backup configuration reset to '{DEFAULT_SCHEDULE}', keeping backups "
                f"{DEFAULT_RETENTION_DAYS} days.",
            )
    return config_view(project, None)
