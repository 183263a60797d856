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
import sqlite3
from typing import Any

from .. import secretbox
from .base import Cloud, Conflict, Invalid, ascii_digits, iso, iso_or_none

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


def backup_view(project: sqlite3.Row, row: sqlite3.Row) -> dict[str, Any]:
    return {
        "backup_id": row["id"],
        "project": project["name"],
        "status": row["status"],
        "trigger": row["trigger"],
        "size_bytes": row["size_bytes"],
        "created_at": iso(row["created_at"]),
        "completed_at": iso_or_none(row["completed_at"]),
    }


def list_backups(cloud: Cloud, project: sqlite3.Row) -> list[dict[str, Any]]:
    """Newest first."""
    rows = cloud.store.all(
        "SELECT * FROM backups WHERE project_id = ? ORDER BY created_at DESC, rowid DESC",
        (project["id"],),
    )
    return [backup_view(project, row) for row in rows]


def backup(cloud: Cloud, project: sqlite3.Row, backup_id: str) -> sqlite3.Row:
    return cloud.child(
        "backups",
        project,
        "id",
        backup_id,
        f"No backup '{backup_id}' of project '{project['name']}'; list_backups shows its backups.",
    )


def project_size(cloud: Cloud, project_id: str) -> int:
    """The bytes a snapshot of the project's data takes."""
    env = _bytes(
        cloud,
        # A value is stored sealed: its plaintext is OVERHEAD bytes shorter.
        f"LENGTH(CAST(key AS BLOB)) + LENGTH(value) - {secretbox.OVERHEAD}",
        "env_vars",
        project_id,
    )
    logs = _bytes(cloud, "LENGTH(CAST(message AS BLOB))", "log_lines", project_id)
    return (
        BASE_BYTES
        + env
        + logs
        + cloud.count("services", project_id) * SERVICE_BYTES
        + cloud.count("deployments", project_id) * DEPLOYMENT_BYTES
        + cloud.count("domains", project_id) * DOMAIN_BYTES
    )


def _bytes(cloud: Cloud, size: str, table: str, project_id: str) -> int:
    """The sum of `size` over the project's rows of `table`."""
    row = cloud.store.one(
        f"SELECT COALESCE(SUM({size}), 0) FROM {table} WHERE project_id = ?", (project_id,)
    )
    return 0 if row is None else int(row[0])


def create_backup(cloud: Cloud, project: sqlite3.Row, backup_id: str) -> dict[str, Any]:
    now = cloud.clock()
    with cloud.transaction() as db:
        size = project_size(cloud, project["id"])
        cloud.log(db, project["id"], None, "info", f"Backup {backup_id} started.")
        db.execute(
            "INSERT INTO backups (id, project_id, status, trigger, size_bytes, "
            "created_at, completed_at) VALUES (?, ?, 'completed', 'manual', ?, ?, ?)",
            (backup_id, project["id"], size, now, now),
        )
        cloud.log(db, project["id"], None, "info", f"Backup {backup_id} completed ({size} bytes).")
    return backup_view(project, backup(cloud, project, backup_id))


def delete_backup(cloud: Cloud, project: sqlite3.Row, backup_id: str) -> dict[str, Any]:
    with cloud.transaction() as db:
        _advance_restores(cloud, db, project["id"])
        backup(cloud, project, backup_id)
        busy = db.execute(
            "SELECT id FROM restores WHERE backup_id = ? AND status != 'completed'", (backup_id,)
        ).fetchone()
        if busy is not None:
            raise Conflict(
                f"Backup '{backup_id}' is being restored by {busy['id']}; delete it "
                "after get_restore_status reports completed."
            )
        db.execute("DELETE FROM backups WHERE id = ?", (backup_id,))
        cloud.log(db, project["id"], None, "info", f"Backup {backup_id} deleted.")
    return {"backup_id": backup_id, "project": project["name"], "deleted": True}


# --- restores -----------------------------------------------------------------------------


def restore_view(project: sqlite3.Row, row: sqlite3.Row) -> dict[str, Any]:
    return {
        "restore_id": row["id"],
        "backup_id": row["backup_id"],
        "project": project["name"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "completes_at": iso(row["created_at"] + COMPLETED_AFTER),
    }


def _due(created_at: float, now: float) -> tuple[str, float]:
    """The status a restore requested at `created_at` has at `now`, and since when."""
    elapsed = now - created_at
    if elapsed >= COMPLETED_AFTER:
        return "completed", created_at + COMPLETED_AFTER
    if elapsed >= PENDING_SECONDS:
        return "restoring", created_at + PENDING_SECONDS
    return "pending", created_at


def _advance(cloud: Cloud, db: sqlite3.Connection, row: sqlite3.Row) -> None:
    """Moves a restore forward to where the clock says it is (never back), logging each step."""
    due, since = _due(row["created_at"], cloud.clock())
    current = RESTORE_STATES.index(row["status"])
    target = RESTORE_STATES.index(due)
    if target <= current:
        return
    for state in RESTORE_STATES[current + 1 : target + 1]:
        message = (
            f"Restore {row['id']} is restoring backup {row['backup_id']}."
            if state == "restoring"
            else f"Restore {row['id']} completed; the project was restored from backup "
            f"{row['backup_id']}."
        )
        cloud.log(db, row["project_id"], None, "info", message)
    db.execute(
        "UPDATE restores SET status = ?, updated_at = ? WHERE id = ?", (due, since, row["id"])
    )


def _advance_restores(cloud: Cloud, db: sqlite3.Connection, project_id: str) -> None:
    rows = db.execute(
        "SELECT * FROM restores WHERE project_id = ? AND status != 'completed'", (project_id,)
    ).fetchall()
    for row in rows:
        _advance(cloud, db, row)


def restore_status(cloud: Cloud, project: sqlite3.Row, restore_id: str) -> dict[str, Any]:
    missing = (
        f"No restore '{restore_id}' of project '{project['name']}'; "
        "restore_backup returns the restore_id to pass."
    )
    with cloud.transaction() as db:
        _advance(cloud, db, cloud.child("restores", project, "id", restore_id, missing))
    return restore_view(project, _restore(cloud, restore_id))


def _restore(cloud: Cloud, restore_id: str) -> sqlite3.Row:
    row = cloud.store.one("SELECT * FROM restores WHERE id = ?", (restore_id,))
    assert row is not None
    return row


def check_restorable(cloud: Cloud, project: sqlite3.Row, backup_id: str) -> sqlite3.Row:
    """The backup to restore, or the reason it cannot be restored now."""
    row = backup(cloud, project, backup_id)
    if row["status"] != "completed":
        raise Conflict(
            f"Backup '{backup_id}' is {row['status']}, not completed; restore a "
            "completed backup from list_backups."
        )
    with cloud.transaction() as db:
        _advance_restores(cloud, db, project["id"])
        _no_restore_running(db, project)
    return row


def _no_restore_running(db: sqlite3.Connection, project: sqlite3.Row) -> None:
    busy = db.execute(
        "SELECT id FROM restores WHERE project_id = ? AND status != 'completed'", (project["id"],)
    ).fetchone()
    if busy is not None:
        raise Conflict(
            f"Restore {busy['id']} of project '{project['name']}' is still in "
            "progress; wait until get_restore_status reports completed."
        )


def start_restore(
    cloud: Cloud, project: sqlite3.Row, backup_id: str, restore_id: str
) -> dict[str, Any]:
    now = cloud.clock()
    with cloud.transaction() as db:
        _advance_restores(cloud, db, project["id"])
        _no_restore_running(db, project)
        backup(cloud, project, backup_id)
        db.execute(
            "INSERT INTO restores (id, backup_id, project_id, status, created_at, "
            "updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
            (restore_id, backup_id, project["id"], now, now),
        )
        cloud.log(
            db,
            project["id"],
            None,
            "warning",
            f"Restore {restore_id} of backup {backup_id} requested; the project's data "
            "will be replaced.",
        )
    return restore_view(project, _restore(cloud, restore_id))


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


def config_view(project: sqlite3.Row, row: sqlite3.Row | None) -> dict[str, Any]:
    if row is None:
        return {
            "project": project["name"],
            "schedule": DEFAULT_SCHEDULE,
            "retention_days": DEFAULT_RETENTION_DAYS,
            "is_default": True,
            "updated_at": None,
        }
    return {
        "project": project["name"],
        "schedule": row["schedule"],
        "retention_days": row["retention_days"],
        "is_default": False,
        "updated_at": iso(row["updated_at"]),
    }


def _config(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    row = cloud.store.one("SELECT * FROM backup_configs WHERE project_id = ?", (project["id"],))
    return config_view(project, row)


def configure(
    cloud: Cloud, project: sqlite3.Row, schedule: str | None, retention_days: int | None
) -> dict[str, Any]:
    if schedule is None and retention_days is None:
        raise Invalid("Pass schedule, retention_days or both to change the backup configuration.")
    normalized = normalize_schedule(schedule) if schedule is not None else None
    now = cloud.clock()
    with cloud.transaction() as db:
        old = _config(cloud, project)
        new_schedule = normalized if normalized is not None else old["schedule"]
        new_retention = retention_days if retention_days is not None else old["retention_days"]
        db.execute(
            "INSERT INTO backup_configs (project_id, schedule, retention_days, "
            "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET "
            "schedule = excluded.schedule, retention_days = excluded.retention_days, "
            "updated_at = excluded.updated_at",
            (project["id"], new_schedule, new_retention, now),
        )
        cloud.log(
            db,
            project["id"],
            None,
            "info",
            f"Backup schedule set to '{new_schedule}', keeping backups "
            f"{new_retention} day{'s' if new_retention != 1 else ''}.",
        )
    return _config(cloud, project)


def reset_config(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    with cloud.transaction() as db:
        gone = db.execute(
            "DELETE FROM backup_configs WHERE project_id = ?", (project["id"],)
        ).rowcount
        if gone:
            cloud.log(
                db,
                project["id"],
                None,
                "info",
                f"Backup configuration reset to '{DEFAULT_SCHEDULE}', keeping backups "
                f"{DEFAULT_RETENTION_DAYS} days.",
            )
    return config_view(project, None)
