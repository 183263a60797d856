"""The projects tools: list_projects, get_project, create_project, destroy_project."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.client import ClientRequestContext

from .product_support import NOW_ISO, SPECS, ProductEnv, assert_declared, decline

pytestmark = pytest.mark.anyio


def test_project_tools_declare_their_scope_and_annotations() -> None:
    expected = {
        "list_projects": ("projects:read", True, False, True),
        "get_project": ("projects:read", True, False, True),
        "create_project": ("projects:write", False, False, False),
        "destroy_project": ("projects:write", False, True, True),
    }
    assert_declared(expected)
    for name in expected:
        assert SPECS[name].input_schema()["additionalProperties"] is False


async def test_create_project_records_its_services_region_and_an_initial_build(
    product: ProductEnv,
) -> None:
    product.freeze()
    ada = await product.user()
    token = await product.token(ada)
    tenant_id = await product.personal(ada)
    created = await product.ok(
        token,
        "create_project",
        {"name": "api", "region": "eu-central", "services": ["web", "worker"]},
    )
    build = created["latest_build"]
    assert created == {
        "id": created["id"],
        "name": "api",
        "tenant_id": tenant_id,
        "region": "eu-central",
        "created_at": NOW_ISO,
        "services": [
            {"name": "web", "status": "stopped", "replicas": 1, "restarted_at": None},
            {"name": "worker", "status": "stopped", "replicas": 1, "restarted_at": None},
        ],
        "live_deployment_id": None,
        "latest_build": {
            "id": build["id"],
            "ref": "main",
            "commit_sha": build["commit_sha"],
            "created_at": NOW_ISO,
        },
        "repo_link": None,
    }
    assert created["id"].startswith("prj_")
    assert len(build["commit_sha"]) == 40
    assert await product.ok(token, "get_project", {"project": "api"}) == created


async def test_create_project_defaults_to_us_east_and_one_web_service(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    created = await product.ok(token, "create_project", {"name": "web"})
    assert created["region"] == "us-east"
    assert [s["name"] for s in created["services"]] == ["web"]


async def test_create_project_writes_a_log_line(product: ProductEnv) -> None:
    product.freeze()
    token = await product.token(await product.user())
    await product.ok(token, "create_project", {"name": "api", "services": ["web", "api"]})
    logs = await product.ok(token, "get_logs", {"project": "api"})
    assert logs["items"] == [
        {
            "at": NOW_ISO,
            "service": None,
            "level": "info",
            "message": "Project 'api' created in us-east with services api, web.",
        }
    ]


@pytest.mark.parametrize("name", ["Api", "1api", "-api", "my_api", "api.v2"])
async def test_create_project_refuses_a_name_that_breaks_the_rules(
    product: ProductEnv, name: str
) -> None:
    token = await product.token(await product.user())
    assert await product.error_text(token, "create_project", {"name": name}) == (
        f"Project name '{name}' is invalid: use 1-63 lowercase letters, digits and hyphens, "
        "starting with a letter."
    )
    assert await product.count("projects") == 0


async def test_create_project_refuses_a_name_longer_than_63_characters(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    assert await product.error_text(token, "create_project", {"name": "a" * 64}) == (
        "Invalid arguments for 'create_project': Argument 'name' must be at most 63 characters."
    )
    assert (await product.ok(token, "create_project", {"name": "a" * 63}))["name"] == "a" * 63


async def test_create_project_refuses_a_name_already_used_in_the_tenant(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    await product.ok(token, "create_project", {"name": "api"})
    assert await product.error_text(token, "create_project", {"name": "api"}) == (
        "A project named 'api' already exists in tenant 'ada's workspace'; choose another name "
        "or use that project."
    )
    assert await product.count("projects") == 1


async def test_the_same_name_may_be_used_in_another_tenant(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    await product.ok(await product.token(ada), "create_project", {"name": "api"})
    await product.ok(await product.token(bob), "create_project", {"name": "api"})
    assert await product.count("projects") == 2


async def test_create_project_refuses_bad_or_repeated_services(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    assert await product.error_text(
        token, "create_project", {"name": "api", "services": ["web", "Web"]}
    ) == (
        "Service name 'Web' is invalid: use 1-63 lowercase letters, digits and hyphens, "
        "starting with a letter."
    )
    assert await product.error_text(
        token, "create_project", {"name": "api", "services": ["web", "ssr", "web"]}
    ) == ("Service 'web' is listed twice; list each service once.")
    assert await product.error_text(token, "create_project", {"name": "api", "services": []}) == (
        "Invalid arguments for 'create_project': Argument 'services' must have at least 1 items."
    )
    assert await product.count("projects") == 0


async def test_create_project_refuses_bad_arguments(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    prefix = "Invalid arguments for 'create_project': "
    assert await product.error_text(token, "create_project", {}) == (
        prefix + "Missing required argument 'name'."
    )
    assert await product.error_text(token, "create_project", {"name": 7}) == (
        prefix + "Argument 'name' must be of type string."
    )
    assert await product.error_text(token, "create_project", {"name": "a", "region": "mars"}) == (
        prefix + "Argument 'region' must be one of 'us-east', 'us-west', 'eu-central', "
        "'eu-west', 'ap-southeast'."
    )
    assert await product.error_text(token, "create_project", {"name": "a", "colour": "red"}) == (
        prefix + "Unknown argument 'colour'; remove it."
    )
    assert await product.count("projects") == 0


async def test_create_project_replays_its_first_result_for_a_repeated_idempotency_key(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    args = {"name": "api", "idempotency_key": "k1"}
    first = await product.ok(token, "create_project", args)
    assert await product.ok(token, "create_project", args) == first
    assert await product.count("projects") == 1


async def test_list_projects_shows_the_tenants_projects_sorted_by_name(
    product: ProductEnv,
) -> None:
    product.freeze()
    token = await product.token(await product.user())
    web = await product.ok(token, "create_project", {"name": "web", "services": ["web", "ssr"]})
    api = await product.ok(token, "create_project", {"name": "api", "region": "us-west"})
    assert await product.ok(token, "list_projects", {}) == {
        "items": [
            {
                "id": api["id"],
                "name": "api",
                "region": "us-west",
                "created_at": NOW_ISO,
                "services": ["web"],
                "live_deployment_id": None,
            },
            {
                "id": web["id"],
                "name": "web",
                "region": "us-east",
                "created_at": NOW_ISO,
                "services": ["ssr", "web"],
                "live_deployment_id": None,
            },
        ],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_projects_shows_the_live_deployment(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    await product.ok(token, "create_project", {"name": "api"})
    deployed = await product.ok(token, "deploy", {"project": "api"})
    listed = await product.ok(token, "list_projects", {})
    assert listed["items"][0]["live_deployment_id"] == deployed["deployment_id"]


async def test_list_projects_pages_with_a_cursor(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    for name in ("a", "b", "c"):
        await product.ok(token, "create_project", {"name": name})
    first = await product.ok(token, "list_projects", {"limit": 2})
    assert [p["name"] for p in first["items"]] == ["a", "b"]
    assert (first["next_cursor"], first["truncated"]) == ("o2", True)
    second = await product.ok(token, "list_projects", {"limit": 2, "cursor": "o2"})
    assert [p["name"] for p in second["items"]] == ["c"]
    assert (second["next_cursor"], second["truncated"]) == (None, False)


async def test_list_projects_refuses_a_cursor_it_did_not_issue(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    assert await product.error_text(token, "list_projects", {"cursor": "zz"}) == (
        "Invalid cursor: pass back a next_cursor value exactly as received."
    )
    assert await product.error_text(token, "list_projects", {"limit": 0}) == (
        "Invalid arguments for 'list_projects': Argument 'limit' must be at least 1."
    )


async def test_get_project_accepts_a_name_or_an_id(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    created = await product.ok(token, "create_project", {"name": "api"})
    by_id = await product.ok(token, "get_project", {"project": created["id"]})
    assert by_id == await product.ok(token, "get_project", {"project": "api"})


async def test_get_project_reports_an_unknown_project(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    assert await product.error_text(token, "get_project", {"project": "nope"}) == (
        "No project 'nope' in tenant 'ada's workspace'; list_projects shows the projects there."
    )
    assert await product.error_text(token, "get_project", {}) == (
        "Invalid arguments for 'get_project': Missing required argument 'project'."
    )


async def test_projects_live_in_the_team_named_by_tenant_id(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    tenant_id = await product.make_team({ada: "owner", bob: "member"}, plan="team")
    bob_token = await product.token(bob)
    created = await product.ok(bob_token, "create_project", {"name": "api", "tenant_id": tenant_id})
    assert created["tenant_id"] == tenant_id
    assert (await product.ok(bob_token, "list_projects", {}))["items"] == []
    listed = await product.ok(await product.token(ada), "list_projects", {"tenant_id": tenant_id})
    assert [p["name"] for p in listed["items"]] == ["api"]


async def test_destroy_project_removes_the_project_and_everything_under_it(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    created = await product.ok(token, "create_project", {"name": "api", "services": ["a", "b"]})
    await product.ok(token, "deploy", {"project": "api"})
    await product.ok(
        token,
        "set_up_repo_link",
        {"project": "api", "repo_url": "https://github.com/acme/api"},
    )
    await product.ok(token, "trigger_build", {"project": "api"})
    async with product.store.transaction() as tx:
        await tx.env.put(created["id"], "DATABASE_URL", "postgres://x", 0.0)
    async with product.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        declined = await client.call_tool("destroy_project", {"project": "api"})
    assert declined.content[0].model_dump()["text"] == (
        f"Not confirmed, so nothing was changed: destroy project 'api' ({created['id']}) with "
        "2 services, 2 builds, 2 deployments, 1 env var, 1 repo link run, its repo link to "
        "https://github.com/acme/api and its logs."
    )
    assert await product.count("deployments") == 2
    assert await product.ok(token, "destroy_project", {"project": "api"}) == {
        "destroyed": True,
        "project_id": created["id"],
        "name": "api",
        "removed": {
            "services": 2,
            "builds": 2,
            "deployments": 2,
            "env_vars": 1,
            "backups": 0,
            "domains": 0,
            "link_runs": 1,
        },
    }
    for table in ("projects", "services", "builds", "deployments", "log_lines", "env_vars"):
        assert await product.count(table) == 0, table
    assert await product.count("repo_links") + await product.count("link_runs") == 0
    assert await product.error_text(token, "destroy_project", {"project": "api"}) == (
        "No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there."
    )


async def test_destroy_project_does_nothing_when_the_user_declines(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    created = await product.ok(token, "create_project", {"name": "api"})
    async with product.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("destroy_project", {"project": "api"})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        f"Not confirmed, so nothing was changed: destroy project 'api' ({created['id']}) with "
        "1 service, 1 build and its logs."
    )
    assert await product.count("projects") == 1


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_destroy_project_asks_the_user_naming_what_will_be_destroyed(
    product: ProductEnv, mode: str
) -> None:
    token = await product.token(await product.user())
    created = await product.ok(token, "create_project", {"name": "api"})
    asked: list[str] = []

    async def accept(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with product.sdk(token, mode=mode, elicitation_callback=accept) as client:
        result = await client.call_tool("destroy_project", {"project": "api"})
    assert result.is_error is False
    assert asked == [
        f"Confirm: destroy project 'api' ({created['id']}) with 1 service, 1 build and its "
        "logs. This cannot be undone."
    ]
    assert await product.count("projects") == 0


async def test_destroying_a_team_project_needs_an_admin(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    tenant_id = await product.make_team({ada: "admin", bob: "member"}, plan="team")
    args = {"project": "api", "tenant_id": tenant_id}
    await product.ok(
        await product.token(bob), "create_project", {"name": "api", "tenant_id": tenant_id}
    )
    assert await product.error_text(await product.token(bob), "destroy_project", args) == (
        "Only a team admin or above may destroy a project; your role in 'Acme' is member."
    )
    assert await product.count("projects") == 1
    assert (await product.ok(await product.token(ada), "destroy_project", args))[
        "destroyed"
    ] is True


async def test_another_users_token_cannot_see_or_change_the_project(
    product: ProductEnv,
) -> None:
    ada = await product.user()
    created = await product.ok(await product.token(ada), "create_project", {"name": "api"})
    bob = await product.token(await product.user("bob@example.com"), "mcp:full,secrets:reveal")
    ada_tenant = await product.personal(ada)
    assert (await product.ok(bob, "list_projects", {}))["items"] == []
    for tool in ("get_project", "destroy_project"):
        assert await product.error_text(bob, tool, {"project": created["id"]}) == (
            f"No project '{created['id']}' in tenant 'bob's workspace'; list_projects shows "
            "the projects there."
        )
        assert await product.error_text(bob, tool, {"project": "api", "tenant_id": ada_tenant}) == (
            f"No tenant '{ada_tenant}' is reachable by this token; list_teams shows the tenants "
            "you belong to."
        )
    assert await product.error_text(
        bob, "create_project", {"name": "x", "tenant_id": ada_tenant}
    ) == (
        f"No tenant '{ada_tenant}' is reachable by this token; list_teams shows the tenants "
        "you belong to."
    )
    assert await product.count("projects") == 1


async def test_project_tools_need_their_scope(product: ProductEnv) -> None:
    token = await product.token(await product.user(), "projects:read")
    assert (await product.ok(token, "list_projects", {}))["items"] == []
    message = await product.error_text(token, "create_project", {"name": "api"})
    assert "projects:write" in message
    assert await product.count("projects") == 0
