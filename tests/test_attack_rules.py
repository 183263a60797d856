"""The product's rules hold against an attacker: authority is checked again after a
confirmation prompt, key material is shown once even to retries, every input the schemas admit
gets a clear answer, unique names stay unique whatever the Unicode spelling, and two processes
on one store agree on what already exists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import orjson
import pytest
from mcp.client import ClientRequestContext

from sp00ky_mcp.accounts import Accounts, User
from sp00ky_mcp.store import Store
from sp00ky_mcp.tools.base import SHOWN_ONCE

from .product_support import SPECS, ProductEnv

pytestmark = pytest.mark.anyio

REMOVED = (
    "You no longer belong to 'Acme', so nothing was changed; list_teams shows the tenants you "
    "belong to."
)
REVOKED = (
    "This token was revoked while the call ran, so nothing was changed; mint a new one with "
    "`spky mcp token` and re-add it."
)
EXPIRED = (
    "This token expired while the call ran, so nothing was changed; mint a new one with "
    "`spky mcp token` and re-add it."
)
DEMOTED = (
    "Your role in 'Acme' changed from admin to member while this call ran, so nothing was "
    "changed; call the tool again to act with your current role."
)


# --- a team with something to destroy under every destructive tool ------------------------


class Team:
    """Acme on the team plan: Ada owns it, Bob is an admin, Cy a member; its project 'api' is
    deployed and has a backup, a domain, an env var and a repo link; cy2@example.com is
    invited."""

    def __init__(self, env: ProductEnv) -> None:
        self.env = env
        self.ada = env.user("ada@example.com")
        self.bob = env.user("bob@example.com")
        self.cy = env.user("cy@example.com")
        self.id = env.make_team(
            {self.ada: "owner", self.bob: "admin", self.cy: "member"}, plan="team"
        )
        self.owner = env.token(self.ada)
        self.bob_token = env.token(self.bob, name="bob-laptop")
        self.backup_id = ""
        self.invitation_id = ""

    async def furnish(self) -> None:
        project = {"project": "api", "tenant_id": self.id}
        await self.env.ok(self.owner, "create_project", {"name": "api", "tenant_id": self.id})
        await self.env.ok(self.owner, "deploy", project)
        backup = await self.env.ok(self.owner, "create_backup", project)
        self.backup_id = backup["backup_id"]
        await self.env.ok(self.owner, "add_domain", {**project, "hostname": "www.example.com"})
        await self.env.ok(self.owner, "set_env_var", {**project, "key": "API_KEY", "value": "v"})
        link = {**project, "repo_url": "https://github.com/acme/api"}
        await self.env.ok(self.owner, "set_up_repo_link", link)
        invited = await self.env.ok(
            self.owner, "invite_team_member", {"tenant_id": self.id, "email": "cy2@example.com"}
        )
        self.invitation_id = invited["invitation_id"]

    def arguments(self, tool: str) -> dict[str, Any]:
        """Arguments under which `tool` destroys something of the team's, with a prompt."""
        project = {"project": "api", "tenant_id": self.id}
        return {
            "destroy_project": project,
            "tear_down_project": project,
            "restore_backup": {**project, "backup_id": self.backup_id},
            "delete_backup": {**project, "backup_id": self.backup_id},
            "reset_backup_config": project,
            "remove_domain": {**project, "hostname": "www.example.com"},
            "delete_env_var": {**project, "key": "API_KEY"},
            "unlink_repo": project,
            "remove_team_member": {"tenant_id": self.id, "member": self.cy.email},
            "remove_team_invitation": {"tenant_id": self.id, "invitation_id": self.invitation_id},
        }[tool]

    def set_role(self, user: User, role: str | None) -> None:
        """The owner's dashboard changes a member's role, or removes them (None)."""
        with self.env.store.transaction() as db:
            if role is None:
                db.execute(
                    "DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?",
                    (self.id, user.id),
                )
            else:
                db.execute(
                    "UPDATE memberships SET role = ? WHERE tenant_id = ? AND user_id = ?",
                    (role, self.id, user.id),
                )


CONFIRMING = (
    "destroy_project",
    "tear_down_project",
    "restore_backup",
    "delete_backup",
    "reset_backup_config",
    "remove_domain",
    "delete_env_var",
    "unlink_repo",
    "remove_team_member",
    "remove_team_invitation",
)
Elicit = Callable[[ClientRequestContext, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


def confirming_after(env: ProductEnv, change: Callable[[], None], seen: list[Any]) -> Elicit:
    """An elicitation callback that makes `change` while the prompt is open, then confirms;
    `seen` gets the store as it is once the change is made."""

    async def answer(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        change()
        seen.append(env.snapshot())
        return types.ElicitResult(action="accept", content={"confirm": True})

    return answer


async def confirm_after(
    env: ProductEnv, team: Team, tool: str, change: Callable[[], None]
) -> tuple[types.CallToolResult, list[Any]]:
    seen: list[Any] = []
    answer = confirming_after(env, change, seen)
    async with env.sdk(team.bob_token, mode="legacy", elicitation_callback=answer) as client:
        result = await client.call_tool(tool, team.arguments(tool))
    return result, seen


def test_every_destructive_tool_is_covered_here() -> None:
    assert {name for name, spec in SPECS.items() if spec.destructive} == set(CONFIRMING)


@pytest.mark.parametrize("tool", CONFIRMING)
async def test_an_admin_removed_while_the_prompt_is_open_destroys_nothing(
    env: ProductEnv, tool: str
) -> None:
    team = Team(env)
    await team.furnish()
    result, seen = await confirm_after(env, team, tool, lambda: team.set_role(team.bob, None))
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, REMOVED)
    assert env.snapshot() == seen[0]


async def first_round(env: ProductEnv, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    """A stateless tools/call that stops at its confirmation prompt: the round's result."""
    response = await env.rpc(
        token, "tools/call", {"name": tool, "arguments": arguments}, {"elicitation": {}}
    )
    result = response.json()["result"]
    assert result["resultType"] == "input_required", result
    return result


async def confirmed_round(
    env: ProductEnv, token: str, tool: str, arguments: dict[str, Any], first: Any
) -> Any:
    """The retry of `first` that answers its prompt with confirm."""
    answers = {
        key: {"action": "accept", "content": {"confirm": True}} for key in first["inputRequests"]
    }
    params = {
        "name": tool,
        "arguments": arguments,
        "inputResponses": answers,
        "requestState": first["requestState"],
    }
    return await env.rpc(token, "tools/call", params, {"elicitation": {}})


@pytest.mark.parametrize("tool", CONFIRMING)
async def test_a_token_revoked_between_the_rounds_of_a_prompt_destroys_nothing(
    env: ProductEnv, tool: str
) -> None:
    team = Team(env)
    await team.furnish()
    arguments = team.arguments(tool)
    first = await first_round(env, team.bob_token, tool, arguments)
    env.accounts.revoke(team.bob, "bob-laptop")
    seen = env.snapshot()
    retried = await confirmed_round(env, team.bob_token, tool, arguments, first)
    assert (retried.status_code, retried.text) == (
        401,
        "401 Unauthorized: the token was revoked; mint a new one with `spky mcp token` and "
        "re-add it.\n",
    )
    assert env.snapshot() == seen


async def test_an_admin_removed_between_the_rounds_of_a_prompt_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = Team(env)
    await team.furnish()
    arguments = team.arguments("destroy_project")
    first = await first_round(env, team.bob_token, "destroy_project", arguments)
    team.set_role(team.bob, None)
    seen = env.snapshot()
    retried = await confirmed_round(env, team.bob_token, "destroy_project", arguments, first)
    result = retried.json()["result"]
    assert (result["isError"], result["content"]) == (
        True,
        [
            {
                "type": "text",
                "text": f"No tenant '{team.id}' is reachable by this token; list_teams shows "
                "the tenants you belong to.",
            }
        ],
    )
    assert env.snapshot() == seen


async def test_an_admin_demoted_while_the_prompt_is_open_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = Team(env)
    await team.furnish()
    result, seen = await confirm_after(
        env, team, "destroy_project", lambda: team.set_role(team.bob, "member")
    )
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, DEMOTED)
    assert env.snapshot() == seen[0]


async def test_a_token_that_expires_while_the_prompt_is_open_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = Team(env)
    await team.furnish()
    record, bob_token = env.accounts.mint(team.bob, "short", ("mcp:full",), 1)
    team.bob_token = bob_token
    assert record.expires_at is not None
    expiry = record.expires_at

    def time_passes() -> None:
        env.accounts.clock = lambda: expiry

    result, seen = await confirm_after(env, team, "delete_env_var", time_passes)
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, EXPIRED)
    assert env.snapshot() == seen[0]


async def test_an_admin_still_in_the_team_goes_ahead_after_confirming(env: ProductEnv) -> None:
    team = Team(env)
    await team.furnish()
    result, _ = await confirm_after(env, team, "delete_env_var", lambda: None)
    assert result.is_error is False
    assert env.count("env_vars") == 0


# --- secrets are shown once, and never kept for a retry ------------------------------------


def idempotency_records(env: ProductEnv) -> list[str]:
    rows = env.store.all("SELECT CAST(result AS TEXT) AS r FROM idempotency ORDER BY tool")
    return [r["r"] for r in rows]


async def test_a_retry_of_init_vault_does_not_show_the_key_material_again(
    env: ProductEnv,
) -> None:
    token = env.token(env.user(), "mcp:full,secrets:reveal")
    await env.ok(token, "create_project", {"name": "api"})
    arguments = {"project": "api", "idempotency_key": "vault-1"}
    first = await env.ok(token, "init_vault", arguments)
    retried = await env.ok(token, "init_vault", arguments)
    material = env.store.one("SELECT key_material FROM vaults")["key_material"]
    assert first["key_material"] == material
    assert retried == {**first, "key_material": SHOWN_ONCE}
    assert SHOWN_ONCE == (
        "Shown once, in the result of the first call with this idempotency_key; a retry does "
        "not show it again."
    )
    assert [material in record for record in idempotency_records(env)] == [False]
    assert env.count("vaults") == 1


async def test_a_retry_of_set_env_var_keeps_no_value_and_shows_none(env: ProductEnv) -> None:
    token = env.token(env.user(), "mcp:full,secrets:reveal")
    await env.ok(token, "create_project", {"name": "api"})
    arguments = {
        "project": "api",
        "key": "DATABASE_URL",
        "value": "postgres://u:pw@db/x",
        "idempotency_key": "env-1",
    }
    first = await env.ok(token, "set_env_var", arguments)
    retried = await env.ok(token, "set_env_var", arguments)
    assert first["value"] == "postgres://u:pw@db/x"
    assert retried == {**first, "value": SHOWN_ONCE}
    assert ["postgres://u:pw@db/x" in record for record in idempotency_records(env)] == [False]


async def test_a_secret_quoted_in_a_replayed_result_is_not_kept_in_the_record(
    env: ProductEnv,
) -> None:
    """A result's ordinary text can hold a secret value (here a service named like one), and
    the record keeps it masked even for a token that may see it."""
    token = env.token(env.user(), "mcp:full,secrets:reveal")
    await env.ok(token, "create_project", {"name": "api", "services": ["sekrit-svc"]})
    await env.ok(token, "set_env_var", {"project": "api", "key": "K", "value": "sekrit-svc"})
    arguments = {"project": "api", "idempotency_key": "tear-down-1"}
    first = await env.ok(token, "tear_down_project", arguments)
    assert first["services"][0]["name"] == "sekrit-svc"
    assert ["sekrit-svc" in record for record in idempotency_records(env)] == [False]


async def test_records_of_an_older_version_lose_their_secrets_when_the_store_is_opened(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path)
    accounts = Accounts(store)
    user = accounts.ensure_user("ada@example.com")
    old_records = [
        ("init_vault", {"project": "api", "key_material": {"$secret": "KEY-MATERIAL"}}),
        ("set_env_var", {"key": "K", "value": {"$secret": "ENV-VALUE"}}),
        ("deploy", {"notes": [{"$secret": "ELSEWHERE"}]}),
        ("create_project", {"name": "api"}),
    ]
    with store.transaction() as db:
        for tool, result in old_records:
            db.execute(
                "INSERT INTO idempotency VALUES (?, ?, 'k', 'd', ?, 0)",
                (user.id, tool, orjson.dumps(result)),
            )
        db.execute("DELETE FROM schema_migrations WHERE version = 60")
    store.close()
    reopened = Store.open(tmp_path)
    rows = reopened.all("SELECT tool, result FROM idempotency ORDER BY tool")
    assert {r["tool"]: orjson.loads(r["result"]) for r in rows} == {
        "create_project": {"name": "api"},
        "init_vault": {"project": "api", "key_material": {"$shown_once": True}},
        "set_env_var": {"key": "K", "value": {"$shown_once": True}},
    }
    reopened.close()


# --- numbers the schema admits get an answer, never an internal error ------------------------

CURSOR_RULE = "Invalid cursor: pass back a next_cursor value exactly as received."


@pytest.mark.parametrize("cursor", ["b" + str(2**63), "b" + "9" * 19, "b" + "9" * 63])
async def test_a_log_cursor_beyond_any_line_id_is_refused_as_a_cursor(
    env: ProductEnv, cursor: str
) -> None:
    token = env.token(env.user())
    await env.ok(token, "create_project", {"name": "api"})
    response = await env.rpc(
        token, "tools/call", {"name": "get_logs", "arguments": {"project": "api", "cursor": cursor}}
    )
    assert response.status_code == 200
    assert response.json()["result"]["content"] == [{"type": "text", "text": CURSOR_RULE}]
    assert response.json()["result"]["isError"] is True


async def test_the_largest_line_id_is_a_cursor_that_reads_from_the_newest_line(
    env: ProductEnv,
) -> None:
    token = env.token(env.user())
    await env.ok(token, "create_project", {"name": "api"})
    arguments = {"project": "api", "cursor": "b" + str(2**63 - 1), "lines": 1}
    read = await env.ok(token, "get_logs", arguments)
    assert [line["message"] for line in read["items"]] == [
        "Project 'api' created in us-east with services web."
    ]


# Past what SQLite's 64-bit integers hold, and floats the schema's "integer" admits.
EDGE_NUMBERS = (2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e19, 1e300)
EDGE_CURSORS = ("b" + "9" * 19, "b" + "0" * 40 + "1", "o" + "9" * 63, "o" + str(2**64))
# What the tools need besides the argument under test, as the team's world has it.
FILLERS = {
    "service": "web",
    "key": "API_KEY",
    "value": "v",
    "hostname": "www.example.com",
    "name": "zz",
    "plan": "pro",
    "email": "new@example.com",
    "member": "cy@example.com",
    "repo_url": "https://github.com/acme/api",
    "replicas": 1,
}


def numeric_arguments(schema: dict[str, Any]) -> list[str]:
    """The properties that hold a number, or a cursor that the server parses into one."""
    return [
        name
        for name, prop in schema["properties"].items()
        if name == "cursor" or "integer" in prop.get("type", ()) or "number" in prop.get("type", ())
    ]


async def test_no_number_at_64_bit_edges_gets_an_internal_error(env: ProductEnv) -> None:
    team = Team(env)
    await team.furnish()
    internal: list[tuple[str, str, Any]] = []
    for tool, spec in SPECS.items():
        schema = spec.input_schema()
        for argument in numeric_arguments(schema):
            edges = EDGE_CURSORS if argument == "cursor" else EDGE_NUMBERS
            for edge in edges:
                arguments = {
                    **{k: FILLERS.get(k, "x") for k in spec.required},
                    "project": "api",
                    "tenant_id": team.id,
                    "backup_id": team.backup_id,
                    argument: edge,
                }
                known = {k: v for k, v in arguments.items() if k in schema["properties"]}
                params = {"name": tool, "arguments": known}
                reply = (await env.rpc(team.owner, "tools/call", params)).json()
                if "result" not in reply:
                    internal.append((tool, argument, edge))
    assert internal == []
