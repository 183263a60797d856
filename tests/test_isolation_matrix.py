"""Tenant isolation across the whole catalogue: a second user's token, even with
`mcp:full,secrets:reveal`, cannot read or change anything of the first user's tenants.  Every
attempt is an isError "not found" answer (never "forbidden": nothing leaks existence), and
afterwards every table is exactly as it was."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from sp00ky_mcp.product.tools import all_specs

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio
SECRET = "postgres://ada:hunter2-very-secret@db.internal/api"
HOSTNAME = "api.ada-example.com"
NOT_FOUND = re.compile(r"\bno\b|not found|unknown", re.IGNORECASE)
FORBIDDEN = re.compile(
    r"forbidden|permission|not allowed|only a team|your role|denied", re.IGNORECASE
)
SPECS = all_specs()
# Arguments that name an object (as opposed to the tenant it lives in).
OBJECT_ARGS = (
    "project",
    "deployment_id",
    "backup_id",
    "restore_id",
    "hostname",
    "invitation_id",
    "member",
)


@dataclass
class World:
    ada_email: str
    ada_personal: str
    ada_team: str
    project_id: str
    team_project_id: str
    ids: dict[str, str]
    mallory: str
    mallory_team: str


async def seed(env: ProductEnv) -> World:
    """Ada's tenants, filled through the tools a user would call; Mallory has her own."""
    ada = await env.user("ada@example.com")
    token = await env.token(ada, "mcp:full,secrets:reveal")

    async def make(tool: str, arguments: dict[str, Any]) -> Any:
        return await env.structured(token, tool, arguments)

    api = await make("create_project", {"name": "api", "services": ["web", "api", "worker"]})
    await make("set_env_var", {"project": "api", "key": "DATABASE_URL", "value": SECRET})
    await make("init_vault", {"project": "api"})
    await make("enable_vault_ci_access", {"project": "api"})
    await make("set_up_repo_link", {"project": "api", "repo_url": "https://github.com/ada/api"})
    await make("trigger_build", {"project": "api"})
    deployed = await make("deploy", {"project": "api"})
    await make("configure_backups", {"project": "api", "schedule": "daily", "retention_days": 14})
    backup_id = (await make("create_backup", {"project": "api"}))["backup_id"]
    restored = await make("restore_backup", {"project": "api", "backup_id": backup_id})
    await make("add_domain", {"project": "api", "hostname": HOSTNAME})
    await make("create_checkout_session", {"plan": "pro"})
    team = (await make("create_team", {"name": "Acme"}))["tenant_id"]
    site = await make("create_project", {"tenant_id": team, "name": "site"})
    invited = await make("invite_team_member", {"tenant_id": team, "email": "new@example.com"})
    ids = {
        "deployment_id": deployed["deployment_id"],
        "backup_id": backup_id,
        "restore_id": restored["restore_id"],
        "hostname": HOSTNAME,
        "invitation_id": invited["invitation_id"],
        "member": ada.email,
    }
    mallory = await env.token(await env.user("mallory@example.com"), "mcp:full,secrets:reveal")
    # Mallory's own project has Ada's project name, so ids are checked against the project
    # they are looked up in, not just against the name.
    await env.structured(mallory, "create_project", {"name": "api"})
    mallory_team = (await env.structured(mallory, "create_team", {"name": "Mine"}))["tenant_id"]
    return World(
        ada.email,
        await env.personal(ada),
        team,
        api["id"],
        site["id"],
        ids,
        mallory,
        mallory_team,
    )


FILLERS: dict[str, Any] = {
    "service": "web",
    "key": "DATABASE_URL",
    "value": "stolen",
    "replicas": 2,
    "repo_url": "https://github.com/mallory/evil",
    "name": "api",
    "email": "m2@example.com",
    "plan": "team",
    "dotenv": "STOLEN=1",
    "schedule": "hourly",
    "retention_days": 1,
    "ref": "main",
    "branch": "main",
    "auto_deploy": False,
    "services": ["web"],
    "region": "us-east",
    "role": "owner",
    "lines": 10,
    "limit": 10,
    "promote": True,
    "replace": True,
    "values": {"STOLEN": "1"},
    "contains": "secret",
}


def attempts(world: World) -> list[tuple[str, dict[str, Any]]]:
    """Every tool that takes a tenant or an object, aimed at Ada's: by tenant_id (her
    personal tenant and her team), and from Mallory's own tenants with Ada's names and ids."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for spec in SPECS:
        properties = spec.input_schema()["properties"]
        base = {
            arg: FILLERS[arg]
            for arg in spec.required
            if arg not in OBJECT_ARGS and arg != "tenant_id"
        }
        refs = {arg: world.ids.get(arg, "api") for arg in OBJECT_ARGS if arg in properties}
        if "tenant_id" in properties:
            for tenant in (world.ada_personal, world.ada_team):
                calls.append((spec.name, {**base, **refs, "tenant_id": tenant}))
        if "project" in properties:
            for project in (world.project_id, world.team_project_id):
                own = {**refs, "project": project}
                calls.append((spec.name, {**base, **own}))
                calls.append((spec.name, {**base, **own, "tenant_id": world.mallory_team}))
        ids = {arg: value for arg, value in refs.items() if arg != "project"}
        if ids and spec.name != "add_domain":  # hostnames are unique across the platform
            # Mallory's own project or team, with Ada's ids.
            where = {"project": "api"} if "project" in properties else {}
            if "tenant_id" in spec.required:
                where = {"tenant_id": world.mallory_team}
            calls.append((spec.name, {**base, **ids, **where}))
    return calls


async def test_another_users_token_finds_nothing_of_the_first_users_tenants(
    product: ProductEnv,
) -> None:
    world = await seed(product)
    before = await product.snapshot()
    calls = attempts(world)
    called = {name for name, _ in calls}
    expected = {s.name for s in SPECS} - {"list_teams", "create_team"}
    assert called == expected
    for name, arguments in calls:
        result = await product.call(world.mallory, name, arguments)
        text = result["content"][0]["text"]
        assert result["isError"] is True, (name, arguments, text)
        assert NOT_FOUND.search(text), (name, arguments, text)
        assert not FORBIDDEN.search(text), (name, arguments, text)
        # Nothing of Ada's beyond what the caller passed in comes back.
        for leak in (world.ada_email, "ada's workspace", "Acme", SECRET):
            assert leak not in text or leak in str(arguments), (name, arguments, text)
    assert await product.snapshot() == before


async def test_another_users_lists_show_none_of_the_first_users_objects(
    product: ProductEnv,
) -> None:
    world = await seed(product)
    before = await product.snapshot()
    teams = await product.structured(world.mallory, "list_teams", {})
    assert [t["name"] for t in teams["items"]] == ["mallory's workspace", "Mine"]
    projects = await product.structured(world.mallory, "list_projects", {})
    assert [p["id"] for p in projects["items"]] != [world.project_id]
    assert world.project_id not in str(projects)
    domains = await product.structured(world.mallory, "list_domains", {})
    assert HOSTNAME not in str(domains)
    members = await product.structured(
        world.mallory, "list_team_members", {"tenant_id": world.mallory_team}
    )
    assert [m["email"] for m in members["items"]] == ["mallory@example.com"]
    usage = await product.structured(world.mallory, "get_usage", {})
    assert usage["usage"]["env_vars"]["used"] == 0
    assert await product.snapshot() == before
