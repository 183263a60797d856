"""sp00ky-mcp: the remote MCP server of the Sp00ky Cloud platform."""

__version__ = "0.1.0"
SERVER_NAME = "sp00ky-mcp"
