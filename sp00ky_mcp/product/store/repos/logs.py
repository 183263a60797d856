"""Log lines of projects and their services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..port import Db


@dataclass(frozen=True, slots=True)
class LogLine:
    id: int
    project_id: str
    service: str | None
    at: float
    level: str
    message: str


class LogsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def add(
        self, project_id: str, service: str | None, at: float, level: str, message: str
    ) -> None:
        await self.db.run(
            "INSERT INTO log_lines (project_id, service, at, level, message) "
            "VALUES (?, ?, ?, ?, ?)",
            project_id,
            service,
            float(at),
            level,
            message,
        )

    async def newest_first(
        self,
        project_id: str,
        *,
        service: str | None,
        since: float | None,
        before: int | None,
        limit: int,
    ) -> list[LogLine]:
        """At most `limit` of the project's lines (of `service`, at or after `since`, older
        than line `before`, where given), newest first."""
        clauses = ["project_id = ?"]
        params: list[Any] = [project_id]
        for clause, value in (
            ("service = ?", service),
            ("at >= ?", None if since is None else float(since)),
            ("id < ?", None if before is None else int(before)),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self.db.all(
            "SELECT id, project_id, service, at, level, message FROM log_lines "
            f"WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            *params,
            int(limit),
        )
        return [
            LogLine(
                int(r["id"]),
                r["project_id"],
                r["service"],
                float(r["at"]),
                r["level"],
                r["message"],
            )
            for r in rows
        ]
