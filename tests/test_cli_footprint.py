"""What a process of the engine alone loads: the conformance profile and an embedding serve
without the store, its cipher, the product's tools or an HTTP client, so that the server at
rest holds only what it serves with."""

from __future__ import annotations

import subprocess
import sys

import orjson

# A fresh interpreter builds the conformance server as `spky mcp serve` does, and says which
# of the heavy modules it has loaded by then.
BUILD_AND_LIST = """
import sys, anyio, orjson
from sp00ky_mcp.cli.commands import build_parser, build_server, config_from
args = build_parser().parse_args(["mcp", "serve", "--profile", "conformance", "--port", "0"])
server, notes, close = anyio.run(build_server, config_from(args), None)
heavy = (CRYPTOGRAPHY "sqlite3", "httpx", "importlib.metadata", "sp00ky_mcp.product.store",
         "sp00ky_mcp.product.tools", "sp00ky_mcp.product.accounts", "sp00ky_mcp.product.app")
print(orjson.dumps(sorted(m for m in sys.modules if m.startswith(heavy))).decode())
"""


def loaded_after(program: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    names: list[str] = orjson.loads(done.stdout)
    return names


def test_the_conformance_server_is_built_without_the_product_or_an_http_client() -> None:
    assert loaded_after(BUILD_AND_LIST.replace("CRYPTOGRAPHY", '"cryptography",')) == []


def test_conformance_replicas_on_redis_load_the_key_file_but_not_the_store() -> None:
    program = BUILD_AND_LIST.replace(
        "server, notes, close = anyio.run(build_server, config_from(args), None)",
        "import sp00ky_mcp.cli.replicas",
    ).replace("CRYPTOGRAPHY", "")  # the key file's cipher it needs
    assert loaded_after(program) == []
