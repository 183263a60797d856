"""Sign in with Sp00ky: the resource server's metadata and challenges, the authorization
server's endpoints, and the attacks each has to stand, over real HTTP on both stores."""

from __future__ import annotations

import asyncio
import gzip
import html
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import orjson
import pytest

from sp00ky_mcp.engine.quotas import LocalQuotas
from sp00ky_mcp.product import scopes
from sp00ky_mcp.product.oauth import passwords
from sp00ky_mcp.product.oauth import web as web_module
from sp00ky_mcp.product.oauth.authority import OAuthError
from sp00ky_mcp.product.oauth.web import OAuthWeb
from sp00ky_mcp.product.store import Store
from sp00ky_mcp.product.store.repos.accounts import User
from sp00ky_mcp.product.store.repos.oauth import Grant, OAuthRepo

from .oauth_support import (
    FORM,
    PASSWORD,
    REDIRECT,
    allow,
    answer_of,
    ask,
    code_for,
    redeem,
    register,
    root,
    sign_in,
    signed_in_tokens,
    ticked_scopes,
    token_request,
    with_password,
)
from .product_support import ProductEnv, product_server

pytestmark = pytest.mark.anyio

READ = list(scopes.READ_SCOPES)


async def tools_list(env: ProductEnv, token: str) -> httpx.Response:
    return await env.rpc(token, "tools/list")


# --- metadata ---------------------------------------------------------------------------------


async def test_protected_resource_metadata_is_served_at_both_well_known_urls(
    product: ProductEnv,
) -> None:
    base = root(product)
    suffixed = await product.http.get(base + "/.well-known/oauth-protected-resource/v1/mcp")
    bare = await product.http.get(base + "/.well-known/oauth-protected-resource")
    expected = {
        "resource": product.server.url,
        "authorization_servers": [base],
        "scopes_supported": list(scopes.CONCRETE),
        "bearer_methods_supported": ["header"],
        "resource_name": "Sp00ky Cloud MCP server",
        "resource_documentation": "https://sp00ky.cloud/docs/mcp",
    }
    assert (suffixed.status_code, suffixed.json()) == (200, expected)
    assert (bare.status_code, bare.json()) == (200, expected)
    assert suffixed.headers["access-control-allow-origin"] == "*"


async def test_authorization_server_metadata_says_pkce_s256_and_metadata_documents(
    product: ProductEnv,
) -> None:
    base = root(product)
    reply = await product.http.get(base + "/.well-known/oauth-authorization-server")
    assert reply.status_code == 200
    assert reply.json() == {
        "issuer": base,
        "authorization_endpoint": base + "/oauth/authorize",
        "token_endpoint": base + "/oauth/token",
        "registration_endpoint": base + "/oauth/register",
        "revocation_endpoint": base + "/oauth/revoke",
        "scopes_supported": list(scopes.CONCRETE),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_post",
            "client_secret_basic",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_post",
            "client_secret_basic",
        ],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }


async def test_the_public_url_is_the_issuer(store: Store, tmp_path: Path) -> None:
    public = "https://mcp.sp00ky.example"
    async with product_server(store, tmp_path, public_url=public) as env:
        reply = await env.http.get(root(env) + "/.well-known/oauth-protected-resource/v1/mcp")
        missing = await env.http.post(env.server.url, json={})
    assert reply.json()["resource"] == public + "/v1/mcp"
    assert reply.json()["authorization_servers"] == [public]
    assert (
        f'resource_metadata="{public}/.well-known/oauth-protected-resource/v1/mcp"'
        in missing.headers["www-authenticate"]
    )


async def test_without_oauth_nothing_of_it_is_served(store: Store, tmp_path: Path) -> None:
    async with product_server(store, tmp_path, oauth=False) as env:
        metadata = await env.http.get(root(env) + "/.well-known/oauth-authorization-server")
        missing = await env.http.post(env.server.url, json={})
    assert metadata.status_code == 404
    assert missing.headers["www-authenticate"] == 'Bearer realm="sp00ky-mcp"'


# --- the whole flow ---------------------------------------------------------------------------


async def test_a_signed_in_client_gets_a_token_that_works_like_a_minted_one(
    product: ProductEnv,
) -> None:
    _, issued = await signed_in_tokens(product)
    assert set(issued) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 3600)
    assert issued["scope"] == " ".join(READ)
    assert issued["access_token"].startswith("mcp_live_")
    listed = await tools_list(product, issued["access_token"])
    names = {tool["name"] for tool in listed.json()["result"]["tools"]}
    assert "list_projects" in names and "create_project" not in names
    user = await product.accounts.ensure_user("ada@example.com")
    (row,) = await product.accounts.list_tokens(user)
    assert (row.name, row.grant_id is not None, row.resource) == (
        "Test Client",
        True,
        product.server.url,
    )


async def test_the_consent_page_ticks_read_scopes_only(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id, scope="mcp:full secrets:reveal")
        consent = await sign_in(browser, product, asked)
    assert consent.status_code == 200
    assert ticked_scopes(consent.text) == READ
    assert "Test Client" in consent.text and "127.0.0.1:43210" in consent.text
    assert "env:write</code>: set, delete and bulk-load environment variables <em>(asked for)" in (
        consent.text
    )
    assert "unmasked" in consent.text
    assert consent.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in consent.headers["content-security-policy"]


async def test_write_scopes_and_reveal_are_granted_only_when_ticked(product: ProductEnv) -> None:
    _, issued = await signed_in_tokens(product, [*READ, "env:write", "secrets:reveal"])
    assert issued["scope"].split() == [*READ, "env:write", "secrets:reveal"]


async def test_a_refresh_rotates_both_tokens_and_the_old_access_token_stops(
    product: ProductEnv,
) -> None:
    client_id, issued = await signed_in_tokens(product)
    reply = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=client_id,
    )
    assert reply.status_code == 200, reply.text
    fresh = reply.json()
    assert fresh["access_token"] != issued["access_token"]
    assert fresh["refresh_token"] != issued["refresh_token"]
    assert (await tools_list(product, fresh["access_token"])).status_code == 200
    assert (await tools_list(product, issued["access_token"])).status_code == 401


async def test_a_refresh_may_ask_for_fewer_scopes_never_more(product: ProductEnv) -> None:
    client_id, issued = await signed_in_tokens(product)
    more = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=client_id,
        scope="env:write",
    )
    assert (more.status_code, more.json()["error"]) == (400, "invalid_scope")


async def test_a_refresh_refused_for_its_scope_or_client_leaves_the_token_good(
    product: ProductEnv,
) -> None:
    client_id, issued = await signed_in_tokens(product)
    other = await register(product)
    form: dict[str, Any] = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    wider = await token_request(product, client_id=client_id, scope="env:write", **form)
    stranger = await token_request(product, client_id=other, **form)
    honest = await token_request(product, client_id=client_id, **form)
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    assert (stranger.status_code, stranger.json()["error"]) == (400, "invalid_grant")
    assert honest.status_code == 200, honest.text
    assert (await tools_list(product, honest.json()["access_token"])).status_code == 200


async def test_a_refresh_with_an_empty_or_shortcut_scope_gets_concrete_scopes(
    product: ProductEnv,
) -> None:
    client_id, issued = await signed_in_tokens(product)
    form: dict[str, Any] = {"grant_type": "refresh_token", "client_id": client_id}
    empty = await token_request(product, refresh_token=issued["refresh_token"], scope="", **form)
    assert empty.json()["scope"] == " ".join(READ)
    shortcut = await token_request(
        product, refresh_token=empty.json()["refresh_token"], scope="mcp:read", **form
    )
    assert shortcut.json()["scope"] == " ".join(READ)


async def test_a_client_that_never_sends_its_redirect_uri_gets_a_token(
    product: ProductEnv,
) -> None:
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id, redirect_uri=None)
    reply = await redeem(product, code, asked, redirect_uri=None)
    assert reply.status_code == 200, reply.text


async def test_a_redirect_uri_sent_when_asking_must_be_repeated_for_the_code(
    product: ProductEnv,
) -> None:
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id)
    reply = await redeem(product, code, asked, redirect_uri=None)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_grant")


async def test_revocation_ends_the_access_and_refresh_tokens(product: ProductEnv) -> None:
    client_id, issued = await signed_in_tokens(product)
    revoke = await product.http.post(
        root(product) + "/oauth/revoke",
        data={"token": issued["refresh_token"], "client_id": client_id},
        headers=FORM,
    )
    assert revoke.status_code == 200
    refused = await tools_list(product, issued["access_token"])
    assert refused.status_code == 401
    # Replaced by signing in again, which the client does on this 401: not by minting one.
    assert refused.text == (
        "401 Unauthorized: the token was revoked; sign in again from the client.\n"
    )
    again = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=client_id,
    )
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_revoking_a_signed_in_token_from_the_cli_ends_its_refresh_too(
    product: ProductEnv,
) -> None:
    client_id, issued = await signed_in_tokens(product)
    user = await product.accounts.ensure_user("ada@example.com")
    await product.accounts.revoke(user, "Test Client")
    refreshed = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=client_id,
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


async def test_a_confidential_client_must_prove_its_secret(product: ProductEnv) -> None:
    await with_password(product)
    reply = await product.http.post(
        root(product) + "/oauth/register",
        json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"},
    )
    registered = reply.json()
    code, asked = await code_for(product, registered["client_id"])
    wrong = await redeem(product, code, asked, client_secret="nope")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    code, asked = await code_for(product, registered["client_id"])
    right = await redeem(product, code, asked, client_secret=registered["client_secret"])
    assert right.status_code == 200


# --- step-up ----------------------------------------------------------------------------------


async def test_a_signed_in_token_lacking_a_scope_gets_403_naming_only_that_scope(
    product: ProductEnv,
) -> None:
    _, issued = await signed_in_tokens(product)
    reply = await product.rpc(
        issued["access_token"],
        "tools/call",
        {"name": "create_project", "arguments": {"name": "api"}},
    )
    assert reply.status_code == 403
    value = reply.headers["www-authenticate"]
    assert value.startswith('Bearer resource_metadata="')
    assert ', scope="projects:write", error="insufficient_scope", ' in value


async def test_a_minted_token_lacking_a_scope_still_gets_the_error_result(
    product: ProductEnv,
) -> None:
    user = await product.user()
    token = await product.token(user, scopes="mcp:read")
    text = await product.error_text(token, "create_project", {"name": "api"})
    assert "spky mcp token --scopes projects:write" in text


# --- attacks ----------------------------------------------------------------------------------


async def test_a_wrong_or_missing_verifier_gets_no_token(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id)
    wrong = await redeem(product, code, asked, code_verifier="x" * 43)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    code, asked = await code_for(product, client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    missing = await token_request(product, client_id=client_id, **form)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_grant")


async def test_an_authorization_request_without_pkce_is_refused_on_a_page_with_a_way_back(
    product: ProductEnv,
) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id, code_challenge_method="plain")
    assert asked.page.status_code == 400 and "location" not in asked.page.headers
    assert "PKCE is required: send a code_challenge with method S256." in asked.page.text
    (back,) = re.findall(r'<a href="([^"]+)">Go back to 127.0.0.1:43210</a>', asked.page.text)
    answer = parse_qs(urlsplit(html.unescape(back)).query)
    assert answer["error"] == ["invalid_request"] and answer["state"] == [asked.state]


async def test_no_request_a_user_has_not_seen_is_redirected_anywhere(
    product: ProductEnv,
) -> None:
    client_id = await register(product, redirect="https://evil.example/cb")
    async with httpx.AsyncClient() as browser:
        asked = await ask(
            browser,
            product,
            client_id,
            redirect_uri="https://evil.example/cb",
            response_type="token",
        )
    assert asked.page.status_code == 400 and "location" not in asked.page.headers


async def test_a_code_used_twice_revokes_what_the_first_use_gave(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id)
    first = await redeem(product, code, asked)
    second = await redeem(product, code, asked)
    assert (second.status_code, second.json()["error"]) == (400, "invalid_grant")
    assert (await tools_list(product, first.json()["access_token"])).status_code == 401


async def test_a_redirect_uri_not_registered_is_shown_a_page_and_never_redirected_to(
    product: ProductEnv,
) -> None:
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        evil = await ask(browser, product, client_id, redirect_uri="https://evil.example/cb")
        near = await ask(browser, product, client_id, redirect_uri=REDIRECT + "/../x")
    for reply in (evil, near):
        assert reply.page.status_code == 400
        assert "location" not in reply.page.headers
        assert "not one this client registered" in reply.page.text


# Each reads as 127.0.0.1 to a lax parser and as another host (or no URI) to a browser.
DISGUISED_REDIRECTS = (
    "http://evil.example%5C@127.0.0.1:9999/callback",
    "http://evil.example\\@127.0.0.1:9999/callback",
    "http://127.0.0.1:9999\\@evil.example/callback",
    "http://ada@127.0.0.1:9999/callback",
    "http://127.0.0.1:9999/callback\r\nSet-Cookie: x=1",
    "http://127.0.0.1:9999/call\tback",
)


@pytest.mark.parametrize("disguised", DISGUISED_REDIRECTS)
async def test_a_loopback_redirect_in_disguise_is_shown_a_page_and_never_redirected_to(
    product: ProductEnv, disguised: str
) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id, redirect_uri=disguised)
    assert asked.page.status_code == 400
    assert "location" not in asked.page.headers
    assert "not one this client registered" in asked.page.text


async def test_registration_refuses_a_redirect_a_browser_would_read_differently(
    product: ProductEnv,
) -> None:
    for uri in DISGUISED_REDIRECTS:
        reply = await product.http.post(
            root(product) + "/oauth/register", json={"redirect_uris": [uri]}
        )
        assert (reply.status_code, reply.json()["error"]) == (400, "invalid_redirect_uri"), uri


async def test_a_loopback_redirect_may_use_another_port(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(
            browser, product, client_id, redirect_uri="http://127.0.0.1:50001/callback"
        )
    assert asked.page.status_code == 200


async def test_an_unknown_client_is_shown_a_page(product: ProductEnv) -> None:
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, "cli_nobody")
    assert asked.page.status_code == 400
    assert "location" not in asked.page.headers


async def test_a_consent_form_without_its_csrf_token_is_refused(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        consent = await sign_in(browser, product, asked)
        forged = {"request": asked.fields()["request"], "step": "consent"}
        no_token = await browser.post(
            root(product) + "/oauth/authorize", data=forged | {"decision": "allow"}
        )
        other_browser = await _from_another_browser(product, consent)
        not_ascii = await browser.post(
            root(product) + "/oauth/authorize",
            data=forged | {"decision": "allow", "csrf": "\u00e9t\u00e9"},
        )
    assert no_token.status_code == 403 and "location" not in no_token.headers
    assert not_ascii.status_code == 403 and "location" not in not_ascii.headers
    assert other_browser.status_code == 403 and "location" not in other_browser.headers


async def _from_another_browser(env: ProductEnv, consent: httpx.Response) -> httpx.Response:
    """The consent form posted with its own fields but another browser's cookies: what a
    cross-site form would send."""
    async with httpx.AsyncClient() as other:
        return await allow(other, env, consent)


async def test_a_token_issued_for_another_resource_is_refused(store: Store, tmp_path: Path) -> None:
    # Two deployments on one store, known by different URLs (plain http: the test's browser
    # reaches them directly, where https would keep its Secure cookies from them).
    async with product_server(store, tmp_path, public_url="http://a.localhost") as first:
        _, issued = await signed_in_tokens(first)
    async with product_server(store, tmp_path, public_url="http://b.localhost") as second:
        reply = await tools_list(second, issued["access_token"])
    assert reply.status_code == 401
    assert "issued for another resource" in reply.text


async def test_a_token_request_for_another_resource_is_refused(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id)
    reply = await redeem(product, code, asked, resource="https://elsewhere.example/v1/mcp")
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_target")


async def test_a_refresh_token_used_again_after_rotation_revokes_the_grant(
    product: ProductEnv,
) -> None:
    client_id, issued = await signed_in_tokens(product)
    form: dict[str, Any] = {"grant_type": "refresh_token", "client_id": client_id}
    fresh = await token_request(product, refresh_token=issued["refresh_token"], **form)
    replay = await token_request(product, refresh_token=issued["refresh_token"], **form)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert (await tools_list(product, fresh.json()["access_token"])).status_code == 401
    after = await token_request(product, refresh_token=fresh.json()["refresh_token"], **form)
    assert after.status_code == 400


async def test_a_client_metadata_document_on_a_private_address_is_not_fetched(
    product: ProductEnv,
) -> None:
    async with httpx.AsyncClient() as browser:
        for client_id in (
            "https://127.0.0.1/client.json",
            "https://10.0.0.8/client.json",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/client.json",
        ):
            asked = await ask(browser, product, client_id)
            assert asked.page.status_code == 400, client_id
            assert (
                "does not resolve to public addresses this server fetches from" in asked.page.text
            ), client_id


async def test_sign_in_attempts_are_limited(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        codes = [
            (await sign_in(browser, product, asked, password=f"wrong-{n}-password")).status_code
            for n in range(6)
        ]
        right = await sign_in(browser, product, asked, password=PASSWORD)
    assert codes == [403] * 5 + [429]
    assert right.status_code == 429 and "Too many sign-in attempts" in right.text


async def test_registrations_through_a_trusted_proxy_are_counted_per_client(
    store: Store, tmp_path: Path
) -> None:
    async with product_server(store, tmp_path, trusted_proxies=("127.0.0.0/8",)) as env:
        spent = [await _register_from(env, "203.0.113.7") for _ in range(11)]
        other = await _register_from(env, "203.0.113.8")
        forged = await _register_from(env, "203.0.113.8, 203.0.113.7")
    assert spent == [201] * 10 + [429]
    assert other == 201
    assert forged == 429  # the proxy appended .7; the .8 before it is the client's own word


async def test_registration_past_the_allowance_says_when_to_retry(product: ProductEnv) -> None:
    for _ in range(10):
        assert await _register_from(product, "203.0.113.9") == 201
    reply = await product.http.post(
        root(product) + "/oauth/register", json={"redirect_uris": [REDIRECT]}
    )
    # One registration a 360 s comes back; less the time the ten took (the real clock).
    seconds = reply.headers["retry-after"]
    assert reply.status_code == 429 and 0 < int(seconds) <= 360
    assert reply.json() == {
        "error": "too_many_requests",
        "error_description": f"Too many registrations from this address; retry in {seconds} "
        "seconds.",
    }


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_registration_is_json_only(product: ProductEnv, kind: str | None) -> None:
    """RFC 7591 section 3.1; a web page can send another origin a text/plain or form body
    without asking first, but not JSON."""
    headers = {"content-type": kind} if kind else {}
    reply = await product.http.post(
        root(product) + "/oauth/register",
        content=orjson.dumps({"redirect_uris": [REDIRECT]}),
        headers=headers,
    )
    assert (reply.status_code, reply.json()) == (
        400,
        {
            "error": "invalid_client_metadata",
            "error_description": "Send the client metadata as application/json.",
        },
    )


async def test_without_a_trusted_proxy_x_forwarded_for_is_not_believed(
    product: ProductEnv,
) -> None:
    spent = [await _register_from(product, f"203.0.113.{n}") for n in range(11)]
    assert spent == [201] * 10 + [429]


async def _register_from(env: ProductEnv, forwarded_for: str) -> int:
    reply = await env.http.post(
        root(env) + "/oauth/register",
        json={"redirect_uris": [REDIRECT]},
        headers={"x-forwarded-for": forwarded_for},
    )
    return reply.status_code


async def test_an_unknown_email_costs_a_password_hash_as_a_wrong_password_does(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    await with_password(product)
    client_id = await register(product)
    hashed: list[str] = []
    verified: list[str] = []
    real_hashed, real_verifies = passwords.hashed, passwords.verifies

    def counted_hashed(password: str) -> str:
        hashed.append(password)
        return real_hashed(password)

    def counted_verifies(password: str, stored: str) -> bool:
        verified.append(password)
        return real_verifies(password, stored)

    monkeypatch.setattr(passwords, "hashed", counted_hashed)
    monkeypatch.setattr(passwords, "verifies", counted_verifies)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        await sign_in(browser, product, asked, email="nobody@example.com", password="guess-one")
        await sign_in(browser, product, asked, email="not-an-email", password="guess-two")
        await sign_in(browser, product, asked, password="guess-three")
    assert (hashed, verified) == (["guess-one", "guess-two"], ["guess-three"])


async def test_a_wrong_password_says_so_without_telling_which_part(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        nobody = await sign_in(browser, product, asked, email="nobody@example.com")
        wrong = await sign_in(browser, product, asked, password="not the password")
    assert nobody.status_code == wrong.status_code == 403
    assert "The email or password is not right." in nobody.text
    assert "The email or password is not right." in wrong.text


async def test_registration_refuses_redirects_a_client_cannot_own(product: ProductEnv) -> None:
    for uri in ("http://evil.example/cb", "javascript:alert(1)", "https://x.example/#frag"):
        reply = await product.http.post(
            root(product) + "/oauth/register", json={"redirect_uris": [uri]}
        )
        assert (reply.status_code, reply.json()["error"]) == (400, "invalid_redirect_uri"), uri


async def test_the_user_saying_no_goes_back_as_access_denied(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        consent = await sign_in(browser, product, asked)
        answer = answer_of(await allow(browser, product, consent, decision="deny"))
    assert answer["error"] == "access_denied" and "code" not in answer


# --- client ID metadata documents ----------------------------------------------------------------


@asynccontextmanager
async def documents(
    served: dict[str, bytes], heard: list[tuple[str, bytes]] | None = None
) -> AsyncIterator[str]:
    """An HTTP server on loopback serving `served` (path -> body): a client's metadata
    documents where a developer's machine would have them.  Like a web server with
    compression on, it gzips what it serves when the request accepts gzip, and always under
    /gzipped/; each request's path and head go to `heard`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        if heard is not None:
            heard.append((path, head.lower()))
        body = served.get(path)
        status = b"200 OK" if body is not None else b"404 Not Found"
        body = body if body is not None else b"{}"
        encoding = b""
        if path.startswith("/gzipped/") or b"gzip" in _accepted_encodings(head):
            body, encoding = gzip.compress(body), b"content-encoding: gzip\r\n"
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + encoding
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def _accepted_encodings(head: bytes) -> bytes:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"accept-encoding:"):
            return line
    return b""


def document(client_id: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {"client_id": client_id, "client_name": "Doc Client", "redirect_uris": [REDIRECT]} | fields
    )


async def test_a_client_named_by_its_metadata_document_signs_in(
    store: Store, tmp_path: Path
) -> None:
    served: dict[str, bytes] = {}
    async with documents(served) as base:
        client_id = base + "/clients/doc.json"
        served["/clients/doc.json"] = document(client_id)
        async with product_server(store, tmp_path, oauth_private_clients=True) as env:
            await with_password(env)
            code, asked = await code_for(env, client_id)
            reply = await redeem(env, code, asked)
            user = await env.accounts.ensure_user("ada@example.com")
            (row,) = await env.accounts.list_tokens(user)
    assert reply.status_code == 200, reply.text
    assert reply.json()["access_token"].startswith("mcp_live_")
    assert row.name == "Doc Client"


async def test_the_consent_page_names_where_a_document_client_is_described(
    store: Store, tmp_path: Path
) -> None:
    served: dict[str, bytes] = {}
    heard: list[tuple[str, bytes]] = []
    async with documents(served, heard) as base:
        client_id = base + "/clients/doc.json"
        served["/clients/doc.json"] = document(client_id)
        async with (
            product_server(store, tmp_path, oauth_private_clients=True) as env,
            httpx.AsyncClient() as browser,
        ):
            await with_password(env)
            asked = await ask(browser, env, client_id)
            consent = await sign_in(browser, env, asked)
    described = urlsplit(base).netloc
    assert (
        f'<strong>Doc Client</strong> (described at <span class="host">{described}</span>) '
        "asks to use your Sp00ky account." in consent.text
    )
    assert b"accept-encoding: identity" in heard[0][1]


async def test_a_metadata_document_sent_compressed_anyway_is_refused(
    store: Store, tmp_path: Path
) -> None:
    served: dict[str, bytes] = {}
    async with documents(served) as base:
        client_id = base + "/gzipped/doc.json"
        served["/gzipped/doc.json"] = document(client_id)
        async with (
            product_server(store, tmp_path, oauth_private_clients=True) as env,
            httpx.AsyncClient() as browser,
        ):
            asked = await ask(browser, env, client_id)
    assert asked.page.status_code == 400
    assert "came gzip-encoded though this server asked for it uncompressed" in asked.page.text


async def test_a_metadata_document_that_failed_is_not_fetched_again_for_a_minute(
    store: Store, tmp_path: Path
) -> None:
    heard: list[tuple[str, bytes]] = []
    async with (
        documents({}, heard) as base,
        product_server(store, tmp_path, oauth_private_clients=True) as env,
        httpx.AsyncClient() as browser,
    ):
        first = await ask(browser, env, base + "/missing.json")
        again = await ask(browser, env, base + "/missing.json")
    assert first.page.status_code == again.page.status_code == 400
    assert "answered 404, not 200" in again.page.text
    assert [path for path, _ in heard] == ["/missing.json"]


async def test_a_metadata_document_that_names_another_client_or_is_too_big_is_refused(
    store: Store, tmp_path: Path
) -> None:
    served: dict[str, bytes] = {}
    async with documents(served) as base:
        served["/other.json"] = document(base + "/elsewhere.json")
        served["/big.json"] = document(base + "/big.json", padding="x" * 20_000)
        served["/bad-redirect.json"] = document(
            base + "/bad-redirect.json", redirect_uris=["http://evil.example/cb"]
        )
        async with (
            product_server(store, tmp_path, oauth_private_clients=True) as env,
            httpx.AsyncClient() as browser,
        ):
            pages = {
                name: (await ask(browser, env, base + name)).page
                for name in ("/other.json", "/big.json", "/bad-redirect.json", "/missing.json")
            }
    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 400)
    assert "must name its own URL as client_id" in pages["/other.json"].text
    assert "larger than 16384 bytes" in pages["/big.json"].text
    assert "plain http away from loopback" in pages["/bad-redirect.json"].text
    assert "answered 404, not 200" in pages["/missing.json"].text


async def test_a_code_expires_a_minute_after_consent(product: ProductEnv) -> None:
    web = product.server.service.pages
    assert isinstance(web, OAuthWeb)
    now = [time.time()]
    web.authority.clock = lambda: now[0]
    await with_password(product)
    client_id = await register(product)
    code, asked = await code_for(product, client_id)
    now[0] += 61
    late = await redeem(product, code, asked)
    assert late.json() == {
        "error": "invalid_grant",
        "error_description": "The code expired (codes last a minute); sign in again.",
    }
    code, asked = await code_for(product, client_id)
    now[0] += 59
    assert (await redeem(product, code, asked)).status_code == 200


async def test_a_refresh_token_expires_thirty_days_after_it_was_issued(
    product: ProductEnv,
) -> None:
    web = product.server.service.pages
    assert isinstance(web, OAuthWeb)
    now = [time.time()]
    web.authority.clock = lambda: now[0]
    client_id, issued = await signed_in_tokens(product)
    now[0] += 30 * 86400 + 1
    late = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=client_id,
    )
    assert late.json()["error_description"] == "The refresh token expired; sign in again."


async def test_a_request_with_too_many_fields_is_told_so(product: ProductEnv) -> None:
    crowded = "&".join(f"f{n}=x" for n in range(65))
    token = await product.http.post(
        root(product) + "/oauth/token", content=crowded.encode(), headers=FORM
    )
    page = await product.http.get(root(product) + "/oauth/authorize?" + crowded)
    said = "has more than 64 fields; send fewer."
    assert (token.status_code, token.json()) == (
        400,
        {"error": "invalid_request", "error_description": "The form " + said},
    )
    assert page.status_code == 400 and "The request " + said in page.text


async def test_document_fetches_are_counted_per_client_address(
    store: Store, tmp_path: Path
) -> None:
    served: dict[str, bytes] = {}
    async with documents(served) as base:
        names = [f"/c{n}.json" for n in range(11)]
        served.update({name: document(base + name) for name in names})
        async with (
            product_server(
                store, tmp_path, oauth_private_clients=True, trusted_proxies=("127.0.0.0/8",)
            ) as env,
            httpx.AsyncClient(headers={"x-forwarded-for": "2001:db8:7::1"}) as one,
            httpx.AsyncClient(headers={"x-forwarded-for": "2001:db8:8::1"}) as other,
        ):
            # One address: its /64, whichever of its addresses it uses.
            for n, name in enumerate(names[:10]):
                one.headers["x-forwarded-for"] = f"2001:db8:7::{n + 1:x}"
                assert (await ask(one, env, base + name)).page.status_code == 200
            spent = await ask(one, env, base + names[10])
            elsewhere = await ask(other, env, base + names[10])
    assert spent.page.status_code == 400
    assert "Too many client documents were looked up from your address" in spent.page.text
    assert elsewhere.page.status_code == 200


async def test_a_redirect_uri_ending_in_a_question_mark_gets_one(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product, redirect=REDIRECT + "?")
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id, redirect_uri=REDIRECT + "?")
        consent = await sign_in(browser, product, asked)
        back = await allow(browser, product, consent)
    assert back.headers["location"].startswith(REDIRECT + "?code=")


async def test_wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere(
    store: Store, tmp_path: Path
) -> None:
    async with product_server(store, tmp_path, trusted_proxies=("127.0.0.0/8",)) as env:
        await with_password(env)
        client_id = await register(env)
        async with (
            httpx.AsyncClient(headers={"x-forwarded-for": "203.0.113.7"}) as attacker,
            httpx.AsyncClient(headers={"x-forwarded-for": "198.51.100.9"}) as user,
        ):
            asked = await ask(attacker, env, client_id)
            codes = [
                (await sign_in(attacker, env, asked, password=f"guess-{n}-guess")).status_code
                for n in range(6)
            ]
            mine = await sign_in(user, env, await ask(user, env, client_id))
    assert codes == [403] * 5 + [429]
    assert mine.status_code == 200 and "asks to use your Sp00ky account" in mine.text


async def test_guesses_from_many_addresses_do_not_lock_the_user_out_of_a_browser_they_used(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_module, "EVERYWHERE_BURST", 4.0)  # the first sign-in takes one
    monkeypatch.setattr(web_module, "EVERYWHERE_RATE", 1e-9)
    async with product_server(store, tmp_path, trusted_proxies=("127.0.0.0/8",)) as env:
        await with_password(env)
        client_id = await register(env)
        async with httpx.AsyncClient(headers={"x-forwarded-for": "198.51.100.9"}) as user:
            first = await sign_in(user, env, await ask(user, env, client_id))
            codes = []
            for n in range(4):
                address = {"x-forwarded-for": f"203.0.113.{n + 1}"}
                async with httpx.AsyncClient(headers=address) as guesser:
                    asked = await ask(guesser, env, client_id)
                    guess = await sign_in(guesser, env, asked, password=f"guess-{n}-guess")
                    codes.append(guess.status_code)
            async with httpx.AsyncClient(headers={"x-forwarded-for": "192.0.2.5"}) as stranger:
                unknown = await sign_in(stranger, env, await ask(stranger, env, client_id))
            user.cookies.delete("sp00ky-signin")  # an hour later: signed out, still known
            again = await sign_in(user, env, await ask(user, env, client_id))
    assert first.status_code == 200 and codes == [403, 403, 403, 429]
    assert unknown.status_code == 429  # a browser never signed in waits with the guessers
    assert again.status_code == 200 and "asks to use your Sp00ky account" in again.text


async def test_an_email_longer_than_any_address_is_refused_before_it_is_counted(
    product: ProductEnv,
) -> None:
    client_id = await register(product)
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id)
        long = await sign_in(browser, product, asked, email="a" * 250 + "@example.com")
    assert long.status_code == 400
    assert "An email address has at most 254 characters." in long.text
    web = product.server.service.pages
    assert isinstance(web, OAuthWeb) and isinstance(web.quotas, LocalQuotas)
    assert not any("@example.com" in key for key in web.quotas._buckets)


async def test_a_client_id_longer_than_any_url_is_refused_unfetched(product: ProductEnv) -> None:
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, "https://app.example/" + "c" * 2000)
    reply = await token_request(
        product,
        grant_type="refresh_token",
        refresh_token="x",
        client_id="https://app.example/" + "c" * 2000,
    )
    assert asked.page.status_code == 400
    assert "A client_id has at most 2000 characters." in asked.page.text
    assert reply.json()["error_description"] == "A client_id has at most 2000 characters."


async def test_basic_credentials_that_are_not_ascii_are_refused_as_such(
    product: ProductEnv,
) -> None:
    for path in ("/oauth/token", "/oauth/revoke"):
        reply = await product.http.post(
            root(product) + path,
            content=b"grant_type=refresh_token&refresh_token=x&token=x",
            headers={
                b"content-type": b"application/x-www-form-urlencoded",
                b"authorization": "Basic \u00e9\u00e9\u00e9\u00e9".encode("latin-1"),
            },
        )
        assert reply.status_code == 401, path
        assert reply.json() == {
            "error": "invalid_client",
            "error_description": "The Basic credentials are not valid.",
        }


async def test_the_token_endpoint_fetches_no_document_of_a_client_never_seen(
    store: Store, tmp_path: Path
) -> None:
    heard: list[tuple[str, bytes]] = []
    served: dict[str, bytes] = {}
    async with documents(served, heard) as base:
        served["/new.json"] = document(base + "/new.json")
        async with product_server(store, tmp_path, oauth_private_clients=True) as env:
            reply = await token_request(
                env, grant_type="refresh_token", refresh_token="x", client_id=base + "/new.json"
            )
    assert (reply.status_code, reply.json()["error"]) == (401, "invalid_client")
    assert heard == []


async def granted(product: ProductEnv) -> tuple[OAuthWeb, User, Grant]:
    """A user signed in through a client: the sign-in pages, the user, and their grant."""
    web = product.server.service.pages
    assert isinstance(web, OAuthWeb)
    await signed_in_tokens(product)
    user = await product.accounts.ensure_user("ada@example.com")
    (row,) = await product.accounts.list_tokens(user)
    assert row.grant_id is not None
    grant = await product.store.reads.oauth.grant(row.grant_id)
    assert grant is not None
    return web, user, grant


async def test_no_token_is_issued_under_a_grant_revoked_while_it_was_being_issued(
    product: ProductEnv,
) -> None:
    web, user, grant = await granted(product)
    # As a replayed code does between a redemption's checks and its write.
    async with product.store.transaction() as tx:
        await tx.oauth.revoke_grant(grant.id, time.time())
    with pytest.raises(OAuthError) as refused:
        await web.authority._issue(grant, grant.scopes, None)
    assert refused.value.body()["error"] == "invalid_grant"
    assert [t.revoked_at is not None for t in await product.accounts.list_tokens(user)] in (
        [True],
        [],
    )


async def test_a_revocation_racing_a_token_being_issued_ends_that_token_too(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    web, user, grant = await granted(product)
    held, go_on, revoked = anyio.Event(), anyio.Event(), anyio.Event()
    hold = OAuthRepo.hold_grant

    async def hold_then_wait(repo: OAuthRepo, grant_id: str) -> bool:
        stands = await hold(repo, grant_id)
        held.set()
        await go_on.wait()  # the issuing transaction stays open, its grant held
        return stands

    async def revoke() -> None:
        async with product.store.transaction() as tx:
            await tx.oauth.revoke_grant(grant.id, time.time())
        revoked.set()

    issued: list[dict[str, Any]] = []

    async def issue() -> None:
        issued.append(await web.authority._issue(grant, grant.scopes, None))

    monkeypatch.setattr(OAuthRepo, "hold_grant", hold_then_wait)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(issue)
            await held.wait()
            tg.start_soon(revoke)
            await anyio.wait_all_tasks_blocked()
            assert not revoked.is_set()  # it waits for the token being issued
            go_on.set()
    (token,) = issued
    assert (await tools_list(product, token["access_token"])).status_code == 401
    assert all(r.revoked_at is not None for r in await product.accounts.list_tokens(user))


async def test_the_consent_page_shows_an_app_scheme_for_what_it_is(product: ProductEnv) -> None:
    await with_password(product)
    client_id = await register(product, redirect="x-evil://claude.ai/callback")
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, product, client_id, redirect_uri="x-evil://claude.ai/callback")
        consent = await sign_in(browser, product, asked)
    assert (
        'After you answer, you go back to <span class="host">x-evil://claude.ai</span>.'
        in consent.text
    )


async def test_the_consent_page_says_a_registered_clients_name_is_its_own_word(
    product: ProductEnv,
) -> None:
    await with_password(product)
    client_id = await register(product, client_name="Claude")
    async with httpx.AsyncClient() as browser:
        consent = await sign_in(browser, product, await ask(browser, product, client_id))
    assert (
        "<strong>Claude</strong> (the name it gave itself) asks to use your Sp00ky account."
        in consent.text
    )


async def test_sign_ins_past_those_waiting_for_a_hash_are_turned_away_at_once(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow_hash(password: str) -> str:
        release.wait(30)
        return "scrypt$1$1$1$AA==$AA=="

    monkeypatch.setattr(passwords, "hashed", slow_hash)
    client_id = await register(product)
    waiting = 2 + passwords.MOST_WAITING  # two hashing, the rest in line
    codes: list[int] = []
    try:
        async with httpx.AsyncClient() as browser:
            asked = await ask(browser, product, client_id)

            async def attempt(n: int) -> None:
                reply = await sign_in(browser, product, asked, email=f"u{n}@example.com")
                codes.append(reply.status_code)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for n in range(waiting):
                        tg.start_soon(attempt, n)
                    while passwords._hashing.statistics().tasks_waiting < passwords.MOST_WAITING:
                        await anyio.wait_all_tasks_blocked()
                    turned_away = await sign_in(browser, product, asked, email="late@example.com")
                    release.set()
    finally:
        release.set()
    assert turned_away.status_code == 503
    assert "Too many sign-ins at once; try again in a moment." in turned_away.text
    assert codes == [403] * waiting
    web = product.server.service.pages
    assert isinstance(web, OAuthWeb) and isinstance(web.quotas, LocalQuotas)
    assert not any("late@example.com" in key for key in web.quotas._buckets)  # not counted
