"""`spky mcp serve --workers N`: N processes on one port that share sessions through Redis; a
worker that dies is replaced, SIGTERM stops them all, and what cannot work is refused at
start with a sentence."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from sp00ky_mcp.cli import workers
from sp00ky_mcp.cli.commands import main
from tests.faults_support import (
    PROCESS_BOUND,
    PYTHON_M,
    children,
    mint_token,
    run_to_exit,
    served,
)
from tests.wire import initialize_body, modern_headers, modern_meta, token_headers


def workers_options(redis_url: str, count: int = 2) -> tuple[str, ...]:
    return ("--workers", str(count), "--redis-url", redis_url, "--log-level", "warning")


def test_workers_serve_one_port_and_a_session_holds_on_every_connection(
    tmp_path: Path, redis_url: str
) -> None:
    token = mint_token(tmp_path)
    with served(tmp_path, options=workers_options(redis_url)) as server:
        workers = children(server.process.pid)
        opened = httpx.post(server.url, content=initialize_body(), headers=token_headers(token))
        session_id = opened.headers["mcp-session-id"]
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        # A new connection each time: the kernel spreads them over the workers.
        codes = {
            httpx.post(server.url, json=body, headers=token_headers(token, session_id)).status_code
            for _ in range(12)
        }
        server.signal(signal.SIGTERM)
        status = server.wait()
    assert len(workers) == 2
    assert codes == {200}
    assert status == 0
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []


def test_a_worker_that_dies_is_replaced_and_serving_goes_on(tmp_path: Path, redis_url: str) -> None:
    token = mint_token(tmp_path)
    with served(tmp_path, options=workers_options(redis_url)) as server:
        victim = children(server.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        server.error_line(re.compile(r"worker \d exited with code -9; starting another"))
        server.error_line(re.compile(r"a worker started in place of one that exited is listening"))
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/list",
            "params": {"_meta": modern_meta()},
        }
        headers = modern_headers("tools/list") | {"authorization": f"Bearer {token}"}
        replies = {httpx.post(server.url, json=body, headers=headers).status_code for _ in range(6)}
        after = children(server.process.pid)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert len(after) == 2 and victim not in after
    assert replies == {200}


def test_workers_whose_supervisor_is_killed_stop_by_themselves_and_free_the_port(
    tmp_path: Path, redis_url: str
) -> None:
    with served(tmp_path, options=workers_options(redis_url)) as server:
        port = httpx.URL(server.url).port
        workers = children(server.process.pid)
        exits = [os.pidfd_open(pid) for pid in workers]
        try:
            server.process.kill()  # no handler sees SIGKILL: the supervisor cannot tell them
            killed = server.wait()
            said = [
                server.error_line(re.compile(r"the supervisor of this worker is gone; stopping"))
                for _ in exits
            ]
            ended = [select.select([fd], [], [], PROCESS_BOUND)[0] == [fd] for fd in exits]
        finally:
            for pid, fd in zip(workers, exits, strict=True):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # should this ever fail, none is left behind
                os.close(fd)
    assert (killed, len(said), ended) == (-signal.SIGKILL, 2, [True, True])
    assert port is not None
    with socket.create_server(("127.0.0.1", port)):
        pass  # nobody listens on it any more


def test_more_than_one_worker_without_redis_is_refused(tmp_path: Path) -> None:
    status, _, err = run_to_exit(
        [*PYTHON_M, "serve", "--data-dir", str(tmp_path), "--port", "0", "--workers", "2"]
    )
    assert (status, err) == (
        1,
        "spky: --workers 2 needs --redis-url: the workers share sessions and quotas through "
        "Redis. Pass one, or serve with --workers 1.\n",
    )


def test_replicas_on_postgresql_without_a_configured_key_are_refused(
    tmp_path: Path,
    postgres_database_url: str,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SP00KY_MCP_SECRET_KEY_FILE", raising=False)
    argv = ["mcp", "serve", "--data-dir", str(tmp_path), "--port", "0"]
    status = main([*argv, "--database-url", postgres_database_url, "--redis-url", redis_url])
    assert status == 1
    assert capsys.readouterr().err == (
        "spky: Replicas that share state on Redis must share one secret key: pass "
        "--secret-key-file (or set SP00KY_MCP_SECRET_KEY_FILE) to a copy of the same key file "
        "on every replica.\n"
    )


# A worker that says it listens, then ignores SIGTERM (as one stopped or stuck would).
DEAF_WORKER = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('sp00ky-mcp listening on http://127.0.0.1:1/v1/mcp', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.mark.anyio
async def test_a_worker_that_ignores_the_stop_is_killed_once_the_grace_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The supervisor's stop once waited for such a worker for ever."""
    monkeypatch.setattr(workers, "STOP_GRACE", 0.1)
    supervisor = workers.Supervisor([sys.executable, "-c", DEAF_WORKER], 1)
    with anyio.fail_after(PROCESS_BOUND):
        async with anyio.create_task_group() as tasks:
            await tasks.start(supervisor.run)
            supervisor.stop()
    assert supervisor.stopping and not supervisor.failed
