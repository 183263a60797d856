"""Tools of the 'projects' area: list, inspect, create and destroy projects."""

from __future__ import annotations

from typing import Any

from ..cloud import projects
from ..cloud.base import REGIONS
from .base import CURSOR, PROJECT, Call, Spec, limit, list_of, nullable, obj, text

NAME = text(63, f"A name of {projects.NAME_RULE}.")
SERVICE_STATE = obj(
    {
        "name": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "stopped"]},
        "replicas": {"type": "integer"},
        "restarted_at": {"type": ["string", "null"]},
    }
)
BUILD = obj(
    {
        "id": {"type": "string"},
        "ref": {"type": "string"},
        "commit_sha": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
        "created_at": {"type": "string"},
    }
)
SUMMARY = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "region": {"type": "string", "enum": list(REGIONS)},
        "created_at": {"type": "string"},
        "services": {"type": "array", "items": {"type": "string"}},
        "live_deployment_id": {"type": ["string", "null"]},
    }
)
DETAIL = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "tenant_id": {"type": "string"},
        "region": {"type": "string", "enum": list(REGIONS)},
        "created_at": {"type": "string"},
        "services": {"type": "array", "items": SERVICE_STATE},
        "live_deployment_id": {"type": ["string", "null"]},
        "latest_build": nullable(BUILD),
        "repo_link": nullable(
            obj(
                {
                    "repo_url": {"type": "string"},
                    "branch": {"type": "string"},
                    "auto_deploy": {"type": "boolean"},
                }
            )
        ),
    }
)
DESTROYED = obj(
    {
        "destroyed": {"type": "boolean", "const": True},
        "project_id": {"type": "string"},
        "name": {"type": "string"},
        "removed": obj({kind: {"type": "integer"} for kind in projects.COUNTED}),
    }
)
ROLES = (
    "Any member of the tenant may use it; in a team, destroying a project needs an admin or owner."
)


async def list_projects(call: Call) -> dict[str, Any]:
    return call.page(await projects.list_projects(call.cloud, call.tenant), 50)


LIST_PROJECTS = Spec(
    name="list_projects",
    scope="projects:read",
    title="List projects",
    description=(
        "List the projects of your personal tenant (or of a team with tenant_id), "
        "sorted by name, with their region, services and live deployment. Use it first "
        "when you need a project's exact name or id. " + ROLES
    ),
    arguments={"cursor": CURSOR, "limit": limit(50, 200)},
    required=(),
    output=list_of(SUMMARY),
    handler=list_projects,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def get_project(call: Call) -> dict[str, Any]:
    return await projects.detail(call.cloud, await call.project())


GET_PROJECT = Spec(
    name="get_project",
    scope="projects:read",
    title="Get project details",
    description=(
        "Show one project by name or id: region, each service's status and replicas, "
        "the live deployment, the latest build (what deploy ships by default) and its "
        "repo link. Use it to inspect a project before changing it. " + ROLES
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=DETAIL,
    handler=get_project,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def create_project(call: Call) -> dict[str, Any]:
    return await projects.create_project(
        call.cloud,
        call.tenant,
        call.args["name"],
        call.args.get("region"),
        call.args.get("services"),
    )


CREATE_PROJECT = Spec(
    name="create_project",
    scope="projects:write",
    title="Create a project",
    description=(
        "Create a new project with a name unique in the tenant, a region (default "
        "us-east) and its services (default ['web']); an initial build of 'main' is "
        "recorded so that deploy can ship it right away. Nothing is deployed yet. " + ROLES
    ),
    arguments={
        "name": {**NAME, "description": f"The new project's name: {projects.NAME_RULE}."},
        "region": {
            "type": "string",
            "enum": list(REGIONS),
            "default": projects.DEFAULT_REGION,
            "description": "Where the project runs (default us-east).",
        },
        "services": {
            "type": "array",
            "items": NAME,
            "minItems": 1,
            "maxItems": 20,
            "description": "The project's services, e.g. ['web', 'ssr', 'api', "
            "'worker'] (default ['web']).",
        },
    },
    required=("name",),
    output=DETAIL,
    handler=create_project,
)


async def destroy_project(call: Call) -> dict[str, Any]:
    project = await call.project()
    await call.confirm(await projects.destroy_description(call.cloud, call.tenant, project))
    return await projects.destroy_project(call.cloud, call.tenant, project)


DESTROY_PROJECT = Spec(
    name="destroy_project",
    scope="projects:write",
    title="Destroy a project",
    description=(
        "Permanently delete a project and everything under it: services, builds, "
        "deployments, logs, env vars, vault, backups, domains, repo link and runs. Use "
        "it only when the user clearly asks to delete the project; to stop it but keep "
        "it, use tear_down_project. Asks the user to confirm when the client supports "
        "it. Needs an admin or owner in a team."
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=DESTROYED,
    handler=destroy_project,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        LIST_PROJECTS,
        GET_PROJECT,
        CREATE_PROJECT,
        DESTROY_PROJECT,
    )
