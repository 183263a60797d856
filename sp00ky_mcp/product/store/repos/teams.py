"""The teams area's records and SQL."""

from __future__ import annotations

from ..port import Db


class TeamsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db
