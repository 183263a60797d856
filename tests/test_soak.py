"""A short run of the soak load (`python -m bench.soak`) as a test: clients of both eras with
their own tokens, reading and writing, some leaving abruptly mid-request, against one real
`spky mcp serve` on each store; no request may fail and the server may log no error."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from bench import soak

# Long enough for many writes to be cut off mid-transaction by clients that leave.
SECONDS = 8.0
CLIENTS = 16


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded store; else the suite's PostgreSQL, emptied."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_database_url")
    return url


def test_a_mixed_load_with_clients_leaving_mid_request_fails_nothing_and_logs_no_error(
    tmp_path: Path, database_url: str | None
) -> None:
    tokens = soak.mint_tokens(str(tmp_path), CLIENTS, database_url)
    server = soak.Server(str(tmp_path), database_url)
    try:
        anyio.run(soak.prepare, server, tokens[0])
        tally = soak.Tally()
        anyio.run(soak.load, server, tokens, SECONDS, tally)
        logged = server.tracebacks()
    finally:
        status = server.stop()
    assert (tally.errors, logged, status) == ([], [], 0)
    assert tally.disconnects > 0
    assert sum(tally.served.values()) > 0
