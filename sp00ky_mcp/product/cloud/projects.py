"""Projects: a unique name per tenant, a region, and services.  Business rules only.

Who may do what: any member of a tenant may list, inspect and create projects; destroying a
project (and everything under it) needs a team admin or owner.  In a personal tenant the user
is the owner, so every rule is satisfied there.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from typing import Any

from .base import (
    REGIONS,
    Cloud,
    Conflict,
    Invalid,
    Tenant,
    check_visible,
    iso,
    iso_or_none,
    missing_project,
    new_id,
)

NAME_RULE = "1-63 lowercase letters, digits and hyphens, starting with a letter"
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
DEFAULT_REGION = "us-east"
DEFAULT_SERVICES = ("web",)
INITIAL_REF = "main"
# What destroying a project removes, counted in its result.
COUNTED = ("services", "builds", "deployments", "env_vars", "backups", "domains", "link_runs")


def valid_name(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


def check_name(kind: str, value: str, argument: str) -> str:
    check_visible(argument, value)
    if not valid_name(value):
        raise Invalid(f"{kind} name '{value}' is invalid: use {NAME_RULE}.")
    return value


def commit_sha(seed: str) -> str:
    """A 40-hex commit id for a build of the embedded platform (deterministic per seed)."""
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def record_build(cloud: Cloud, db: sqlite3.Connection, project_id: str, ref: str) -> sqlite3.Row:
    """Records a build of `ref` inside the caller's transaction and returns it.  A ref that
    is a full commit id builds that commit."""
    build_id = new_id("bld")
    sha = ref.lower() if re.fullmatch(r"[0-9a-fA-F]{40}", ref) else commit_sha(build_id)
    db.execute(
        "INSERT INTO builds (id, project_id, ref, commit_sha, created_at) VALUES (?, ?, ?, ?, ?)",
        (build_id, project_id, ref, sha, cloud.clock()),
    )
    row: sqlite3.Row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return row


# --- views -------------------------------------------------------------------------------


def service_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "status": row["status"],
        "replicas": row["replicas"],
        "restarted_at": iso_or_none(row["restarted_at"]),
    }


def services(cloud: Cloud, project_id: str) -> list[dict[str, Any]]:
    rows = cloud.store.all(
        "SELECT * FROM services WHERE project_id = ? ORDER BY name", (project_id,)
    )
    return [service_view(r) for r in rows]


def build_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ref": row["ref"],
        "commit_sha": row["commit_sha"],
        "created_at": iso(row["created_at"]),
    }


def latest_build(cloud: Cloud, project_id: str) -> sqlite3.Row | None:
    return cloud.store.one(
        "SELECT * FROM builds WHERE project_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (project_id,),
    )


def live_deployment(cloud: Cloud, project_id: str) -> sqlite3.Row | None:
    return cloud.store.one(
        "SELECT * FROM deployments WHERE project_id = ? AND status = 'live'", (project_id,)
    )


def live_deployment_id(cloud: Cloud, project_id: str) -> str | None:
    row = live_deployment(cloud, project_id)
    return None if row is None else str(row["id"])


def summary(cloud: Cloud, row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "region": row["region"],
        "created_at": iso(row["created_at"]),
        "services": cloud.service_names(row["id"]),
        "live_deployment_id": live_deployment_id(cloud, row["id"]),
    }


def detail(cloud: Cloud, row: sqlite3.Row) -> dict[str, Any]:
    build = latest_build(cloud, row["id"])
    return {
        "id": row["id"],
        "name": row["name"],
        "tenant_id": row["tenant_id"],
        "region": row["region"],
        "created_at": iso(row["created_at"]),
        "services": services(cloud, row["id"]),
        "live_deployment_id": live_deployment_id(cloud, row["id"]),
        "latest_build": None if build is None else build_view(build),
        "repo_link": repo_link(cloud, row["id"]),
    }


def repo_link(cloud: Cloud, project_id: str) -> dict[str, Any] | None:
    link = cloud.store.one(
        "SELECT repo_url, branch, auto_deploy FROM repo_links WHERE project_id = ?", (project_id,)
    )
    if link is None:
        return None
    return {
        "repo_url": link["repo_url"],
        "branch": link["branch"],
        "auto_deploy": bool(link["auto_deploy"]),
    }


# --- operations --------------------------------------------------------------------------


def list_projects(cloud: Cloud, tenant: Tenant) -> list[dict[str, Any]]:
    rows = cloud.store.all("SELECT * FROM projects WHERE tenant_id = ? ORDER BY name", (tenant.id,))
    return [summary(cloud, r) for r in rows]


def create_project(
    cloud: Cloud, tenant: Tenant, name: str, region: str | None, service_names: list[str] | None
) -> dict[str, Any]:
    check_name("Project", name, "name")
    region = check_region(DEFAULT_REGION if region is None else region)
    wanted = check_services(list(DEFAULT_SERVICES) if service_names is None else service_names)
    project_id = new_id("prj")
    # The check runs under the write lock, so another process cannot insert the name between
    # it and the insert; should it ever, the UNIQUE constraint gives the same answer.
    with cloud.transaction(clash=lambda: _name_taken(tenant, name)) as db:
        if db.execute(
            "SELECT 1 FROM projects WHERE tenant_id = ? AND name = ?", (tenant.id, name)
        ).fetchone():
            raise _name_taken(tenant, name)
        db.execute(
            "INSERT INTO projects (id, tenant_id, name, region, created_at) VALUES (?, ?, ?, ?, ?)",
            (project_id, tenant.id, name, region, cloud.clock()),
        )
        db.executemany(
            "INSERT INTO services (id, project_id, name) VALUES (?, ?, ?)",
            [(new_id("svc"), project_id, service) for service in wanted],
        )
        record_build(cloud, db, project_id, INITIAL_REF)
        services_named = ", ".join(sorted(wanted))
        message = f"Project '{name}' created in {region} with services {services_named}."
        cloud.log(db, project_id, None, "info", message)
    row = cloud.store.one("SELECT * FROM projects WHERE id = ?", (project_id,))
    assert row is not None
    return detail(cloud, row)


def check_region(region: str) -> str:
    if region not in REGIONS:
        raise Invalid(f"Region '{region}' does not exist; choose one of {', '.join(REGIONS)}.")
    return region


def check_services(wanted: list[str]) -> list[str]:
    """At least one service, each validly named and listed once."""
    if not wanted:
        raise Invalid("A project needs at least one service; pass services such as ['web'].")
    for service in wanted:
        check_name("Service", service, "services")
    repeated = sorted({s for s in wanted if wanted.count(s) > 1})
    if repeated:
        raise Invalid(f"Service '{repeated[0]}' is listed twice; list each service once.")
    return wanted


def _name_taken(tenant: Tenant, name: str) -> Conflict:
    return Conflict(
        f"A project named '{name}' already exists in tenant '{tenant.name}'; "
        "choose another name or use that project."
    )


def contents(cloud: Cloud, project_id: str) -> dict[str, int]:
    """What destroying a project removes, counted per kind."""
    return {table: cloud.count(table, project_id) for table in COUNTED}


def _require_destroyer(tenant: Tenant) -> None:
    tenant.require_role("admin", "destroy a project")


def destroy_description(cloud: Cloud, tenant: Tenant, row: sqlite3.Row) -> str:
    """Names exactly what destroying the project removes, for a caller who may destroy it."""
    _require_destroyer(tenant)
    counts = contents(cloud, row["id"])
    parts = [_counted(n, _NOUNS[kind]) for kind, n in counts.items() if n]
    if cloud.store.one("SELECT 1 FROM vaults WHERE project_id = ?", (row["id"],)):
        parts.append("its vault")
    link = cloud.store.one("SELECT repo_url FROM repo_links WHERE project_id = ?", (row["id"],))
    if link is not None:
        parts.append(f"its repo link to {link['repo_url']}")
    parts.append("its logs")
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    return f"destroy project '{row['name']}' ({row['id']}) with {listed}"


_NOUNS = {
    "services": "service",
    "builds": "build",
    "deployments": "deployment",
    "env_vars": "env var",
    "backups": "backup",
    "domains": "domain",
    "link_runs": "repo link run",
}


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def destroy_project(cloud: Cloud, tenant: Tenant, row: sqlite3.Row) -> dict[str, Any]:
    _require_destroyer(tenant)
    removed = contents(cloud, row["id"])
    with cloud.transaction() as db:
        gone = db.execute(
            "DELETE FROM projects WHERE id = ? AND tenant_id = ?", (row["id"], tenant.id)
        ).rowcount
    if gone == 0:
        raise missing_project(tenant, row["name"])
    return {"destroyed": True, "project_id": row["id"], "name": row["name"], "removed": removed}
