"""Projects: a unique name per tenant, a region, and services.  Business rules only.

Who may do what: any member of a tenant may list, inspect and create projects; destroying a
project (and everything under it) needs a team admin or owner.  In a personal tenant the user
is the owner, so every rule is satisfied there.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..store.repos import Repos
from ..store.repos.deployments import Deployment
from ..store.repos.projects import Build, Project, Service
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
    ordered_id,
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


async def record_build(cloud: Cloud, tx: Repos, project_id: str, ref: str) -> Build:
    """Records a build of `ref` inside the caller's transaction and returns it.  A ref that
    is a full commit id builds that commit."""
    build_id = ordered_id("bld")
    sha = ref.lower() if re.fullmatch(r"[0-9a-fA-F]{40}", ref) else commit_sha(build_id)
    build = Build(build_id, project_id, ref, sha, cloud.clock())
    await tx.projects.add_build(build)
    return build


# --- views -------------------------------------------------------------------------------


def service_view(service: Service) -> dict[str, Any]:
    return {
        "name": service.name,
        "status": service.status,
        "replicas": service.replicas,
        "restarted_at": iso_or_none(service.restarted_at),
    }


async def services(cloud: Cloud, project_id: str) -> list[dict[str, Any]]:
    return [service_view(s) for s in await cloud.reads.projects.services(project_id)]


def build_view(build: Build) -> dict[str, Any]:
    return {
        "id": build.id,
        "ref": build.ref,
        "commit_sha": build.commit_sha,
        "created_at": iso(build.created_at),
    }


async def latest_build(cloud: Cloud, project_id: str, tx: Repos | None = None) -> Build | None:
    return await (tx or cloud.reads).projects.latest_build(project_id)


async def live_deployment(
    cloud: Cloud, project_id: str, tx: Repos | None = None
) -> Deployment | None:
    return await (tx or cloud.reads).deployments.live(project_id)


async def live_deployment_id(cloud: Cloud, project_id: str) -> str | None:
    found = await live_deployment(cloud, project_id)
    return None if found is None else found.id


async def summary(cloud: Cloud, project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "region": project.region,
        "created_at": iso(project.created_at),
        "services": await cloud.service_names(project.id),
        "live_deployment_id": await live_deployment_id(cloud, project.id),
    }


async def detail(cloud: Cloud, project: Project) -> dict[str, Any]:
    build = await latest_build(cloud, project.id)
    return {
        "id": project.id,
        "name": project.name,
        "tenant_id": project.tenant_id,
        "region": project.region,
        "created_at": iso(project.created_at),
        "services": await services(cloud, project.id),
        "live_deployment_id": await live_deployment_id(cloud, project.id),
        "latest_build": None if build is None else build_view(build),
        "repo_link": await repo_link(cloud, project.id),
    }


async def repo_link(cloud: Cloud, project_id: str) -> dict[str, Any] | None:
    link = await cloud.reads.links.link(project_id)
    if link is None:
        return None
    return {"repo_url": link.repo_url, "branch": link.branch, "auto_deploy": link.auto_deploy}


# --- operations --------------------------------------------------------------------------


async def list_projects(cloud: Cloud, tenant: Tenant) -> list[dict[str, Any]]:
    return [await summary(cloud, p) for p in await cloud.reads.projects.of_tenant(tenant.id)]


async def create_project(
    cloud: Cloud, tenant: Tenant, name: str, region: str | None, service_names: list[str] | None
) -> dict[str, Any]:
    check_name("Project", name, "name")
    region = check_region(DEFAULT_REGION if region is None else region)
    wanted = check_services(list(DEFAULT_SERVICES) if service_names is None else service_names)
    project = Project(new_id("prj"), tenant.id, name, region, cloud.clock())
    # The check runs inside the write, so another process cannot insert the name between it
    # and the insert unseen; should it ever, the UNIQUE constraint gives the same answer.
    async with cloud.transaction(clash=lambda: _name_taken(tenant, name)) as tx:
        if await tx.projects.name_taken(tenant.id, name):
            raise _name_taken(tenant, name)
        await tx.projects.add(project)
        await tx.projects.add_services(project.id, [(new_id("svc"), s) for s in wanted])
        await record_build(cloud, tx, project.id, INITIAL_REF)
        services_named = ", ".join(sorted(wanted))
        message = f"Project '{name}' created in {region} with services {services_named}."
        await cloud.log(tx, project.id, None, "info", message)
    return await detail(cloud, project)


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


async def contents(cloud: Cloud, project_id: str, tx: Repos | None = None) -> dict[str, int]:
    """What destroying a project removes, counted per kind."""
    counted = await (tx or cloud.reads).projects.contents(project_id)
    return {kind: int(getattr(counted, kind)) for kind in COUNTED}


def _require_destroyer(tenant: Tenant) -> None:
    tenant.require_role("admin", "destroy a project")


async def destroy_description(cloud: Cloud, tenant: Tenant, project: Project) -> str:
    """Names exactly what destroying the project removes, for a caller who may destroy it."""
    _require_destroyer(tenant)
    counts = await contents(cloud, project.id)
    parts = [_counted(n, _NOUNS[kind]) for kind, n in counts.items() if n]
    if await cloud.reads.vault.vault(project.id) is not None:
        parts.append("its vault")
    link = await cloud.reads.links.link(project.id)
    if link is not None:
        parts.append(f"its repo link to {link.repo_url}")
    parts.append("its logs")
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    return f"destroy project '{project.name}' ({project.id}) with {listed}"


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


async def destroy_project(cloud: Cloud, tenant: Tenant, project: Project) -> dict[str, Any]:
    _require_destroyer(tenant)
    async with cloud.transaction() as tx:
        # Counted inside the write: what the result says was removed is what was.
        removed = await contents(cloud, project.id, tx)
        gone = await tx.projects.delete(project.id, tenant.id)
    if gone == 0:
        raise missing_project(tenant, project.name)
    return {
        "destroyed": True,
        "project_id": project.id,
        "name": project.name,
        "removed": removed,
    }
