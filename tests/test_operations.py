"""An operator can tell whether the server is alive and ready, read its Prometheus metrics, and
follow one access line per request and one audit line per tool call, in text or JSON, with
nothing secret in them."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.ops import TextFormatter, human_record, json_lines
from sp00ky_mcp.engine.server import McpServer, anonymous
from sp00ky_mcp.product.shared import connect_shared
from sp00ky_mcp.product.store import Store, open_store
from sp00ky_mcp.product.store.postgres import PostgresStore
from sp00ky_mcp.product.store.sqlite import SqliteStore
from tests.pg_support import OwnPostgres
from tests.product_support import UNLIMITED, ProductEnv, product_server
from tests.redis_support import OwnRedis
from tests.wire import BOTH, MODERN, initialize_body, open_session

pytestmark = pytest.mark.anyio

PLAIN = {"accept": BOTH, "content-type": "application/json"}


@asynccontextmanager
async def fixture_server(**settings: Any) -> AsyncIterator[tuple[McpServer, httpx.AsyncClient]]:
    config = ServerConfig(port=0, profile="conformance", **settings)
    server = McpServer(config, conformance_catalogue(), authenticate=anonymous())
    async with anyio.create_task_group() as tasks, httpx.AsyncClient() as http:
        await tasks.start(server.serve)
        yield server, http
        server.shutdown()


def root(server: McpServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and labels, read by prometheus-client's
    own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def call_tool(http: httpx.AsyncClient, url: str, name: str) -> httpx.Response:
    opened = await http.post(url, content=initialize_body(), headers=PLAIN)
    session = PLAIN | {"mcp-session-id": opened.headers["mcp-session-id"]}
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name}}
    return await http.post(url, json=body, headers=session)


# --- health -----------------------------------------------------------------------------------


async def test_healthz_answers_ok_to_anyone_whatever_host_they_name() -> None:
    async with fixture_server() as (server, http):
        reply = await http.get(root(server) + "/healthz", headers={"host": "10.0.0.5:8765"})
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


async def test_readyz_says_ready_when_every_check_answers(tmp_path: Path, store: Store) -> None:
    async with product_server(store, tmp_path) as env:
        reply = await env.http.get(root(env.server) + "/readyz")
    assert (reply.status_code, reply.json()) == (
        200,
        {"status": "ready", "checks": {"store": "ok"}},
    )


async def test_readyz_answers_503_naming_the_check_that_fails_and_recovers_with_redis(
    tmp_path: Path, store: Store, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sp00ky_mcp.engine.ops.READY_REUSE_SECONDS", 0.0)
    shared = await connect_shared(own_redis.url, UNLIMITED, pause=0.0)
    try:
        async with product_server(store, tmp_path, shared=shared) as env:
            ready = await env.http.get(root(env.server) + "/readyz")
            own_redis.stop()
            down = await env.http.get(root(env.server) + "/readyz")
            own_redis.start()
            back = await env.http.get(root(env.server) + "/readyz")
    finally:
        await shared.close()
    assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}
    assert (down.status_code, down.json()) == (
        503,
        {"status": "unavailable", "checks": {"redis": "unavailable", "store": "ok"}},
    )
    assert back.status_code == 200


async def test_readyz_stays_ready_while_every_pooled_connection_is_busy(
    tmp_path: Path, postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded replica is busy, not unready: taken out of service, it would only move its
    load onto the others."""
    monkeypatch.setattr("sp00ky_mcp.engine.ops.READY_REUSE_SECONDS", 0.0)
    pool = cast(PostgresStore, postgres_store).pool
    async with product_server(postgres_store, tmp_path) as env:
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            busy = await env.http.get(root(env.server) + "/readyz")
        finally:
            for connection in held:
                await pool.release(connection)
    assert (busy.status_code, busy.json()) == (200, {"status": "ready", "checks": {"store": "ok"}})


async def test_readyz_answers_503_while_the_database_is_down_and_recovers_with_it(
    tmp_path: Path, own_postgres: OwnPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sp00ky_mcp.engine.ops.READY_REUSE_SECONDS", 0.0)
    store = await open_store(tmp_path, url=own_postgres.url)
    try:
        async with product_server(store, tmp_path) as env:
            ready = await env.http.get(root(env.server) + "/readyz")
            await anyio.to_thread.run_sync(own_postgres.stop)
            down = await env.http.get(root(env.server) + "/readyz")
            await anyio.to_thread.run_sync(own_postgres.start)
            back = await env.http.get(root(env.server) + "/readyz")
    finally:
        await store.close()
    assert ready.status_code == back.status_code == 200
    assert (down.status_code, down.json()) == (
        503,
        {"status": "unavailable", "checks": {"store": "unavailable"}},
    )


def take_away(database: Path, change: str) -> None:
    database.unlink()
    if change == "replaced":
        database.write_bytes(b"")


@pytest.mark.parametrize("change", ["removed", "replaced"])
async def test_readyz_answers_503_once_the_database_file_is_removed_or_replaced(
    tmp_path: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Writes to a file no longer at its path would be lost to the next start."""
    monkeypatch.setattr("sp00ky_mcp.engine.ops.READY_REUSE_SECONDS", 0.0)
    database = Path(cast(SqliteStore, sqlite_store).path)
    async with product_server(sqlite_store, tmp_path) as env:
        ready = await env.http.get(root(env.server) + "/readyz")
        take_away(database, change)
        gone = await env.http.get(root(env.server) + "/readyz")
    assert ready.status_code == 200
    assert (gone.status_code, gone.json()) == (
        503,
        {"status": "unavailable", "checks": {"store": "unavailable"}},
    )


class Heard(logging.Handler):
    """The server's log records that mention `words`; `heard` is set at the first."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words, self.records, self.heard = words, list[logging.LogRecord](), anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.records.append(record)
            self.heard.set()


async def test_a_sweep_while_redis_is_away_is_one_warning_line_not_an_error(
    tmp_path: Path, sqlite_store: Store, own_redis: OwnRedis
) -> None:
    shared = await connect_shared(own_redis.url, UNLIMITED, pause=0.0)
    limits = dataclasses.replace(UNLIMITED, session_idle_ttl=0.04)  # a sweep every 10 ms
    heard = Heard("sweeping")
    logging.getLogger("sp00ky_mcp").addHandler(heard)
    try:
        async with product_server(sqlite_store, tmp_path, limits, shared=shared) as env:
            token = await env.token(await env.user())
            await open_session(env.server, token=token)  # a session the sweep asks Redis about
            own_redis.stop()
            with anyio.fail_after(10):
                await heard.heard.wait()
            own_redis.start()
    finally:
        logging.getLogger("sp00ky_mcp").removeHandler(heard)
        await shared.close()
    assert {(r.levelname, r.getMessage(), r.exc_info) for r in heard.records} == {
        ("WARNING", "sweeping idle sessions: the shared session state is unreachable", None)
    }


async def test_health_endpoints_take_only_get() -> None:
    async with fixture_server() as (server, http):
        reply = await http.post(root(server) + "/healthz")
    assert (reply.status_code, reply.headers["allow"]) == (405, "GET, HEAD")


# --- metrics ----------------------------------------------------------------------------------


async def test_metrics_are_not_served_unless_asked_for() -> None:
    async with fixture_server() as (server, http):
        reply = await http.get(root(server) + "/metrics")
    assert reply.status_code == 404


async def test_metrics_count_requests_tool_calls_and_what_is_open() -> None:
    async with fixture_server(metrics=True) as (server, http):
        await call_tool(http, server.url, "test_simple_text")
        reply = await http.get(root(server) + "/metrics")
    found = samples(reply.text)
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    calls = (
        "mcp_requests_total",
        (("era", "handshake"), ("method", "tools/call"), ("status", "200")),
    )
    assert found[calls] == 1.0
    opened = (
        "mcp_requests_total",
        (("era", "handshake"), ("method", "initialize"), ("status", "200")),
    )
    assert found[opened] == 1.0
    tool = (("outcome", "ok"), ("tool", "test_simple_text"))
    assert found[("mcp_tool_calls_total", tool)] == 1.0
    duration = ("mcp_tool_call_duration_seconds_count", (("tool", "test_simple_text"),))
    assert found[duration] == 1.0
    assert found[("mcp_sessions_open", ())] == 1.0
    assert found[("mcp_sse_streams_open", ())] == 0.0
    assert found[("mcp_rate_limit_refusals_total", ())] == 0.0


async def test_a_method_the_server_does_not_know_is_counted_under_the_http_method() -> None:
    async with fixture_server(metrics=True) as (server, http):
        opened = await http.post(server.url, content=initialize_body(), headers=PLAIN)
        session = PLAIN | {"mcp-session-id": opened.headers["mcp-session-id"]}
        body = {"jsonrpc": "2.0", "id": 2, "method": "made/up", "params": {}}
        await http.post(server.url, json=body, headers=session)
        reply = await http.get(root(server) + "/metrics")
    names = {labels for name, labels in samples(reply.text) if name == "mcp_requests_total"}
    assert (("era", "handshake"), ("method", "POST"), ("status", "200")) in names
    assert not any(("method", "made/up") in labels for labels in names)


async def test_an_http_method_the_server_does_not_know_is_counted_as_other() -> None:
    async with fixture_server(metrics=True) as (server, http):
        for word in ("MADEUP", "MADEUP2", "X" * 4000):
            await http.request(word, root(server) + "/nowhere")
        await http.get(root(server) + "/nowhere")
        reply = await http.get(root(server) + "/metrics")
    methods = {
        dict(labels)["method"]
        for name, labels in samples(reply.text)
        if name == "mcp_requests_total"
    }
    assert methods == {"other", "GET"}


async def test_request_durations_are_one_histogram_a_method_whatever_the_era_or_status() -> None:
    async with fixture_server(metrics=True) as (server, http):
        await call_tool(http, server.url, "test_simple_text")
        refused = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}
        await http.post(server.url, json=refused, headers=PLAIN)
        reply = await http.get(root(server) + "/metrics")
    found = samples(reply.text)
    counted = {
        labels: value
        for (name, labels), value in found.items()
        if name == "mcp_requests_total" and ("method", "tools/call") in labels
    }
    assert counted == {
        (("era", "handshake"), ("method", "tools/call"), ("status", "200")): 1.0,
        (("era", "handshake"), ("method", "tools/call"), ("status", "400")): 1.0,
    }
    timed = ("mcp_request_duration_seconds_count", (("method", "tools/call"),))
    assert found[timed] == 2.0
    every = ("mcp_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "tools/call")))
    assert found[every] == 2.0


async def test_metrics_on_their_own_port_are_served_on_loopback_only() -> None:
    async with fixture_server(metrics_port=0) as (server, http):
        own = await http.get(f"http://127.0.0.1:{server.metrics_port}/metrics")
        beside = await http.get(root(server) + "/metrics")
        elsewhere = await http.get(f"http://127.0.0.1:{server.metrics_port}/v1/mcp")
    assert own.status_code == 200 and "mcp_requests_total" in own.text
    assert (beside.status_code, elsewhere.status_code) == (404, 404)


async def test_refusals_and_the_store_are_counted(tmp_path: Path, store: Store) -> None:
    limits = Limits(rate_per_minute=60, rate_burst=1)
    async with product_server(store, tmp_path, limits, metrics=True) as env:
        token = await env.token(await env.user())
        codes = [(await env.rpc(token, "tools/list")).status_code for _ in range(2)]
        reply = await env.http.get(root(env.server) + "/metrics")
    found = samples(reply.text)
    assert codes == [200, 429]
    assert found[("mcp_rate_limit_refusals_total", ())] == 1.0
    assert found[("mcp_backend_duration_seconds_count", (("backend", "store"),))] > 0
    assert found.get(("mcp_backend_errors_total", (("backend", "store"),)), 0.0) == 0.0


# --- access and audit lines -------------------------------------------------------------------


def lines_of(server: McpServer) -> io.StringIO:
    written = io.StringIO()
    assert server.ops.lines is not None
    server.ops.lines.stream = written
    return written


async def test_each_request_gets_one_access_line_in_json() -> None:
    async with fixture_server(access_log=True, log_format="json") as (server, http):
        written = lines_of(server)
        await call_tool(http, server.url, "test_simple_text")
    records = [orjson.loads(line) for line in written.getvalue().splitlines()]
    access = [r for r in records if r["kind"] == "access"]
    assert [(r["method"], r["status"], r["era"], r["http"]) for r in access] == [
        ("initialize", 200, "handshake", "POST"),
        ("tools/call", 200, "handshake", "POST"),
    ]
    assert access[1]["tool"] == "test_simple_text" and access[1]["outcome"] == "ok"
    assert access[0]["session"] == access[1]["session"] and len(access[1]["session"]) == 8
    assert isinstance(access[1]["duration_ms"], float)


async def test_a_tool_call_gets_an_audit_line_naming_the_token_never_its_value_or_arguments(
    tmp_path: Path, store: Store
) -> None:
    async with product_server(store, tmp_path, access_log=True, log_format="json") as env:
        written = lines_of(env.server)
        user = await env.user()
        token = await env.token(user, name="laptop")
        await env.make_project(user)
        secret = "s3cr3t-value-never-logged"
        arguments = {"project": "api", "key": "API_KEY", "value": secret}
        await env.call(token, "set_env_var", arguments)
    text = written.getvalue()
    records = [orjson.loads(line) for line in text.splitlines()]
    audit = [r for r in records if r["kind"] == "audit"]
    assert [(r["tool"], r["outcome"], r["token_name"]) for r in audit] == [
        ("set_env_var", "ok", "laptop")
    ]
    assert audit[0]["arguments"] == ["key", "project", "value"]
    assert audit[0]["tenant"] == await env.personal(user)
    assert audit[0]["token_id"].startswith("tok_")
    assert secret not in text and token not in text


async def test_a_json_line_stays_one_valid_object_whatever_a_client_or_user_chose(
    tmp_path: Path, store: Store
) -> None:
    chosen = 'la"p\\top é'
    async with product_server(store, tmp_path, access_log=True, log_format="json") as env:
        written = lines_of(env.server)
        user = await env.user()
        token = await env.token(user, name=chosen)
        await env.call(token, "list_projects", {'od"d\\\n': 1})
    lines = written.getvalue().splitlines()
    records = [orjson.loads(line) for line in lines]
    audit = [r for r in records if r["kind"] == "audit"]
    access = [r for r in records if r["kind"] == "access" and r["tool"] == "list_projects"]
    assert [r["token_name"] for r in audit + access] == [chosen, chosen]
    assert audit[0]["arguments"] == ['od"d\\\n']
    assert len(lines) == len(records)


text_values = st.one_of(st.none(), st.text(), st.sampled_from(['},{"ts":', '"},{"ts":"', "\n"]))


@given(st.lists(st.lists(text_values, min_size=3, max_size=3), max_size=8))
def test_records_written_together_are_each_one_line_whatever_their_values(
    values: list[list[str | None]],
) -> None:
    records = [
        {"ts": a, "kind": "audit", "tool": b, "arguments": [c or ""], "n": 1.5}
        for a, b, c in values
    ]
    text = json_lines(records) if records else ""
    # JSON Lines are split on "\n" alone (U+2028 and the like may stay bare inside a string).
    assert [orjson.loads(line) for line in text.split("\n")[:-1]] == records


def test_a_record_holding_a_lone_surrogate_is_written_with_it_replaced_not_lost() -> None:
    records = [
        {"ts": "t1", "kind": "access", "token_name": "bad\udcff", "names": ["x\ud800"]},
        {"ts": "t2", "kind": "access", "token_name": "fine", "names": []},
    ]
    assert human_record(records[0] | {"tool": "a \udcff"}) == (
        't1 access token_name=bad? names="[\\"x?\\"]" tool="a ?"\n'
    )
    lines = json_lines(records).split("\n")[:-1]
    assert [orjson.loads(line) for line in lines] == [
        {"ts": "t1", "kind": "access", "token_name": "bad?", "names": ["x?"]},
        records[1],
    ]


def test_a_record_for_people_shows_its_time_and_kind_bare_and_leaves_out_the_unknown() -> None:
    record = {"ts": "2026-12-05T10:00:00.000Z", "kind": "audit", "tool": "a b", "tenant": None}
    assert human_record(record) == '2026-12-05T10:00:00.000Z audit tool="a b"\n'


def test_a_record_for_people_quotes_a_value_that_would_break_its_line() -> None:
    record = {
        "ts": "t",
        "kind": "access",
        "path": "/x\n2026-12-06T01:00:00.000Z\taccess\ttool=delete_project\x1b[2K",
        "method": "a=b",
        "session": "abcd1234",
    }
    assert human_record(record) == (
        't access path="/x\\n2026-12-06T01:00:00.000Z\\taccess\\ttool=delete_project'
        '\\u001b[2K" method="a=b" session=abcd1234\n'
    )


async def test_a_client_cannot_start_a_line_of_its_own_in_the_log_for_people() -> None:
    async with fixture_server(access_log=True) as (server, http):
        written = lines_of(server)
        await http.get(root(server) + "/x%0A2026-12-06T01:00:00.000Z%09access%1b[2K")
        method = "m" * 1000
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
        await http.post(server.url, json=body, headers=PLAIN | {"mcp-protocol-version": MODERN})
    lines = written.getvalue().splitlines()
    assert len(lines) == 2
    assert ' path="/x\\n2026-12-06T01:00:00.000Z\\taccess\\u001b[2K" ' in lines[0]
    assert f" method={'m' * 100}… " in lines[1]


def test_the_servers_own_messages_for_people_stay_on_one_line_without_terminal_escapes() -> None:
    record = logging.LogRecord(
        "sp00ky_mcp.oauth",
        logging.INFO,
        __file__,
        1,
        "answered %s",
        ("\x1b]0;owned\x07\nnext",),
        None,
    )
    shown = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert shown == "INFO sp00ky_mcp.oauth: answered \\x1b]0;owned\\x07\\nnext"


async def test_access_lines_are_for_people_by_default() -> None:
    async with fixture_server(access_log=True) as (server, http):
        written = lines_of(server)
        await http.get(root(server) + "/healthz")
    (line,) = written.getvalue().splitlines()
    assert " access request=" in line and " path=/healthz " in line and " status=200 " in line


async def test_nothing_is_written_or_counted_unless_asked_for() -> None:
    async with fixture_server() as (server, http):
        await call_tool(http, server.url, "test_simple_text")
    assert (server.ops.enabled, server.ops.lines, server.ops.registry) == (False, None, None)


__all__ = ["ProductEnv"]
