"""Fetching client ID metadata documents, from the public internet only.

The host is resolved first and the connection made to the address that was checked, so a name
that resolves to a private or loopback address (or changes its answer in between) cannot make
the server reach inside its network.  Addresses are judged by explicit lists of the
special-purpose blocks (the IANA IPv4 and IPv6 special-purpose address registries), not by
`ipaddress.is_global`, whose answers have changed between Python versions.

Lookups run on threads of their own, a few at a time: a host whose name servers never answer
holds a thread for as long as the system resolver waits, and must not hold the ones the rest
of the server (its store, its connections to Redis or PostgreSQL) looks up names on, nor keep
the process from exiting.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import cache, partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from .clients import ClientRefused, DocumentUnreachable, Fetch, FetchBusy, document_problem

DOCUMENT_TIMEOUT = 5.0
DOCUMENT_BYTES = 16 * 1024
# Addresses of each family (IPv4, IPv6) a fetch tries in turn before it gives up.
TRIED_PER_FAMILY = 2
# Host lookups running at once, across every request, and how many of them are kept for
# renewing the documents of clients a user allowed (so that slow names looked up for other
# clients cannot lock those out).
RESOLVING = 8
KEPT_FOR_RENEWALS = 3
# Fetches in flight at once, across every request: past it, FetchBusy at once.  Each holds a
# connection and a little memory for up to DOCUMENT_TIMEOUT, and a client that left does not
# stop its fetch, so without this bound addresses enough would hold as many as they like.
FETCHING = 64
# Statuses that say the document may be had later, so a stored copy keeps serving meanwhile.
PASSING_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_V4_DENIED = tuple(
    IPv4Network(block)
    for block in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
        "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
# Only global unicast space (RFC 4291 section 2.4) is public, less what is set apart in it.
_V6_GLOBAL = IPv6Network("2000::/3")
_V6_DENIED = tuple(
    IPv6Network(block)
    for block in ("2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16")
)  # fmt: skip
# Prefixes that carry the IPv4 address reached in their last 32 bits: the well-known NAT64
# prefix (RFC 6052 section 2.1).  The local-use prefix 64:ff9b:1::/48 (RFC 8215) may place it
# elsewhere, so it is outside global unicast space and refused with the rest.
_V6_NAT64 = IPv6Network("64:ff9b::/96")

Lookup = Callable[[str, int], Sequence[Any]]
Future = asyncio.Future[list[str]]


def public_address(text: str) -> bool:
    """Whether `text` is an address on the public internet, judging an IPv6 address that
    stands for an IPv4 one (mapped, 6to4, well-known NAT64) by the IPv4 address it reaches."""
    ip = ip_address(text.split("%", 1)[0])
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is None:
            return ip in _V6_GLOBAL and not any(ip in block for block in _V6_DENIED)
        ip = embedded
    return not any(ip in block for block in _V4_DENIED)


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _V6_NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class Resolver:
    """Looks host names up on at most `most` threads at a time, `kept` of them for renewing
    the documents of clients already known; past that, FetchBusy at once rather than a wait."""

    def __init__(
        self, most: int = RESOLVING, lookup: Lookup | None = None, kept: int = KEPT_FOR_RENEWALS
    ) -> None:
        self.lookup = lookup or partial(socket.getaddrinfo, type=socket.SOCK_STREAM)
        # Held by a lookup's thread for as long as it really runs, which may be longer than
        # its caller waits: a lookup given up on still counts until the resolver lets go.
        self.slots = threading.BoundedSemaphore(most)
        self.newcomers = threading.BoundedSemaphore(max(1, most - kept))

    async def addresses(self, host: str, port: int, renewing: bool = False) -> list[str]:
        """The addresses `host` resolves to (none when it does not resolve)."""
        held = self._hold(renewing)
        loop = asyncio.get_running_loop()
        answer: Future = loop.create_future()
        # A daemon thread of its own: a lookup that never ends neither holds a thread the
        # store or the event loop needs nor keeps the process from exiting.
        thread = threading.Thread(
            target=self._run, args=(host, port, loop, answer, held), daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had
            _release(held)
            raise FetchBusy("This server cannot look client hosts up now; try again.") from None
        return await answer

    def _hold(self, renewing: bool) -> Held:
        """The slots a lookup takes (a new client's may not take those kept for renewals),
        or FetchBusy when there are none for it."""
        wanted = (self.slots,) if renewing else (self.newcomers, self.slots)
        for index, slots in enumerate(wanted):
            if not slots.acquire(blocking=False):
                _release(wanted[:index])
                raise FetchBusy(
                    "This server is looking up too many client hosts at once; try again in "
                    "a minute."
                )
        return wanted

    def _run(
        self, host: str, port: int, loop: asyncio.AbstractEventLoop, answer: Future, held: Held
    ) -> None:
        try:
            found = [str(info[4][0]) for info in self.lookup(host, port)]
        except Exception:  # whatever the resolver raises, the host does not resolve: the
            found = []  # caller gets that now, not after waiting out its bound
        finally:
            _release(held)
        with suppress(RuntimeError):  # the loop closed while the resolver took its time
            loop.call_soon_threadsafe(_settle, answer, found)


Held = tuple[threading.BoundedSemaphore, ...]


def _release(held: Held) -> None:
    for slots in held:
        slots.release()


def _settle(answer: Future, found: list[str]) -> None:
    if not answer.done():  # its caller may have given up
        answer.set_result(found)


def document_fetcher(allow_private: bool, resolver: Resolver | None = None) -> Fetch:
    """Fetches a metadata document with bounds (a few seconds, a few kilobytes, no redirects)
    from public addresses only, unless the operator allows private ones (and plain http with
    them) for development."""
    resolver = resolver or Resolver()
    in_flight = [0]

    async def fetch(url: str, renewing: bool) -> bytes:
        problem = document_problem(url, allow_private)
        if problem is not None:
            raise ClientRefused("invalid_client", problem)
        if in_flight[0] >= FETCHING:
            raise FetchBusy("This server is fetching too many client documents now; try again.")
        in_flight[0] += 1
        try:
            return await _fetched(url, renewing)
        finally:
            in_flight[0] -= 1

    async def _fetched(url: str, renewing: bool) -> bytes:
        parts = urlsplit(url)
        assert parts.hostname is not None
        # One bound over the lookup and the fetch: a slow resolver holds a page no longer
        # than a slow server does.
        with anyio.fail_after(DOCUMENT_TIMEOUT):
            found = await resolver.addresses(parts.hostname, parts.port or 443, renewing)
            return await _from_any(url, parts.hostname, _checked(found, allow_private))

    return fetch


def _checked(addresses: list[str], allow_private: bool) -> list[str]:
    """The addresses to try, when every one is public (or private ones are allowed).  Which
    of the two went wrong is not said: the answer would tell anyone which names this server's
    resolver knows inside its network."""
    if addresses and (allow_private or all(public_address(a) for a in addresses)):
        return addresses
    message = "The client_id's host does not resolve to public addresses this server fetches from."
    raise (ClientRefused("invalid_client", message) if addresses else DocumentUnreachable(message))


def _to_try(addresses: list[str]) -> list[str]:
    """The first `TRIED_PER_FAMILY` distinct addresses of each family, in the resolver's
    order: a host listing dozens of unreachable addresses holds a fetch no longer."""
    kept: list[str] = []
    for address in addresses:
        family = ":" in address
        if address not in kept and sum((":" in a) == family for a in kept) < TRIED_PER_FAMILY:
            kept.append(address)
    return kept


async def _from_any(url: str, host: str, addresses: list[str]) -> bytes:
    """The document from the first address that takes the connection (a host whose IPv6
    route is broken may still answer on IPv4)."""
    addresses = _to_try(addresses)
    for address in addresses[:-1]:
        try:
            return await _get(url, host, address)
        except httpx.ConnectError:
            continue
    return await _get(url, host, addresses[-1])


async def _get(url: str, host: str, address: str) -> bytes:
    """GET `url` from `address` (the one checked), naming `host` in the request and TLS."""
    parts = urlsplit(url)
    shown = f"[{address}]" if ":" in address else address
    netloc = shown if parts.port is None else f"{shown}:{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    # Asked for uncompressed, so the size bound is on what is parsed (no decompression bomb).
    headers = {"host": parts.netloc, "accept": "application/json", "accept-encoding": "identity"}
    # trust_env off: no proxy from the environment stands between the check and the fetch.
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=DOCUMENT_TIMEOUT, trust_env=False, verify=_tls()
    ) as http:
        request = http.build_request(
            "GET", pinned, headers=headers, extensions={"sni_hostname": host}
        )
        response = await http.send(request, stream=True)
        try:
            _answered(response)
            return await _bounded(response)
        finally:
            await response.aclose()


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every fetch: building one (the CA bundle loaded) costs about 15 ms
    of the event loop and 700 KiB, which a client per fetch would pay each time."""
    return httpx.create_ssl_context()


def _answered(response: httpx.Response) -> None:
    """ClientRefused unless the response is a 200 with a plainly encoded body."""
    status = response.status_code
    if status != 200:
        message = f"The client's metadata document answered {status}, not 200."
        if status in PASSING_STATUSES:
            raise DocumentUnreachable(message)
        raise ClientRefused("invalid_client", message)
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
