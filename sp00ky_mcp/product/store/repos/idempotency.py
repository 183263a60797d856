"""Idempotency records: the first result of a call made with an idempotency_key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ..port import Db

# What a key's record holds in place of a result, each naming the call that claimed it.
# RUNNING: claimed by a call now running, which has committed no change yet.  CHANGING: the
# call, still running, has committed a change (the mark is written in the transaction that
# makes it).  CHANGED: the call ended after a change without its result recorded (it failed
# after the change, or its commit was in doubt); a call whose process stopped after a change
# leaves CHANGING, which a retry reads as CHANGED once the claim is old.  Results are JSON
# objects, so no mark can be taken for one.
RUNNING = b"running:"
CHANGED = b"changed:"
# Begins as CHANGED does: an older version, which knows no CHANGING, reads it as CHANGED and
# refuses a retry, as it always did.
CHANGING = CHANGED + RUNNING
# The claim of a call made by an older version, which named no call.
UNNAMED_CLAIM = b""


def is_running(result: bytes) -> bool:
    return result == UNNAMED_CLAIM or result.startswith(RUNNING)


def is_changed(result: bytes) -> bool:
    """CHANGED, or CHANGING (a change was made either way)."""
    return result.startswith(CHANGED)


def is_changing(result: bytes) -> bool:
    return result.startswith(CHANGING)


@dataclass(frozen=True, slots=True)
class Claim:
    """A key claimed by the call now running, under a name of its own: the changes it
    commits mark the key CHANGING, and only while the claim is still its own (a retry may
    take over a claim that stayed RUNNING too long)."""

    user_id: str
    tool: str
    key: str
    call: bytes = field(default_factory=lambda: secrets.token_hex(8).encode())

    @property
    def running(self) -> bytes:
        return RUNNING + self.call

    @property
    def changing(self) -> bytes:
        return CHANGING + self.call

    @property
    def changed(self) -> bytes:
        return CHANGED + self.call

    @property
    def key_of(self) -> tuple[str, str, str]:
        return self.user_id, self.tool, self.key

    @property
    def own(self) -> tuple[str, str, str, bytes, bytes]:
        """The parameters of STILL_ITS_OWN."""
        return self.user_id, self.tool, self.key, self.running, self.changing


# The key's record while its claim is still the call's (not taken over by a retry).
STILL_ITS_OWN = "WHERE user_id = ? AND tool = ? AND key = ? AND result IN (?, ?)"


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

    async def claim(self, claim: Claim, digest: str, now: float) -> bool:
        """Claims the key for a call now starting; False when the key already has a record."""
        changed = await self.db.run(
            "INSERT INTO idempotency (user_id, tool, key, arguments_digest, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, tool, key) DO NOTHING",
            claim.user_id,
            claim.tool,
            claim.key,
            digest,
            claim.running,
            now,
        )
        return changed == 1

    async def take_over(
        self, claim: Claim, digest: str, now: float, held: bytes, before: float
    ) -> bool:
        """Claims a key still held by the claim `held`, made before `before` by a call that
        never finished; False if another call took it first."""
        changed = await self.db.run(
            "UPDATE idempotency SET arguments_digest = ?, result = ?, created_at = ? "
            "WHERE user_id = ? AND tool = ? AND key = ? AND result = ? AND created_at < ?",
            digest,
            claim.running,
            now,
            claim.user_id,
            claim.tool,
            claim.key,
            held,
            before,
        )
        return changed == 1

    async def mark_changed(self, claim: Claim) -> bool:
        """Inside the transaction of a change made by the claiming call, so that a retry
        knows a change was made should the call never record its result; False when the
        claim is no longer the call's (taken over), and the change must not be made."""
        changed = await self.db.run(
            f"UPDATE idempotency SET result = ? {STILL_ITS_OWN}", claim.changing, *claim.own
        )
        return changed == 1

    async def finish(self, claim: Claim, result: bytes, now: float) -> bool:
        """Records the call's result; False when the claim is no longer the call's."""
        changed = await self.db.run(
            f"UPDATE idempotency SET result = ?, created_at = ? {STILL_ITS_OWN}",
            result,
            now,
            *claim.own,
        )
        return changed == 1

    async def release(self, claim: Claim) -> None:
        """Frees the key of a call that changed nothing."""
        await self.db.run(f"DELETE FROM idempotency {_HELD_AS}", *claim.key_of, claim.running)

    async def settle(self, claim: Claim) -> None:
        """The key of a call that ended after a change, with no result to record: CHANGED."""
        await self.db.run(
            f"UPDATE idempotency SET result = ? {_HELD_AS}",
            claim.changed,
            *claim.key_of,
            claim.changing,
        )


# The key's record while it holds the given mark.
_HELD_AS = "WHERE user_id = ? AND tool = ? AND key = ? AND result = ?"
