"""Shared fixtures: an in-process server on an ephemeral loopback port, per test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.server import McpServer, anonymous

from .product_support import ProductEnv, build_product, product_store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def conformance_server() -> AsyncIterator[McpServer]:
    config = ServerConfig(port=0, profile="conformance")
    server = McpServer(config, conformance_catalogue(), authenticate=anonymous())
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        yield server
        server.shutdown()


@pytest.fixture
async def product(tmp_path: Path) -> AsyncIterator[ProductEnv]:
    """The product profile on a fresh store in a temporary data directory."""
    store = await product_store(tmp_path)
    limits = Limits(rate_per_minute=1_000_000, rate_burst=1_000_000)
    config = ServerConfig(port=0, data_dir=str(tmp_path), limits=limits)
    parts = build_product(config, store)
    async with anyio.create_task_group() as tasks, httpx.AsyncClient() as http:
        await tasks.start(parts.server.serve)
        yield ProductEnv(parts.server, store, parts.accounts, parts.cloud, http)
        parts.server.shutdown()
    await store.close()


@pytest.fixture
def env(product: ProductEnv) -> ProductEnv:
    """The product profile with the cloud's clock stopped at product_support.NOW
    (2026-01-01T00:00:00Z); a module whose tests need another clock defines its own `env`."""
    product.freeze()
    return product


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server URL, token or data directory comes from the environment of the test run."""
    for name in ("SP00KY_MCP_URL", "SP00KY_MCP_TOKEN", "SP00KY_MCP_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home directory and an empty working directory to install into."""
    path = tmp_path / "home"
    work = tmp_path / "work"
    path.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.chdir(work)
    return path


@pytest.fixture(scope="module")
def served_conformance_url() -> Iterator[str]:
    """`spky mcp serve --profile conformance` as a separate process, as users run it; the
    process must exit 0 on SIGTERM."""
    command = [
        sys.executable,
        "-m",
        "sp00ky_mcp",
        "mcp",
        "serve",
        "--profile",
        "conformance",
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://\S+/v1/mcp)$", line.strip())
        assert match, f"the server did not start: {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        status = process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert status == 0, "the server did not exit cleanly on SIGTERM"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The official suite's counts, printed after pytest's own report of the run."""
    lines = terminalreporter.config.stash.get(CONFORMANCE_COUNTS, [])
    if lines:
        terminalreporter.section("MCP conformance suite")
        for line in lines:
            terminalreporter.write_line(line)


CONFORMANCE_COUNTS = pytest.StashKey[list[str]]()
