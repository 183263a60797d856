"""Idempotency records: the first result of a call made with an idempotency_key."""

from __future__ import annotations

from dataclasses import dataclass

from ..port import Db

# What a key's record holds in place of a result.  RUNNING: claimed by a call now running,
# which has changed nothing yet.  CHANGED: the call committed a change (the mark is written in
# the transaction that makes it) and its result was never recorded: it failed after the
# change, or its process stopped, or its commit was in doubt.  Results are JSON objects, so
# neither mark can be taken for one.
RUNNING = b""
CHANGED = b"changed"


@dataclass(frozen=True, slots=True)
class Claim:
    """A key claimed by the call now running: the changes it commits mark it CHANGED."""

    user_id: str
    tool: str
    key: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    arguments_digest: str
    result: bytes
    created_at: float


class IdempotencyRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def get(self, user_id: str, tool: str, key: str) -> IdempotencyRecord | None:
        row = await self.db.one(
            "SELECT arguments_digest, result, created_at FROM idempotency WHERE user_id = ? "
            "AND tool = ? AND key = ?",
            user_id,
            tool,
            key,
        )
        if row is None:
            return None
        return IdempotencyRecord(row["arguments_digest"], bytes(row["result"]), row["created_at"])

    async def claim(
        self, user_id: str, tool: str, key: str, digest: str, marker: bytes, now: float
    ) -> bool:
        """Claims the key for a call now starting (its result `marker` until it ends); False
        when the key already has a record."""
        changed = await self.db.run(
            "INSERT INTO idempotency (user_id, tool, key, arguments_digest, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, tool, key) DO NOTHING",
            user_id,
            tool,
            key,
            digest,
            marker,
            now,
        )
        return changed == 1

    async def take_over(
        self,
        user_id: str,
        tool: str,
        key: str,
        digest: str,
        marker: bytes,
        now: float,
        before: float,
    ) -> bool:
        """Claims a key whose claim (result `marker`) was made before `before` by a call that
        never finished; False if another call took it first."""
        changed = await self.db.run(
            "UPDATE idempotency SET arguments_digest = ?, created_at = ? WHERE user_id = ? "
            "AND tool = ? AND key = ? AND result = ? AND created_at < ?",
            digest,
            now,
            user_id,
            tool,
            key,
            marker,
            before,
        )
        return changed == 1

    async def finish(self, user_id: str, tool: str, key: str, result: bytes, now: float) -> None:
        await self.db.run(
            "UPDATE idempotency SET result = ?, created_at = ? WHERE user_id = ? AND tool = ? "
            "AND key = ?",
            result,
            now,
            user_id,
            tool,
            key,
        )

    async def release(self, user_id: str, tool: str, key: str, marker: bytes) -> None:
        await self.db.run(
            "DELETE FROM idempotency WHERE user_id = ? AND tool = ? AND key = ? AND result = ?",
            user_id,
            tool,
            key,
            marker,
        )

    async def mark_changed(self, claim: Claim) -> None:
        """Inside the transaction of a change made by the claiming call: should the call
        never record its result, a retry with its key knows a change was made."""
        await self.db.run(
            "UPDATE idempotency SET result = ? WHERE user_id = ? AND tool = ? AND key = ? "
            "AND result = ?",
            CHANGED,
            claim.user_id,
            claim.tool,
            claim.key,
            RUNNING,
        )
