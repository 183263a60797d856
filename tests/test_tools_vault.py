"""The vault tools: get_vault_status, init_vault, enable_vault_ci_access and
disable_vault_ci_access, driven through the product server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sp00ky_mcp.product.tools.base import SHOWN_ONCE

from .product_support import NOW, NOW_ISO, REDACTED, ProductEnv

pytestmark = pytest.mark.anyio
UNINITIALIZED = {"project": "api", "initialized": False, "ci_access": False, "initialized_at": None}


async def vault_row(env: ProductEnv, project_id: str) -> dict[str, Any] | None:
    """The project's vault as stored, its key material opened."""
    found = await env.store.reads.vault.vault(project_id)
    if found is None:
        return None
    return {
        "project_id": found.project_id,
        "key_material": await env.store.reads.vault.material(project_id),
        "ci_access": found.ci_access,
        "initialized_at": found.initialized_at,
    }


# --- get_vault_status ---------------------------------------------------------------------


async def test_get_vault_status_of_a_new_project_says_not_initialized(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    status = await env.ok(
        await env.token(ada, "vault:read"), "get_vault_status", {"project": "api"}
    )
    assert status == UNINITIALIZED


async def test_get_vault_status_after_init_never_shows_key_material(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada, "mcp:full,secrets:reveal")
    await env.ok(token, "init_vault", {"project": "api"})
    status = await env.ok(token, "get_vault_status", {"project": "api"})
    assert status == {
        "project": "api",
        "initialized": True,
        "ci_access": False,
        "initialized_at": NOW_ISO,
    }


async def test_get_vault_status_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "get_vault_status", {}) == (
        "Invalid arguments for 'get_vault_status': Missing required argument 'project'."
    )
    assert await env.error_text(token, "get_vault_status", {"project": "api", "x": 1}) == (
        "Invalid arguments for 'get_vault_status': Unknown argument 'x'; remove it."
    )


async def test_get_vault_status_of_an_unknown_project_is_not_found(env: ProductEnv) -> None:
    assert await env.error_text(
        await env.token(await env.user()), "get_vault_status", {"project": "api"}
    ) == ("No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there.")


# --- init_vault ---------------------------------------------------------------------------


async def test_init_vault_returns_32_random_bytes_of_key_material_once(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    result = await env.ok(
        await env.token(ada, "vault:write,secrets:reveal"), "init_vault", {"project": "api"}
    )
    material = result.pop("key_material")
    assert result == {
        "project": "api",
        "initialized": True,
        "ci_access": False,
        "initialized_at": NOW_ISO,
    }
    assert len(base64.b64decode(material, validate=True)) == 32
    assert await vault_row(env, project_id) == {
        "project_id": project_id,
        "key_material": material,
        "ci_access": False,
        "initialized_at": NOW,
    }
    assert await env.log_messages(project_id) == ["Vault initialized; CI access is disabled."]


async def test_init_vault_redacts_the_key_material_without_secrets_reveal(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    result = await env.ok(await env.token(ada, "mcp:full"), "init_vault", {"project": "api"})
    assert result["key_material"] == REDACTED
    assert await vault_row(env, project_id) is not None


async def test_init_vault_makes_different_material_for_each_project(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada, "api")
    await env.make_project(ada, "web")
    token = await env.token(ada, "vault:write,secrets:reveal")
    first = await env.ok(token, "init_vault", {"project": "api"})
    second = await env.ok(token, "init_vault", {"project": "web"})
    assert first["key_material"] != second["key_material"]


async def test_init_vault_twice_is_a_conflict_that_keeps_the_material(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "init_vault", {"project": "api"})
    before = await vault_row(env, project_id)
    assert await env.error_text(token, "init_vault", {"project": "api"}) == (
        "The vault of project 'api' is already initialized and its key material was shown only "
        "then; get_vault_status shows its state."
    )
    assert await vault_row(env, project_id) == before


async def test_init_vault_retried_with_its_key_returns_the_same_outcome_without_the_material(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada, "vault:write,secrets:reveal")
    args = {"project": "api", "idempotency_key": "init-1"}
    first = await env.ok(token, "init_vault", args)
    assert await env.ok(token, "init_vault", args) == {**first, "key_material": SHOWN_ONCE}


async def test_init_vault_in_a_team_needs_an_admin(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    project_id = await env.make_project(ada, "shop", team)
    args = {"project": "shop", "tenant_id": team}
    assert await env.error_text(await env.token(bob), "init_vault", args) == (
        "Only a team admin or above may initialize a vault; your role in 'Acme' is member."
    )
    assert await vault_row(env, project_id) is None
    await env.ok(await env.token(ada), "init_vault", args)


async def test_init_vault_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "init_vault", {"project": ""}) == (
        "Invalid arguments for 'init_vault': Argument 'project' must be at least 1 characters."
    )


# --- CI access ----------------------------------------------------------------------------


async def test_enable_and_disable_vault_ci_access_flip_the_switch_idempotently(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada, "vault:write")
    await env.ok(token, "init_vault", {"project": "api"})
    enabled = {"project": "api", "initialized": True, "ci_access": True, "initialized_at": NOW_ISO}
    disabled = {**enabled, "ci_access": False}
    assert await env.ok(token, "enable_vault_ci_access", {"project": "api"}) == {
        **enabled,
        "changed": True,
    }
    assert await env.ok(token, "enable_vault_ci_access", {"project": "api"}) == {
        **enabled,
        "changed": False,
    }
    assert await env.ok(token, "disable_vault_ci_access", {"project": "api"}) == {
        **disabled,
        "changed": True,
    }
    assert await env.ok(token, "disable_vault_ci_access", {"project": "api"}) == {
        **disabled,
        "changed": False,
    }
    assert await env.log_messages(project_id) == [
        "Vault initialized; CI access is disabled.",
        "Vault CI access enabled.",
        "Vault CI access disabled.",
    ]


@pytest.mark.parametrize("tool", ["enable_vault_ci_access", "disable_vault_ci_access"])
async def test_ci_access_needs_an_initialized_vault(env: ProductEnv, tool: str) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(await env.token(ada), tool, {"project": "api"}) == (
        "The vault of project 'api' is not initialized; run init_vault first."
    )


@pytest.mark.parametrize("tool", ["enable_vault_ci_access", "disable_vault_ci_access"])
async def test_ci_access_in_a_team_needs_an_admin(env: ProductEnv, tool: str) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    args = {"project": "shop", "tenant_id": team}
    await env.ok(await env.token(ada), "init_vault", args)
    assert await env.error_text(await env.token(bob), tool, args) == (
        "Only a team admin or above may change vault CI access; your role in 'Acme' is member."
    )


@pytest.mark.parametrize("tool", ["enable_vault_ci_access", "disable_vault_ci_access"])
async def test_ci_access_rejects_bad_arguments(env: ProductEnv, tool: str) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, tool, {"project": "api", "enabled": True}) == (
        f"Invalid arguments for '{tool}': Unknown argument 'enabled'; remove it."
    )


# --- tenancy ------------------------------------------------------------------------------


async def test_another_users_token_cannot_see_or_change_the_vault(env: ProductEnv) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    project_id = await env.make_project(ada)
    await env.ok(await env.token(ada), "init_vault", {"project": "api"})
    before = await vault_row(env, project_id)
    eve_token = await env.token(eve, "mcp:full,secrets:reveal")
    missing = (
        f"No project '{project_id}' in tenant 'eve's workspace'; list_projects shows the "
        "projects there."
    )
    for tool in (
        "get_vault_status",
        "init_vault",
        "enable_vault_ci_access",
        "disable_vault_ci_access",
    ):
        assert await env.error_text(eve_token, tool, {"project": project_id}) == missing
    assert await vault_row(env, project_id) == before
