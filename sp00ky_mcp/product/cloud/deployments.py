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
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

import anyio

from ..store.repos import Repos
from ..store.repos.deployments import Deployment
from ..store.repos.projects import Build, Project, Service
from .base import (
    Cloud,
    Conflict,
    Invalid,
    NotFound,
    Tenant,
    check_visible,
    iso,
    iso_or_none,
    ordered_id,
)
from .projects import latest_build, live_deployment, record_build, services

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


async def deployment_view(cloud: Cloud, deployment: Deployment) -> dict[str, Any]:
    """A deployment as the tools show it (its record carries its build's commit already)."""
    return {
        "id": deployment.id,
        "project_id": deployment.project_id,
        "status": deployment.status,
        "ref": deployment.ref,
        "build_id": deployment.build_id,
        "commit_sha": deployment.commit_sha,
        "source": deployment.source,
        "previous_id": deployment.previous_id,
        "created_at": iso(deployment.created_at),
        "updated_at": iso(deployment.updated_at),
        "live_at": iso_or_none(deployment.live_at),
    }


async def _deployment(cloud: Cloud, deployment_id: str, tx: Repos | None = None) -> Deployment:
    """A deployment this call made or found; gone only when its project was destroyed
    meanwhile (its deployments go with it)."""
    found = await (tx or cloud.reads).deployments.by_id(deployment_id)
    if found is None:
        raise Conflict(
            f"Deployment '{deployment_id}' no longer exists: its project was destroyed while "
            "this call ran."
        )
    return found


async def find(cloud: Cloud, project: Project, deployment_id: str) -> Deployment:
    found = await cloud.reads.deployments.of_project(project.id, deployment_id)
    if found is None:
        raise NotFound(
            f"No deployment '{deployment_id}' in project '{project.name}'; list_deployments "
            "shows its deployments."
        )
    return found


async def latest(cloud: Cloud, project_id: str) -> Deployment | None:
    return await cloud.reads.deployments.latest(project_id)


async def reap(cloud: Cloud, project_id: str) -> None:
    """Finishes what a cut-off pipeline left behind: its deployment (still queued or building)
    is marked failed, and its repo link run ends as its deployment did."""
    cutoff = cloud.clock() - STALE_SECONDS
    stale = await cloud.reads.deployments.stale_ids(project_id, cutoff)
    runs = await cloud.reads.links.stale_runs(project_id, cutoff)
    if not stale and not runs:
        return
    async with cloud.transaction(upkeep=True) as tx:
        # Looked up again inside the write: another call may have finished them meanwhile.
        for deployment_id in await tx.deployments.stale_ids(project_id, cutoff):
            await transition(
                cloud, tx, deployment_id, Status.FAILED, " (abandoned: its pipeline stopped)"
            )
        for run in await tx.links.stale_runs(project_id, cutoff):
            ended = run.deployment_status
            ok = ended not in (None, Status.QUEUED, Status.BUILDING, Status.FAILED)
            await finish_run(cloud, tx, run.id, "succeeded" if ok else "failed")


async def finish_run(cloud: Cloud, tx: Repos, run_id: str, outcome: str) -> None:
    """Ends a repo link run (inside the caller's transaction) as `outcome`."""
    await tx.links.finish_run(run_id, outcome, cloud.clock())


async def list_deployments(cloud: Cloud, project: Project) -> list[dict[str, Any]]:
    await reap(cloud, project.id)
    found = await cloud.reads.deployments.deployments(project.id)
    return [await deployment_view(cloud, d) for d in found]


async def status(cloud: Cloud, project: Project, deployment_id: str | None) -> dict[str, Any]:
    """A given deployment, else the live one, else the latest; with the services' state."""
    await reap(cloud, project.id)
    current = await live_deployment(cloud, project.id)
    if deployment_id is not None:
        shown: Deployment | None = await find(cloud, project, deployment_id)
    else:
        shown = current or await latest(cloud, project.id)
    return {
        "project": project.name,
        "project_id": project.id,
        "live_deployment_id": None if current is None else current.id,
        "deployment": None if shown is None else await deployment_view(cloud, shown),
        "services": await services(cloud, project.id),
    }


# --- the machine -------------------------------------------------------------------------


async def transition(
    cloud: Cloud, tx: Repos, deployment_id: str, to: Status, note: str = ""
) -> None:
    """Moves a deployment to `to` (inside the caller's transaction) if the table allows it,
    and writes a log line for each service of its project."""
    deployment = await _deployment(cloud, deployment_id, tx)
    current = Status(deployment.status)
    if to not in TRANSITIONS[current]:
        raise Conflict(f"Deployment '{deployment_id}' is {current} and cannot become {to}.")
    now = cloud.clock()
    live_at = now if to is Status.LIVE else deployment.live_at
    await tx.deployments.set_status(deployment_id, to.value, now, live_at)
    await arrive(cloud, tx, deployment, to, note)


async def arrive(
    cloud: Cloud, tx: Repos, deployment: Deployment, to: Status, note: str = ""
) -> None:
    level, verb = ARRIVAL[to]
    sha = deployment.commit_sha
    what = deployment.ref if sha is None else f"{deployment.ref}@{sha[:7]}"
    message = f"Deployment {deployment.id} ({what}) {verb}{note}."
    for name in await cloud.service_names(deployment.project_id, tx):
        await cloud.log(tx, deployment.project_id, name, level, message)


async def _go_live(cloud: Cloud, tx: Repos, project_id: str, deployment_id: str) -> bool:
    """Promotes a ready deployment: the one live before it is superseded and remembered as
    this one's previous, and every service runs.  False, changing nothing, when another call
    promoted it meanwhile (read inside the write: superseding a deployment by itself would
    lose what a rollback returns to)."""
    status = (await _deployment(cloud, deployment_id, tx)).status
    if status == Status.LIVE:
        return False
    if status != Status.READY:
        raise _not_ready(deployment_id, status)
    before = await live_deployment(cloud, project_id, tx)
    if before is not None:
        await transition(cloud, tx, before.id, Status.SUPERSEDED)
        await tx.deployments.set_previous(deployment_id, before.id)
    await transition(cloud, tx, deployment_id, Status.LIVE)
    await tx.projects.set_services_status(project_id, "running")
    return True


def _not_ready(deployment_id: str, status: str) -> Conflict:
    return Conflict(
        f"Deployment '{deployment_id}' is {status}, and only a ready deployment can be "
        "finalized; deploy its ref again to ship it."
    )


async def queue(cloud: Cloud, tx: Repos, project_id: str, build: Build, source: str) -> str:
    """A new deployment of `build`, queued (inside the caller's transaction)."""
    now = cloud.clock()
    deployment = Deployment(
        ordered_id("dep"),
        project_id,
        build.id,
        build.ref,
        Status.QUEUED.value,
        source,
        now,
        now,
        None,
        None,
        build.commit_sha,
    )
    await tx.deployments.add(deployment)
    await arrive(cloud, tx, deployment, Status.QUEUED)
    return deployment.id


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
            async with cloud.transaction() as tx:
                if stage is Status.LIVE:
                    await _go_live(cloud, tx, project_id, deployment_id)
                else:
                    await transition(cloud, tx, deployment_id, stage)
            step += 1
            await progress(step, total, f"Deployment {deployment_id} is {stage}.")
    except BaseException:
        # Shielded: when what interrupted the pipeline is a cancellation, the write that
        # records it must not be cancelled in turn.
        with anyio.CancelScope(shield=True):
            await fail(cloud, deployment_id, " (interrupted)")
        raise


async def fail(cloud: Cloud, deployment_id: str, note: str) -> None:
    # Not `cloud.transaction()`: an interrupted deployment is marked failed even when what
    # interrupted it is the caller losing the right to act.
    async with cloud.store.transaction() as tx:
        found = await tx.deployments.by_id(deployment_id)
        if found is not None and Status.FAILED in TRANSITIONS[Status(found.status)]:
            await transition(cloud, tx, deployment_id, Status.FAILED, note)


async def build_to_deploy(cloud: Cloud, tx: Repos, project: Project, ref: str | None) -> Build:
    """The latest build, or a new build of `ref` (inside the caller's transaction)."""
    if ref is not None:
        return await record_build(cloud, tx, project.id, ref)
    found = await latest_build(cloud, project.id, tx)
    if found is None:
        raise Conflict(f"Project '{project.name}' has no build yet; pass ref to build one.")
    return found


async def deploy(
    cloud: Cloud,
    project: Project,
    ref: str | None,
    promote: bool,
    progress: Progress,
) -> dict[str, Any]:
    if ref is not None:
        check_ref(ref)
    total = 4 if promote else 3
    async with cloud.transaction() as tx:
        build = await build_to_deploy(cloud, tx, project, ref)
        deployment_id = await queue(cloud, tx, project.id, build, "manual")
    short = f"{build.ref}@{build.commit_sha[:7]}"
    await progress(1, total, f"Deployment {deployment_id} of {short} is queued.")
    await advance(cloud, project.id, deployment_id, promote, progress, 1, total)
    return await outcome(cloud, project, deployment_id, promoted=promote)


async def outcome(
    cloud: Cloud, project: Project, deployment_id: str, promoted: bool
) -> dict[str, Any]:
    """A deployment after this call; `superseded_deployment_id` is the one this call took
    offline by promoting it (None when it promoted nothing)."""
    deployment = await _deployment(cloud, deployment_id)
    return {
        "deployment_id": deployment_id,
        "status": deployment.status,
        "superseded_deployment_id": deployment.previous_id if promoted else None,
        "deployment": await deployment_view(cloud, deployment),
        "services": await services(cloud, project.id),
    }


async def finalize(cloud: Cloud, project: Project, deployment_id: str) -> dict[str, Any]:
    found = await find(cloud, project, deployment_id)
    if found.status == Status.LIVE:
        return await outcome(cloud, project, deployment_id, promoted=False)
    if found.status != Status.READY:
        raise _not_ready(deployment_id, found.status)
    async with cloud.transaction() as tx:
        promoted = await _go_live(cloud, tx, project.id, deployment_id)
    return await outcome(cloud, project, deployment_id, promoted=promoted)


async def rollback(cloud: Cloud, project: Project) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        # What is live, and what was before it, read inside the write: a deploy or another
        # rollback that lands first changes both.
        current = await live_deployment(cloud, project.id, tx)
        if current is None:
            raise Conflict(
                f"Project '{project.name}' has no live deployment to roll back; deploy first."
            )
        target = await _rollback_target(tx, current)
        await transition(cloud, tx, current.id, Status.ROLLED_BACK)
        await transition(cloud, tx, target.id, Status.LIVE, f" again, replacing {current.id}")
        await tx.projects.set_services_status(project.id, "running")
    return {
        "deployment_id": target.id,
        "rolled_back_deployment_id": current.id,
        "deployment": await deployment_view(cloud, await _deployment(cloud, target.id)),
        "services": await services(cloud, project.id),
    }


async def _rollback_target(tx: Repos, current: Deployment) -> Deployment:
    """The superseded deployment that was live before `current`."""
    target = None
    if current.previous_id is not None:
        target = await tx.deployments.superseded(current.previous_id)
    if target is None:
        raise Conflict(
            f"Deployment '{current.id}' has no earlier live deployment to return to; "
            "deploy the ref you want instead."
        )
    return target


async def service_row(
    cloud: Cloud, project: Project, name: str, tx: Repos | None = None
) -> Service:
    found = await (tx or cloud.reads).projects.service(project.id, name)
    if found is None:
        names = ", ".join(await cloud.service_names(project.id, tx))
        raise NotFound(
            f"No service '{name}' in project '{project.name}'; its services are {names}."
        )
    return found


async def restart(cloud: Cloud, project: Project, service: str | None) -> dict[str, Any]:
    names = (
        await cloud.service_names(project.id)
        if service is None
        else [(await service_row(cloud, project, service)).name]
    )
    now = cloud.clock()
    async with cloud.transaction() as tx:
        # Read inside the write: a tear-down that lands first leaves nothing to restart.
        current = await live_deployment(cloud, project.id, tx)
        if current is None:
            raise Conflict(
                f"Project '{project.name}' has no live deployment, so nothing is running to "
                "restart; deploy first."
            )
        for name in names:
            await _restart_service(cloud, tx, project, name, current.id, now)
    return {
        "project": project.name,
        "deployment_id": current.id,
        "restarted": names,
        "restarted_at": iso(now),
        "services": await services(cloud, project.id),
    }


async def _restart_service(
    cloud: Cloud,
    tx: Repos,
    project: Project,
    name: str,
    deployment_id: str,
    now: float,
) -> None:
    found = await service_row(cloud, project, name, tx)
    await tx.projects.mark_restarted(found.id, now)
    message = f"Restarting {found.replicas} replica(s) of {name} on deployment {deployment_id}."
    await cloud.log(tx, project.id, name, "info", message)
    await cloud.log(tx, project.id, name, "info", f"Service {name} restarted.")


def bounds(plan: str) -> tuple[int, int]:
    return REPLICA_BOUNDS.get(plan, REPLICA_BOUNDS["hobby"])


def _check_replicas(plan: str, replicas: int) -> tuple[int, int]:
    """The plan's bounds, which `replicas` must be within."""
    low, high = bounds(plan)
    if not low <= replicas <= high:
        raise Invalid(
            f"Replicas must be between {low} and {high} on the {plan} plan; choose a value in "
            "that range or change the plan."
        )
    return low, high


async def scale(
    cloud: Cloud, tenant: Tenant, project: Project, service: str, replicas: int
) -> dict[str, Any]:
    found = await service_row(cloud, project, service)
    plan = tenant.plan
    low, high = _check_replicas(plan, replicas)
    previous = found.replicas
    if previous != replicas:
        async with cloud.transaction() as tx:
            # The plan and the replicas read again inside the write: a plan change that lands
            # first bounds this call, as this call's replicas bound the plan change.
            plan = await tx.billing.plan(tenant.id) or plan
            low, high = _check_replicas(plan, replicas)
            previous = await _set_replicas(cloud, tx, project, service, replicas)
    return {
        "project": project.name,
        "service": service,
        "replicas": replicas,
        "previous_replicas": previous,
        "plan": plan,
        "min_replicas": low,
        "max_replicas": high,
    }


async def _set_replicas(
    cloud: Cloud, tx: Repos, project: Project, service: str, replicas: int
) -> int:
    """The service's replicas before (inside the caller's transaction)."""
    found = await service_row(cloud, project, service, tx)
    if found.replicas != replicas:
        await tx.projects.set_replicas(found.id, replicas)
        message = f"Scaled {service} from {found.replicas} to {replicas} replica(s)."
        await cloud.log(tx, project.id, service, "info", message)
    return found.replicas


def _require_tear_down(tenant: Tenant) -> None:
    tenant.require_role("admin", "tear down a project")


async def tear_down_description(cloud: Cloud, tenant: Tenant, project: Project) -> str | None:
    """What tearing down would stop (None when nothing is running), for a caller who may tear
    the project down."""
    _require_tear_down(tenant)
    running = await cloud.reads.projects.running_service_names(project.id)
    current = await live_deployment(cloud, project.id)
    if current is None and not running:
        return None
    parts = []
    if running:
        parts.append(f"stop services {', '.join(running)}")
    if current is not None:
        parts.append(f"take deployment {current.id} offline")
    return f"tear down project '{project.name}': {' and '.join(parts)}"


async def tear_down(cloud: Cloud, tenant: Tenant, project: Project) -> dict[str, Any]:
    _require_tear_down(tenant)
    current = await live_deployment(cloud, project.id)
    stopped = await cloud.reads.projects.running_service_names(project.id)
    if current is not None or stopped:
        async with cloud.transaction() as tx:
            # Read again inside the write, which stops exactly what is running by then.
            current = await live_deployment(cloud, project.id, tx)
            stopped = await tx.projects.running_service_names(project.id)
            if current is not None:
                await transition(cloud, tx, current.id, Status.TORN_DOWN)
            await tx.projects.set_services_status(project.id, "stopped")
            for name in stopped:
                await cloud.log(tx, project.id, name, "warning", f"Service {name} stopped.")
    return {
        "project": project.name,
        "torn_down_deployment_id": None if current is None else current.id,
        "stopped_services": stopped,
        "services": await services(cloud, project.id),
    }
