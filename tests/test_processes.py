"""Several server processes on one PostgreSQL database, as behind a load balancer: what one
writes, the other serves at the next request, to the official Python SDK client; concurrent
writes through both give the outcome one process would give.  (A SIGKILL during a burst of
writes, on each backend, is in test_faults.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.faults_support import PROCESS_BOUND, Served, mint_token, served
from tests.product_support import sdk_client

pytestmark = [pytest.mark.anyio, pytest.mark.clients]


@pytest.fixture
def pair(tmp_path: Path, postgres_database_url: str) -> Iterator[tuple[Served, Served, str]]:
    """Two `spky mcp serve` processes on one database (and one secret key file), and a token
    minted with `spky mcp token` on that database."""
    token = mint_token(tmp_path, "mcp:full,secrets:reveal", postgres_database_url)
    with (
        served(tmp_path, postgres_database_url) as first,
        served(tmp_path, postgres_database_url) as second,
    ):
        yield first, second, token


async def structured(client: Client, tool: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(tool, arguments)
    assert result.is_error is False, result.content
    return result.structured_content


async def variables(client: Client) -> dict[str, str]:
    listed = await structured(client, "list_env_vars", {"project": "api"})
    return {item["key"]: item["value"] for item in listed["items"]}


async def test_each_process_serves_the_others_writes_at_the_next_request(
    pair: tuple[Served, Served, str],
) -> None:
    first, second, token = pair
    with anyio.fail_after(PROCESS_BOUND):
        async with sdk_client(first.url, token) as a, sdk_client(second.url, token) as b:
            await structured(a, "create_project", {"name": "api"})
            await structured(a, "set_env_var", {"project": "api", "key": "A", "value": "1"})
            seen_by_b = await variables(b)
            await structured(b, "set_env_var", {"project": "api", "key": "A", "value": "2"})
            await structured(b, "set_env_var", {"project": "api", "key": "B", "value": "3"})
            seen_by_a = await variables(a)
            projects_of_b = await structured(b, "list_projects", {})
    assert seen_by_b == {"A": "1"}
    assert seen_by_a == {"A": "2", "B": "3"}
    assert [item["name"] for item in projects_of_b["items"]] == ["api"]


async def test_a_read_kept_by_one_process_is_dropped_when_the_other_writes(
    pair: tuple[Served, Served, str],
) -> None:
    first, second, token = pair
    with anyio.fail_after(PROCESS_BOUND):
        async with sdk_client(first.url, token) as a, sdk_client(second.url, token) as b:
            await structured(a, "create_project", {"name": "api"})
            # list_env_vars is served from the result cache while the store is unchanged.
            before = [await variables(b), await variables(b)]
            await structured(a, "set_env_var", {"project": "api", "key": "NEW", "value": "x"})
            after = await variables(b)
    assert before == [{}, {}]
    assert after == {"NEW": "x"}


async def test_one_name_created_through_both_processes_at_once_makes_one_project(
    pair: tuple[Served, Served, str],
) -> None:
    first, second, token = pair
    outcomes: list[tuple[bool, str]] = []

    async def create(client: Client) -> None:
        result = await client.call_tool("create_project", {"name": "twin"})
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        outcomes.append((bool(result.is_error), text))

    with anyio.fail_after(PROCESS_BOUND):
        async with sdk_client(first.url, token) as a, sdk_client(second.url, token) as b:
            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(create, a)
                    tasks.start_soon(create, b)
            listed = await structured(a, "list_projects", {})
    assert [item["name"] for item in listed["items"]] == ["twin"]
    assert sorted(error for error, _ in outcomes) == [False] + [True] * 7
    assert all("already" in text for error, text in outcomes if error)


async def test_concurrent_writes_of_one_key_through_both_processes_leave_one_of_the_values(
    pair: tuple[Served, Served, str],
) -> None:
    first, second, token = pair
    written = [str(n) for n in range(10)]

    async def write(client: Client, value: str) -> None:
        await structured(client, "set_env_var", {"project": "api", "key": "K", "value": value})

    with anyio.fail_after(PROCESS_BOUND):
        async with sdk_client(first.url, token) as a, sdk_client(second.url, token) as b:
            await structured(a, "create_project", {"name": "api"})
            async with anyio.create_task_group() as tasks:
                for value in written:
                    tasks.start_soon(write, a if int(value) % 2 else b, value)
            final = [await variables(a), await variables(b)]
    assert final[0] == final[1]
    assert final[0]["K"] in written


async def test_one_idempotency_key_used_through_both_processes_runs_the_call_once(
    pair: tuple[Served, Served, str],
) -> None:
    first, second, token = pair
    arguments = {"project": "api", "key": "ONCE", "value": "v", "idempotency_key": "k-1"}
    results: list[Any] = []

    async def call(client: Client) -> None:
        result = await client.call_tool("set_env_var", arguments)
        results.append(result.structured_content if not result.is_error else result.content)

    with anyio.fail_after(PROCESS_BOUND):
        async with sdk_client(first.url, token) as a, sdk_client(second.url, token) as b:
            await structured(a, "create_project", {"name": "api"})
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call, a)
                tasks.start_soon(call, b)
            logs = await structured(a, "get_logs", {"project": "api"})
    created = [line for line in logs["items"] if "ONCE" in line["message"]]
    assert len(created) == 1
    assert len(results) == 2


def test_sigterm_stops_a_process_on_postgresql_gracefully(
    tmp_path: Path, postgres_database_url: str
) -> None:
    mint_token(tmp_path, "mcp:read", postgres_database_url)
    with served(tmp_path, postgres_database_url) as server:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
