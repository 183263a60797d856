"""The control plane's shared rules: tenancy, roles, lookups, log lines, secrets, timestamps
and pages.

Tenancy is enforced here, scopes in `tools`.  A token acts as its user; it reaches a tenant only
where that user is a member, and an object of a tenant it cannot reach is "not found", never
"forbidden", so nothing leaks its existence.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...engine.errors import ToolError
from ..accounts import Accounts
from ..names import hidden_problem
from ..store.port import Busy, Clash, ReadCache, Store, Vanished
from ..store.repos import Repos
from ..store.repos.idempotency import Claim
from ..store.repos.projects import Project
from ..store.repos.tenancy import TokenState

Clock = Callable[[], float]
ROLE_RANK = {"member": 0, "admin": 1, "owner": 2}
REGIONS = ("us-east", "us-west", "eu-central", "eu-west", "ap-southeast")
CURSOR_RULE = "Invalid cursor: pass back a next_cursor value exactly as received."
# The store's integers are 64-bit: a larger Python int cannot even be bound as a parameter.
SQLITE_MAX_INTEGER = 2**63 - 1
# Values shorter than this (e.g. "1", "true") would mask ordinary words everywhere; they are
# still redacted where they appear as a field, just not searched for inside other text.
MIN_MASKED_LENGTH = 6


class NotFound(ToolError):
    """An object that does not exist, or that this user cannot reach: the same answer."""


class Conflict(ToolError):
    """The request clashes with the current state (a duplicate name, a wrong status)."""


class Refused(ToolError):
    """The user's role in the tenant does not allow the change."""


class Invalid(ToolError):
    """An argument passed the schema but not the platform's rules."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    kind: str
    plan: str
    role: str

    def require_role(self, role: str, action: str) -> None:
        """Refuses `action` unless the user's role here ranks at least `role`."""
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise Refused(
                f"Only a team {role} or above may {action}; your role in "
                f"'{self.name}' is {self.role}."
            )


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


_last_stamp = 0


def ordered_id(prefix: str) -> str:
    """A new id (the shape of `new_id`'s) that sorts after every earlier one of this process
    (and, to the microsecond, of any other): builds and deployments made within one clock
    reading are listed newest first by it."""
    global _last_stamp
    _last_stamp = max(_last_stamp + 1, time.time_ns() // 1000)
    return f"{prefix}_{_last_stamp:013x}{secrets.token_hex(2)[:3]}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a tool call acts for, as authorised when it started: the token, its user and the
    tenant with the user's role then.  A call can wait a long time (on the user at a
    confirmation prompt, through a deployment's stages), and the token may be revoked or the
    user removed or demoted meanwhile; every write of the call checks, inside its own
    transaction, that this still holds."""

    token_id: str | None
    user_id: str
    tenant: Tenant


# The caller of the tool call running in this context, if any (set by `Cloud.acting`).
_ACTING: ContextVar[Caller | None] = ContextVar("sp00ky_acting", default=None)
# The idempotency key the call running in this context claimed, if any (`Cloud.claiming`).
_CLAIMED: ContextVar[Claim | None] = ContextVar("sp00ky_claimed", default=None)
OnClash = Callable[[], ToolError]
CONCURRENT_CLASH = (
    "Another change made at the same time conflicts with this one, so nothing was changed; "
    "check the current state and try again."
)


class Cloud:
    def __init__(self, store: Store, accounts: Accounts, clock: Clock = time.time) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self._tenants: ReadCache[tuple[str, str | None], Tenant] = ReadCache(store, 10_000)
        self._secrets: ReadCache[str, tuple[str, ...]] = ReadCache(store, 10_000)

    @property
    def reads(self) -> Repos:
        """Reads outside a write (a write reads through its transaction)."""
        return self.store.reads

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def acting(self, caller: Caller) -> Iterator[None]:
        """The writes made inside the block are made for `caller`."""
        reset = _ACTING.set(caller)
        try:
            yield
        finally:
            _ACTING.reset(reset)

    @contextmanager
    def claiming(self, claim: Claim) -> Iterator[None]:
        """The changes committed inside the block are made under `claim`'s key."""
        reset = _CLAIMED.set(claim)
        try:
            yield
        finally:
            _CLAIMED.reset(reset)

    @asynccontextmanager
    async def transaction(
        self, clash: OnClash | None = None, *, upkeep: bool = False
    ) -> AsyncIterator[Repos]:
        """A store transaction that first checks, inside it, that the caller may still act
        (see `Caller`), so that nothing another connection commits can come between that
        check and the change.  A uniqueness rule that fails in the block raises `clash()`,
        the error of the check that another process's write slipped past, and a row deleted
        meanwhile by another process the generic conflict; nothing is changed either way.
        Under a claimed idempotency key, the change also marks the key, in the same commit:
        whatever becomes of the call, a retry with the key never makes it a second time.  An
        `upkeep` transaction only brings the store up to date (finishes what a stopped
        pipeline left, moves a restore on with time), which a retry may well do again: it
        marks nothing."""
        try:
            async with self.store.transaction() as tx:
                caller = _ACTING.get()
                if caller is not None:
                    await self._check_still_allowed(tx, caller)
                yield tx
                claim = None if upkeep else _CLAIMED.get()
                if claim is not None and tx.db.changed:
                    await _mark_changed(tx, claim)
        except Clash:
            raise (clash() if clash is not None else Conflict(CONCURRENT_CLASH)) from None
        except (Vanished, Busy):
            raise Conflict(CONCURRENT_CLASH) from None

    async def _check_still_allowed(self, tx: Repos, caller: Caller) -> None:
        if caller.token_id is not None:
            state = await tx.tenancy.token_state(caller.token_id)
            _check_token(state, self.accounts.clock())
        _check_role(await tx.tenancy.role(caller.tenant.id, caller.user_id), caller)

    # --- tenancy ---------------------------------------------------------------------------

    async def tenant(self, user_id: str, tenant_id: str | None) -> Tenant:
        """The caller's personal tenant by default, else `tenant_id` if the user is a member."""
        key = (user_id, tenant_id)
        tenant, version = await self._tenants.get(key)
        if tenant is None:
            tenant = await self._read_tenant(user_id, tenant_id)
            await self._tenants.put(key, tenant, version)
        return tenant

    async def _read_tenant(self, user_id: str, tenant_id: str | None) -> Tenant:
        if tenant_id is None:
            tenant_id = await self.accounts.personal_tenant(user_id)
        found = await self.reads.tenancy.membership(tenant_id, user_id)
        if found is None:
            raise NotFound(
                f"No tenant '{tenant_id}' is reachable by this token; list_teams "
                "shows the tenants you belong to."
            )
        return Tenant(found.id, found.name, found.kind, found.plan, found.role)

    # --- projects --------------------------------------------------------------------------

    async def project(self, tenant: Tenant, ref: str, tx: Repos | None = None) -> Project:
        """A project of this tenant by name or id (read through `tx` inside a write)."""
        found = await (tx or self.reads).projects.by_ref(tenant.id, ref)
        if found is None:
            raise missing_project(tenant, ref)
        return found

    async def service_names(self, project_id: str, tx: Repos | None = None) -> list[str]:
        return await (tx or self.reads).projects.service_names(project_id)

    # --- logs and secrets ------------------------------------------------------------------

    async def log(
        self, tx: Repos, project_id: str, service: str | None, level: str, message: str
    ) -> None:
        """Writes a log line inside the caller's transaction, so it lands with the change."""
        await tx.logs.add(project_id, service, self.clock(), level, message)

    async def secret_values(self, tenant_id: str) -> tuple[str, ...]:
        """Every secret value of the tenant (env values, vault material), longest first, so
        that output can be masked even where the value appears inside other text.  They are
        decrypted once per fill of the cache, not per call."""
        values, version = await self._secrets.get(tenant_id)
        if values is None:
            values = await self._read_secret_values(tenant_id)
            await self._secrets.put(tenant_id, values, version)
        return values

    async def _read_secret_values(self, tenant_id: str) -> tuple[str, ...]:
        values = await self.reads.tenancy.secret_values(tenant_id)
        kept = {v for v in values if len(v) >= MIN_MASKED_LENGTH}
        return tuple(sorted(kept, key=len, reverse=True))


# A call whose stale claim a retry took over (it waited at a prompt past CLAIM_SECONDS).
TAKEN_OVER = (
    "A retry with this call's idempotency_key took its place while it waited, so this call "
    "changed nothing; the retry's result is the one that counts."
)


async def _mark_changed(tx: Repos, claim: Claim) -> None:
    """The key marked in the commit of the call's change; a claim that is no longer the
    call's refuses the change, which is rolled back."""
    if not await tx.idempotency.mark_changed(claim):
        raise Conflict(TAKEN_OVER)


def _check_role(role: str | None, caller: Caller) -> None:
    """The caller still belongs to the tenant, with a role no lower than at the start (what
    was allowed then is allowed now)."""
    tenant = caller.tenant
    if role is None:
        raise Refused(
            f"You no longer belong to '{tenant.name}', so nothing was changed; list_teams "
            "shows the tenants you belong to."
        )
    if ROLE_RANK[role] < ROLE_RANK[tenant.role]:
        raise Refused(
            f"Your role in '{tenant.name}' changed from {tenant.role} to {role} "
            "while this call ran, so nothing was changed; call the tool again to act with "
            "your current role."
        )


def _check_token(token: TokenState | None, now: float) -> None:
    """The call's token is neither revoked (nor deleted) nor expired now."""
    mint = "mint a new one with `spky mcp token` and re-add it"
    if token is None or token.revoked_at is not None:
        raise Refused(f"This token was revoked while the call ran, so nothing was changed; {mint}.")
    if token.expires_at is not None and now >= token.expires_at:
        raise Refused(f"This token expired while the call ran, so nothing was changed; {mint}.")


def check_visible(argument: str, value: str) -> None:
    """Refuses a name holding a character that does not show (see `names`)."""
    problem = hidden_problem(argument, value)
    if problem is not None:
        raise Invalid(problem)


def missing_project(tenant: Tenant, ref: str) -> NotFound:
    return NotFound(
        f"No project '{ref}' in tenant '{tenant.name}'; list_projects shows the projects there."
    )


def iso(moment: float) -> str:
    """A stored time (seconds since the epoch) as the ISO 8601 UTC text every tool shows:
    milliseconds and 'Z', e.g. 2026-01-15T12:00:00.000Z."""
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def iso_or_none(moment: float | None) -> str | None:
    return None if moment is None else iso(moment)


def ascii_digits(text: str) -> bool:
    """One or more of 0-9.  str.isdigit() is not enough before int(): it also admits digits
    such as '²', which int() refuses, and Arabic-Indic ones, which no cursor of ours holds."""
    return text.isascii() and text.isdigit()


def page_bounds(cursor: str | None, limit: int) -> tuple[int, int]:
    """Offset pagination behind an opaque cursor shared by every list tool."""
    offset = 0
    if cursor is not None:
        if not (cursor.startswith("o") and ascii_digits(cursor[1:])):
            raise Invalid(CURSOR_RULE)
        offset = int(cursor[1:])
    return offset, limit


def page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    """The one list shape: items, a next cursor, and whether there were more."""
    shown = items[offset : offset + limit]
    more = offset + limit < len(items)
    return {
        "items": shown,
        "next_cursor": f"o{offset + limit}" if more else None,
        "truncated": more,
    }
