"""Deployments: a state machine kept as data, and the operations that drive it.

    queued -> building -> ready -> live -> superseded -> live (a rollback brings it back)
    queued, building, ready -> failed
    live -> rolled_back, torn_down

`TRANSITIONS` is the whole machine: every status change goes through `transition`, which
refuses a move the table does not list and writes one log line per service of the project.

Who may do what: any member of a tenant may deploy, finalize, roll back, restart and scale;
tearing a project down needs a team admin or owner.

A deployment moves through its stages in separate transactions, so that progress can be
reported between them and each stage is durable; a pipeline interrupted half-way (the client
went away, the server is stopping) marks its deployment failed, so nothing is left half-done.
One that was cut off without a chance to say so (the process was killed) is found when the
project's deployments are next read: a deployment still queued or building `STALE_SECONDS`
after its last change has no pipeline any more, and is marked failed then (with its run).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from ..store import migration
from .base import (
    Cloud,
    Conflict,
    Invalid,
    NotFound,
    Tenant,
    check_visible,
    iso,
    iso_or_none,
    new_id,
)
from .projects import latest_build, live_deployment, record_build, services

# The deployment that was live when this one went live: what a rollback returns to.
migration(
    10,
    "ALTER TABLE deployments ADD COLUMN previous_id TEXT "
    "REFERENCES deployments(id) ON DELETE SET NULL",
)

Progress = Callable[[float, float, str], Awaitable[None]]
# A pipeline takes milliseconds; one this long without progress was cut off.
STALE_SECONDS = 300.0


class Status(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    LIVE = "live"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"
    TORN_DOWN = "torn_down"


TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.BUILDING, Status.FAILED}),
    Status.BUILDING: frozenset({Status.READY, Status.FAILED}),
    Status.READY: frozenset({Status.LIVE, Status.FAILED}),
    Status.LIVE: frozenset({Status.SUPERSEDED, Status.ROLLED_BACK, Status.TORN_DOWN}),
    Status.SUPERSEDED: frozenset({Status.LIVE}),
    Status.FAILED: frozenset(),
    Status.ROLLED_BACK: frozenset(),
    Status.TORN_DOWN: frozenset(),
}

# What each arrival writes to the log, and at which level.
ARRIVAL: Mapping[Status, tuple[str, str]] = {
    Status.QUEUED: ("info", "queued"),
    Status.BUILDING: ("info", "building"),
    Status.READY: ("info", "ready"),
    Status.LIVE: ("info", "live"),
    Status.FAILED: ("error", "failed"),
    Status.SUPERSEDED: ("info", "superseded by a newer deployment"),
    Status.ROLLED_BACK: ("warning", "rolled back"),
    Status.TORN_DOWN: ("warning", "torn down; services stopped"),
}

# Replica bounds per plan (inclusive).  An unknown plan gets the smallest bounds.
REPLICA_BOUNDS: Mapping[str, tuple[int, int]] = {
    "hobby": (1, 3),
    "pro": (1, 20),
    "team": (1, 100),
}

REF_RULE = (
    "use a git branch, tag or commit such as main or release/1.2 (no spaces, '..', '~', '^', "
    "':', '?', '*', '[', '\\\\' or '@{', not starting with '-' or '/', not ending with '/', "
    "'.' or '.lock')"
)
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def valid_ref(ref: str) -> bool:
    """git check-ref-format's rules for a branch (or tag) name."""
    if not ref or len(ref) > 255 or ref == "@" or ref.startswith("-"):
        return False
    if _REF_FORBIDDEN.search(ref) or ".." in ref or "@{" in ref or "//" in ref:
        return False
    if ref.startswith("/") or ref.endswith("/") or ref.endswith("."):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/"))


def check_ref(ref: str, what: str = "Ref") -> str:
    """A ref git accepts, without the characters git accepts but that do not show (a bidi
    override in a branch name makes the build log read otherwise than it is)."""
    if not valid_ref(ref):
        raise Invalid(f"{what} '{ref}' is not a valid git ref name: {REF_RULE}.")
    check_visible(what.lower(), ref)
    return ref


# --- views -------------------------------------------------------------------------------


def deployment_view(cloud: Cloud, row: sqlite3.Row) -> dict[str, Any]:
    build = None
    if row["build_id"] is not None:
        build = cloud.store.one("SELECT commit_sha FROM builds WHERE id = ?", (row["build_id"],))
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "status": row["status"],
        "ref": row["ref"],
        "build_id": row["build_id"],
        "commit_sha": None if build is None else build["commit_sha"],
        "source": row["source"],
        "previous_id": row["previous_id"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "live_at": iso_or_none(row["live_at"]),
    }


def _row(cloud: Cloud, deployment_id: str) -> sqlite3.Row:
    row = cloud.store.one("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
    assert row is not None
    return row


def find(cloud: Cloud, project: sqlite3.Row, deployment_id: str) -> sqlite3.Row:
    return cloud.child(
        "deployments",
        project,
        "id",
        deployment_id,
        f"No deployment '{deployment_id}' in project '{project['name']}'; list_deployments "
        "shows its deployments.",
    )


def latest(cloud: Cloud, project_id: str) -> sqlite3.Row | None:
    return cloud.store.one(
        "SELECT * FROM deployments WHERE project_id = ? ORDER BY created_at DESC, rowid DESC "
        "LIMIT 1",
        (project_id,),
    )


def reap(cloud: Cloud, project_id: str) -> None:
    """Finishes what a cut-off pipeline left behind: its deployment (still queued or building)
    is marked failed, and its repo link run ends as its deployment did."""
    cutoff = cloud.clock() - STALE_SECONDS
    stale = cloud.store.all(
        "SELECT id FROM deployments WHERE project_id = ? AND status IN ('queued', 'building') "
        "AND updated_at < ?",
        (project_id, cutoff),
    )
    runs = cloud.store.all(
        "SELECT r.id, d.status FROM link_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
        "WHERE r.project_id = ? AND r.status = 'running' AND r.created_at < ?",
        (project_id, cutoff),
    )
    if not stale and not runs:
        return
    with cloud.transaction() as db:
        for deployment_id in {row["id"] for row in stale}:
            transition(
                cloud, db, deployment_id, Status.FAILED, " (abandoned: its pipeline stopped)"
            )
        for run in runs:
            ok = run["status"] not in (None, Status.QUEUED, Status.BUILDING, Status.FAILED)
            finish_run(cloud, db, run["id"], "succeeded" if ok else "failed")


def finish_run(cloud: Cloud, db: sqlite3.Connection, run_id: str, outcome: str) -> None:
    """Ends a repo link run (inside the caller's transaction) as `outcome`."""
    db.execute(
        "UPDATE link_runs SET status = ?, finished_at = ? WHERE id = ?",
        (outcome, cloud.clock(), run_id),
    )


def list_deployments(cloud: Cloud, project: sqlite3.Row) -> list[dict[str, Any]]:
    reap(cloud, project["id"])
    rows = cloud.store.all(
        "SELECT * FROM deployments WHERE project_id = ? ORDER BY created_at DESC, rowid DESC",
        (project["id"],),
    )
    return [deployment_view(cloud, r) for r in rows]


def status(cloud: Cloud, project: sqlite3.Row, deployment_id: str | None) -> dict[str, Any]:
    """A given deployment, else the live one, else the latest; with the services' state."""
    reap(cloud, project["id"])
    current = live_deployment(cloud, project["id"])
    if deployment_id is not None:
        row: sqlite3.Row | None = find(cloud, project, deployment_id)
    else:
        row = current or latest(cloud, project["id"])
    return {
        "project": project["name"],
        "project_id": project["id"],
        "live_deployment_id": None if current is None else current["id"],
        "deployment": None if row is None else deployment_view(cloud, row),
        "services": services(cloud, project["id"]),
    }


# --- the machine -------------------------------------------------------------------------


def transition(
    cloud: Cloud, db: sqlite3.Connection, deployment_id: str, to: Status, note: str = ""
) -> None:
    """Moves a deployment to `to` (inside the caller's transaction) if the table allows it,
    and writes a log line for each service of its project."""
    row = _row(cloud, deployment_id)
    current = Status(row["status"])
    if to not in TRANSITIONS[current]:
        raise Conflict(f"Deployment '{deployment_id}' is {current} and cannot become {to}.")
    now = cloud.clock()
    live_at = now if to is Status.LIVE else row["live_at"]
    db.execute(
        "UPDATE deployments SET status = ?, updated_at = ?, live_at = ? WHERE id = ?",
        (to.value, now, live_at, deployment_id),
    )
    arrive(cloud, db, row, to, note)


def arrive(
    cloud: Cloud, db: sqlite3.Connection, row: sqlite3.Row, to: Status, note: str = ""
) -> None:
    level, verb = ARRIVAL[to]
    sha = cloud.store.one("SELECT commit_sha FROM builds WHERE id = ?", (row["build_id"],))
    what = row["ref"] if sha is None else f"{row['ref']}@{sha['commit_sha'][:7]}"
    message = f"Deployment {row['id']} ({what}) {verb}{note}."
    for name in cloud.service_names(row["project_id"]):
        cloud.log(db, row["project_id"], name, level, message)


def _go_live(cloud: Cloud, db: sqlite3.Connection, project_id: str, deployment_id: str) -> None:
    """Promotes a ready deployment: the one live before it is superseded and remembered as
    this one's previous, and every service runs."""
    before = live_deployment(cloud, project_id)
    if before is not None:
        transition(cloud, db, before["id"], Status.SUPERSEDED)
        db.execute(
            "UPDATE deployments SET previous_id = ? WHERE id = ?", (before["id"], deployment_id)
        )
    transition(cloud, db, deployment_id, Status.LIVE)
    _run_services(db, project_id)


def _run_services(db: sqlite3.Connection, project_id: str) -> None:
    db.execute("UPDATE services SET status = 'running' WHERE project_id = ?", (project_id,))


def queue(
    cloud: Cloud, db: sqlite3.Connection, project_id: str, build: sqlite3.Row, source: str
) -> str:
    """A new deployment of `build`, queued (inside the caller's transaction)."""
    deployment_id = new_id("dep")
    now = cloud.clock()
    db.execute(
        "INSERT INTO deployments (id, project_id, build_id, ref, status, source, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
        (deployment_id, project_id, build["id"], build["ref"], source, now, now),
    )
    arrive(cloud, db, _row(cloud, deployment_id), Status.QUEUED)
    return deployment_id


async def advance(
    cloud: Cloud,
    project_id: str,
    deployment_id: str,
    promote: bool,
    progress: Progress,
    step: int,
    total: int,
) -> None:
    """Builds a queued deployment to ready and, when `promote`, live; reports progress after
    each durable stage.  If anything interrupts it, the deployment ends failed."""
    stages = [Status.BUILDING, Status.READY] + ([Status.LIVE] if promote else [])
    try:
        for stage in stages:
            with cloud.transaction() as db:
                if stage is Status.LIVE:
                    _go_live(cloud, db, project_id, deployment_id)
                else:
                    transition(cloud, db, deployment_id, stage)
            step += 1
            await progress(step, total, f"Deployment {deployment_id} is {stage}.")
    except BaseException:
        fail(cloud, deployment_id, " (interrupted)")
        raise


def fail(cloud: Cloud, deployment_id: str, note: str) -> None:
    # Not `cloud.transaction()`: an interrupted deployment is marked failed even when what
    # interrupted it is the caller losing the right to act.
    with cloud.store.transaction() as db:
        row = db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
        if row is not None and Status.FAILED in TRANSITIONS[Status(row["status"])]:
            transition(cloud, db, deployment_id, Status.FAILED, note)


def build_to_deploy(
    cloud: Cloud, db: sqlite3.Connection, project: sqlite3.Row, ref: str | None
) -> sqlite3.Row:
    """The latest build, or a new build of `ref` (inside the caller's transaction)."""
    if ref is not None:
        return record_build(cloud, db, project["id"], ref)
    row = latest_build(cloud, project["id"])
    if row is None:
        raise Conflict(f"Project '{project['name']}' has no build yet; pass ref to build one.")
    return row


async def deploy(
    cloud: Cloud,
    project: sqlite3.Row,
    ref: str | None,
    promote: bool,
    progress: Progress,
) -> dict[str, Any]:
    if ref is not None:
        check_ref(ref)
    total = 4 if promote else 3
    with cloud.transaction() as db:
        build = build_to_deploy(cloud, db, project, ref)
        deployment_id = queue(cloud, db, project["id"], build, "manual")
    short = f"{build['ref']}@{build['commit_sha'][:7]}"
    await progress(1, total, f"Deployment {deployment_id} of {short} is queued.")
    await advance(cloud, project["id"], deployment_id, promote, progress, 1, total)
    return outcome(cloud, project, deployment_id, promoted=promote)


def outcome(
    cloud: Cloud, project: sqlite3.Row, deployment_id: str, promoted: bool
) -> dict[str, Any]:
    """A deployment after this call; `superseded_deployment_id` is the one this call took
    offline by promoting it (None when it promoted nothing)."""
    row = _row(cloud, deployment_id)
    return {
        "deployment_id": deployment_id,
        "status": row["status"],
        "superseded_deployment_id": row["previous_id"] if promoted else None,
        "deployment": deployment_view(cloud, row),
        "services": services(cloud, project["id"]),
    }


def finalize(cloud: Cloud, project: sqlite3.Row, deployment_id: str) -> dict[str, Any]:
    row = find(cloud, project, deployment_id)
    if row["status"] == Status.LIVE:
        return outcome(cloud, project, deployment_id, promoted=False)
    if row["status"] != Status.READY:
        raise Conflict(
            f"Deployment '{deployment_id}' is {row['status']}, and only a ready deployment can "
            "be finalized; deploy its ref again to ship it."
        )
    with cloud.transaction() as db:
        _go_live(cloud, db, project["id"], deployment_id)
    return outcome(cloud, project, deployment_id, promoted=True)


def rollback(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    current = live_deployment(cloud, project["id"])
    if current is None:
        raise Conflict(
            f"Project '{project['name']}' has no live deployment to roll back; deploy first."
        )
    target = _rollback_target(cloud, current)
    with cloud.transaction() as db:
        transition(cloud, db, current["id"], Status.ROLLED_BACK)
        transition(cloud, db, target["id"], Status.LIVE, f" again, replacing {current['id']}")
        _run_services(db, project["id"])
    row = _row(cloud, target["id"])
    return {
        "deployment_id": target["id"],
        "rolled_back_deployment_id": current["id"],
        "deployment": deployment_view(cloud, row),
        "services": services(cloud, project["id"]),
    }


def _rollback_target(cloud: Cloud, current: sqlite3.Row) -> sqlite3.Row:
    """The superseded deployment that was live before `current`."""
    target = None
    if current["previous_id"] is not None:
        target = cloud.store.one(
            "SELECT * FROM deployments WHERE id = ? AND status = 'superseded'",
            (current["previous_id"],),
        )
    if target is None:
        raise Conflict(
            f"Deployment '{current['id']}' has no earlier live deployment to return to; "
            "deploy the ref you want instead."
        )
    return target


def service_row(cloud: Cloud, project: sqlite3.Row, name: str) -> sqlite3.Row:
    row = cloud.store.one(
        "SELECT * FROM services WHERE project_id = ? AND name = ?", (project["id"], name)
    )
    if row is None:
        names = ", ".join(cloud.service_names(project["id"]))
        raise NotFound(
            f"No service '{name}' in project '{project['name']}'; its services are {names}."
        )
    return row


def restart(cloud: Cloud, project: sqlite3.Row, service: str | None) -> dict[str, Any]:
    names = (
        cloud.service_names(project["id"])
        if service is None
        else [service_row(cloud, project, service)["name"]]
    )
    current = live_deployment(cloud, project["id"])
    if current is None:
        raise Conflict(
            f"Project '{project['name']}' has no live deployment, so nothing is running to "
            "restart; deploy first."
        )
    now = cloud.clock()
    with cloud.transaction() as db:
        for name in names:
            _restart_service(cloud, db, project, name, current["id"], now)
    return {
        "project": project["name"],
        "deployment_id": current["id"],
        "restarted": names,
        "restarted_at": iso(now),
        "services": services(cloud, project["id"]),
    }


def _restart_service(
    cloud: Cloud,
    db: sqlite3.Connection,
    project: sqlite3.Row,
    name: str,
    deployment_id: str,
    now: float,
) -> None:
    row = service_row(cloud, project, name)
    db.execute(
        "UPDATE services SET status = 'running', restarted_at = ? WHERE id = ?", (now, row["id"])
    )
    message = f"Restarting {row['replicas']} replica(s) of {name} on deployment {deployment_id}."
    cloud.log(db, project["id"], name, "info", message)
    cloud.log(db, project["id"], name, "info", f"Service {name} restarted.")


def bounds(plan: str) -> tuple[int, int]:
    return REPLICA_BOUNDS.get(plan, REPLICA_BOUNDS["hobby"])


def scale(
    cloud: Cloud, tenant: Tenant, project: sqlite3.Row, service: str, replicas: int
) -> dict[str, Any]:
    row = service_row(cloud, project, service)
    low, high = bounds(tenant.plan)
    if not low <= replicas <= high:
        raise Invalid(
            f"Replicas must be between {low} and {high} on the {tenant.plan} plan; choose a "
            "value in that range or change the plan."
        )
    previous = int(row["replicas"])
    if previous != replicas:
        with cloud.transaction() as db:
            db.execute("UPDATE services SET replicas = ? WHERE id = ?", (replicas, row["id"]))
            cloud.log(
                db,
                project["id"],
                service,
                "info",
                f"Scaled {service} from {previous} to {replicas} replica(s).",
            )
    return {
        "project": project["name"],
        "service": service,
        "replicas": replicas,
        "previous_replicas": previous,
        "plan": tenant.plan,
        "min_replicas": low,
        "max_replicas": high,
    }


def _running(cloud: Cloud, project_id: str) -> list[str]:
    """The names of the project's services that are not stopped."""
    rows = cloud.store.all(
        "SELECT name FROM services WHERE project_id = ? AND status != 'stopped' ORDER BY name",
        (project_id,),
    )
    return [r["name"] for r in rows]


def _require_tear_down(tenant: Tenant) -> None:
    tenant.require_role("admin", "tear down a project")


def tear_down_description(cloud: Cloud, tenant: Tenant, project: sqlite3.Row) -> str | None:
    """What tearing down would stop (None when nothing is running), for a caller who may tear
    the project down."""
    _require_tear_down(tenant)
    running = _running(cloud, project["id"])
    current = live_deployment(cloud, project["id"])
    if current is None and not running:
        return None
    parts = []
    if running:
        parts.append(f"stop services {', '.join(running)}")
    if current is not None:
        parts.append(f"take deployment {current['id']} offline")
    return f"tear down project '{project['name']}': {' and '.join(parts)}"


def tear_down(cloud: Cloud, tenant: Tenant, project: sqlite3.Row) -> dict[str, Any]:
    _require_tear_down(tenant)
    current = live_deployment(cloud, project["id"])
    stopped = _running(cloud, project["id"])
    if current is not None or stopped:
        with cloud.transaction() as db:
            if current is not None:
                transition(cloud, db, current["id"], Status.TORN_DOWN)
            db.execute(
                "UPDATE services SET status = 'stopped' WHERE project_id = ?", (project["id"],)
            )
            for name in stopped:
                cloud.log(db, project["id"], name, "warning", f"Service {name} stopped.")
    return {
        "project": project["name"],
        "torn_down_deployment_id": None if current is None else current["id"],
        "stopped_services": stopped,
        "services": services(cloud, project["id"]),
    }
