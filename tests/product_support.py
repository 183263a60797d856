"""Test support for the product profile: a server on a temporary store, users, tokens, and
two ways to call it (raw stateless JSON-RPC over HTTP, and the official Python SDK client);
results checked against the catalogue's output schemas, projects and teams seeded straight
into the store, and the callbacks the SDK client is given (elicitation, progress)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jsonschema
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.product.accounts import Accounts, AuditEntry, User
from sp00ky_mcp.product.app import AuditTrail, build_product
from sp00ky_mcp.product.cloud import teams
from sp00ky_mcp.product.cloud.base import Cloud
from sp00ky_mcp.product.shared import SharedState
from sp00ky_mcp.product.store import Store, StoreUnavailable
from sp00ky_mcp.product.store.postgres import UNREACHABLE
from sp00ky_mcp.product.store.repos.idempotency import IdempotencyRepo
from sp00ky_mcp.product.store.sqlite import SqliteStore
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

    async def user(self, email: str = "ada@example.com") -> User:
        return await self.accounts.ensure_user(email)

    async def token(self, user: User, scopes: str = "mcp:full", name: str = "test") -> str:
        _, secret = await self.accounts.mint(user, name, tuple(scopes.split(",")), None)
        return secret

    async def personal(self, user: User) -> str:
        """The id of the user's personal tenant."""
        return await self.accounts.personal_tenant(user.id)

    def freeze(self, at: float = NOW) -> None:
        """Stop the cloud's clock at `at`."""
        self.cloud.clock = lambda: at

    async def make_project(
        self,
        user: User,
        name: str = "api",
        tenant_id: str | None = None,
        region: str = "us-east",
    ) -> str:
        """A project with one service, web, straight in the store (the projects area's tools
        are tested elsewhere); in the user's personal tenant unless `tenant_id` is given."""
        tenant_id = tenant_id or await self.personal(user)
        project_id = f"prj_{name}_{tenant_id[-6:]}"
        async with self.store.transaction() as tx:
            await tx.support.add_project(project_id, tenant_id, name, region, NOW)
        return project_id

    async def make_team(
        self, roles: Mapping[User, str], name: str = "Acme", plan: str = "hobby"
    ) -> str:
        """A team tenant with these members and roles, straight in the store."""
        tenant_id = f"ten_team_{name.lower()}"
        async with self.store.transaction() as tx:
            await tx.support.add_team(
                tenant_id, name, plan, [(user.id, role) for user, role in roles.items()], NOW
            )
        return tenant_id

    async def audit_log(self) -> list[tuple[int, AuditEntry]]:
        """The audit records, oldest first, once those still pending are committed."""
        observer = self.server.engine.observer
        assert isinstance(observer, AuditTrail)
        await observer.drain()
        return await self.store.reads.accounts.audit_records()

    async def count(self, table: str) -> int:
        """How many rows `table` has."""
        return await self.store.reads.support.count(table)

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, sorted, for comparing before and after: all but the
        audit log and tokens.last_used_at, which change with every call by design."""
        return await self.store.reads.support.snapshot(AUDITED, {"tokens": "last_used_at"})

    async def log_messages(self, project_id: str) -> list[str]:
        """The project's log lines' messages, oldest first."""
        return await self.store.reads.support.log_messages(project_id)

    async def rpc(
        self,
        token: str,
        method: str,
        params: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None,
        url: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One stateless (2026-07-28) request, headers as a conformant client sends them (and
        `extra`), to the endpoint or to `url`."""
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
        headers |= extra or {}
        return await self.http.post(url or self.server.url, json=body, headers=headers)

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
        token = await self.token(await self.user(), scopes)
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
        await teams.accept_invitation(self.cloud, user.id, invited["invitation_id"])

    async def error_text(self, token: str, tool: str, arguments: dict[str, Any]) -> str:
        """The message of a call that must fail as an isError result."""
        result = await self.call(token, tool, arguments)
        assert result["isError"] is True, result
        text: str = result["content"][0]["text"]
        return text

    def sdk(
        self, token: str, mode: str = "legacy", **options: Any
    ) -> AbstractAsyncContextManager[Client]:
        return sdk_client(self.server.url, token, mode, **options)


@asynccontextmanager
async def sdk_client(
    url: str, token: str, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """The official Python SDK's client on `url` with `token`, as a user's agent connects."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, **options) as client:
            yield client


async def product_store(directory: Path) -> Store:
    return await SqliteStore.open(directory)


# Rate limits no test of the tools runs into.
UNLIMITED = Limits(rate_per_minute=1_000_000, rate_burst=1_000_000)


@asynccontextmanager
async def product_server(
    store: Store,
    data_dir: str | Path,
    limits: Limits = UNLIMITED,
    shared: SharedState | None = None,
    **settings: Any,
) -> AsyncIterator[ProductEnv]:
    """The product server on `store` (and `shared`, as one replica of several), listening on
    a free loopback port, with an HTTP client; stopped (and its audit records written) when
    the block ends.  The store and the shared state stay open."""
    config = ServerConfig(port=0, data_dir=str(data_dir), limits=limits, **settings)
    parts = build_product(config, store, shared)
    async with anyio.create_task_group() as tasks, httpx.AsyncClient() as http:
        await tasks.start(parts.server.serve)
        if shared is not None:  # sessions are kept in memory only while the bus hears
            with anyio.fail_after(10):
                await shared.bus.listening.wait()
        try:
            yield ProductEnv(parts.server, store, parts.accounts, parts.cloud, http)
        finally:
            parts.server.shutdown()


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
    "lands_before_transaction",
    "product_server",
    "product_store",
    "sdk_client",
]


def results_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every result a call would keep for its idempotency key fails to be written, as when
    the store stops answering between the call's change and that record."""

    async def unreachable(*_: Any) -> None:
        raise StoreUnavailable(UNREACHABLE)

    monkeypatch.setattr(IdempotencyRepo, "finish", unreachable)


def lands_before_transaction(
    monkeypatch: pytest.MonkeyPatch,
    cloud: Cloud,
    other: Callable[[], Awaitable[object]],
    nth: int = 1,
) -> None:
    """`other` (another call) runs to its end just before the `nth` transaction the cloud
    opens next: it lands between what a call read first and the write it then makes, the
    moment a race between two calls takes."""
    opened = [0]
    real = cloud.transaction

    @asynccontextmanager
    async def landing(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        opened[0] += 1
        if opened[0] == nth:
            await other()
        async with real(*args, **kwargs) as tx:
            yield tx

    monkeypatch.setattr(cloud, "transaction", landing)
