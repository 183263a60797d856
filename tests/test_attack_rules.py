"""The product's rules hold against an attacker: authority is checked again after a
confirmation prompt, key material is shown once even to retries, every input the schemas admit
gets a clear answer, unique names stay unique whatever the Unicode spelling, and two processes
on one store agree on what already exists."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import mcp_types as types
import orjson
import pytest
from mcp.client import ClientRequestContext

from sp00ky_mcp.engine.context import CallContext, Principal
from sp00ky_mcp.engine.errors import ToolError
from sp00ky_mcp.engine.versions import Era
from sp00ky_mcp.product import scopes
from sp00ky_mcp.product.accounts import AccountError, Accounts, User, arguments_digest
from sp00ky_mcp.product.cloud import env as env_rules
from sp00ky_mcp.product.cloud import links, projects, teams
from sp00ky_mcp.product.cloud.base import CONCURRENT_CLASH, TAKEN_OVER, Cloud, Conflict, Tenant
from sp00ky_mcp.product.store import Busy, Repos, Store
from sp00ky_mcp.product.store.postgres import port_error
from sp00ky_mcp.product.store.repos.idempotency import (
    CHANGING,
    UNNAMED_CLAIM,
    Claim,
    IdempotencyRepo,
)
from sp00ky_mcp.product.store.sqlite import SqliteStore
from sp00ky_mcp.product.tools.base import (
    CHANGED_UNRECORDED,
    CLAIM_SECONDS,
    SHOWN_ONCE,
    STILL_RUNNING,
    product_tool,
)

from .product_support import NOW, SPECS, ProductEnv, lands_before_transaction, results_not_kept

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

    def __init__(self, env: ProductEnv, ada: User, bob: User, cy: User, team_id: str) -> None:
        self.env = env
        self.ada, self.bob, self.cy = ada, bob, cy
        self.id = team_id
        self.owner = ""
        self.bob_token = ""
        self.backup_id = ""
        self.invitation_id = ""

    @classmethod
    async def create(cls, env: ProductEnv) -> Team:
        ada = await env.user("ada@example.com")
        bob = await env.user("bob@example.com")
        cy = await env.user("cy@example.com")
        team_id = await env.make_team({ada: "owner", bob: "admin", cy: "member"}, plan="team")
        team = cls(env, ada, bob, cy, team_id)
        team.owner = await env.token(ada)
        team.bob_token = await env.token(bob, name="bob-laptop")
        return team

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

    async def set_role(self, user: User, role: str | None) -> None:
        """The owner's dashboard changes a member's role, or removes them (None)."""
        async with self.env.store.transaction() as tx:
            await tx.support.set_role(self.id, user.id, role)


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
Change = Callable[[], Awaitable[None]]


def confirming_after(env: ProductEnv, change: Change, seen: list[Any]) -> Elicit:
    """An elicitation callback that makes `change` while the prompt is open, then confirms;
    `seen` gets the store as it is once the change is made."""

    async def answer(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        await change()
        seen.append(await env.snapshot())
        return types.ElicitResult(action="accept", content={"confirm": True})

    return answer


async def confirm_after(
    env: ProductEnv, team: Team, tool: str, change: Change
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
    team = await Team.create(env)
    await team.furnish()
    result, seen = await confirm_after(env, team, tool, lambda: team.set_role(team.bob, None))
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, REMOVED)
    assert await env.snapshot() == seen[0]


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
    team = await Team.create(env)
    await team.furnish()
    arguments = team.arguments(tool)
    first = await first_round(env, team.bob_token, tool, arguments)
    await env.accounts.revoke(team.bob, "bob-laptop")
    seen = await env.snapshot()
    retried = await confirmed_round(env, team.bob_token, tool, arguments, first)
    assert (retried.status_code, retried.text) == (
        401,
        "401 Unauthorized: the token was revoked; mint a new one with `spky mcp token` and "
        "re-add it.\n",
    )
    assert await env.snapshot() == seen


async def test_an_admin_removed_between_the_rounds_of_a_prompt_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = await Team.create(env)
    await team.furnish()
    arguments = team.arguments("destroy_project")
    first = await first_round(env, team.bob_token, "destroy_project", arguments)
    await team.set_role(team.bob, None)
    seen = await env.snapshot()
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
    assert await env.snapshot() == seen


async def test_an_admin_demoted_while_the_prompt_is_open_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = await Team.create(env)
    await team.furnish()
    result, seen = await confirm_after(
        env, team, "destroy_project", lambda: team.set_role(team.bob, "member")
    )
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, DEMOTED)
    assert await env.snapshot() == seen[0]


async def test_a_token_that_expires_while_the_prompt_is_open_destroys_nothing(
    env: ProductEnv,
) -> None:
    team = await Team.create(env)
    await team.furnish()
    record, bob_token = await env.accounts.mint(team.bob, "short", ("mcp:full",), 1)
    team.bob_token = bob_token
    assert record.expires_at is not None
    expiry = record.expires_at

    async def time_passes() -> None:
        env.accounts.clock = lambda: expiry

    result, seen = await confirm_after(env, team, "delete_env_var", time_passes)
    assert (result.is_error, result.content[0].model_dump()["text"]) == (True, EXPIRED)
    assert await env.snapshot() == seen[0]


async def test_an_admin_still_in_the_team_goes_ahead_after_confirming(env: ProductEnv) -> None:
    team = await Team.create(env)
    await team.furnish()

    async def nothing() -> None:
        return None

    result, _ = await confirm_after(env, team, "delete_env_var", nothing)
    assert result.is_error is False
    assert await env.count("env_vars") == 0


# --- secrets are shown once, and never kept for a retry ------------------------------------


async def idempotency_record(env: ProductEnv, tool: str, key: str) -> str:
    """The text of Ada's idempotency record of `tool` under `key`."""
    ada = await env.user()
    record = await env.store.reads.idempotency.get(ada.id, tool, key)
    assert record is not None
    return record.result.decode()


async def test_a_retry_of_init_vault_does_not_show_the_key_material_again(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user(), "mcp:full,secrets:reveal")
    project = await env.ok(token, "create_project", {"name": "api"})
    arguments = {"project": "api", "idempotency_key": "vault-1"}
    first = await env.ok(token, "init_vault", arguments)
    retried = await env.ok(token, "init_vault", arguments)
    material = await env.store.reads.vault.material(project["id"])
    assert material is not None
    assert first["key_material"] == material
    assert retried == {**first, "key_material": SHOWN_ONCE}
    assert SHOWN_ONCE == (
        "Shown once, in the result of the first call with this idempotency_key; a retry does "
        "not show it again."
    )
    assert material not in await idempotency_record(env, "init_vault", "vault-1")
    assert (await env.count("idempotency"), await env.count("vaults")) == (1, 1)


async def test_a_retry_of_set_env_var_keeps_no_value_and_shows_none(env: ProductEnv) -> None:
    token = await env.token(await env.user(), "mcp:full,secrets:reveal")
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
    assert "postgres://u:pw@db/x" not in await idempotency_record(env, "set_env_var", "env-1")
    assert await env.count("idempotency") == 1


async def test_a_secret_quoted_in_a_replayed_result_is_not_kept_in_the_record(
    env: ProductEnv,
) -> None:
    """A result's ordinary text can hold a secret value (here a service named like one), and
    the record keeps it masked even for a token that may see it."""
    token = await env.token(await env.user(), "mcp:full,secrets:reveal")
    await env.ok(token, "create_project", {"name": "api", "services": ["sekrit-svc"]})
    await env.ok(token, "set_env_var", {"project": "api", "key": "K", "value": "sekrit-svc"})
    arguments = {"project": "api", "idempotency_key": "tear-down-1"}
    first = await env.ok(token, "tear_down_project", arguments)
    assert first["services"][0]["name"] == "sekrit-svc"
    assert "sekrit-svc" not in await idempotency_record(env, "tear_down_project", "tear-down-1")
    assert await env.count("idempotency") == 1


# --- numbers the schema admits get an answer, never an internal error ------------------------

CURSOR_RULE = "Invalid cursor: pass back a next_cursor value exactly as received."


@pytest.mark.parametrize("cursor", ["b" + str(2**63), "b" + "9" * 19, "b" + "9" * 63])
async def test_a_log_cursor_beyond_any_line_id_is_refused_as_a_cursor(
    env: ProductEnv, cursor: str
) -> None:
    token = await env.token(await env.user())
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
    token = await env.token(await env.user())
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
    team = await Team.create(env)
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


# --- two processes on one store agree on what already exists -------------------------------


class Gate:
    """Lets `parties` waiters through together: each waits until all have arrived."""

    def __init__(self, parties: int) -> None:
        self.missing = parties
        self.opened = anyio.Event()

    async def wait(self) -> None:
        self.missing -= 1
        if self.missing == 0:
            self.opened.set()
        await self.opened.wait()


class GatedStore(SqliteStore):
    """A store of its own on the data directory's file, as another server process has,
    whose next transaction first waits at `gate`: two of them reach their writes together,
    each having done whatever it does before its transaction."""

    gate: Gate | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repos]:
        gate, self.gate = self.gate, None
        if gate is not None:
            await gate.wait()
        async with super().transaction() as tx:
            yield tx


async def gated(directory: Path) -> GatedStore:
    store = await GatedStore.open(directory)
    assert isinstance(store, GatedStore)
    return store


async def racing(directory: Path, action: Callable[[Cloud], Awaitable[Any]]) -> list[Any]:
    """What `action` gives in each of two processes (two clouds, each on a store of its own
    on the data directory `directory`) that run it at the same time: a result, or the
    message of the tool error it raised."""
    stores = [await gated(directory), await gated(directory)]
    gate = Gate(2)
    outcomes: list[Any] = [None, None]

    async def run(index: int) -> None:
        store = stores[index]
        store.gate = gate
        try:
            outcomes[index] = await action(Cloud(store, Accounts(store)))
        except ToolError as exc:
            outcomes[index] = exc.message

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                for index in (0, 1):
                    tasks.start_soon(run, index)
    finally:
        for store in stores:
            await store.close()
    return outcomes


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[Path, User, Tenant]]:
    """A data directory whose store has Ada and her personal tenant."""
    store = await SqliteStore.open(tmp_path)
    cloud = Cloud(store, Accounts(store))
    ada = await cloud.accounts.ensure_user("ada@example.com")
    tenant = await cloud.tenant(ada.id, None)
    await store.close()
    yield tmp_path, ada, tenant


async def test_two_processes_creating_one_project_name_create_it_once(
    shared: tuple[Path, User, Tenant],
) -> None:
    directory, _, tenant = shared
    outcomes = await racing(
        directory, lambda c: projects.create_project(c, tenant, "api", None, None)
    )
    taken = (
        "A project named 'api' already exists in tenant 'ada's workspace'; choose another "
        "name or use that project."
    )
    assert sorted(isinstance(o, str) for o in outcomes) == [False, True]
    assert taken in outcomes
    assert await count(directory, "projects") == 1


async def test_two_processes_creating_one_team_name_create_it_once(
    shared: tuple[Path, User, Tenant],
) -> None:
    directory, ada, _ = shared
    outcomes = await racing(directory, lambda c: teams.create_team(c, ada.id, "Acme"))
    assert sorted(isinstance(o, str) for o in outcomes) == [False, True]
    assert (
        "You already belong to a team named 'Acme'; pick another name, or pass that team's "
        "tenant_id (list_teams shows it)."
    ) in outcomes
    assert await count(directory, "tenants") == 2


async def test_two_processes_linking_one_project_the_same_way_link_it_once(
    shared: tuple[Path, User, Tenant],
) -> None:
    directory, _, tenant = shared
    store = await SqliteStore.open(directory)
    await projects.create_project(Cloud(store, Accounts(store)), tenant, "api", None, None)
    await store.close()

    async def link(cloud: Cloud) -> Any:
        project = await cloud.project(tenant, "api")
        return await links.set_up(cloud, project, "https://github.com/acme/api", "main", True)

    first, second = await racing(directory, link)
    assert first == second
    assert first["link"]["repo_url"] == "https://github.com/acme/api"
    assert await count(directory, "repo_links") == 1


async def test_two_processes_registering_one_email_make_one_user(tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path)).close()
    first, second = await racing(tmp_path, lambda c: c.accounts.ensure_user("bob@example.com"))
    assert first == second
    assert await count(tmp_path, "users") == 1


async def test_a_write_the_database_rolls_back_to_break_a_deadlock_is_a_conflict(
    store: Store,
) -> None:
    """PostgreSQL breaks a deadlock (with a program other than this server) by rolling one
    transaction back; the caller is told to check and retry, and nothing is kept."""
    cloud = Cloud(store, Accounts(store))
    ada = await cloud.accounts.ensure_user("ada@example.com")
    tenant = await cloud.tenant(ada.id, None)
    with pytest.raises(Conflict) as refused:
        async with cloud.transaction() as tx:
            await tx.support.add_project("prj_1", tenant.id, "api", "us-east", 0.0)
            raise Busy("deadlock detected")
    assert refused.value.message == CONCURRENT_CLASH
    assert await store.reads.support.count("projects") == 0


def test_a_deadlock_or_serialization_failure_is_a_conflict_worth_retrying() -> None:
    deadlock = asyncpg.DeadlockDetectedError("deadlock detected")
    serialization = asyncpg.SerializationError("could not serialize access")
    assert isinstance(port_error(deadlock), Busy)
    assert isinstance(port_error(serialization), Busy)


async def count(directory: Path, table: str) -> int:
    """How many rows `table` of the store in `directory` has."""
    store = await SqliteStore.open(directory)
    try:
        return await store.reads.support.count(table)
    finally:
        await store.close()


# --- unique names are unique whatever their Unicode spelling -------------------------------


def wide(text: str) -> str:
    """`text` with its ASCII letters in their full-width forms (U+FF21 and on), which NFKC
    maps back to the plain letters."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text)


def hidden(argument: str, code: str) -> str:
    return (
        f"Argument '{argument}' contains an invisible or control character ({code}); remove it "
        "and pass the name as it is meant to be read."
    )


@pytest.mark.parametrize(
    ("first", "second", "shown"),
    [
        ("Acme", wide("ACME"), "ACME"),
        ("Straße", "STRASSE", "STRASSE"),  # case folding beyond ASCII
        ("ﬁnance", "Finance", "Finance"),  # a ligature
        ("Émile", "émile", "émile"),
        ("Émile", "E\u0301mile", "Émile"),  # a combining accent
    ],
)
async def test_a_team_name_is_taken_in_any_spelling_of_it(
    env: ProductEnv, first: str, second: str, shown: str
) -> None:
    token = await env.token(await env.user())
    await env.ok(token, "create_team", {"name": first})
    assert await env.error_text(token, "create_team", {"name": second}) == (
        f"You already belong to a team named '{shown}'; pick another name, or pass that "
        "team's tenant_id (list_teams shows it)."
    )
    assert await env.count("tenants") == 2


async def test_a_team_name_is_stored_in_its_normal_form(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    created = await env.ok(token, "create_team", {"name": wide("ACME") + " ﬁnance"})
    assert created["name"] == "ACME finance"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Ac\u200bme", "U+200B ZERO WIDTH SPACE"),
        ("Acme\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066Acme", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("Ac\u200fme", "U+200F RIGHT-TO-LEFT MARK"),
        ("Ac\u061cme", "U+061C ARABIC LETTER MARK"),
        ("Ac\u00adme", "U+00AD SOFT HYPHEN"),
        ("Ac\u2028me", "U+2028 LINE SEPARATOR"),
        ("Ac\x85me", "U+0085 a control character"),
    ],
)
async def test_a_team_name_with_a_character_that_does_not_show_is_refused(
    env: ProductEnv, name: str, code: str
) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_team", {"name": name}) == hidden("name", code)
    assert await env.count("tenants") == 1


async def test_team_names_stored_by_an_older_version_are_compared_normalised(
    env: ProductEnv,
) -> None:
    """An older version stored names as given and compared them ASCII-case-insensitively, so
    a user may already have two teams whose names are now one name: both stay usable, and
    no third one is made."""
    ada = await env.user()
    token = await env.token(ada)
    older = [await env.make_team({ada: "owner"}, name) for name in (wide("A") + "cme", "ACME")]
    assert await env.error_text(token, "create_team", {"name": "acme"}) == (
        "You already belong to a team named 'acme'; pick another name, or pass that team's "
        "tenant_id (list_teams shows it)."
    )
    listed = await env.ok(token, "list_teams", {})
    assert [t["name"] for t in listed["items"]] == ["ada's workspace", "ACME", wide("A") + "cme"]
    for tenant_id in older:
        await env.ok(token, "create_project", {"name": "api", "tenant_id": tenant_id})
    assert await env.count("projects") == 2


async def test_an_email_is_invited_once_in_any_spelling_of_it(env: ProductEnv) -> None:
    ada = await env.user()
    token = await env.token(ada)
    team = await env.make_team({ada: "owner"}, plan="team")
    await env.ok(token, "invite_team_member", {"tenant_id": team, "email": "émile@example.com"})
    for spelling in ("ÉMILE@example.com", "émile@" + wide("example") + ".com"):
        text = await env.error_text(
            token, "invite_team_member", {"tenant_id": team, "email": spelling}
        )
        assert text == (
            f"{spelling.replace(wide('example'), 'example')} already has a pending invitation "
            "to 'Acme'; remove_team_invitation cancels it if you want to invite again."
        )
    assert await env.error_text(
        token, "invite_team_member", {"tenant_id": team, "email": "ADA@EXAMPLE.COM"}
    ) == ("ADA@EXAMPLE.COM is already a member of 'Acme'; list_team_members shows the members.")
    assert await env.count("invitations") == 1


async def test_an_email_with_a_character_that_does_not_show_is_refused(env: ProductEnv) -> None:
    ada = await env.user()
    team = await env.make_team({ada: "owner"}, plan="team")
    arguments = {"tenant_id": team, "email": "bob\u200d@example.com"}
    assert await env.error_text(await env.token(ada), "invite_team_member", arguments) == hidden(
        "email", "U+200D ZERO WIDTH JOINER"
    )
    assert await env.count("invitations") == 0


@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("create_project", {"name": "api\u200b"}, "name"),
        ("create_project", {"name": "api", "services": ["web", "w\u200beb"]}, "services"),
        ("add_domain", {"project": "web", "hostname": "www.exa\u200bmple.com"}, "hostname"),
    ],
)
async def test_other_names_with_a_character_that_does_not_show_are_refused(
    env: ProductEnv, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    ada = await env.user()
    await env.make_project(ada, "web")
    token = await env.token(ada)
    before = await env.snapshot()
    assert await env.error_text(token, tool, arguments) == hidden(
        argument, "U+200B ZERO WIDTH SPACE"
    )
    assert await env.snapshot() == before


async def test_a_hostname_is_attached_once_in_any_spelling_of_it(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada, "web")
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "web", "hostname": "straße.example.com"})
    assert await env.error_text(
        token, "add_domain", {"project": "web", "hostname": "STRASSE." + wide("example") + ".com"}
    ) == (
        "'strasse.example.com' is already attached to project 'web'; list_domains shows its "
        "DNS records."
    )
    assert await env.count("domains") == 1


async def test_a_token_name_is_stored_normalised_and_revoked_by_any_spelling(
    store: Store,
) -> None:
    accounts = Accounts(store)
    ada = await accounts.ensure_user("ada@example.com")
    record, _ = await accounts.mint(ada, " " + wide("CI") + " ", ("mcp:read",), None)
    assert record.name == "CI"
    assert (await accounts.revoke(ada, wide("CI"))).id == record.id
    with pytest.raises(AccountError) as refused:
        await accounts.mint(ada, "C\u200bI", ("mcp:read",), None)
    assert str(refused.value) == hidden("--name", "U+200B ZERO WIDTH SPACE")


# --- a token revoked in the middle of a long call ------------------------------------------


class RevokingPeer:
    """A client that sees the first progress notification of a call, and revokes the call's
    token right then (say, from another terminal)."""

    def __init__(self, revoke: Callable[[], Awaitable[Any]]) -> None:
        self.revoke = revoke
        self.progress: list[str] = []

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/progress":
            self.progress.append(params.get("message", ""))
            if len(self.progress) == 1:
                await self.revoke()

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        raise AssertionError(f"unexpected {method}")

    def interrupt(self) -> None:
        return None


async def deploy_revoked_midway(
    env: ProductEnv, arguments: dict[str, Any]
) -> tuple[str, RevokingPeer, ToolError]:
    """Ada's 'ci' token deploys her project 'api' and is revoked at the first progress
    notification; another token of hers (returned), the peer, and what the deploy raised."""
    ada = await env.user()
    token = await env.token(ada)
    await env.ok(token, "create_project", {"name": "api"})
    record, _ = await env.accounts.mint(ada, "ci", ("mcp:full",), None)
    peer = RevokingPeer(lambda: env.accounts.revoke(ada, "ci"))
    principal = Principal(record.id, ada.id, scopes.expand(record.scopes))
    ctx = CallContext(Era.MODERN, "2026-07-28", principal, peer, progress_token="p")
    deploy = product_tool(env.cloud, SPECS["deploy"])
    with pytest.raises(ToolError) as refused:
        await deploy.handler(arguments, ctx)
    return token, peer, refused.value


async def test_a_token_revoked_while_a_deployment_runs_takes_nothing_live(
    env: ProductEnv,
) -> None:
    token, peer, refused = await deploy_revoked_midway(env, {"project": "api"})
    assert refused.message == REVOKED
    assert len(peer.progress) == 1
    listed = await env.ok(token, "list_deployments", {"project": "api"})
    assert [item["status"] for item in listed["items"]] == ["failed"]


# --- roles ---------------------------------------------------------------------------------

# The tools that need the owner or admin role in a team, as their descriptions say.
ADMIN_ONLY = (
    "destroy_project",
    "tear_down_project",
    "init_vault",
    "enable_vault_ci_access",
    "disable_vault_ci_access",
    "restore_backup",
    "delete_backup",
    "configure_backups",
    "reset_backup_config",
    "remove_domain",
    "unlink_repo",
    "invite_team_member",
    "remove_team_member",
    "remove_team_invitation",
    "create_checkout_session",
    "change_plan",
    "create_billing_portal_session",
)


@pytest.mark.parametrize("tool", ADMIN_ONLY)
async def test_a_team_member_is_refused_every_admin_action(env: ProductEnv, tool: str) -> None:
    team = await Team.create(env)
    await team.furnish()
    arguments = {
        **{k: FILLERS.get(k, "x") for k in SPECS[tool].required},
        "project": "api",
        "tenant_id": team.id,
        "backup_id": team.backup_id,
        "plan": "pro",
        **(team.arguments(tool) if tool in CONFIRMING else {}),
    }
    known = {k: v for k, v in arguments.items() if k in SPECS[tool].input_schema()["properties"]}
    member = await env.token(team.cy)
    before = await env.snapshot()
    text = await env.error_text(member, tool, known)
    assert re.fullmatch(
        r"Only a team admin or above may [A-Za-z ']+; your role in 'Acme' is member\.", text
    ), text
    assert await env.snapshot() == before


async def test_an_admin_may_not_cancel_an_owners_invitation(env: ProductEnv) -> None:
    team = await Team.create(env)
    invited = await env.ok(
        team.owner,
        "invite_team_member",
        {"tenant_id": team.id, "email": "boss@example.com", "role": "owner"},
    )
    arguments = {"tenant_id": team.id, "invitation_id": invited["invitation_id"]}
    assert await env.error_text(team.bob_token, "remove_team_invitation", arguments) == (
        "Only a team owner or above may cancel an owner's invitation; your role in 'Acme' is admin."
    )
    assert await env.count("invitations") == 1
    await env.ok(team.owner, "remove_team_invitation", arguments)
    assert await env.count("invitations") == 0


# --- an idempotency key runs its call once, even when retried while it runs ----------------


@pytest.mark.parametrize("tool", CONFIRMING)
async def test_a_retry_while_the_first_call_waits_at_its_prompt_changes_nothing(
    env: ProductEnv, tool: str
) -> None:
    team = await Team.create(env)
    await team.furnish()
    arguments = {**team.arguments(tool), "idempotency_key": "key-1"}
    retried: list[Any] = []

    async def retry_then_confirm(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        retried.append(await env.call(team.owner, tool, arguments))
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with env.sdk(
        team.owner, mode="legacy", elicitation_callback=retry_then_confirm
    ) as client:
        first = await client.call_tool(tool, arguments)
    assert retried == [
        {
            "content": [{"type": "text", "text": STILL_RUNNING}],
            "isError": True,
            "resultType": "complete",
            "_meta": retried[0]["_meta"],
        }
    ]
    assert STILL_RUNNING == (
        "A call with this idempotency_key is still running, so this one changed nothing; "
        "retry with the same key once it has finished to get its result."
    )
    assert first.is_error is False
    done = await env.snapshot()
    again = await env.ok(team.owner, tool, arguments)
    assert again == first.structured_content
    assert await env.snapshot() == done


async def test_a_retry_while_the_first_call_runs_after_its_first_change_is_told_it_runs(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy commits each stage: between them it has changed something and still runs."""
    token, _ = await env.token_and_project()
    arguments = {"project": "api", "idempotency_key": "deploy-1"}
    retried: list[str] = []

    async def retry() -> None:
        retried.append(await env.error_text(token, "deploy", arguments))

    # After the deployment is queued (marking the key), before its first stage.
    lands_before_transaction(monkeypatch, env.cloud, retry, nth=2)
    first = await env.ok(token, "deploy", arguments)
    monkeypatch.undo()
    assert retried == [STILL_RUNNING]
    assert await env.ok(token, "deploy", arguments) == first
    assert await env.count("deployments") == 1


async def test_a_claim_left_changing_by_a_stopped_process_refuses_retries_for_good(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    token = await env.token(ada)
    arguments = {"name": "api", "idempotency_key": "create-1"}
    async with env.store.transaction() as tx:  # as a process stopped after a change left it
        await tx.db.run(
            "INSERT INTO idempotency (user_id, tool, key, arguments_digest, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            *(
                ada.id,
                "create_project",
                "create-1",
                digest_of(arguments),
                CHANGING + b"0123456789abcdef",
                NOW,
            ),
        )
    refused = await env.error_text(token, "create_project", arguments)
    env.freeze(NOW + CLAIM_SECONDS + 1)
    refused_later = await env.error_text(token, "create_project", arguments)
    assert (refused, refused_later) == (STILL_RUNNING, CHANGED_UNRECORDED)
    assert await env.count("projects") == 0


async def test_a_call_cut_off_while_keeping_its_result_leaves_its_key_changed(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await env.token(await env.user())
    arguments = {"name": "api", "idempotency_key": "create-1"}
    keeping, ended = anyio.Event(), anyio.Event()

    async def slow(*_: Any) -> bool:
        keeping.set()
        try:
            await anyio.sleep_forever()
        finally:
            ended.set()
        raise AssertionError("unreachable")

    monkeypatch.setattr(IdempotencyRepo, "finish", slow)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(env.call, token, "create_project", arguments)
        with anyio.fail_after(10):
            await keeping.wait()
        tasks.cancel_scope.cancel()  # the client leaves
    with anyio.fail_after(10):
        await ended.wait()  # the server stops the call
    monkeypatch.undo()
    retried = await env.error_text(token, "create_project", arguments)
    assert (retried, await env.count("projects")) == (CHANGED_UNRECORDED, 1)


async def test_a_call_whose_result_failed_to_be_kept_leaves_its_key_changed(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await env.token(await env.user())
    arguments = {"name": "api", "idempotency_key": "create-1"}

    async def broken(*_: Any) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(IdempotencyRepo, "finish", broken)
    params = {"name": "create_project", "arguments": arguments}
    failed = (await env.rpc(token, "tools/call", params)).json()["error"]
    monkeypatch.undo()
    retried = await env.error_text(token, "create_project", arguments)
    assert failed == {
        "code": -32603,
        "message": "Internal error: the server could not complete the request.",
    }
    assert (retried, await env.count("projects")) == (CHANGED_UNRECORDED, 1)


async def test_a_key_whose_call_failed_runs_the_call_again(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    arguments = {"project": "api", "key": "K", "value": "v", "idempotency_key": "env-1"}
    assert await env.error_text(token, "set_env_var", arguments) == (
        "No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there."
    )
    assert await env.count("idempotency") == 0
    await env.ok(token, "create_project", {"name": "api"})
    created = await env.ok(token, "set_env_var", arguments)
    assert created["created"] is True
    assert await env.ok(token, "set_env_var", arguments) == {**created, "value": SHOWN_ONCE}


async def test_a_call_that_made_its_change_but_kept_no_result_is_never_run_again_by_its_key(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = await env.token_and_project()
    results_not_kept(monkeypatch)
    arguments = {"project": "api", "idempotency_key": "deploy-1"}
    done = await env.ok(token, "deploy", arguments)
    monkeypatch.undo()
    retried = await env.error_text(token, "deploy", arguments)
    env.freeze(NOW + CLAIM_SECONDS + 1)  # long after any claim of a stopped process is taken
    retried_later = await env.error_text(token, "deploy", arguments)
    assert done["status"] == "live"
    assert retried == retried_later == CHANGED_UNRECORDED
    assert CHANGED_UNRECORDED == (
        "A call with this idempotency_key already made its change but its result was not "
        "kept, so this one changed nothing; check the current state before trying again with "
        "a new key."
    )
    assert await env.count("deployments") == 1


async def test_a_call_that_failed_after_its_change_leaves_its_key_refusing_retries(
    env: ProductEnv,
) -> None:
    arguments = {"project": "api", "idempotency_key": "deploy-1"}
    token, _, refused = await deploy_revoked_midway(env, arguments)
    retried = await env.error_text(token, "deploy", arguments)
    assert (refused.message, retried) == (REVOKED, CHANGED_UNRECORDED)
    assert await env.count("deployments") == 1


@pytest.mark.parametrize(
    "held", [b"running:0123456789abcdef", UNNAMED_CLAIM], ids=["this version", "older version"]
)
async def test_a_claim_left_by_a_call_that_changed_nothing_is_taken_over_once_stale(
    env: ProductEnv, held: bytes
) -> None:
    ada = await env.user()
    token = await env.token(ada)
    arguments = {"name": "api", "idempotency_key": "create-1"}
    async with env.store.transaction() as tx:  # as a process that stopped mid-call left it
        await tx.db.run(
            "INSERT INTO idempotency (user_id, tool, key, arguments_digest, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            *(ada.id, "create_project", "create-1", digest_of(arguments), held, NOW),
        )
    refused = await env.error_text(token, "create_project", arguments)
    env.freeze(NOW + CLAIM_SECONDS + 1)
    created = await env.ok(token, "create_project", arguments)
    assert refused == STILL_RUNNING
    assert created["name"] == "api"
    assert await env.ok(token, "create_project", arguments) == created
    assert await env.count("projects") == 1


async def test_a_call_whose_claim_a_retry_took_over_at_its_prompt_changes_nothing(
    env: ProductEnv,
) -> None:
    team = await Team.create(env)
    await team.furnish()
    arguments = {**team.arguments("delete_env_var"), "idempotency_key": "delete-1"}
    retry = Claim(team.ada.id, "delete_env_var", "delete-1")

    async def taken_over_then_confirm(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        async with env.store.transaction() as tx:  # a retry, past the claim's time
            held = await tx.idempotency.get(retry.user_id, retry.tool, retry.key)
            assert held is not None
            later = NOW + CLAIM_SECONDS + 1
            assert await tx.idempotency.take_over(
                retry, held.arguments_digest, later, held.result, later - CLAIM_SECONDS
            )
        return types.ElicitResult(action="accept", content={"confirm": True})

    before = await env.count("env_vars")
    async with env.sdk(
        team.owner, mode="legacy", elicitation_callback=taken_over_then_confirm
    ) as client:
        first = await client.call_tool("delete_env_var", arguments)
    assert first.is_error is True
    assert first.content == [types.TextContent(type="text", text=TAKEN_OVER)]
    assert TAKEN_OVER == (
        "A retry with this call's idempotency_key took its place while it waited, so this "
        "call changed nothing; the retry's result is the one that counts."
    )
    assert await env.count("env_vars") == before
    async with env.store.transaction() as tx:
        kept = await tx.idempotency.get(retry.user_id, retry.tool, retry.key)
    assert kept is not None and kept.result == retry.running


async def test_a_failed_call_whose_transaction_changed_no_row_leaves_its_key_free(
    env: ProductEnv,
) -> None:
    """Another call destroys the project while this one waits at its prompt: its delete
    then finds nothing to delete, and its key is left free, not marked as changed."""
    ada = await env.user()
    token = await env.token(ada)
    project = await env.ok(token, "create_project", {"name": "api"})
    arguments = {"project": "api", "idempotency_key": "destroy-1"}

    async def destroyed_meanwhile(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        async with env.store.transaction() as tx:
            await tx.projects.delete(project["id"], await env.personal(ada))
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with env.sdk(token, mode="legacy", elicitation_callback=destroyed_meanwhile) as client:
        failed = await client.call_tool("destroy_project", arguments)
    async with env.store.transaction() as tx:
        left = await tx.idempotency.get(ada.id, "destroy_project", "destroy-1")
    assert failed.is_error is True
    assert left is None


def digest_of(arguments: dict[str, Any]) -> str:
    return arguments_digest({k: v for k, v in arguments.items() if k != "idempotency_key"})


# --- a read-only token finds no side door to a write ----------------------------------------


async def test_a_read_only_token_cannot_replay_or_answer_its_way_into_a_write(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    full, read = await env.token(ada), await env.token(ada, "mcp:read")
    arguments = {"name": "api", "idempotency_key": "create-1"}
    await env.ok(full, "create_project", arguments)
    before = await env.snapshot()
    replay = await env.error_text(read, "create_project", arguments)
    answered = await env.rpc(
        read,
        "tools/call",
        {
            "name": "destroy_project",
            "arguments": {"project": "api"},
            "inputResponses": {"input-1": {"action": "accept", "content": {"confirm": True}}},
        },
        {"elicitation": {}},
    )
    assert replay == (
        "This tool needs the 'projects:write' scope, which this token lacks. Mint a token that "
        "has it with `spky mcp token --scopes projects:write` and reconnect."
    )
    assert answered.json()["result"]["content"] == [{"type": "text", "text": replay}]
    assert await env.snapshot() == before


async def test_a_user_stored_by_an_older_version_is_found_by_any_spelling_of_the_email(
    store: Store,
) -> None:
    accounts = Accounts(store)
    old = User("usr_old", wide("ada") + "@x.io", "old")
    async with store.transaction() as tx:
        # As an older version stored it: the email as given, not in its NFKC form.
        await tx.accounts.add_user(old, "ten_old", "old's workspace", 0.0)
    for spelling in (wide("ada") + "@x.io", " ada@x.io ", "ADA@x.io", wide("ADA") + "@x.io"):
        assert (await accounts.ensure_user(spelling)).id == "usr_old"
    bob = await accounts.ensure_user(wide("bob") + "@x.io")
    assert bob.email == "bob@x.io"
    assert await store.reads.accounts.non_ascii_users() == [old]
    assert await store.reads.support.count("users") == 2


async def test_a_token_revoked_while_a_session_prompt_is_open_cannot_answer_it(
    env: ProductEnv,
) -> None:
    """Handshake era: the answer to the prompt comes in a request of its own, which the
    revoked token cannot make; the session ends and the call with it, changing nothing."""
    team = await Team.create(env)
    await team.furnish()
    session = await open_session(env, team.bob_token, "2025-11-25")
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "destroy_project", "arguments": team.arguments("destroy_project")},
    }
    messages: list[Any] = []
    answers: list[httpx.Response] = []
    with anyio.fail_after(10):
        async with env.http.stream("POST", env.server.url, json=call, headers=session) as stream:
            async for line in stream.aiter_lines():
                if not (line.startswith("data:") and line[5:].strip()):
                    continue
                message = orjson.loads(line[5:])
                messages.append(message)
                if message.get("method") == "elicitation/create":
                    await env.accounts.revoke(team.bob, "bob-laptop")
                    seen = await env.snapshot()
                    answer = {"action": "accept", "content": {"confirm": True}}
                    reply = {"jsonrpc": "2.0", "id": message["id"], "result": answer}
                    answers.append(await env.http.post(env.server.url, json=reply, headers=session))
    assert [m.get("method") for m in messages] == ["elicitation/create"]
    assert [(a.status_code, a.text) for a in answers] == [
        (
            401,
            "401 Unauthorized: the token was revoked; mint a new one with `spky mcp token` and "
            "re-add it.\n",
        )
    ]
    assert await env.snapshot() == seen


@pytest.mark.parametrize(("tool", "argument"), [("deploy", "ref"), ("set_up_repo_link", "branch")])
async def test_a_git_ref_with_a_bidi_override_is_refused(
    env: ProductEnv, tool: str, argument: str
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    arguments = {
        "project": "api",
        "repo_url": "https://github.com/acme/api",
        argument: "main\u202eniam",
    }
    known = {k: v for k, v in arguments.items() if k in SPECS[tool].input_schema()["properties"]}
    before = await env.snapshot()
    assert await env.error_text(token, tool, known) == hidden(
        argument, "U+202E RIGHT-TO-LEFT OVERRIDE"
    )
    assert await env.snapshot() == before


async def open_session(env: ProductEnv, token: str, version: str) -> dict[str, str]:
    """A handshake-era session of `token`, with elicitation declared: its request headers."""
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "attacker", "version": "1"},
        },
    }
    opened = await env.http.post(env.server.url, json=initialize, headers=headers)
    session = {
        **headers,
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": version,
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await env.http.post(env.server.url, json=initialized, headers=session)
    return session


async def test_a_batch_is_no_side_door_to_writes_or_past_a_prompt(env: ProductEnv) -> None:
    ada = await env.user()
    await env.ok(await env.token(ada), "create_project", {"name": "api"})

    def call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        params = {"name": tool, "arguments": arguments}
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}

    writes = [
        call(1, "set_env_var", {"project": "api", "key": "K", "value": "v"}),
        call(2, "destroy_project", {"project": "api"}),
    ]
    read_token, full_token = await env.token(ada, "mcp:read"), await env.token(ada)
    before = await env.snapshot()
    read = await open_session(env, read_token, "2025-03-26")
    refused = (await env.http.post(env.server.url, json=writes, headers=read)).json()
    full = await open_session(env, full_token, "2025-03-26")
    unasked = (await env.http.post(env.server.url, json=writes[1:], headers=full)).json()
    assert [r["result"]["content"][0]["text"] for r in refused] == [
        "This tool needs the 'env:write' scope, which this token lacks. Mint a token that has "
        "it with `spky mcp token --scopes env:write` and reconnect.",
        "This tool needs the 'projects:write' scope, which this token lacks. Mint a token that "
        "has it with `spky mcp token --scopes projects:write` and reconnect.",
    ]
    assert [r["result"]["isError"] for r in [*refused, *unasked]] == [True, True, True]
    assert unasked[0]["result"]["content"][0]["text"].startswith(
        "A batched request cannot carry a 'elicitation/create' request to the client"
    )
    assert await env.snapshot() == before


async def test_a_write_under_a_project_another_process_deleted_is_a_clear_conflict(
    shared: tuple[Path, User, Tenant],
) -> None:
    directory, _, tenant = shared
    mine, theirs = await SqliteStore.open(directory), await SqliteStore.open(directory)
    try:
        cloud, other = Cloud(mine, Accounts(mine)), Cloud(theirs, Accounts(theirs))
        await projects.create_project(cloud, tenant, "api", None, None)
        project = await cloud.project(tenant, "api")
        await projects.destroy_project(other, tenant, await other.project(tenant, "api"))
        with pytest.raises(ToolError) as refused:
            await env_rules.set_variable(cloud, project, "K", "value")
        assert refused.value.message == (
            "Another change made at the same time conflicts with this one, so nothing was "
            "changed; check the current state and try again."
        )
        assert await mine.reads.support.count("env_vars") == 0
    finally:
        await mine.close()
        await theirs.close()
