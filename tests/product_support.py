"""Test support for the product profile: a server on a temporary store, users, tokens, and
two ways to call it (raw stateless JSON-RPC over HTTP, and the official Python SDK client);
results checked against the catalogue's output schemas, projects and teams seeded straight
into the store, and the callbacks the SDK client is given (elicitation, progress)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema
import mcp_types as types
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.product.accounts import Accounts, User
from sp00ky_mcp.product.app import AuditTrail, build_product
from sp00ky_mcp.product.cloud import teams
from sp00ky_mcp.product.cloud.base import Cloud
from sp00ky_mcp.product.store import Store
from sp00ky_mcp.product.tools import all_specs

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: where the tests stop the cloud's clock
NOW_ISO = "2026-01-01T00:00:00.000Z"  # NOW as the tools show it
REDACTED = "***REDACTED"
SPECS = {spec.name: spec for spec in all_specs()}
# Tables whose changes are the point of a call, not a leak: the audit log records every
# tools/call, whoever makes it (snapshot leaves it out, and tokens.last_used_at too).
AUDITED = {"audit_log"}


@functools.cache
def _output_validator(tool: str) -> jsonschema.Draft202012Validator:
    schema = SPECS[tool].output
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_output(tool: str, result: Any) -> None:
    """Raise unless `result` matches the tool's outputSchema (itself checked, once, to be a
    valid JSON Schema 2020-12 document)."""
    _output_validator(tool).validate(result)


def assert_declared(expected: Mapping[str, tuple[str, bool, bool, bool]]) -> None:
    """Each tool's (scope, read_only, destructive, idempotent) is as expected; none is open
    world, and each output schema is a valid JSON Schema."""
    for name, (scope, read_only, destructive, idempotent) in expected.items():
        spec = SPECS[name]
        assert (spec.scope, spec.read_only, spec.destructive, spec.idempotent) == (
            scope,
            read_only,
            destructive,
            idempotent,
        ), name
        assert spec.open_world is False
        jsonschema.Draft202012Validator.check_schema(spec.output)


async def decline(
    ctx: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    """An elicitation callback that declines whatever it is asked."""
    return types.ElicitResult(action="decline")


async def accept(
    ctx: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    """An elicitation callback that confirms whatever it is asked."""
    return types.ElicitResult(action="accept", content={"confirm": True})


class Progress(list[tuple[float, float | None, str | None]]):
    """A progress callback for the SDK client: the notifications it got, in order, as
    (progress, total, message)."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.append((progress, total, message))


@dataclass
class ProductEnv:
    server: McpServer
    store: Store
    accounts: Accounts
    cloud: Cloud
    http: httpx.AsyncClient

    def user(self, email: str = "ada@example.com") -> User:
        return self.accounts.ensure_user(email)

    def token(self, user: User, scopes: str = "mcp:full", name: str = "test") -> str:
        _, secret = self.accounts.mint(user, name, tuple(scopes.split(",")), None)
        return secret

    def personal(self, user: User) -> str:
        """The id of the user's personal tenant."""
        return self.accounts.personal_tenant(user.id)

    def freeze(self, at: float = NOW) -> None:
        """Stop the cloud's clock at `at`."""
        self.cloud.clock = lambda: at

    def make_project(
        self,
        user: User,
        name: str = "api",
        tenant_id: str | None = None,
        region: str = "us-east",
    ) -> str:
        """A project with one service, web, straight in the store (the projects area's tools
        are tested elsewhere); in the user's personal tenant unless `tenant_id` is given."""
        tenant_id = tenant_id or self.personal(user)
        project_id = f"prj_{name}_{tenant_id[-6:]}"
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO projects (id, tenant_id, name, region, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (project_id, tenant_id, name, region, NOW),
            )
            db.execute(
                "INSERT INTO services (id, project_id, name) VALUES (?, ?, 'web')",
                (f"svc_{project_id}", project_id),
            )
        return project_id

    def make_team(self, roles: Mapping[User, str], name: str = "Acme", plan: str = "hobby") -> str:
        """A team tenant with these members and roles, straight in the store."""
        tenant_id = f"ten_team_{name.lower()}"
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO tenants (id, name, kind, plan, created_at) "
                "VALUES (?, ?, 'team', ?, ?)",
                (tenant_id, name, plan, NOW),
            )
            for user, role in roles.items():
                db.execute(
                    "INSERT INTO memberships VALUES (?, ?, ?, ?)", (tenant_id, user.id, role, NOW)
                )
        return tenant_id

    def audit_log(self) -> list[Any]:
        """The audit records, oldest first, once those still pending are committed."""
        observer = self.server.engine.observer
        assert isinstance(observer, AuditTrail)
        observer.flush()
        return self.store.all("SELECT * FROM audit_log ORDER BY id")

    def count(self, table: str) -> int:
        """How many rows `table` has."""
        row = self.store.one(f"SELECT count(*) AS n FROM {table}")
        assert row is not None
        return int(row["n"])

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, sorted, for comparing before and after: all but the
        audit log and tokens.last_used_at, which change with every call by design."""
        tables = [
            r["name"]
            for r in self.store.all(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        shot: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            if table in AUDITED:
                continue
            rows: list[Any] = self.store.all(f"SELECT * FROM {table}")  # names from sqlite_master
            if table == "tokens":
                rows = [
                    tuple(v for k, v in zip(r.keys(), r, strict=True) if k != "last_used_at")
                    for r in rows
                ]
            if table == "sqlite_sequence":
                rows = [r for r in rows if r["name"] not in AUDITED]
            shot[table] = sorted(tuple(r) for r in rows)
        return shot

    def log_messages(self, project_id: str) -> list[str]:
        """The project's log lines' messages, oldest first."""
        rows = self.store.all(
            "SELECT message FROM log_lines WHERE project_id = ? ORDER BY id", (project_id,)
        )
        return [r["message"] for r in rows]

    async def rpc(
        self,
        token: str,
        method: str,
        params: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One stateless (2026-07-28) request, headers as a conformant client sends them."""
        meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {**(params or {}), "_meta": meta},
        }
        headers = {
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": method,
        }
        name = (params or {}).get("name") or (params or {}).get("uri")
        if name is not None:
            headers["mcp-name"] = str(name)
        return await self.http.post(self.server.url, json=body, headers=headers)

    async def call(self, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """tools/call; returns the JSON-RPC result object (or raises on a JSON-RPC error)."""
        response = await self.rpc(token, "tools/call", {"name": tool, "arguments": arguments})
        payload = response.json()
        if "error" in payload:
            raise AssertionError(f"JSON-RPC error from {tool}: {payload['error']}")
        result: dict[str, Any] = payload["result"]
        return result

    async def structured(self, token: str, tool: str, arguments: dict[str, Any]) -> Any:
        """The structured content of a successful call."""
        result = await self.call(token, tool, arguments)
        assert result["isError"] is False, result["content"]
        return result["structuredContent"]

    async def ok(self, token: str, tool: str, arguments: dict[str, Any]) -> Any:
        """The structured content of a successful call, checked against the tool's
        outputSchema."""
        result = await self.structured(token, tool, arguments)
        check_output(tool, result)
        return result

    async def token_and_project(
        self, services: list[str] | None = None, scopes: str = "mcp:full"
    ) -> tuple[str, dict[str, Any]]:
        """A token of Ada's with `scopes`, and her project 'api' (services `services`, web
        alone by default) created with it through create_project."""
        token = self.token(self.user(), scopes)
        project = await self.ok(
            token, "create_project", {"name": "api", "services": services or ["web"]}
        )
        return token, project

    async def join(self, owner_token: str, tenant_id: str, user: User, role: str) -> None:
        """The owner invites `user` with `role` and the user accepts (dashboard/CLI side)."""
        invited = await self.ok(
            owner_token,
            "invite_team_member",
            {"tenant_id": tenant_id, "email": user.email, "role": role},
        )
        teams.accept_invitation(self.cloud, user.id, invited["invitation_id"])

    async def error_text(self, token: str, tool: str, arguments: dict[str, Any]) -> str:
        """The message of a call that must fail as an isError result."""
        result = await self.call(token, tool, arguments)
        assert result["isError"] is True, result
        text: str = result["content"][0]["text"]
        return text

    @asynccontextmanager
    async def sdk(self, token: str, mode: str = "legacy", **options: Any) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers) as http:
            transport = streamable_http_client(self.server.url, http_client=http)
            async with Client(transport, mode=mode, cache=None, **options) as client:  # type: ignore[arg-type]
                yield client


def product_store(directory: Path) -> Store:
    return Store.open(directory)


__all__ = [
    "AUDITED",
    "NOW",
    "NOW_ISO",
    "REDACTED",
    "SPECS",
    "ProductEnv",
    "Progress",
    "accept",
    "assert_declared",
    "build_product",
    "check_output",
    "decline",
    "product_store",
]
