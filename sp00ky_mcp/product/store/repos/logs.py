"""Log lines of projects and their services."""

from __future__ import annotations

from ..port import Db


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
            at,
            level,
            message,
        )
