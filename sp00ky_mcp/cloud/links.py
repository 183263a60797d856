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

from .base import Cloud, Conflict, Invalid, Tenant, new_id
from .deployments import Progress, advance, check_ref, deployment_view, queue, reap
from .projects import iso, iso_or_none, record_build


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
    existing = _link(cloud, project["id"])
    if existing is not None:
        same = (existing["repo_url"], existing["branch"], bool(existing["auto_deploy"])) == (
            repo_url,
            branch,
            auto_deploy,
        )
        if not same:
            raise Conflict(
                f"Project '{project['name']}' is already linked to {existing['repo_url']}; use "
                "update_repo_link to change it, or unlink_repo first to link another repository."
            )
        return status(cloud, project)
    now = cloud.clock()
    with cloud.store.transaction() as db:
        db.execute(
            "INSERT INTO repo_links (project_id, repo_url, branch, auto_deploy, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (project["id"], repo_url, branch, int(auto_deploy), now, now),
        )
        cloud.log(
            db,
            project["id"],
            None,
            "info",
            f"Linked to {repo_url} ({branch}); auto-deploy {'on' if auto_deploy else 'off'}.",
        )
    return status(cloud, project)


def update(
    cloud: Cloud, project: sqlite3.Row, branch: str | None, auto_deploy: bool | None
) -> dict[str, Any]:
    if branch is None and auto_deploy is None:
        raise Invalid("Pass branch or auto_deploy (or both) to change the repo link.")
    if branch is not None:
        check_ref(branch, "Branch")
    link = _require_link(cloud, project)
    new_branch = link["branch"] if branch is None else branch
    new_auto = bool(link["auto_deploy"]) if auto_deploy is None else auto_deploy
    if (new_branch, new_auto) != (link["branch"], bool(link["auto_deploy"])):
        with cloud.store.transaction() as db:
            db.execute(
                "UPDATE repo_links SET branch = ?, auto_deploy = ?, updated_at = ? "
                "WHERE project_id = ?",
                (new_branch, int(new_auto), cloud.clock(), project["id"]),
            )
            cloud.log(
                db,
                project["id"],
                None,
                "info",
                f"Repo link updated: branch {new_branch}; auto-deploy "
                f"{'on' if new_auto else 'off'}.",
            )
    return status(cloud, project)


def unlink_description(cloud: Cloud, project: sqlite3.Row) -> str:
    link = _require_link(cloud, project)
    return f"unlink project '{project['name']}' from {link['repo_url']} ({link['branch']})"


def unlink(cloud: Cloud, tenant: Tenant, project: sqlite3.Row) -> dict[str, Any]:
    cloud.require_role(tenant, "admin", "unlink a repository")
    link = _require_link(cloud, project)
    with cloud.store.transaction() as db:
        db.execute("DELETE FROM repo_links WHERE project_id = ?", (project["id"],))
        cloud.log(db, project["id"], None, "warning", f"Unlinked from {link['repo_url']}.")
    kept = cloud.store.one(
        "SELECT count(*) AS n FROM link_runs WHERE project_id = ?", (project["id"],)
    )
    return {
        "project": project["name"],
        "unlinked": True,
        "repo_url": link["repo_url"],
        "branch": link["branch"],
        "runs_kept": 0 if kept is None else int(kept["n"]),
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
    run_id = new_id("run")
    with cloud.store.transaction() as db:
        build_id = record_build(cloud, db, project["id"], branch)
        build = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        deployment_id = queue(cloud, db, project["id"], build, "repo_link")
        db.execute(
            "INSERT INTO link_runs (id, project_id, status, branch, commit_sha, deployment_id, "
            "created_at) VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (run_id, project["id"], branch, build["commit_sha"], deployment_id, cloud.clock()),
        )
        cloud.log(
            db,
            project["id"],
            None,
            "info",
            f"Run {run_id} started: {branch}@{build['commit_sha'][:7]} from {link['repo_url']}.",
        )
    await progress(
        1,
        total,
        f"Run {run_id} fetched {branch}@{build['commit_sha'][:7]}; deployment "
        f"{deployment_id} is queued.",
    )
    try:
        await advance(cloud, project["id"], deployment_id, promote, progress, 1, total)
    except BaseException:
        _finish(cloud, project, run_id, RunStatus.FAILED)
        raise
    _finish(cloud, project, run_id, RunStatus.SUCCEEDED)
    await progress(total, total, f"Run {run_id} succeeded.")
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
    with cloud.store.transaction() as db:
        db.execute(
            "UPDATE link_runs SET status = ?, finished_at = ? WHERE id = ?",
            (outcome.value, cloud.clock(), run_id),
        )
        level = "info" if outcome is RunStatus.SUCCEEDED else "error"
        cloud.log(db, project["id"], None, level, f"Run {run_id} {outcome}.")
