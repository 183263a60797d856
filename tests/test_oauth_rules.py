"""The pure rules of sign-in: redirect URIs, PKCE, password hashes, signed values, and what a
challenge may carry."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine.keys import KeyRing
from sp00ky_mcp.product.oauth import passwords, pkce, redirects
from sp00ky_mcp.product.oauth.clients import client_name, document_problem
from sp00ky_mcp.product.oauth.fetching import public_address
from sp00ky_mcp.product.oauth.metadata import quotable
from sp00ky_mcp.product.oauth.signed import Signer

REGISTERED = ("http://127.0.0.1:3000/callback", "https://app.example/cb", "cursor://x/cb")


@pytest.mark.parametrize(
    ("given", "matches"),
    [
        ("https://app.example/cb", True),
        ("http://127.0.0.1:49152/callback", True),  # loopback: any port (RFC 8252 7.3)
        ("http://127.0.0.1/callback", True),
        ("cursor://x/cb", True),
        ("https://app.example/cb/", False),
        ("https://app.example/cb?x=1", False),
        ("https://app.example:8443/cb", False),
        ("http://127.0.0.1:49152/other", False),
        ("http://localhost:3000/callback", False),
        ("https://APP.example/cb", False),
        ("http://evil.example%5C@127.0.0.1:9/callback", False),
        ("http://evil.example\\@127.0.0.1:9/callback", False),
        ("http://x@127.0.0.1:9/callback", False),
        ("http://127.0.0.1:9/callback\n", False),
        ("http://127.0.0.1:9/callback\u00a0", False),
    ],
)
def test_a_redirect_uri_matches_exactly_but_for_a_loopback_port(given: str, matches: bool) -> None:
    assert redirects.matches(REGISTERED, given) is matches


@pytest.mark.parametrize(
    "uri",
    [
        "https://a.example/cb",
        "http://127.0.0.1:8/cb",
        "http://[::1]/cb",
        "http://[::1]:8/cb",
        "com.example.app:/cb",
        "https://a.example:8443/cb?tenant=x",
    ],
)
def test_redirect_uris_a_client_can_own_are_accepted(uri: str) -> None:
    assert redirects.problem(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://a.example/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://a/cb#f",
        "",
        "x y",
        "https://a.example\\@b.example/cb",
        "https://u:p@a.example/cb",
        "https://a%2eexample/cb",
        "https://a.example/c\u0000b",
        "https://\u00e9.example/cb",
        "http://[::1]evil.example:9/cb",
        "http://[::1]:9evil.example/cb",
        "https://a.example:80:81/cb",
        "https://a.example;b.example/cb",
    ],
)
def test_redirect_uris_a_client_cannot_own_are_refused(uri: str) -> None:
    assert redirects.problem(uri) is not None


def test_pkce_s256_is_the_rfc_7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce.s256(verifier) == challenge
    assert pkce.verifies(verifier, challenge)
    assert not pkce.verifies(verifier[:-1] + "N", challenge)
    assert not pkce.verifies("short", pkce.s256("short"))


def test_a_password_hash_verifies_its_password_only() -> None:
    stored = passwords.hashed("correct horse battery")
    assert stored.startswith("scrypt$32768$8$1$")
    assert passwords.verifies("correct horse battery", stored)
    assert not passwords.verifies("correct horse batterY", stored)
    assert not passwords.verifies("x", "not$a$hash")
    assert passwords.problem("short") == "A password needs at least 10 characters."


def test_a_signed_value_opens_only_for_its_purpose_unchanged_and_in_time() -> None:
    now = [1000.0]
    signer = Signer(KeyRing([b"k" * 32]), clock=lambda: now[0])
    signed = signer.sign("authorize", {"c": "cli_1"}, 60)
    assert signer.open("authorize", signed) == {"c": "cli_1", "exp": 1060.0}
    assert signer.open("signin", signed) is None
    body, mac = signed.split(".")
    assert signer.open("authorize", body[:-2] + "xx." + mac) is None
    now[0] = 1061.0
    assert signer.open("authorize", signed) is None
    assert signer.open("authorize", "garbage") is None


def test_a_csrf_token_holds_for_its_browser_and_request_only() -> None:
    signer = Signer(KeyRing([b"k" * 32]))
    token = signer.csrf("nonce-a", "request-1")
    assert signer.csrf_holds("nonce-a", "request-1", token)
    assert not signer.csrf_holds("nonce-b", "request-1", token)
    assert not signer.csrf_holds("nonce-a", "request-2", token)
    assert not signer.csrf_holds(None, "request-1", token)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("64:ff9b::a00:1", False),  # NAT64 to 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to 169.254.169.254
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64 (RFC 8215): refused, whatever it holds
        ("64:ff9b:1:808:8:800::", False),  # 8.8.8.8 in the /48 layout of RFC 6052: still refused
        ("::ffff:0:808:808", False),  # IPv4-translated (RFC 2765)
        ("::ffff:8.8.8.8", True),  # IPv4-mapped, judged by 8.8.8.8
        ("100::1", False),  # discard-only
        ("2001:db8::1", False),  # documentation
        ("2001::1", False),  # Teredo: its IPv4 address hidden
        ("fe80::1", False),
        ("ff02::1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("198.18.0.1", False),  # benchmarking
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("64:ff9b::808:808", True),  # NAT64 to 8.8.8.8
        ("2002:a00:1::", False),  # 6to4 from 10.0.0.1
        ("2002:808:808::1", True),
        ("::a00:1", False),  # IPv4-compatible 10.0.0.1
        ("::808:808", False),  # IPv4-compatible (deprecated): refused, whatever it holds
        ("::", False),
    ],
)
def test_only_public_addresses_are_fetched_from(address: str, public: bool) -> None:
    assert public_address(address) is public


def test_a_client_id_url_must_be_https_with_a_path() -> None:
    assert document_problem("https://app.example/client.json", False) is None
    assert document_problem("http://app.example/client.json", False) is not None
    assert document_problem("http://127.0.0.1/client.json", True) is None
    assert document_problem("https://app.example/", False) is not None
    assert document_problem("https://app.example/a/../b", False) is not None
    assert document_problem("https://u:p@app.example/c", False) is not None
    assert document_problem("https://xn--pple-43d.example/c", False) is None
    assert document_problem("https://app.example:99999/c", False) == (
        "The client_id is not a URL (or its port is out of range)."
    )


def test_a_client_id_url_with_an_international_host_must_spell_it_in_ascii() -> None:
    # A Cyrillic a first: it would read as apple.example on the consent page.
    assert document_problem("https://\u0430pple.example/c", False) == (
        "A client_id URL must be printable ASCII without spaces; write an international "
        "host name in its xn-- form."
    )


def test_an_error_description_keeps_to_the_characters_rfc_6750_allows() -> None:
    assert quotable('say "`spky`" \\ …') == "say ''spky'' ' '"


@pytest.mark.parametrize(
    ("redirect_uri", "name"),
    [
        ("https://app.example:8443/cb", "app.example:8443"),
        ("x-app://claude.ai/cb", "x-app://claude.ai"),
        ("com.example.app:/cb", "com.example.app:"),
    ],
)
def test_a_client_that_gave_no_name_is_named_after_where_it_sends_the_user(
    redirect_uri: str, name: str
) -> None:
    assert client_name(None, redirect_uri) == name
    assert client_name(" \n ", redirect_uri) == name
