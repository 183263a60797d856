"""Three replicas behind a load balancer without stickiness (a round-robin proxy that sends
each request to the next replica), on one PostgreSQL and one Redis: whichever replica a
request lands on, the client sees one server.  The official Python SDK client drives the
product through the proxy; the official conformance suite runs against conformance replicas
the same way."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import orjson
import pytest

from tests.faults_support import PROCESS_BOUND, PYTHON_M, Served
from tests.product_support import Progress, accept, sdk_client
from tests.replicas_support import replicas, round_robin, shared_key_file
from tests.test_conformance import LEGS, run_leg
from tests.test_shared_state import sse_events
from tests.wire import initialize_body, modern_headers, modern_meta, token_headers

pytestmark = pytest.mark.anyio


# --- the conformance suite behind the round robin ---------------------------------------------


@pytest.fixture
def conformance_proxy(tmp_path: Path, redis_url: str) -> Iterator[str]:
    key = shared_key_file(tmp_path)
    with replicas(tmp_path, 3, None, redis_url, key, profile="conformance") as started:
        backends = [server.url.removesuffix("/v1/mcp") for server in started]
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(round_robin(backends)) as proxy,
        ):
            yield proxy.url()
        for server in started:
            server.signal(signal.SIGTERM)
            assert server.wait() == 0


@pytest.mark.conformance
@pytest.mark.parametrize("leg", LEGS)
def test_every_conformance_check_passes_against_three_replicas_behind_a_round_robin(
    leg: str, conformance_proxy: str
) -> None:
    run_leg(leg, conformance_proxy)


# --- the product: three replicas on one PostgreSQL and one Redis ----------------------------


class Deployment:
    """Product replicas with what a test needs to reach them: their URLs, the shared key
    file, and `spky mcp` pointed at the same database."""

    def __init__(self, directory: Path, database_url: str, key: Path, started: list[Served]):
        self.directory = directory
        self.database_url = database_url
        self.key = key
        self.replicas = started

    @property
    def backends(self) -> list[str]:
        return [server.url.removesuffix("/v1/mcp") for server in self.replicas]

    def spky(self, *args: str) -> str:
        where = ["--data-dir", str(self.directory / "admin"), "--database-url", self.database_url]
        done = subprocess.run(
            [*PYTHON_M, *args, *where, "--secret-key-file", str(self.key)],
            capture_output=True,
            text=True,
            timeout=PROCESS_BOUND,
            check=True,
        )
        return done.stdout

    def mint(self, name: str) -> str:
        out = self.spky("token", "--scopes", "mcp:full", "--yes", "--json", "--name", name)
        token: str = orjson.loads(out)["token"]
        return token


@contextmanager
def deployment(
    directory: Path, database_url: str, redis_url: str, extra: tuple[str, ...] = ()
) -> Iterator[Deployment]:
    key = shared_key_file(directory)
    (directory / "admin").mkdir()
    with replicas(directory, 3, database_url, redis_url, key, extra) as started:
        yield Deployment(directory, database_url, key, started)


def structured(result: Any) -> Any:
    assert result.is_error is False, result
    return result.structured_content


async def test_one_client_sees_one_server_whichever_replica_serves_each_request(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, postgres_database_url, redis_url) as live:
        token = live.mint("laptop")
        async with round_robin(live.backends) as proxy:
            progress = Progress()
            async with sdk_client(proxy.url(), token, elicitation_callback=accept) as client:
                await client.call_tool("create_project", {"name": "api"})
                await client.call_tool("create_project", {"name": "web"})
                backup = await client.call_tool(
                    "create_backup", {"project": "api"}, progress_callback=progress
                )
                destroyed = await client.call_tool("destroy_project", {"project": "web"})
                listed = structured(await client.call_tool("list_projects", {}))
            async with sdk_client(
                proxy.url(), token, "auto", elicitation_callback=accept
            ) as modern:
                again = await modern.call_tool("destroy_project", {"project": "api"})
                after = structured(await modern.call_tool("list_projects", {}))
            served = set(proxy.served)
    assert served == {0, 1, 2}
    assert structured(backup)["project"] == "api"
    assert [round(p) for p, _, _ in progress] == [0, 1, 2, 3]
    assert destroyed.is_error is False and again.is_error is False
    assert [project["name"] for project in listed["items"]] == ["api"]
    assert after["items"] == []


async def test_a_revoked_token_is_refused_by_every_replica_at_its_next_request(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, postgres_database_url, redis_url) as live:
        token = live.mint("laptop")
        async with httpx.AsyncClient() as http:
            before = [await modern_list(http, server.url, token) for server in live.replicas]
            live.spky("revoke", "laptop")
            after = [await modern_list(http, server.url, token) for server in live.replicas]
    assert before == [200, 200, 200]
    assert after == [401, 401, 401]


async def test_one_rate_limit_holds_across_the_replicas(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    limits = ("--rate-per-minute", "60", "--rate-burst", "3")
    with deployment(tmp_path, postgres_database_url, redis_url, limits) as live:
        token = live.mint("laptop")
        async with httpx.AsyncClient() as http:
            codes = [
                await modern_list(http, live.replicas[index % 3].url, token) for index in range(4)
            ]
    assert codes == [200, 200, 200, 429]


async def modern_list(http: httpx.AsyncClient, url: str, token: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": modern_meta()}}
    headers = modern_headers("tools/list") | {"authorization": f"Bearer {token}"}
    return (await http.post(url, json=body, headers=headers)).status_code


async def test_a_stream_broken_by_a_killed_replica_resumes_on_another_with_every_event_sent(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, postgres_database_url, redis_url) as live:
        token = live.mint("laptop")
        a, b = live.replicas[0], live.replicas[1]
        async with httpx.AsyncClient(timeout=PROCESS_BOUND) as http:
            session_id = await handshake(http, a.url, token)
            await rpc(http, b.url, token, session_id, "tools/call", create("api"))
            primed = await first_event_of_a_prompt(http, a.url, token, session_id)
            os.kill(a.process.pid, signal.SIGKILL)
            replayed = await replay_until_the_prompt(http, b.url, token, session_id, primed)
    assert replayed["method"] == "elicitation/create"


async def test_a_call_on_one_replica_is_cancelled_through_another(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, postgres_database_url, redis_url) as live:
        token = live.mint("laptop")
        a, b, c = live.replicas
        async with httpx.AsyncClient(timeout=PROCESS_BOUND) as http:
            session_id = await handshake(http, a.url, token)
            await rpc(http, b.url, token, session_id, "tools/call", create("api"))
            primed = await first_event_of_a_prompt(http, a.url, token, session_id)
            cancel = {"requestId": 5, "reason": "no"}
            await notify(http, c.url, token, session_id, "notifications/cancelled", cancel)
            ended = await replay_to_the_end(http, b.url, token, session_id, primed)
            listed = await rpc(
                http,
                c.url,
                token,
                session_id,
                "tools/call",
                {"name": "list_projects", "arguments": {}},
            )
    assert [m.get("method") for m in ended] == ["elicitation/create"]
    assert [p["name"] for p in listed["result"]["structuredContent"]["items"]] == ["api"]


def create(name: str) -> dict[str, Any]:
    return {"name": "create_project", "arguments": {"name": name}}


async def handshake(http: httpx.AsyncClient, url: str, token: str) -> str:
    body = initialize_body(capabilities={"elicitation": {}})
    reply = await http.post(url, content=body, headers=token_headers(token))
    assert reply.status_code == 200, reply.text
    return reply.headers["mcp-session-id"]


async def rpc(
    http: httpx.AsyncClient, url: str, token: str, session_id: str, method: str, params: Any
) -> Any:
    body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
    reply = await http.post(url, json=body, headers=token_headers(token, session_id))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def notify(
    http: httpx.AsyncClient, url: str, token: str, session_id: str, method: str, params: Any
) -> None:
    body = {"jsonrpc": "2.0", "method": method, "params": params}
    reply = await http.post(url, json=body, headers=token_headers(token, session_id))
    assert reply.status_code == 202, reply.text


async def first_event_of_a_prompt(
    http: httpx.AsyncClient, url: str, token: str, session_id: str
) -> str:
    """destroy_project called on `url`: the id of its stream's priming event, once the
    stream began (the prompt that follows is sent, and the connection is then dropped)."""
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "destroy_project", "arguments": {"project": "api"}},
    }
    async with http.stream(
        "POST", url, json=body, headers=token_headers(token, session_id)
    ) as sent:
        async for event_id, message in sse_events(sent):
            if message is not None and message.get("method") == "elicitation/create":
                assert event_id is not None
                return event_id.rsplit("_", 1)[0] + "_0"
    raise AssertionError("the call asked nothing")


async def replayed(
    http: httpx.AsyncClient, url: str, token: str, session_id: str, last: str, until_first: bool
) -> list[Any]:
    """The messages a GET with Last-Event-ID on `url` replays: the first one only, or all of
    them to the stream's end."""
    headers = token_headers(token, session_id) | {
        "last-event-id": last,
        "accept": "text/event-stream",
    }
    found: list[Any] = []
    with anyio.fail_after(PROCESS_BOUND):
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            async for _, message in sse_events(stream):
                if message is not None:
                    found.append(message)
                    if until_first:
                        break
    return found


async def replay_until_the_prompt(
    http: httpx.AsyncClient, url: str, token: str, session_id: str, last: str
) -> Any:
    found = await replayed(http, url, token, session_id, last, until_first=True)
    assert found, "nothing was replayed"
    return found[0]


async def replay_to_the_end(
    http: httpx.AsyncClient, url: str, token: str, session_id: str, last: str
) -> list[Any]:
    return await replayed(http, url, token, session_id, last, until_first=False)


async def test_the_log_level_set_through_one_replica_governs_a_call_on_another(
    tmp_path: Path, redis_url: str
) -> None:
    """The SDK sets the session's log level at start; the call that logs lands on another
    replica, which reads the level from the shared session; its progress comes back too."""
    key = shared_key_file(tmp_path)
    logged: list[tuple[str, Any]] = []

    async def on_log(params: Any) -> None:
        logged.append((params.level, params.data))

    with replicas(tmp_path, 3, None, redis_url, key, profile="conformance") as started:
        backends = [server.url.removesuffix("/v1/mcp") for server in started]
        async with round_robin(backends) as proxy:
            progress = Progress()
            options: dict[str, Any] = {"logging_callback": on_log, "log_level": "info"}
            async with sdk_client(proxy.url(), "anonymous", **options) as client:
                await client.call_tool("test_tool_with_logging", {})
                await client.call_tool("test_tool_with_progress", {}, progress_callback=progress)
            served = set(proxy.served)
    assert served == {0, 1, 2}
    assert logged == [
        ("info", "Tool execution started"),
        ("info", "Tool processing data"),
        ("info", "Tool execution completed"),
    ]
    assert [p for p, _, _ in progress] == [0, 50, 100]
