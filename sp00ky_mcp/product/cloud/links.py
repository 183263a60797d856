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
import sqlite3
from enum import StrEnum
from typing import Any

from .base import Cloud, Conflict, Invalid, Tenant, iso, iso_or_none, new_id
from .deployments import Progress, advance, check_ref, deployment_view, finish_run, queue, reap
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


def run_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "branch": row["branch"],
        "commit_sha": row["commit_sha"],
        "deployment_id": row["deployment_id"],
        "created_at": iso(row["created_at"]),
        "finished_at": iso_or_none(row["finished_at"]),
    }


def link_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "repo_url": row["repo_url"],
        "provider": provider(row["repo_url"]),
        "branch": row["branch"],
        "auto_deploy": bool(row["auto_deploy"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _link(cloud: Cloud, project_id: str) -> sqlite3.Row | None:
    return cloud.store.one("SELECT * FROM repo_links WHERE project_id = ?", (project_id,))


def _require_link(cloud: Cloud, project: sqlite3.Row) -> sqlite3.Row:
    row = _link(cloud, project["id"])
    if row is None:
        raise Conflict(
            f"Project '{project['name']}' has no repo link; set_up_repo_link links one first."
        )
    return row


def status(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    reap(cloud, project["id"])
    link = _link(cloud, project["id"])
    last = cloud.store.one(
        "SELECT * FROM link_runs WHERE project_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (project["id"],),
    )
    return {
        "project": project["name"],
        "project_id": project["id"],
        "linked": link is not None,
        "link": None if link is None else link_view(link),
        "last_run": None if last is None else run_view(last),
    }


def runs(cloud: Cloud, project: sqlite3.Row) -> list[dict[str, Any]]:
    reap(cloud, project["id"])
    rows = cloud.store.all(
        "SELECT * FROM link_runs WHERE project_id = ? ORDER BY created_at DESC, rowid DESC",
        (project["id"],),
    )
    return [run_view(r) for r in rows]


# --- operations --------------------------------------------------------------------------


def set_up(
    cloud: Cloud, project: sqlite3.Row, repo_url: str, branch: str, auto_deploy: bool
) -> dict[str, Any]:
    """Links the project; setting up the same link again changes nothing."""
    check_repo_url(repo_url)
    check_ref(branch, "Branch")
    # Looked up under the write lock: another process may link the project meanwhile.
    with cloud.transaction() as db:
        existing = _link(cloud, project["id"])
        if existing is None:
            _link_now(cloud, db, project, (repo_url, branch, auto_deploy))
        elif _settings(existing) != (repo_url, branch, auto_deploy):
            raise Conflict(
                f"Project '{project['name']}' is already linked to {existing['repo_url']}; "
                "use update_repo_link to change it, or unlink_repo first to link another "
                "repository."
            )
    return status(cloud, project)


def _link_now(
    cloud: Cloud, db: sqlite3.Connection, project: sqlite3.Row, settings: tuple[str, str, bool]
) -> None:
    repo_url, branch, auto_deploy = settings
    now = cloud.clock()
    db.execute(
        "INSERT INTO repo_links (project_id, repo_url, branch, auto_deploy, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (project["id"], repo_url, branch, int(auto_deploy), now, now),
    )
    message = f"Linked to {repo_url} ({branch}); auto-deploy {_on_off(auto_deploy)}."
    cloud.log(db, project["id"], None, "info", message)


def _settings(link: sqlite3.Row) -> tuple[str, str, bool]:
    return link["repo_url"], link["branch"], bool(link["auto_deploy"])


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def update(
    cloud: Cloud, project: sqlite3.Row, branch: str | None, auto_deploy: bool | None
) -> dict[str, Any]:
    if branch is None and auto_deploy is None:
        raise Invalid("Pass branch or auto_deploy (or both) to change the repo link.")
    if branch is not None:
        check_ref(branch, "Branch")
    link = _require_link(cloud, project)
    _, old_branch, old_auto = _settings(link)
    new_branch = old_branch if branch is None else branch
    new_auto = old_auto if auto_deploy is None else auto_deploy
    if (new_branch, new_auto) != (old_branch, old_auto):
        with cloud.transaction() as db:
            db.execute(
                "UPDATE repo_links SET branch = ?, auto_deploy = ?, updated_at = ? "
                "WHERE project_id = ?",
                (new_branch, int(new_auto), cloud.clock(), project["id"]),
            )
            message = f"Repo link updated: branch {new_branch}; auto-deploy {_on_off(new_auto)}."
            cloud.log(db, project["id"], None, "info", message)
    return status(cloud, project)


def _require_unlinker(tenant: Tenant) -> None:
    tenant.require_role("admin", "unlink a repository")


def unlink_description(cloud: Cloud, tenant: Tenant, project: sqlite3.Row) -> str:
    """What unlinking changes, for a caller who may unlink."""
    _require_unlinker(tenant)
    link = _require_link(cloud, project)
    return f"unlink project '{project['name']}' from {link['repo_url']} ({link['branch']})"


def unlink(cloud: Cloud, tenant: Tenant, project: sqlite3.Row) -> dict[str, Any]:
    _require_unlinker(tenant)
    link = _require_link(cloud, project)
    with cloud.transaction() as db:
        db.execute("DELETE FROM repo_links WHERE project_id = ?", (project["id"],))
        cloud.log(db, project["id"], None, "warning", f"Unlinked from {link['repo_url']}.")
    return {
        "project": project["name"],
        "unlinked": True,
        "repo_url": link["repo_url"],
        "branch": link["branch"],
        "runs_kept": cloud.count("link_runs", project["id"]),
    }


async def trigger(
    cloud: Cloud, project: sqlite3.Row, ref: str | None, progress: Progress
) -> dict[str, Any]:
    """A run of the linked branch (or `ref`): a build, and a deployment through the deploy
    pipeline, promoted to live when the link auto-deploys."""
    link = _require_link(cloud, project)
    branch = link["branch"] if ref is None else check_ref(ref)
    promote = bool(link["auto_deploy"])
    total = 5 if promote else 4
    run_id, deployment_id, fetched = _start_run(cloud, project, link, branch)
    await progress(
        1, total, f"Run {run_id} fetched {fetched}; deployment {deployment_id} is queued."
    )
    try:
        await advance(cloud, project["id"], deployment_id, promote, progress, 1, total)
    except BaseException:
        _finish(cloud, project, run_id, RunStatus.FAILED)
        raise
    _finish(cloud, project, run_id, RunStatus.SUCCEEDED)
    await progress(total, total, f"Run {run_id} succeeded.")
    return _triggered(cloud, run_id, deployment_id)


def _start_run(
    cloud: Cloud, project: sqlite3.Row, link: sqlite3.Row, branch: str
) -> tuple[str, str, str]:
    """Records a run with its build and queued deployment; returns the run's id, the
    deployment's id, and what was fetched (branch@short-sha)."""
    run_id = new_id("run")
    with cloud.transaction() as db:
        build = record_build(cloud, db, project["id"], branch)
        deployment_id = queue(cloud, db, project["id"], build, "repo_link")
        db.execute(
            "INSERT INTO link_runs (id, project_id, status, branch, commit_sha, deployment_id, "
            "created_at) VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (run_id, project["id"], branch, build["commit_sha"], deployment_id, cloud.clock()),
        )
        fetched = f"{branch}@{build['commit_sha'][:7]}"
        message = f"Run {run_id} started: {fetched} from {link['repo_url']}."
        cloud.log(db, project["id"], None, "info", message)
    return run_id, deployment_id, fetched


def _triggered(cloud: Cloud, run_id: str, deployment_id: str) -> dict[str, Any]:
    run = cloud.store.one("SELECT * FROM link_runs WHERE id = ?", (run_id,))
    deployment = cloud.store.one("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
    assert run is not None and deployment is not None
    return {
        "run_id": run_id,
        "deployment_id": deployment_id,
        "run": run_view(run),
        "deployment": deployment_view(cloud, deployment),
    }


def _finish(cloud: Cloud, project: sqlite3.Row, run_id: str, outcome: RunStatus) -> None:
    with cloud.transaction() as db:
        finish_run(cloud, db, run_id, outcome.value)
        level = "info" if outcome is RunStatus.SUCCEEDED else "error"
        cloud.log(db, project["id"], None, level, f"Run {run_id} {outcome}.")
