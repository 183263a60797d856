"""Repo links: a project linked to a git repository branch, and the runs that build it.

A run is one build of the linked branch: it records a build and deploys it through the same
pipeline as `deploy` (queued -> building -> ready -> live), promoting it to live when the link
has auto_deploy on, and stopping at ready otherwise (finalize_deployment promotes it).

Unlinking removes the link only.  The runs stay: they are the history of what was built and
which deployments they produced (those deployments stay too), list_repo_link_runs still shows
them, and a later set_up_repo_link continues that history.  They go with the project.

Who may do what: any member of a tenant may set up, update and trigger a link; unlinking needs
a team admin or owner.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from ..store.repos import Repos
from ..store.repos.links import Link, Run
from ..store.repos.projects import Project
from .base import Cloud, Conflict, Invalid, Tenant, iso, iso_or_none, ordered_id
from .deployments import Progress, advance, check_ref, deployment_view, queue, reap
from .projects import record_build


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_SEGMENT = r"[A-Za-z0-9_.-]{1,100}"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_REPO_URLS = (
    re.compile(rf"https://github\.com/{_SEGMENT}/{_SEGMENT}(?:\.git)?/?"),
    re.compile(rf"https://gitlab\.com/{_SEGMENT}(?:/{_SEGMENT}){{1,19}}(?:\.git)?/?"),
    re.compile(rf"git@{_HOST}:{_SEGMENT}(?:/{_SEGMENT}){{1,19}}\.git"),
)
URL_RULE = (
    "use https://github.com/owner/repo, https://gitlab.com/group/repo or git@host:owner/repo.git"
)


def valid_repo_url(url: str) -> bool:
    if len(url) > 512 or ".." in url or not any(form.fullmatch(url) for form in _REPO_URLS):
        return False
    path = url.split(":", 1)[1] if url.startswith("git@") else url[len("https://") :]
    return "." not in path.rstrip("/").split("/")


def check_repo_url(url: str) -> str:
    if not valid_repo_url(url):
        raise Invalid(f"Repository URL '{url}' is not supported: {URL_RULE}.")
    return url


def provider(url: str) -> str:
    if url.startswith("https://github.com/"):
        return "github"
    if url.startswith("https://gitlab.com/"):
        return "gitlab"
    return url[len("git@") : url.index(":")]


# --- views -------------------------------------------------------------------------------


def run_view(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "branch": run.branch,
        "commit_sha": run.commit_sha,
        "deployment_id": run.deployment_id,
        "created_at": iso(run.created_at),
        "finished_at": iso_or_none(run.finished_at),
    }


def link_view(link: Link) -> dict[str, Any]:
    return {
        "repo_url": link.repo_url,
        "provider": provider(link.repo_url),
        "branch": link.branch,
        "auto_deploy": link.auto_deploy,
        "created_at": iso(link.created_at),
        "updated_at": iso(link.updated_at),
    }


async def _require_link(cloud: Cloud, project: Project, tx: Repos | None = None) -> Link:
    found = await (tx or cloud.reads).links.link(project.id)
    if found is None:
        raise Conflict(
            f"Project '{project.name}' has no repo link; set_up_repo_link links one first."
        )
    return found


async def status(cloud: Cloud, project: Project) -> dict[str, Any]:
    await reap(cloud, project.id)
    link = await cloud.reads.links.link(project.id)
    last = await cloud.reads.links.last_run(project.id)
    return {
        "project": project.name,
        "project_id": project.id,
        "linked": link is not None,
        "link": None if link is None else link_view(link),
        "last_run": None if last is None else run_view(last),
    }


async def runs(cloud: Cloud, project: Project) -> list[dict[str, Any]]:
    await reap(cloud, project.id)
    return [run_view(r) for r in await cloud.reads.links.runs(project.id)]


# --- operations --------------------------------------------------------------------------


async def set_up(
    cloud: Cloud, project: Project, repo_url: str, branch: str, auto_deploy: bool
) -> dict[str, Any]:
    """Links the project; setting up the same link again changes nothing."""
    check_repo_url(repo_url)
    check_ref(branch, "Branch")
    # Looked up inside the write: another process may link the project meanwhile.
    async with cloud.transaction() as tx:
        existing = await tx.links.link(project.id)
        if existing is None:
            await _link_now(cloud, tx, project, (repo_url, branch, auto_deploy))
        elif _settings(existing) != (repo_url, branch, auto_deploy):
            raise Conflict(
                f"Project '{project.name}' is already linked to {existing.repo_url}; "
                "use update_repo_link to change it, or unlink_repo first to link another "
                "repository."
            )
    return await status(cloud, project)


async def _link_now(
    cloud: Cloud, tx: Repos, project: Project, settings: tuple[str, str, bool]
) -> None:
    repo_url, branch, auto_deploy = settings
    now = cloud.clock()
    await tx.links.add_link(Link(project.id, repo_url, branch, auto_deploy, now, now))
    message = f"Linked to {repo_url} ({branch}); auto-deploy {_on_off(auto_deploy)}."
    await cloud.log(tx, project.id, None, "info", message)


def _settings(link: Link) -> tuple[str, str, bool]:
    return link.repo_url, link.branch, link.auto_deploy


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


async def update(
    cloud: Cloud, project: Project, branch: str | None, auto_deploy: bool | None
) -> dict[str, Any]:
    if branch is None and auto_deploy is None:
        raise Invalid("Pass branch or auto_deploy (or both) to change the repo link.")
    if branch is not None:
        check_ref(branch, "Branch")
    async with cloud.transaction() as tx:
        link = await _require_link(cloud, project, tx)
        new_branch = link.branch if branch is None else branch
        new_auto = link.auto_deploy if auto_deploy is None else auto_deploy
        if (new_branch, new_auto) != (link.branch, link.auto_deploy):
            await tx.links.update_link(project.id, new_branch, new_auto, cloud.clock())
            message = f"Repo link updated: branch {new_branch}; auto-deploy {_on_off(new_auto)}."
            await cloud.log(tx, project.id, None, "info", message)
    return await status(cloud, project)


def _require_unlinker(tenant: Tenant) -> None:
    tenant.require_role("admin", "unlink a repository")


async def unlink_description(cloud: Cloud, tenant: Tenant, project: Project) -> str:
    """What unlinking changes, for a caller who may unlink."""
    _require_unlinker(tenant)
    link = await _require_link(cloud, project)
    return f"unlink project '{project.name}' from {link.repo_url} ({link.branch})"


async def unlink(cloud: Cloud, tenant: Tenant, project: Project) -> dict[str, Any]:
    _require_unlinker(tenant)
    async with cloud.transaction() as tx:
        link = await _require_link(cloud, project, tx)
        await tx.links.remove_link(project.id)
        await cloud.log(tx, project.id, None, "warning", f"Unlinked from {link.repo_url}.")
        kept = await tx.links.count_runs(project.id)
    return {
        "project": project.name,
        "unlinked": True,
        "repo_url": link.repo_url,
        "branch": link.branch,
        "runs_kept": kept,
    }


async def trigger(
    cloud: Cloud, project: Project, ref: str | None, progress: Progress
) -> dict[str, Any]:
    """A run of the linked branch (or `ref`): a build, and a deployment through the deploy
    pipeline, promoted to live when the link auto-deploys."""
    await _require_link(cloud, project)
    if ref is not None:
        check_ref(ref)
    started, fetched, promote = await _start_run(cloud, project, ref)
    total = 5 if promote else 4
    assert started.deployment_id is not None
    deployment_id = started.deployment_id
    await progress(
        1, total, f"Run {started.id} fetched {fetched}; deployment {deployment_id} is queued."
    )
    try:
        await advance(cloud, project.id, deployment_id, promote, progress, 1, total)
    except BaseException:
        await _finish(cloud, project, started.id, RunStatus.FAILED)
        raise
    await _finish(cloud, project, started.id, RunStatus.SUCCEEDED)
    await progress(total, total, f"Run {started.id} succeeded.")
    return await _triggered(cloud, started.id, deployment_id)


async def _start_run(cloud: Cloud, project: Project, ref: str | None) -> tuple[Run, str, bool]:
    """Records a run of the link's branch (or `ref`) with its build and queued deployment;
    returns the run, what was fetched (branch@short-sha), and whether to promote it.  The
    link is read inside the write: an unlink or an update that lands first is what counts."""
    async with cloud.transaction() as tx:
        link = await _require_link(cloud, project, tx)
        branch = link.branch if ref is None else ref
        build = await record_build(cloud, tx, project.id, branch)
        deployment_id = await queue(cloud, tx, project.id, build, "repo_link")
        started = Run(
            ordered_id("run"),
            project.id,
            RunStatus.RUNNING.value,
            branch,
            build.commit_sha,
            deployment_id,
            cloud.clock(),
            None,
        )
        await tx.links.add_run(started)
        fetched = f"{branch}@{build.commit_sha[:7]}"
        message = f"Run {started.id} started: {fetched} from {link.repo_url}."
        await cloud.log(tx, project.id, None, "info", message)
    return started, fetched, link.auto_deploy


async def _triggered(cloud: Cloud, run_id: str, deployment_id: str) -> dict[str, Any]:
    run = await cloud.reads.links.run(run_id)
    deployment = await cloud.reads.deployments.by_id(deployment_id)
    if run is None or deployment is None:
        raise Conflict(
            f"Run '{run_id}' no longer exists: its project was destroyed while this call ran."
        )
    return {
        "run_id": run_id,
        "deployment_id": deployment_id,
        "run": run_view(run),
        "deployment": await deployment_view(cloud, deployment),
    }


async def _finish(cloud: Cloud, project: Project, run_id: str, outcome: RunStatus) -> None:
    async with cloud.transaction() as tx:
        await tx.links.finish_run(run_id, outcome.value, cloud.clock())
        level = "info" if outcome is RunStatus.SUCCEEDED else "error"
        await cloud.log(tx, project.id, None, level, f"Run {run_id} {outcome}.")
