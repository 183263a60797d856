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
import importlib.util
import ipaddress
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ..engine import tracing
from ..engine.config import Limits, ServerConfig
from ..engine.forwarded import network_text
from ..engine.ops import JsonFormatter, TextFormatter
from ..engine.ports import Ports
from ..engine.server import McpServer, anonymous
from ..product import narrowing
from ..product.shared import redis_url
from ..product.tokens import DEFAULT_TOKEN_DAYS
from . import editors, settings, workers
from .common import (
    DEFAULT_PORT,
    DEFAULT_URL,
    CliError,
    Closer,
    Notes,
    digits,
    http_url,
    say,
    shown,
    split_url,
)

DEFAULTS = Limits()


# --- argument types: a bad value is a usage error (status 2), as argparse reports it --------


def tcp_port(text: str) -> int:
    if not digits(text) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port; use 0 to 65535.")
    return int(text)


def public_url(text: str) -> str:
    """The base URL clients reach the server at; the endpoint path is added to it, so a URL
    given with that path already is taken without it."""
    parts = split_url(text.strip())
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"'{shown(text)}' is not an absolute http(s) URL, such as https://mcp.example.com."
        )
    base = text.strip().rstrip("/")
    return base.removesuffix(ServerConfig().endpoint) or base


def web_origin(text: str) -> str:
    parts = split_url(text.strip())
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
    ):
        raise argparse.ArgumentTypeError(
            f"'{shown(text)}' is not an origin; use scheme://host[:port], such as https://app.example.com."
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
    if not digits(text) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number above 0.")
    return int(text)


def count(text: str) -> int:
    if not digits(text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number (0 or more).")
    return int(text)


def version() -> str:
    import importlib.metadata  # megabytes of the email package: only for --version

    try:
        return importlib.metadata.version("sp00ky-mcp")
    except importlib.metadata.PackageNotFoundError:
        # Run from a source tree that was never installed.
        from .. import __version__

        return __version__


class VersionAction(argparse.Action):
    """`--version`, the version looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


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
    parser.add_argument("--version", action=VersionAction)
    # A bare `spky` or `spky mcp` prints the help of that level and exits 0.
    parser.set_defaults(help_of=parser, command=None)
    top = parser.add_subparsers(dest="area")
    mcp = top.add_parser("mcp", help="the Sp00ky MCP server and its tokens")
    mcp.set_defaults(help_of=mcp)
    commands = mcp.add_subparsers(dest="command")
    # No abbreviated flags: a setting given as a flag must be recognised as given, so that
    # it wins over the environment and the config file (see `settings`).
    serve = commands.add_parser("serve", help="run the MCP server", allow_abbrev=False)
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


async def no_notes(server: McpServer) -> list[str]:
    return []


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
        if not loopback(config.host):
            raise CliError(
                "The conformance profile has no authentication, so it only binds a "
                "loopback address; drop --host or use 127.0.0.1."
            )
        return await conformance_server(config, key_file, redis)
    from .product_server import product_server

    return await product_server(config, user, key_file, url, redis)


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
    from ..product.secretbox import KEY_FILE_ENV
    from .replicas import file_key_ring, shared_state

    path = key_file or os.environ.get(KEY_FILE_ENV)
    if not path:
        raise CliError(
            "Conformance replicas that share state on Redis must share one signing key: pass "
            "--secret-key-file (or set SP00KY_MCP_SECRET_KEY_FILE)."
        )
    keys = file_key_ring(Path(path))
    shared = await shared_state(chosen, config.limits)
    ports = Ports(shared.sessions, shared.events, shared.bus, shared.quotas, keys)
    server = McpServer(
        config,
        catalogue,
        authenticate=anonymous(),
        ports=ports,
        background=[shared.link.keep_alive],
    )
    return server, no_notes, shared.close


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
    server, notes, close = await build_server(
        config, args.user, args.secret_key_file, args.database_url, args.redis_url
    )
    if args.worker:
        notes = no_notes  # the supervisor says them once, for all its workers
    started.append(server)
    try:
        await serve_until_stopped(server, notes, supervised=args.worker)
    finally:
        await close()


async def serve_until_stopped(server: McpServer, notes: Notes, supervised: bool = False) -> None:
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        # Signals are handled before the server says it listens: whoever waits for that line
        # may send SIGTERM at once, and must get a graceful stop, not the default death.
        await tasks.start(_stop_on_signal, server)
        if supervised:
            tasks.start_soon(workers.stop_when_orphaned, server.shutdown)
        # Everything built at start-up (modules, catalogue, schemas) lives as long as the
        # process: freezing it keeps the collector from rescanning it during requests.
        gc.collect()
        gc.freeze()
        gone = await _said_listening(server, notes)
        await server.wait_stopped()
        tasks.cancel_scope.cancel()
    if gone:  # outside the task group: `main` stops quietly with 141, as for any command
        raise BrokenPipeError


async def _said_listening(server: McpServer, notes: Notes) -> bool:
    """Says where to connect; True if nobody reads it any more (a pipe closed, a worker's
    supervisor killed outright), and the server is then stopped gracefully, as on SIGTERM,
    rather than ended by a traceback."""
    try:
        say(f"sp00ky-mcp listening on {server.url}")
        for line in await notes(server):
            say(line)
    except BrokenPipeError:
        server.shutdown()
        return True
    return False


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
    if config.metrics_port and config.metrics_port == config.port:
        raise CliError("--metrics-port is the port the server itself listens on; pass another.")
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
        if failure is None:
            raise
        if not started or started[0].port is None:
            raise CliError(listen_refusal(config, failure)) from None
        if config.metrics_port is not None and started[0].metrics_port is None:
            raise CliError(metrics_refusal(config, failure)) from None
        raise
    return 0


def set_up_logging(config: ServerConfig) -> None:
    handler = logging.StreamHandler()
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    # The HTTP client's own line per request (a client document fetched) would repeat what a
    # remote server answered; the server says what matters of it in its own words.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))


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
        warning = (
            f"{config.host} is reachable from other machines and this server speaks plain "
            "HTTP; put it behind a TLS proxy and pass --public-url https://…."
        )
        if config.log_format == "json":  # every line of standard error is then JSON
            logging.getLogger("sp00ky_mcp.serve").warning(warning)
        else:
            print(f"spky: warning: {warning}", file=sys.stderr)


def bind_failure(exc: BaseException) -> OSError | None:
    """The OSError a failed bind raised, from inside the task groups that wrap it."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return bind_failure(exc.exceptions[0])
    return None


def metrics_refusal(config: ServerConfig, failure: OSError) -> str:
    where = f"{config.metrics_port} on 127.0.0.1"
    if failure.errno == errno.EADDRINUSE:
        return f"The metrics port {where} is already in use; pass another --metrics-port."
    reason = failure.strerror or str(failure)
    return f"Cannot listen for metrics on port {where}: {reason}; pass another --metrics-port."


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


# Each command by its module and function, imported when it runs: the serving process never
# loads the store, its cipher, the tools or httpx unless it serves the product.
COMMANDS: dict[str, tuple[str, str]] = {
    "token": ("accounts", "cmd_token"),
    "tokens": ("accounts", "cmd_tokens"),
    "revoke": ("accounts", "cmd_revoke"),
    "user": ("accounts", "cmd_user"),
    "audit": ("accounts", "cmd_audit"),
    "stdio": ("accounts", "cmd_stdio"),
    "invitations": ("accounts", "cmd_invitations"),
    "install": ("install", "cmd_install"),
    "doctor": ("install", "cmd_doctor"),
    "rotate-key": ("accounts", "cmd_rotate_key"),
    "migrate": ("accounts", "cmd_migrate"),
}


def command(name: str) -> Callable[[argparse.Namespace], int]:
    module, function = COMMANDS[name]
    found: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f".{module}", __package__), function
    )
    return found


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
        status = command(args.command)(args)
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
    parser = argparse.ArgumentParser(
        prog="sp00ky-mcp", description="Run the Sp00ky MCP server.", allow_abbrev=False
    )
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
