"""`spky mcp …`: a thin shell over the embedding API, the accounts and the editor configs.

Every command is scriptable: `--json` output, exit status 0 on success, 1 on a refused
operation (with a one-sentence message on stderr), 2 on bad usage, and no prompt unless
standard input is a terminal.  When the reader of standard output goes away (`spky mcp tokens
| head -1`), the command stops quietly with status 141, as a program killed by SIGPIPE does, so
that `set -o pipefail` scripts see the same status as with any other command.
"""

from __future__ import annotations

import argparse
import errno
import gc
import getpass
import importlib.metadata
import importlib.util
import ipaddress
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.abc
import orjson

from ..engine import tracing
from ..engine.config import Limits, ServerConfig
from ..engine.context import Principal
from ..engine.errors import HttpError, ToolError
from ..engine.forwarded import network_text
from ..engine.h1 import HttpRequest
from ..engine.keys import KeyRing
from ..engine.ops import JsonFormatter
from ..engine.ports import Ports
from ..engine.server import McpServer, anonymous
from ..engine.transport import LOOPBACK_HOSTS
from ..product import narrowing, scopes, tokens
from ..product.accounts import (
    DEFAULT_TOKEN_DAYS,
    AccountError,
    Accounts,
    AuditEntry,
    TokenRecord,
    User,
    default_email,
)
from ..product.secretbox import KEY_FILE_ENV, KeyFileError, load_box
from ..product.shared import SharedState, SharedStateError, connect_shared, redis_url
from ..product.signing import FileKeyRing
from ..product.store import Store, StoreError, database_url, default_data_dir, open_store
from ..product.store.sqlite import DB_NAME
from ..product.tools import all_specs
from . import editors, settings, workers

if TYPE_CHECKING:
    from ..product.app import Product

DEFAULT_PORT = 8765
DEFAULTS = Limits()
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}/v1/mcp"


class CliError(Exception):
    """A refused command: printed as one sentence, exit status 1."""


# --- argument types: a bad value is a usage error (status 2), as argparse reports it --------


def tcp_port(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port; use 0 to 65535.")
    return int(text)


def http_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an absolute http(s) URL, such as https://mcp.example.com/v1/mcp."
        )
    return text.strip()


def public_url(text: str) -> str:
    """The base URL clients reach the server at; the endpoint path is added to it, so a URL
    given with that path already is taken without it."""
    parts = urlsplit(text.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an absolute http(s) URL, such as https://mcp.example.com."
        )
    base = text.strip().rstrip("/")
    return base.removesuffix(ServerConfig().endpoint) or base


def web_origin(text: str) -> str:
    parts = urlsplit(text.strip())
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
    ):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an origin; use scheme://host[:port], such as https://app.example.com."
        )
    return text.strip().rstrip("/")


def host_name(text: str) -> str:
    # Host headers are compared without their port, so a name given with a scheme, a port
    # or a path would never match and every request would be refused.
    name = text.strip()
    if not name or "/" in name or name.count(":") == 1:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a host name; give the name alone, such as mcp.example.com "
            "(no scheme, port or path)."
        )
    return name


def proxy_network(text: str) -> str:
    try:
        return network_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def bind_address(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an address is needed, such as 127.0.0.1 or 0.0.0.0.")
    return text.strip()


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number above 0.")
    return value


def positive_count(text: str) -> int:
    if not text.strip().isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number above 0.")
    return int(text)


def count(text: str) -> int:
    if not text.strip().isascii() or not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number (0 or more).")
    return int(text)


def version() -> str:
    try:
        return importlib.metadata.version("sp00ky-mcp")
    except importlib.metadata.PackageNotFoundError:
        # Run from a source tree that was never installed.
        from .. import __version__

        return __version__


# --- arguments -------------------------------------------------------------------------------


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_location_arguments(parser)
    parser.add_argument(
        "--user",
        default=None,
        metavar="EMAIL",
        help="the acting user on the embedded store (default: you@localhost)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the data lives: the embedded store's directory, or a PostgreSQL database."""
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the embedded store's directory (default: $SP00KY_MCP_DATA_DIR "
        "or the platform's user data directory)",
    )
    add_database_argument(parser)
    add_secret_key_argument(parser)


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="keep the data in PostgreSQL instead, e.g. postgresql://user@host/sp00ky "
        "(default: $SP00KY_MCP_DATABASE_URL; needs pip install 'sp00ky-mcp[postgres]')",
    )


def add_secret_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-key-file",
        default=None,
        metavar="PATH",
        help="the key that encrypts stored secrets, mode 0600 (default: "
        "$SP00KY_MCP_SECRET_KEY_FILE, else secret.key in the data directory)",
    )


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="share sessions and quotas with other replicas on this Redis, e.g. "
        "redis://redis.internal:6379/0 (default: $SP00KY_MCP_REDIS_URL; needs "
        "pip install 'sp00ky-mcp[redis]')",
    )
    parser.add_argument(
        "--workers",
        type=positive_count,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port (N > 1 needs --redis-url)",
    )
    # Set by `--workers` for the processes it starts: bind with SO_REUSEPORT, say nothing.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_listening_arguments(parser)
    parser.add_argument("--data-dir", default=None, help="where the embedded store lives")
    add_database_argument(parser)
    add_secret_key_argument(parser)
    add_shared_arguments(parser)
    add_sign_in_arguments(parser)
    add_browser_arguments(parser)
    add_serving_arguments(parser)
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help='a TOML file of settings (keys as the options: log-level = "debug"); flags win '
        "over SP00KY_MCP_* variables, which win over the file",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the settings in effect and exit"
    )


def add_listening_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the server listens."""
    parser.add_argument(
        "--host",
        type=bind_address,
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any other than loopback belongs behind a "
        "TLS proxy",
    )
    parser.add_argument(
        "--port", type=tcp_port, default=DEFAULT_PORT, help="TCP port (0: any free)"
    )


def add_sign_in_arguments(parser: argparse.ArgumentParser) -> None:
    """The URL clients use, OAuth sign-in, and the proxies whose word on clients counts."""
    parser.add_argument(
        "--public-url",
        type=public_url,
        default=None,
        help="the https URL clients use, if proxied (e.g. https://mcp.example.com)",
    )
    parser.add_argument(
        "--no-oauth",
        dest="oauth",
        action="store_false",
        help="no OAuth sign-in: only tokens minted with `spky mcp token` are accepted",
    )
    parser.add_argument(
        "--oauth-private-clients",
        action="store_true",
        help="fetch OAuth client metadata documents from private and loopback addresses, "
        "over http too (development only)",
    )
    parser.add_argument(
        "--trusted-proxy",
        type=proxy_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="a proxy (address or network) whose X-Forwarded-For names the client, for limits "
        "kept per address (repeatable)",
    )


def add_browser_arguments(parser: argparse.ArgumentParser) -> None:
    """Which pages and names browsers may reach the server from (DNS rebinding, CORS)."""
    parser.add_argument(
        "--allowed-origin",
        type=web_origin,
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an Origin browsers may call from (repeatable)",
    )
    parser.add_argument(
        "--allowed-host",
        type=host_name,
        action="append",
        default=[],
        metavar="HOST",
        help="a Host header value to accept (repeatable)",
    )


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """What is served, on which loop, and how much one token or one address may ask for."""
    parser.add_argument(
        "--profile",
        choices=("product", "conformance"),
        default="product",
        help="'conformance' serves the official suite's fixtures, without auth, on loopback only",
    )
    add_observing_arguments(parser)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop; uvloop is faster, and comes with `pip install 'sp00ky-mcp[uvloop]'`",
    )
    parser.add_argument(
        "--rate-per-minute",
        type=positive_number,
        default=DEFAULTS.rate_per_minute,
        metavar="N",
        help=f"requests a token may make per minute (default {DEFAULTS.rate_per_minute:g})",
    )
    parser.add_argument(
        "--rate-burst",
        type=positive_count,
        default=DEFAULTS.rate_burst,
        metavar="N",
        help=f"requests a token may make at once (default {DEFAULTS.rate_burst})",
    )
    parser.add_argument(
        "--max-connections-per-peer",
        type=count,
        default=DEFAULTS.max_connections_per_peer,
        metavar="N",
        help="connections one client address may hold (default "
        f"{DEFAULTS.max_connections_per_peer}; 0: no bound, e.g. behind a proxy)",
    )
    parser.add_argument(
        "--user",
        default=None,
        metavar="EMAIL",
        help="who a first-run token is minted for (default: you@localhost)",
    )


def add_observing_arguments(parser: argparse.ArgumentParser) -> None:
    """What the server tells an operator: its log lines and its metrics."""
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="info and debug write one access line per request and one audit line per tool call",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines for people (text) or one JSON object per line (json)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics on the MCP port (unauthenticated)",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="OpenTelemetry spans for requests and tool calls (pip install 'sp00ky-mcp[otel]'; "
        "exported as the OTEL_* variables and the SDK say)",
    )
    parser.add_argument(
        "--metrics-port",
        type=tcp_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at /metrics on this port, on loopback only",
    )


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--read-only", action="store_true", help="shortcut for mcp:read")
    parser.add_argument("--scopes", default=None, help="comma-separated scopes; skips the picker")
    parser.add_argument("--name", default=None, help="a label to tell tokens apart")
    parser.add_argument(
        "--expires-in",
        default=f"{DEFAULT_TOKEN_DAYS}d",
        help="e.g. 30d, 12h, or 'never' (default 90d)",
    )
    parser.add_argument(
        "--install", action="store_true", help="register the server with an editor right after"
    )
    parser.add_argument(
        "--client",
        choices=editors.CLIENTS,
        default=None,
        help="which editor to register with (implies --install)",
    )
    parser.add_argument(
        "--yes", action="store_true", help="non-interactive (read-only unless --scopes is given)"
    )
    parser.add_argument(
        "--url", type=http_url, default=None, help=f"the server URL (default {DEFAULT_URL})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spky", description="Sp00ky Cloud command line.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # A bare `spky` or `spky mcp` prints the help of that level and exits 0.
    parser.set_defaults(help_of=parser, command=None)
    top = parser.add_subparsers(dest="area")
    mcp = top.add_parser("mcp", help="the Sp00ky MCP server and its tokens")
    mcp.set_defaults(help_of=mcp)
    commands = mcp.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the MCP server")
    add_serve_arguments(serve)
    serve.set_defaults(settings_of=serve)
    add_token_arguments(commands.add_parser("token", help="mint an MCP token"))
    add_store_arguments(commands.add_parser("tokens", help="list MCP tokens"))
    add_account_commands(commands)
    revoke = commands.add_parser("revoke", help="revoke an MCP token")
    add_store_arguments(revoke)
    revoke.add_argument("token", metavar="ID|NAME")
    add_install_command(commands)
    check = commands.add_parser("doctor", help="check the connection from this terminal")
    check.add_argument(
        "--url", type=http_url, default=None, help=f"the server URL (default {DEFAULT_URL})"
    )
    check.add_argument("--token", default=None, help="default: $SP00KY_MCP_TOKEN")
    rotate = commands.add_parser(
        "rotate-key", help="encrypt every stored secret under a new key and retire the old one"
    )
    add_location_arguments(rotate)
    add_location_arguments(
        commands.add_parser("migrate", help="bring the store's schema up to this version's")
    )
    return parser


def add_account_commands(commands: Any) -> None:
    """What a user reads and answers of their account: invitations, stdio, audit records."""
    invitations = commands.add_parser(
        "invitations", help="see, accept or decline your team invitations"
    )
    add_store_arguments(invitations)
    invitations.add_argument(
        "answer", nargs="?", choices=("accept", "decline"), help="answer one invitation"
    )
    invitations.add_argument("invitation", nargs="?", metavar="ID", help="the invitation's id")
    stdio = commands.add_parser(
        "stdio", help="serve over standard input and output, with the token in $SP00KY_MCP_TOKEN"
    )
    add_location_arguments(stdio)
    user = commands.add_parser("user", help="set the password a user signs in with (OAuth)")
    add_location_arguments(user)
    user.add_argument("--json", action="store_true", help="print JSON for scripts")
    user.add_argument("action", choices=("passwd",))
    user.add_argument("email", metavar="EMAIL")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of a prompt",
    )
    audit = commands.add_parser("audit", help="read the audit records of your tool calls")
    add_store_arguments(audit)
    audit.add_argument("--token", default=None, metavar="ID|NAME", help="one token's calls only")
    audit.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="from a moment on: an ISO date or time (UTC unless it says), or an age (e.g. 2h, 7d)",
    )


def add_install_command(commands: Any) -> None:
    install = commands.add_parser("install", help="register the server with an editor")
    install.add_argument("--client", choices=editors.CLIENTS, required=True)
    install.add_argument("--token", default=None, help="default: $SP00KY_MCP_TOKEN or a prompt")
    install.add_argument(
        "--url", type=http_url, default=None, help=f"the server URL (default {DEFAULT_URL})"
    )
    install.add_argument(
        "--project",
        action="store_true",
        help="register for this project (Claude Code: project scope; Cursor: "
        ".cursor/mcp.json here; VS Code: always the workspace), the token read from "
        "$SP00KY_MCP_TOKEN rather than written",
    )
    install.add_argument(
        "--stdio",
        action="store_true",
        help="the editor starts `spky mcp stdio` itself (token in its environment), no URL",
    )
    install.add_argument(
        "--oauth",
        action="store_true",
        help="register the URL alone: the editor signs you in with OAuth, no token written",
    )
    install.add_argument(
        "--read-only", action="store_true", help="the editor sees the read tools only"
    )
    install.add_argument(
        "--toolsets",
        default=None,
        metavar="A,B",
        help=f"the editor sees these areas only: {', '.join(narrowing.TOOLSETS)}",
    )
    install.add_argument(
        "--tools", default=None, metavar="T,U", help="the editor sees these tools only"
    )


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


MAX_EXPIRY_DAYS = 3650


def parse_expiry(text: str) -> float | None:
    """Days until expiry, or None for never."""
    if text.strip().lower() == "never":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise CliError(f"--expires-in '{text}' is not a duration; use e.g. 30d, 12h, 2w or never.")
    amount, unit = int(match.group(1)), match.group(2)
    days = amount * {"h": 1 / 24, "d": 1, "w": 7}[unit]
    if days > MAX_EXPIRY_DAYS:
        raise CliError(
            f"--expires-in '{text}' is more than {MAX_EXPIRY_DAYS} days; use never for a token "
            "that does not expire."
        )
    return days


R = TypeVar("R")


async def open_cli_store(args: argparse.Namespace) -> Store:
    try:
        return await open_store(args.data_dir, args.secret_key_file, args.database_url)
    except StoreError as exc:
        raise CliError(str(exc)) from None


def with_accounts(
    args: argparse.Namespace, work: Callable[[Accounts, User], Awaitable[R]]
) -> tuple[R, User]:
    """Runs `work` for the acting user (created on first use) on the command's store."""

    async def session() -> tuple[R, User]:
        store = await open_cli_store(args)
        try:
            accounts = Accounts(store)
            user = await accounts.ensure_user(args.user or default_email())
            return await work(accounts, user), user
        except (StoreError, AccountError) as exc:
            raise CliError(str(exc)) from None
        finally:
            await store.close()

    return anyio.run(session)


def with_existing_accounts(
    args: argparse.Namespace, work: Callable[[Accounts, User], Awaitable[R]]
) -> tuple[R, User]:
    """Listing and revoking read a store that exists; they never create one (a mistyped
    --data-dir would otherwise list nothing, and leave an empty store behind)."""
    require_store(args)
    return with_accounts(args, work)


def require_store(args: argparse.Namespace) -> None:
    if database_url_of(args) is not None:
        return
    directory = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    if not (directory / DB_NAME).is_file():
        raise CliError(
            f"There is no token store in {directory}; pass the --data-dir that "
            "`spky mcp token` and `spky mcp serve` use."
        )


def database_url_of(args: argparse.Namespace) -> str | None:
    try:
        return database_url(getattr(args, "database_url", None))
    except StoreError as exc:
        raise CliError(str(exc)) from None


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypts every stored secret under a new key (see `Store.rotate_secret_key`)."""
    require_store(args)

    async def rotate() -> tuple[int, str]:
        store = await open_cli_store(args)
        try:
            count = await store.rotate_secret_key()
            return count, str(store.secrets.path)
        except StoreError as exc:
            raise CliError(str(exc)) from None
        finally:
            await store.close()

    count, path = anyio.run(rotate)
    say(
        f"Rotated the secret key in {path}: {count} stored secret values are "
        "now encrypted under the new key, and the old key is gone. Back up the key file now."
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Opening a store applies its migrations; this says which it applied."""

    async def migrate() -> tuple[list[int], int, str]:
        store = await open_cli_store(args)
        try:
            return store.applied_at_open, await store.schema_version(), store.describe
        finally:
            await store.close()

    applied, version, where = anyio.run(migrate)
    if applied:
        steps = ", ".join(map(str, applied))
        say(f"Migrated {where} to schema version {version} (applied {steps}).")
    else:
        say(f"{where} is already at schema version {version}; nothing to do.")
    return 0


def token_row(record: TokenRecord, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "token": tokens.masked(record.hint),
        "scopes": list(record.scopes),
        "created_at": iso(record.created_at),
        "expires_at": iso(record.expires_at),
        "last_used_at": iso(record.last_used_at),
        "status": record.status(now),
        # Minted here, or issued to a client by OAuth sign-in (named after the client).
        "issued_by": "sign-in" if record.grant_id is not None else "cli",
    }


# --- token -----------------------------------------------------------------------------------


def can_ask(args: argparse.Namespace) -> bool:
    """Whether a question may be put: a terminal, no --yes, and no --json (whose standard
    output is for the JSON only)."""
    return interactive() and not args.yes and not args.json


def pick_scopes(args: argparse.Namespace) -> tuple[str, ...]:
    if args.scopes is not None:
        return given_scopes(args.scopes, args.read_only)
    if args.read_only or not can_ask(args):
        return scopes.DEFAULT
    return prompt_scopes()


def given_scopes(text: str, read_only: bool) -> tuple[str, ...]:
    if not any(part.strip() for part in text.split(",")):
        raise CliError("--scopes is empty; name at least one scope, e.g. --scopes mcp:read.")
    chosen = scopes.parse(text)
    writes = [s for s in chosen if s == scopes.MCP_FULL or s in scopes.WRITE_SCOPES]
    if read_only and writes:
        raise CliError(
            f"--read-only contradicts the write scope{'s' if len(writes) > 1 else ''} "
            f"{', '.join(writes)} in --scopes; drop one or the other."
        )
    return chosen


def prompt_scopes() -> tuple[str, ...]:
    say("Pick scopes (numbers or names, comma-separated; Enter for read-only):")
    for number, scope in enumerate(scopes.VALID, 1):
        say(f"  {number:2}. {scope:<20} {scope_help(scope)}")
    answer = input("Scopes [mcp:read]: ").strip()
    chosen = [
        scopes.VALID[int(p) - 1]
        if p.strip().isdigit() and 0 < int(p) <= len(scopes.VALID)
        else p.strip()
        for p in answer.split(",")
        if p.strip()
    ]
    return scopes.parse(chosen) if chosen else scopes.DEFAULT


def scope_help(scope: str) -> str:
    if scope == scopes.MCP_READ:
        return "every *:read scope"
    if scope == scopes.MCP_FULL:
        return "every read and write scope (not secrets:reveal)"
    return scopes.GRANTS[scope]


def cmd_token(args: argparse.Namespace) -> int:
    # Everything that can be refused is checked before the token exists, so that a refusal
    # never leaves a minted token behind.
    days = parse_expiry(args.expires_in)
    url = server_url(args.url)
    given_name = token_name(args.name)
    refuse_unaskable_client(args)
    try:
        chosen = pick_scopes(args)
    except scopes.UnknownScope as exc:
        raise CliError(str(exc)) from None

    async def mint(accounts: Accounts, user: User) -> tuple[TokenRecord, str]:
        name = given_name or await dated_name(accounts, user)
        await refuse_duplicate(accounts, user, name)
        return await accounts.mint(user, name, chosen, days)

    (record, secret), user = with_accounts(args, mint)
    if args.json:
        emit_json(
            {
                "id": record.id,
                "token": secret,
                "name": record.name,
                "scopes": list(record.scopes),
                "created_at": iso(record.created_at),
                "expires_at": iso(record.expires_at),
                "user": user.email,
                "url": url,
            }
        )
    else:
        show_new_token(record, secret, user)
    return install_after_mint(args, url, secret, record)


def token_name(given: str | None) -> str | None:
    if given is None:
        return None
    if not given.strip():
        raise CliError("--name is blank; give the token a label, or leave --name out.")
    if not given.isprintable():
        raise CliError("--name holds a line break or a control character; use plain text.")
    return given.strip()


async def dated_name(accounts: Accounts, user: User) -> str:
    """`token-<UTC time>`, with a suffix when a live token already has that name."""
    taken = await live_names(accounts, user)
    stem = f"token-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    name = stem
    while name in taken:
        suffix += 1
        name = f"{stem}-{suffix}"
    return name


async def live_names(accounts: Accounts, user: User) -> dict[str, str]:
    """Name to id of the tokens not revoked: the ones `spky mcp revoke NAME` would match."""
    return {t.name: t.id for t in await accounts.list_tokens(user) if t.revoked_at is None}


async def refuse_duplicate(accounts: Accounts, user: User, name: str) -> None:
    existing = (await live_names(accounts, user)).get(name)
    if existing is not None:
        raise CliError(
            f"{user.email} already has a token named '{name}' ({existing}); pick another "
            f"--name, or revoke that one first (spky mcp revoke {existing})."
        )


def refuse_unaskable_client(args: argparse.Namespace) -> None:
    """--install with no --client is answered by asking; where nothing can be asked, no
    editor is picked on the user's behalf."""
    if args.install and args.client is None and not can_ask(args):
        raise CliError(
            "--install needs --client claude|cursor|vscode when nothing can be asked "
            "(no terminal, --yes or --json); nothing was minted."
        )


def install_after_mint(args: argparse.Namespace, url: str, secret: str, record: TokenRecord) -> int:
    """The token exists from here on: a failure or a cancel says so instead of claiming that
    nothing changed."""
    kept = (
        f"the token '{record.name}' ({record.id}) was minted all the same; register it with "
        "`spky mcp install`, or revoke it with `spky mcp revoke`."
    )
    try:
        return offer_install(args, url, secret)
    except (KeyboardInterrupt, EOFError):
        raise CliError(f"Stopped before registering an editor; {kept}") from None
    except CliError as exc:
        raise CliError(f"{exc} Not registered: {kept}") from None


def show_new_token(record: TokenRecord, secret: str, user: User) -> None:
    say(
        f"Token '{record.name}' for {user.email} ({', '.join(record.scopes)}), "
        f"expires {iso(record.expires_at) or 'never'}:"
    )
    say("")
    say(f"  {secret}")
    say("")
    say(
        "This is the only time the full token is shown. Store it like a password; if you lose "
        "it, revoke it (spky mcp revoke) and mint a new one."
    )


def offer_install(args: argparse.Namespace, url: str, secret: str) -> int:
    # --client names the editor to register with, so it asks for the registration too.
    wants = args.install or args.client is not None
    if not wants and can_ask(args):
        answer = input("Register the server with your editor now? [Y/n] ").strip().lower()
        wants = answer in ("", "y", "yes")
    if not wants:
        if not args.json:
            say("To add it to Claude Code later:")
            say(f"  {editors.claude_command_text(url, secret)}")
        return 0
    # Without --client a question can be put here (refuse_unaskable_client saw to that); the
    # claude CLI on the PATH answers it, as the product page promises.
    client = args.client or ("claude" if shutil.which("claude") else ask_client())
    return install(client, url, secret, project=False, quiet=args.json)


def ask_client() -> str:
    while True:
        answer = input("Which editor? [claude/cursor/vscode] ").strip().lower()
        if answer in editors.CLIENTS:
            return answer
        say(f"'{answer}' is not one of claude, cursor or vscode.")


# --- tokens and revoke -----------------------------------------------------------------------


def cmd_tokens(args: argparse.Namespace) -> int:

    async def listed(accounts: Accounts, user: User) -> list[dict[str, Any]]:
        now = accounts.clock()
        return [token_row(r, now) for r in await accounts.list_tokens(user)]

    rows, user = with_existing_accounts(args, listed)
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        say(f"No MCP tokens for {user.email}; mint one with `spky mcp token`.")
        return 0
    say(
        f"{'ID':<21} {'NAME':<20} {'TOKEN':<19} {'STATUS':<8} {'EXPIRES':<21} "
        f"{'LAST USED':<21} SCOPES"
    )
    for row in rows:
        say(
            f"{row['id']:<21} {row['name'][:20]:<20} {row['token']:<19} {row['status']:<8} "
            f"{row['expires_at'] or 'never':<21} {row['last_used_at'] or '-':<21} "
            f"{','.join(row['scopes'])}"
        )
    return 0


def parse_since(text: str, now: float) -> float:
    """A moment from `--since`: an age back from now (30m, 2h, 7d, 2w) or an ISO date/time."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text.lower())
    if match:
        seconds = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now - int(match.group(1)) * seconds
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since '{text}' is neither an age nor a date; use e.g. 2h, 7d, 2026-12-01 or "
            "2026-12-01T09:30Z."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def audit_row(entry: AuditEntry, names: dict[str, str]) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "token_id": entry.token_id,
        "token_name": names.get(entry.token_id),
        "tenant_id": entry.tenant_id,
        "tool": entry.tool,
        "outcome": entry.outcome,
        "duration_ms": round(entry.duration_ms, 3),
        "arguments_digest": entry.arguments_digest,
    }


def cmd_audit(args: argparse.Namespace) -> int:

    async def read(accounts: Accounts, user: User) -> list[dict[str, Any]]:
        since = None if args.since is None else parse_since(args.since, accounts.clock())
        names = {t.id: t.name for t in await accounts.list_tokens(user)}
        entries = await accounts.audit_trail(user, args.token, since)
        return [audit_row(entry, names) for entry in entries]

    rows, user = with_existing_accounts(args, read)
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        say(f"No audit records for {user.email} yet.")
        return 0
    say(f"{'AT':<21} {'TOKEN':<20} {'TOOL':<24} {'OUTCOME':<9} {'MS':>9}  TENANT")
    for row in rows:
        say(
            f"{row['at']:<21} {(row['token_name'] or row['token_id'])[:20]:<20} "
            f"{row['tool'][:24]:<24} {row['outcome']:<9} {row['duration_ms']:>9.1f}  "
            f"{row['tenant_id'] or '-'}"
        )
    return 0


def cmd_invitations(args: argparse.Namespace) -> int:
    """The invitations addressed to you, or your answer to one (`accept ID`, `decline ID`)."""
    if args.answer is not None and args.invitation is None:
        raise CliError(f"Say which invitation: spky mcp invitations {args.answer} ID.")

    async def work(accounts: Accounts, user: User) -> Any:
        from ..product.cloud import teams as team_ops
        from ..product.cloud.base import Cloud

        cloud = Cloud(accounts.store, accounts)
        try:
            if args.answer == "accept":
                return await team_ops.accept_invitation(cloud, user.id, args.invitation)
            if args.answer == "decline":
                return await team_ops.decline_invitation(cloud, user.id, args.invitation)
            return await team_ops.invitations_of(cloud, user.id)
        except ToolError as exc:
            raise CliError(f"{exc.message} `spky mcp invitations` lists yours.") from None

    result, user = with_existing_accounts(args, work)
    if args.json:
        emit_json(result)
    elif args.answer is not None:
        done = "Joined" if args.answer == "accept" else "Declined the invitation to"
        say(
            f"{done} team {result['tenant_id']}"
            + (f" as {result['role']}." if "role" in result else ".")
        )
    elif not result:
        say(f"No invitations for {user.email}.")
    else:
        for row in result:
            invited = row["invited_at"]
            say(f"{row['invitation_id']}  {row['team']} ({row['role']}), invited {invited}")
        say("Answer with `spky mcp invitations accept ID` or `spky mcp invitations decline ID`.")
    return 0


def cmd_stdio(args: argparse.Namespace) -> int:
    """The same catalogue, scopes, redaction and audit as over HTTP, for a local client that
    starts this command itself; standard output carries MCP messages only."""
    token = os.environ.get("SP00KY_MCP_TOKEN", "").strip()
    if not tokens.well_formed(token):
        raise CliError(
            "spky mcp stdio takes its token from SP00KY_MCP_TOKEN, which "
            + ("is not set" if not token else "does not hold an mcp_live_ token")
            + "; mint one with `spky mcp token` and set it in the client's config."
        )
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    anyio.run(serve_stdio, args, token)
    return 0


async def serve_stdio(args: argparse.Namespace, token: str) -> None:
    from ..engine.stdio import StdioServer
    from ..product.app import build_product

    config = ServerConfig(data_dir=args.data_dir or os.environ.get("SP00KY_MCP_DATA_DIR"))
    store = await open_store(config.data_dir, args.secret_key_file, database_url_of(args))
    try:
        product = build_product(config, store)
        request = HttpRequest("POST", config.endpoint, "", {"authorization": f"Bearer {token}"})
        authenticate = product.server.service.authenticate

        async def principal() -> Principal:
            found = authenticate(request)
            return found if isinstance(found, Principal) else await found

        try:
            await principal()
        except HttpError as exc:
            raise CliError(f"SP00KY_MCP_TOKEN was refused: {exc.message}") from None
        limit = config.limits.max_body_bytes
        calls = config.limits.max_calls_per_token
        server = StdioServer(product.server.engine, principal, write_stdout, limit, calls)
        await server.serve(stdin_lines(limit))
        if product.server.on_stop is not None:
            await product.server.on_stop()  # the audit records written
    finally:
        await store.close()


async def stdin_lines(limit: int) -> AsyncIterator[bytes]:
    """Lines of standard input; one longer than `limit` is cut there (and refused)."""
    stream = sys.stdin.buffer
    while True:
        line: bytes = await anyio.to_thread.run_sync(stream.readline, limit + 1)
        if not line:
            return
        while len(line) > limit and not line.endswith(b"\n"):
            rest: bytes = await anyio.to_thread.run_sync(stream.readline, 65536)
            if not rest or rest.endswith(b"\n"):
                break
        yield line


async def write_stdout(data: bytes) -> None:
    def write() -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    await anyio.to_thread.run_sync(write)


def cmd_user(args: argparse.Namespace) -> int:
    password = new_password(args.password_stdin)
    args.user = args.email

    async def set_it(accounts: Accounts, user: User) -> None:
        await accounts.set_password(user, password)

    _, user = with_accounts(args, set_it)
    if args.json:
        emit_json({"user": user.email, "password": "set"})
    else:
        say(f"Password set for {user.email}; they can now sign in from an MCP client.")
    return 0


def new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not interactive():
        raise CliError("No terminal to ask for the password: pass --password-stdin.")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("The two passwords differ; nothing was changed.")
    return first


def cmd_revoke(args: argparse.Namespace) -> int:

    async def revoke(accounts: Accounts, user: User) -> TokenRecord:
        return await accounts.revoke(user, args.token)

    record, _ = with_existing_accounts(args, revoke)
    if args.json:
        emit_json({"id": record.id, "name": record.name, "status": "revoked"})
    else:
        say(f"Revoked token '{record.name}' ({record.id}); it is refused from the next request.")
    return 0


# --- install and doctor ----------------------------------------------------------------------


def token_for(given: str | None) -> str:
    from .doctor import pasted

    # A pasted token often comes with a trailing newline or spaces, or a `Bearer ` prefix.
    token = pasted(given or os.environ.get("SP00KY_MCP_TOKEN") or "")
    if token:
        return token
    if interactive():
        return pasted(getpass.getpass("MCP token (mcp_live_…): "))
    raise CliError("No token: pass --token or set SP00KY_MCP_TOKEN.")


def checked_token(given: str | None) -> str:
    """A token to write into an editor's config: one that cannot work is refused first."""
    from .doctor import local_diagnosis

    token = token_for(given)
    problem = local_diagnosis(token)
    if problem:
        raise CliError(problem)
    return token


def cursor_reference_reason(path: Path, project: bool) -> str | None:
    """Why the Cursor config at `path` gets ${env:SP00KY_MCP_TOKEN} instead of the token:
    a file that may be committed never holds one."""
    if project:
        return "a project's config may be committed"
    tree = editors.git_work_tree(path)
    return f"{path} is inside the git work tree {tree}" if tree else None


def install(client: str, url: editors.Where, token: str, project: bool, quiet: bool = False) -> int:
    out: Callable[[str], None] = (lambda _: None) if quiet else say
    try:
        if client == "claude":
            return install_claude(url, token, out, project)
        if client == "cursor":
            path = install_cursor(url, token, project, out)
        else:
            path = editors.vscode_path(Path.cwd())
            editors.write_private_json(path, editors.merge_vscode(editors.read_json(path), url))
            if not isinstance(url, editors.SignIn):
                out("VS Code will ask for the token when it starts the server.")
    except editors.EditorError as exc:
        raise CliError(str(exc)) from None
    out(f"Registered '{editors.SERVER_NAME}' in {path}.")
    return 0


def install_cursor(
    url: editors.Where, token: str, project: bool, out: Callable[[str], None]
) -> Path:
    path = editors.cursor_path(project, Path.home(), Path.cwd())
    reason = cursor_reference_reason(path, project)
    value = editors.CURSOR_TOKEN_REFERENCE if reason else token
    if isinstance(url, editors.SignIn):
        reason = None  # no token anywhere: the editor signs in
    editors.write_private_json(path, editors.merge_cursor(editors.read_json(path), url, value))
    if reason:
        out(
            f"Cursor reads the token from {editors.TOKEN_VARIABLE} ({reason}): export "
            f"{editors.TOKEN_VARIABLE}=mcp_live_… where Cursor starts."
        )
    return path


def install_claude(
    url: editors.Where, token: str, out: Callable[[str], None], project: bool = False
) -> int:
    """At user scope with the token; at project scope (`.mcp.json`, which may be committed)
    with a reference to SP00KY_MCP_TOKEN that Claude Code expands."""
    scope = "project" if project else "user"
    if isinstance(url, editors.SignIn):
        command = editors.claude_command(url, "", scope)
        by_hand = shlex.join(command)
    elif project:
        command = editors.claude_command(url, editors.CLAUDE_TOKEN_REFERENCE, scope)
        by_hand = shlex.join(command)
    else:
        command = editors.claude_command(url, token)
        by_hand = editors.claude_command_from_environment(url)
    if shutil.which("claude") is None:
        out(
            "The claude CLI is not on your PATH; once it is, run this with "
            f"{editors.TOKEN_VARIABLE} set to the token:"
        )
        out(f"  {by_hand}")
        return 0
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True)
    except OSError as exc:
        raise CliError(f"Cannot run claude ({exc.strerror}); run it yourself: {by_hand}") from None
    if done.returncode != 0:
        raise CliError(f"`claude mcp add` failed; run it yourself: {by_hand}")
    reads = f"; it reads the token from {editors.TOKEN_VARIABLE}" if project else ""
    out(
        f"Registered '{editors.SERVER_NAME}' with Claude Code ({scope} scope{reads}). "
        "Verify with `claude mcp list`."
    )
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    address = narrowed_url(server_url(args.url), args.read_only, args.toolsets, args.tools)
    if args.oauth:
        return install_signed_in(args, address)
    url: editors.Where = address
    if args.stdio:
        url = stdio_where(args)
    # VS Code prompts for the token itself, and a Cursor config that may be committed refers
    # to the environment: neither needs (nor writes) the token.
    cursor = editors.cursor_path(args.project, Path.home(), Path.cwd())
    needs_token = (args.client == "claude" and not args.project) or (
        args.client == "cursor" and cursor_reference_reason(cursor, args.project) is None
    )
    token = checked_token(args.token) if needs_token else ""
    return install(args.client, url, token, args.project)


def install_signed_in(args: argparse.Namespace, url: str) -> int:
    """By URL alone: the editor signs the user in with OAuth on the server's first 401."""
    if args.stdio or args.token:
        raise CliError(
            "--oauth registers the URL alone, for the editor to sign in: drop --stdio and --token."
        )
    status = install(args.client, editors.SignIn(url), "", args.project)
    say(
        "The editor signs you in to Sp00ky in your browser when it first connects (set your "
        "password with `spky mcp user passwd EMAIL` on the server)."
    )
    return status


def stdio_where(args: argparse.Namespace) -> editors.Stdio:
    """`spky mcp stdio` by the path of this spky (an editor's PATH may not hold it)."""
    if args.read_only or args.toolsets or args.tools or args.url:
        raise CliError(
            "--stdio starts the server for the editor, with no URL to narrow: drop --url, "
            "--read-only, --toolsets and --tools, and mint a token with fewer scopes instead."
        )
    spky = shutil.which("spky")
    start = (spky,) if spky else (sys.executable, "-m", "sp00ky_mcp")
    return editors.Stdio((*start, "mcp", "stdio"))


def narrowed_url(url: str, read_only: bool, toolsets: str | None, tools: str | None) -> str:
    """The server URL with the narrowing an editor's connection asks for (checked here, so a
    mistyped name is refused now rather than by every request)."""
    asked: list[tuple[str, str]] = [("read_only", "true")] if read_only else []
    for name, given, known in (
        ("toolsets", toolsets, narrowing.TOOLSETS.keys()),
        ("tools", tools, {spec.name for spec in all_specs()}),
    ):
        if given is None:
            continue
        names = [n.strip() for n in given.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            choices = ", ".join(sorted(known)) if name == "toolsets" else "names from tools/list"
            raise CliError(
                f"--{name} '{given}' names {', '.join(unknown) or 'nothing'} unknown; "
                f"use {choices}."
            )
        asked.append((name, ",".join(names)))
    if not asked:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(asked, safe=",")


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor  # httpx is heavy; the server process never needs it

    # Without a token the check still runs, so the server's own diagnosis and the curl
    # command are printed.
    given = doctor.pasted(args.token or os.environ.get("SP00KY_MCP_TOKEN") or "")
    token = given or (token_for(None) if interactive() else "")
    return doctor.run(server_url(args.url), token, say)


# --- serve -----------------------------------------------------------------------------------


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        allowed_origins=tuple(args.allowed_origin),
        allowed_hosts=tuple(args.allowed_host),
        profile=args.profile,
        log_level=args.log_level,
        data_dir=args.data_dir or os.environ.get("SP00KY_MCP_DATA_DIR"),
        limits=Limits(
            rate_per_minute=args.rate_per_minute,
            rate_burst=args.rate_burst,
            max_connections_per_peer=args.max_connections_per_peer,
        ),
        reuse_port=getattr(args, "worker", False),
        metrics=args.metrics,
        metrics_port=args.metrics_port,
        access_log=args.log_level in ("debug", "info"),
        log_format=args.log_format,
        traces=args.otel,
        oauth=args.oauth,
        oauth_private_clients=args.oauth_private_clients,
        trusted_proxies=tuple(args.trusted_proxy),
    )


Notes = Callable[[McpServer], Awaitable[list[str]]]


async def no_notes(server: McpServer) -> list[str]:
    return []


Closer = Callable[[], Awaitable[None]]


async def nothing_to_close() -> None:
    return None


async def build_server(
    config: ServerConfig,
    user: str | None,
    key_file: str | None = None,
    url: str | None = None,
    redis: str | None = None,
) -> tuple[McpServer, Notes, Closer]:
    """The server, what to tell the person who started it once it listens, and what to close
    once it stopped (its store, its link to the shared state)."""
    if config.profile == "conformance":
        if config.host not in LOOPBACK_HOSTS and not config.host.startswith("127."):
            raise CliError(
                "The conformance profile has no authentication, so it only binds a "
                "loopback address; drop --host or use 127.0.0.1."
            )
        return await conformance_server(config, key_file, redis)
    from ..product.app import build_product

    store = await open_store(config.data_dir, key_file, url)
    shared: SharedState | None = None
    try:
        shared = await connect_replicas(config, key_file, url, redis)
        product = build_product(config, store, shared)
        user_record = await product.accounts.ensure_user(user or default_email())
    except (StoreError, AccountError) as exc:
        await close_all(store, shared)
        raise CliError(str(exc)) from None
    except BaseException:
        await close_all(store, shared)
        raise
    where = store_flags(config, url)

    # Behind a proxy, clients use the public URL, not the address bound here.
    async def notes(server: McpServer) -> list[str]:
        shown = config.url if config.public_url or server.port is None else server.url
        return await connect_notes(product, user_record, shown, where)

    return product.server, notes, lambda: close_all(store, shared)


async def conformance_server(
    config: ServerConfig, key_file: str | None, redis: str | None
) -> tuple[McpServer, Notes, Closer]:
    """The official suite's fixtures; as one replica of several when a Redis is named, with
    the signing keys of the key file every replica is given."""
    from ..engine.fixtures import conformance_catalogue

    catalogue = conformance_catalogue()
    chosen = redis_url(redis)
    if chosen is None:
        server = McpServer(config, catalogue, authenticate=anonymous())
        return server, no_notes, nothing_to_close
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if not path:
        raise CliError(
            "Conformance replicas that share state on Redis must share one signing key: pass "
            "--secret-key-file (or set SP00KY_MCP_SECRET_KEY_FILE)."
        )
    shared = await connect_replicas(config, path, None, chosen)
    assert shared is not None
    keys = file_key_ring(Path(path))
    ports = Ports(shared.sessions, shared.events, shared.bus, shared.quotas, keys)
    server = McpServer(
        config,
        catalogue,
        authenticate=anonymous(),
        ports=ports,
        background=[shared.link.keep_alive],
    )
    return server, no_notes, shared.close


def file_key_ring(path: Path) -> KeyRing:
    """The signing keys of the key file at `path` (made there by the first replica)."""
    try:
        box = load_box(path.expanduser(), ())
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    return FileKeyRing(lambda: box)


async def close_all(store: Store, shared: SharedState | None) -> None:
    with anyio.CancelScope(shield=True):
        if shared is not None:
            await shared.close()
        await store.close()


async def connect_replicas(
    config: ServerConfig, key_file: str | None, url: str | None, redis: str | None
) -> SharedState | None:
    """The state shared with other replicas, if a Redis is named.  Replicas on PostgreSQL may
    run on other machines, so they must be given one secret key file: it encrypts what they
    store and signs what they hand clients (on SQLite they share the data directory's)."""
    chosen = redis_url(redis)
    if chosen is None:
        return None
    if database_url(url) is not None and not (key_file or os.environ.get(KEY_FILE_ENV)):
        raise CliError(
            "Replicas that share state on Redis must share one secret key: pass "
            "--secret-key-file (or set SP00KY_MCP_SECRET_KEY_FILE) to a copy of the same key "
            "file on every replica."
        )
    try:
        return await connect_shared(chosen, config.limits)
    except SharedStateError as exc:
        raise CliError(str(exc)) from None


def store_flags(config: ServerConfig, url: str | None) -> str:
    """The flags that point another command at the store this server uses."""
    if database_url(url) is not None:
        return '--database-url "$SP00KY_MCP_DATABASE_URL"'
    return f"--data-dir {config.data_dir or default_data_dir()}"


def _uvloop_wanted(loop: str) -> bool:
    if loop != "uvloop":
        return False
    if importlib.util.find_spec("uvloop") is None:
        raise CliError(
            "uvloop is not installed: pip install 'sp00ky-mcp[uvloop]', or drop --loop uvloop."
        )
    return True


async def run_server(
    config: ServerConfig, args: argparse.Namespace, started: list[McpServer]
) -> None:
    try:
        server, notes, close = await build_server(
            config, args.user, args.secret_key_file, args.database_url, args.redis_url
        )
    except StoreError as exc:
        raise CliError(str(exc)) from None
    if args.worker:
        notes = no_notes  # the supervisor says them once, for all its workers
    started.append(server)
    try:
        await serve_until_stopped(server, notes)
    finally:
        await close()


async def serve_until_stopped(server: McpServer, notes: Notes) -> None:
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        # Signals are handled before the server says it listens: whoever waits for that line
        # may send SIGTERM at once, and must get a graceful stop, not the default death.
        await tasks.start(_stop_on_signal, server)
        # Everything built at start-up (modules, catalogue, schemas) lives as long as the
        # process: freezing it keeps the collector from rescanning it during requests.
        gc.collect()
        gc.freeze()
        say(f"sp00ky-mcp listening on {server.url}")
        for line in await notes(server):
            say(line)
        await server.wait_stopped()
        tasks.cancel_scope.cancel()


async def _stop_on_signal(
    server: McpServer, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            say("sp00ky-mcp shutting down")
            server.shutdown()
            return


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from(args)
    if config.traces and not tracing.available():
        raise CliError(
            "--otel needs OpenTelemetry: pip install 'sp00ky-mcp[otel]', or leave out --otel."
        )
    set_up_logging(config)
    options = {"use_uvloop": _uvloop_wanted(args.loop)}
    if args.workers > 1:
        return serve_workers(args, config)
    if not args.worker:
        warn_plain_http(config)
    started: list[McpServer] = []
    try:
        anyio.run(run_server, config, args, started, backend_options=options)
    except (OSError, BaseExceptionGroup) as exc:
        failure = bind_failure(exc)
        # Only a failure to bind (the port is still unknown) is the user's to fix; anything
        # later is a fault, and keeps its traceback.
        if (started and started[0].port is not None) or failure is None:
            raise
        raise CliError(listen_refusal(config, failure)) from None
    return 0


def set_up_logging(config: ServerConfig) -> None:
    handler = logging.StreamHandler()
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])


def serve_workers(args: argparse.Namespace, config: ServerConfig) -> int:
    """`--workers N`: N processes on one port, supervised (see `workers`)."""
    if redis_url(args.redis_url) is None:
        raise CliError(
            f"--workers {args.workers} needs --redis-url: the workers share sessions and "
            "quotas through Redis. Pass one, or serve with --workers 1."
        )
    if config.metrics_port is not None:
        raise CliError(
            "--metrics-port serves the metrics of one process, and --workers starts several: "
            "run one process per port for metrics on a port of their own, or leave out "
            "--metrics-port."
        )
    warn_plain_http(config)
    try:
        holder = workers.reserve_port(config.host, config.port)
    except OSError as exc:
        raise CliError(listen_refusal(config, exc)) from None
    with holder:
        config = replace(config, port=holder.getsockname()[1])
        notes = anyio.run(workers_notes, config, args)
        command = workers.worker_command(args.given, config.port)
        supervisor = workers.Supervisor(command, args.workers)
        anyio.run(supervise, supervisor, config, notes)
    return 1 if supervisor.failed else 0


async def workers_notes(config: ServerConfig, args: argparse.Namespace) -> list[str]:
    """What to tell whoever started the workers, checked and prepared before any starts:
    the store, Redis and the key answer, and a first run mints its token once."""
    server, notes, close = await build_server(
        config, args.user, args.secret_key_file, args.database_url, args.redis_url
    )
    try:
        return await notes(server)
    finally:
        await close()


async def supervise(supervisor: workers.Supervisor, config: ServerConfig, notes: list[str]) -> None:
    async with anyio.create_task_group() as tasks:
        await tasks.start(supervisor.run)
        if not supervisor.stopping:
            say(f"sp00ky-mcp listening on {config.url}")
            say(f"Workers: {supervisor.count} processes share the port and the state on Redis")
            for line in notes:
                say(line)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_plain_http(config: ServerConfig) -> None:
    """Bearer tokens cross the network in the clear unless a TLS proxy fronts the server."""
    https = (config.public_url or "").lower().startswith("https://")
    if not loopback(config.host) and not https:
        print(
            f"spky: warning: {config.host} is reachable from other machines and this server "
            "speaks plain HTTP; put it behind a TLS proxy and pass --public-url https://….",
            file=sys.stderr,
        )


def bind_failure(exc: BaseException) -> OSError | None:
    """The OSError a failed bind raised, from inside the task groups that wrap it."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return bind_failure(exc.exceptions[0])
    return None


def listen_refusal(config: ServerConfig, failure: OSError) -> str:
    where = f"{config.port} on {config.host}"
    if failure.errno == errno.EADDRINUSE:
        return f"Port {where} is already in use; stop the other server or pass --port."
    if failure.errno == errno.EACCES:
        return f"Port {where} needs privileges to bind; pass --port 1024 or above."
    if failure.errno == errno.EADDRNOTAVAIL:
        return f"{config.host} is not an address of this machine; pass another --host."
    reason = failure.strerror or str(failure)
    return f"Cannot listen on port {where}: {reason}; pass another --host or --port."


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "token": cmd_token,
    "tokens": cmd_tokens,
    "revoke": cmd_revoke,
    "user": cmd_user,
    "audit": cmd_audit,
    "stdio": cmd_stdio,
    "invitations": cmd_invitations,
    "install": cmd_install,
    "doctor": cmd_doctor,
    "rotate-key": cmd_rotate_key,
    "migrate": cmd_migrate,
}


SIGPIPE_STATUS = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(given)
    # What followed `serve`, for the processes `--workers` starts.
    args.given = given[given.index("serve") + 1 :] if "serve" in given else given
    if args.command is None:
        args.help_of.print_help()
        return 0
    try:
        if args.command == "serve":
            return serve_with_settings(args.settings_of, args)
        status = COMMANDS[args.command](args)
        # Flushed here, so that a reader gone away is caught below, not at interpreter exit.
        sys.stdout.flush()
        return status
    except CliError as exc:
        print(f"spky: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("spky: cancelled; nothing was changed.", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return reader_gone()


def serve_with_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`serve` with the settings its flags leave out taken from the environment and the
    config file; `--print-config` shows them instead."""
    try:
        args = settings.layered(parser, args, args.given, os.environ)
    except settings.SettingsError as exc:
        raise CliError(str(exc)) from None
    if args.print_config:
        say(settings.printed(parser, args))
        return 0
    return cmd_serve(args)


def reader_gone() -> int:
    """Standard output's reader went away: stop quietly.  Output still buffered goes to
    /dev/null, so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sp00ky-mcp", description="Run the Sp00ky MCP server.")
    add_serve_arguments(parser)
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    args.given = given
    try:
        return serve_with_settings(parser, args)
    except CliError as exc:
        print(f"sp00ky-mcp: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


async def connect_notes(product: Product, user: User, url: str, where: str) -> list[str]:
    """What someone who just started the server needs in order to connect.  On a store with
    no tokens at all, a read-only token is minted and shown this once.  `where`: the flags
    that point `spky mcp token` at the same store."""
    signing_in = sign_in_notes(product, user, url, where)
    if await product.accounts.list_tokens(user):
        return [
            f"Store: {product.store.describe} (user {user.email})",
            f"Mint a token:  spky mcp token {where} --url {url}",
            f"Check a token: spky mcp doctor --url {url} --token mcp_live_…",
            *signing_in,
        ]
    accounts = product.accounts
    record, secret = await accounts.mint(user, "first-run", scopes.DEFAULT, DEFAULT_TOKEN_DAYS)
    return [
        f"Store: {product.store.describe} (user {user.email})",
        f"First run: minted the read-only token '{record.name}' (shown only now; store it "
        "like a password):",
        f"  {secret}",
        "Connect Claude Code:",
        f"  {editors.claude_command_text(url, secret)}",
        f"Any MCP client: POST {url} with the header 'Authorization: Bearer {secret}'.",
        f"More tokens: spky mcp token {where} --url {url}",
        *signing_in,
    ]


def sign_in_notes(product: Product, user: User, url: str, where: str) -> list[str]:
    """How a client adds the server by URL alone, when the server signs users in."""
    if not product.server.config.oauth:
        return []
    return [
        f"Or add {url} alone to a client that signs in with OAuth (Claude Desktop, claude.ai, "
        "VS Code, Cursor, Claude Code); a user signs in with a password set by",
        f"  spky mcp user passwd {user.email} {where}".rstrip(),
    ]
