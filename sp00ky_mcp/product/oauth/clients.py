"""The clients that may ask users for access: registered here (RFC 7591), or described by a
client ID metadata document at the HTTPS URL that is their id (MCP authorization 2025-11-25,
"Client ID Metadata Documents"; fetched by `fetching`).

A document client stays usable while its document cannot be had for a while (its server down,
its name servers slow, this server's own lookups all taken): the copy stored at the last fetch
serves for a day, so no one can lock a working client out by making fetches fail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import anyio
import orjson

from ...engine.quotas import LocalQuotas, Quotas
from ..accounts import Clock
from ..store import Store
from ..store.repos.oauth import OAuthClient
from . import redirects

# A document is used for an hour before it is fetched again, and its stored copy for a day
# while fetching it again fails.
DOCUMENT_SECONDS = 3600.0
STALE_SECONDS = 86400.0
# A document that could not be fetched or used is not asked for again for a minute; at most
# this many such answers are remembered.
REFUSED_SECONDS = 60.0
MOST_REFUSED = 1024
# Documents fetched for one address: ten at once, then one every thirty seconds.
FETCH_BURST, FETCH_RATE = 10.0, 1 / 30
# A client_id longer than any URL a browser keeps is no one's (and is not worth remembering).
LONGEST_CLIENT_ID = 2000
AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
LONGEST_NAME = 100
MOST_REDIRECTS = 20


class ClientRefused(Exception):
    """A client that cannot be used; `error` is the OAuth error code, the message says why."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class DocumentUnreachable(ClientRefused):
    """A document that could not be had just now (network, resolver, a 5xx): a stored copy
    still serves."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_client", message)


class FetchBusy(DocumentUnreachable):
    """This server's own bounds on fetching were reached: about this server, not the
    document, so never remembered against it."""


# Fetches the document at a URL; told whether a stored copy is being renewed.
Fetch = Callable[[str, bool], Awaitable[bytes]]


def is_document_id(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Clients:
    def __init__(
        self,
        store: Store,
        fetch: Fetch,
        clock: Clock = time.time,
        quotas: Quotas | None = None,
    ) -> None:
        self.store, self.fetch, self.clock = store, fetch, clock
        self.quotas = quotas or LocalQuotas()
        # Documents that could not be used lately, so a page reloaded (or a URL that is slow
        # on purpose) costs this server one fetch a minute, not one a request.  Only the
        # sentence is kept: a kept exception, raised again, would grow its traceback.
        self.refused: OrderedDict[str, tuple[float, bool, str]] = OrderedDict()
        self.fetching: dict[str, anyio.Lock] = {}

    async def find(self, client_id: str, asker: str = "-", new: bool = True) -> OAuthClient:
        """The client `client_id` names, fetching (or fetching again) its metadata document if
        it is a URL, counted against `asker`'s address; ClientRefused if there is none.  With
        `new` False a document never stored is not fetched: a client that has signed no one
        in holds no code or token to bring to the token or revocation endpoint."""
        if len(client_id) > LONGEST_CLIENT_ID:
            raise ClientRefused(
                "invalid_client", f"A client_id has at most {LONGEST_CLIENT_ID} characters."
            )
        known = await self.store.reads.oauth.client(client_id)
        if not is_document_id(client_id):
            if known is None:
                raise ClientRefused("invalid_client", "This client is not registered here.")
            return known
        if self._fresh(known, DOCUMENT_SECONDS):
            return known
        if known is None and not new:
            raise ClientRefused(
                "invalid_client",
                "This client has not signed anyone in here; a client named by its metadata "
                "document starts at the authorization endpoint.",
            )
        async with self._turn(client_id):
            return await self._described(client_id, asker)

    def _fresh(self, known: OAuthClient | None, seconds: float) -> TypeGuard[OAuthClient]:
        return known is not None and self.clock() - known.fetched_at < seconds

    @asynccontextmanager
    async def _turn(self, client_id: str) -> AsyncIterator[None]:
        """One fetch of a document at a time: those asking meanwhile wait for it, then find
        the document stored or its failure remembered."""
        lock = self.fetching.setdefault(client_id, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self.fetching.pop(client_id, None)

    async def _described(self, client_id: str, asker: str) -> OAuthClient:
        known = await self.store.reads.oauth.client(client_id)
        if self._fresh(known, DOCUMENT_SECONDS):  # fetched while this request waited
            return known
        # Only a client some user allowed may use the lookups kept for renewals: anyone can
        # have a document stored, and slow name servers behind many of them would else take
        # those lookups from the clients people use.
        renewing = known is not None and await self.store.reads.oauth.client_has_grant(client_id)
        try:
            client = await self._fetched(client_id, asker, renewing)
        except DocumentUnreachable:
            if self._fresh(known, STALE_SECONDS):
                return known
            raise
        async with self.store.transaction() as tx:
            await tx.oauth.put_client(client)
        return client

    async def _fetched(self, client_id: str, asker: str, renewing: bool) -> OAuthClient:
        """The client its document describes, or the reason it could not be used: remembered
        for a minute either way."""
        remembered = self.refused.get(client_id)
        if remembered is not None and self.clock() < remembered[0]:
            raise _refusal(*remembered[1:])
        await self._allowance(asker)
        try:
            body = await self._document(client_id, renewing)
            return document_client(client_id, body, self.clock())
        except FetchBusy:
            raise
        except ClientRefused as exc:
            self._remember(client_id, exc)
            raise

    async def _allowance(self, asker: str) -> None:
        """FetchBusy once `asker` has had its share of fetches."""
        wait = await self.quotas.throttle(
            "oauth-fetch:" + asker, self.clock(), FETCH_RATE, FETCH_BURST
        )
        if wait:
            raise FetchBusy(
                "Too many client documents were looked up from your address; try again in "
                f"{max(1, round(wait / 60))} minute(s)."
            )

    def _remember(self, client_id: str, exc: ClientRefused) -> None:
        unreachable = isinstance(exc, DocumentUnreachable)
        self.refused.pop(client_id, None)
        self.refused[client_id] = (self.clock() + REFUSED_SECONDS, unreachable, exc.message)
        while len(self.refused) > MOST_REFUSED:
            self.refused.popitem(last=False)

    async def _document(self, client_id: str, renewing: bool) -> bytes:
        try:
            return await self.fetch(client_id, renewing)
        except ClientRefused:
            raise
        except Exception:
            raise DocumentUnreachable(
                "The client's metadata document could not be fetched; check that its URL "
                "answers with the document."
            ) from None

    async def register(self, body: Any) -> tuple[OAuthClient, dict[str, Any]]:
        """RFC 7591 section 3: the client, and the response that tells it its id (and secret,
        for a confidential client, shown once and stored as a digest)."""
        fields = registration(body)
        method = fields["token_endpoint_auth_method"]
        secret = None if method == "none" else secrets.token_urlsafe(32)
        now = self.clock()
        client = OAuthClient(
            "cli_" + secrets.token_hex(12),
            "registered",
            fields["client_name"],
            tuple(fields["redirect_uris"]),
            method,
            None if secret is None else secret_digest(secret),
            now,
            now,
        )
        async with self.store.transaction() as tx:
            await tx.oauth.put_client(client)
        answer = {**fields, "client_id": client.id, "client_id_issued_at": int(now)}
        if secret is not None:
            answer |= {"client_secret": secret, "client_secret_expires_at": 0}
        return client, answer


def _refusal(unreachable: bool, message: str) -> ClientRefused:
    """A remembered failure raised afresh, of the kind it was."""
    if unreachable:
        return DocumentUnreachable(message)
    return ClientRefused("invalid_client", message)


def authenticated(client: OAuthClient, secret: str | None) -> bool:
    """Whether the request proves it comes from `client`: a public client proves nothing (PKCE
    binds its code), a confidential one its secret, compared in constant time."""
    if client.secret_hash is None:
        return True
    if secret is None:
        return False
    return hmac.compare_digest(secret_digest(secret), client.secret_hash)


# --- registration (RFC 7591) ----------------------------------------------------------------


def registration(body: Any) -> dict[str, Any]:
    """The client metadata a registration asks for, checked; ClientRefused with
    `invalid_redirect_uri` or `invalid_client_metadata` (RFC 7591 section 3.2.2)."""
    if not isinstance(body, dict):
        raise ClientRefused("invalid_client_metadata", "The body must be a JSON object.")
    uris = _redirect_uris(body.get("redirect_uris"))
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ClientRefused(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}.",
        )
    grants = _strings(body, "grant_types", ["authorization_code"])
    if not set(grants) <= {"authorization_code", "refresh_token"}:
        raise ClientRefused(
            "invalid_client_metadata",
            "grant_types may hold only authorization_code and refresh_token.",
        )
    if _strings(body, "response_types", ["code"]) != ["code"]:
        raise ClientRefused("invalid_client_metadata", 'response_types must be ["code"].')
    return {
        "redirect_uris": uris,
        "token_endpoint_auth_method": method,
        "grant_types": grants,
        "response_types": ["code"],
        "client_name": client_name(body.get("client_name"), uris[0]),
    }


def _redirect_uris(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MOST_REDIRECTS:
        raise ClientRefused(
            "invalid_redirect_uri",
            f"redirect_uris must list between 1 and {MOST_REDIRECTS} URIs.",
        )
    for uri in value:
        problem = redirects.problem(uri) if isinstance(uri, str) else "A URI must be a string."
        if problem is not None:
            raise ClientRefused("invalid_redirect_uri", problem)
    return list(dict.fromkeys(value))


def _strings(body: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = body.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientRefused("invalid_client_metadata", f"{key} must be a list of strings.")
    return list(value)


def client_name(value: Any, redirect_uri: str) -> str:
    """The name the consent page shows: the client's own if it is a short line of visible
    text, else where it redirects to (an app's own scheme in full, never just its host)."""
    if isinstance(value, str):
        name = " ".join(value.split())
        if name and len(name) <= LONGEST_NAME and name.isprintable():
            return name
    return redirects.destination(redirect_uri)[:LONGEST_NAME]


# --- client ID metadata documents -------------------------------------------------------------


def document_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a client ID: https (http too when private addresses are allowed),
    with a path, no fragment, no user info, no dot segments."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        return "The client_id is not a URL (or its port is out of range)."
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        return "A client_id URL must use https."
    if not (url.isascii() and url.isprintable()) or " " in url:
        return (
            "A client_id URL must be printable ASCII without spaces; write an international "
            "host name in its xn-- form."
        )
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        return "A client_id URL needs a host, and no user info or fragment."
    if parts.path in ("", "/") or any(s in (".", "..") for s in parts.path.split("/")):
        return "A client_id URL needs a path, without . or .. segments."
    return None


def document_client(client_id: str, body: bytes, now: float) -> OAuthClient:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientRefused(
            "invalid_client", "The client's metadata document is not JSON."
        ) from None
    if not isinstance(document, dict) or document.get("client_id") != client_id:
        raise ClientRefused(
            "invalid_client",
            "The client's metadata document must name its own URL as client_id.",
        )
    try:
        fields = registration({"token_endpoint_auth_method": "none", **document})
    except ClientRefused as exc:
        raise ClientRefused(
            "invalid_client", f"The client's metadata document: {exc.message}"
        ) from None
    if fields["token_endpoint_auth_method"] != "none":
        raise ClientRefused(
            "invalid_client",
            "A client described by a metadata document must be public "
            "(token_endpoint_auth_method none).",
        )
    uris = tuple(fields["redirect_uris"])
    return OAuthClient(client_id, "document", fields["client_name"], uris, "none", None, now, now)
