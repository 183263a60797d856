"""Repo links (a project linked to a git repository branch) and their runs (builds of it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class Link:
    project_id: str
    repo_url: str
    branch: str
    auto_deploy: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    project_id: str
    status: str
    branch: str
    commit_sha: str
    deployment_id: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class StaleRun:
    """A run still running, with the status of its deployment (None once that is gone)."""

    id: str
    deployment_status: str | None


def _link(row: Row) -> Link:
    return Link(
        row["project_id"],
        row["repo_url"],
        row["branch"],
        bool(row["auto_deploy"]),
        float(row["created_at"]),
        float(row["updated_at"]),
    )


def _run(row: Row) -> Run:
    finished = row["finished_at"]
    return Run(
        row["id"],
        row["project_id"],
        row["status"],
        row["branch"],
        row["commit_sha"],
        row["deployment_id"],
        float(row["created_at"]),
        None if finished is None else float(finished),
    )


_LINK = "SELECT project_id, repo_url, branch, auto_deploy, created_at, updated_at FROM repo_links"
_RUN = (
    "SELECT id, project_id, status, branch, commit_sha, deployment_id, created_at, finished_at "
    "FROM link_runs"
)
# Run ids sort by when they were made (`cloud.projects.ordered_id`), which breaks ties
# between runs started within the same clock reading.
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


class LinksRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- links ---------------------------------------------------------------------------

    async def link(self, project_id: str) -> Link | None:
        row = await self.db.one(f"{_LINK} WHERE project_id = ?", project_id)
        return None if row is None else _link(row)

    async def add_link(self, link: Link) -> None:
        await self.db.run(
            "INSERT INTO repo_links (project_id, repo_url, branch, auto_deploy, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            link.project_id,
            link.repo_url,
            link.branch,
            int(link.auto_deploy),
            float(link.created_at),
            float(link.updated_at),
        )

    async def update_link(
        self, project_id: str, branch: str, auto_deploy: bool, updated_at: float
    ) -> int:
        return await self.db.run(
            "UPDATE repo_links SET branch = ?, auto_deploy = ?, updated_at = ? "
            "WHERE project_id = ?",
            branch,
            int(auto_deploy),
            float(updated_at),
            project_id,
        )

    async def remove_link(self, project_id: str) -> int:
        return await self.db.run("DELETE FROM repo_links WHERE project_id = ?", project_id)

    # --- runs ----------------------------------------------------------------------------

    async def run(self, run_id: str) -> Run | None:
        row = await self.db.one(f"{_RUN} WHERE id = ?", run_id)
        return None if row is None else _run(row)

    async def runs(self, project_id: str) -> list[Run]:
        """The project's runs, newest first."""
        rows = await self.db.all(f"{_RUN} WHERE project_id = ? {_NEWEST_FIRST}", project_id)
        return [_run(r) for r in rows]

    async def last_run(self, project_id: str) -> Run | None:
        row = await self.db.one(f"{_RUN} WHERE project_id = ? {_NEWEST_FIRST} LIMIT 1", project_id)
        return None if row is None else _run(row)

    async def count_runs(self, project_id: str) -> int:
        row = await self.db.one(
            "SELECT count(*) AS n FROM link_runs WHERE project_id = ?", project_id
        )
        return 0 if row is None else int(row["n"])

    async def add_run(self, run: Run) -> None:
        await self.db.run(
            "INSERT INTO link_runs (id, project_id, status, branch, commit_sha, deployment_id, "
            "created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            run.id,
            run.project_id,
            run.status,
            run.branch,
            run.commit_sha,
            run.deployment_id,
            float(run.created_at),
            None if run.finished_at is None else float(run.finished_at),
        )

    async def finish_run(self, run_id: str, status: str, at: float) -> int:
        """Ends a run as `status` at `at`."""
        return await self.db.run(
            "UPDATE link_runs SET status = ?, finished_at = ? WHERE id = ?",
            status,
            float(at),
            run_id,
        )

    async def stale_runs(self, project_id: str, cutoff: float) -> list[StaleRun]:
        """The project's runs still running that started before `cutoff`, each with its
        deployment's status: what a cut-off pipeline left behind."""
        rows = await self.db.all(
            "SELECT r.id, d.status FROM link_runs r "
            "LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE r.project_id = ? AND r.status = 'running' AND r.created_at < ? "
            "ORDER BY r.created_at, r.id",
            project_id,
            float(cutoff),
        )
        return [StaleRun(r["id"], r["status"]) for r in rows]
