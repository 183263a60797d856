"""Tools of the 'backups' area: backups, restores, and the backup schedule."""

from __future__ import annotations

from typing import Any

from ..cloud import backups
from ..cloud.base import iso, new_id
from .base import ADMIN, CURSOR, PROJECT, TIME, Call, Spec, limit, list_of, nullable, obj, text

BACKUP_ID = text(64, "A backup's id, from list_backups or create_backup.")
RESTORE_ID = text(64, "The restore_id that restore_backup returned.")
BACKUP = obj(
    {
        "backup_id": {"type": "string"},
        "project": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "running", "completed", "failed"]},
        "trigger": {"type": "string", "enum": ["manual", "scheduled"]},
        "size_bytes": {"type": "integer"},
        "created_at": TIME,
        "completed_at": nullable(TIME),
    }
)
RESTORE = obj(
    {
        "restore_id": {"type": "string"},
        "backup_id": {"type": "string"},
        "project": {"type": "string"},
        "status": {"type": "string", "enum": list(backups.RESTORE_STATES)},
        "created_at": TIME,
        "updated_at": {"type": "string", "description": "When the current status began (UTC)."},
        "completes_at": {
            "type": "string",
            "description": "When the restore is expected to complete (UTC).",
        },
    }
)
CONFIG = obj(
    {
        "project": {"type": "string"},
        "schedule": {
            "type": "string",
            "description": "hourly, daily, weekly, or a 5-field cron expression (UTC).",
        },
        "retention_days": {"type": "integer", "minimum": 1, "maximum": 365},
        "is_default": {"type": "boolean"},
        "updated_at": nullable(TIME),
    }
)
TIMING = (
    f"A restore is pending for {backups.PENDING_SECONDS:g} seconds, then restoring, and "
    f"completed {backups.COMPLETED_AFTER:g} seconds after it was requested."
)


async def list_backups(call: Call) -> dict[str, Any]:
    return call.page(await backups.list_backups(call.cloud, await call.project()), 50)


LIST_BACKUPS = Spec(
    name="list_backups",
    scope="backups:read",
    title="List backups",
    description="Use this to see a project's backups, newest first, with their status, "
    "size and time; a backup_id from here is what restore_backup and "
    "delete_backup take.",
    arguments={"project": PROJECT, "cursor": CURSOR, "limit": limit(50, 200)},
    required=("project",),
    output=list_of(BACKUP),
    handler=list_backups,
    read_only=True,
    idempotent=True,
)


async def get_restore_status(call: Call) -> dict[str, Any]:
    project = await call.project()
    return await backups.restore_status(call.cloud, project, call.args["restore_id"])


GET_RESTORE_STATUS = Spec(
    name="get_restore_status",
    scope="backups:read",
    title="Get restore status",
    description="Use this after restore_backup to follow a restore through pending, "
    f"restoring and completed. {TIMING}",
    arguments={"project": PROJECT, "restore_id": RESTORE_ID},
    required=("project", "restore_id"),
    output=RESTORE,
    handler=get_restore_status,
    read_only=True,
    idempotent=True,
)


async def create_backup(call: Call) -> dict[str, Any]:
    project = await call.project()
    backup_id = new_id("bkp")
    progress = call.ctx.progress
    await progress(0, 3, f"Snapshotting project '{project.name}'")
    await progress(1, 3, f"Writing backup {backup_id}")
    result = await backups.create_backup(call.cloud, project, backup_id)
    await progress(2, 3, f"Verifying backup {backup_id} ({result['size_bytes']} bytes)")
    await progress(3, 3, f"Backup {backup_id} completed")
    return result


CREATE_BACKUP = Spec(
    name="create_backup",
    scope="backups:write",
    title="Create a backup",
    description="Use this to take a backup of a project now (for example before a risky "
    "change). Reports progress and returns the backup with its backup_id; "
    "any member of the tenant may create one.",
    arguments={"project": PROJECT},
    required=("project",),
    output=BACKUP,
    handler=create_backup,
)


async def restore_backup(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "restore backups")
    backup_id = call.args["backup_id"]
    await call.ctx.progress(0, 2, f"Checking backup {backup_id}")
    chosen = await backups.check_restorable(call.cloud, project, backup_id)
    await call.confirm(
        f"restore project '{project.name}' from backup {backup_id} (taken "
        f"{iso(chosen.created_at)}), replacing its current data"
    )
    restore_id = new_id("rst")
    result = await backups.start_restore(call.cloud, project, backup_id, restore_id)
    await call.ctx.progress(1, 2, f"Restore {restore_id} queued")
    await call.ctx.progress(
        2, 2, f"Restore {restore_id} is {result['status']}; get_restore_status follows it"
    )
    return result


RESTORE_BACKUP = Spec(
    name="restore_backup",
    scope="backups:write",
    title="Restore a backup",
    description="Use this to replace a project's current data with a backup from "
    "list_backups (asks the user to confirm when the client supports it). "
    "Returns a restore_id to follow with get_restore_status; only one "
    f"restore per project runs at a time. {TIMING} {ADMIN}",
    arguments={"project": PROJECT, "backup_id": BACKUP_ID},
    required=("project", "backup_id"),
    output=RESTORE,
    handler=restore_backup,
    destructive=True,
)


async def delete_backup(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "delete backups")
    backup_id = call.args["backup_id"]
    chosen = await backups.backup(call.cloud, project, backup_id)
    await call.confirm(
        f"delete backup {backup_id} of project '{project.name}' (taken "
        f"{iso(chosen.created_at)}, {chosen.size_bytes} bytes)"
    )
    return await backups.delete_backup(call.cloud, project, backup_id)


DELETE_BACKUP = Spec(
    name="delete_backup",
    scope="backups:write",
    title="Delete a backup",
    description="Use this to delete a backup for good (asks the user to confirm when "
    "the client supports it); a backup that is being restored cannot be "
    f"deleted until the restore completes. {ADMIN}",
    arguments={"project": PROJECT, "backup_id": BACKUP_ID},
    required=("project", "backup_id"),
    output=obj(
        {
            "backup_id": {"type": "string"},
            "project": {"type": "string"},
            "deleted": {"type": "boolean"},
        }
    ),
    handler=delete_backup,
    destructive=True,
    idempotent=True,
)


async def configure_backups(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "change backup settings")
    retention = call.args.get("retention_days")
    return await backups.configure(
        call.cloud,
        project,
        call.args.get("schedule"),
        None if retention is None else int(retention),
    )


CONFIGURE_BACKUPS = Spec(
    name="configure_backups",
    scope="backups:write",
    title="Configure backups",
    description="Use this to change when a project is backed up and how long backups "
    "are kept: schedule is hourly, daily, weekly or a 5-field cron "
    "expression in UTC; retention_days is 1 to 365. Pass either or both; "
    "the other keeps its value (defaults: daily, 7 days). Returns the "
    f"configuration in force. {ADMIN}",
    arguments={
        "project": PROJECT,
        "schedule": text(100, "hourly, daily, weekly, or a cron expression such as '30 2 * * *'."),
        "retention_days": {
            "type": "integer",
            "minimum": 1,
            "maximum": 365,
            "description": "Days to keep each backup (1 to 365).",
        },
    },
    required=("project",),
    output=CONFIG,
    handler=configure_backups,
    idempotent=True,
)


async def reset_backup_config(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "change backup settings")
    await call.confirm(
        f"reset the backup configuration of project '{project.name}' to "
        f"{backups.DEFAULT_SCHEDULE} backups kept "
        f"{backups.DEFAULT_RETENTION_DAYS} days"
    )
    return await backups.reset_config(call.cloud, project)


RESET_BACKUP_CONFIG = Spec(
    name="reset_backup_config",
    scope="backups:write",
    title="Reset the backup configuration",
    description="Use this to return a project's backup schedule and retention to the "
    f"defaults (daily, kept {backups.DEFAULT_RETENTION_DAYS} days), "
    "discarding its custom settings (asks the user to confirm when the "
    f"client supports it). {ADMIN}",
    arguments={"project": PROJECT},
    required=("project",),
    output=CONFIG,
    handler=reset_backup_config,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        LIST_BACKUPS,
        GET_RESTORE_STATUS,
        CREATE_BACKUP,
        RESTORE_BACKUP,
        DELETE_BACKUP,
        CONFIGURE_BACKUPS,
        RESET_BACKUP_CONFIG,
    )
