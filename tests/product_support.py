"""Test support for the product profile: a server on a temporary store, users, tokens, and
two ways to call it (raw stateless JSON-RPC over HTTP, and the official Python SDK client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sp00ky_mcp.accounts import Accounts, User
from sp00ky_mcp.cloud.base import Cloud
from sp00ky_mcp.product import build_product
from sp00ky_mcp.server import McpServer
from sp00ky_mcp.store import Store

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


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


__all__ = ["ProductEnv", "build_product", "product_store"]
