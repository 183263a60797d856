"""The `spky mcp` command line: a thin shell over the engine and the product."""

from .commands import main, serve_main

__all__ = ["main", "serve_main"]
