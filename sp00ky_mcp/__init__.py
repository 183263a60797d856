"""sp00ky-mcp: the remote MCP server of the Sp00ky Cloud platform.

The package is in three parts: `engine` (the generic MCP server: HTTP, Streamable HTTP,
JSON-RPC, sessions, the protocol), `product` (Sp00ky: tokens, accounts, the control plane,
its tools and the storage port with its backends) and `cli` (`spky mcp …`).  The embedding
API is re-exported here, loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
SERVER_NAME = "sp00ky-mcp"

_EXPORTS = {
    "McpServer": "sp00ky_mcp.engine.server",
    "anonymous": "sp00ky_mcp.engine.server",
    "ServerConfig": "sp00ky_mcp.engine.config",
    "Limits": "sp00ky_mcp.engine.config",
    "Catalogue": "sp00ky_mcp.engine.catalogue",
    "Tool": "sp00ky_mcp.engine.catalogue",
    "CallContext": "sp00ky_mcp.engine.context",
    "Principal": "sp00ky_mcp.engine.context",
    "ToolError": "sp00ky_mcp.engine.errors",
    "Secret": "sp00ky_mcp.engine.redaction",
    "build_product": "sp00ky_mcp.product.app",
}

if TYPE_CHECKING:
    from .engine.catalogue import Catalogue, Tool
    from .engine.config import Limits, ServerConfig
    from .engine.context import CallContext, Principal
    from .engine.errors import ToolError
    from .engine.redaction import Secret
    from .engine.server import McpServer, anonymous
    from .product.app import build_product

__all__ = [
    "SERVER_NAME",
    "CallContext",
    "Catalogue",
    "Limits",
    "McpServer",
    "Principal",
    "Secret",
    "ServerConfig",
    "Tool",
    "ToolError",
    "__version__",
    "anonymous",
    "build_product",
]


def __getattr__(name: str) -> Any:
    """`from sp00ky_mcp import McpServer` without loading the server for `import sp00ky_mcp`."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sp00ky_mcp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
