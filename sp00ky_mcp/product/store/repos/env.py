"""The env area's records and SQL; its secret values are sealed here."""

from __future__ import annotations

from ...secretbox import SecretBox
from ..port import Db


class EnvRepo:
    def __init__(self, db: Db, box: SecretBox) -> None:
        self.db = db
        self.box = box
