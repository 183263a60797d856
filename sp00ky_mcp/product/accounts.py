"""Users, their tenants and their MCP tokens, on top of the store."""

from __future__ import annotations

import getpass
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.digest import canonical_digest
from . import scopes as scope_catalogue
from . import tokens
from .names import folded, hidden_problem, normal
from .oauth import passwords
from .store import Clash, Store, StoreUnavailable
from .store.repos.accounts import AuditEntry, TokenRecord, User
from .tokens import DEFAULT_TOKEN_DAYS

__all__ = [
    "DEFAULT_TOKEN_DAYS",
    "AccountError",
    "Accounts",
    "AuditEntry",
    "TokenRecord",
    "User",
    "arguments_digest",
    "default_email",
    "token_name",
]

log = logging.getLogger("sp00ky_mcp.accounts")

Clock = Callable[[], float]


class AccountError(Exception):
    """A refused account operation; the message says what to fix."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def default_email() -> str:
    return f"{getpass.getuser()}@localhost"


class Accounts:
    def __init__(self, store: Store, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock

    # --- users and their personal tenant ---------------------------------------------------

    async def user_by_email(self, email: str) -> User | None:
        return await self.store.reads.accounts.user_by_email(email)

    async def user(self, user_id: str) -> User | None:
        return await self.store.reads.accounts.user(user_id)

    async def _user_spelled_otherwise(self, email: str) -> User | None:
        """A user an older version stored with another Unicode spelling of `email` (it did
        not normalise them).  Only a non-ASCII address can be one, so only those are read."""
        same = [
            u
            for u in await self.store.reads.accounts.non_ascii_users()
            if folded(u.email) == folded(email)
        ]
        return same[0] if same else None

    async def ensure_user(self, email: str, name: str | None = None) -> User:
        """The user with this email, created with a personal tenant on first use; a new user's
        email is stored in its NFKC form."""
        email = normal(email.strip())
        if "@" not in email or len(email) > 254:
            raise AccountError(f"'{email}' is not an email address; pass --user you@example.com.")
        problem = hidden_problem("--user", email)
        if problem is not None:
            raise AccountError(problem)
        existing = await self.user_by_email(email) or await self._user_spelled_otherwise(email)
        if existing is not None:
            return existing
        try:
            return await self._create_user(email, name)
        except Clash:
            # Another process created the user between the lookup and the insert.
            existing = await self.user_by_email(email)
            if existing is None:
                raise
            return existing

    async def _create_user(self, email: str, name: str | None) -> User:
        user = User(new_id("usr"), email, name or email.split("@", 1)[0])
        async with self.store.transaction() as tx:
            await tx.accounts.add_user(
                user, new_id("ten"), f"{user.name}'s workspace", self.clock()
            )
        return user

    async def personal_tenant(self, user_id: str) -> str:
        found = await self.store.reads.accounts.personal_tenant(user_id)
        if found is None:
            raise AccountError("This user has no personal tenant.")
        return found

    # --- tokens ----------------------------------------------------------------------------

    async def mint(
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
        async with self.store.transaction() as tx:
            await tx.accounts.add_token(record, tokens.digest(secret))
        return record, secret

    async def find(self, secret: str) -> TokenRecord | None:
        return await self.store.reads.accounts.token_by_digest(tokens.digest(secret))

    async def list_tokens(self, user: User) -> list[TokenRecord]:
        return await self.store.reads.accounts.tokens_of(user.id)

    async def revoke(self, user: User, id_or_name: str) -> TokenRecord:
        # Names of tokens minted before names were normalised are normalised here too.
        wanted = normal(id_or_name.strip())
        matches = [
            t
            for t in await self.list_tokens(user)
            if t.revoked_at is None and wanted in (t.id, normal(t.name))
        ]
        if not matches:
            raise AccountError(f"No active token '{id_or_name}'; `spky mcp tokens` lists them.")
        if len(matches) > 1:
            raise AccountError(f"Several active tokens are named '{id_or_name}'; revoke by id.")
        async with self.store.transaction() as tx:
            await tx.accounts.revoke_token(matches[0].id, self.clock())
            if matches[0].grant_id is not None:  # its client can no longer refresh it either
                await tx.oauth.revoke_grant(matches[0].grant_id, self.clock())
        return matches[0]

    async def set_password(self, user: User, password: str) -> None:
        """The password the user signs in with (OAuth sign-in), stored as a scrypt hash."""
        problem = passwords.problem(password)
        if problem is not None:
            raise AccountError(problem)
        hashed = await passwords.hash_in_worker(password)
        async with self.store.transaction() as tx:
            await tx.oauth.set_password(user.id, hashed, self.clock())

    async def audit_trail(
        self, user: User, token: str | None = None, since: float | None = None
    ) -> list[AuditEntry]:
        """The audit records of the user's tool calls, oldest first; of one of their tokens
        (by id or name, revoked ones too) when named, from `since` on."""
        token_id = None
        if token is not None:
            wanted = normal(token.strip())
            found = [t for t in await self.list_tokens(user) if wanted in (t.id, normal(t.name))]
            if not found:
                raise AccountError(f"No token '{token}'; `spky mcp tokens` lists them.")
            if len(found) > 1:
                raise AccountError(f"Several tokens are named '{token}'; name it by id.")
            token_id = found[0].id
        records = await self.store.reads.accounts.audit_records(token_id, since)
        return [entry for _, entry in records if entry.user_id == user.id]

    async def touch(self, token_id: str, when: float) -> None:
        """Best effort: last use is a hint kept to the minute, not worth refusing a request
        over, so a store that cannot take the write (full, locked) skips it."""
        try:
            async with self.store.bookkeeping() as tx:
                await tx.accounts.touch_token(token_id, when)
        except StoreUnavailable as exc:
            log.warning("last use of token %s not recorded: %s", token_id, exc.message)
        except Exception:
            # It runs in the background, where nothing would hear of it.
            log.exception("last use of token %s not recorded", token_id)

    # --- audit -----------------------------------------------------------------------------

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        async with self.store.bookkeeping() as tx:
            await tx.accounts.add_audit(entries)


# A label a person reads in a list, not a document.
MAX_TOKEN_NAME = 100


def token_name(name: str) -> str:
    """A token's name as stored: NFKC, without surrounding spaces, every character showing,
    so that the name `revoke` is given is the one `tokens` lists."""
    cleaned = normal(name).strip()
    if not cleaned:
        raise AccountError("A token needs a name; pass --name.")
    if len(cleaned) > MAX_TOKEN_NAME:
        raise AccountError(
            f"A token's name is at most {MAX_TOKEN_NAME} characters; pass a shorter --name."
        )
    problem = hidden_problem("--name", cleaned)
    if problem is not None:
        raise AccountError(problem)
    return cleaned


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A digest, never the arguments: they may hold secret values."""
    return canonical_digest(arguments)
