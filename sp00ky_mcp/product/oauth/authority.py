"""The authorization server's grants: codes, access tokens and refresh tokens.

A user's consent makes a grant (a client, its scopes, this resource) and a code for it: single
use, bound to the redirect URI and the PKCE challenge, good for a minute.  Redeeming the code
makes the grant's one access token (an ordinary `mcp_live_` token row naming the grant, so it
is listed and revoked with the others) and a refresh token.  A refresh rotates both: the token
row gets a new secret and expiry, and the refresh token is spent.  A code or a refresh token
presented a second time means it was stolen or replayed: the whole grant is revoked (OAuth 2.1
sections 4.1.3 and 4.3.1).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from .. import scopes as catalogue
from .. import tokens
from ..accounts import Clock, new_id
from ..store import Store
from ..store.repos.accounts import TokenRecord
from ..store.repos.oauth import Code, Grant, OAuthClient
from . import pkce
from .metadata import ACCESS_SECONDS, REFRESH_SECONDS, Urls

CODE_SECONDS = 60.0
REFRESH_PREFIX = "mcp_refresh_"


class OAuthError(Exception):
    """An error response of the token or revocation endpoint (RFC 6749 section 5.2)."""

    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error, self.message, self.status = error, message, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.message}


def invalid_grant(message: str) -> OAuthError:
    return OAuthError("invalid_grant", message)


class Authority:
    def __init__(self, store: Store, urls: Callable[[], Urls], clock: Clock = time.time) -> None:
        self.store = store
        self._urls = urls
        self.clock = clock

    @property
    def urls(self) -> Urls:
        """Known once the server listens (its port may be chosen then)."""
        return self._urls()

    # --- consent ---------------------------------------------------------------------------

    async def grant_code(
        self,
        user_id: str,
        client: OAuthClient,
        granted: tuple[str, ...],
        redirect_uri: str,
        challenge: str,
    ) -> str:
        """The code that carries the user's consent back to the client."""
        now = self.clock()
        grant = Grant(
            new_id("grt"), client.id, client.name, user_id, granted, self.urls.resource, now, None
        )
        code = secrets.token_urlsafe(32)
        stored = Code(
            tokens.digest(code), grant.id, redirect_uri, challenge, now + CODE_SECONDS, None
        )
        async with self.store.transaction() as tx:
            await tx.oauth.forget_expired(now)
            await tx.oauth.add_grant(grant)
            await tx.oauth.add_code(stored)
        return code

    # --- the token endpoint ----------------------------------------------------------------

    async def redeem(
        self,
        client: OAuthClient,
        code: str,
        redirect_uri: str | None,
        verifier: str | None,
        resource: str | None,
    ) -> dict[str, Any]:
        """RFC 6749 section 4.1.3 with PKCE (RFC 7636 section 4.6) and RFC 8707."""
        now = self.clock()
        async with self.store.transaction() as tx:
            used = await tx.oauth.use_code(tokens.digest(code), now)
        if used is None:
            raise invalid_grant("The code is not one this server issued; start the sign-in again.")
        stored, first = used
        grant = await self._grant(stored.grant_id)
        if not first:
            await self._revoke(grant.id)
            raise invalid_grant(
                "The code was already used, so the access it gave is revoked; sign in again."
            )
        self._check_code(stored, grant, client, redirect_uri, verifier, resource, now)
        return await self._issue(grant, grant.scopes, None)

    def _check_code(
        self,
        code: Code,
        grant: Grant,
        client: OAuthClient,
        redirect_uri: str | None,
        verifier: str | None,
        resource: str | None,
        now: float,
    ) -> None:
        if now >= code.expires_at:
            raise invalid_grant("The code expired (codes last a minute); sign in again.")
        if grant.client_id != client.id:
            raise invalid_grant("The code was issued to another client.")
        if not _same_redirect(code.redirect_uri, redirect_uri, client):
            raise invalid_grant("redirect_uri must be the one the authorization request sent.")
        if verifier is None or not pkce.verifies(verifier, code.challenge):
            raise invalid_grant("The code_verifier does not match the code_challenge.")
        self.check_resource(resource)

    def check_resource(self, resource: str | None) -> None:
        """Tokens from this server are for this server's MCP endpoint only (RFC 8707)."""
        if resource is not None and resource.rstrip("/") != self.urls.resource:
            raise OAuthError(
                "invalid_target",
                f"This server issues tokens only for {self.urls.resource}.",
            )

    async def refresh(
        self, client: OAuthClient, refresh_token: str, scope: str | None, resource: str | None
    ) -> dict[str, Any]:
        """OAuth 2.1 section 4.3, rotating the refresh token.  Everything the client could
        have got wrong is checked before the token is spent, so a refused request leaves it
        good for the client's next, corrected one."""
        self.check_resource(resource)
        digest = tokens.digest(refresh_token)
        grant = await self._grant_refreshed_by(digest)
        if grant.client_id != client.id:
            raise invalid_grant("The refresh token was issued to another client.")
        granted = narrowed(grant.scopes, scope)
        await self._spend_refresh(digest, grant.id)
        return await self._issue(grant, granted, grant.id)

    async def _grant_refreshed_by(self, digest: str) -> Grant:
        grant_id = await self.store.reads.oauth.grant_of_refresh(digest)
        if grant_id is None:
            raise invalid_grant("The refresh token is not one this server issued; sign in again.")
        return await self._grant(grant_id)

    async def _spend_refresh(self, digest: str, grant_id: str) -> None:
        """Marks the refresh token used, atomically: of two requests racing with it, one wins
        and the other is a replay, which revokes the grant (OAuth 2.1 section 4.3.1)."""
        now = self.clock()
        async with self.store.transaction() as tx:
            used = await tx.oauth.use_refresh(digest, now)
        if used is None:
            raise invalid_grant("The refresh token is not one this server issued; sign in again.")
        _, expires, first = used
        if not first:
            await self._revoke(grant_id)
            raise invalid_grant(
                "The refresh token was already used, so the access it gave is revoked; "
                "sign in again."
            )
        if now >= expires:
            raise invalid_grant("The refresh token expired; sign in again.")

    async def _grant(self, grant_id: str) -> Grant:
        grant = await self.store.reads.oauth.grant(grant_id)
        if grant is None or grant.revoked_at is not None:
            raise invalid_grant("This access was revoked; sign in again.")
        return grant

    async def _issue(
        self, grant: Grant, granted: tuple[str, ...], rotating: str | None
    ) -> dict[str, Any]:
        secret, refresh = tokens.mint(), REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        async with self.store.transaction() as tx:
            # Checked again where the token is written: a code replayed meanwhile has revoked
            # the grant, and no token may outlive that.
            if not await tx.oauth.hold_grant(grant.id):
                raise invalid_grant("This access was revoked; sign in again.")
            record = await tx.accounts.grant_token(grant.id)
            if record is None:
                record = TokenRecord(
                    tokens.new_token_id(),
                    grant.user_id,
                    grant.client_name,
                    tokens.hint(secret),
                    granted,
                    now,
                    now + ACCESS_SECONDS,
                    None,
                    None,
                    grant.id,
                    grant.resource,
                )
                await tx.accounts.add_token(record, tokens.digest(secret))
            else:
                await tx.accounts.rotate_token(
                    record.id,
                    tokens.digest(secret),
                    tokens.hint(secret),
                    granted,
                    now + ACCESS_SECONDS,
                )
            await tx.oauth.add_refresh(tokens.digest(refresh), grant.id, now, now + REFRESH_SECONDS)
        return {
            "access_token": secret,
            "token_type": "Bearer",
            "expires_in": ACCESS_SECONDS,
            "refresh_token": refresh,
            "scope": " ".join(granted),
        }

    # --- revocation ------------------------------------------------------------------------

    async def revoke(self, client: OAuthClient, token: str) -> None:
        """RFC 7009: an access or refresh token of this client ends its whole grant; anything
        else is ignored (the endpoint answers 200 whatever it was given)."""
        grant_id = await self._grant_of(token)
        if grant_id is None:
            return
        grant = await self.store.reads.oauth.grant(grant_id)
        if grant is not None and grant.client_id == client.id:
            await self._revoke(grant_id)

    async def _grant_of(self, token: str) -> str | None:
        if token.startswith(REFRESH_PREFIX):
            return await self.store.reads.oauth.grant_of_refresh(tokens.digest(token))
        if tokens.well_formed(token):
            record = await self.store.reads.accounts.token_by_digest(tokens.digest(token))
            return None if record is None else record.grant_id
        return None

    async def _revoke(self, grant_id: str) -> None:
        async with self.store.transaction() as tx:
            await tx.oauth.revoke_grant(grant_id, self.clock())


def _same_redirect(sent: str, given: str | None, client: OAuthClient) -> bool:
    """The token request repeats the authorization request's redirect_uri; when that sent
    none (`""`, the client's only one was used) it may send none or that one."""
    if sent:
        return given == sent
    return given is None or given in client.redirect_uris


def narrowed(granted: tuple[str, ...], scope: str | None) -> tuple[str, ...]:
    """A refresh may ask for fewer scopes than the grant gave, never more; no scope (or an
    empty one) means all the grant gave (RFC 6749 section 6).  Shortcuts such as `mcp:full`
    are stored as the scopes they stand for."""
    asked = catalogue.expand((scope or "").split())
    if not asked:
        return granted
    if not asked <= catalogue.expand(granted):
        raise OAuthError(
            "invalid_scope", "A refresh may not ask for scopes the user did not grant."
        )
    return tuple(name for name in catalogue.CONCRETE if name in asked)
