"""Bearer-token authentication for /v1/mcp, with the product page's three 401 causes.

The hot path costs no query in the steady state: verified tokens are cached by digest, and the
cache is dropped whenever the store's version changes (another connection committed, or this
process did), so a revocation made by `spky mcp revoke` in
another process is seen on the very next request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qs

from ..engine.context import Principal
from ..engine.errors import INTERNAL_ERROR, HttpError
from ..engine.http import HttpRequest
from ..engine.quotas import LocalQuotas, Quotas
from . import scopes, tokens
from .accounts import Accounts, Clock, TokenRecord
from .narrowing import narrow, requested
from .oauth.metadata import Urls, challenge
from .scopes import READ_SCOPES
from .store import ReadCache, StoreUnavailable

REALM = 'Bearer realm="sp00ky-mcp"'
MINT = "mint a new one with `spky mcp token` and re-add it"
EXACT = "the header must be exactly `Authorization: Bearer mcp_live_…`"
TOUCH_INTERVAL = 60.0
# The longest wait a refusal names: a rate set near zero would otherwise make it infinite.
LONGEST_WAIT = 86400.0


class TokenRefused(HttpError):
    """A 401 that names its cause; `token_id` is set when a known token was refused, so that
    the sessions it opened can be ended too."""

    def __init__(self, message: str, invalid: bool = True, token_id: str | None = None) -> None:
        challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
        super().__init__(401, f"401 Unauthorized: {message}", (("www-authenticate", challenge),))
        self.token_id = token_id
        self.invalid, self.reason = invalid, message

    def pointing_to(self, urls: Urls) -> TokenRefused:
        """The challenge names the resource metadata (RFC 9728 section 5.1) and the scopes
        to ask for, so that a client can start signing in; a bad token says why in
        error_description, so that whoever pasted a static token sees the cause."""
        error, description = ("invalid_token", self.reason) if self.invalid else (None, None)
        value = challenge(urls, " ".join(READ_SCOPES), error, description)
        self.headers = (("www-authenticate", f"{REALM}, {value.removeprefix('Bearer ')}"),)
        return self


def missing() -> TokenRefused:
    return TokenRefused(
        f"the token is missing; {EXACT} (mint one with `spky mcp token`).", invalid=False
    )


def malformed() -> TokenRefused:
    return TokenRefused(f"the token is malformed; {EXACT}, so {MINT}.")


# A token issued at OAuth sign-in is replaced by signing in again (the client does it on
# this 401), not by minting one.
SIGN_IN = "sign in again from the client"


def refusal(record: TokenRecord, status: str) -> TokenRefused:
    fix = MINT if record.grant_id is None else SIGN_IN
    if status == "revoked":
        return TokenRefused(f"the token was revoked; {fix}.", token_id=record.id)
    when = datetime.fromtimestamp(record.expires_at or 0, UTC).strftime("%Y-%m-%d")
    return TokenRefused(f"the token expired on {when}; {fix}.", token_id=record.id)


class TokenAuthenticator:
    def __init__(
        self,
        accounts: Accounts,
        rate_per_minute: float,
        burst: int,
        clock: Clock = time.time,
        quotas: Quotas | None = None,
        tools: Mapping[str, str | None] | None = None,
        urls: Callable[[], Urls] | None = None,
    ) -> None:
        self.accounts = accounts
        # Where sign-in starts, when the server signs users in with OAuth: the 401s point there.
        self.urls = urls
        # Every tool's name and scope: what a connection may narrow its surface to.
        self.tools = tools
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._cache: ReadCache[str, tuple[TokenRecord, Principal]] = ReadCache(
            accounts.store, 100_000
        )
        # Shared by every replica when they share state: one allowance per token in all.
        self.quotas = quotas or LocalQuotas()
        self._touched: dict[str, float] = {}
        self._touching: set[asyncio.Future[None]] = set()

    def forget(self) -> None:
        self._cache.clear()

    async def settle(self) -> None:
        """Waits until the last uses recorded in the background are written."""
        while self._touching:
            await asyncio.gather(*self._touching, return_exceptions=True)

    async def __call__(self, request: HttpRequest) -> Principal:
        try:
            return await self._authenticated(request)
        except TokenRefused as exc:
            if self.urls is not None:
                exc.pointing_to(self.urls())
            raise

    async def _authenticated(self, request: HttpRequest) -> Principal:
        credential = self._credential(request)
        record, principal = await self._checked(credential)
        now = self.clock()
        status = record.status(now)
        if status != "active":
            raise refusal(record, status)
        if record.resource is not None and not self._here(record.resource):
            raise TokenRefused(
                "the token was issued for another resource; sign in to this server again.",
                token_id=record.id,
            )
        await self._throttle(record.id, now)
        self._touch(record.id, now)
        narrows = request.query or not NARROWING_HEADERS.isdisjoint(request.headers)
        if self.tools is not None and narrows:
            return self._narrowed(principal, request)
        return principal

    def _here(self, resource: str) -> bool:
        """RFC 8707: a token issued by sign-in is good only at the resource it names."""
        return self.urls is not None and resource == self.urls().resource

    def _narrowed(self, principal: Principal, request: HttpRequest) -> Principal:
        assert self.tools is not None
        narrowing = requested(request.query, request.headers, self.tools)
        return narrow(principal, narrowing, self.tools) if narrowing else principal

    def _credential(self, request: HttpRequest) -> str:
        if _token_in_query(request.query):
            raise TokenRefused(
                "tokens in the URL are refused because URLs get logged; send "
                f"the token in a header instead: {EXACT}."
            )
        header = request.header("authorization")
        if header is None:
            raise missing()
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if credential.startswith(tokens.API_KEY_PREFIX):
            raise TokenRefused(
                "this is a Sp00ky API key (spk_live_…); MCP needs its own "
                "mcp_live_ token: mint one with `spky mcp token`."
            )
        if scheme.lower() != "bearer":
            raise malformed()
        return credential

    async def _checked(self, credential: str) -> tuple[TokenRecord, Principal]:
        """The token's record; a store that cannot be read answers 503, which a client
        retries, rather than a refusal of a token that may be good."""
        try:
            return await self._lookup(credential)
        except StoreUnavailable as exc:
            # The same shape as a refusal for Redis being away: a JSON-RPC error with id null.
            raise HttpError(503, exc.message, (("retry-after", "1"),), INTERNAL_ERROR) from None

    async def _lookup(self, credential: str) -> tuple[TokenRecord, Principal]:
        key = tokens.digest(credential)
        cached, version = await self._cache.get(key)
        if cached is None:
            # Only well-formed tokens are ever cached, so a hit needs no format check.
            if not tokens.well_formed(credential):
                raise malformed()
            record = await self.accounts.find(credential)
            if record is None:
                raise TokenRefused(f"the token is not recognised (mistyped, or deleted); {MINT}.")
            cached = (record, principal_of(record))
            await self._cache.put(key, cached, version)
        return cached

    async def _throttle(self, token_id: str, now: float) -> None:
        wait = await self.quotas.throttle(token_id, now, self.rate, self.burst)
        if wait:
            raise HttpError(
                429,
                "Too many requests for this token; retry after the number of "
                "seconds in Retry-After.",
                (("retry-after", str(math.ceil(min(wait, LONGEST_WAIT)))),),
            )

    def _touch(self, token_id: str, now: float) -> None:
        """last_used is kept to the minute, so the hot path writes at most once a minute, and
        in the background: no request waits for it (behind a locked store, say)."""
        if now - self._touched.get(token_id, 0.0) >= TOUCH_INTERVAL:
            self._touched[token_id] = now
            task = asyncio.ensure_future(self.accounts.touch(token_id, now))
            self._touching.add(task)
            task.add_done_callback(self._touching.discard)


NARROWING_HEADERS = frozenset({"x-mcp-readonly", "x-mcp-toolsets", "x-mcp-tools"})


def principal_of(record: TokenRecord) -> Principal:
    granted = scopes.expand(record.scopes)
    return Principal(
        record.id,
        record.user_id,
        granted,
        can_reveal=scopes.REVEAL in granted,
        name=record.name,
        step_up=record.grant_id is not None,
    )


def _token_in_query(query: str) -> bool:
    if not query:
        return False
    fields = parse_qs(query, keep_blank_values=True)
    named = {"token", "access_token", "api_key", "key"} & {k.lower() for k in fields}
    return bool(named) or tokens.PREFIX in query
