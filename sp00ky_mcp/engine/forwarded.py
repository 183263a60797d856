"""The address a request comes from when a proxy this server trusts stands in front of it.
Pure.

Behind a TLS proxy every connection comes from the proxy, so limits kept per address would
put every user in one bucket.  Each proxy appends the address it was reached from to
`X-Forwarded-For`; read from the right, skipping the proxies the operator named, the first
address is the one no trusted proxy merely passed on: the client's.  Entries further left came
from the client itself and are never believed (a client can write anything there).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

Address = IPv4Address | IPv6Address


def network_text(text: str) -> str:
    """`text` as an address or network (`10.0.0.0/8`, `::1`), or ValueError saying so."""
    try:
        return str(ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"'{text}' is not an address or network; give one such as 10.0.0.0/8 or 127.0.0.1."
        ) from None


class ClientAddress:
    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.networks = tuple(ip_network(text, strict=False) for text in trusted)

    def of(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: `peer` itself unless `peer` is a trusted proxy that says
        whom it forwards for."""
        if not self.networks or not forwarded_for or not self._trusted(_parsed(peer)):
            return peer
        client = peer
        for item in reversed(forwarded_for.split(",")):
            hop = _parsed(item)
            if hop is None:
                return client
            client = str(hop)
            if not self._trusted(hop):
                return client
        return client

    def _trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)


def limited(address: str) -> str:
    """Whom a per-address limit counts `address` against: an IPv6 address by its /64, the
    block one subscriber is usually given (RFC 6177), so a host cannot pick a fresh address
    for each attempt."""
    parsed = _parsed(address)
    if not isinstance(parsed, IPv6Address):
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ip_network(f"{parsed}/64", strict=False))


def _parsed(text: str) -> Address | None:
    """An address as proxies write it: bare, or IPv6 in brackets (a port after is dropped)."""
    text = text.strip()
    if text.startswith("["):
        text, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None
