"""Users, their tenants and their MCP tokens, on top of the store."""

from __future__ import annotations

import getpass
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..engine.digest import canonical_digest
from . import scopes as scope_catalogue
from . import tokens
from .names import folded, hidden_problem, normal
from .store import Store, StoreUnavailable, inserts

log = logging.getLogger("sp00ky_mcp.product.accounts")

DEFAULT_TOKEN_DAYS = 90
Clock = Callable[[], float]


class AccountError(Exception):
    """A refused account operation; the message says what to fix."""


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

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TokenRecord:
        return cls(
            row["id"],
            row["user_id"],
            row["name"],
            row["hint"],
            tuple(row["scopes"].split()),
            row["created_at"],
            row["expires_at"],
            row["last_used_at"],
            row["revoked_at"],
        )


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def default_email() -> str:
    return f"{getpass.getuser()}@localhost"


class Accounts:
    def __init__(self, store: Store, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock

    # --- users and their personal tenant ---------------------------------------------------

    def user_by_email(self, email: str) -> User | None:
        row = self.store.one("SELECT id, email, name FROM users WHERE email = ?", (email,))
        return User(row["id"], row["email"], row["name"]) if row else None

    def user(self, user_id: str) -> User | None:
        row = self.store.one("SELECT id, email, name FROM users WHERE id = ?", (user_id,))
        return User(row["id"], row["email"], row["name"]) if row else None

    def _user_spelled_otherwise(self, email: str) -> User | None:
        """A user an older version stored with another Unicode spelling of `email` (it did
        not normalise them).  Only a non-ASCII address can be one, so only those are read."""
        rows = self.store.all(
            "SELECT id, email, name FROM users WHERE email GLOB ? ORDER BY created_at, id",
            ("*[^ -~]*",),
        )
        same = [r for r in rows if folded(r["email"]) == folded(email)]
        return User(same[0]["id"], same[0]["email"], same[0]["name"]) if same else None

    def ensure_user(self, email: str, name: str | None = None) -> User:
        """The user with this email, created with a personal tenant on first use; a new user's
        email is stored in its NFKC form."""
        email = normal(email.strip())
        if "@" not in email or len(email) > 254:
            raise AccountError(f"'{email}' is not an email address; pass --user you@example.com.")
        problem = hidden_problem("--user", email)
        if problem is not None:
            raise AccountError(problem)
        existing = self.user_by_email(email) or self._user_spelled_otherwise(email)
        if existing is not None:
            return existing
        try:
            return self._create_user(email, name)
        except sqlite3.IntegrityError:
            # Another process created the user between the lookup and the insert.
            existing = self.user_by_email(email)
            if existing is None:
                raise
            return existing

    def _create_user(self, email: str, name: str | None) -> User:
        user = User(new_id("usr"), email, name or email.split("@", 1)[0])
        now = self.clock()
        tenant_id = new_id("ten")
        with self.store.transaction() as db:
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (user.id, email, user.name, now))
            db.execute(
                "INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, ?, ?)",
                (tenant_id, f"{user.name}'s workspace", "personal", now),
            )
            db.execute(
                "INSERT INTO memberships VALUES (?, ?, 'owner', ?)", (tenant_id, user.id, now)
            )
        return user

    def personal_tenant(self, user_id: str) -> str:
        row = self.store.one(
            "SELECT t.id FROM tenants t JOIN memberships m ON m.tenant_id = t.id "
            "WHERE m.user_id = ? AND t.kind = 'personal'",
            (user_id,),
        )
        if row is None:
            raise AccountError("This user has no personal tenant.")
        return str(row["id"])

    # --- tokens ----------------------------------------------------------------------------

    def mint(
        self, user: User, name: str, requested: tuple[str, ...], expires_in_days: float | None
    ) -> tuple[TokenRecord, str]:
        """A new token; the secret is returned once and only its hash is kept."""
        granted = scope_catalogue.parse(requested)
        name = token_name(name)
        secret = tokens.mint()
        now = self.clock()
        expires = now + expires_in_days * 86400 if expires_in_days is not None else None
        record = TokenRecord(
            tokens.new_token_id(),
            user.id,
            name,
            tokens.hint(secret),
            granted,
            now,
            expires,
            None,
            None,
        )
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    record.id,
                    user.id,
                    record.name,
                    tokens.digest(secret),
                    record.hint,
                    " ".join(granted),
                    now,
                    expires,
                ),
            )
        return record, secret

    def find(self, secret: str) -> TokenRecord | None:
        row = self.store.one("SELECT * FROM tokens WHERE hash = ?", (tokens.digest(secret),))
        return TokenRecord.from_row(row) if row else None

    def list_tokens(self, user: User) -> list[TokenRecord]:
        rows = self.store.all(
            "SELECT * FROM tokens WHERE user_id = ? ORDER BY created_at, id", (user.id,)
        )
        return [TokenRecord.from_row(r) for r in rows]

    def revoke(self, user: User, id_or_name: str) -> TokenRecord:
        # Names of tokens minted before names were normalised are normalised here too.
        wanted = normal(id_or_name.strip())
        matches = [
            t
            for t in self.list_tokens(user)
            if t.revoked_at is None and wanted in (t.id, normal(t.name))
        ]
        if not matches:
            raise AccountError(f"No active token '{id_or_name}'; `spky mcp tokens` lists them.")
        if len(matches) > 1:
            raise AccountError(f"Several active tokens are named '{id_or_name}'; revoke by id.")
        with self.store.transaction() as db:
            db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ?", (self.clock(), matches[0].id)
            )
        return matches[0]

    def touch(self, token_id: str, when: float) -> None:
        """Best effort: last use is a hint kept to the minute, not worth refusing a request
        over, so a store that cannot take the write (full, locked) skips it."""
        try:
            self.store.record(
                [("UPDATE tokens SET last_used_at = ? WHERE id = ?", (when, token_id))]
            )
        except StoreUnavailable as exc:
            log.warning("last use of token %s not recorded: %s", token_id, exc.message)

    # --- audit -----------------------------------------------------------------------------

    def audit(self, entries: Sequence[AuditEntry]) -> None:
        self.store.record(inserts("audit_log", AuditEntry._fields, entries))


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


def token_name(name: str) -> str:
    """A token's name as stored: NFKC, without surrounding spaces, every character showing,
    so that the name `revoke` is given is the one `tokens` lists."""
    cleaned = normal(name).strip()
    if not cleaned:
        raise AccountError("A token needs a name; pass --name.")
    problem = hidden_problem("--name", cleaned)
    if problem is not None:
        raise AccountError(problem)
    return cleaned


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A digest, never the arguments: they may hold secret values."""
    return canonical_digest(arguments)
