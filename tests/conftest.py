"""Shared fixtures: an in-process server on an ephemeral loopback port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from sp00ky_mcp.config import ServerConfig
from sp00ky_mcp.fixtures import conformance_catalogue
from sp00ky_mcp.server import McpServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def conformance_server() -> AsyncIterator[McpServer]:
    server = McpServer(ServerConfig(port=0, profile="conformance"), conformance_catalogue())
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        yield server
        server.shutdown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The official suite's counts, printed after pytest's own report of the run."""
    lines = terminalreporter.config.stash.get(CONFORMANCE_COUNTS, [])
    if lines:
        terminalreporter.section("MCP conformance suite")
        for line in lines:
            terminalreporter.write_line(line)


CONFORMANCE_COUNTS = pytest.StashKey[list[str]]()
