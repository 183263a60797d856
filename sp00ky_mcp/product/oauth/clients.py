"""The clients that may ask users for access: registered here (RFC 7591), or described by a
client ID metadata document at the HTTPS URL that is their id (MCP authorization 2025-11-25,
"Client ID Metadata Documents").

A document is fetched with bounds (a few seconds, a few kilobytes, no redirects) and only from
public addresses: the host is resolved first and the connection made to the address that was
checked, so a name that resolves to a private or loopback address (or changes its answer in
between) cannot make the server reach inside its network.  The operator may allow private
addresses, and plain http with them, for development.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson

from ..accounts import Clock
from ..store import Store
from ..store.repos.oauth import OAuthClient
from . import redirects

DOCUMENT_TIMEOUT = 5.0
DOCUMENT_BYTES = 16 * 1024
# A document is used for an hour before it is fetched again.
DOCUMENT_SECONDS = 3600.0
# A document that could not be fetched or used is not asked for again for a minute; at most
# this many such answers are remembered.
REFUSED_SECONDS = 60.0
MOST_REFUSED = 1024
AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
LONGEST_NAME = 100
MOST_REDIRECTS = 20


class ClientRefused(Exception):
    """A client that cannot be used; `error` is the OAuth error code, the message says why."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


Fetch = Callable[[str], Awaitable[bytes]]


def is_document_id(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Clients:
    def __init__(self, store: Store, fetch: Fetch, clock: Clock = time.time) -> None:
        self.store = store
        self.fetch = fetch
        self.clock = clock
        # Documents that could not be used lately, so a page reloaded (or a URL that is slow
        # on purpose) costs this server one fetch a minute, not one a request.
        self.refused: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def find(self, client_id: str) -> OAuthClient:
        """The client `client_id` names, fetching (or fetching again) its metadata document if
        it is a URL; ClientRefused if there is none."""
        known = await self.store.reads.oauth.client(client_id)
        if not is_document_id(client_id):
            if known is None:
                raise ClientRefused("invalid_client", "This client is not registered here.")
            return known
        if known is not None and self.clock() - known.fetched_at < DOCUMENT_SECONDS:
            return known
        client = await self._described(client_id)
        async with self.store.transaction() as tx:
            await tx.oauth.put_client(client)
        return client

    async def _described(self, client_id: str) -> OAuthClient:
        """The client its document describes, or the reason it could not be used: remembered
        for a minute either way."""
        # Only the sentence is kept: a kept exception, raised again, would grow its traceback
        # (and hold every request's frames) with each raise.
        remembered = self.refused.get(client_id)
        if remembered is not None and self.clock() < remembered[0]:
            raise ClientRefused("invalid_client", remembered[1])
        try:
            return document_client(client_id, await self._document(client_id), self.clock())
        except ClientRefused as exc:
            self._remember(client_id, exc.message)
            raise

    def _remember(self, client_id: str, message: str) -> None:
        self.refused.pop(client_id, None)
        self.refused[client_id] = (self.clock() + REFUSED_SECONDS, message)
        while len(self.refused) > MOST_REFUSED:
            self.refused.popitem(last=False)

    async def _document(self, client_id: str) -> bytes:
        try:
            return await self.fetch(client_id)
        except ClientRefused:
            raise
        except Exception:
            raise ClientRefused(
                "invalid_client",
                "The client's metadata document could not be fetched; check that its URL "
                "answers with the document.",
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
    text, else the host it redirects to."""
    if isinstance(value, str):
        name = " ".join(value.split())
        if name and len(name) <= LONGEST_NAME and name.isprintable():
            return name
    return urlsplit(redirect_uri).hostname or redirect_uri[:LONGEST_NAME]


# --- client ID metadata documents -------------------------------------------------------------


def document_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a client ID: https (http too when private addresses are allowed),
    with a path, no fragment, no user info, no dot segments."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "The client_id is not a URL."
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        return "A client_id URL must use https."
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


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215)
# and the deprecated IPv4-compatible form (RFC 4291 section 2.5.5.1).
_EMBEDDING_IPV4 = tuple(
    ipaddress.ip_network(prefix) for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96")
)


def public_address(address: str) -> bool:
    """Whether `address` is on the public internet, judging an IPv6 address that stands for
    an IPv4 one (mapped, 6to4, NAT64, compatible) by the IPv4 address it reaches."""
    ip = _reached(ipaddress.ip_address(address.split("%", 1)[0]))
    return ip.is_global and not ip.is_multicast


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _reached(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in prefix for prefix in _EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def document_fetcher(allow_private: bool) -> Fetch:
    """Fetches a metadata document by the rules above."""

    async def fetch(url: str) -> bytes:
        problem = document_problem(url, allow_private)
        if problem is not None:
            raise ClientRefused("invalid_client", problem)
        parts = urlsplit(url)
        assert parts.hostname is not None
        # One bound over the lookup and the fetch: a slow resolver holds a page no longer
        # than a slow server does.
        with anyio.fail_after(DOCUMENT_TIMEOUT):
            address = await _address(parts.hostname, parts.port, allow_private)
            return await _get(url, parts.hostname, address)

    return fetch


async def _address(host: str, port: int | None, allow_private: bool) -> str:
    try:
        found = await anyio.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise ClientRefused(
            "invalid_client", f"The client_id's host {host} does not resolve."
        ) from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise ClientRefused("invalid_client", f"The client_id's host {host} does not resolve.")
    if not allow_private and not all(public_address(a) for a in addresses):
        raise ClientRefused(
            "invalid_client",
            "The client_id's host resolves to a private or local address, which this server "
            "does not fetch from.",
        )
    return addresses[0]


async def _get(url: str, host: str, address: str) -> bytes:
    """GET `url` from `address` (the one checked), naming `host` in the request and TLS."""
    parts = urlsplit(url)
    shown = f"[{address}]" if ":" in address else address
    netloc = shown if parts.port is None else f"{shown}:{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    # Asked for uncompressed, so the size bound is on what is parsed (no decompression bomb).
    headers = {
        "host": parts.netloc.rpartition("@")[2],
        "accept": "application/json",
        "accept-encoding": "identity",
    }
    async with httpx.AsyncClient(follow_redirects=False, timeout=DOCUMENT_TIMEOUT) as http:
        request = http.build_request(
            "GET", pinned, headers=headers, extensions={"sni_hostname": host}
        )
        response = await http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise ClientRefused(
                    "invalid_client",
                    f"The client's metadata document answered {response.status_code}, not 200.",
                )
            _plainly_encoded(response)
            return await _bounded(response)
        finally:
            await response.aclose()


def _plainly_encoded(response: httpx.Response) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ClientRefused(
            "invalid_client",
            f"The client's metadata document came {encoding}-encoded though this server asked "
            "for it uncompressed; serve it with no Content-Encoding.",
        )


async def _bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > DOCUMENT_BYTES:
            raise ClientRefused(
                "invalid_client",
                f"The client's metadata document is larger than {DOCUMENT_BYTES} bytes.",
            )
    return bytes(body)
