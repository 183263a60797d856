"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
tests/conformance/package.json, run under Node 22) against `spky mcp serve --profile
conformance`, in its three legs.  Every check must pass; there is no expected-failures file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import CONFORMANCE_COUNTS

HERE = Path(__file__).parent
RUNNER = HERE / "conformance" / "run.sh"
LEGS = ("0.1.16-all", "alpha12-2025-11-25", "alpha12-2026-07-28")
COUNTS = re.compile(r"^conformance (\S+): (\d+) passed, (\d+) failed$", re.MULTILINE)

pytestmark = pytest.mark.conformance


def run_leg(leg: str, url: str) -> str:
    """One leg of the official suite against `url`: its closing line, once every check
    passed."""
    run = subprocess.run(
        ["bash", str(RUNNER), leg, url], capture_output=True, text=True, timeout=600, check=False
    )
    counts = COUNTS.search(run.stdout)
    assert counts, run.stdout[-4000:] + run.stderr[-2000:]
    passed, failed = int(counts.group(2)), int(counts.group(3))
    assert (failed, run.returncode) == (0, 0), run.stdout[-6000:]
    assert passed > 0
    return counts.group(0)


@pytest.mark.parametrize("leg", LEGS)
def test_every_conformance_check_passes(
    leg: str, served_conformance_url: str, request: pytest.FixtureRequest
) -> None:
    line = run_leg(leg, served_conformance_url)
    request.config.stash.setdefault(CONFORMANCE_COUNTS, []).append(line)
