"""Tools of the 'links' area: a project's repo link, its runs, and builds it triggers."""

from __future__ import annotations

from typing import Any

from ..cloud import links
from .base import CURSOR, MEMBERS, PROJECT, Call, Spec, limit, list_of, nullable, obj, text
from .deployments import DEPLOYMENT, REF

BRANCH = text(255, "The git branch to build, e.g. main (git ref-name rules).")
AUTO_DEPLOY = {
    "type": "boolean",
    "description": "Make each successful build live automatically; when false, builds stop "
    "at ready and finalize_deployment promotes them.",
}
RUN = obj(
    {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in links.RunStatus]},
        "branch": {"type": "string"},
        "commit_sha": {"type": "string"},
        "deployment_id": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "finished_at": {"type": ["string", "null"]},
    }
)
LINK = obj(
    {
        "repo_url": {"type": "string"},
        "provider": {"type": "string"},
        "branch": {"type": "string"},
        "auto_deploy": {"type": "boolean"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    }
)
STATUS = obj(
    {
        "project": {"type": "string"},
        "project_id": {"type": "string"},
        "linked": {"type": "boolean"},
        "link": nullable(LINK),
        "last_run": nullable(RUN),
    }
)
TRIGGERED = obj(
    {
        "run_id": {"type": "string"},
        "deployment_id": {"type": "string"},
        "run": RUN,
        "deployment": DEPLOYMENT,
    }
)
UNLINKED = obj(
    {
        "project": {"type": "string"},
        "unlinked": {"type": "boolean", "const": True},
        "repo_url": {"type": "string"},
        "branch": {"type": "string"},
        "runs_kept": {"type": "integer"},
    }
)


async def get_repo_link(call: Call) -> dict[str, Any]:
    return await links.status(call.cloud, await call.project())


GET_REPO_LINK = Spec(
    name="get_repo_link",
    scope="links:read",
    title="Get repo link status",
    description=(
        "Show whether a project is linked to a git repository: the repo URL, branch, "
        "auto-deploy flag and the last run. Use it before set_up_repo_link or "
        "trigger_build. " + MEMBERS
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=STATUS,
    handler=get_repo_link,
    read_only=True,
    idempotent=True,
)


async def list_repo_link_runs(call: Call) -> dict[str, Any]:
    return call.page(await links.runs(call.cloud, await call.project()), 20)


LIST_REPO_LINK_RUNS = Spec(
    name="list_repo_link_runs",
    scope="links:read",
    title="List repo link runs",
    description=(
        "List a project's repo link runs (builds of the linked branch), newest first, "
        "with status, commit and the deployment each produced. Runs stay listed after "
        "unlink_repo. " + MEMBERS
    ),
    arguments={"project": PROJECT, "cursor": CURSOR, "limit": limit(20, 100)},
    required=("project",),
    output=list_of(RUN),
    handler=list_repo_link_runs,
    read_only=True,
    idempotent=True,
)


async def set_up_repo_link(call: Call) -> dict[str, Any]:
    args = call.args
    return await links.set_up(
        call.cloud,
        await call.project(),
        args["repo_url"],
        args.get("branch", "main"),
        bool(args.get("auto_deploy", True)),
    )


SET_UP_REPO_LINK = Spec(
    name="set_up_repo_link",
    scope="links:write",
    title="Link a git repository",
    description=(
        "Link a project to a git repository branch so builds come from it: repo_url is "
        "https://github.com/owner/repo, https://gitlab.com/group/repo or "
        "git@host:owner/repo.git; branch defaults to main; auto_deploy (default true) "
        "makes each build live. Setting up the same link again changes nothing; to "
        "change it use update_repo_link. " + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "repo_url": text(
            512,
            "https://github.com/owner/repo, https://gitlab.com/group/repo or "
            "git@host:owner/repo.git.",
        ),
        "branch": {**BRANCH, "default": "main"},
        "auto_deploy": {**AUTO_DEPLOY, "default": True},
    },
    required=("project", "repo_url"),
    output=STATUS,
    handler=set_up_repo_link,
    idempotent=True,
)


async def update_repo_link(call: Call) -> dict[str, Any]:
    args = call.args
    return await links.update(
        call.cloud, await call.project(), args.get("branch"), args.get("auto_deploy")
    )


UPDATE_REPO_LINK = Spec(
    name="update_repo_link",
    scope="links:write",
    title="Update a repo link",
    description=(
        "Change a linked project's branch and/or auto_deploy flag (pass at least one). " + MEMBERS
    ),
    arguments={"project": PROJECT, "branch": BRANCH, "auto_deploy": AUTO_DEPLOY},
    required=("project",),
    output=STATUS,
    handler=update_repo_link,
    idempotent=True,
)


async def trigger_build(call: Call) -> dict[str, Any]:
    return await links.trigger(
        call.cloud, await call.project(), call.args.get("ref"), call.ctx.progress
    )


TRIGGER_BUILD = Spec(
    name="trigger_build",
    scope="links:write",
    title="Trigger a build",
    description=(
        "Build a linked project's branch now (or ref) and deploy it through the same "
        "pipeline as deploy, reporting progress: live when the link auto-deploys, else "
        "ready for finalize_deployment. Returns the run id (list_repo_link_runs) and "
        "the deployment id (get_deployment_status). " + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "ref": {**REF, "description": "Build this git ref instead of the linked branch."},
    },
    required=("project",),
    output=TRIGGERED,
    handler=trigger_build,
)


async def unlink_repo(call: Call) -> dict[str, Any]:
    project = await call.project()
    await call.confirm(await links.unlink_description(call.cloud, call.tenant, project))
    return await links.unlink(call.cloud, call.tenant, project)


UNLINK_REPO = Spec(
    name="unlink_repo",
    scope="links:write",
    title="Unlink the repository",
    description=(
        "Remove a project's repo link so no more builds come from it. Past runs and the "
        "deployments they produced stay (list_repo_link_runs still shows them). Asks "
        "the user to confirm when the client supports it. Needs an admin or owner in a "
        "team."
    ),
    arguments={"project": PROJECT},
    required=("project",),
    output=UNLINKED,
    handler=unlink_repo,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        GET_REPO_LINK,
        LIST_REPO_LINK_RUNS,
        SET_UP_REPO_LINK,
        UPDATE_REPO_LINK,
        TRIGGER_BUILD,
        UNLINK_REPO,
    )
