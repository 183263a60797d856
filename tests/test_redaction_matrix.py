"""The redaction matrix: every tool that can output env values or vault material (and get_logs,
whose lines may quote them), called with tokens that may and may not reveal secrets.

Without secrets:reveal no secret value appears anywhere in the raw HTTP body (the text mirror
and structuredContent alike) and ***REDACTED stands where the values are; with it the values
appear.  mcp:full alone does not reveal."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from sp00ky_mcp.engine.context import CallContext, Principal
from sp00ky_mcp.engine.versions import Era
from sp00ky_mcp.product.accounts import User
from sp00ky_mcp.product.tools import all_specs
from sp00ky_mcp.product.tools.base import SHOWN_ONCE, Call, MaskingPeer

from .product_support import NOW, REDACTED, ProductEnv, Progress

pytestmark = pytest.mark.anyio
TOOLS = {spec.name for spec in all_specs()}
DB_PASSWORD = "pg-pass-Secret-0001"
API_TOKEN = "tok_Secret_0002/with+base64="
NEW_VALUE = "new-Secret-Value-0003"
BULK_VALUE = "bulk-Secret-Value-0004"
SEEDED_MATERIAL = "c2VlZGVkLXZhdWx0LW1hdGVyaWFsLTAwMDAwMDAwMDA="
SEEDED = (DB_PASSWORD, API_TOKEN, SEEDED_MATERIAL)

# Scope sets that must redact (mcp:full deliberately lacks secrets:reveal) and that reveal.
REDACTING = ("mcp:full", "mcp:read,env:write,vault:write,logs:read")
REVEALING = ("mcp:read,secrets:reveal,env:write,vault:write", "mcp:full,secrets:reveal")


@dataclass(frozen=True)
class Case:
    tool: str
    arguments: dict[str, Any]
    # The secret values this call outputs, in the order `shown` returns their places.
    outputs: tuple[str, ...]
    # Where the values stand in structuredContent.
    shown: Callable[[dict[str, Any]], list[str]]


def values_of_items(result: dict[str, Any]) -> list[str]:
    return [item["value"] for item in result["items"]]


def none(result: dict[str, Any]) -> list[str]:
    return []


CASES = {
    "list_env_vars": Case(
        "list_env_vars", {"project": "api"}, (API_TOKEN, DB_PASSWORD), values_of_items
    ),
    "set_env_var": Case(
        "set_env_var",
        {"project": "api", "key": "NEW", "value": NEW_VALUE},
        (NEW_VALUE,),
        lambda r: [r["value"]],
    ),
    "bulk_load_env_vars": Case(
        "bulk_load_env_vars", {"project": "api", "dotenv": f"BULK={BULK_VALUE}\n"}, (), none
    ),
    "delete_env_var": Case("delete_env_var", {"project": "api", "key": "API_TOKEN"}, (), none),
    "get_vault_status": Case("get_vault_status", {"project": "api"}, (), none),
    "enable_vault_ci_access": Case("enable_vault_ci_access", {"project": "api"}, (), none),
    "disable_vault_ci_access": Case("disable_vault_ci_access", {"project": "api"}, (), none),
}


async def setup(env: ProductEnv) -> User:
    """Ada's project 'api' with two secret env vars and an initialized vault, and a project
    'web' whose vault is not initialized yet."""
    ada = await env.user("ada@example.com")
    tenant_id = await env.personal(ada)
    async with env.store.transaction() as tx:
        for name in ("api", "web"):
            await tx.support.add_project(f"prj_{name}", tenant_id, name, "us-east", NOW)
        secrets = [("DATABASE_PASSWORD", DB_PASSWORD), ("API_TOKEN", API_TOKEN)]
        await tx.env.put_many("prj_api", secrets, NOW)
        await tx.vault.create("prj_api", SEEDED_MATERIAL, NOW)
    return ada


async def call(
    env: ProductEnv, token: str, tool: str, arguments: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The raw HTTP body of a tools/call and its decoded result."""
    response = await env.rpc(token, "tools/call", {"name": tool, "arguments": arguments})
    assert response.status_code == 200
    body = response.text
    result: dict[str, Any] = orjson.loads(body)["result"]
    return body, result


def appears(value: str, body: str) -> bool:
    """Whether `value` is in a JSON body, as is or JSON-escaped."""
    return value in body or orjson.dumps(value).decode()[1:-1] in body


def structured(result: dict[str, Any]) -> dict[str, Any]:
    """structuredContent, checked against the text mirror, which must say the same."""
    content: dict[str, Any] = result["structuredContent"]
    assert orjson.loads(result["content"][0]["text"]) == content
    return content


async def material(env: ProductEnv, project_id: str) -> str:
    """The vault's key material as the store holds it, opened."""
    found = await env.store.reads.vault.material(project_id)
    assert found is not None
    return found


# --- env and vault tools ------------------------------------------------------------------


@pytest.mark.parametrize("scopes", REDACTING)
@pytest.mark.parametrize("name", list(CASES))
async def test_no_secret_value_leaves_without_secrets_reveal(
    env: ProductEnv, name: str, scopes: str
) -> None:
    case = CASES[name]
    token = await env.token(await setup(env), scopes)
    body, result = await call(env, token, case.tool, case.arguments)
    assert result["isError"] is False, result
    for value in (*SEEDED, NEW_VALUE, BULK_VALUE):
        assert not appears(value, body), (value, body)
    assert case.shown(structured(result)) == [REDACTED] * len(case.outputs)
    assert body.count(REDACTED) == 2 * len(case.outputs)  # structured content and text mirror


@pytest.mark.parametrize("scopes", REVEALING)
@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case.outputs])
async def test_secret_values_appear_with_secrets_reveal(
    env: ProductEnv, name: str, scopes: str
) -> None:
    case = CASES[name]
    token = await env.token(await setup(env), scopes)
    body, result = await call(env, token, case.tool, case.arguments)
    assert case.shown(structured(result)) == list(case.outputs)
    for value in case.outputs:
        assert appears(value, body)
    assert REDACTED not in body


@pytest.mark.parametrize("scopes", REDACTING)
async def test_init_vault_hides_the_new_key_material_without_secrets_reveal(
    env: ProductEnv, scopes: str
) -> None:
    token = await env.token(await setup(env), scopes)
    body, result = await call(env, token, "init_vault", {"project": "web"})
    assert structured(result)["key_material"] == REDACTED
    new = await material(env, "prj_web")
    assert not appears(new, body)
    assert not appears(SEEDED_MATERIAL, body)


@pytest.mark.parametrize("scopes", REVEALING)
async def test_init_vault_shows_the_new_key_material_with_secrets_reveal(
    env: ProductEnv, scopes: str
) -> None:
    token = await env.token(await setup(env), scopes)
    body, result = await call(env, token, "init_vault", {"project": "web"})
    assert structured(result)["key_material"] == await material(env, "prj_web")
    assert REDACTED not in body


async def test_a_replayed_result_is_redacted_for_a_token_without_secrets_reveal(
    env: ProductEnv,
) -> None:
    ada = await setup(env)
    arguments = {"project": "api", "key": "NEW", "value": NEW_VALUE, "idempotency_key": "k1"}
    _, first = await call(
        env, await env.token(ada, "mcp:full,secrets:reveal"), "set_env_var", arguments
    )
    assert structured(first)["value"] == NEW_VALUE
    body, replay = await call(env, await env.token(ada, "mcp:full"), "set_env_var", arguments)
    assert structured(replay)["value"] == SHOWN_ONCE
    assert not appears(NEW_VALUE, body)


@pytest.mark.parametrize("scopes", ["mcp:read", "mcp:full", "mcp:full,secrets:reveal"])
async def test_an_error_quoting_the_callers_argument_reads_the_same_whether_it_holds_a_secret(
    env: ProductEnv, scopes: str
) -> None:
    """Masking the caller's own text where it holds a secret value would tell a token that
    cannot see secrets that its guess is one (an oracle); the caller sent that text anyway."""
    ada = await setup(env)
    token = await env.token(ada, scopes)
    async with env.store.transaction() as tx:
        await tx.env.put("prj_api", "PIN", "482913", NOW)
    texts = []
    for guess in ("482912", "482913"):
        arguments = {"project": f"nope-{guess}-x"}
        _, result = await call(env, token, "get_project", arguments)
        texts.append(result["content"][0]["text"].replace(guess, "<guess>"))
    assert (
        texts[0]
        == texts[1]
        == (
            "No project 'nope-<guess>-x' in tenant 'ada's workspace'; list_projects shows the "
            "projects there."
        )
    )


async def test_an_error_masks_stored_text_alike_whether_the_arguments_hold_its_secret(
    env: ProductEnv,
) -> None:
    """The error quotes the stored project name (looked up by id) beside the caller's text:
    only the caller's text is left as sent, so its guesses do not unmask the stored name."""
    ada = await env.user("ada@example.com")
    writer = await env.token(ada, "mcp:full")
    made = await env.ok(writer, "create_project", {"name": "s3cret-77"})
    await env.ok(writer, "set_env_var", {"project": "s3cret-77", "key": "K", "value": "s3cret-77"})
    reader = await env.token(ada, "mcp:read")
    texts = []
    for guesses in ("s3cret-11 s3cret-12", "s3cret-76 s3cret-77"):
        arguments = {"project": made["id"], "service": "nope", "contains": guesses}
        texts.append(await env.error_text(reader, "get_logs", arguments))
    assert (
        texts[0]
        == texts[1]
        == (f"No service 'nope' in project '{REDACTED}'; its services are web.")
    )


async def test_an_error_still_masks_a_secret_value_the_caller_did_not_send(
    env: ProductEnv,
) -> None:
    ada = await setup(env)
    tenant = await env.cloud.tenant(ada.id, None)
    principal = Principal("tok", ada.id, frozenset({"mcp:full"}))
    masked = []
    for arguments in ({"project": "api"}, {"project": "api", "key": DB_PASSWORD}):
        call_ = Call(
            env.cloud,
            arguments,
            CallContext(Era.MODERN, "2026-07-28", principal, RecordingPeer()),
            tenant,
        )
        await call_.prepare_masks()
        masked.append(call_.mask_error(f"{DB_PASSWORD} or {API_TOKEN} is wrong"))
    assert masked == [f"{REDACTED} or {REDACTED} is wrong", f"{DB_PASSWORD} or {REDACTED} is wrong"]


# --- get_logs -----------------------------------------------------------------------------

needs_logs = pytest.mark.skipif("get_logs" not in TOOLS, reason="get_logs is not built yet")


async def quote_secrets_in_a_log_line(env: ProductEnv) -> None:
    message = f"connect failed for password {DB_PASSWORD} with token {API_TOKEN}"
    async with env.store.transaction() as tx:
        await tx.logs.add("prj_api", "web", NOW, "error", message)


@needs_logs
@pytest.mark.parametrize("scopes", (*REDACTING, "mcp:read"))
async def test_get_logs_masks_secret_values_quoted_in_log_lines(
    env: ProductEnv, scopes: str
) -> None:
    token = await env.token(await setup(env), scopes)
    await quote_secrets_in_a_log_line(env)
    body, result = await call(env, token, "get_logs", {"project": "api"})
    assert result["isError"] is False, result
    for value in SEEDED:
        assert not appears(value, body)
    assert [line["message"] for line in structured(result)["items"]] == [
        "connect failed for password ***REDACTED with token ***REDACTED"
    ]


@needs_logs
@pytest.mark.parametrize("scopes", ("mcp:read,secrets:reveal", "mcp:full,secrets:reveal"))
async def test_get_logs_shows_quoted_secret_values_with_secrets_reveal(
    env: ProductEnv, scopes: str
) -> None:
    token = await env.token(await setup(env), scopes)
    await quote_secrets_in_a_log_line(env)
    _, result = await call(env, token, "get_logs", {"project": "api"})
    assert [line["message"] for line in structured(result)["items"]] == [
        f"connect failed for password {DB_PASSWORD} with token {API_TOKEN}"
    ]


@needs_logs
async def test_env_writes_log_their_keys_but_no_value_even_to_a_revealing_token(
    env: ProductEnv,
) -> None:
    ada = await setup(env)
    writer = await env.token(ada, "env:write")
    await call(env, writer, "set_env_var", {"project": "api", "key": "NEW", "value": NEW_VALUE})
    await call(
        env,
        writer,
        "bulk_load_env_vars",
        {"project": "api", "values": {"BULK": BULK_VALUE}, "replace": True},
    )
    body, result = await call(
        env, await env.token(ada, "mcp:read,secrets:reveal"), "get_logs", {"project": "api"}
    )
    assert [line["message"] for line in structured(result)["items"]] == [
        "Environment variable NEW created.",
        "Environment variables replaced: 1 created (BULK), 3 deleted (API_TOKEN, "
        "DATABASE_PASSWORD, NEW).",
    ]
    for value in (*SEEDED, NEW_VALUE, BULK_VALUE):
        assert not appears(value, body)


@needs_logs
async def test_get_logs_cannot_be_used_to_guess_a_secret_by_filtering_on_it(
    env: ProductEnv,
) -> None:
    ada = await setup(env)
    await quote_secrets_in_a_log_line(env)
    guess = {"project": "api", "contains": DB_PASSWORD[:12]}
    _, masked = await call(env, await env.token(ada, "mcp:read"), "get_logs", guess)
    assert structured(masked)["items"] == []
    _, revealed = await call(
        env, await env.token(ada, "mcp:read,secrets:reveal"), "get_logs", guess
    )
    assert len(structured(revealed)["items"]) == 1


# --- notifications ------------------------------------------------------------------------


async def deploy_with_progress(env: ProductEnv, token: str, ref: str) -> list[str | None]:
    seen = Progress()
    async with env.sdk(token, mode="legacy") as client:
        await client.call_tool("deploy", {"project": "api", "ref": ref}, progress_callback=seen)
    return [message for _, _, message in seen]


async def test_progress_messages_mask_secret_values_without_secrets_reveal(
    env: ProductEnv,
) -> None:
    ada = await setup(env)
    queued = r"Deployment dep_[0-9a-f]{16} of %s@[0-9a-f]{7} is queued\."
    masked = await deploy_with_progress(env, await env.token(ada, "mcp:full"), DB_PASSWORD)
    assert re.fullmatch(queued % re.escape(REDACTED), masked[0] or "")
    assert not any(DB_PASSWORD in (message or "") for message in masked)
    reveal = await env.token(ada, "mcp:full,secrets:reveal")
    revealed = await deploy_with_progress(env, reveal, DB_PASSWORD)
    assert re.fullmatch(queued % re.escape(DB_PASSWORD), revealed[0] or "")


class RecordingPeer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        self.sent.append((method, params))

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        return {"method": method, "params": params}

    def interrupt(self) -> None:
        self.sent.append(("interrupt", {}))


async def masking_peer(env: ProductEnv, can_reveal: bool) -> tuple[MaskingPeer, RecordingPeer]:
    ada = await setup(env)
    principal = Principal("tok", ada.id, frozenset({"mcp:full"}), can_reveal=can_reveal)
    peer = RecordingPeer()
    ctx = CallContext(Era.MODERN, "2026-07-28", principal, peer)
    call = Call(env.cloud, {}, ctx, await env.cloud.tenant(ada.id, None))
    return MaskingPeer(peer, call), peer


async def test_the_masking_peer_masks_log_data_but_not_the_progress_token(
    env: ProductEnv,
) -> None:
    masking, peer = await masking_peer(env, can_reveal=False)
    await masking.notify(
        "notifications/message",
        {"level": "error", "data": {"lines": [f"password {DB_PASSWORD}"]}, "logger": "db"},
    )
    await masking.notify(
        "notifications/progress",
        {"progressToken": API_TOKEN, "progress": 1, "message": f"token {API_TOKEN}"},
    )
    masking.interrupt()
    assert peer.sent == [
        (
            "notifications/message",
            {"level": "error", "data": {"lines": [f"password {REDACTED}"]}, "logger": "db"},
        ),
        (
            "notifications/progress",
            {"progressToken": API_TOKEN, "progress": 1, "message": f"token {REDACTED}"},
        ),
        ("interrupt", {}),
    ]
    assert await masking.request("roots/list", {"note": DB_PASSWORD}) == {
        "method": "roots/list",
        "params": {"note": DB_PASSWORD},
    }


async def test_the_masking_peer_passes_everything_with_secrets_reveal(env: ProductEnv) -> None:
    masking, peer = await masking_peer(env, can_reveal=True)
    params = {"level": "error", "data": f"password {DB_PASSWORD}"}
    await masking.notify("notifications/message", params)
    assert peer.sent == [("notifications/message", params)]
