"""Whom a request comes from behind proxies the operator trusts: X-Forwarded-For read from the
right, believed only as far as trusted proxies vouch for it."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine.forwarded import ClientAddress, limited

BEHIND = ClientAddress(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.2", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the left is the client's
        ("10.0.0.2", "203.0.113.7, 10.0.0.9", "203.0.113.7"),  # two proxies deep
        ("10.0.0.2", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all trusted: the furthest
        ("10.0.0.2", "junk, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.2", "203.0.113.7, junk", "10.0.0.2"),  # a proxy wrote junk: only the peer
        ("10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.0.0.2", "[2001:db8::1", "10.0.0.2"),  # unclosed: junk
        ("10.0.0.2", "[2001:db8::1]x", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7:4711", "203.0.113.7"),
        ("::1", "2001:db8::2", "2001:db8::2"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not from a proxy: not believed
        ("", "198.51.100.1", ""),
    ],
)
def test_the_client_is_the_first_address_no_trusted_proxy_passed_on(
    peer: str, forwarded_for: str | None, client: str
) -> None:
    assert BEHIND.of(peer, forwarded_for) == client


def test_with_no_trusted_proxy_the_peer_is_the_client() -> None:
    assert ClientAddress().of("10.0.0.2", "203.0.113.7") == "10.0.0.2"


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("-", "-"),
    ],
)
def test_an_ipv6_client_is_limited_by_its_slash_64(address: str, counted_as: str) -> None:
    assert limited(address) == counted_as
