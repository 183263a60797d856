"""Users, their personal tenants, their tokens, and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..port import Db, Row

# One statement per hundred rows costs a third less than one per row, and stays under
# SQLite's oldest limit of 999 parameters for tables of up to nine columns.
ROWS_PER_INSERT = 100


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    user_id: str
    name: str
    hint: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    # Issued by OAuth sign-in: the grant it belongs to and the resource it is for.
    grant_id: str | None = None
    resource: str | None = None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


class AuditEntry(NamedTuple):
    """One audit record, in the audit_log table's column order."""

    at: float
    token_id: str
    user_id: str
    tenant_id: str | None
    tool: str
    arguments_digest: str
    outcome: str
    duration_ms: float


def _user(row: Row) -> User:
    return User(row["id"], row["email"], row["name"])


def _token(row: Row) -> TokenRecord:
    return TokenRecord(
        row["id"],
        row["user_id"],
        row["name"],
        row["hint"],
        tuple(row["scopes"].split()),
        row["created_at"],
        row["expires_at"],
        row["last_used_at"],
        row["revoked_at"],
        row["grant_id"],
        row["resource"],
    )


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """`text` with its ASCII capitals lowered and nothing else: as both stores' `lower()`
    folds an email column (SQLite always; PostgreSQL under the columns' "C" collation).  A
    parameter folded by the database instead would follow its default collation, which may
    fold more ("É" to "é"), and no longer find an address written as it is stored."""
    return text.translate(_ASCII_LOWER)


class AccountsRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- users -----------------------------------------------------------------------------

    async def user_by_email(self, email: str) -> User | None:
        """Emails compare without regard to ASCII case, as they did in SQLite's NOCASE."""
        row = await self.db.one(
            "SELECT id, email, name FROM users WHERE lower(email) = ?", ascii_lower(email)
        )
        return _user(row) if row else None

    async def user(self, user_id: str) -> User | None:
        row = await self.db.one("SELECT id, email, name FROM users WHERE id = ?", user_id)
        return _user(row) if row else None

    async def non_ascii_users(self) -> list[User]:
        """Users whose email holds a character outside printable ASCII, oldest first."""
        rows = await self.db.all("SELECT id, email, name FROM users ORDER BY created_at, id")
        return [_user(r) for r in rows if not r["email"].isascii()]

    async def add_user(self, user: User, tenant_id: str, tenant_name: str, now: float) -> None:
        """The user, with a personal tenant of which they are the owner."""
        await self.db.run(
            "INSERT INTO users (id, email, name, created_at) VALUES (?, ?, ?, ?)",
            user.id,
            user.email,
            user.name,
            now,
        )
        await self.db.run(
            "INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, 'personal', ?)",
            tenant_id,
            tenant_name,
            now,
        )
        await self.db.run(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) "
            "VALUES (?, ?, 'owner', ?)",
            tenant_id,
            user.id,
            now,
        )

    async def personal_tenant(self, user_id: str) -> str | None:
        row = await self.db.one(
            "SELECT t.id FROM tenants t JOIN memberships m ON m.tenant_id = t.id "
            "WHERE m.user_id = ? AND t.kind = 'personal'",
            user_id,
        )
        return None if row is None else str(row["id"])

    # --- tokens ----------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord, digest: str) -> None:
        await self.db.run(
            "INSERT INTO tokens (id, user_id, name, hash, hint, scopes, created_at, expires_at, "
            "grant_id, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            record.id,
            record.user_id,
            record.name,
            digest,
            record.hint,
            " ".join(record.scopes),
            record.created_at,
            record.expires_at,
            record.grant_id,
            record.resource,
        )

    async def token_by_digest(self, digest: str) -> TokenRecord | None:
        row = await self.db.one("SELECT * FROM tokens WHERE hash = ?", digest)
        return _token(row) if row else None

    async def token(self, token_id: str) -> TokenRecord | None:
        row = await self.db.one("SELECT * FROM tokens WHERE id = ?", token_id)
        return _token(row) if row else None

    async def grant_token(self, grant_id: str) -> TokenRecord | None:
        """The access token of an OAuth grant (one a grant: a refresh rotates its secret)."""
        row = await self.db.one("SELECT * FROM tokens WHERE grant_id = ?", grant_id)
        return _token(row) if row else None

    async def rotate_token(
        self, token_id: str, digest: str, hint: str, scopes: tuple[str, ...], expires: float
    ) -> None:
        """A new secret for the token (the old one stops working), with its scopes and expiry."""
        await self.db.run(
            "UPDATE tokens SET hash = ?, hint = ?, scopes = ?, expires_at = ? WHERE id = ?",
            digest,
            hint,
            " ".join(scopes),
            expires,
            token_id,
        )

    async def tokens_of(self, user_id: str) -> list[TokenRecord]:
        rows = await self.db.all(
            "SELECT * FROM tokens WHERE user_id = ? ORDER BY created_at, id", user_id
        )
        return [_token(r) for r in rows]

    async def any_token(self, user_id: str) -> bool:
        row = await self.db.one("SELECT 1 FROM tokens WHERE user_id = ? LIMIT 1", user_id)
        return row is not None

    async def revoke_token(self, token_id: str, when: float) -> None:
        await self.db.run("UPDATE tokens SET revoked_at = ? WHERE id = ?", when, token_id)

    async def touch_token(self, token_id: str, when: float) -> None:
        await self.db.run("UPDATE tokens SET last_used_at = ? WHERE id = ?", when, token_id)

    # --- audit -----------------------------------------------------------------------------

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """`entries` as multi-row INSERT statements of up to ROWS_PER_INSERT rows each."""
        into = f"INSERT INTO audit_log ({', '.join(AuditEntry._fields)}) VALUES "
        one = "(" + ", ".join("?" * len(AuditEntry._fields)) + ")"
        for start in range(0, len(entries), ROWS_PER_INSERT):
            chunk = entries[start : start + ROWS_PER_INSERT]
            params = [value for entry in chunk for value in entry]
            await self.db.run(into + ", ".join([one] * len(chunk)), *params)

    async def audit_records(
        self, token_id: str | None = None, since: float | None = None
    ) -> list[tuple[int, AuditEntry]]:
        """Audit records, oldest first, with their ids; of one token, from a time on."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if token_id is not None:
            where.append("token_id = ?")
            params.append(token_id)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        rows = await self.db.all(
            f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id", *params
        )
        return [(int(r["id"]), AuditEntry(*(r[f] for f in AuditEntry._fields))) for r in rows]
