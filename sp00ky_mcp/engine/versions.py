"""Protocol revisions and the rules for choosing between them.  Pure.

Two eras share one endpoint (versioning page, "dual-era server"): the handshake era negotiates a
version in `initialize` and keeps a session; the modern era (2026-07-28) is stateless and every
request names its version in `_meta` and in the MCP-Protocol-Version header.
"""

from __future__ import annotations

from enum import Enum

MODERN_VERSIONS = ("2026-07-28",)
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SUPPORTED_VERSIONS = MODERN_VERSIONS + HANDSHAKE_VERSIONS
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[0]
# Transports 2025-06-18, "Protocol Version Header": a server that receives no header SHOULD
# assume 2025-03-26 for backwards compatibility.
ASSUMED_WITHOUT_HEADER = "2025-03-26"

META_PREFIX = "io.modelcontextprotocol/"
META_PROTOCOL_VERSION = META_PREFIX + "protocolVersion"
META_CLIENT_INFO = META_PREFIX + "clientInfo"
META_CLIENT_CAPABILITIES = META_PREFIX + "clientCapabilities"
META_LOG_LEVEL = META_PREFIX + "logLevel"
META_SERVER_INFO = META_PREFIX + "serverInfo"


class Era(Enum):
    HANDSHAKE = "handshake"
    MODERN = "modern"


def negotiate(requested: object) -> str:
    """Lifecycle, "Version Negotiation": answer with the requested version when supported,
    otherwise with the latest version the server supports."""
    if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS:
        return requested
    return LATEST_HANDSHAKE


def batches_allowed(version: str) -> bool:
    """JSON-RPC batches existed only in 2025-03-26 (removed by 2025-06-18, changelog item 1)."""
    return version == "2025-03-26"


def has_priming_events(version: str) -> bool:
    """The priming event and polling-style SSE appear in 2025-11-25 (transports, SEP-1699)."""
    return version not in ("2025-06-18", "2025-03-26")


def is_modern(version: str | None) -> bool:
    return version in MODERN_VERSIONS
