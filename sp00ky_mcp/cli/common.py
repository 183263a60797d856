"""What every command shares: how a refusal is raised, how output is written, and the URL
of the server a command talks to."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson

from ..engine.server import McpServer

DEFAULT_PORT = 8765
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}/v1/mcp"


class CliError(Exception):
    """A refused command: printed as one sentence, exit status 1."""


def http_url(text: str) -> str:
    url = text.strip()
    parts = split_url(url)
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"'{shown(text)}' is not an absolute http(s) URL, such as "
            "https://mcp.example.com/v1/mcp."
        )
    return url


def split_url(url: str) -> SplitResult | None:
    """`url`'s parts; None for one holding a space or a control character, or one urlsplit
    cannot split (a bracket that opens no IPv6 address)."""
    if not plain(url):
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None


def plain(text: str) -> bool:
    """No space or control character: what is written into an editor's config or a URL."""
    return all(c.isprintable() and not c.isspace() for c in text)


def shown(text: str) -> str:
    """A user's text quoted in a message, its control characters escaped: it is printed to a
    terminal, which would act on them."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


# --- helpers ---------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def interactive() -> bool:
    return sys.stdin.isatty()


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def server_url(given: str | None) -> str:
    if given:
        return given
    from_environment = os.environ.get("SP00KY_MCP_URL")
    if not from_environment:
        return DEFAULT_URL
    try:
        return http_url(from_environment)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"SP00KY_MCP_URL: {exc}") from None


# What `serve` tells whoever started it once the server listens, and what it closes once the
# server stopped.
Notes = Callable[[McpServer], Awaitable[list[str]]]
Closer = Callable[[], Awaitable[None]]


def digits(text: str) -> bool:
    """ASCII digits only, spaces around allowed: `isdigit` also takes "²" (which int refuses)
    and "٣" or a full-width 3 (which it reads as 3)."""
    return text.strip().isascii() and text.strip().isdigit()
