"""Shared fixtures: an in-process server on an ephemeral loopback port, per test."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.server import McpServer, anonymous
from sp00ky_mcp.product.store import Store, open_store

from .faults_support import served
from .product_support import ProductEnv, product_server, product_store


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


# The throwaway PostgreSQL server and its databases; the throwaway Redis server.
pytest_plugins = ["tests.pg_support", "tests.redis_support"]

# Every test of the product runs on each backend: the embedded SQLite store and PostgreSQL.
BACKENDS = ("sqlite", "postgres")


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await product_store(tmp_path)
    yield store
    await store.close()


@pytest.fixture
async def postgres_store(tmp_path: Path, postgres_database_url: str) -> AsyncIterator[Store]:
    store = await open_store(tmp_path, url=postgres_database_url)
    yield store
    await store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    """A fresh, empty store of each backend in turn (the test runs once on each)."""
    found: Store = request.getfixturevalue(f"{request.param}_store")
    return found


@pytest.fixture
async def product(store: Store, tmp_path: Path) -> AsyncIterator[ProductEnv]:
    """The product profile on a fresh store of each backend."""
    async with product_server(store, tmp_path) as env:
        yield env


@pytest.fixture
async def sqlite_product(sqlite_store: Store, tmp_path: Path) -> AsyncIterator[ProductEnv]:
    """The product profile on the embedded store alone, for what is SQLite's own."""
    async with product_server(sqlite_store, tmp_path) as env:
        yield env


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
    options = ("--profile", "conformance", "--log-level", "warning")
    with served(None, options=options) as server:
        yield server.url
        server.signal(signal.SIGTERM)
        status = server.wait()
    assert status == 0, "the server did not exit cleanly on SIGTERM"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The official suite's counts, printed after pytest's own report of the run."""
    lines = terminalreporter.config.stash.get(CONFORMANCE_COUNTS, [])
    if lines:
        terminalreporter.section("MCP conformance suite")
        for line in lines:
            terminalreporter.write_line(line)


CONFORMANCE_COUNTS = pytest.StashKey[list[str]]()
