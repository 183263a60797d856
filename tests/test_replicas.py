"""Three replicas behind a load balancer without stickiness (a round-robin proxy that sends
each request to the next replica), on one PostgreSQL and one Redis: whichever replica a
request lands on, the client sees one server.  The official Python SDK client drives the
product through the proxy; the official conformance suite runs against conformance replicas
the same way."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from tests.replicas_support import replicas, round_robin, shared_key_file
from tests.test_conformance import COUNTS, LEGS, RUNNER

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
    run = subprocess.run(
        ["bash", str(RUNNER), leg, conformance_proxy],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    counts = COUNTS.search(run.stdout)
    assert counts, run.stdout[-4000:] + run.stderr[-2000:]
    assert (int(counts.group(3)), run.returncode) == (0, 0), run.stdout[-6000:]
