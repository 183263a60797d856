"""Bearer-token authentication of /v1/mcp over real HTTP: the 401 causes and their bodies,
revocation seen on the very next request (sessions included), the per-token rate limit, and
tokens kept out of logs and the audit log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.product import tokens
from sp00ky_mcp.product.accounts import Accounts, arguments_digest
from sp00ky_mcp.product.auth import TokenAuthenticator
from sp00ky_mcp.product.oauth.metadata import PRM_PATH as PRM
from sp00ky_mcp.product.oauth.metadata import quotable
from sp00ky_mcp.product.scopes import READ_SCOPES
from sp00ky_mcp.product.store import Store, open_store
from sp00ky_mcp.product.store.sqlite import SqliteStore
from tests.wire import local_sessions

from .product_support import ProductEnv, product_server

pytestmark = pytest.mark.anyio

HANDSHAKE = "2025-11-25"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
REALM = 'Bearer realm="sp00ky-mcp"'
INVALID = 'Bearer realm="sp00ky-mcp", error="invalid_token"'
HEADER_RULE = "the header must be exactly `Authorization: Bearer mcp_live_…`"
MINT = "mint a new one with `spky mcp token` and re-add it"
MISSING = (
    f"401 Unauthorized: the token is missing; {HEADER_RULE} (mint one with `spky mcp token`).\n"
)
MALFORMED = f"401 Unauthorized: the token is malformed; {HEADER_RULE}, so {MINT}.\n"
UNKNOWN = f"401 Unauthorized: the token is not recognised (mistyped, or deleted); {MINT}.\n"
REVOKED = f"401 Unauthorized: the token was revoked; {MINT}.\n"
API_KEY = (
    "401 Unauthorized: this is a Sp00ky API key (spk_live_…); MCP needs its own mcp_live_ "
    "token: mint one with `spky mcp token`.\n"
)
IN_QUERY = (
    "401 Unauthorized: tokens in the URL are refused because URLs get logged; send the token "
    f"in a header instead: {HEADER_RULE}.\n"
)
CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own client logs the URLs it requests
TOO_MANY = "Too many requests for this token; retry after the number of seconds in Retry-After.\n"
SESSION_GONE = "Session not found: it ended or expired; send initialize to start a new session."


def bearer(token: str) -> dict[str, str]:
    return {**HEADERS, "authorization": f"Bearer {token}"}


def in_session(token: str | None, session_id: str) -> dict[str, str]:
    base = bearer(token) if token is not None else dict(HEADERS)
    return {**base, "mcp-session-id": session_id, "mcp-protocol-version": HANDSHAKE}


async def initialize(product: ProductEnv, token: str) -> str:
    """A handshake-era session opened (and marked initialized) with this token."""
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    session_id = reply.headers["mcp-session-id"]
    done = await product.http.post(
        product.server.url, json=INITIALIZED, headers=in_session(token, session_id)
    )
    assert done.status_code == 202
    return session_id


async def tools_list(product: ProductEnv, token: str, session_id: str) -> httpx.Response:
    return await product.http.post(
        product.server.url, json=TOOLS_LIST, headers=in_session(token, session_id)
    )


def authenticator(product: ProductEnv) -> TokenAuthenticator:
    auth = product.server.service.authenticate
    assert isinstance(auth, TokenAuthenticator)
    return auth


def challenge_of(reply: httpx.Response) -> tuple[str, dict[str, str]]:
    """A WWW-Authenticate value's scheme and parameters."""
    scheme, _, rest = reply.headers["www-authenticate"].partition(" ")
    return scheme, dict(re.findall(r'([a-z_]+)="([^"]*)"', rest))


def assert_refused(reply: httpx.Response, body: str, challenge: str = INVALID) -> None:
    """Refused with `body`, and a challenge that says where sign-in starts (RFC 9728 section
    5.1) and, for a bad token, why it was refused."""
    assert (reply.status_code, reply.text) == (401, body)
    url = reply.request.url
    expected = {
        "realm": "sp00ky-mcp",
        "resource_metadata": f"{url.scheme}://{url.netloc.decode()}{PRM}/v1/mcp",
        "scope": " ".join(READ_SCOPES),
    }
    if challenge == INVALID:
        said = body.removeprefix("401 Unauthorized: ").rstrip("\n")
        expected |= {"error": "invalid_token", "error_description": quotable(said)}
    assert challenge_of(reply) == ("Bearer", expected)


@pytest.fixture
async def elsewhere(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Accounts]:
    """Accounts on a second store on the same database as `store`, as another process
    (`spky mcp revoke`, say) opens it."""
    if isinstance(store, SqliteStore):
        other: Store = await SqliteStore.open(Path(store.path).parent)
    else:
        url = request.getfixturevalue("postgres_database_url")
        other = await open_store(tmp_path, url=url)
    yield Accounts(other)
    await other.close()


# --- the 401 causes --------------------------------------------------------------------------


async def test_a_request_without_a_token_gets_401_pointing_to_where_sign_in_starts(
    product: ProductEnv,
) -> None:
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=HEADERS)
    assert_refused(reply, MISSING, challenge=REALM)
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    root = product.server.url.removesuffix("/v1/mcp")
    assert reply.headers["www-authenticate"] == (
        f'Bearer realm="sp00ky-mcp", resource_metadata="{root}'
        '/.well-known/oauth-protected-resource/v1/mcp", scope="projects:read deployments:read '
        "logs:read env:read vault:read backups:read domains:read links:read tenants:read "
        'billing:read"'
    )


async def test_a_bad_token_is_refused_saying_why_in_the_challenge(product: ProductEnv) -> None:
    reply = await product.rpc("mcp_live_" + "x" * 38, "tools/list")
    scheme, params = challenge_of(reply)
    assert (scheme, params["error"]) == ("Bearer", "invalid_token")
    assert params["error_description"] == (
        "the token is malformed; the header must be exactly 'Authorization: Bearer mcp_live_'', "
        "so mint a new one with 'spky mcp token' and re-add it."
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer mcp_live_abc",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "mcp_live_" + "A" * 38,
    ],
)
async def test_a_malformed_credential_gets_401_invalid_token_saying_malformed(
    product: ProductEnv, authorization: str
) -> None:
    headers = {**HEADERS, "authorization": authorization}
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=headers)
    assert_refused(reply, MALFORMED)


async def test_a_token_with_a_broken_checksum_is_malformed_not_unknown(
    product: ProductEnv,
) -> None:
    secret = await product.token(await product.user())
    broken = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(broken))
    assert_refused(reply, MALFORMED)


async def test_a_valid_token_under_another_scheme_is_malformed(product: ProductEnv) -> None:
    secret = await product.token(await product.user())
    headers = {**HEADERS, "authorization": f"Token {secret}"}
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=headers)
    assert_refused(reply, MALFORMED)


async def test_the_bearer_scheme_is_case_insensitive(product: ProductEnv) -> None:
    secret = await product.token(await product.user())
    headers = {**HEADERS, "authorization": f"bearer {secret}"}
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=headers)
    assert reply.status_code == 200


async def test_a_well_formed_token_that_was_never_minted_is_not_recognised(
    product: ProductEnv,
) -> None:
    reply = await product.http.post(
        product.server.url, json=INITIALIZE, headers=bearer(tokens.mint())
    )
    assert_refused(reply, UNKNOWN)


async def test_an_expired_token_gets_401_naming_the_day_it_expired(product: ProductEnv) -> None:
    past = Accounts(product.store, clock=lambda: 1_700_000_000.0)
    _, secret = await past.mint(await product.user(), "old", ("mcp:read",), expires_in_days=1)
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(secret))
    assert_refused(reply, f"401 Unauthorized: the token expired on 2023-11-15; {MINT}.\n")


async def test_a_revoked_token_gets_401_saying_it_was_revoked(product: ProductEnv) -> None:
    user = await product.user()
    secret = await product.token(user, name="gone")
    await product.accounts.revoke(user, "gone")
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(secret))
    assert_refused(reply, REVOKED)


async def test_a_sp00ky_api_key_is_told_that_mcp_needs_its_own_token(
    product: ProductEnv,
) -> None:
    key = "spk_live_" + "a" * 40
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(key))
    assert_refused(reply, API_KEY)


@pytest.mark.parametrize(
    "query", ["token={secret}", "access_token={secret}", "api_key=x", "key=x", "t={secret}"]
)
async def test_a_token_in_the_query_string_is_refused_even_with_a_valid_header(
    product: ProductEnv, query: str
) -> None:
    secret = await product.token(await product.user())
    url = f"{product.server.url}?{query.format(secret=secret)}"
    reply = await product.http.post(url, json=INITIALIZE, headers=bearer(secret))
    assert_refused(reply, IN_QUERY)


async def test_an_unrelated_query_string_is_not_mistaken_for_a_token(
    product: ProductEnv,
) -> None:
    secret = await product.token(await product.user())
    url = f"{product.server.url}?trace=1"
    reply = await product.http.post(url, json=INITIALIZE, headers=bearer(secret))
    assert reply.status_code == 200


async def test_refusals_never_echo_the_credential(product: ProductEnv) -> None:
    secret = tokens.mint()
    reply = await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(secret))
    assert reply.status_code == 401
    assert secret not in reply.text
    assert all(secret not in value for value in reply.headers.values())


# --- every method needs the token ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", TOOLS_LIST),
        ("POST", INITIALIZED),
        ("GET", None),
        ("DELETE", None),
    ],
)
async def test_every_method_in_a_session_needs_the_token(
    product: ProductEnv, method: str, body: dict[str, Any] | None
) -> None:
    secret = await product.token(await product.user())
    session_id = await initialize(product, secret)
    reply = await product.http.request(
        method, product.server.url, json=body, headers=in_session(None, session_id)
    )
    assert_refused(reply, MISSING, challenge=REALM)
    assert session_id in local_sessions(product.server.service).ids()


async def test_a_stateless_request_needs_the_token(product: ProductEnv) -> None:
    headers = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    reply = await product.http.post(product.server.url, json=TOOLS_LIST, headers=headers)
    assert_refused(reply, MISSING, challenge=REALM)


async def test_a_stateless_request_with_a_valid_token_is_answered(product: ProductEnv) -> None:
    secret = await product.token(await product.user())
    reply = await product.rpc(secret, "tools/list")
    assert reply.status_code == 200
    assert "tools" in reply.json()["result"]


# --- refused on the very next request, sessions included -------------------------------------


async def test_a_revoked_token_is_refused_on_its_next_request_and_its_sessions_end(
    product: ProductEnv,
) -> None:
    user = await product.user()
    secret = await product.token(user, name="doomed")
    other = await product.token(user, name="other")
    session_id = await initialize(product, secret)
    kept = await initialize(product, other)
    assert (await tools_list(product, secret, session_id)).status_code == 200
    await product.accounts.revoke(user, "doomed")
    assert_refused(await tools_list(product, secret, session_id), REVOKED)
    assert local_sessions(product.server.service).ids() == [kept]
    reply = await tools_list(product, other, session_id)
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == SESSION_GONE


async def test_revocation_ends_the_open_get_stream_of_the_tokens_session(
    product: ProductEnv,
) -> None:
    user = await product.user()
    secret = await product.token(user, name="doomed")
    session_id = await initialize(product, secret)
    headers = {**in_session(secret, session_id), "accept": "text/event-stream"}
    with anyio.fail_after(10):
        async with product.http.stream("GET", product.server.url, headers=headers) as stream:
            assert stream.status_code == 200
            await product.accounts.revoke(user, "doomed")
            assert_refused(await tools_list(product, secret, session_id), REVOKED)
            async for _ in stream.aiter_bytes():
                pass
    assert local_sessions(product.server.service).ids() == []


async def test_a_token_that_expires_while_its_session_lives_is_refused_and_the_session_ends(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = await product.accounts.mint(await product.user(), "short", ("mcp:read",), 1)
    session_id = await initialize(product, secret)
    auth = authenticator(product)
    later = time.time() + 2 * 86400
    monkeypatch.setattr(auth, "clock", lambda: later)
    reply = await tools_list(product, secret, session_id)
    assert reply.status_code == 401
    assert reply.text.startswith("401 Unauthorized: the token expired on ")
    assert session_id not in local_sessions(product.server.service).ids()


async def test_a_revocation_made_by_another_process_is_seen_on_the_next_request(
    product: ProductEnv, elsewhere: Accounts
) -> None:
    user = await product.user()
    secret = await product.token(user, name="ci")
    session_id = await initialize(product, secret)
    assert (await tools_list(product, secret, session_id)).status_code == 200
    await elsewhere.revoke(await elsewhere.ensure_user(user.email), "ci")
    assert_refused(await tools_list(product, secret, session_id), REVOKED)
    assert session_id not in local_sessions(product.server.service).ids()


async def test_a_revocation_committed_while_a_request_records_last_use_is_not_missed(
    product: ProductEnv, elsewhere: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await product.user()
    secret = await product.token(user, name="ci")
    record_use = product.accounts.touch
    recorded = anyio.Event()

    async def revoked_meanwhile(token_id: str, when: float) -> None:
        await elsewhere.revoke(await elsewhere.ensure_user(user.email), "ci")
        await record_use(token_id, when)
        recorded.set()

    monkeypatch.setattr(product.accounts, "touch", revoked_meanwhile)
    assert (await product.rpc(secret, "tools/list")).status_code == 200
    with anyio.fail_after(5):
        await recorded.wait()
    assert_refused(await product.rpc(secret, "tools/list"), REVOKED)


async def test_a_token_minted_by_another_process_works_at_once(
    product: ProductEnv, elsewhere: Accounts
) -> None:
    user = await product.user()
    assert (await product.rpc(await product.token(user), "tools/list")).status_code == 200
    other = await elsewhere.ensure_user(user.email)
    _, secret = await elsewhere.mint(other, "new", ("mcp:read",), 1)
    assert (await product.rpc(secret, "tools/list")).status_code == 200


async def test_a_session_id_replayed_with_another_token_gets_404(product: ProductEnv) -> None:
    ada = await product.user()
    session_id = await initialize(product, await product.token(ada, name="one"))
    for thief in (
        await product.token(ada, name="two"),
        await product.token(await product.user("eve@example.com")),
    ):
        reply = await tools_list(product, thief, session_id)
        assert reply.status_code == 404
        assert reply.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": SESSION_GONE},
        }
    assert session_id in local_sessions(product.server.service).ids()


async def test_a_session_cannot_be_deleted_with_another_token(product: ProductEnv) -> None:
    user = await product.user()
    session_id = await initialize(product, await product.token(user, name="one"))
    headers = in_session(await product.token(user, name="two"), session_id)
    reply = await product.http.delete(product.server.url, headers=headers)
    assert reply.status_code == 404
    assert session_id in local_sessions(product.server.service).ids()


async def test_a_known_token_is_looked_up_once_until_the_store_changes(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await product.token(await product.user())
    lookups: list[str] = []
    find = product.accounts.find

    async def counted(credential: str) -> Any:
        lookups.append(credential)
        return await find(credential)

    monkeypatch.setattr(product.accounts, "find", counted)
    for _ in range(3):
        assert (await product.rpc(secret, "tools/list")).status_code == 200
    assert len(lookups) == 1
    await product.token(await product.user("bob@example.com"))
    for _ in range(2):
        assert (await product.rpc(secret, "tools/list")).status_code == 200
    assert len(lookups) == 2


# --- last used -------------------------------------------------------------------------------


async def test_last_used_is_recorded_at_most_once_a_minute(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await product.token(await product.user())
    now = [1_800_000_000.0]
    monkeypatch.setattr(authenticator(product), "clock", lambda: now[0])

    async def used_at() -> float | None:
        assert (await product.rpc(secret, "tools/list")).status_code == 200
        # Last use is written in the background, so that no request waits on it.
        await authenticator(product).settle()
        record = await product.accounts.find(secret)
        assert record is not None
        return record.last_used_at

    assert await used_at() == 1_800_000_000.0
    now[0] += 59
    assert await used_at() == 1_800_000_000.0
    now[0] += 1
    assert await used_at() == 1_800_000_060.0


async def test_a_refused_token_is_not_marked_used(product: ProductEnv) -> None:
    user = await product.user()
    secret = await product.token(user, name="gone")
    await product.accounts.revoke(user, "gone")
    assert (await product.rpc(secret, "tools/list")).status_code == 401
    record = await product.accounts.find(secret)
    assert record is not None
    assert record.last_used_at is None


# --- rate limit ------------------------------------------------------------------------------


async def test_the_request_past_the_burst_gets_429_with_retry_after(
    store: Store, tmp_path: Path
) -> None:
    limits = Limits(rate_per_minute=60, rate_burst=2)
    async with product_server(store, tmp_path, limits) as product:
        user = await product.user()
        secret = await product.token(user, name="busy")
        assert (await product.rpc(secret, "tools/list")).status_code == 200
        assert (await product.rpc(secret, "tools/list")).status_code == 200
        reply = await product.rpc(secret, "tools/list")
        assert (reply.status_code, reply.text) == (429, TOO_MANY)
        assert reply.headers["retry-after"] == "1"
        calm = await product.token(user, name="calm")
        assert (await product.rpc(calm, "tools/list")).status_code == 200


async def test_a_rate_near_zero_names_a_wait_of_at_most_a_day(store: Store, tmp_path: Path) -> None:
    """The wait was once infinite, and a 500 for every refusal."""
    limits = Limits(rate_per_minute=1e-300, rate_burst=1)
    async with product_server(store, tmp_path, limits) as product:
        secret = await product.token(await product.user())
        assert (await product.rpc(secret, "tools/list")).status_code == 200
        reply = await product.rpc(secret, "tools/list")
        assert (reply.status_code, reply.headers["retry-after"]) == (429, "86400")


async def test_the_bucket_refills_at_the_configured_rate(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = Limits(rate_per_minute=6, rate_burst=1)
    async with product_server(store, tmp_path, limits) as product:
        secret = await product.token(await product.user())
        now = [1_800_000_000.0]
        monkeypatch.setattr(authenticator(product), "clock", lambda: now[0])
        assert (await product.rpc(secret, "tools/list")).status_code == 200
        now[0] += 4
        reply = await product.rpc(secret, "tools/list")
        assert (reply.status_code, reply.headers["retry-after"]) == (429, "6")
        now[0] += 6
        assert (await product.rpc(secret, "tools/list")).status_code == 200


# --- never in logs nor the audit log ---------------------------------------------------------


async def test_tokens_never_appear_in_the_logs(
    product: ProductEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await product.user()
    good = await product.token(user, name="good")
    revoked = await product.token(user, name="revoked")
    await product.accounts.revoke(user, "revoked")
    unknown = tokens.mint()
    broken = good[:-1] + ("a" if good[-1] != "a" else "b")
    session_id = await initialize(product, good)
    await tools_list(product, good, session_id)
    await product.rpc(good, "tools/call", {"name": "no_such_tool", "arguments": {}})
    for secret in (revoked, unknown, broken):
        await product.http.post(product.server.url, json=INITIALIZE, headers=bearer(secret))
    await product.http.post(f"{product.server.url}?token={good}", json=INITIALIZE)
    await product.http.post(
        product.server.url, content=b"{not json", headers=in_session(good, session_id)
    )
    server_side = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "".join(r.getMessage() + repr(r.__dict__) for r in server_side)
    for secret in (good, revoked, unknown, broken):
        assert secret not in logged
        assert secret[len(tokens.PREFIX) :] not in logged


async def test_tool_calls_are_audited_without_the_token(product: ProductEnv) -> None:
    if "list_projects" not in product.server.engine.catalogue.tools:
        pytest.skip("the list_projects tool is not registered yet (projects tools pending)")
    user = await product.user()
    full = await product.token(user, "mcp:full", name="full")
    narrow = await product.token(user, "logs:read", name="narrow")
    records = {r.name: r for r in await product.accounts.list_tokens(user)}
    assert (await product.call(full, "list_projects", {}))["isError"] is False
    assert (await product.call(narrow, "list_projects", {}))["isError"] is True
    rows = [entry for _, entry in await product.audit_log()]
    tenant = await product.accounts.personal_tenant(user.id)
    assert [
        (r.token_id, r.user_id, r.tenant_id, r.tool, r.arguments_digest, r.outcome) for r in rows
    ] == [
        (records["full"].id, user.id, tenant, "list_projects", arguments_digest({}), "ok"),
        (records["narrow"].id, user.id, None, "list_projects", arguments_digest({}), "error"),
    ]
    assert all(r.at > 0 and r.duration_ms >= 0 for r in rows)
    dump = repr(rows)
    assert full not in dump
    assert narrow not in dump


async def test_requests_that_call_no_tool_write_no_audit_row(product: ProductEnv) -> None:
    secret = await product.token(await product.user())
    session_id = await initialize(product, secret)
    await tools_list(product, secret, session_id)
    await product.rpc(secret, "tools/list")
    assert await product.audit_log() == []
