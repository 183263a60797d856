"""Tools of the 'deployments' area: status, deploy, finalize, rollback, restart, scale, and
tear down."""

from __future__ import annotations

from typing import Any

from ..cloud import deployments
from .base import CURSOR, MEMBERS, PROJECT, SERVICE, Call, Spec, limit, list_of, nullable, obj, text
from .projects import SERVICE_STATE

STATUSES = [s.value for s in deployments.Status]
DEPLOYMENT_ID = text(64, "A deployment id, as returned by deploy or list_deployments.")
REF = text(255, "A git branch, tag or commit to build and deploy instead of the latest build.")
DEPLOYMENT = obj(
    {
        "id": {"type": "string"},
        "project_id": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "ref": {"type": "string"},
        "build_id": {"type": ["string", "null"]},
        "commit_sha": {"type": ["string", "null"]},
        "source": {"type": "string", "enum": ["manual", "repo_link"]},
        "previous_id": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "live_at": {"type": ["string", "null"]},
    }
)
SERVICES = {"type": "array", "items": SERVICE_STATE}
STATUS = obj(
    {
        "project": {"type": "string"},
        "project_id": {"type": "string"},
        "live_deployment_id": {"type": ["string", "null"]},
        "deployment": nullable(DEPLOYMENT),
        "services": SERVICES,
    }
)
OUTCOME = obj(
    {
        "deployment_id": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "superseded_deployment_id": {"type": ["string", "null"]},
        "deployment": DEPLOYMENT,
        "services": SERVICES,
    }
)
ROLLED_BACK = obj(
    {
        "deployment_id": {"type": "string"},
        "rolled_back_deployment_id": {"type": "string"},
        "deployment": DEPLOYMENT,
        "services": SERVICES,
    }
)
RESTARTED = obj(
    {
        "project": {"type": "string"},
        "deployment_id": {"type": "string"},
        "restarted": {"type": "array", "items": {"type": "string"}},
        "restarted_at": {"type": "string"},
        "services": SERVICES,
    }
)
SCALED = obj(
    {
        "project": {"type": "string"},
        "service": {"type": "string"},
        "replicas": {"type": "integer"},
        "previous_replicas": {"type": "integer"},
        "plan": {"type": "string"},
        "min_replicas": {"type": "integer"},
        "max_replicas": {"type": "integer"},
    }
)
TORN_DOWN = obj(
    {
        "project": {"type": "string"},
        "torn_down_deployment_id": {"type": ["string", "null"]},
        "stopped_services": {"type": "array", "items": {"type": "string"}},
        "services": SERVICES,
    }
)
BOUNDS = ", ".join(f"{plan} {lo}-{hi}" for plan, (lo, hi) in deployments.REPLICA_BOUNDS.items())


async def get_deployment_status(call: Call) -> dict[str, Any]:
    return await deployments.status(
        call.cloud, await call.project(), call.args.get("deployment_id")
    )


GET_DEPLOYMENT_STATUS = Spec(
    name="get_deployment_status",
    scope="deployments:read",
    title="Get deployment status",
    description=(
        "Show a project's live deployment (or its latest one when nothing is live, or "
        "the one given by deployment_id) with every service's status and replicas. Use "
        "it after deploy, restart or rollback to check the result, and to follow an "
        "operation id returned by deploy or trigger_build. " + MEMBERS
    ),
    arguments={"project": PROJECT, "deployment_id": DEPLOYMENT_ID},
    required=("project",),
    output=STATUS,
    handler=get_deployment_status,
    read_only=True,
    idempotent=True,
)


async def list_deployments(call: Call) -> dict[str, Any]:
    return call.page(await deployments.list_deployments(call.cloud, await call.project()), 20)


LIST_DEPLOYMENTS = Spec(
    name="list_deployments",
    scope="deployments:read",
    title="List deployments",
    description=(
        "List a project's deployments, newest first, with status (queued, building, "
        "ready, live, failed, superseded, rolled_back, torn_down), ref and commit. Use "
        "it to find a deployment id to finalize or to see the history. " + MEMBERS
    ),
    arguments={"project": PROJECT, "cursor": CURSOR, "limit": limit(20, 100)},
    required=("project",),
    output=list_of(DEPLOYMENT),
    handler=list_deployments,
    read_only=True,
    idempotent=True,
)


async def deploy(call: Call) -> dict[str, Any]:
    return await deployments.deploy(
        call.cloud,
        await call.project(),
        call.args.get("ref"),
        bool(call.args.get("promote", True)),
        call.ctx.progress,
    )


DEPLOY = Spec(
    name="deploy",
    scope="deployments:write",
    title="Deploy a project",
    description=(
        "Deploy a project: the latest build by default, or a new build of ref. The "
        "deployment goes queued, building, ready and then live (the previous live one "
        "becomes superseded), reporting progress at each stage; pass promote: false to "
        "stop at ready and promote it later with finalize_deployment. Returns the "
        "deployment id; get_deployment_status reports it. " + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "ref": REF,
        "promote": {
            "type": "boolean",
            "default": True,
            "description": "Make it live once ready (default true).",
        },
    },
    required=("project",),
    output=OUTCOME,
    handler=deploy,
)


async def finalize_deployment(call: Call) -> dict[str, Any]:
    return await deployments.finalize(call.cloud, await call.project(), call.args["deployment_id"])


FINALIZE_DEPLOYMENT = Spec(
    name="finalize_deployment",
    scope="deployments:write",
    title="Finalize (promote) a deployment",
    description=(
        "Promote a ready deployment (one deployed with promote: false, or built by a "
        "repo link without auto-deploy) to live; the previous live one becomes "
        "superseded. Finalizing the deployment that is already live changes nothing. " + MEMBERS
    ),
    arguments={"project": PROJECT, "deployment_id": DEPLOYMENT_ID},
    required=("project", "deployment_id"),
    output=OUTCOME,
    handler=finalize_deployment,
    idempotent=True,
)


async def rollback_deployment(call: Call) -> dict[str, Any]:
    return await deployments.rollback(call.cloud, await call.project())


ROLLBACK_DEPLOYMENT = Spec(
    name="rollback_deployment",
    scope="deployments:write",
    title="Roll back to the previous deployment",
    description=(
        "Return a project to the deployment that was live before the current one: the "
        "current one becomes rolled_back and the previous one is live again. Each call "
        "goes one step further back. Use it when the latest deploy misbehaves. " + MEMBERS
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=ROLLED_BACK,
    handler=rollback_deployment,
)


async def restart_service(call: Call) -> dict[str, Any]:
    return await deployments.restart(call.cloud, await call.project(), call.args.get("service"))


RESTART_SERVICE = Spec(
    name="restart_service",
    scope="deployments:write",
    title="Restart a service",
    description=(
        "Restart one service of a project's live deployment, or every service when "
        "service is omitted. Use it when a service is stuck or after changing env vars. " + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "service": {
            **SERVICE,
            "description": "The service to restart, e.g. web; omit to restart every service.",
        },
    },
    required=("project",),
    output=RESTARTED,
    handler=restart_service,
)


async def scale_service(call: Call) -> dict[str, Any]:
    return await deployments.scale(
        call.cloud,
        call.tenant,
        await call.project(),
        call.args["service"],
        int(call.args["replicas"]),
    )


SCALE_SERVICE = Spec(
    name="scale_service",
    scope="deployments:write",
    title="Scale a service",
    description=(
        "Set how many replicas a service runs, within the tenant plan's bounds ("
        + BOUNDS
        + "). Setting the same count again changes nothing. "
        + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "service": SERVICE,
        "replicas": {
            "type": "integer",
            "description": f"The replica count; plan bounds: {BOUNDS}.",
        },
    },
    required=("project", "service", "replicas"),
    output=SCALED,
    handler=scale_service,
    idempotent=True,
)


async def tear_down_project(call: Call) -> dict[str, Any]:
    project = await call.project()
    action = await deployments.tear_down_description(call.cloud, call.tenant, project)
    if action is not None:
        await call.confirm(action)
    return await deployments.tear_down(call.cloud, call.tenant, project)


TEAR_DOWN_PROJECT = Spec(
    name="tear_down_project",
    scope="deployments:write",
    title="Tear down a project",
    description=(
        "Stop every service of a project and take its live deployment offline (it "
        "becomes torn_down); the project, its builds and settings stay, and deploy "
        "brings it back. Use it only when the user asks to stop the project. Asks the "
        "user to confirm when the client supports it. Needs an admin or owner in a "
        "team."
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=TORN_DOWN,
    handler=tear_down_project,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        GET_DEPLOYMENT_STATUS,
        LIST_DEPLOYMENTS,
        DEPLOY,
        FINALIZE_DEPLOYMENT,
        ROLLBACK_DEPLOYMENT,
        RESTART_SERVICE,
        SCALE_SERVICE,
        TEAR_DOWN_PROJECT,
    )
